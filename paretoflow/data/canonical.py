"""The four canonical tables (prompts, responses, ratings, pairs) of the rows curation kept,
built as Arrow columns, and the counts the report takes from them.

Each table's keys are sorted and deduplicated by Arrow compute (a stable sort, so the first
occurrence of a key wins, as the dict's `setdefault` of the tuple build did); every other
column is then made straight from the rows, one column at a time (`_column`: the bytes of
a str column in one bytearray; response ids hex-digited by numpy from tables.ResponseIds),
and taken into key order: no Python object per table row outlives the column being made.
The tuple build (a dict of tuples per table, then pandas frames and their astype copies)
peaked 1.5 GB above the rows it read at 1M pairs (docs/measurements.md).

The files written from these tables are byte-identical to the pandas frames' (str
columns are written as large_string, floats as double, one chunk per column, rows in key
order: Arrow compares UTF-8 bytes, which orders strings as Python compares code points).
"""

from __future__ import annotations

import json
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from paretoflow.data.dedup import split_of
from paretoflow.schema import TABLES, empty_table, messages_json, metadata_json, pair_id

if TYPE_CHECKING:
    from paretoflow.data.importers import ImportedFile
    from paretoflow.data.spill import TextSpill
    from paretoflow.data.tables import _Row
    from paretoflow.stages.curate import CurateConfig

TEXT = pa.large_string()  # what pandas' str columns become in the files (io.write_table)
FLOAT = pa.float64()
NO_METADATA = metadata_json({})
_NO_TAGS = json.dumps([])
SPLITS = ("train", "val", "test")


def last_user_turn(messages: list[dict[str, str]]) -> str:
    return next(t["content"] for t in reversed(messages) if t["role"] == "user")


def empty_arrow(name: str) -> pa.Table:
    """The empty table as write_table writes the empty frame (schema.empty_table)."""
    return pa.Table.from_pandas(empty_table(name), preserve_index=False).replace_schema_metadata(None)


def _column(values: Iterable[Any], size: int, kind: pa.DataType = TEXT) -> pa.Array:
    """A column of `size` values (str or None for TEXT, else numbers)."""
    if kind != TEXT:  # from_pandas: a NaN float is null, as pandas' float64 column became when written
        return pa.array(values, kind, size=size, from_pandas=True)
    # A str column's bytes are gathered in one bytearray here, not by pa.array: its builder
    # grows the data buffer by doubling and copying through Arrow's pool, which keeps what
    # it frees; 250k texts (85 MB) raised RSS by 234 MB at its peak (measured). A bytearray
    # grows in place (realloc: mremap'd pages once big) and is the array's buffer as is.
    data, ends, nulls = bytearray(), array("q", [0]), []
    for value in values:
        if value is None:
            nulls.append(len(ends) - 1)
        else:
            data += value.encode("utf-8")
        ends.append(len(data))
    if len(ends) != size + 1:
        raise ValueError(f"column of {len(ends) - 1} values, {size} expected")
    validity = None
    if nulls:
        mask = np.ones(size, dtype=bool)
        mask[nulls] = False
        validity = pa.py_buffer(np.packbits(mask, bitorder="little"))
    return pa.LargeStringArray.from_buffers(size, pa.py_buffer(ends), pa.py_buffer(data), validity, len(nulls))


def spilled_column(texts: TextSpill, at: np.ndarray) -> pa.Array:
    """The str column of the spilled texts at these spill indices, made from their bytes
    as stored: no str is decoded a text to be encoded again (the responses are most of a
    run's bytes). Validated as UTF-8, as _column's encode would have refused a lone
    surrogate (the spill stores one; readers quarantine such rows before)."""
    data, ends = bytearray(), array("q", [0])
    for index in memoryview(at):
        data += texts.get_bytes(index)
        ends.append(len(data))
    column = pa.LargeStringArray.from_buffers(len(at), pa.py_buffer(ends), pa.py_buffer(data), None, 0)
    column.validate(full=True)
    return column


def _metadata(row: _Row) -> str:
    return metadata_json(row.record.metadata) if row.record.metadata else NO_METADATA


