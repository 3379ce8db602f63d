"""Registry moves against a real MLflow sqlite store (a tmp dir per test).

`PromoteProject` builds the smallest real project `paretoflow promote` runs on: params.yaml,
real LoRA adapters on the tiny policy, and a front.json that records their hashes. The
integration test (tests/flows/test_registry_servers.py) reuses it on real servers.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import shutil
import tempfile
import threading
import types
from pathlib import Path

import pytest
import yaml

import numpy as np

from paretoflow.config import Objective, TrackingConfig, load_params
from paretoflow.front.document import CandidateRecord, FrontDocument, PairedDiff, PromptScores
from paretoflow.io import file_hash
from paretoflow.promotion import Candidate, decide
from paretoflow.registry import (
    BLOCK_TAG,
    ChampionChanged,
    RegistryUnavailable,
    apply_decision,
    champion_history,
    champion_objectives,
    register_candidate,
    registry_lock,
    rollback,
    unblock,
)
from paretoflow.tracking import Tracker
from tests.conftest import REPO_ROOT

OBJ = [Objective(name="help")]
NAMES = ("helpfulness", "conciseness", "harmlessness")
PROMPTS = 30


# ------------------------------------------------------------------ a promotable project

@functools.lru_cache(maxsize=1)
def _migrated_store() -> bytes:
    """An empty MLflow sqlite store, migrated once per session (migrations take ~9 s on a
    loaded 2-core machine; each test then starts from a copy)."""
    with tempfile.TemporaryDirectory() as tmp:
        Tracker(TrackingConfig(tracking_uri="sqlite:///mlflow.db", experiment="warmup"), Path(tmp))
        return (Path(tmp) / "mlflow.db").read_bytes()


def fresh_store(root: Path, rel: str = "mlflow/mlflow.db") -> None:
    """Put a migrated, empty sqlite store at root/rel (what the first Tracker would create)."""
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(_migrated_store())


def make_adapter(policy_dir: Path, out: Path, seed: int, objective: str) -> Path:
    """A real LoRA adapter (random, non-zero B) on the tiny policy, as align writes it."""
    import torch
    from peft import LoraConfig, get_peft_model

    from paretoflow.models import load_policy

    base, _, _ = load_policy(str(policy_dir))
    torch.manual_seed(seed)
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    model.save_pretrained(out)
    (out / "meta.json").write_text(json.dumps({"objective": objective}))
    return out


class PromoteProject:
    """root/params.yaml + root/artifacts/adapters/expert-* + root/artifacts/front/front.json."""

    def __init__(self, root: Path, policy_dir: Path, tracking_uri: str = "sqlite:///mlflow/mlflow.db"):
        self.root, self.policy_dir = root, policy_dir
        raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
        raw["model"] = {**raw["model"], "policy": str(policy_dir)}
        raw["tracking"] = {**raw["tracking"], "tracking_uri": tracking_uri}
        root.mkdir(parents=True, exist_ok=True)
        if tracking_uri.startswith("sqlite:///"):
            fresh_store(root, tracking_uri[len("sqlite:///"):])
        (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        self.params = load_params(root / "params.yaml")
        self.adapters = root / self.params.align.out_dir
        self.nights: list[tuple[dict[str, str], float]] = []
        from paretoflow.models import model_fingerprint, resolve_policy_path

        self.base_fingerprint = model_fingerprint(resolve_policy_path(str(policy_dir), root / ".cache/models"))

    def train(self, seed: int) -> None:
        """Experts for helpfulness and harmlessness ("a night's alignment"), seeded."""
        for i, objective in enumerate(("helpfulness", "harmlessness")):
            out = self.adapters / f"expert-{objective}"
            shutil.rmtree(out, ignore_errors=True)
            make_adapter(self.policy_dir, out, seed * 10 + i, objective)

    def front(self, helpfulness: float) -> FrontDocument:
        """front.json + scores.parquet (through the front's own document model) with the base
        and one merge of both experts scoring `helpfulness`; the merges of earlier nights
        stay in it as dominated candidates (what lets promotion compare a champion with
        tonight's candidate on the same prompts without regenerating)."""
        from paretoflow.front.document import write_front

        experts = sorted(p.name for p in self.adapters.iterdir())
        hashes = {n: file_hash(self.adapters / n / "adapter_model.safetensors") for n in experts}
        self.nights.append((hashes, helpfulness))
        candidates = {"base": ("base", {k: 0.1 for k in NAMES}, {}, {}, True)}
        for night, (night_hashes, value) in enumerate(self.nights, start=1):
            tonight = night == len(self.nights)
            name = "merge-0.5-0.5" if tonight else f"merge-0.5-0.5-night{night}"
            candidates[name] = ("merge", {"helpfulness": value, "conciseness": 0.5, "harmlessness": 0.8},
                                {n: 0.5 for n in night_hashes}, night_hashes, tonight)
        prompt_ids = [f"p{i}" for i in range(PROMPTS)]
        noise = np.random.default_rng(0).normal(0.0, 0.02, PROMPTS)      # shared: the scores are paired
        scores = {name: {"judges": {k: np.clip(v + noise, 0, 1) for k, v in objectives.items()}}
                  for name, (_, objectives, _, _, _) in candidates.items()}
        records = [_record(name, kind, objectives, coefficients, adapter_hashes, non_dominated)
                   for name, (kind, objectives, coefficients, adapter_hashes, non_dominated) in candidates.items()]
        return write_front(self.root / self.params.front.out_dir, {
            "objectives": [{"name": n, "direction": "maximize", "scale": (0.0, 1.0)} for n in NAMES],
            "hypervolume": 0.0, "hypervolume_ci": (0.0, 0.0), "reference_point": {n: 0.0 for n in NAMES},
            "sparsity": 0.0, "expected_utility": 0.0, "expected_utility_step": 0.1, "mde": {}, "metrics": {},
            "method": "weights", "merge_method": "exact",
            "experts": [{"name": n, "objective": n.split("-", 1)[1], "file_hash": h} for n, h in hashes.items()],
            "adapters": [],
            "evaluation": {"prompts": PROMPTS, "split": "test", "prompts_hash": "synthetic", "prompt_ids": prompt_ids,
                           "max_new_tokens": 8, "batch_size": 4, "do_sample": False, "seed": 0, "n_boot": 200,
                           "ci_level": 0.95, "mde_alpha": 0.05, "mde_power": 0.8, "scorers": {"judges": "synthetic"},
                           "base_fingerprint": self.base_fingerprint},
            "candidates": records,
        }, PromptScores.from_arrays(prompt_ids, scores))

    def promote(self, tracker: Tracker, validation: bool = True):
        from paretoflow.promote import run

        with tracker.run("nightly") as parent:
            return run(self.params, self.root, tracker, parent, validation_passed=validation, lineage={})

    def tracker(self) -> Tracker:
        return Tracker(self.params.tracking, self.root)


def _record(name: str, kind: str, objectives: dict, coefficients: dict, adapter_hashes: dict,
            non_dominated: bool) -> CandidateRecord:
    base = 0.1
    return CandidateRecord(
        name=name, kind=kind, source=kind, method="exact" if kind == "merge" else "none",
        coefficients=coefficients, weights={}, merge_params={}, objectives=objectives,
        intervals={k: [v, v] for k, v in objectives.items()},
        vs_base={k: PairedDiff(v - base, v - base, v - base) for k, v in objectives.items()},
        distinguishable=kind != "base", non_dominated=non_dominated, adapter_hashes=adapter_hashes)


@pytest.fixture
def project(tmp_path, tiny_policy_dir):
    return PromoteProject(tmp_path / "project", tiny_policy_dir)


# ------------------------------------------------------------------ alias moves, lock, history

@pytest.fixture
def tracker(tmp_path):
    cfg = TrackingConfig(tracking_uri="sqlite:///mlflow/mlflow.db", artifact_location="mlflow/artifacts", experiment="t")
    fresh_store(tmp_path)
    return Tracker(cfg, tmp_path)


@pytest.fixture
def lock(tmp_path, params):
    p = params.model_copy(update={"tracking": params.tracking.model_copy(update={"registered_model": "m"})})
    return lambda: registry_lock(p, tmp_path)


def _version(tracker, tmp_path, value):
    run = tracker.start_run("cand")
    f = tmp_path / "recipe.json"
    f.write_text("{}")
    tracker.log_artifact(run, f, "candidate")
    return register_candidate(tracker, "m", run, "candidate", {"objective.help": str(value)})


def _promote(tracker, lock, version, value, validation=True):
    with lock():
        champ_version, champ = champion_objectives(tracker, "m")
        d = decide(Candidate(version, {"help": value}), objectives=OBJ, validation_passed=validation,
                   champion_objectives=champ, reference=None, tolerance=0.01)
        return apply_decision(tracker, "m", version, d, champ_version)


def _alias(tracker, alias, name="m"):
    return tracker.client.get_registered_model(name).aliases.get(alias)


def test_champion_previous_challenger_and_rollback(tracker, tmp_path, lock):
    v1 = _version(tracker, tmp_path, 0.5)
    out1 = _promote(tracker, lock, v1, 0.5)
    assert out1.alias == "champion" and out1.previous is None and out1.moved
    v2 = _version(tracker, tmp_path, 0.7)
    out2 = _promote(tracker, lock, v2, 0.7)
    assert (out2.alias, out2.previous) == ("champion", v1)
    assert str(_alias(tracker, "previous")) == v1
    # worse beyond tolerance → challenger with reasons as tags; champion unchanged
    v3 = _version(tracker, tmp_path, 0.4)
    out3 = _promote(tracker, lock, v3, 0.4)
    assert out3.alias == "challenger" and "no_regression" in out3.reasons[0] and not out3.moved
    assert str(_alias(tracker, "champion")) == v2
    tags = tracker.client.get_model_version("m", v3).tags
    assert tags["gate.no_regression"].startswith("FAIL") and tags["promotion"] == "rejected"
    # failed validation never promotes even when better
    v4 = _version(tracker, tmp_path, 0.9)
    assert _promote(tracker, lock, v4, 0.9, validation=False).alias == "challenger"
    with lock():
        demoted, restored = rollback(tracker, "m")
    assert (demoted, restored) == (v2, v1)
    assert str(_alias(tracker, "champion")) == v1 and _alias(tracker, "previous") is None
    assert tracker.client.get_model_version("m", v2).tags[BLOCK_TAG].startswith("rolled back")


def test_promotion_refuses_when_champion_moved(tracker, tmp_path, lock):
    v1 = _version(tracker, tmp_path, 0.5)
    champ_version, champ = champion_objectives(tracker, "m")   # compared against: none
    _promote(tracker, lock, v1, 0.5)                            # someone else promotes meanwhile
    v2 = _version(tracker, tmp_path, 0.6)
    d = decide(Candidate(v2, {"help": 0.6}), objectives=OBJ, validation_passed=True,
               champion_objectives=champ, reference=None, tolerance=0.01)
    with lock(), pytest.raises(ChampionChanged):
        apply_decision(tracker, "m", v2, d, champ_version)
    assert str(_alias(tracker, "champion")) == v1


def test_moves_outside_the_lock_are_refused(tracker, tmp_path, lock):
    v1 = _version(tracker, tmp_path, 0.5)
    d = decide(Candidate(v1, {"help": 0.5}), objectives=OBJ, validation_passed=True,
               champion_objectives=None, reference=None, tolerance=0.01)
    with pytest.raises(RuntimeError, match="inside registry_lock"):
        apply_decision(tracker, "m", v1, d, None)
    with pytest.raises(RuntimeError, match="inside registry_lock"):
        rollback(tracker, "m")
    assert _alias(tracker, "champion") is None
    with lock(), lock():   # re-entrant in one thread
        assert apply_decision(tracker, "m", v1, d, None).moved


def test_rollback_goes_back_more_than_one_step_past_blocked_versions(tracker, tmp_path, lock):
    versions = [_version(tracker, tmp_path, v) for v in (0.5, 0.6, 0.7, 0.8)]
    for v, value in zip(versions, (0.5, 0.6, 0.7, 0.8)):
        assert _promote(tracker, lock, v, value).moved
    v1, v2, v3, v4 = versions
    assert champion_history(tracker, "m") == versions
    with lock():
        assert rollback(tracker, "m", reason="bad answers") == (v4, v3)
        assert rollback(tracker, "m") == (v3, v2)
    assert str(_alias(tracker, "champion")) == v2 and str(_alias(tracker, "previous")) == v1
    assert "bad answers" in tracker.client.get_model_version("m", v4).tags[BLOCK_TAG]
    # v3 cleared by a person; v4 stays blocked: the next rollback from a new champion skips v4
    with lock():
        unblock(tracker, "m", v3)
        with pytest.raises(ValueError, match="not blocked"):
            unblock(tracker, "m", v3)
    v5 = _version(tracker, tmp_path, 0.9)
    assert _promote(tracker, lock, v5, 0.9).previous == v2
    with lock():
        assert rollback(tracker, "m") == (v5, v2)
        assert rollback(tracker, "m") == (v2, v1)
        with pytest.raises(ValueError, match="no earlier champion"):
            rollback(tracker, "m")
    assert champion_history(tracker, "m") == [v1]


class _Unavailable(http.server.BaseHTTPRequestHandler):
    """What a proxy in front of a restarting MLflow server answers: 503 to everything."""

    def _answer(self):
        self.send_response(503)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"Service Unavailable")

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *args):
        pass


