"""Raw files → rows, under size caps; a wholly unreadable file is one error naming it.

A *row* (the unit of the rows_in == kept + quarantined identity) is one physical record:
one non-blank line of a JSON Lines file, one element of a JSON array file, one data
record of a CSV/TSV file (csv_rows.py: a broken quote never merges lines into one
record), or one row of a Parquet table. Reading never stops at a bad row: whatever fails for one row (invalid
UTF-8, malformed JSON, an integer literal longer than Python converts, nesting deeper
than the JSON parser's recursion limit, a CSV cell over the csv module's field limit, a
field over the cap, a key named twice, a key that is not UTF-8, a NUL byte) makes that
row a `RawRow` with an `error`, quarantined later with its reason. A file that cannot be read at all (missing, corrupt gzip, truncated
Parquet, every record binary, over the size cap) raises `SourceError` naming the file.

Streaming. `iter_rows` yields rows as they are read: JSON Lines and CSV/TSV (plain or
gzip) arrive in chunks of STREAM_CHUNK_BYTES and are split into lines as they come
(csv_rows.text_lines decodes them incrementally), a JSON array's elements are parsed from
the same chunks (json_array.py), Parquet is decoded a batch at a time, so memory holds a
chunk, an element or a batch plus what the caller keeps, never the file. Exact repeats of a JSON line are found by a
16-byte blake2b digest before parsing (~120 bytes per distinct line measured with a
(line, unparsed) tuple as the value, 56 less with one int) and come
out as rows with `repeat_of` set, which importers store as two integers.

Caps (`Limits`, from params `curate.max_file_bytes` / `curate.max_file_rows` /
`curate.max_field_chars`), checked while streaming and naming the file, the cap and the
setting:
- per file, in bytes of *decompressed* content: a running count over the chunks stops
  at the cap, so a gzip bomb inflates at most one chunk past it (2 GiB bomb refused at
  156 MB peak RSS, measured); Parquet is checked against the uncompressed size its
  footer declares, then its decoded size is summed in a first pass, in batches bounded
  by the longest dictionary value (parquet_rows.py), before the first row is yielded.
- per file, in rows: counted as lines or elements stream (JSON), from the footer (Parquet).
- per field, in characters (not whitespace tokens: a multi-megabyte string without a
  space is caught): every string of a row, at any depth, keys included.

JSON Lines or one document is told by content (json_kind.py): an array, one of pandas'
table layouts (`df.to_json(path)`), JSON values one after another (jq's output,
pretty-printed objects) or JSON Lines.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import lzma
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paretoflow.data.compression import COMPRESSIONS, compression_of, inflating
from paretoflow.data.csv_rows import csv_rows, text_lines
from paretoflow.data.json_array import ArrayError, array_values, sequence_values
from paretoflow.data.json_kind import BOM, Kind, document_kind
from paretoflow.data.json_fast import SURROGATE_ESCAPE, fast_value
from paretoflow.data.rows import (
    RAW_LIMIT,
    DuplicateKeys,
    Limits,
    LongNumber,
    OTHER_ENCODING,
    RawRow,
    RowError,
    SourceError,
    check_fields,
    check_keys_and_text,
    object_pairs,
    over_row_cap,
    parse_int,
    refuse_wide_text,
    shown,
    transcoded,
    truncate,
    unsupported_file,
)

__all__ = [
    "CSV_SUFFIXES", "FILE_SUFFIXES", "JSON_SUFFIXES", "RAW_LIMIT", "Limits", "LongNumber", "RawRow", "RowError",
    "SourceError", "TSV_SUFFIXES", "check_fields", "expand_source", "iter_rows", "read_rows", "shown", "truncate",
]

_PLAIN_OR = ("", *COMPRESSIONS)
JSON_SUFFIXES = tuple(s + c for s in (".jsonl", ".json", ".ndjson") for c in _PLAIN_OR)
JSON_LINES_SUFFIXES = tuple(s + c for s in (".jsonl", ".ndjson") for c in _PLAIN_OR)
CSV_SUFFIXES = tuple(".csv" + c for c in _PLAIN_OR)
TSV_SUFFIXES = tuple(".tsv" + c for c in _PLAIN_OR)
FILE_SUFFIXES = (*JSON_SUFFIXES, ".parquet", *CSV_SUFFIXES, *TSV_SUFFIXES)


def _row(location: str, order: int, text: str, value: Any, limits: Limits) -> RawRow:
    """A parsed row, or a row carrying the RowError of its oversized field."""
    row = RawRow(location, order, truncate(text), value)
    # A field over the cap, or an integer too long to convert, needs a line that long.
    if len(text) > min(limits.max_field_chars, sys.get_int_max_str_digits()):
        try:
            check_fields(value, limits.max_field_chars)
        except RowError as error:
            row.value, row.error = None, error
    return row


# --------------------------------------------------------------------------- bytes


def _over_cap(path: Path, cap: int) -> SourceError:
    return SourceError(f"{path}: more than {cap:,} bytes of content (curate.max_file_bytes); "
                       "raise the cap or split the file")


STREAM_CHUNK_BYTES = 1 << 20  # bytes read (or inflated) at a time: the memory a stream holds beyond its rows


def _checked_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: source file not found")
    if not path.is_file():
        raise SourceError(f"{path}: not a regular file")


def stream_chunks(path: Path, limits: Limits) -> Iterator[bytes]:
    """The file's content in chunks of at most STREAM_CHUNK_BYTES, inflated as a stream
    for .gz / .bz2 / .xz / .zst with a running count that stops at the cap: a
    decompression bomb never inflates more than one chunk past it. In an encoding other
    than UTF-8 (`limits.encoding`), the content comes transcoded to UTF-8."""
    chunks = _content_chunks(path, limits)
    return chunks if limits.encoding == "utf-8" else transcoded(path, chunks, limits.encoding)


def _content_chunks(path: Path, limits: Limits) -> Iterator[bytes]:
    _checked_file(path)
    cap = limits.max_file_bytes
    compression = compression_of(path)
    if compression is None and path.stat().st_size > cap:
        raise _over_cap(path, cap)
    total = 0
    try:
        with (path.open("rb") if compression is None else inflating(path, compression)) as stream:
            while chunk := stream.read(STREAM_CHUNK_BYTES):
                if not total and limits.encoding == "utf-8":
                    refuse_wide_text(path, chunk)
                total += len(chunk)
                if total > cap:
                    raise _over_cap(path, cap)
                yield chunk
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        if compression is None:
            raise
        raise SourceError(f"{path}: not a readable {compression} file ({type(exc).__name__}: {exc})") from None


def stream_lines(chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    """(number, line without its b"\\n") as data.split(b"\\n") would give them, from chunks:
    the file is never held whole. A line spanning chunks is joined once (pieces kept in a
    list: repeated concatenation would be quadratic in a long line)."""
    number, pieces = 1, []
    for chunk in chunks:
        if b"\n" not in chunk:
            pieces.append(chunk)
            continue
        lines = chunk.split(b"\n")
        if pieces:
            pieces.append(lines[0])
            lines[0] = b"".join(pieces)
        pieces = [lines.pop()]
        for line in lines:
            yield number, line
            number += 1
    yield number, b"".join(pieces)


# --------------------------------------------------------------------------- JSON


class _Objects:
    """object_pairs_hook that notes whether the last parse met a key named twice."""

    def __init__(self) -> None:
        self.duplicates = False

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict:
        obj = object_pairs(pairs)
        if type(obj) is DuplicateKeys:
            self.duplicates = True
        return obj


def _parse_json(text: str, objects: _Objects) -> Any:
    objects.duplicates = False
    return json.loads(text, parse_int=parse_int, object_pairs_hook=objects)


def _checked(row: RawRow, needs_check: bool) -> RawRow:
    """Quarantine a parsed row holding a duplicate key or text that is not UTF-8."""
    if needs_check and row.error is None:
        try:
            check_keys_and_text(row.value)
        except RowError as error:
            row.value, row.error = None, error
    return row


def _json_array_rows(path: Path, limits: Limits, sequence: bool = False) -> Iterator[RawRow]:
    # One JSON document: an element's failure cannot be told apart from the file's, so a
    # malformed array is a file error, raised where it is met (json_array.py). Long
    # integers, oversized fields, duplicate keys and undecodable text stay per element.
    # `sequence`: values one after another (sequence_values), not one array.
    objects = _Objects()
    scan = json.JSONDecoder(parse_int=parse_int, object_pairs_hook=objects).raw_decode
    cap = limits.max_file_rows
    values = (sequence_values if sequence else array_values)(stream_chunks(path, limits), scan)
    try:
        for index, (value, escape) in enumerate(values):
            if index == cap:
                raise over_row_cap(path, cap)
            text = json.dumps(value, ensure_ascii=False, default=str)
            row = _checked(_row(f"item {index + 1}", index, text, value, limits), objects.duplicates or escape)
            objects.duplicates = False
            yield row
    except ArrayError as exc:
        what = "JSON values one after another" if sequence else "a readable JSON array"
        raise SourceError(f"{shown(str(path))}: starts with {'{' if sequence else '['!r} but is not {what} "
                          f"({exc})") from None


def _json_sequence_rows(path: Path, limits: Limits) -> Iterator[RawRow] | None:
    """The rows of JSON values written one after another (pretty-printed objects, jq's
    output), or None when the first value does not parse (then the file is read as JSON
    Lines, a row quarantined per bad line). Each such file was refused before ("no line
    parses as JSON"), a single pretty-printed object included."""
    rows = _json_array_rows(path, limits, sequence=True)
    try:
        first = next(rows)
    except StopIteration:
        return iter(())
    except SourceError:
        return None
    return itertools.chain([first], rows)


def _json_line_row(number: int, line_bytes: bytes, limits: Limits, objects: _Objects) -> RawRow:
    location = f"line {number}"
    line_bytes = line_bytes.removeprefix(BOM)  # line 1's, or a file's joined after it (cat a.jsonl b.jsonl)
    if b"\x00" in line_bytes:  # per row: one NUL byte does not make the whole file binary
        return RawRow(location, number, truncate(line_bytes.decode("utf-8", "backslashreplace")),
                      error=RowError("binary_data", "the line holds a NUL byte"), unparsed=True)
    try:
        line = line_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = truncate(line_bytes.decode("utf-8", "backslashreplace"))
        return RawRow(location, number, raw, error=RowError("undecodable_bytes", f"not UTF-8: {exc.reason} at byte "
                                                                                f"{exc.start}{OTHER_ENCODING}"), unparsed=True)
    value = fast_value(line_bytes)
    if value is not None:  # provably what the exact parse below returns (json_fast.py)
        return _row(location, number, line, value, limits)
    try:
        value = _parse_json(line, objects)
    except json.JSONDecodeError as exc:
        detail = f"{exc.msg} at column {exc.colno}"
        if exc.msg == "Extra data" and line[exc.pos:].strip() == ",":
            detail += ": a ',' after the record (JSON Lines separates records by line breaks alone)"
        elif exc.msg == "Extra data" and line[exc.pos:].lstrip()[:1] in ("{", "["):
            detail += (": a second JSON value starts there, on the same line (a file joined after one whose last "
                       "line had no line break?); each record needs a line of its own")
        return RawRow(location, number, truncate(line), error=RowError("malformed_json", detail), unparsed=True)
    except (ValueError, RecursionError) as exc:  # e.g. nesting deeper than the parser's recursion limit
        return RawRow(location, number, truncate(line),
                      error=RowError("malformed_json", f"{type(exc).__name__}: {str(exc)[:200]}"), unparsed=True)
    needs_check = objects.duplicates or SURROGATE_ESCAPE.search(line_bytes) is not None
    return _checked(_row(location, number, line, value, limits), needs_check)


def _line_raw(line_bytes: bytes) -> str:
    """The raw excerpt _json_line_row gives a line of these bytes, whatever its number (the
    first occurrence's, for a repeat: same bytes, same excerpt; tested)."""
    line_bytes = line_bytes.removeprefix(BOM)
    if b"\x00" not in line_bytes:
        try:
            return truncate(line_bytes.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    return truncate(line_bytes.decode("utf-8", "backslashreplace"))


def iter_json_rows(path: Path, limits: Limits) -> Iterator[RawRow]:
    """Rows of a JSON Lines file (lines parsed as they stream in), a JSON array (elements
    likewise), one of pandas' table layouts (pandas_json.py) or JSON values one after
    another (pretty-printed objects, jq's output). The row cap stops the file."""
    kind = document_kind(path.name.lower().endswith(JSON_LINES_SUFFIXES), stream_chunks(path, limits))
    if kind is Kind.ARRAY:
        yield from _json_array_rows(path, limits)
        return
    if kind in (Kind.TABLE_OR_LINES, Kind.TABLE_OR_VALUES):
        from paretoflow.data.pandas_json import pandas_table

        if (table := pandas_table(path, limits)) is not None:
            yield from table
            return
    if kind in (Kind.TABLE_OR_VALUES, Kind.VALUES) and (values := _json_sequence_rows(path, limits)) is not None:
        yield from values
        return
    cap = limits.max_file_rows
    objects = _Objects()
    count, parsed_any, binary, first_error = 0, False, False, None
    # 16-byte digest of a line → its first occurrence's line number, negated if that line
    # was unparsed (one int, not a tuple: 56 bytes less a distinct line): not the row,
    # whose parsed value would then live until the file ends, nor its raw text (~1 KB a
    # row, which curate keeps on disk): a repeat has the same bytes, so the same raw.
    first_of: dict[bytes, int] = {}
    repeats: dict[int, tuple[RowError, str]] = {}
    for number, line in stream_lines(stream_chunks(path, limits)):
        if not line.strip():
            continue  # blank lines are not rows
        count += 1
        if count > cap:
            raise over_row_cap(path, cap)
        # Exact duplicates by hash before parsing: a repeated line costs a digest and a
        # small row sharing its first occurrence's text, not a parse, a record and a
        # curate pass (3M identical lines were 7.5 GB before). Curate would call it a
        # duplicate anyway: same bytes, same file, later line.
        digest = hashlib.blake2b(line, digest_size=16).digest()
        first = first_of.get(digest)
        if first is None:
            row = _json_line_row(number, line, limits, objects)
            first_of[digest] = -number if row.unparsed else number  # line numbers start at 1
            parsed_any |= not row.unparsed
            binary |= row.unparsed and row.error.reason == "binary_data"
            first_error = first_error or (row.unparsed and f"{row.location}: {row.error.detail}")
        else:
            first_line, first_unparsed = abs(first), first < 0
            known = repeats.get(first_line)
            if known is None:
                known = repeats[first_line] = (RowError("duplicate", f"same bytes as line {first_line}"),
                                               _line_raw(line))
            row = RawRow(f"line {number}", number, known[1], error=known[0], unparsed=first_unparsed,
                         repeat_of=first_line)
        yield row
    if count and not parsed_any:  # not one line is JSON: the file is not JSON Lines
        if binary:
            raise SourceError(f"{shown(str(path))}: binary data (NUL bytes), not JSON Lines")
        raise SourceError(f"{shown(str(path))}: no line parses as JSON ({first_error}); not a JSON Lines file")


def read_json_rows(path: Path, limits: Limits) -> list[RawRow]:
    return list(iter_json_rows(path, limits))


# --------------------------------------------------------------------------- CSV / TSV


def iter_csv_rows(path: Path, limits: Limits, delimiter: str = ",") -> Iterator[RawRow]:
    return csv_rows(path, lambda: text_lines(stream_chunks(path, limits)), limits, delimiter)


# --------------------------------------------------------------------------- dispatch


def iter_rows(path: Path, limits: Limits | None = None) -> Iterator[RawRow]:
    """Rows of a file by its extension, as they are read: every format streams (memory
    holds a chunk, an element or a batch, not the file) under the
    byte cap. A wholly unreadable file raises naming the file (possibly after some
    rows were yielded: a cap or a file-level verdict is known only at the end)."""
    limits = limits or Limits()
    name = path.name.lower()
    if name.endswith(".parquet"):
        from paretoflow.data.parquet_rows import iter_parquet_rows

        return iter_parquet_rows(path, limits)
    if name.endswith(CSV_SUFFIXES):
        return iter_csv_rows(path, limits)
    if name.endswith(TSV_SUFFIXES):
        return iter_csv_rows(path, limits, delimiter="\t")
    if name.endswith(JSON_SUFFIXES):
        return iter_json_rows(path, limits)
    raise unsupported_file(path)


def read_rows(path: Path, limits: Limits | None = None) -> list[RawRow]:
    """Rows of a file by its extension; a wholly unreadable file raises naming the file."""
    return list(iter_rows(path, limits))


def _refuse_saved_dataset(path: Path, every: list[Path]) -> None:
    """A folder `datasets.Dataset.save_to_disk` wrote (Arrow files beside its state.json and
    dataset_info.json) is refused as one: its rows are in the Arrow files, which are not
    read, and its two JSON files were read as data instead (each a missing_field row)."""
    for folder in sorted({p.parent for p in every if p.name.lower().endswith(".arrow")}):
        if (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file():
            where = "it" if folder == path else str(folder)
            raise SourceError(f"{path}: {where} is a folder datasets' save_to_disk wrote (Arrow files with "
                              "state.json and dataset_info.json); its rows are in Arrow IPC files, which paretoflow "
                              "does not read: write each split as Parquet (datasets.load_from_disk(FOLDER)"
                              ".to_parquet(FILE)) and import that")


def expand_source(path: Path) -> tuple[list[Path], list[Path]]:
    """A file, or the supported files of a folder (sorted, recursive), and the files of the
    folder that were skipped for their suffix (reported, never silently dropped)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: source path not found")
    if path.is_file():
        return [path], []
    every = sorted(p for p in path.rglob("*") if p.is_file())
    _refuse_saved_dataset(path, every)
    files = [p for p in every if p.name.lower().endswith(FILE_SUFFIXES)]
    if not files:
        raise SourceError(f"{path}: folder holds no {'/'.join(FILE_SUFFIXES)} files")
    chosen = set(files)
    return files, [p for p in every if p not in chosen]
