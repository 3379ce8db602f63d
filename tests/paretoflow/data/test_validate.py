"""The validation gate: a clean canonical dataset passes; each planted defect fails the
expectation meant for it, naming table, column and offending id; docs are written either way.

Great Expectations costs ~4 s to import and ~1.5 s a run on 2 cores, so the runs happen
once per module in fixtures and the tests read their results.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from paretoflow import schema
from paretoflow.cli import main as cli_main
from paretoflow.data import validate


def _prompt(text: str, split: str, history: list[dict[str, str]] | None = None) -> dict:
    messages = (history or []) + [{"role": "user", "content": text}]
    return {
        "prompt_id": schema.prompt_id(messages),
        "messages": schema.messages_json(messages),
        "text": text,
        "source": "builtin",
        "split": split,
        "tags": json.dumps(["category:test"]),
    }


def clean_tables(prompts_per_split: int = 6) -> dict[str, pd.DataFrame]:
    """Prompts in every split, two responses each, ratings for all objectives, a pair per
    prompt for each objective: every expectation should hold."""
    prompts, responses, ratings, pairs = [], [], [], []
    objectives = ["helpfulness", "conciseness", "harmlessness"]
    for i in range(prompts_per_split * len(schema.SPLITS)):
        history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}] if i == 0 else None
        p = _prompt(f"How do I water plant number {i} in winter?", schema.SPLITS[i % 3], history)
        prompts.append(p)
        ids = []
        for k, text in enumerate([f"Water plant {i} weekly.", f"Water plant {i} every ten days, less in cold rooms."]):
            rid = schema.response_id(p["prompt_id"], text)
            ids.append(rid)
            responses.append({"response_id": rid, "prompt_id": p["prompt_id"], "text": text, "origin": "test"})
            for objective in objectives:
                ratings.append({"response_id": rid, "objective": objective, "value": 0.25 + 0.5 * k,
                                "scale_min": 0.0, "scale_max": 1.0, "rater": "judge"})
            # A rater on its own 0-4 Likert scale: inside its scale, outside the objective's.
            ratings.append({"response_id": rid, "objective": "helpfulness", "value": 3.0 + k,
                            "scale_min": 0.0, "scale_max": 4.0, "rater": "likert"})
        for objective in objectives:
            pairs.append({"pair_id": schema.pair_id(p["prompt_id"], ids[1], ids[0], objective),
                          "prompt_id": p["prompt_id"], "chosen_id": ids[1], "rejected_id": ids[0],
                          "objective": objective, "margin": 0.5, "source": "test"})
    quarantine = [{"source": "data/raw/x.jsonl", "location": "line 3", "reason": "empty_text", "detail": "", "raw": "{}"}]
    return {
        "prompts": schema.frame("prompts", prompts),
        "responses": schema.frame("responses", responses),
        "ratings": schema.frame("ratings", ratings),
        "pairs": schema.frame("pairs", pairs),
        "quarantine": schema.frame("quarantine", quarantine),
    }


def plant_defects(tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Break the clean tables in known ways; returns defect name -> offending id."""
    prompts, responses = tables["prompts"], tables["responses"]
    ratings, pairs = tables["ratings"], tables["pairs"]
    planted = {}
    # Same prompt in two splits (a train/test leak): duplicate row 1 into another split.
    leak = prompts.iloc[[1]].assign(split="test")
    tables["prompts"] = prompts = pd.concat([prompts, leak], ignore_index=True)
    planted["leak"] = leak["prompt_id"].iloc[0]
    # Over-long prompt text whose id no longer matches its messages.
    prompts.loc[4, "text"] = "word " * 3000
    planted["long"] = prompts.loc[4, "prompt_id"]
    # A rating above its scale, and one with an undeclared objective.
    ratings.loc[0, "value"] = 1.5
    planted["above_scale"] = ratings.loc[0, "response_id"]
    ratings.loc[1, "objective"] = "creativity"
    planted["unknown_objective"] = ratings.loc[1, "response_id"]
    # A pair whose chosen and rejected are the same response; one whose prompt is unknown.
    pairs.loc[2, "rejected_id"] = pairs.loc[2, "chosen_id"]
    planted["self_pair"] = pairs.loc[2, "pair_id"]
    pairs.loc[5, "prompt_id"] = "p_doesnotexist"
    planted["dangling"] = pairs.loc[5, "pair_id"]
    # A null response text.
    responses.loc[3, "text"] = None
    planted["null_text"] = responses.loc[3, "response_id"]
    return planted


