"""The curate stage end to end on the fixture files: accounting, reasons, determinism,
split stability and disjointness, decontamination, and the import/curate commands."""

import json
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from paretoflow import cli
from paretoflow.config import CurateConfig, Objective, Params, SourceConfig
from paretoflow.data.curate import curate_files, run
from paretoflow.data.importers import read_file

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "data"
OBJECTIVES = [Objective(name=n) for n in ("helpfulness", "conciseness", "harmlessness")]
GENERIC_MAP = {"prompt": "question", "chosen": "good", "rejected": "bad", "objective": "axis"}


def all_sources():
    return [
        SourceConfig(path="builtin_train.jsonl", format="builtin"),
        SourceConfig(path="builtin_eval.jsonl", role="eval"),
        SourceConfig(path="helpful-base"),
        SourceConfig(path="pku_saferlhf.jsonl"),
        SourceConfig(path="helpsteer2.jsonl"),
        SourceConfig(path="ultrafeedback.jsonl"),
        SourceConfig(path="generic_pairs.csv", column_map=GENERIC_MAP),
    ]


def make_params(sources, out_dir="curated", **curate):
    return Params(objectives=OBJECTIVES, curate=CurateConfig(sources=sources, out_dir=out_dir, **curate))


@pytest.fixture
def root(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "raw")
    return tmp_path / "raw"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def quarantine_by_location(result):
    q = pd.read_parquet(result.paths["quarantine"])
    return {(s, loc): reason for s, loc, reason in zip(q["source"], q["location"], q["reason"], strict=True)}


def test_every_row_is_kept_or_quarantined(root):
    result = run(make_params(all_sources()), root)
    report = result.report
    for name, source in report["sources"].items():
        assert source["rows_in"] == source["rows_kept"] + source["rows_quarantined"], name
    # Rows per file counted by hand from the fixtures (non-blank lines / CSV data rows).
    assert {n: s["rows_in"] for n, s in report["sources"].items()} == {
        "builtin_eval.jsonl": 2, "builtin_train.jsonl": 12, "helpful-base/train.jsonl": 7,
        "pku_saferlhf.jsonl": 5, "helpsteer2.jsonl": 6, "ultrafeedback.jsonl": 4, "generic_pairs.csv": 6,
    }
    assert report["rows_in"] == 42 == report["rows_kept"] + report["rows_quarantined"]
    assert len(pd.read_parquet(result.paths["quarantine"])) == report["rows_quarantined"]
    assert list(report["sources"])[0] == "builtin_eval.jsonl"  # eval sources first


def test_curation_reasons_on_fixture_rows(root):
    result = run(make_params(all_sources()), root)
    where = quarantine_by_location(result)
    assert where[("builtin_train.jsonl", "line 5")] == "duplicate"  # basil again, extra spaces + zero-width space
    assert where[("builtin_train.jsonl", "line 9")] == "empty_text"  # whitespace only
    assert where[("helpful-base/train.jsonl", "line 3")] == "chosen_equals_rejected"  # "Hi!" vs "Hi! "
    assert where[("helpful-base/train.jsonl", "line 7")] == "empty_text"  # empty final Assistant turn
    assert where[("pku_saferlhf.jsonl", "line 3")] == "chosen_equals_rejected"
    q = pd.read_parquet(result.paths["quarantine"])
    duplicate = q[q["reason"] == "duplicate"].iloc[0]
    assert duplicate["detail"] == "same content as builtin_train.jsonl line 1"
    assert "basil" in duplicate["raw"]


