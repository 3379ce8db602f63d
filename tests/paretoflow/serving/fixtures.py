"""A registered candidate of the tiny project in a sqlite MLflow store, for serving tests."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

from paretoflow.config import TrackingConfig
from paretoflow.io import file_hash
from paretoflow.promote import PACKAGE, candidate_key, front_experts, package_candidate, register_package
from paretoflow.promotion import Candidate
from paretoflow.tracking import Tracker
from tests.paretoflow.front.front_fixtures import make_project, tiny_params

EXPERTS = ("expert-brevity", "expert-verbosity")
WEIGHTS = {"expert-brevity": 0.3, "expert-verbosity": 0.7}   # the registered candidate


def merge_candidate(coefficients: dict[str, float], method: str = "exact", merge_params: dict | None = None):
    """A front candidate record that merges the tiny experts (what front.json would hold)."""
    name = "merge-" + "-".join(f"{c:.2f}" for c in coefficients.values())
    record = SimpleNamespace(name=name, kind="merge", method=method, merge_params=merge_params or {},
                             coefficients=coefficients)
    return Candidate(name=name, objectives={"brevity": 0.5, "verbosity": 0.5}, rm_objectives={},
                     dominated=False, info=record)


def tiny_registry(root: Path, policy_dir: Path, tracking_uri: str = "sqlite:///mlflow/mlflow.db"):
    """(params, tracker) of a tiny project with two experts under `root`."""
    make_project(root, policy_dir, with_modpo=False)
    params = tiny_params(policy_dir)
    params.tracking = TrackingConfig(tracking_uri=tracking_uri, artifact_location="mlflow/artifacts",
                                     experiment="t", registered_model="m")
    return params, Tracker(params.tracking, root)


def register_tiny_candidate(params, tracker, root: Path, policy_dir: Path, candidate) -> str:
    """Package `candidate` and register it as an MLflow Model version of `m`; returns the version."""
    hashes = {n: file_hash(root / "artifacts/adapters" / n / "adapter_model.safetensors") for n in EXPERTS}
    with tracker.run(f"candidate-{candidate.name}") as run_id, tempfile.TemporaryDirectory() as tmp:
        package = package_candidate(params, root, candidate, Path(tmp) / PACKAGE, hashes,
                                    front_experts(params, hashes))
        return register_package(tracker, params.tracking.registered_model, run_id, package, {},
                                candidate_key(package), policy_dir)


def merged_answers(policy_dir: Path, root: Path, weights: list[float], prompts: list[str], max_new_tokens: int):
    """In-process reference: the exact merge for `weights` on a fresh base, greedy answers."""
    from paretoflow.generation import generate
    from paretoflow.merging import MergeTarget, load_expert, merge_deltas
    from paretoflow.models import load_policy

    model, tokenizer, _ = load_policy(str(policy_dir))
    experts = [load_expert(root / "artifacts/adapters" / n) for n in EXPERTS]
    MergeTarget(model).apply(merge_deltas(experts, weights, "exact"))
    texts = generate(model, tokenizer, [[{"role": "user", "content": p}] for p in prompts],
                     max_new_tokens=max_new_tokens, progress=False)
    return [t[0] for t in texts]
