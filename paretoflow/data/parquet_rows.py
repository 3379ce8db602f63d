"""Rows of a Parquet file in bounded memory: caps checked from the footer before any page
is read, every batch sized before any row is decoded (a dictionary bomb is refused at the
cap), then rows decoded one batch at a time.

Pages are read as they are needed (`pre_buffer=False` with a read buffer), not a row
group's column chunks at once: pyarrow's default buffers them whole, so one row group of
a 1M-pair file (pandas and pyarrow write up to 1Mi rows a group) held all its compressed
pages, ~2 GB (214 MB measured at 100k pairs). Strings are
decoded as strings: reading them as dictionaries (as the sizing did before) makes pyarrow
hash every plain-encoded value into a dictionary that grows to the column's size (a
100k-pair file peaked at 1.43 GB through curate, 19.4 s).

A dictionary bomb (a long value repeated by tiny indices) is bounded without decoding it:
a column chunk has at most one dictionary page, which a one-row read loads whole, so its
longest value bounds every dictionary-encoded value of that row group (plain values take
the bytes they are stored in). Batches are sized so that this worst case stays under
PARQUET_BATCH_BYTES, summed in a first pass (decoded, counted, dropped) that refuses the
file past the cap, and only then decoded into rows. Nested columns (lists of turns) are
counted as decoded, as before; so are columns stored with an Arrow dictionary type, which
pyarrow reads back as dictionaries (counted from their lengths, not decoded)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paretoflow.data.readers import _over_cap, _row
from paretoflow.data.rows import Limits, RawRow, RowError, SourceError, over_row_cap, truncate

PARQUET_BATCH_ROWS = 1024  # rows decoded at a time (pyarrow's iter_batches); bounds the overshoot of the cap
PARQUET_BATCH_BYTES = 64 << 20  # the most one batch may decode to, by the longest dictionary value
READ_BUFFER_BYTES = 1 << 20  # pages are read through a buffer this size (pre_buffer off)


def _decoded_bytes(batch: Any) -> int:
    """Bytes a record batch takes once decoded. A column the file stores with an Arrow
    dictionary type comes back as one: a value repeated a million times is counted a
    million times from the dictionary's lengths and the indices, without decoding it."""
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


def _opened(path: Path, read_dictionary: list[str] | None = None) -> Any:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path, read_dictionary=read_dictionary, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)