def test_tables_hold_pairs_ratings_and_derived_pairs(root):
    result = run(make_params(all_sources()), root)
    pairs = pd.read_parquet(result.paths["pairs"])
    responses = pd.read_parquet(result.paths["responses"]).set_index("response_id")
    ratings = pd.read_parquet(result.paths["ratings"])
    assert set(ratings["scale_max"]) == {4.0, 5.0}  # HelpSteer2 0-4, UltraFeedback 1-5
    helpsteer = pairs[pairs["source"] == "helpsteer2.jsonl"]
    by_objective = {o: (responses.loc[c, "text"][:20], m) for o, c, m in
                    zip(helpsteer["objective"], helpsteer["chosen_id"], helpsteer["margin"], strict=True)}
    # Long answer is more helpful (4 vs 3); short one more concise (verbosity 1 vs 3 → 3 vs 1).
    assert by_objective == {"helpfulness": ("Photosynthesis is ho", 1.0), "conciseness": ("Plants use sunlight ", 2.0)}
    assert Counter(pairs["source"]) == {
        "helpful-base/train.jsonl": 2, "pku_saferlhf.jsonl": 4, "helpsteer2.jsonl": 2,
        "ultrafeedback.jsonl": 1, "generic_pairs.csv": 2,
    }


def test_prompt_disjoint_splits(root):
    result = run(make_params(all_sources()), root)
    prompts = pd.read_parquet(result.paths["prompts"])
    responses = pd.read_parquet(result.paths["responses"])
    pairs = pd.read_parquet(result.paths["pairs"])
    assert prompts["prompt_id"].is_unique and set(prompts["split"]) <= {"train", "val", "test"}
    response_prompt = dict(zip(responses["response_id"], responses["prompt_id"], strict=True))
    for pid, chosen, rejected in zip(pairs["prompt_id"], pairs["chosen_id"], pairs["rejected_id"], strict=True):
        assert response_prompt[chosen] == response_prompt[rejected] == pid
    assert set(responses["prompt_id"]) <= set(prompts["prompt_id"])
    eval_prompts = prompts[prompts["source"] == "builtin_eval.jsonl"]
    assert len(eval_prompts) == 2 and set(eval_prompts["split"]) == {"test"}


def test_output_is_byte_identical(root):
    first = run(make_params(all_sources(), out_dir="a"), root)
    second = run(make_params(all_sources(), out_dir="b"), root)
    for name, path in first.paths.items():
        assert path.read_bytes() == second.paths[name].read_bytes(), name


def test_adding_rows_never_moves_existing_prompts(tmp_path):
    rows = [{"prompt": f"Question number {i} about topic {i * 7}?"} for i in range(60)]
    write_jsonl(tmp_path / "small.jsonl", rows[:30])
    write_jsonl(tmp_path / "large.jsonl", rows[30:] + rows[:30][::-1])  # more rows, other order
    small = run(make_params([SourceConfig(path="small.jsonl")], out_dir="s", near_dup_threshold=1.0), tmp_path)
    large = run(make_params([SourceConfig(path="large.jsonl")], out_dir="l", near_dup_threshold=1.0), tmp_path)
    before = pd.read_parquet(small.paths["prompts"]).set_index("prompt_id")["split"]
    after = pd.read_parquet(large.paths["prompts"]).set_index("prompt_id")["split"]
    assert len(before) == 30 and len(after) == 60
    assert (after.loc[before.index] == before).all()


def test_near_duplicate_prompts_removed(tmp_path):
    base = "What are the best ways to save money on groceries each week for a family of four"
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": base}, {"prompt": "Tell me about volcanoes."},
                                       {"prompt": base + " people?"}, {"prompt": base.upper()}])
    result = run(make_params([SourceConfig(path="p.jsonl")]), tmp_path)
    where = quarantine_by_location(result)
    # Case and trailing words differ; "base.upper()" has identical tokens (Jaccard 1.0).
    assert where == {("p.jsonl", "line 3"): "near_duplicate", ("p.jsonl", "line 4"): "near_duplicate"}
    assert result.counts["prompts"] == 2