@pytest.fixture(scope="module")
def params(params):
    """params.yaml with pair minimums the clean tables meet exactly (6 per objective and split)."""
    return with_validate(params, min_pairs_per_objective_split={o: 6 for o in params.objective_names})


def with_validate(params, **changes):
    return params.model_copy(update={"validate_": params.validate_.model_copy(update=changes)})


def write_tables(root: Path, params, tables: dict[str, pd.DataFrame]) -> Path:
    curated = root / params.curate.out_dir
    curated.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_parquet(curated / f"{name}.parquet", index=False)
    return curated


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory, params) -> tuple[Path, validate.ValidationResult]:
    root = tmp_path_factory.mktemp("clean")
    curated = root / params.curate.out_dir
    curated.mkdir(parents=True)
    for name, df in clean_tables().items():
        df.to_parquet(curated / f"{name}.parquet", index=False)
    return root, validate.run(params, root)


@pytest.fixture(scope="module")
def failed(tmp_path_factory, params) -> tuple[Path, validate.ValidationFailed, dict[str, str]]:
    root = tmp_path_factory.mktemp("defects")
    tables = clean_tables()
    planted = plant_defects(tables)
    curated = root / params.curate.out_dir
    curated.mkdir(parents=True)
    for name, df in tables.items():
        df.to_parquet(curated / f"{name}.parquet", index=False)
    with pytest.raises(validate.ValidationFailed) as excinfo:
        validate.run(params, root)
    return root, excinfo.value, planted


def test_clean_data_passes_and_writes_docs_and_report(clean_root, params):
    root, result = clean_root
    assert result.success and not result.failures
    assert len(result.outcomes) > 60  # every table and derived frame got its suite
    assert {o.table for o in result.outcomes} >= {"prompts", "responses", "ratings", "pairs", "quarantine",
                                                   "prompt_splits", "split_counts", "pairs_links", "pair_counts"}
    assert result.docs_path == (root / params.validate_.docs_dir / "index.html").resolve()
    assert result.docs_path.exists() and "prompt_splits" in result.docs_path.read_text()
    assert list((result.docs_path.parent / "validations").iterdir())
    report = json.loads(result.report_path.read_text())
    assert result.report_path == (root / params.validate_.docs_dir).resolve().parent / "validation.json"
    assert report["success"] is True and report["failed"] == 0
    assert report["counts"]["prompts/train"] == 6 and report["counts"]["pairs/harmlessness/val"] == 6
    assert report["counts"]["ratings"] == 18 * 2 * 4
    # The verdict names the data it judged: the lineage hash of the four canonical tables.
    from paretoflow.io import files_hash

    curated = root / params.curate.out_dir
    assert report["data_hash"] == validate.data_hash(curated)
    assert report["data_hash"] == files_hash([curated / f"{t}.parquet" for t in schema.TABLES])  # as tracking.py
    assert (result.docs_path.parent / validate.DOCS_MARKER).is_file()


def test_failures_name_expectation_table_column_and_ids(failed):
    _, error, planted = failed
    failures = {(o.table, o.column, o.why): o for o in error.result.failures}

    def find(table: str, column: str, why_part: str) -> validate.ExpectationOutcome:
        hits = [o for (t, c, w), o in failures.items() if t == table and c == column and why_part in w]
        assert hits, f"no failure for {table}.{column} ({why_part}); got {sorted(failures)}"
        return hits[0]

    assert planted["leak"] in find("prompt_splits", "prompt_id", "across splits").examples
    assert planted["leak"] in find("prompts", "prompt_id", "content-hash").examples
    assert planted["long"] in find("prompts_content", "word_count", "words").examples
    assert planted["long"] in find("prompts_content", "text_is_last_user_turn", "last user turn").examples
    assert planted["above_scale"] in find("ratings", "scale_max,value", "value <= scale_max").examples
    assert planted["above_scale"] in find("ratings", "value", "helpfulness ratings on its declared scale").examples
    assert planted["unknown_objective"] in find("ratings", "objective", "declared objectives").examples
    assert planted["self_pair"] in find("pairs", "chosen_id,rejected_id", "chosen_id != rejected_id").examples
    assert planted["dangling"] in find("pairs_links", "prompt_known", "exists in prompts").examples
    assert planted["dangling"] in find("pairs_links", "chosen_answers_prompt", "belongs").examples
    assert planted["null_text"] in find("responses", "text", "required").examples
    # The message lists every failed expectation with its ids, and where the docs are.
    message = str(error)
    for outcome in error.result.failures:
        assert outcome.describe() in message
    assert "pairs.chosen_id,rejected_id: expect_select_column_values_to_be_unique_within_record" in message
    assert planted["self_pair"] in message and "Data Docs:" in message


