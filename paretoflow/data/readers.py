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

Caps (`Limits`, from params `curate.max_file_bytes` / `curate.max_field_chars`):
- per file, in bytes of *decompressed* content: gzip is decompressed as a stream and
  reading stops at the cap, so a gzip bomb costs at most the cap in memory; Parquet is
  checked against the uncompressed size its footer declares before any row is read, then
  decoded in batches that stop once the decoded rows pass the cap.
- per field, in characters (not whitespace tokens: a multi-megabyte string without a
  space is caught): every string of a row, at any depth, keys included.

JSON Lines or one JSON array is told by content: a `.jsonl` file is always JSON Lines; a
`.json` file is JSON Lines when its first line is a whole JSON value with more lines
after it (so a first line that is a JSON list does not turn the file into an array).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paretoflow.data.csv_rows import csv_rows
from paretoflow.data.rows import (
    RAW_LIMIT,
    DuplicateKeys,
    Limits,
    LongNumber,
    RawRow,
    RowError,
    SourceError,
    check_fields,
    check_keys_and_text,
    object_pairs,
    over_row_cap,
    parse_int,
    shown,
    truncate,
)

__all__ = [
    "CSV_SUFFIXES", "FILE_SUFFIXES", "JSON_SUFFIXES", "RAW_LIMIT", "Limits", "LongNumber", "RawRow", "RowError",
    "SourceError", "TSV_SUFFIXES", "check_fields", "expand_source", "read_bytes", "read_rows", "shown", "truncate",
]

PARQUET_BATCH_ROWS = 1024  # rows decoded at a time (pyarrow's iter_batches); bounds the overshoot of the cap
JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
JSON_LINES_SUFFIXES = (".jsonl", ".jsonl.gz")
CSV_SUFFIXES = (".csv", ".csv.gz")
TSV_SUFFIXES = (".tsv", ".tsv.gz")
FILE_SUFFIXES = (*JSON_SUFFIXES, ".parquet", *CSV_SUFFIXES, *TSV_SUFFIXES)
# A lone surrogate can enter strictly decoded JSON text only through a \uD800-\uDFFF escape.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


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