def test_contaminated_train_prompts_removed(tmp_path):
    held_out = "Give me three tips for writing a clear and friendly email to a new colleague at work."
    write_jsonl(tmp_path / "eval.jsonl", [{"prompt": held_out}])
    write_jsonl(tmp_path / "train.jsonl", [
        {"prompt": "Please give me three tips for writing a clear and friendly email to a new colleague."},
        {"prompt": "Write a poem about autumn leaves falling slowly in the quiet park at dusk."},
        {"prompt": held_out},
    ])
    sources = [SourceConfig(path="train.jsonl"), SourceConfig(path="eval.jsonl", role="eval")]
    result = run(make_params(sources, near_dup_threshold=1.0), tmp_path)
    where = quarantine_by_location(result)
    # The exact copy meets the eval row first (eval sources come first): a duplicate of it.
    assert where == {("train.jsonl", "line 1"): "contaminated", ("train.jsonl", "line 3"): "duplicate"}
    detail = pd.read_parquet(result.paths["quarantine"])["detail"].tolist()
    # 16 words, 9 8-grams; all but the one starting at "please" occur in eval: 8/9.
    assert detail[0].startswith("0.89 of its 8-grams occur in eval prompt p_")
    assert detail[1] == "same content as eval.jsonl line 1"
    prompts = pd.read_parquet(result.paths["prompts"])
    assert prompts.loc[prompts["text"] == held_out, "split"].tolist() == ["test"]


def test_length_filters(tmp_path):
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Hi"}, {"prompt": "How are you doing today?"},
                                       {"prompt": " ".join(["word"] * 13)}])
    result = run(make_params([SourceConfig(path="p.jsonl")], min_words=2, max_words=12), tmp_path)
    assert quarantine_by_location(result) == {("p.jsonl", "line 1"): "too_short", ("p.jsonl", "line 3"): "too_long"}


def test_broken_accounting_raises():
    imported = read_file(FIXTURES / "pku_saferlhf.jsonl", OBJECTIVES)
    imported.records.pop()  # a row silently lost
    with pytest.raises(RuntimeError, match="pku_saferlhf.jsonl: row accounting broken"):
        curate_files([imported], CurateConfig(sources=[]))