def test_transient_registry_error_fails_closed(monkeypatch):
    """Today's code read any MlflowException as "no champion", so the no-regression gate
    passed during an outage. A 503 must stop the promotion."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        tracker = types.SimpleNamespace(client=MlflowClient(tracking_uri=url, registry_uri=url))
        with pytest.raises(RegistryUnavailable, match="cannot read registered model"):
            champion_objectives(tracker, "m")
    finally:
        server.shutdown()


def test_missing_model_reads_as_no_champion(tracker):
    assert champion_objectives(tracker, "never-registered") == (None, {})


# ------------------------------------------------------------------ promote.run end to end

def test_unchanged_candidate_reuses_its_version(project):
    project.train(seed=1)
    project.front(helpfulness=0.6)
    tracker = project.tracker()
    first = project.promote(tracker)
    second = project.promote(tracker)          # a no-op night: same adapters, same recipe
    name = project.params.tracking.registered_model
    versions = tracker.client.search_model_versions(f"name = '{name}'")
    assert [str(v.version) for v in versions] == [first.version] and second.version == first.version
    assert (first.alias, first.metrics["promoted"]) == ("champion", 1.0)
    assert (second.alias, second.metrics["promoted"], second.metrics["reused_version"]) == ("champion", 0.0, 1.0)
    assert _alias(tracker, "previous", name) is None    # previous never equals champion
    assert champion_history(tracker, name) == [first.version]
    # a retrained adapter (other bytes) is a new candidate
    project.train(seed=2)
    project.front(helpfulness=0.6)
    third = project.promote(tracker)
    assert third.version != first.version and third.metrics["reused_version"] == 0.0


def test_rollback_then_nightly_of_same_candidate_leaves_it_demoted(project):
    tracker = project.tracker()
    name = project.params.tracking.registered_model
    project.train(seed=1)
    project.front(helpfulness=0.5)
    v1 = project.promote(tracker).version
    project.train(seed=2)
    project.front(helpfulness=0.7)
    v2 = project.promote(tracker).version
    assert str(_alias(tracker, "champion", name)) == v2
    with registry_lock(project.params, project.root):
        assert rollback(tracker, name) == (v2, v1)
    # the next nightly finds the same candidate (nothing retrained): it must not come back
    again = project.promote(tracker)
    assert again.version == v2 and again.alias == "challenger" and not again.metrics["promoted"]
    assert any(r.startswith("rolled_back") for r in again.reasons)
    assert str(_alias(tracker, "champion", name)) == v1
    assert len(tracker.client.search_model_versions(f"name = '{name}'")) == 2
    # a person clears it: the next nightly promotes it again
    with registry_lock(project.params, project.root):
        unblock(tracker, name, v2)
    assert project.promote(tracker).alias == "champion"
    assert str(_alias(tracker, "champion", name)) == v2


def test_package_with_a_changed_adapter_is_refused(project):
    from paretoflow.promote import AdapterChanged

    tracker = project.tracker()
    project.train(seed=1)
    project.front(helpfulness=0.6)
    weights = project.adapters / "expert-helpfulness" / "adapter_model.safetensors"
    make_adapter(project.policy_dir, weights.parent, seed=99, objective="helpfulness")   # retrained after the front
    with pytest.raises(AdapterChanged, match="expert-helpfulness.*front evaluated"):
        project.promote(tracker)
    name = project.params.tracking.registered_model
    assert tracker.client.search_model_versions(f"name = '{name}'") == []
    runs = tracker.client.search_runs([tracker.experiment_id], filter_string="tags.`paretoflow.stage` = 'promote'")
    assert [r.info.status for r in runs] == ["FAILED"]


def test_package_records_hashes_and_key_ignores_measurements(project, tmp_path):
    from paretoflow.promote import candidate_key, evaluated_hashes, load_front, package_candidate

    project.train(seed=1)
    doc = project.front(helpfulness=0.6)
    _, _, candidates = load_front(project.params, project.root)
    merge = next(c for c in candidates if c.info.kind == "merge")
    a = package_candidate(project.params, project.root, merge, tmp_path / "a", evaluated_hashes(doc))
    recipe = json.loads((a / "recipe.json").read_text())
    assert recipe["adapters"] == {e.name: e.file_hash for e in doc.experts}
    merge.objectives = {**merge.objectives, "helpfulness": 0.9}      # re-measured, same model
    b = package_candidate(project.params, project.root, merge, tmp_path / "b", evaluated_hashes(doc))
    assert candidate_key(a) == candidate_key(b)
    merge.info = dataclasses.replace(merge.info, coefficients={k: 1.0 for k in merge.info.coefficients})
    c = package_candidate(project.params, project.root, merge, tmp_path / "c", evaluated_hashes(doc))
    assert candidate_key(c) != candidate_key(a)
    # an adapter the front recorded no hash for cannot be checked: refused
    with pytest.raises(ValueError, match="records no file_hash"):
        package_candidate(project.params, project.root, merge, tmp_path / "d", {})


def test_cli_promote_and_rollback_never_leave_runs_running(project, capsys):
    from paretoflow.cli import main

    args = ["--params", str(project.root / "params.yaml")]
    # no front yet: promote fails, and its run says so
    assert main([*args, "promote", "--root", str(project.root)]) == 2
    from paretoflow.data.validate import data_hash, verdict_params_hash

    (project.root / "data/curated").mkdir(parents=True)
    (project.root / "data/curated/validation.json").write_text(json.dumps({
        "success": True, "data_hash": data_hash(project.root / "data/curated"),
        "params_hash": verdict_params_hash(project.params)}))
    project.train(seed=1)
    project.front(helpfulness=0.6)
    assert main([*args, "promote", "--root", str(project.root)]) == 0
    assert main([*args, "rollback", "--root", str(project.root)]) == 2    # nothing earlier to restore
    tracker = project.tracker()
    runs = tracker.client.search_runs([tracker.experiment_id])
    status = sorted((r.info.run_name.split("-")[0], r.info.status) for r in runs)
    # `base`: the first registration also publishes the base model (paretoflow-base), once.
    assert status == [("base", "FINISHED"), ("candidate", "FINISHED"), ("promote", "FAILED"),
                      ("promote", "FINISHED"), ("rollback", "FAILED")]
    assert "no earlier champion" in capsys.readouterr().err