def first_of_each(keys: pa.Table) -> np.ndarray:
    """Positions (int64) of the first occurrence of each distinct key (a row of `keys`), in
    ascending key order: Arrow's sort is stable, so equal keys keep their input order and
    the first of each run is the first occurrence."""
    order = pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in keys.column_names])
    n = len(order)
    if n < 2:
        return order.to_numpy().astype(np.int64)
    ordered = keys.take(order)
    new = np.zeros(n, dtype=bool)
    new[0] = True
    for column in ordered.columns:
        new[1:] |= pc.not_equal(column.slice(1), column.slice(0, n - 1)).to_numpy()
    del ordered
    return order.to_numpy()[new].astype(np.int64)


def _table(name: str, keys: pa.Table, columns: dict[str, Callable[[], pa.Array]],
           spill_at: np.ndarray | None = None, texts: TextSpill | None = None) -> pa.Table:
    """A table from its key columns and a maker for each other column (in input order),
    deduplicated and in key order; each column is made and taken before the next.
    `spill_at`: the text column's spill indices (responses), kept as int64 when `texts`
    is None, else read back in key order (only the texts kept)."""
    if keys.num_rows == 0:
        return empty_arrow(name)
    keep = first_of_each(keys)
    indices = pa.array(keep)
    out = {}
    for column in TABLES[name]:
        if column == "text" and spill_at is not None:
            at = spill_at[keep]
            out[column] = pa.array(at) if texts is None else spilled_column(texts, at)
            continue
        made = keys[column] if column in keys.column_names else columns[column]()
        out[column] = made.take(indices)
        del made
    return pa.table(out)


def _prompts(rows: Sequence[_Row], config: CurateConfig) -> pa.Table:
    """One row per distinct prompt (its first row's messages and source), by prompt id:
    distinct prompts are few (4 rows a prompt in the bench), so they are found by a dict."""
    if not rows:
        return empty_arrow("prompts")
    eval_prompts = {r.prompt_id for r in rows if r.role == "eval"}
    first: dict[str, _Row] = {}
    tags: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        first.setdefault(row.prompt_id, row)
        if row.record.tags:  # most rows have none: no set per prompt then
            tags[row.prompt_id].update(row.record.tags)
    ids = sorted(first)
    n = len(ids)
    at = [first[p] for p in ids]
    del first
    return pa.table({
        "prompt_id": _column(ids, n),
        "messages": _column((messages_json(r.messages) for r in at), n),
        "text": _column((last_user_turn(r.messages) for r in at), n),
        "source": _column((r.record.source for r in at), n),
        "split": _column(("test" if p in eval_prompts else split_of(p, config.split_fractions) for p in ids), n),
        "tags": _column((json.dumps(sorted(tags[p]), ensure_ascii=False) if p in tags else _NO_TAGS for p in ids), n),
    })


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _ids_at(rows: Sequence[_Row], at: np.ndarray) -> pa.Array:
    """The response ids at these spill indices as a column, hex digits made by numpy from
    the rows' ResponseIds (one bytearray: no str a response)."""
    store = rows[0].ids if rows else None
    width = 10 if store is None else store.WIDTH
    digests = np.frombuffer(store.data if store is not None else bytes(0), dtype=np.uint8).reshape(-1, width)[at]
    chars = np.empty((len(at), 2 + 2 * width), dtype=np.uint8)
    chars[:, 0], chars[:, 1] = ord("r"), ord("_")
    chars[:, 2::2], chars[:, 3::2] = _HEX[digests >> 4], _HEX[digests & 15]
    offsets = np.arange(len(at) + 1, dtype=np.int64) * chars.shape[1]
    return pa.LargeStringArray.from_buffers(len(at), pa.py_buffer(offsets), pa.py_buffer(chars))


def _one_store(rows: Sequence[_Row]) -> None:
    if rows and any(r.ids is not rows[0].ids for r in rows):
        raise ValueError("rows of one curation share one ResponseIds (curate_rows.RowMaker)")