def _json_array_rows(path: Path, data: bytes, limits: Limits) -> list[RawRow]:
    # One JSON document: an element's failure cannot be told apart from the file's, so a
    # malformed array is a file error. Long integers, oversized fields, duplicate keys
    # and undecodable text stay per element.
    objects = _Objects()
    try:
        items = _parse_json(data.decode("utf-8"), objects)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SourceError(f"{shown(str(path))}: starts with '[' but is not a readable JSON array "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if isinstance(items, list) and len(items) > limits.max_file_rows:
        raise over_row_cap(path, limits.max_file_rows)
    needs_check = objects.duplicates or _SURROGATE_ESCAPE.search(data) is not None
    rows = []
    for index, value in enumerate(items):
        text = json.dumps(value, ensure_ascii=False, default=str)
        rows.append(_checked(_row(f"item {index + 1}", index, text, value, limits), needs_check))
    return rows


def _json_line_row(number: int, line_bytes: bytes, limits: Limits, objects: _Objects) -> RawRow:
    location = f"line {number}"
    if b"\x00" in line_bytes:  # per row: one NUL byte does not make the whole file binary
        return RawRow(location, number, truncate(line_bytes.decode("utf-8", "backslashreplace")),
                      error=RowError("binary_data", "the line holds a NUL byte"), unparsed=True)
    try:
        line = line_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = truncate(line_bytes.decode("utf-8", "backslashreplace"))
        return RawRow(location, number, raw, error=RowError("undecodable_bytes", f"not UTF-8: {exc.reason} at byte "
                                                                                f"{exc.start}"), unparsed=True)
    if number == 1:
        line = line.removeprefix("\ufeff")
    try:
        value = _parse_json(line, objects)
    except json.JSONDecodeError as exc:
        return RawRow(location, number, truncate(line), error=RowError("malformed_json", f"{exc.msg} at column {exc.colno}"),
                      unparsed=True)
    except (ValueError, RecursionError) as exc:  # e.g. nesting deeper than the parser's recursion limit
        return RawRow(location, number, truncate(line),
                      error=RowError("malformed_json", f"{type(exc).__name__}: {str(exc)[:200]}"), unparsed=True)
    needs_check = objects.duplicates or _SURROGATE_ESCAPE.search(line_bytes) is not None
    return _checked(_row(location, number, line, value, limits), needs_check)


def _is_json_lines(path: Path, body: bytes) -> bool:
    """JSON Lines by content: the first line is a whole JSON value and more lines follow."""
    if path.name.lower().endswith(JSON_LINES_SUFFIXES):
        return True
    first, _, rest = body.partition(b"\n")
    if not rest.strip():
        return False
    try:
        json.loads(first.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return True


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(number, line without its b"\\n") as data.split(b"\\n") would give them, one at a
    time: a list of every line of a big file would double its memory."""
    start, number = 0, 1
    while start <= len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        yield number, data[start:end]
        start, number = end + 1, number + 1


def read_json_rows(path: Path, limits: Limits) -> list[RawRow]:
    data = read_bytes(path, limits)
    body = data.lstrip()
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:].lstrip()
    if body.startswith(b"[") and not _is_json_lines(path, body):
        return _json_array_rows(path, body, limits)
    cap = limits.max_file_rows
    if data.count(b"\n") >= cap and sum(1 for _, line in _lines(data) if line.strip()) > cap:
        raise over_row_cap(path, cap)  # before any line is parsed
    objects = _Objects()
    rows: list[RawRow] = []
    first_of: dict[bytes, RawRow] = {}  # 16-byte digest of a line → its first occurrence
    repeats: dict[int, RowError] = {}
    for number, line in _lines(data):
        if not line.strip():
            continue  # blank lines are not rows
        # Exact duplicates by hash before parsing: a repeated line costs a digest and a
        # small row sharing its first occurrence's text, not a parse, a record and a
        # curate pass (3M identical lines were 7.5 GB before). Curate would call it a
        # duplicate anyway: same bytes, same file, later line.
        digest = hashlib.blake2b(line, digest_size=16).digest()
        first = first_of.get(digest)
        if first is None:
            first_of[digest] = row = _json_line_row(number, line, limits, objects)
        else:
            error = repeats.get(first.order)
            if error is None:
                error = repeats[first.order] = RowError("duplicate", f"same bytes as line {first.order}")
            row = RawRow(f"line {number}", number, first.raw, error=error, unparsed=first.unparsed)
        rows.append(row)
    if rows and all(r.unparsed for r in rows):  # not one line is JSON: the file is not JSON Lines
        if any(r.error.reason == "binary_data" for r in rows):
            raise SourceError(f"{shown(str(path))}: binary data (NUL bytes), not JSON Lines")
        raise SourceError(f"{shown(str(path))}: no line parses as JSON; not a JSON Lines file")
    return rows


# --------------------------------------------------------------------------- Parquet


def _decoded_bytes(batch: Any) -> int:
    """Bytes a record batch takes once decoded. String columns are read as dictionaries
    (read_dictionary), so a value repeated a million times is counted a million times
    from the dictionary's lengths and the indices, without decoding it even once."""
    import pyarrow as pa
    import pyarrow.compute as pc

    total = 0
    for column in batch.columns:
        if pa.types.is_dictionary(column.type):
            lengths = pc.take(pc.binary_length(column.dictionary), column.indices)
            total += (pc.sum(lengths).as_py() or 0) + 4 * len(column)  # values + offsets
        else:
            total += column.nbytes
    return total


def read_parquet_rows(path: Path, limits: Limits) -> list[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise FileNotFoundError(f"{path}: source file not found")
    cap = limits.max_file_bytes
    values: list[dict] = []
    try:
        schema = pq.read_schema(path)
        names = schema.names
        strings = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                   or pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
        parquet = pq.ParquetFile(path, read_dictionary=strings or None)
        meta = parquet.metadata
        if meta.num_rows > limits.max_file_rows:  # from the footer, before any page is read
            raise over_row_cap(path, limits.max_file_rows)
        declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if max(declared, path.stat().st_size) > cap:
            raise _over_cap(path, cap)
        # Dictionary-encoded values can decode far beyond the declared size: each batch is
        # sized from its dictionaries before its values are decoded, and reading stops
        # once the decoded rows would pass the cap (memory stays near the file's size).
        decoded = 0
        batches = []
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            decoded += _decoded_bytes(batch)
            if decoded > cap:
                raise _over_cap(path, cap)
            batches.append(batch)
        for batch in batches:
            values += batch.to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    duplicates = sorted({n for n in names if names.count(n) > 1})
    rows = []
    for index, value in enumerate(values):
        text = json.dumps(value, ensure_ascii=False, default=str)
        row = _row(f"row {index + 1}", index, text, value, limits)
        if duplicates:  # to_pylist keeps the last of two same-named columns: ambiguous
            row.value, row.error = None, RowError(
                "ambiguous_key", f"column {duplicates[0]!r} appears {names.count(duplicates[0])} times in the schema: "
                                 "which value is meant cannot be told")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- CSV / TSV


def read_csv_rows(path: Path, limits: Limits, delimiter: str = ",") -> list[RawRow]:
    data = read_bytes(path, limits)
    # surrogateescape: undecodable bytes become lone surrogates, caught per cell later.
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    return csv_rows(path, text, limits, delimiter)


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
