"""The canonical tables built as Arrow columns (canonical.py, issue 22): first occurrence
of a key wins and rows come in key order, as the dict-of-tuples build gave them; the
stage's files, built one table at a time, are the bytes io.write_table makes of the
in-memory frames (the files the pandas build wrote)."""

from __future__ import annotations

import random

import pyarrow as pa

from paretoflow.data.canonical import first_of_each
from paretoflow.data.curate import curate, run
from paretoflow.io import write_table
from tests.paretoflow.data.test_curate import GENERIC_MAP, make_params, root  # noqa: F401  (fixture)
from paretoflow.config import SourceConfig


def test_first_of_each_is_a_sorted_setdefault():
    rng = random.Random(0)
    for n in (0, 1, 2, 50, 2000):
        keys = [(rng.choice("abc\u00e9\u65e5"), rng.choice(["x", "y", "xy", "\U0001f600"])) for _ in range(n)]
        first: dict[tuple[str, str], int] = {}
        for index, key in enumerate(keys):
            first.setdefault(key, index)
        table = pa.table({"a": pa.array([k[0] for k in keys], pa.large_string()),
                          "b": pa.array([k[1] for k in keys], pa.large_string())})
        assert first_of_each(table).tolist() == [first[k] for k in sorted(first)]


def test_stage_files_are_the_frames_written(root, tmp_path):  # noqa: F811
    sources = [
        SourceConfig(path="builtin_train.jsonl", format="builtin", tags=["b", "a"]),
        SourceConfig(path="builtin_eval.jsonl", role="eval"),
        SourceConfig(path="helpsteer2.jsonl"),  # ratings, pairs derived across rows
        SourceConfig(path="ultrafeedback.jsonl"),
        SourceConfig(path="pku_saferlhf.jsonl"),
        SourceConfig(path="generic_pairs.csv", column_map=GENERIC_MAP),
    ]
    params = make_params(sources)
    frames = curate(params, root)
    staged = run(params, root)
    assert staged.report == frames.report
    for name in ("prompts", "ratings", "pairs", "responses"):
        table = frames.tables[name]
        assert len(table) > 0 and list(table[table.columns[0]]) == sorted(table[table.columns[0]]), name
        write_table(table, tmp_path / f"{name}.parquet")
        assert staged.paths[name].read_bytes() == (tmp_path / f"{name}.parquet").read_bytes(), name
    assert staged.counts == {**frames.report["tables"], "quarantine": len(frames.quarantine)}


def test_response_ids_come_back_as_put():
    from paretoflow.data.tables import ResponseIds
    from paretoflow.schema import response_id

    store = ResponseIds()
    ids = [response_id("p_x", f"text {i}") for i in range(5)]
    store.put(0, ids[:2])
    store.put(3, ids[2:])  # slot 2 skipped (a raw excerpt's)
    assert store.get(0, 2) == ids[:2] and store.get(3, 3) == ids[2:] and store.get(4, 0) == []
    assert len(store.data) == 6 * store.WIDTH
