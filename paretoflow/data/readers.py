"""Raw files → rows, under size caps; a wholly unreadable file is one error naming it.

A *row* (the unit of the rows_in == kept + quarantined identity) is one non-blank line of
a JSON Lines file, one element of a JSON array file, or one data row of a CSV/TSV or
Parquet table. Reading never stops at a bad row: whatever fails for one row (invalid
UTF-8, malformed JSON, an integer literal longer than Python converts, nesting deeper
than the JSON parser's recursion limit, a CSV cell over the csv module's field limit, a
field over the cap) makes that row a `RawRow` with an `error`, quarantined later with
its reason. A file that cannot be read at all (missing, corrupt gzip, truncated
Parquet, binary data, over the size cap) raises `SourceError` naming the file.

Caps (`Limits`, from params `curate.max_file_bytes` / `curate.max_field_chars`):
- per file, in bytes of *decompressed* content: gzip is decompressed as a stream and
  reading stops at the cap, so a gzip bomb costs at most the cap in memory; Parquet is
  checked against the uncompressed size its footer declares before any row is read, then
  decoded in batches that stop once the decoded rows pass the cap.
- per field, in characters (not whitespace tokens: a multi-megabyte string without a
  space is caught): every string of a row, at any depth, keys included.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RAW_LIMIT = 500  # characters of the raw record kept in the quarantine table
PARQUET_BATCH_ROWS = 1024  # rows decoded at a time (pyarrow's iter_batches); bounds the overshoot of the cap
JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
CSV_SUFFIXES = (".csv", ".csv.gz")
TSV_SUFFIXES = (".tsv", ".tsv.gz")
FILE_SUFFIXES = (*JSON_SUFFIXES, ".parquet", *CSV_SUFFIXES, *TSV_SUFFIXES)


class SourceError(ValueError):
    """A whole file cannot be read; the message names the file and why."""


class RowError(Exception):
    """A row that cannot become a record: quarantined with `reason` and `detail`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    """Size caps of one import (see the module docstring)."""

    max_file_bytes: int = 1 << 30
    max_field_chars: int = 100_000


@dataclass
class RawRow:
    location: str
    order: int
    raw: str
    value: Any = None
    error: RowError | None = None


class LongNumber(str):
    """A JSON integer literal longer than Python converts to int
    (sys.get_int_max_str_digits): kept as text so the row is quarantined, not the file."""


def _parse_int(text: str) -> int | LongNumber:
    try:
        return int(text)
    except ValueError:
        return LongNumber(text)


def truncate(text: str) -> str:
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + "…"


def check_fields(value: Any, max_chars: int) -> None:
    """Raise RowError for the first string over `max_chars` characters, or integer literal
    too long to convert, anywhere in a parsed row (iterative: no recursion limit)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, LongNumber):
            raise RowError("number_too_long", f"field {where or 'record'!r} is an integer of {len(item):,} digits")
        if isinstance(item, str):
            if len(item) > max_chars:
                raise RowError("field_too_long", f"field {where or 'record'!r} has {len(item):,} characters "
                                                 f"> curate.max_field_chars {max_chars:,}")
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and len(key) > max_chars:
                    raise RowError("field_too_long", f"a key of {len(key):,} characters in {where or 'record'!r}")
                stack.append((name[:80], child))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))


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


def read_bytes(path: Path, limits: Limits) -> bytes:
    """The file's content, decompressed as a stream for .gz and never beyond the cap."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: source file not found")
    if not path.is_file():
        raise SourceError(f"{path}: not a regular file")
    cap = limits.max_file_bytes
    if not path.name.lower().endswith(".gz"):
        if path.stat().st_size > cap:
            raise _over_cap(path, cap)
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as stream:
            data = stream.read(cap + 1)  # stops at the cap: a gzip bomb never inflates further
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"{path}: not a readable gzip file ({type(exc).__name__}: {exc})") from None
    if len(data) > cap:
        raise _over_cap(path, cap)
    return data


def _looks_binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]


# --------------------------------------------------------------------------- JSON


def _parse_json(text: str) -> Any:
    return json.loads(text, parse_int=_parse_int)


