"""promote.run on a real tiny front and a real MLflow sqlite registry: paired gates end to end.

The candidate is compared prompt by prompt with the base (no champion), with a champion
that was a candidate of this front (its scores are reused), with a champion rebuilt from
its registered package (evaluated on the front's prompts), and fails closed when the
champion cannot be compared."""

import dataclasses
import json
import tempfile
from pathlib import Path

import pytest

from paretoflow import front
from paretoflow.config import TrackingConfig
from paretoflow.promote import PACKAGE, evaluated_hashes, load_front, package_candidate, run
from paretoflow.registry import register_candidate
from paretoflow.tracking import Tracker
from tests.paretoflow.front.front_fixtures import make_project, tiny_params


@pytest.fixture(scope="module")
def promoted_project(tiny_policy_dir, tmp_path_factory, one_torch_thread_module):
    root = make_project(tmp_path_factory.mktemp("promote"), tiny_policy_dir, with_modpo=False)
    params = tiny_params(tiny_policy_dir)
    params.tracking = TrackingConfig(tracking_uri="sqlite:///mlflow/mlflow.db", artifact_location="mlflow/artifacts",
                                     experiment="t", registered_model="m")
    front.run(params, root, progress=False)   # the real judges: promotion re-scores with them
    return root, params, Tracker(params.tracking, root)


@pytest.fixture(scope="module")
def one_torch_thread_module():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _register_champion(tracker, params, root, candidate) -> str:
    run_id = tracker.start_run("champion")
    with tempfile.TemporaryDirectory() as tmp:
        document, _, _ = load_front(params, root)
        package = package_candidate(params, root, candidate, Path(tmp) / PACKAGE, evaluated_hashes(document))
        tracker.log_artifact(run_id, package, PACKAGE)
    version = register_candidate(tracker, params.tracking.registered_model, run_id, PACKAGE, {})
    tracker.client.set_registered_model_alias(params.tracking.registered_model, "champion", version)
    tracker.end_run(run_id)
    return version


def _promote(tracker, params, root):
    parent = tracker.start_run("promote")
    result = run(params, root, tracker, parent, validation_passed=True, lineage={})
    tracker.end_run(parent)
    return result


def test_without_champion_the_candidate_is_compared_with_the_base(promoted_project):
    root, params, tracker = promoted_project
    result = _promote(tracker, params, root)
    gate = result.gates["no_regression"]
    tags = tracker.client.get_model_version("m", result.version).tags
    assert "base" in tags["gate.no_regression"]
    assert result.alias == ("champion" if gate == "pass" else "challenger")
    assert {"gain_weighted", "gain_weighted_ci_low"} <= set(result.metrics)


def test_champion_from_this_front_reuses_its_scores_and_an_equal_candidate_is_refused(promoted_project):
    root, params, tracker = promoted_project
    _, _, candidates = load_front(params, root)
    from paretoflow.promote import choose, compare_with_base

    document, scores, _ = load_front(params, root)
    chosen = choose(params, candidates, compare_with_base(params, document, scores))
    version = _register_champion(tracker, params, root, chosen)
    result = _promote(tracker, params, root)   # chooses the same candidate again: no gain
    assert result.candidate == chosen.name and result.alias == "challenger"
    reason = tracker.client.get_model_version("m", result.version).tags["gate.no_regression"]
    assert reason.startswith("FAIL") and f"champion v{version} (same weights as front candidate" in reason
    assert "does not improve" in reason
    assert str(tracker.client.get_model_version_by_alias("m", "champion").version) == version


def test_champion_outside_the_front_is_rebuilt_and_scored_on_the_same_prompts(promoted_project):
    root, params, tracker = promoted_project
    _, _, candidates = load_front(params, root)
    merge = next(c for c in candidates if c.info.kind == "merge")
    record = dataclasses.replace(merge.info, name="merge-0.30-0.70",
                                 coefficients={"expert-brevity": 0.3, "expert-verbosity": 0.7})
    elsewhere = dataclasses.replace(merge, name=record.name, info=record)
    version = _register_champion(tracker, params, root, elsewhere)
    result = _promote(tracker, params, root)
    reason = tracker.client.get_model_version("m", result.version).tags["gate.no_regression"]
    assert f"champion v{version} (rebuilt from its package and scored on the front's prompts)" in reason
    assert str(tracker.client.get_model_version_by_alias("m", "champion").version) in (version, result.version)


def test_champion_that_cannot_be_compared_fails_closed(promoted_project):
    root, params, tracker = promoted_project
    _, _, candidates = load_front(params, root)
    version = _register_champion(tracker, params, root, candidates[0])
    # Corrupt the champion's recipe: another base model.
    mv = tracker.client.get_model_version("m", version)
    local = tracker.download(mv.run_id, PACKAGE, root / "tmp-download")
    recipe = json.loads((local / "recipe.json").read_text())
    recipe["base_fingerprint"] = "ffffffffffffffff"
    (local / "recipe.json").write_text(json.dumps(recipe))
    run_id = tracker.start_run("foreign")
    tracker.log_artifact(run_id, local, PACKAGE)
    foreign = register_candidate(tracker, "m", run_id, PACKAGE, {})
    tracker.client.set_registered_model_alias("m", "champion", foreign)
    result = _promote(tracker, params, root)
    assert result.alias == "challenger"
    reason = tracker.client.get_model_version("m", result.version).tags["gate.no_regression"]
    assert "cannot compare on the same prompts" in reason and "built on base ffffffffffffffff" in reason
    assert str(tracker.client.get_model_version_by_alias("m", "champion").version) == foreign