def test_no_false_alarms_from_planted_defects(failed):
    # Defects touch a handful of rows: untouched checks still pass, and the Likert-scale
    # rater (0-4, outside the objective's 0-1 scale) never trips the per-objective check.
    _, error, _ = failed
    outcomes = error.result.outcomes
    passing = {(o.table, o.column) for o in outcomes if o.success}
    assert ("pairs", "margin") in passing and ("responses", "response_id") in passing
    assert ("ratings", "scale_max,scale_min") in passing
    assert 0 < len(error.result.failures) < 20


def test_docs_and_report_written_on_failure(failed, params):
    root, error, _ = failed
    assert error.result.docs_path.exists()
    report = json.loads((root / params.validate_.docs_dir).resolve().parent.joinpath("validation.json").read_text())
    assert report["success"] is False and report["failed"] == len(error.result.failures)
    failed_tables = {r["table"] for r in report["results"] if not r["success"]}
    assert {"prompt_splits", "ratings", "pairs", "pairs_links"} <= failed_tables


def test_cli_prints_table_and_exits_nonzero_on_failure(failed, capsys):
    root, _, _ = failed
    code = cli_main(["--params", str(Path(__file__).resolve().parents[3] / "params.yaml"), "validate", "--root", str(root)])
    err = capsys.readouterr().err
    assert code == 1
    assert "prompt_splits" in err and "FAIL" in err and "FAILED:" in err
    assert "chosen_id != rejected_id" in err


def test_missing_table_is_a_clear_error(tmp_path, params):
    with pytest.raises(FileNotFoundError, match=r"prompts\.parquet.*paretoflow curate"):
        validate.run(params, tmp_path)


# Pure pandas helpers behind the cross-table expectations (no GE needed).


def test_pair_counts_take_the_prompt_split_and_zero_fill():
    prompts = schema.frame("prompts", [
        {**_prompt("a b", "train")}, {**_prompt("c d", "test")},
    ])
    a, c = prompts["prompt_id"]
    pairs = pd.DataFrame({"prompt_id": [a, a, c], "objective": ["helpfulness", "helpfulness", "conciseness"]})
    counts = validate.pair_count_frame(pairs, prompts, ["helpfulness", "conciseness"])
    got = dict(zip(counts["objective_split"], counts["pair_count"]))
    assert got == {"helpfulness/train": 2, "helpfulness/val": 0, "helpfulness/test": 0,
                   "conciseness/train": 0, "conciseness/val": 0, "conciseness/test": 1}


def test_prompt_content_frame_flags_malformed_rows():
    good = _prompt("hello there", "train")
    bad_role = {**good, "messages": json.dumps([{"role": "assistant", "content": "hello there"}])}
    bad_json = {**good, "messages": "[not json", "tags": "oops"}
    frame = validate.prompt_content_frame(schema.frame("prompts", [good, bad_role, bad_json]))
    assert frame["messages_well_formed"].tolist() == [True, False, False]
    assert frame["id_matches_content"].tolist() == [True, False, False]
    assert frame["tags_well_formed"].tolist() == [True, True, False]
    assert frame["word_count"].tolist() == [2, 2, 2]


# The verdict is tied to the data; docs are replaced atomically and only when ours.


def test_promote_refuses_a_verdict_for_other_data(tmp_path, params):
    from paretoflow.promote import validation_passed

    write_tables(tmp_path, params, clean_tables())
    validate.run(params, tmp_path)
    assert validation_passed(params, tmp_path) is True
    # Same rows, other file bytes: the recorded hash no longer names what is on disk.
    pairs_path = tmp_path / params.curate.out_dir / "pairs.parquet"
    pd.read_parquet(pairs_path).iloc[1:].to_parquet(pairs_path, index=False)
    with pytest.raises(validate.StaleVerdict, match="rerun `paretoflow validate`"):
        validation_passed(params, tmp_path)
    # Revalidated: a fresh verdict on the new data (still passing: 5 >= 5 pairs).
    looser = with_validate(params, min_pairs_per_objective_split=5)
    validate.run(looser, tmp_path)
    assert validation_passed(looser, tmp_path) is True
    # Other validate params than the verdict was given under: refused as well.
    with pytest.raises(validate.StaleVerdict, match="other objectives/validate params"):
        validation_passed(with_validate(looser, min_prompts_per_split=6), tmp_path)