def _parquet_file(path: Path, limits: Limits) -> tuple[Any, list[str]]:
    """The opened file and its top-level string columns, its caps checked from the footer
    before any page is read."""
    import pyarrow as pa

    parquet = _opened(path)
    strings = [f.name for f in parquet.schema_arrow if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
               or pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    meta = parquet.metadata
    if meta.num_rows > limits.max_file_rows:
        raise over_row_cap(path, limits.max_file_rows)
    declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if max(declared, path.stat().st_size) > limits.max_file_bytes:
        raise _over_cap(path, limits.max_file_bytes)
    return parquet, strings


def _pandas_index(parquet: Any) -> set[str]:
    """The columns pandas wrote for an unnamed index (`__index_level_0__`, from a frame
    whose rows were filtered): pandas reads them back as the index, not as data, so they
    are not read (they were metadata of every pair). A named index stays a column."""
    try:
        meta = parquet.schema_arrow.pandas_metadata or {}
    except ValueError:  # the pandas metadata is not JSON: no index is known
        return set()
    return {c for c in meta.get("index_columns", []) if isinstance(c, str) and re.fullmatch(r"__index_level_\d+__", c)}


def _batch_rows(probe: Any, group: int, strings: list[str]) -> int:
    """Rows a batch of row group `group` may hold: PARQUET_BATCH_ROWS, fewer where its
    longest dictionary values (one per string column, from a one-row read of `probe`, the
    file opened with `read_dictionary=strings`, which loads each column's dictionary
    page) could decode past PARQUET_BATCH_BYTES."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not strings:
        return PARQUET_BATCH_ROWS
    first = next(probe.iter_batches(batch_size=1, row_groups=[group], columns=strings), None)
    if first is None:
        return PARQUET_BATCH_ROWS
    widest = sum((pc.max(pc.binary_length(c.dictionary)).as_py() or 0) if pa.types.is_dictionary(c.type) else 0
                 for c in first.columns)
    return max(1, min(PARQUET_BATCH_ROWS, PARQUET_BATCH_BYTES // max(widest, 1)))


def iter_parquet_rows(path: Path, limits: Limits) -> Iterator[RawRow]:
    """Rows of a Parquet file, one batch decoded at a time (see module docstring)."""
    import pyarrow as pa

    if not path.exists():
        raise FileNotFoundError(f"{path}: source file not found")
    cap = limits.max_file_bytes
    try:
        parquet, strings = _parquet_file(path, limits)
        names = parquet.schema_arrow.names
        duplicates = sorted({n for n in names if names.count(n) > 1})
        pandas_index = set() if duplicates else _pandas_index(parquet)
        columns = [n for n in names if n not in pandas_index] if pandas_index else None  # None: every column
        names, strings = columns or names, [n for n in strings if n not in pandas_index]
        groups = range(parquet.metadata.num_row_groups)
        probe = _opened(path, strings) if strings else None  # opened once, not once per row group
        sizes = [_batch_rows(probe, group, strings) for group in groups]

        def batches(group: int) -> Iterator[Any]:
            return parquet.iter_batches(batch_size=sizes[group], row_groups=[group], columns=columns)

        # Sized in a first pass (nothing kept), so that no row is yielded from a file that
        # is refused: rows read before the cap piled up as records (a 1 GiB dictionary
        # bomb peaked at 502 MB instead of 156 MB when sizing went with the rows).
        decoded = 0
        for group in groups:
            read = 0
            for batch in batches(group):
                decoded, read = decoded + _decoded_bytes(batch), read + batch.num_rows
                if decoded > cap:
                    raise _over_cap(path, cap)
            declared_rows = parquet.metadata.row_group(group).num_rows
            if read != declared_rows:  # a corrupt chunk can read as fewer rows, without an error
                raise SourceError(f"{path}: not a readable Parquet file (row group {group + 1} declares "
                                  f"{declared_rows:,} rows, {read:,} could be read)")
        index = 0
        for batch in (batch for group in groups for batch in batches(group)):
            try:
                values = batch.to_pylist()
            except UnicodeDecodeError:  # pyarrow reads string pages unchecked: one bad cell fails the batch
                values = None
            for j in range(batch.num_rows):
                yield (_parquet_row(index, values[j], duplicates, names, limits) if values is not None
                       else _row_of_slice(index, batch.slice(j, 1), duplicates, names, limits))
                index += 1
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    except UnicodeDecodeError as exc:  # the footer's names (a cell's bytes are per row, above)
        raise SourceError(f"{path}: not a readable Parquet file (its footer holds a name that is not "
                          f"UTF-8: {exc.object[exc.start:exc.end]!r} at byte {exc.start})") from None


def _parquet_row(index: int, value: dict, duplicates: list[str], names: list[str], limits: Limits) -> RawRow:
    text = json.dumps(value, ensure_ascii=False, default=str)
    row = _row(f"row {index + 1}", index, text, value, limits)
    if duplicates:  # to_pylist keeps the last of two same-named columns: ambiguous
        row.value, row.error = None, RowError(
            "ambiguous_key", f"column {duplicates[0]!r} appears {names.count(duplicates[0])} times in the schema: "
                             "which value is meant cannot be told")
    return row


def _row_of_slice(index: int, one: Any, duplicates: list[str], names: list[str], limits: Limits) -> RawRow:
    """Row `index` (a one-row batch) of a batch holding a string cell that is not UTF-8:
    that row alone is quarantined (undecodable_bytes, the column named), its raw excerpt
    the cells' bytes with the bad ones escaped; the batch's other rows read as usual."""
    import pyarrow as pa

    try:
        return _parquet_row(index, one.to_pylist()[0], duplicates, names, limits)
    except UnicodeDecodeError:
        pass
    cells, bad = {}, []
    for name, column in zip(names, one.columns):
        try:
            cells[name] = column.to_pylist()[0]
        except UnicodeDecodeError:
            bad.append(name)
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            cells[name] = column.cast(pa.large_binary()).to_pylist()[0].decode("utf-8", "backslashreplace")
    raw = json.dumps(cells, ensure_ascii=False, default=str)
    return RawRow(f"row {index + 1}", index, truncate(raw), error=RowError(
        "undecodable_bytes", f"column {bad[0]!r} holds bytes that are not UTF-8"), unparsed=True)


def read_parquet_rows(path: Path, limits: Limits) -> list[RawRow]:
    return list(iter_parquet_rows(path, limits))
