"""Registry moves against a real MLflow sqlite store."""

import pytest

from paretoflow.config import Objective, TrackingConfig
from paretoflow.promotion import Candidate, decide
from paretoflow.registry import ChampionChanged, apply_decision, champion_objectives, register_candidate, rollback
from paretoflow.tracking import Tracker

OBJ = [Objective(name="help")]


@pytest.fixture
def tracker(tmp_path):
    cfg = TrackingConfig(tracking_uri="sqlite:///mlflow/mlflow.db", artifact_location="mlflow/artifacts", experiment="t")
    return Tracker(cfg, tmp_path)


def _version(tracker, tmp_path, value):
    run = tracker.start_run("cand")
    f = tmp_path / "recipe.json"
    f.write_text("{}")
    tracker.log_artifact(run, f, "candidate")
    return register_candidate(tracker, "m", run, "candidate", {"objective.help": str(value)})


def _promote(tracker, tmp_path, version, value, validation=True):
    champ_version, champ = champion_objectives(tracker, "m")
    d = decide(Candidate(version, {"help": value}), objectives=OBJ, validation_passed=validation,
               champion_objectives=champ, reference=None, tolerance=0.01)
    return apply_decision(tracker, "m", version, d, champ_version, tmp_path / "lock")


def test_champion_previous_challenger_and_rollback(tracker, tmp_path):
    v1 = _version(tracker, tmp_path, 0.5)
    out1 = _promote(tracker, tmp_path, v1, 0.5)
    assert out1.alias == "champion" and out1.previous is None
    v2 = _version(tracker, tmp_path, 0.7)
    out2 = _promote(tracker, tmp_path, v2, 0.7)
    assert (out2.alias, out2.previous) == ("champion", v1)
    assert tracker.client.get_model_version_by_alias("m", "previous").version == v1
    # worse beyond tolerance → challenger with reasons as tags; champion unchanged
    v3 = _version(tracker, tmp_path, 0.4)
    out3 = _promote(tracker, tmp_path, v3, 0.4)
    assert out3.alias == "challenger" and "no_regression" in out3.reasons[0]
    assert tracker.client.get_model_version_by_alias("m", "champion").version == v2
    tags = tracker.client.get_model_version("m", v3).tags
    assert tags["gate.no_regression"].startswith("FAIL") and tags["promotion"] == "rejected"
    # failed validation never promotes even when better
    v4 = _version(tracker, tmp_path, 0.9)
    assert _promote(tracker, tmp_path, v4, 0.9, validation=False).alias == "challenger"
    demoted, restored = rollback(tracker, "m", tmp_path / "lock")
    assert (demoted, restored) == (v2, v1)
    assert tracker.client.get_model_version_by_alias("m", "champion").version == v1


def test_promotion_refuses_when_champion_moved(tracker, tmp_path):
    v1 = _version(tracker, tmp_path, 0.5)
    champ_version, champ = champion_objectives(tracker, "m")   # compared against: none
    _promote(tracker, tmp_path, v1, 0.5)                        # someone else promotes meanwhile
    v2 = _version(tracker, tmp_path, 0.6)
    d = decide(Candidate(v2, {"help": 0.6}), objectives=OBJ, validation_passed=True,
               champion_objectives=champ, reference=None, tolerance=0.01)
    with pytest.raises(ChampionChanged):
        apply_decision(tracker, "m", v2, d, champ_version, tmp_path / "lock")
    assert tracker.client.get_model_version_by_alias("m", "champion").version == v1
