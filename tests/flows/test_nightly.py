"""The whole nightly flow on the tiny model under a temporary Prefect server."""

import json
import os

import pytest

from tests.flows.project import make_project


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, prefect_harness):
    from flows.nightly import run_from_file

    work = tmp_path_factory.mktemp("nightly")
    root, overrides = make_project(work, tiny=True)
    # Every section from the project's own params file (`paretoflow --params F run`).
    result = run_from_file(root / "params.yaml")
    return root, overrides, result


def test_run_takes_every_section_from_the_given_params_file(first_run):
    root, overrides, result = first_run
    params, tracker = _client(root)
    children = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result['parent_run_id']}'")
    pairs_run = next(r for r in children if r.data.tags.get("paretoflow.stage") == "pairs")
    logged = pairs_run.data.params
    for key, value in overrides["pairs"]["cpu"].items():                # the tiny budget of that file
        assert logged[f"pairs.cpu.{key}"] == str(value), key
    assert logged["model.policy"] == overrides["model"]["policy"]


def test_cli_run_passes_params_file_through(monkeypatch, tmp_path):
    import flows.nightly
    from flows import cli
    from tests.conftest import REPO_ROOT  # the installed `paretoflow` command: library commands + run/serve/worker

    seen = {}
    monkeypatch.setattr(flows.nightly, "prepare", lambda path, root=None: seen.update(prepared=path))
    monkeypatch.setattr(flows.nightly, "run_from_file", lambda path, root=None: seen.update(path=path, root=root) or {
        "stage_summaries": [], "front": {"front_png": "-", "front_json": "-"}, "promotion": {},
        "tracking_uri": "-"})
    (tmp_path / "other.yaml").write_text((REPO_ROOT / "params.yaml").read_text())  # checked before the flow
    assert cli.main(["--params", str(tmp_path / "other.yaml"), "run"]) == 0
    assert seen["path"] == seen["prepared"] == str(tmp_path / "other.yaml")


def _client(root):
    from paretoflow.config import load_params
    from paretoflow.tracking import Tracker

    params = load_params(root / "params.yaml")
    return params, Tracker(params.tracking, root)


def test_front_artifact_holds_only_consistent_candidates(first_run):
    root, _, result = first_run
    front = json.loads((root / "artifacts/front/front.json").read_text())
    assert (root / "artifacts/front/front.png").stat().st_size > 0
    names = {c["name"] for c in front["candidates"]}
    assert {"base"} <= {c["kind"] for c in front["candidates"]}
    assert any(c["kind"] == "merge" for c in front["candidates"])
    assert result["front"]["n_candidates"] == len(names)
    # non-dominated flags agree with a direct check on the objective vectors
    vecs = {c["name"]: c["objectives"] for c in front["candidates"]}
    for c in front["candidates"]:
        dominated = any(all(v[k] >= c["objectives"][k] for k in v) and any(v[k] > c["objectives"][k] for k in v)
                        for n, v in vecs.items() if n != c["name"])
        assert c["non_dominated"] == (not dominated)


def test_registry_alias_and_lineage_tags(first_run):
    root, _, result = first_run
    params, tracker = _client(root)
    promotion = result["promotion"]
    name = params.tracking.registered_model
    version = str(tracker.client.get_model_version_by_alias(name, promotion["alias"]).version)
    assert version == promotion["version"]
    mv = tracker.client.get_model_version(name, version)
    assert set(mv.tags) >= {f"objective.{o}" for o in params.objective_names}
    assert all(k.startswith("gate.") or not k.startswith("gate") for k in mv.tags)
    parent = tracker.client.get_run(result["parent_run_id"])
    tags = parent.data.tags
    for key in ("paretoflow.git_sha", "paretoflow.dvc_data_hash", "paretoflow.params_hash", "paretoflow.flow_run_id"):
        assert tags.get(key), key
    assert tags["paretoflow.dvc_data_hash"] != "none"            # dvc.lock recorded the data
    assert tags["paretoflow.flow_run_id"] != "local"              # a real Prefect flow run id
    children = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result['parent_run_id']}'")
    stages = {r.data.tags.get("paretoflow.stage") for r in children}
    assert {"curate", "validate", "pairs", "reward", "front", "promote"} <= stages
    assert all(r.data.tags.get("paretoflow.dvc_data_hash") == tags["paretoflow.dvc_data_hash"] for r in children)
    front_run = next(r for r in children if r.data.tags.get("paretoflow.stage") == "front")
    arts = {a.path for a in tracker.client.list_artifacts(front_run.info.run_id, "front")}
    assert {"front/front.json", "front/front.png"} <= arts
    candidates = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{front_run.info.run_id}'")
    assert sorted(r.info.run_name for r in candidates) == sorted(c["name"] for c in result["front"]["records"])
    assert all(r.data.tags["paretoflow.stage"] == "front-candidate" for r in candidates)
    # the reward model is a registered version; adapters carry their training curves
    rm = tracker.client.search_model_versions(f"name = '{name}-reward'")
    assert len(rm) == 1 and rm[0].tags["paretoflow.params_hash"] == tags["paretoflow.params_hash"]
    expert = next(r for r in children if r.info.run_name.startswith("expert-"))
    losses = tracker.client.get_metric_history(expert.info.run_id, "loss")
    assert [m.step for m in losses] == list(range(1, len(losses) + 1)) and len(losses) >= 2