def _responses(rows: Sequence[_Row], texts: TextSpill | None) -> pa.Table:
    _one_store(rows)
    counts = np.fromiter((r.n_responses for r in rows), dtype=np.int64, count=len(rows))
    starts = np.fromiter((r.text_start for r in rows), dtype=np.int64, count=len(rows))
    row_of = np.repeat(np.arange(len(rows)), counts)  # each response's row
    spill_at = starts[row_of] + np.arange(len(row_of)) - np.repeat(np.cumsum(counts) - counts, counts)
    del counts, starts

    def by_row(value: Callable[[_Row], str]) -> Callable[[], pa.Array]:
        # One value a row, indexed by each response's row: the responses table takes the
        # indices only. The stage writes the values batch by batch (write_spilled_responses),
        # so 2M responses hold 16 MB of indices, not 60 MB of ids and 50 of origins a column.
        return lambda: pa.DictionaryArray.from_arrays(pa.array(row_of), _column((value(r) for r in rows), len(rows)))

    keys = pa.table({"response_id": _ids_at(rows, spill_at)})
    table = _table("responses", keys, {
        "prompt_id": by_row(lambda r: r.prompt_id),
        "origin": by_row(lambda r: r.record.source),
    }, spill_at, texts)
    return table if texts is None else dense(table)


def dense(table: pa.Table) -> pa.Table:
    """The table with its dictionary columns (the responses' by-row values) as values."""
    return pa.table({name: column.cast(TEXT) if pa.types.is_dictionary(column.type) else column
                     for name, column in zip(table.column_names, table.columns, strict=True)})


def _ratings(rows: Sequence[_Row]) -> pa.Table:
    _one_store(rows)
    n = sum(len(r.record.ratings) for r in rows)

    def each(value: Callable[[_Row, Any], Any], kind: pa.DataType = TEXT) -> pa.Array:
        return _column((value(row, rating) for row in rows for rating in row.record.ratings), n, kind)

    keys = pa.table({
        "response_id": _ids_at(rows, np.fromiter((row.text_start + rating.response_index for row in rows
                                                   for rating in row.record.ratings), dtype=np.int64, count=n)),
        "objective": each(lambda row, rating: rating.objective),
        "rater": each(lambda row, rating: rating.rater),
    })
    return _table("ratings", keys, {
        "value": lambda: each(lambda row, rating: rating.value, FLOAT),
        "scale_min": lambda: each(lambda row, rating: rating.scale_min, FLOAT),
        "scale_max": lambda: each(lambda row, rating: rating.scale_max, FLOAT),
        "metadata": lambda: each(lambda row, rating: _metadata(row)),
    })


def _pairs(rows: Sequence[_Row], files: Sequence[ImportedFile]) -> pa.Table:
    """Every row's pairs, then the pairs derived from ratings (a pair given by a row stays
    as given: the first occurrence of an id wins)."""
    derived = _derived_pairs(rows, files)
    n = sum(len(r.record.pairs) for r in rows) + len(derived)
    columns = TABLES["pairs"]

    def each(value: Callable[[_Row, Any], Any], column: str, kind: pa.DataType = TEXT) -> pa.Array:
        at = columns.index(column)
        explicit = (value(row, pair) for row in rows for pair in row.record.pairs)
        return _column(chain(explicit, (d[at] for d in derived)), n, kind)

    _one_store(rows)

    def response_column(side: str, column: str) -> pa.Array:  # chosen_id / rejected_id
        at = np.fromiter((row.text_start + getattr(pair, side) for row in rows for pair in row.record.pairs),
                         dtype=np.int64, count=n - len(derived))
        ids = _ids_at(rows, at)
        return pa.concat_arrays([ids, pa.array([d[columns.index(column)] for d in derived], TEXT)]) if derived else ids

    def explicit_ids() -> Iterator[str]:
        for row in rows:
            ids = row.response_ids if row.record.pairs else ()
            for pair in row.record.pairs:
                yield pair_id(row.prompt_id, ids[pair.chosen_index], ids[pair.rejected_index], pair.objective)

    keys = pa.table({"pair_id": _column(chain(explicit_ids(), (d[0] for d in derived)), n)})
    return _table("pairs", keys, {
        "prompt_id": lambda: each(lambda row, pair: row.prompt_id, "prompt_id"),
        "chosen_id": lambda: response_column("chosen_index", "chosen_id"),
        "rejected_id": lambda: response_column("rejected_index", "rejected_id"),
        "objective": lambda: each(lambda row, pair: pair.objective, "objective"),
        "margin": lambda: each(lambda row, pair: pair.margin, "margin", FLOAT),
        "source": lambda: each(lambda row, pair: row.record.source, "source"),
        "metadata": lambda: each(lambda row, pair: _metadata(row), "metadata"),
    })


