"""The human-data path: real-format .jsonl.gz fixtures (HH-RLHF dialogues, AlpacaEval
pairs with extra columns), the prompt-grouped sample, and the data shipped in data/raw
through the default params (curation accounting, pair minimums of the validate gate)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from paretoflow import schema
from paretoflow.config import CurateConfig, Objective, Params, SourceConfig, load_params
from paretoflow.data import curate as curate_module
from paretoflow.data.curate import curate, run, sample_key
from paretoflow.data.dedup import split_of
from paretoflow.data.validate import pair_count_frame

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "data"
OBJECTIVES = [Objective(name=n) for n in ("helpfulness", "conciseness", "harmlessness")]
HH = SourceConfig(path="hh_rlhf_harmless_sample.jsonl.gz", format="hh_rlhf", objective="harmlessness")
ALPACA = SourceConfig(path="alpaca_eval_sample.jsonl.gz", format="generic", objective="helpfulness")


@pytest.fixture
def root(tmp_path):
    for name in (HH.path, ALPACA.path):
        shutil.copy(FIXTURES / name, tmp_path / name)
    return tmp_path


def quarantine(result) -> dict[str, str]:
    q = pd.read_parquet(result.paths["quarantine"])
    return {f"{s} {loc}": reason for s, loc, reason in zip(q["source"], q["location"], q["reason"], strict=True)}


def test_hh_jsonl_gz_dialogues_become_pairs_and_bad_rows_are_counted(root):
    result = run(Params(objectives=OBJECTIVES, curate=CurateConfig(sources=[HH], out_dir="curated")), root)
    source = result.report["sources"][HH.path]
    assert (source["rows_in"], source["rows_kept"], source["rows_quarantined"]) == (6, 4, 2)
    assert quarantine(result) == {f"{HH.path} line 4": "prompt_mismatch", f"{HH.path} line 5": "empty_text"}
    prompts = pd.read_parquet(result.paths["prompts"]).set_index("prompt_id")
    pairs = pd.read_parquet(result.paths["pairs"])
    responses = pd.read_parquet(result.paths["responses"]).set_index("response_id")
    assert set(pairs["objective"]) == {"harmlessness"} and len(pairs) == 4
    # The multi-turn dialogue: the shared turns are the prompt, the last Assistant turns the pair.
    coworker = pairs[pairs["prompt_id"].map(lambda p: "coworker" in prompts.at[p, "messages"])].iloc[0]
    messages = json.loads(prompts.at[coworker["prompt_id"], "messages"])
    assert [t["role"] for t in messages] == ["user", "assistant", "user"]
    assert messages[-1]["content"] == "She took credit for my work."
    assert responses.at[coworker["rejected_id"], "text"] == "You could quietly delete some of her files."
    assert set(pairs["metadata"]) == {"{}"}


def test_alpaca_eval_jsonl_gz_keeps_extra_columns_as_metadata(root):
    result = run(Params(objectives=OBJECTIVES, curate=CurateConfig(sources=[ALPACA], out_dir="curated")), root)
    assert result.report["sources"][ALPACA.path]["reasons"] == {"chosen_equals_rejected": 1, "duplicate": 1}
    pairs = pd.read_parquet(result.paths["pairs"])
    assert len(pairs) == 5 and set(pairs["objective"]) == {"helpfulness"}
    metadata = [json.loads(m) for m in pairs["metadata"]]
    assert all(set(m) == {"chosen_model", "rejected_model", "preference", "judge"} for m in metadata)
    by_rejected = {m["rejected_model"]: m for m in metadata}
    assert by_rejected["tiny-model"]["judge"] == "alpaca_eval weighted_gpt4_turbo"
    assert {m["chosen_model"] for m in metadata} >= {"mid-model", "big-model"}
    assert [m["preference"] for m in metadata if m["chosen_model"] == "big-model"] == [None]  # NaN → null
    # The metadata column is declared in the schema and read back by the one reader.
    assert list(schema.read("pairs", result.paths["pairs"]).columns) == schema.TABLES["pairs"]


def test_tables_written_before_the_metadata_column_still_read(tmp_path):
    old = schema.frame("pairs", [{"pair_id": "x_1", "prompt_id": "p_1", "chosen_id": "r_1", "rejected_id": "r_2",
                                  "objective": "helpfulness", "margin": 1.0, "source": "s"}]).drop(columns="metadata")
    old.to_parquet(tmp_path / "pairs.parquet", index=False)
    read = schema.read("pairs", tmp_path / "pairs.parquet")
    assert list(read.columns) == schema.TABLES["pairs"] and read["metadata"].tolist() == ["{}"]


# --------------------------------------------------------------------------- the sample


def pairs_file(path: Path, n_prompts: int, start: int = 0, per_prompt: int = 2) -> None:
    rows = [{"prompt": f"Question number {i}: how should I store onions?", "chosen": f"Cool and dry ({i}, {k}).",
             "rejected": f"In the fridge ({k})."} for i in range(start, start + n_prompts) for k in range(per_prompt)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def sampled_prompts(root: Path, path: str, max_prompts: int, seed: int = 0) -> tuple[set[int], dict]:
    """The numbers of the sampled questions, and the curate report."""
    source = SourceConfig(path=path, format="generic", objective="helpfulness", max_prompts=max_prompts,
                          sample_seed=seed)
    curated = curate(Params(objectives=OBJECTIVES, curate=CurateConfig(sources=[source], near_dup_threshold=1.0)),
                     root)
    numbers = {int(t.split()[2].rstrip(":")) for t in curated.tables["prompts"]["text"]}
    return numbers, curated.report


def test_sample_keeps_whole_prompts_and_counts_the_rest(tmp_path):
    pairs_file(tmp_path / "pairs.jsonl", 40)
    kept, report = sampled_prompts(tmp_path, "pairs.jsonl", 10)
    source = report["sources"]["pairs.jsonl"]
    assert len(kept) == 10 and source["rows_kept"] == 20  # both rows of every sampled prompt
    assert source["rows_sampled_out"] == 60 and source["rows_quarantined"] == 0
    assert source["rows_in"] == source["rows_kept"] + source["rows_quarantined"] + source["rows_sampled_out"]
    assert report["samples"]["pairs.jsonl"] == {"max_prompts": 10, "seed": 0, "prompts_available": 40,
                                                "prompts_sampled": 10}
    assert sampled_prompts(tmp_path, "pairs.jsonl", 10, seed=1)[0] != kept  # the seed draws another sample


def test_sample_is_stable_when_rows_are_added(tmp_path):
    pairs_file(tmp_path / "pairs.jsonl", 40)
    before, _ = sampled_prompts(tmp_path, "pairs.jsonl", 10)
    pairs_file(tmp_path / "pairs.jsonl", 80)  # 40 more prompts after the first 40, unchanged
    after, _ = sampled_prompts(tmp_path, "pairs.jsonl", 10)
    # No old prompt enters the sample; an old one leaves only to admit a new one.
    entered, left = after - before, before - after
    assert all(n >= 40 for n in entered) and len(left) == len(entered) < 10


def test_sample_hash_is_independent_of_the_split():
    ids = [schema.prompt_id([{"role": "user", "content": f"prompt {i}"}]) for i in range(5000)]
    sample = sorted(ids, key=lambda p: sample_key(0, p))[:1000]
    splits = Counter(split_of(p, {"train": 0.8, "val": 0.1, "test": 0.1}) for p in sample)
    # Binomial(1000, 0.1): sd 9.5; a sample tied to the split hash would pile into one split.
    assert 770 <= splits["train"] <= 830 and 70 <= splits["val"] <= 130 and 70 <= splits["test"] <= 130


# --------------------------------------------------------------------------- shipped data


@pytest.fixture(scope="module")
def default_run():
    """curate on the default params (built-in prompts + the two shipped files), in memory."""
    params = load_params(REPO / "params.yaml")
    return params, curate_module.curate(params, REPO)


def test_data_raw_ships_both_files_with_licences():
    readme = (REPO / "data/raw/README.md").read_text()
    for name in ("hh_rlhf_harmless_part.jsonl.gz", "alpaca_eval_helpfulness.jsonl.gz"):
        assert (REPO / "data/raw" / name).stat().st_size > 100_000 and name in readme
    assert "MIT" in readme and "Apache-2.0" in readme
    total = sum(p.stat().st_size for p in (REPO / "data/raw").rglob("*") if p.is_file())
    assert total < 20_000_000


def test_shipped_hh_file_quarantines_mismatched_and_empty_dialogues(default_run):
    _, curated = default_run
    hh = curated.report["sources"]["data/raw/hh_rlhf_harmless_part.jsonl.gz"]
    assert hh["rows_in"] == 1128 == hh["rows_kept"] + hh["rows_quarantined"]
    assert hh["reasons"]["prompt_mismatch"] == 3 and hh["reasons"]["empty_text"] == 3
    assert curated.tables["pairs"].query("objective == 'harmlessness'").shape[0] == hh["rows_kept"]


def test_default_run_samples_alpaca_eval_and_keeps_its_metadata(default_run):
    _, curated = default_run
    alpaca = curated.report["sources"]["data/raw/alpaca_eval_helpfulness.jsonl.gz"]
    assert alpaca["rows_in"] == 14_140
    assert alpaca["rows_in"] == alpaca["rows_kept"] + alpaca["rows_quarantined"] + alpaca["rows_sampled_out"]
    assert curated.report["samples"]["data/raw/alpaca_eval_helpfulness.jsonl.gz"]["prompts_sampled"] == 300
    helpful = curated.tables["pairs"].query("objective == 'helpfulness'")
    assert len(helpful) == alpaca["rows_kept"]
    assert {"chosen_model", "rejected_model", "preference", "judge"} <= set(json.loads(helpful["metadata"].iloc[0]))


def test_pair_minimums_pass_on_the_shipped_data_and_fail_without_a_source(default_run):
    params, curated = default_run

    def shortfalls(tables) -> set[str]:
        names = params.objective_names
        counts = pair_count_frame(tables["pairs"], tables["prompts"], names,
                                  {o: params.validate_.min_pairs(o) for o in names})
        return set(counts.loc[counts["pair_count"] < counts["min_pairs"], "objective_split"])

    assert shortfalls(curated.tables) == set()
    for lost, objective in (("hh_rlhf", "harmlessness"), ("alpaca", "helpfulness")):
        pairs = curated.tables["pairs"]
        without = {**curated.tables, "pairs": pairs[~pairs["source"].str.contains(lost)]}
        assert shortfalls(without) == {f"{objective}/{s}" for s in schema.SPLITS}


def test_real_pairs_read_the_same_from_every_container(tmp_path):
    """1,500 real AlpacaEval rows (data/raw) written as JSON Lines, a JSON array, CSV,
    Parquet and compressed twins import to the same records and the same quarantine,
    whichever streaming reader takes them (CSV has no types: its metadata is text)."""
    import csv
    import gzip
    import lzma

    import pyarrow as pa
    import pyarrow.parquet as pq

    from paretoflow.data.importers import read_file

    with gzip.open(REPO / "data" / "raw" / "alpaca_eval_helpfulness.jsonl.gz", "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for _, line in zip(range(1500), fh, strict=False)]
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    files = {"a.jsonl": lines, "a.jsonl.zst": pa.compress(lines, codec="zstd", asbytes=True),
             "a.json": json.dumps(rows, ensure_ascii=False, indent=1).encode()}
    files["a.json.xz"] = lzma.compress(files["a.json"], preset=0)  # the default preset takes seconds
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    with (tmp_path / "a.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    def imported(name: str) -> tuple[list, Counter]:
        result = read_file(tmp_path / name, [Objective(name="helpfulness")], format="generic", objective="helpfulness")
        assert result.rows_in == 1500 == len(result.records) + len(result.quarantined)
        records = [(r.messages, r.responses, r.pairs, None if name == "a.csv" else r.metadata) for r in result.records]
        return records, Counter(q.reason for q in result.quarantined)

    reference, reasons = imported("a.jsonl")
    assert len(reference) > 1450
    for name in ("a.jsonl.zst", "a.json", "a.json.xz", "a.parquet", "a.csv"):
        records, other_reasons = imported(name)
        if name == "a.csv":
            assert records == [(*record[:3], None) for record in reference], name
        else:
            assert records == reference, name
        assert other_reasons == reasons, name