def _json_array_rows(path: Path, data: bytes, limits: Limits) -> list[RawRow]:
    # One JSON document: an element's failure cannot be told apart from the file's, so a
    # malformed array is a file error. Long integers and oversized fields stay per element.
    try:
        items = _parse_json(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SourceError(f"{path}: starts with '[' but is not a readable JSON array "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None
    rows = []
    for index, value in enumerate(items):
        text = json.dumps(value, ensure_ascii=False, default=str)
        rows.append(_row(f"item {index + 1}", index, text, value, limits))
    return rows


def _json_line_row(number: int, line_bytes: bytes, limits: Limits) -> RawRow:
    location = f"line {number}"
    try:
        line = line_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = truncate(line_bytes.decode("utf-8", "backslashreplace"))
        return RawRow(location, number, raw,
                      error=RowError("undecodable_bytes", f"not UTF-8: {exc.reason} at byte {exc.start}"))
    if number == 1:
        line = line.removeprefix("\ufeff")
    try:
        value = _parse_json(line)
    except json.JSONDecodeError as exc:
        return RawRow(location, number, truncate(line), error=RowError("malformed_json", f"{exc.msg} at column {exc.colno}"))
    except (ValueError, RecursionError) as exc:  # e.g. nesting deeper than the parser's recursion limit
        return RawRow(location, number, truncate(line),
                      error=RowError("malformed_json", f"{type(exc).__name__}: {str(exc)[:200]}"))
    return _row(location, number, line, value, limits)


def read_json_rows(path: Path, limits: Limits) -> list[RawRow]:
    data = read_bytes(path, limits)
    if _looks_binary(data):
        raise SourceError(f"{path}: binary data (NUL bytes), not JSON Lines")
    stripped = data.lstrip()
    if stripped.startswith(b"\xef\xbb\xbf"):
        stripped = stripped[3:].lstrip()
    if stripped.startswith(b"["):
        return _json_array_rows(path, stripped, limits)
    rows = [_json_line_row(number, line, limits)
            for number, line in enumerate(data.split(b"\n"), start=1) if line.strip()]  # blank lines are not rows
    if rows and all(r.error is not None and r.error.reason in ("malformed_json", "undecodable_bytes") for r in rows):
        raise SourceError(f"{path}: no line parses as JSON; not a JSON Lines file")
    return rows


# --------------------------------------------------------------------------- Parquet


def read_parquet_rows(path: Path, limits: Limits) -> list[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise FileNotFoundError(f"{path}: source file not found")
    cap = limits.max_file_bytes
    values: list[dict] = []
    try:
        parquet = pq.ParquetFile(path)
        meta = parquet.metadata
        declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if max(declared, path.stat().st_size) > cap:
            raise _over_cap(path, cap)
        # Dictionary-encoded values can decode far beyond the declared size: decode in
        # batches and stop once the decoded rows pass the cap.
        decoded = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            decoded += batch.nbytes
            if decoded > cap:
                raise _over_cap(path, cap)
            values += batch.to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    rows = []
    for index, value in enumerate(values):
        text = json.dumps(value, ensure_ascii=False, default=str)
        rows.append(_row(f"row {index + 1}", index, text, value, limits))
    return rows


# --------------------------------------------------------------------------- CSV / TSV


def _csv_cells_row(location: str, index: int, header: list[str], cells: list[str], limits: Limits) -> RawRow | None:
    if not any(c.strip() for c in cells):
        return None  # blank rows are not rows
    raw = truncate(",".join(cells))
    if len(cells) != len(header):
        return RawRow(location, index, raw, error=RowError("malformed_row", f"{len(cells)} cells for {len(header)} columns"))
    # An empty cell is a missing value, as pandas reads it.
    value = {h: (c if c != "" else None) for h, c in zip(header, cells)}
    try:
        check_fields(value, limits.max_field_chars)
    except RowError as error:
        return RawRow(location, index, raw, error=error)
    return RawRow(location, index, raw, value)


def read_csv_rows(path: Path, limits: Limits, delimiter: str = ",") -> list[RawRow]:
    data = read_bytes(path, limits)
    if _looks_binary(data):
        raise SourceError(f"{path}: binary data (NUL bytes), not {'CSV' if delimiter == ',' else 'TSV'}")
    # surrogateescape: undecodable bytes become lone surrogates, caught per cell later.
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    # The csv module refuses cells over its field limit (131,072 by default) per row; raise
    # it (process-wide, only ever upwards) so that our per-field cap is the one that decides.
    csv.field_size_limit(max(csv.field_size_limit(), limits.max_field_chars + 1))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise SourceError(f"{path}: unreadable header row ({exc})") from None
    rows: list[RawRow] = []
    index = 0
    while header is not None:
        location = f"row {index + 1}"
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # the reader resumes at the next line
            reason = "field_too_long" if "field larger" in str(exc) else "malformed_row"
            rows.append(RawRow(location, index, f"(line {reader.line_num})", error=RowError(reason, str(exc))))
        else:
            row = _csv_cells_row(location, index, header, cells, limits)
            if row is not None:
                rows.append(row)
        index += 1
    return rows


# --------------------------------------------------------------------------- dispatch


def read_rows(path: Path, limits: Limits | None = None) -> list[RawRow]:
    """Rows of a file by its extension; a wholly unreadable file raises naming the file."""
    limits = limits or Limits()
    name = path.name.lower()
    if name.endswith(".parquet"):
        return read_parquet_rows(path, limits)
    if name.endswith(CSV_SUFFIXES):
        return read_csv_rows(path, limits)
    if name.endswith(TSV_SUFFIXES):
        return read_csv_rows(path, limits, delimiter="\t")
    if name.endswith(JSON_SUFFIXES):
        return read_json_rows(path, limits)
    raise SourceError(f"{path}: unsupported file type (expected one of {', '.join(FILE_SUFFIXES)})")


def expand_source(path: Path) -> tuple[list[Path], list[Path]]:
    """A file, or the supported files of a folder (sorted, recursive), and the files of the
    folder that were skipped for their suffix (reported, never silently dropped)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: source path not found")
    if path.is_file():
        return [path], []
    every = sorted(p for p in path.rglob("*") if p.is_file())
    files = [p for p in every if p.name.lower().endswith(FILE_SUFFIXES)]
    if not files:
        raise SourceError(f"{path}: folder holds no {'/'.join(FILE_SUFFIXES)} files")
    chosen = set(files)
    return files, [p for p in every if p not in chosen]