def test_failed_verdict_reads_false_and_missing_report_is_an_error(tmp_path, params):
    from paretoflow.promote import validation_passed

    with pytest.raises(FileNotFoundError, match="validation.json"):
        validation_passed(params, tmp_path)
    write_tables(tmp_path, params, clean_tables())
    strict = with_validate(params, min_pairs_per_objective_split={"helpfulness": 7})
    with pytest.raises(validate.ValidationFailed) as excinfo:
        validate.run(strict, tmp_path)
    failing = [o for o in excinfo.value.result.failures if o.table == "pair_counts"]
    assert [set(o.examples) for o in failing] == [{"helpfulness/train", "helpfulness/val", "helpfulness/test"}]
    assert validation_passed(strict, tmp_path) is False


def test_min_pairs_naming_an_undeclared_objective_is_an_error(tmp_path, params):
    write_tables(tmp_path, params, clean_tables())
    with pytest.raises(ValueError, match="undeclared objectives \\['honesty'\\]"):
        validate.run(with_validate(params, min_pairs_per_objective_split={"honesty": 1}), tmp_path)


@pytest.mark.parametrize("docs_dir", ["", ".", "../outside", "data/../.."])
def test_docs_dir_outside_the_project_is_refused_and_nothing_deleted(tmp_path, params, docs_dir):
    from paretoflow.config import load_params

    root = tmp_path / "project"
    write_tables(root, params, clean_tables())
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep.txt").write_text("user data")
    # params.yaml refuses it when loading ...
    params_file = tmp_path / "params.yaml"
    params_file.write_text(f"objectives: [{{name: helpfulness}}]\nvalidate: {{docs_dir: {docs_dir!r}}}\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="docs_dir"):
        load_params(params_file)
    # ... and validate refuses it at use when params skipped validation (model_copy).
    with pytest.raises(ValueError, match="validate.docs_dir"):
        validate.run(with_validate(params, docs_dir=docs_dir), root)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_docs_dir_through_a_symlink_out_of_the_project_is_refused(tmp_path, params):
    root = tmp_path / "project"
    write_tables(root, params, clean_tables())
    (tmp_path / "elsewhere").mkdir()
    (root / "docs_link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="outside the project root"):
        validate.run(with_validate(params, docs_dir="docs_link/site"), root)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_docs_folder_not_made_by_validate_is_never_deleted(tmp_path, params):
    write_tables(tmp_path, params, clean_tables())
    docs = tmp_path / params.validate_.docs_dir
    docs.mkdir(parents=True)
    (docs / "notes.md").write_text("someone's notes")
    with pytest.raises(ValueError, match="not created by `paretoflow validate`"):
        validate.run(params, tmp_path)
    assert (docs / "notes.md").read_text() == "someone's notes"
    assert not (docs.parent / validate.REPORT_NAME).exists()


def test_rerun_replaces_our_docs_and_a_crash_keeps_the_previous_site(tmp_path, params, monkeypatch):
    write_tables(tmp_path, params, clean_tables())
    first = validate.run(params, tmp_path)
    docs = first.docs_path.parent
    (docs / "stale.html").write_text("from an older run")
    report_before = first.report_path.read_bytes()
    second = validate.run(params, tmp_path)
    assert not (docs / "stale.html").exists() and second.docs_path.exists()  # a new site, not a merge
    # A crash while rendering leaves the previous site and verdict as they were, and no temp folder.
    index_before = second.docs_path.read_bytes()

    def crash(*args, **kwargs):
        raise RuntimeError("killed mid-render")

    monkeypatch.setattr(validate, "_run_suites", crash)
    with pytest.raises(RuntimeError, match="killed mid-render"):
        validate.run(params, tmp_path)
    assert second.docs_path.read_bytes() == index_before
    assert json.loads(first.report_path.read_bytes())["data_hash"] == json.loads(report_before)["data_hash"]
    assert not [p for p in docs.parent.iterdir() if p.name.startswith(".")]
