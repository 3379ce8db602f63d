"""Promotion stage: front candidate → gated MLflow registry version and alias.

Reads artifacts/front/front.json, chooses the candidate for the configured preference
vector (or constraint), packages it as a self-contained recipe (merge method,
coefficients, the expert adapters it needs as safetensors, the base model fingerprint),
logs that under a nested candidate run, registers a model version tagged with its
objective values and lineage, and applies the gates (paretoflow/promotion.py) through
the registry's compare-and-set (paretoflow/registry.py). `load_candidate` rebuilds the
exact model from a downloaded package: what a server loads for `models:/name@champion`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from paretoflow.config import Params
from paretoflow.promotion import Candidate, decide, select_by_constraint, select_by_preference
from paretoflow.registry import apply_decision, champion_objectives, register_candidate
from paretoflow.tracking import Tracker

PACKAGE = "candidate"


@dataclass
class PromoteResult:
    candidate: str
    version: str
    alias: str
    previous: str | None
    reasons: list[str]
    gates: dict[str, str] = field(default_factory=dict)
    candidate_run_id: str = ""
    objectives: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def validation_passed(params: Params, root: Path) -> bool:
    """The data gate's verdict as the validate stage recorded it (validation.json), only
    for the curated tables now on disk: a report on other data or other validate params
    raises paretoflow.data.validate.StaleVerdict."""
    from paretoflow.data.validate import verdict

    return verdict(params, Path(root))


def load_front(params: Params, root: Path) -> tuple[dict, list[Candidate]]:
    path = root / params.front.out_dir / "front.json"
    if not path.exists():
        raise FileNotFoundError(f"front not found: {path} (run `paretoflow front` first)")
    doc = json.loads(path.read_text())
    candidates = [
        Candidate(name=r["name"], objectives=r["objectives"], rm_objectives=r.get("reward_model") or {},
                  dominated=not r["non_dominated"], info=r)
        for r in doc["candidates"]
    ]
    return doc, candidates


def choose(params: Params, candidates: list[Candidate]) -> Candidate:
    rule = params.promote
    if rule.constraint is not None:
        return select_by_constraint(candidates, params.objectives, rule.constraint["maximize"],
                                    rule.constraint.get("minimums", {}))
    n = len(params.objectives)
    weights = rule.preference if rule.preference is not None else [1.0 / n] * n
    return select_by_preference(candidates, params.objectives, weights)


def package_candidate(params: Params, root: Path, candidate: Candidate, out: Path) -> Path:
    """Write recipe.json + the adapters the candidate needs into `out` (safetensors only)."""
    from paretoflow.models import model_fingerprint, resolve_policy_path

    record = candidate.info
    out.mkdir(parents=True, exist_ok=True)
    adapters_dir = root / params.align.out_dir
    if record["kind"] == "merge":
        parts = {name: coef for name, coef in record["coefficients"].items() if coef != 0.0}
    elif record["kind"] == "adapter":
        parts = {record["name"]: 1.0}
    else:
        parts = {}
    for name in parts:
        src = adapters_dir / name
        if not (src / "adapter_model.safetensors").exists():
            raise FileNotFoundError(f"candidate {candidate.name} needs adapter {src}, which is missing")
        dst = out / "adapters" / name
        dst.mkdir(parents=True)
        for f in src.iterdir():
            if f.is_file() and f.suffix in (".safetensors", ".json"):
                shutil.copy2(f, dst / f.name)
    base_path = resolve_policy_path(params.model.policy, root / params.model.cache_dir)
    recipe = {
        "candidate": candidate.name,
        "kind": record["kind"],
        # A trained adapter is applied as an exact merge with weight 1: the same weights.
        "method": record.get("method") if record["kind"] == "merge" else "exact",
        "merge_params": record.get("merge_params") or {},
        "coefficients": parts,
        "base_model": params.model.policy,
        "base_fingerprint": model_fingerprint(base_path),
        "objectives": candidate.objectives,
        "reward_model": candidate.rm_objectives,
        "seed": params.project.seed,
    }
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2))
    return out


def load_candidate(package_dir: Path, policy: str | None = None, cache_dir: str | Path = ".cache/models"):
    """Rebuild (model, tokenizer) from a candidate package; refuses a different base."""
    from paretoflow.merging import MergeTarget, load_expert, merge_deltas
    from paretoflow.models import load_policy, model_fingerprint

    recipe = json.loads((package_dir / "recipe.json").read_text())
    model, tokenizer, path = load_policy(policy or recipe["base_model"], cache_dir)
    if model_fingerprint(path) != recipe["base_fingerprint"]:
        raise ValueError(f"candidate {recipe['candidate']} was built on base {recipe['base_fingerprint']}, "
                         f"not on {path} ({model_fingerprint(path)})")
    names = list(recipe["coefficients"])
    if names:
        experts = [load_expert(package_dir / "adapters" / n) for n in names]
        mp = recipe.get("merge_params") or {}
        MergeTarget(model).apply(merge_deltas(
            experts, [recipe["coefficients"][n] for n in names], recipe["method"],
            ties_density=mp.get("ties_density", 0.2), dare_drop_rate=mp.get("dare_drop_rate", 0.9),
            task_arithmetic_lambda=mp.get("task_arithmetic_lambda", 1.0), seed=recipe.get("seed", 0)))
    return model, tokenizer


def run(params: Params, root: Path, tracker: Tracker, parent_run_id: str, validation_passed: bool,
        lineage: dict[str, str]) -> PromoteResult:
    root = Path(root)
    _, candidates = load_front(params, root)
    chosen = choose(params, candidates)
    reference = next((c for c in candidates if c.info.get("kind") == "base"), None)
    name = params.tracking.registered_model
    champion_version, champion = champion_objectives(tracker, name)

    run_id = tracker.start_run(f"candidate-{chosen.name}", parent_run_id,
                               tags={**lineage, "paretoflow.stage": "promote", "paretoflow.candidate": chosen.name})
    tracker.log_params(run_id, {"preference": params.promote.preference, "constraint": params.promote.constraint,
                                "tolerance": params.promote.tolerance, "candidate": chosen.name})
    tracker.log_metrics(run_id, {**chosen.objectives, **{f"rm_{k}": v for k, v in chosen.rm_objectives.items()}})
    with tempfile.TemporaryDirectory() as tmp:
        package = package_candidate(params, root, chosen, Path(tmp) / PACKAGE)
        tracker.log_artifact(run_id, package, PACKAGE)
    tags = {**lineage, "candidate": chosen.name, **{f"objective.{k}": f"{v:.6f}" for k, v in chosen.objectives.items()}}
    version = register_candidate(tracker, name, run_id, PACKAGE, tags)
    decision = decide(chosen, objectives=params.objectives, validation_passed=validation_passed,
                      champion_objectives=champion, reference=reference, tolerance=params.promote.tolerance,
                      rm_tolerance=params.promote.rm_tolerance)
    outcome = apply_decision(tracker, name, version, decision, champion_version, root / params.promote.lock_file)
    tracker.set_tags(run_id, {"paretoflow.registry_version": version, "paretoflow.alias": outcome.alias})
    tracker.end_run(run_id)
    return PromoteResult(
        candidate=chosen.name, version=version, alias=outcome.alias, previous=outcome.previous,
        reasons=outcome.reasons, gates={g.name: ("pass" if g.passed else "FAIL: ") + ("" if g.passed else g.reason)
                                        for g in decision.gates},
        candidate_run_id=run_id, objectives=chosen.objectives,
        metrics={"promoted": float(outcome.alias == "champion")},
    )