def test_rerun_resumes_from_cache_without_recomputing(first_run):
    from flows.nightly import nightly

    root, overrides, _ = first_run
    watched = [root / "data/pairs/pairs.parquet", root / "artifacts/reward/model.safetensors",
               *sorted((root / "artifacts/adapters").glob("*/adapter_model.safetensors"))]
    before = {p: os.stat(p).st_mtime_ns for p in watched}
    result = nightly(root=str(root), **overrides)
    assert {p: os.stat(p).st_mtime_ns for p in watched} == before   # cached: nothing retrained
    assert result["promotion"]["version"] is not None
    # the run reports itself honestly: cached stages say so and count no work of this run
    from flows.nightly import run_report

    by_stage = {(s["stage"], s.get("job_name")): s for s in result["stage_summaries"]}
    assert all(s["cached"] for (stage, _), s in by_stage.items() if stage not in ("validate", "promote"))
    report = "\n".join(run_report(result, wall=30.0))
    work = float(report.split("stage work ")[1].split(" s")[0])
    assert 0 <= work <= 30.0, report
    assert "from the cache:" in report
    params, tracker = _client(root)
    runs = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result['parent_run_id']}'")
    flags = {r.data.tags["paretoflow.stage"]: r.data.tags.get("paretoflow.cached") for r in runs
             if r.data.tags.get("paretoflow.stage") in ("pairs", "reward", "front", "validate")}
    assert flags == {"pairs": "true", "reward": "true", "front": "true", "validate": "false"}


def test_failed_validation_stops_before_training(tmp_path, prefect_harness):
    from flows.nightly import nightly
    from paretoflow.data.validate import ValidationFailed

    root, overrides = make_project(tmp_path, tiny=True)
    overrides["validation"] = {"min_prompts_per_split": 10_000}   # impossible to meet
    with pytest.raises(ValidationFailed, match="at least 10000 prompts per split"):
        nightly(root=str(root), **overrides)
    assert not (root / "data/pairs").exists() and not (root / "artifacts/adapters").exists()


def test_registered_package_rebuilds_the_candidate_model(first_run, tmp_path):
    import torch

    from paretoflow.merging import load_expert, merge_deltas
    from paretoflow.models import load_policy
    from paretoflow.promote import load_candidate

    root, overrides, result = first_run
    params, tracker = _client(root)
    mv = tracker.client.get_model_version(params.tracking.registered_model, result["promotion"]["version"])
    local = tracker.download(mv.run_id, "candidate", tmp_path)
    model, _ = load_candidate(local, cache_dir=root / ".cache/models")
    recipe = json.loads((local / "recipe.json").read_text())
    base, _, _ = load_policy(overrides["model"]["policy"])
    expected = {n: p.detach().clone() for n, p in base.named_parameters()}
    names = list(recipe["coefficients"])
    if names:
        experts = [load_expert(root / "artifacts/adapters" / n) for n in names]
        for module, delta in merge_deltas(experts, [recipe["coefficients"][n] for n in names], recipe["method"]):
            expected[f"{module}.weight"] += delta
    got = dict(model.named_parameters())
    for name, tensor in expected.items():
        assert torch.allclose(got[name], tensor, atol=1e-6), name


def test_run_report_counts_jobs_side_by_side_once():
    """Align jobs in lanes overlap: the report counts the block's wall time, not their sum."""
    from flows.nightly import run_report

    def summary(stage, seconds, job_name=None):
        return {"stage": stage, "job_name": job_name, "cached": False, "library_seconds": seconds}

    result = {"front": {"front_png": "p", "front_json": "j"}, "promotion": {"candidate": "c", "version": "1",
                                                                          "alias": "champion"},
              "tracking_uri": "sqlite:///x", "parallel_seconds": {"align": 150.0},
              "stage_summaries": [summary("reward", 100.0), summary("align", 90.0, "expert-a"),
                                  summary("align", 80.0, "expert-b"), summary("front", 50.0)]}
    report = "\n".join(run_report(result, wall=320.0))
    assert "stage work 300 s" in report and "overhead 20 s (6.2 %)" in report, report   # 100 + 150 + 50
    assert "align jobs side by side: 150 s wall" in report
    del result["parallel_seconds"]
    assert "stage work 320 s" in "\n".join(run_report(result, wall=320.0))   # one after the other: the sum
