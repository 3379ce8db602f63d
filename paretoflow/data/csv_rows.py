"""CSV / TSV text → rows that keep their record boundaries, whatever the quoting does.

Python's csv module, as used before, let one broken quote decide where records end:

- an unclosed quote in row 2 swallowed every later line into one cell (the file had 10
  rows, the report said 2);
- a quoted cell over the module's field limit raised mid-cell and parsing resumed
  *inside* the cell, so text of the cell became rows of its own (and could be kept).

Here the field limit is lifted (our own per-field cap `max_field_chars` quarantines an
oversized cell as field_too_long; the per-file byte cap bounds what an unclosed quote can
make the reader hold: the rest of the file, read as one record before it fails), the
reader is strict (a quote must be followed by a delimiter or a line end), and a record
that fails (csv error, end of data inside quotes, wrong number of cells) *and* spans
several physical lines is taken to have broken its quoting: only its first line is the
bad record (malformed_row, line named), and the lines after it are read again as
records of their own. A well-formed quoted cell holding line breaks stays one record.

Header habits of spreadsheet exports are read as meant: column names lose the spaces
around them (`" prompt , chosen "`), and a `.csv` whose header is one cell holding `;`,
a tab or `|` (Excel's export where the decimal mark is a comma) is read with that
delimiter; both quarantined every row as missing_field before ("no field 'prompt'").
Leading columns with no name (the row labels `df.to_csv` and R's `write.csv` write) are
not read as data; each pair carried them as metadata `{"": "0"}` before. Nor are trailing
ones (a delimiter ending each line, emptied spreadsheet columns), whose cells must be empty
or absent (several made every row ambiguous_key). Excel's first line `sep=;` names the
delimiter (it was the header: every row malformed). A row that repeats the header (files
joined with `cat`) is repeated_header (it was kept as the pair "prompt", "chosen", ...).

The text streams (`text_lines`): memory holds a chunk and the record being read, never
the file (a 100k-pair CSV, 287 MB, peaked at 2.2 GB through curate when it was read
whole; 397 MB streamed, as JSON Lines of the same pairs).

Row-level checks done here: a duplicate column name (after the strip) makes every row ambiguous_key (which
of the two cells is meant cannot be told); a column name that is not UTF-8 makes every
row undecodable_bytes; a cell holding a NUL byte makes its row binary_data (a binary
file, every record of it failing, is one SourceError).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from paretoflow.data.normalize import has_lone_surrogate
from paretoflow.data.rows import Limits, RawRow, RowError, SourceError, check_fields, over_row_cap, shown, truncate

# Lifted once, process-wide (the csv limit is global): our caps decide, not the module's.
csv.field_size_limit(min(sys.maxsize, 2**63 - 1))


def text_lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """The physical lines (ends kept) of UTF-8 `chunks`, split on \\n, \\r\\n and \\r as csv
    splits them (`io.StringIO(text, newline="")` of the whole text would give the same),
    decoded as they stream: a leading BOM goes, undecodable bytes become lone surrogates
    (caught per cell later). Memory holds a chunk, or one line while it is longer: a chunk
    with no line break is kept aside, not joined once per chunk."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")("surrogateescape")  # -sig: the leading BOM goes
    pieces: list[str] = []
    for chunk in chunks:
        text = decoder.decode(chunk)
        pieces.append(text)
        if "\n" not in text and "\r" not in text:
            continue  # no line ends here: wait for one
        lines = io.StringIO("".join(pieces), newline="").readlines()
        # The last line may go on in the next chunk; so may a "\r" (the "\n" of "\r\n").
        pieces = [lines.pop()] if lines and not lines[-1].endswith("\n") else []
        yield from lines
    yield from io.StringIO("".join(pieces) + decoder.decode(b"", final=True), newline="").readlines()


