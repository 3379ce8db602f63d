"""Curate's outputs are one unit; validate refuses a folder that is not (issue 22)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from paretoflow.config import CurateConfig, Params, SourceConfig
from paretoflow.data import curate, validate
from tests.paretoflow.data.test_bad_inputs import OBJECTIVES, good_pair, jsonl


def _params() -> Params:
    return Params(objectives=OBJECTIVES, curate=CurateConfig(
        sources=[SourceConfig(path="pairs.jsonl", format="generic", objective="helpfulness")], out_dir="curated"))


def test_a_crash_mid_write_leaves_the_previous_folder_whole(tmp_path, monkeypatch):
    (tmp_path / "pairs.jsonl").write_bytes(jsonl([good_pair(i) for i in range(3)]))
    first = curate.run(_params(), tmp_path)
    before = {p.name: p.read_bytes() for p in first.out_dir.iterdir()}
    (tmp_path / "pairs.jsonl").write_bytes(jsonl([good_pair(i) for i in range(40)]))
    from paretoflow.data import tables   # where the curated folder is written

    real = tables._write  # the canonical tables' writer (the responses have their own)
    written = []

    def killed_after_two_tables(table, path):
        if len(written) == 2:
            raise KeyboardInterrupt("killed mid-write")
        written.append(path)
        return real(table, path)

    monkeypatch.setattr(tables, "_write", killed_after_two_tables)
    with pytest.raises(KeyboardInterrupt):
        curate.run(_params(), tmp_path)
    assert {p.name: p.read_bytes() for p in first.out_dir.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_a_rerun_replaces_the_tables_and_keeps_validates_outputs(tmp_path):
    (tmp_path / "pairs.jsonl").write_bytes(jsonl([good_pair(i) for i in range(3)]))
    out = curate.run(_params(), tmp_path).out_dir
    (out / "data_docs").mkdir()
    (out / "data_docs" / "index.html").write_text("site")
    (out / "validation.json").write_text("{}")
    (tmp_path / "pairs.jsonl").write_bytes(jsonl([good_pair(i) for i in range(5)]))
    result = curate.run(_params(), tmp_path)
    assert len(pd.read_parquet(out / "pairs.parquet")) == 5 == result.report["tables"]["pairs"]
    assert (out / "data_docs" / "index.html").read_text() == "site" and (out / "validation.json").exists()


def test_validate_refuses_tables_that_disagree_with_the_report(tmp_path):
    (tmp_path / "pairs.jsonl").write_bytes(jsonl([good_pair(i) for i in range(3)]))
    out = curate.run(_params(), tmp_path).out_dir
    prompts = pd.read_parquet(out / "prompts.parquet")
    pd.concat([prompts, prompts]).to_parquet(out / "prompts.parquet", index=False)  # another run's table
    with pytest.raises(validate.InconsistentCuratedData, match=r"prompts.parquet holds 6 rows, report.json says 3"):
        validate.run(_params(), tmp_path)
    report = json.loads((out / "report.json").read_text())
    report["rows_quarantined"] = 7
    (out / "report.json").write_text(json.dumps(report))
    with pytest.raises(validate.InconsistentCuratedData, match="quarantine.parquet holds 0 rows"):
        validate.check_curate_report(out, validate.read_tables(out))
