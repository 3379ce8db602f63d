"""pandas' table layouts of DataFrame.to_json (the default orient="columns", index, split,
table) read as the tables they are: one row per index label, the same records as the
JSON Lines the same frame writes. Before, each was one row, quarantined."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from paretoflow.config import CurateConfig, Objective, Params, SourceConfig
from paretoflow.data.curate import run
from paretoflow.data.importers import SourceError, read_file
from paretoflow.data.pandas_json import table_rows
from paretoflow.data.rows import Limits

OBJECTIVES = [Objective(name="helpfulness")]


def frame() -> pd.DataFrame:
    rows = [{"prompt": f"How do I keep basil {i} alive indoors? é", "chosen": f"Give basil {i} sun and water.",
             "rejected": "Buy a new one.", "score": i / 4} for i in range(6)]
    rows[3]["chosen"] = None  # a missing answer: quarantined on its own row
    return pd.DataFrame(rows)


def records(path, **kwargs):
    result = read_file(path, OBJECTIVES, format="generic", objective="helpfulness", **kwargs)
    return (result.rows_in, [(r.messages, r.responses, r.pairs, r.metadata) for r in result.records],
            [(q.location, q.reason) for q in result.quarantined])


@pytest.mark.parametrize(("orient", "index"), [("columns", True), ("index", True), ("split", True), ("split", False),
                                                ("table", True), ("table", False)])
def test_each_layout_reads_as_the_frames_json_lines(tmp_path, orient, index):
    lines = tmp_path / "prefs.jsonl"
    frame().to_json(lines, orient="records", lines=True)
    path = tmp_path / "prefs.json"
    frame().to_json(path, orient=orient, **({} if index else {"index": False}))
    rows_in, kept, quarantined = records(path)
    assert (rows_in, kept) == records(lines)[:2]
    assert rows_in == 6 and len(kept) == 5
    assert quarantined == [("row 4", "missing_field")]  # named by its row, as JSON Lines names "line 4"


def test_default_to_json_through_curate_keeps_the_count(tmp_path):
    frame().to_json(tmp_path / "prefs.json", indent=2)  # the default orient, pretty-printed
    params = Params(objectives=OBJECTIVES, curate=CurateConfig(out_dir="curated", sources=[
        SourceConfig(path="prefs.json", format="generic", objective="helpfulness")]))
    report = run(params, tmp_path).report
    assert (report["rows_in"], report["rows_kept"], report["rows_quarantined"]) == (6, 5, 1)


def test_shapes_that_are_not_a_layout_are_not_guessed_at(tmp_path):
    one_record = {"prompt": {"text": "Hi"}, "chosen": {"text": "Hello"}, "rejected": {"text": "Go"}}
    other_labels = {"prompt": {"a": "Q1", "b": "Q2"}, "chosen": {"a": "A1", "b": "A2"}}
    both_decimal = {"0": {"1": "x"}, "1": {"1": "y"}}
    for doc in (one_record, other_labels, both_decimal, {"prompt": {"0": "Q"}, "chosen": "A"}, {}):
        assert table_rows(doc) is None, doc
    path = tmp_path / "one.json"
    path.write_text(json.dumps(one_record))
    assert records(path)[0] == 1  # read as before: one JSON Lines row (wrong_type)
    path.write_text('{"prompt": {"0": "Q1", "0": "Q2"}, "chosen": {"0": "A1", "0": "A2"}}')
    assert records(path)[2] == [("line 1", "ambiguous_key")]  # a label named twice: which row is meant?


def test_layout_rows_by_hand():
    assert table_rows({"prompt": {"0": "Q0", "1": "Q1"}, "chosen": {"0": "A0", "1": None}}) == (
        "columns", [{"prompt": "Q0", "chosen": "A0"}, {"prompt": "Q1", "chosen": None}])
    assert table_rows({"0": {"prompt": "Q0"}, "1": {"prompt": "Q1"}}) == ("index", [{"prompt": "Q0"}, {"prompt": "Q1"}])
    assert table_rows({"columns": ["prompt"], "index": [0], "data": [["Q0"]]}) == ("split", [{"prompt": "Q0"}])
    assert table_rows({"columns": ["prompt"], "data": [["Q0", "extra"]]}) is None  # a row longer than the columns
    assert table_rows({"schema": {"fields": [], "primaryKey": ["index"]}, "data": [{"index": 0, "prompt": "Q0"}]}) == (
        "table", [{"prompt": "Q0"}])


def test_records_wrapped_in_one_key_read_as_rows(tmp_path):
    # {"data": [...]}: one row, missing_field ("no field 'prompt'"), before.
    lines = tmp_path / "prefs.jsonl"
    frame().to_json(lines, orient="records", lines=True)
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"data": json.loads(frame().to_json(orient="records"))}))
    rows_in, kept, quarantined = records(path)
    assert (rows_in, kept) == records(lines)[:2] and rows_in == 6
    assert quarantined == [("row 4", "missing_field")]
    assert table_rows({"rows": [{"prompt": "Q"}, {"role": "user", "content": "Q"}]}) == (
        "wrapped", [{"prompt": "Q"}, {"role": "user", "content": "Q"}])


@pytest.mark.parametrize("doc", [
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},  # one record of turns
    {"conversations": [{"from": "human", "value": "Hi"}]},
    {"data": [], }, {"data": [{"prompt": "Q"}, "text"]}, {"version": "1", "data": [{"prompt": "Q"}]},
])
def test_one_key_documents_that_are_not_wrapped_records(doc):
    assert table_rows(doc) is None


def test_row_cap_binds(tmp_path):
    path = tmp_path / "prefs.json"
    frame().to_json(path)
    with pytest.raises(SourceError, match=r"prefs.json: more than 5 rows \(curate.max_file_rows\)"):
        records(path, limits=Limits(max_file_rows=5))


def test_parquet_of_a_filtered_frame_does_not_read_its_index_as_data(tmp_path):
    """df.to_parquet of a frame whose rows were filtered writes the unnamed index as a
    column `__index_level_0__`, which pandas reads back as the index: it is not data, and
    it was metadata of every pair. A named index is a column like any other."""
    df = frame()
    kept = df[df.index % 2 == 0].set_axis([10, 30, 50])  # not a RangeIndex: stored as a column
    kept.to_parquet(tmp_path / "kept.parquet")
    rows_in, records_read, _ = records(tmp_path / "kept.parquet")
    assert rows_in == 3 and [metadata for *_, metadata in records_read] == [{"score": 0.0}, {"score": 0.5}, {"score": 1.0}]
    kept.rename_axis("source_id").to_parquet(tmp_path / "named.parquet")
    assert [m["source_id"] for *_, m in records(tmp_path / "named.parquet")[1]] == [10, 30, 50]