class _Lines:
    """The physical lines with push-back: a record that broke its quoting is read again
    from its second line. `taken` holds the lines of the record being parsed; `nul` tells
    whether any line held a NUL byte (a binary file, when every record also failed)."""

    def __init__(self, lines: Iterator[str], first: int = 1):
        self._source = lines
        self._pending: list[tuple[int, str]] = []  # pushed back, last one first
        self._next_number = first
        self.taken: list[tuple[int, str]] = []
        self.nul = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._pending:
            number, line = self._pending.pop()
        else:
            line = next(self._source)
            number, self._next_number = self._next_number, self._next_number + 1
            self.nul = self.nul or "\x00" in line
        self.taken.append((number, line))
        return line

    def start_record(self) -> None:
        self.taken = []

    def push_back(self, lines: list[tuple[int, str]]) -> None:
        self._pending.extend(reversed(lines))


_OTHER_DELIMITERS = (";", "\t", "|")


# Excel's first line "sep=;" names the delimiter (Excel reads it as a setting, not a row).
_EXCEL_SEPARATOR = re.compile(r"sep=([^\r\n])(?:\r\n|\r|\n)?", re.IGNORECASE)


def _header(path: Path, text: Iterator[str], delimiter: str, first: int = 1
            ) -> tuple[_Lines, Iterator[list[str]], list[str] | None]:
    """The lines, a strict reader and the header (names stripped) of the lines `text`
    (`first`: the number of the first of them)."""
    lines = _Lines(text, first)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise SourceError(f"{path}: unreadable header row ({exc})") from None
    return lines, reader, None if header is None else [name.strip() for name in header]


def _header_problem(header: list[str]) -> RowError | None:
    """A header every row inherits a problem from: duplicate or undecodable names."""
    duplicates = sorted(name for name, n in Counter(header).items() if n > 1)
    if duplicates:
        return RowError("ambiguous_key", f"column {duplicates[0]!r} appears {header.count(duplicates[0])} times "
                                         "in the header: which cell is meant cannot be told")
    for name in header:
        if has_lone_surrogate(name):
            shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            return RowError("undecodable_bytes", f"column name {shown!r} is not UTF-8")
    return None


def _cell_count(cells: list[str], header: list[str]) -> str:
    """A record's cell count against the header's; a header of one name among rows of
    several cells is likely a title or comment line above the real header."""
    problem = f"{len(cells)} cells for {len(header)} columns"
    if len(header) == 1 and len(cells) > 1:
        problem += f" (the header is the file's first line, {shown(header[0][:60])!r}: a title or comment line?)"
    return problem


def _cells_row(location: str, index: int, header: list[str], cells: list[str], limits: Limits,
               header_error: RowError | None, labels: int = 0, end: int | None = None) -> RawRow | None:
    """The row of one record's cells; its first `labels` cells are row labels, not read,
    and so are its cells from `end` on (columns with no name after the last named one),
    which must be empty or left out."""
    if not any(c.strip() for c in cells):
        return None  # blank rows are not rows
    raw = truncate(",".join(cells))
    if header_error is not None:
        return RawRow(location, index, raw, error=header_error)
    if any("\x00" in c for c in cells):
        return RawRow(location, index, raw, error=RowError("binary_data", "a cell holds a NUL byte"))
    end = len(header) if end is None else end
    if not end <= len(cells) <= len(header):  # the cells of trailing unnamed columns may be left out
        return RawRow(location, index, raw, error=RowError("malformed_row", _cell_count(cells, header)))
    stray = next((i for i in range(end, len(cells)) if cells[i] != ""), None)
    if stray is not None:
        return RawRow(location, index, raw, error=RowError(
            "malformed_row", f"cell {stray + 1} holds {shown(cells[stray][:40])!r} under a column with no name "
                             f"(the header names its first {end} columns)"))
    # (a BOM opening the row: the header of a file joined with `cat` after the first)
    if (cells[labels].strip().removeprefix("\ufeff").strip() == header[labels]
            and [c.strip() for c in cells[labels + 1:end]] == header[labels + 1:end]):
        return RawRow(location, index, raw, error=RowError(
            "repeated_header", "the row repeats the header (files joined with their headers?)"))
    # An empty cell is a missing value, as pandas reads it.
    value = {h: (c if c != "" else None) for h, c in zip(header[labels:end], cells[labels:end])}
    try:
        check_fields(value, limits.max_field_chars)
    except RowError as error:
        return RawRow(location, index, raw, error=error)
    return RawRow(location, index, raw, value)


