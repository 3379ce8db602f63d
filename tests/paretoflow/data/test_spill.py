"""The text spill (issue 22): texts come back as they went in, whatever their characters
and however the buffered writes fall; curate that streams records through it writes the
same tables as curate over files imported whole."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from paretoflow.config import Objective, Params, SourceConfig
from paretoflow.data import spill as spill_module
from paretoflow.data.curate import curate, curate_files, import_sources
from paretoflow.data.spill import TextSpill

OBJECTIVES = [Objective(name="helpfulness")]


def test_texts_come_back_as_put(monkeypatch):
    monkeypatch.setattr(spill_module, "WRITE_BUFFER_BYTES", 10)  # flush between most puts
    rng = random.Random(0)
    texts = ["", "a", "naïve café", "日本語", "\U0001f600 emoji", "lone \udc80 surrogate", "x" * 5000]
    texts += ["".join(rng.choice("ab \n\u00e9") for _ in range(rng.randint(0, 40))) for _ in range(200)]
    with TextSpill() as spill:
        starts = [spill.put_all(texts[i:i + 3]) for i in range(0, len(texts), 3)]
        assert starts == list(range(0, len(texts), 3))
        assert len(spill) == len(texts)
        order = list(range(len(texts)))
        rng.shuffle(order)  # read back out of order, as the responses table does (by id)
        assert [spill.get(i) for i in order] == [texts[i] for i in order]


def test_a_failed_background_write_is_raised_to_the_caller(monkeypatch):
    monkeypatch.setattr(spill_module, "WRITE_BUFFER_BYTES", 1)

    def full_disk(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spill_module.os, "write", full_disk)
    with TextSpill() as spill:
        spill.put_all(["a", "b"])
        with pytest.raises(OSError, match="writing the text spill failed: .*No space left"):
            spill.get(0)


def test_streamed_curate_equals_curate_of_imported_files(tmp_path):
    rng = random.Random(1)
    prompts = [f"prompt {i} " + " ".join(rng.choice("abcdefg") for _ in range(12)) for i in range(30)]
    rows = [{"prompt": rng.choice(prompts), "chosen": f"good {i} " + "x " * rng.randint(3, 9),
             "rejected": f"bad {i} " + "y " * rng.randint(3, 9)} for i in range(200)]
    rows += rows[:10]  # exact duplicates
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    params = Params(objectives=OBJECTIVES, curate={
        "sources": [SourceConfig(path="pairs.jsonl", format="generic", objective="helpfulness", tags=["t"])]})
    streamed = curate(params, tmp_path)
    files, skipped = import_sources(params, tmp_path)
    whole = curate_files(files, params.curate, skipped=skipped)
    assert streamed.report == whole.report
    for name, table in whole.tables.items():
        pd.testing.assert_frame_equal(streamed.tables[name], table)
    pd.testing.assert_frame_equal(streamed.quarantine, whole.quarantine)
    assert streamed.report["reasons"] == {"duplicate": 10}
    assert len(files[0].records) == 210 - 10  # curate_files read the records without changing them
    assert all(record.responses for record in files[0].records)


def _pairs_file(tmp_path, n: int) -> Params:
    rows = [{"prompt": f"question number {i % 7} about things", "chosen": f"a good answer {i} here",
             "rejected": f"a worse answer {i} there"} for i in range(n)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return Params(objectives=OBJECTIVES, curate={
        "sources": [SourceConfig(path="pairs.jsonl", format="generic", objective="helpfulness")]})


def test_stage_writes_responses_from_the_spill_in_batches(tmp_path, monkeypatch):
    from paretoflow.data import tables
    from paretoflow.data.curate import run
    from paretoflow.io import write_table

    params = _pairs_file(tmp_path, 40)
    in_memory = curate(params, tmp_path).tables["responses"]
    one_batch = run(params, tmp_path)
    write_table(in_memory, tmp_path / "whole.parquet")  # what the stage wrote before the spill
    assert one_batch.paths["responses"].read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    monkeypatch.setattr(tables, "RESPONSE_BATCH_ROWS", 7)
    batched = run(params, tmp_path)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(batched.paths["responses"]).metadata.num_row_groups == -(-80 // 7)
    pd.testing.assert_frame_equal(pd.read_parquet(batched.paths["responses"]), in_memory)
