"""Rows of a Parquet file in bounded memory: caps checked from the footer before any page
is read, every batch sized from its dictionaries before any row is decoded (a dictionary
bomb is refused at the cap), then rows decoded one batch at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paretoflow.data.readers import _over_cap, _row
from paretoflow.data.rows import Limits, RawRow, RowError, SourceError, over_row_cap, truncate

PARQUET_BATCH_ROWS = 1024  # rows decoded at a time (pyarrow's iter_batches); bounds the overshoot of the cap


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


def _parquet_file(path: Path, limits: Limits) -> Any:
    """The opened file, its caps checked from the footer before any page is read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    strings = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
               or pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    parquet = pq.ParquetFile(path, read_dictionary=strings or None)
    meta = parquet.metadata
    if meta.num_rows > limits.max_file_rows:
        raise over_row_cap(path, limits.max_file_rows)
    declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if max(declared, path.stat().st_size) > limits.max_file_bytes:
        raise _over_cap(path, limits.max_file_bytes)
    return parquet


def iter_parquet_rows(path: Path, limits: Limits) -> Iterator[RawRow]:
    """Rows of a Parquet file, one batch of PARQUET_BATCH_ROWS decoded at a time."""
    import pyarrow as pa

    if not path.exists():
        raise FileNotFoundError(f"{path}: source file not found")
    cap = limits.max_file_bytes
    try:
        parquet = _parquet_file(path, limits)
        names = parquet.schema_arrow.names
        duplicates = sorted({n for n in names if names.count(n) > 1})
        # Dictionary-encoded values can decode far beyond the declared size. A first pass
        # sizes every batch from its dictionaries and indices (nothing decoded, nothing
        # kept) and refuses the file past the cap; only then are rows decoded, batch by
        # batch. Sizing while yielding rows let the rows read before the cap pile up as
        # records (a 1 GiB dictionary bomb peaked at 502 MB instead of 156 MB).
        decoded = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            decoded += _decoded_bytes(batch)
            if decoded > cap:
                raise _over_cap(path, cap)
        index = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
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