def _lenient(line: str, delimiter: str) -> list[str]:
    """One line whose cell opens with a quote and goes on after the closing one
    (`"Hi" she said`): read as csv (and pandas) read it by default, `Hi she said`. Only
    for a record within one line: across lines strictness is what keeps row boundaries."""
    return next(csv.reader([line], delimiter=delimiter), [])


def _broken_quote(location: str, index: int, taken: list[tuple[int, str]], problem: str) -> RawRow:
    first, last = taken[0][0], taken[-1][0]
    detail = (f"line {first}: {problem}; the record ran over lines {first}-{last}, so its quoting is "
              f"taken as broken: line {first} alone is quarantined and the lines after it are read as rows")
    return RawRow(location, index, truncate(taken[0][1]), error=RowError("malformed_row", detail))


def csv_rows(path: Path, open_lines: Callable[[], Iterator[str]], limits: Limits,
             delimiter: str = ",") -> Iterator[RawRow]:
    """Every record of a CSV/TSV text (header first) as a RawRow, as its lines stream in
    (`open_lines()` gives them from the start; called again when the header asks for
    another delimiter); see module docstring. A binary file is told only at its end."""
    kind = "CSV" if delimiter == "," else "TSV"
    lines, reader, header = _header(path, open_lines(), delimiter)
    if header is None:
        return
    separator = _EXCEL_SEPARATOR.fullmatch(lines.taken[0][1]) if len(lines.taken) == 1 else None
    if separator is not None:  # the delimiter, then the header on line 2
        delimiter = separator.group(1)
        text = open_lines()
        next(text, None)
        lines, reader, header = _header(path, text, delimiter, first=2)
        if header is None:
            return
    elif delimiter == "," and len(header) == 1:
        other = next((d for d in _OTHER_DELIMITERS if d in header[0]), None)
        if other is not None:  # one cell holding another delimiter: read with that one
            delimiter = other
            lines, reader, header = _header(path, open_lines(), delimiter)
    if any("\x00" in name for name in header):
        raise SourceError(f"{path}: binary data (NUL bytes in the header), not {kind}")
    # pandas' to_csv and R's write.csv write the row labels (index, row names) as leading
    # columns named "": labels, not data (they became metadata {"": "0"} of every pair).
    labels = next((i for i, name in enumerate(header) if name != ""), 0)
    # Trailing columns with no name (a delimiter ending every line, a spreadsheet's emptied
    # columns): not read, their cells empty (several made every row ambiguous_key before).
    end = max((i + 1 for i, name in enumerate(header) if name != ""), default=len(header))
    header_error = _header_problem(header[labels:end])
    count, every_failed = 0, True  # rows yielded; whether each was an error
    while True:
        if count > limits.max_file_rows:  # checked while reading: binds before memory does
            raise over_row_cap(path, limits.max_file_rows)
        location = f"row {count + 1}"
        lines.start_record()
        try:
            cells, problem = next(reader), None
        except StopIteration:
            break
        except csv.Error as exc:
            cells, problem = None, str(exc)
        if problem is not None and len(lines.taken) == 1 and "expected after" in problem:
            cells, problem = _lenient(lines.taken[0][1], delimiter), None
        if problem is None and not end <= len(cells) <= len(header) and any(c.strip() for c in cells):
            problem = _cell_count(cells, header)
        if problem is not None and len(lines.taken) > 1:
            row = _broken_quote(location, count, lines.taken, problem)
            lines.push_back(lines.taken[1:])
            reader = csv.reader(lines, delimiter=delimiter, strict=True)  # a fresh parser state
        elif cells is None:
            where = lines.taken[0] if lines.taken else (0, "")
            row = RawRow(location, count, truncate(where[1]), error=RowError("malformed_row", f"line {where[0]}: {problem}"))
        else:
            row = _cells_row(location, count, header, cells, limits, header_error, labels, end)
            if row is None:
                continue
        count += 1
        every_failed = every_failed and row.error is not None
        yield row
    if count and lines.nul and every_failed:
        raise SourceError(f"{path}: binary data (NUL bytes), not {kind}")