def _derived_pairs(rows: Sequence[_Row], files: Sequence[ImportedFile]) -> list[tuple]:
    """Pairs derived from ratings of responses to the same prompt (HelpSteer2, generic):
    every ordered pair with a strictly better rating (higher; lower for an objective to
    minimize), margin = the rating difference, as tuples in PAIR_COLUMNS order (few: only
    files whose format derives pairs)."""
    # (file, prompt, objective, rater) → {response_id: value}, the first value of each response
    groups: dict[tuple[int, str, str, str], dict[str, float]] = defaultdict(dict)
    for row in rows:
        if files[row.file_index].derive_pairs:
            for rating in row.record.ratings:
                key = (row.file_index, row.prompt_id, rating.objective, rating.rater)
                groups[key].setdefault(row.response_ids[rating.response_index], rating.value)
    out = []
    for (file_index, pid, objective, _rater), values in sorted(groups.items()):
        ordered = sorted(values.items())
        for i, (rid_a, value_a) in enumerate(ordered):
            for rid_b, value_b in ordered[i + 1:]:
                if value_a == value_b:
                    continue
                a_better = (value_a < value_b) if objective in files[file_index].minimized else (value_a > value_b)
                chosen, rejected = (rid_a, rid_b) if a_better else (rid_b, rid_a)
                out.append((pair_id(pid, chosen, rejected, objective), pid, chosen, rejected, objective,
                            abs(value_a - value_b), files[file_index].path, NO_METADATA))
    return out


TABLE_NAMES = ("prompts", "responses", "ratings", "pairs")
# The columns the report counts (table_counts): what the stage keeps of a table once written.
COUNTED = {"prompts": ["prompt_id", "split"], "ratings": ["objective"], "pairs": ["prompt_id", "objective"]}


def build_table(name: str, rows: Sequence[_Row], files: Sequence[ImportedFile], config: CurateConfig,
                texts: TextSpill | None) -> pa.Table:
    """One canonical table of the kept rows; `texts` None: the responses table's text
    column holds the spill index of each text (int64; write_spilled_responses reads them)."""
    if name == "prompts":
        return _prompts(rows, config)
    if name == "responses":
        return _responses(rows, texts)
    if name == "ratings":
        return _ratings(rows)
    return _pairs(rows, files)


def build_tables(rows: Sequence[_Row], files: Sequence[ImportedFile], config: CurateConfig,
                 texts: TextSpill | None) -> dict[str, pa.Table]:
    return {name: build_table(name, rows, files, config, texts) for name in TABLE_NAMES}


def as_frame(name: str, table: pa.Table) -> Any:
    """The pandas frame of a table, with schema.empty_table's dtypes (curate in memory)."""
    return table.to_pandas().astype(empty_table(name).dtypes.to_dict())


def _counts(column: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    return {v["values"]: v["counts"] for v in pc.value_counts(column).to_pylist()} if len(column) else {}


def table_counts(sizes: dict[str, int], prompts: pa.Table, pairs: pa.Table, ratings: pa.Table) -> dict[str, Any]:
    """The report's counts of the tables (`sizes`: rows per table; the others need only
    their COUNTED columns): prompts per split, pairs per objective and split (a pair's
    split is its prompt's), ratings per objective."""
    per_objective: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0))
    if pairs.num_rows:
        at = pc.index_in(pairs["prompt_id"], value_set=prompts["prompt_id"].combine_chunks())
        grouped = pa.table({"objective": pairs["objective"], "split": prompts["split"].take(at)}) \
            .group_by(["objective", "split"]).aggregate([("split", "count")])
        for objective, split, count in zip(*(grouped[c].to_pylist() for c in ("objective", "split", "split_count")),
                                          strict=True):
            per_objective[objective][split] += count
    splits = _counts(prompts["split"])
    return {
        "tables": {name: sizes[name] for name in TABLE_NAMES},
        "prompts_per_split": {s: splits.get(s, 0) for s in SPLITS},
        "pairs_per_objective_split": {k: per_objective[k] for k in sorted(per_objective)},
        "ratings_per_objective": dict(sorted(_counts(ratings["objective"]).items())),
    }