def test_unreadable_source_names_the_file(tmp_path):
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="garbage.parquet"):
        run(make_params([SourceConfig(path="garbage.parquet")]), tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        run(make_params([SourceConfig(path="missing.jsonl")]), tmp_path)


def test_empty_file_yields_empty_tables(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    result = run(make_params([SourceConfig(path="empty.jsonl")]), tmp_path)
    assert result.counts == {"prompts": 0, "responses": 0, "ratings": 0, "pairs": 0, "quarantine": 0}
    assert result.report["rows_in"] == 0


def test_import_and_curate_commands(root, tmp_path, capsys, monkeypatch):
    params_path = tmp_path / "params.yaml"
    params_path.write_text(
        "objectives:\n  - name: helpfulness\n  - name: harmlessness\n"
        "curate:\n  out_dir: curated\n  sources:\n    - path: pku_saferlhf.jsonl\n"
    )
    monkeypatch.chdir(root)
    assert cli.main(["--params", str(params_path), "import", "helpful-base/train.jsonl",
                     "--objective", "harmlessness", "--out", str(tmp_path / "imported")]) == 0
    printed = capsys.readouterr().out
    assert "helpful-base/train.jsonl" in printed and "hh_rlhf" in printed
    pairs = pd.read_parquet(tmp_path / "imported" / "pairs.parquet")
    assert set(pairs["objective"]) == {"harmlessness"} and len(pairs) == 2
    assert cli.main(["--params", str(params_path), "curate", "--root", str(root)]) == 0
    assert "pku_saferlhf" in capsys.readouterr().out
    assert json.loads((root / "curated" / "report.json").read_text())["rows_in"] == 5


# Source paths: inside the project, or under a data root named by whoever runs the worker.


@pytest.mark.parametrize("path", ["../outside/pairs.jsonl", "OUTSIDE_ABS", "link/pairs.jsonl"])
def test_source_outside_the_project_needs_a_data_root(tmp_path, monkeypatch, path):
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    write_jsonl(outside / "pairs.jsonl", [{"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."}])
    (project / "link").symlink_to(outside)  # a symlink leaving the project counts as outside
    path = str(outside / "pairs.jsonl") if path == "OUTSIDE_ABS" else path
    params = make_params([SourceConfig(path=path, format="generic", objective="helpfulness")])
    monkeypatch.delenv("PARETOFLOW_DATA_ROOTS", raising=False)
    with pytest.raises(ValueError, match=r"outside the project root .* no data root \(set PARETOFLOW_DATA_ROOTS\)"):
        run(params, project)
    assert not (project / "curated").exists()
    monkeypatch.setenv("PARETOFLOW_DATA_ROOTS", str(outside))
    assert run(params, project).report["rows_kept"] == 1
    # An explicit data_roots argument replaces the environment's.
    with pytest.raises(ValueError, match="outside the project root"):
        run(params, project, data_roots=[tmp_path / "elsewhere"])


def test_out_dir_must_stay_inside_the_project(tmp_path):
    params = make_params([SourceConfig(path="x.jsonl")])
    params = params.model_copy(update={"curate": params.curate.model_copy(update={"out_dir": "../escaped"})})
    with pytest.raises(ValueError, match="curate.out_dir: '../escaped' resolves to"):
        run(params, tmp_path / "project")
    assert not (tmp_path / "escaped").exists()


def test_import_command_reads_a_file_named_outside_the_project(tmp_path, capsys, monkeypatch):
    outside = tmp_path / "downloads"
    outside.mkdir()
    write_jsonl(outside / "pairs.jsonl", [{"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."}])
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "params.yaml").write_text("objectives:\n  - name: helpfulness\n")
    monkeypatch.chdir(project)
    monkeypatch.delenv("PARETOFLOW_DATA_ROOTS", raising=False)
    assert cli.main(["--params", str(tmp_path / "params.yaml"), "import", str(outside / "pairs.jsonl"),
                     "--format", "generic", "--objective", "helpfulness", "--out", "imported"]) == 0
    assert len(pd.read_parquet(project / "imported" / "pairs.parquet")) == 1


def test_import_command_streams_as_the_stage(tmp_path, monkeypatch):
    """`paretoflow import` writes the responses from the spill (never the whole text column
    in memory) and its files are the curate stage's for the same source."""
    import paretoflow.data.tables as tables_module

    project = tmp_path / "project"
    project.mkdir()
    write_jsonl(project / "pairs.jsonl", [{"prompt": f"Question {i}?", "chosen": f"A good answer {i}.",
                                           "rejected": f"No {i}."} for i in range(5)] * 2)
    (tmp_path / "params.yaml").write_text("objectives:\n  - name: helpfulness\n")
    spilled = []
    real = tables_module.write_spilled_responses
    monkeypatch.setattr(tables_module, "write_spilled_responses",
                        lambda *args: (spilled.append(args[2]), real(*args))[1])
    monkeypatch.chdir(project)
    assert cli.main(["--params", str(tmp_path / "params.yaml"), "import", "pairs.jsonl", "--format", "generic",
                     "--objective", "helpfulness", "--out", "imported"]) == 0
    assert [p.name for p in spilled] == ["responses.parquet"]  # the old command built the column in memory
    staged = run(make_params([SourceConfig(path="pairs.jsonl", format="generic", objective="helpfulness")]), project)
    for name in ("prompts", "responses", "ratings", "pairs", "quarantine"):
        assert (project / "imported" / f"{name}.parquet").read_bytes() == (staged.out_dir / f"{name}.parquet").read_bytes()
    report = json.loads((project / "imported" / "report.json").read_text())
    assert report["rows_in"] == 10 == report["rows_kept"] + report["rows_quarantined"]
