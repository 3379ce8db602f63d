"""Promotion stage: front candidate → gated MLflow registry version and alias.

Reads artifacts/front/front.json, chooses the candidate for the configured preference
vector (or constraint), packages it as a self-contained recipe (merge method,
coefficients, the expert adapters it needs as safetensors, the base model fingerprint),
logs that under a nested candidate run, registers a model version tagged with its
objective values and lineage, and applies the gates (paretoflow/promotion.py) through
the registry's check-move-verify (paretoflow/registry.py), all inside the registry lock.
The package is built from the exact adapter files the front evaluated (their hashes in
front.json are checked) and holds every expert, so the served model can merge any
trade-off; a candidate whose recipe and adapter files are unchanged reuses its registered
version instead of registering a new one. A registered version is an MLflow Model
(`register_package`): a pyfunc model logged as code (paretoflow/serving) with the package
as its artifact, the base model published once as `paretoflow-base` and named in the
package's base.json, so `mlflow.pyfunc.load_model("models:/name@champion")` and
`mlflow models serve` need only the tracking URI. The package is also logged on its own
(`candidate`), which is what promotion compares; `load_candidate` rebuilds the exact
model from it on a local base.

Gates on paired scores: front.json and its per-prompt scores are read through
paretoflow.front.document. The candidate is chosen by the lower bound of its
preference-weighted paired gain over the base; it is then compared prompt by prompt with
the current champion (paretoflow.front.compare scores the champion's registered package
on the front's prompts with the same judges; free when it was a front candidate), or
with the base when there is no champion. A champion that cannot be compared that way
makes the candidate a challenger with the reason (fail closed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from paretoflow.front.document import FrontDocument, PromptScores, read_front
from paretoflow.io import file_hash, write_json
from paretoflow.promotion import (
    Candidate,
    GateResult,
    PairedComparison,
    compare_paired,
    decide,
    feasible_candidates,
    gate_scorer_agreement,
    select_by_paired_preference,
)
from paretoflow.registry import (
    apply_decision,
    champion_objectives,
    find_version,
    register_candidate,
    registry_lock,
)
from paretoflow.tracking import Tracker

if TYPE_CHECKING:
    from paretoflow.config import Params

PACKAGE = "candidate"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Files of an adapter that decide its weights when loaded (meta.json holds timings too).
_IDENTITY_FILES = (ADAPTER_WEIGHTS, "adapter_config.json")
# Recipe fields that decide the packaged model's weights; measured values and paths do not.
_IDENTITY_FIELDS = ("kind", "method", "merge_params", "coefficients", "base_fingerprint", "seed", "adapters",
                    "experts", "objective_names")
# Bumped when what a registered version holds changes (2: an MLflow pyfunc Model), so a
# version registered in an older format is not reused for a candidate of this one.
PACKAGE_FORMAT = 2


class AdapterChanged(ValueError):
    """An adapter on disk is not the file the front evaluated."""


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


def load_front(params: Params, root: Path) -> tuple[FrontDocument, PromptScores, list[Candidate]]:
    """front.json through its model, its per-prompt scores, and the candidates to choose from."""
    document, scores = read_front(Path(root) / params.front.out_dir)
    # Only eligible candidates may be chosen (front/answers.py: the answer-rate constraint);
    # the base is always eligible, so the pool is never empty.
    candidates = [
        Candidate(name=r.name, objectives=r.objectives, rm_objectives=r.reward_model,
                  dominated=not r.non_dominated, info=r)
        for r in document.candidates if r.eligible
    ]
    return document, scores, candidates


def preference_weights(params: Params) -> list[float]:
    """The weights of the preference-weighted score: the preference vector, equal weights
    when none is given, the maximised objective alone under a constraint rule."""
    rule, names = params.promote, params.objective_names
    if rule.constraint is not None:
        return [1.0 if n == rule.constraint["maximize"] else 0.0 for n in names]
    return list(rule.preference) if rule.preference is not None else [1.0 / len(names)] * len(names)


def compare_with_base(params: Params, document: FrontDocument, scores: PromptScores) -> dict[str, PairedComparison]:
    """Every candidate vs the base on the front's prompts, preference-weighted and per objective."""
    base = document.base
    if base is None:
        raise ValueError("front has no base candidate to compare with")
    reference = scores.get(base.name)
    settings = document.evaluation
    return {r.name: compare_paired(scores.get(r.name), reference, params.objectives, preference_weights(params),
                                   "base", n_resamples=settings.n_boot, level=settings.ci_level, seed=settings.seed)
            for r in document.candidates}


def choose(params: Params, candidates: list[Candidate], vs_base: dict[str, PairedComparison]) -> Candidate:
    """Preference: the best lower bound of the weighted paired gain over the base (non-dominated).
    Constraint: feasible by means, then the best lower bound of the maximised objective's gain."""
    rule = params.promote
    if rule.constraint is None:
        return select_by_paired_preference(candidates, vs_base)
    maximize = rule.constraint["maximize"]
    pool = feasible_candidates(candidates, params.objectives, maximize, rule.constraint.get("minimums", {}))
    return max(pool, key=lambda c: (vs_base[c.name].objectives[maximize].ci_low,
                                    vs_base[c.name].objectives[maximize].diff))


def compare_with_champion(params: Params, root: Path, tracker: Tracker, name: str, version: str | None,
                          document: FrontDocument, scores: PromptScores, chosen: Candidate,
                          vs_base: dict[str, PairedComparison]) -> tuple[PairedComparison | None, str | None]:
    """(comparison, None) against the champion (or the base without one); (None, reason) when the
    champion cannot be scored on the same prompts with the same scorer."""
    if version is None:
        return vs_base[chosen.name], None
    from paretoflow.front.compare import NotComparable, package_scores

    try:
        with tempfile.TemporaryDirectory() as tmp:
            run_id = tracker.client.get_model_version(name, version).run_id
            package = tracker.download(run_id, PACKAGE, Path(tmp))
            champion_scores, how = package_scores(params, root, document, scores, package)
    except NotComparable as exc:
        return None, f"champion v{version}: {exc}"
    except Exception as exc:  # noqa: BLE001 - any failure to fetch or score the champion fails closed
        return None, f"champion v{version} could not be fetched or scored: {type(exc).__name__}: {exc}"
    settings = document.evaluation
    comparison = compare_paired(scores.get(chosen.name), champion_scores, params.objectives,
                                preference_weights(params), f"champion v{version} ({how})",
                                n_resamples=settings.n_boot, level=settings.ci_level, seed=settings.seed)
    return comparison, None


def scorer_agreement(params: Params, chosen: Candidate) -> GateResult:
    """Judges vs the reward models (main and independent), paired intervals vs the base."""
    record = chosen.info
    judges = {k: (v.ci_low, v.ci_high) for k, v in record.vs_base.items()}
    others = {label: {k: (v.ci_low, v.ci_high) for k, v in block.items()}
              for label, block in (("reward model", record.reward_model_vs_base),
                                   ("independent reward model", record.independent_vs_base)) if block}
    return gate_scorer_agreement(judges, others, params.objectives)


def evaluated_hashes(document: FrontDocument) -> dict[str, str]:
    """adapter name → hash of the adapter_model.safetensors the front evaluated (front.json
    `experts`, and `adapters` for the other trained adapters it evaluated)."""
    return {e.name: e.file_hash for e in [*document.experts, *document.adapters] if e.file_hash}


def _candidate_parts(candidate: Candidate) -> dict[str, float]:
    record = candidate.info   # paretoflow.front.document.CandidateRecord
    if record.kind == "merge":
        return {name: coef for name, coef in record.coefficients.items() if coef != 0.0}
    if record.kind == "adapter":
        return {record.name: 1.0}
    return {}


def _copy_adapter(src: Path, dst: Path, name: str, expected: str | None, candidate: str) -> str:
    """Copy one adapter into the package and check the copied weights against the front's
    hash (the copy, not the source: the package holds exactly the bytes checked)."""
    if not (src / ADAPTER_WEIGHTS).exists():
        raise FileNotFoundError(f"candidate {candidate} needs adapter {src}, which is missing")
    if expected is None:
        raise AdapterChanged(f"candidate {candidate} needs adapter {name}, but front.json records no file_hash "
                             "for it: rerun `paretoflow front` so the package can be checked against what it evaluated")
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix in (".safetensors", ".json"):
            shutil.copy2(f, dst / f.name)
    actual = file_hash(dst / ADAPTER_WEIGHTS)
    if actual != expected:
        raise AdapterChanged(f"adapter {src / ADAPTER_WEIGHTS} has hash {actual}, but the front evaluated "
                             f"{expected} (front.json): it changed after the front ran; rerun `paretoflow front`")
    return actual


def front_experts(params: Params, hashes: dict[str, str], document: FrontDocument | None = None) -> dict[str, str]:
    """objective → expert adapter name, for the experts the front evaluated (front.json
    `experts`; without a document, the `expert-<objective>` names among `hashes`)."""
    if document is not None:
        return {e.objective: e.name for e in document.experts if e.objective and e.name in hashes}
    return {o: f"expert-{o}" for o in params.objective_names if f"expert-{o}" in hashes}


def package_candidate(params: Params, root: Path, candidate: Candidate, out: Path,
                      hashes: dict[str, str], experts: dict[str, str] | None = None) -> Path:
    """Write recipe.json + the adapters the candidate needs into `out` (safetensors only).

    `hashes` (from `evaluated_hashes(front.json)`) are the adapter files the front
    evaluated; an adapter that differs, or has no recorded hash, is refused (AdapterChanged).
    Every expert (`experts`: objective → adapter, default `front_experts`) is packaged too,
    so the served model can merge any trade-off, not only the candidate's coefficients.
    """
    from paretoflow.models import model_fingerprint, resolve_policy_path

    record = candidate.info   # paretoflow.front.document.CandidateRecord
    out.mkdir(parents=True, exist_ok=True)
    adapters_dir = root / params.align.out_dir
    parts = _candidate_parts(candidate)
    experts = front_experts(params, hashes) if experts is None else experts
    adapter_hashes = {name: _copy_adapter(adapters_dir / name, out / "adapters" / name, name, hashes.get(name),
                                          candidate.name)
                      for name in dict.fromkeys([*parts, *experts.values()])}
    base_path = resolve_policy_path(params.model.policy, root / params.model.cache_dir)
    recipe = {
        "candidate": candidate.name,
        "kind": record.kind,
        # A trained adapter is applied as an exact merge with weight 1: the same weights.
        "method": record.method if record.kind == "merge" else "exact",
        "merge_params": record.merge_params or {},
        "coefficients": parts,
        "adapters": adapter_hashes,           # adapter name → hash of its adapter_model.safetensors
        "base_model": params.model.policy,
        "base_fingerprint": model_fingerprint(base_path),
        "objectives": candidate.objectives,
        "objective_names": params.objective_names,
        "experts": experts,                    # objective → adapter: what per-request weights merge
        "reward_model": candidate.rm_objectives,
        "seed": params.project.seed,
        "max_new_tokens": params.front.budget(params.project.profile).max_new_tokens,
    }
    write_json(out / "recipe.json", recipe)
    return out


def candidate_key(package_dir: Path) -> str:
    """Content key of a package: the recipe fields that decide the weights plus the hash of
    each adapter's weight and config files. Equal keys ⇒ the same model; measured objective
    values, the candidate's name and the base model's local path are not part of it."""
    recipe = json.loads((package_dir / "recipe.json").read_text())
    identity = {k: recipe.get(k) for k in _IDENTITY_FIELDS}
    identity["format"] = PACKAGE_FORMAT
    identity["files"] = {
        name: {f: file_hash(package_dir / "adapters" / name / f, 64)
               for f in _IDENTITY_FILES if (package_dir / "adapters" / name / f).exists()}
        for name in sorted({*recipe["coefficients"], *(recipe.get("experts") or {}).values()})
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


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
    for n, expected in (recipe.get("adapters") or {}).items():
        if file_hash(package_dir / "adapters" / n / ADAPTER_WEIGHTS) != expected:
            raise AdapterChanged(f"package {package_dir}: adapter {n} does not match the hash in its recipe")
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
    """Choose, package (hash-checked), register or reuse, gate and move aliases, the last
    three inside registry_lock. The candidate run ends FAILED on any error."""
    root = Path(root)
    document, scores, candidates = load_front(params, root)
    vs_base = compare_with_base(params, document, scores)
    chosen = choose(params, candidates, vs_base)
    name = params.tracking.registered_model

    with tracker.run(f"candidate-{chosen.name}", parent_run_id,
                     tags={**lineage, "paretoflow.stage": "promote", "paretoflow.candidate": chosen.name}) as run_id:
        tracker.log_params(run_id, {"preference": params.promote.preference, "constraint": params.promote.constraint,
                                    "tolerance": params.promote.tolerance, "candidate": chosen.name})
        tracker.log_metrics(run_id, {**chosen.objectives, **{f"rm_{k}": v for k, v in chosen.rm_objectives.items()}})
        with tempfile.TemporaryDirectory() as tmp:
            hashes = evaluated_hashes(document)
            package = package_candidate(params, root, chosen, Path(tmp) / PACKAGE, hashes,
                                        front_experts(params, hashes, document))
            # Scoring the champion may generate (minutes on CPU): done before taking the lock,
            # and redone under it only if the champion moved meanwhile.
            def compare(version: str | None):
                return compare_with_champion(params, root, tracker, name, version, document, scores, chosen, vs_base)

            seen, _ = champion_objectives(tracker, name)   # fails closed
            comparison, comparison_error = compare(seen)
            with registry_lock(params, root) as lock:
                champion_version, champion = champion_objectives(tracker, name)
                if champion_version != seen:
                    comparison, comparison_error = compare(champion_version)
                version, reused = _register_or_reuse(tracker, name, run_id, package, lineage, chosen,
                                                     _base_dir(params, root))
                decision = decide(chosen, objectives=params.objectives, validation_passed=validation_passed,
                                  champion_objectives=champion, reference=None, tolerance=params.promote.tolerance,
                                  comparison=comparison,
                                  comparison_error=comparison_error, agreement=scorer_agreement(params, chosen))
                outcome = apply_decision(tracker, name, version, decision, champion_version)
        tracker.log_params(run_id, {"compared_with": comparison.reference if comparison else "none"})
        tracker.log_metrics(run_id, _comparison_metrics(comparison))
        tracker.set_tags(run_id, {"paretoflow.registry_version": version, "paretoflow.alias": outcome.alias,
                                  "paretoflow.reused_version": str(reused).lower(), "paretoflow.registry_lock": lock,
                                  "paretoflow.champion_moved": str(outcome.moved).lower()})
        ineligible = [f"{r.name} not eligible: {r.ineligible_reason}" for r in document.candidates if not r.eligible]
        if ineligible:
            tracker.set_tags(run_id, {"paretoflow.ineligible": "; ".join(ineligible)[:5000]})
    return PromoteResult(
        candidate=chosen.name, version=version, alias=outcome.alias, previous=outcome.previous,
        reasons=[*outcome.reasons, *ineligible], gates={g.name: ("pass" if g.passed else "FAIL: ") + ("" if g.passed else g.reason)
                                        for g in decision.gates},
        candidate_run_id=run_id, objectives=chosen.objectives,
        metrics={"promoted": float(outcome.moved), "reused_version": float(reused), **_comparison_metrics(comparison)},
    )


def _base_dir(params: Params, root: Path) -> str:
    from paretoflow.models import resolve_policy_path

    return resolve_policy_path(params.model.policy, root / params.model.cache_dir)


def _register_or_reuse(tracker: Tracker, name: str, run_id: str, package: Path, lineage: dict[str, str],
                       chosen: Candidate, base_dir: str) -> tuple[str, bool]:
    """(version, reused?): the version already registered for this package's key, else a
    new one. Under the lock, so two promoters of the same candidate register it once."""
    key = candidate_key(package)
    version = find_version(tracker, name, key)
    if version is not None:
        return version, True
    tags = {**lineage, "candidate": chosen.name,
            **{f"objective.{k}": f"{v:.6f}" for k, v in chosen.objectives.items()}}
    return register_package(tracker, name, run_id, package, tags, key, base_dir), False


def register_package(tracker: Tracker, name: str, run_id: str, package: Path, tags: dict[str, str],
                     key: str | None, base_dir: str | Path) -> str:
    """Register a package as an MLflow Model version: the base is registered (once per
    fingerprint) and named in base.json, the package is logged as `candidate` (what
    promotion compares) and inside the pyfunc Model logged as `model`, the version's source."""
    from paretoflow.serving.base import register_base
    from paretoflow.serving.mlflow_model import MODEL_ARTIFACT, save_candidate_model

    recipe = json.loads((package / "recipe.json").read_text())
    base = register_base(tracker, base_dir, recipe["base_fingerprint"], run_id)
    write_json(package / "base.json", base)
    tracker.log_artifact(run_id, package, PACKAGE)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_candidate_model(package, Path(tmp) / MODEL_ARTIFACT)
        tracker.log_artifact(run_id, model_dir, MODEL_ARTIFACT)
    return register_candidate(tracker, name, run_id, MODEL_ARTIFACT, {**tags, "paretoflow.base_model": base["uri"]},
                              key=key)


def _comparison_metrics(comparison: PairedComparison | None) -> dict[str, float]:
    if comparison is None:
        return {}
    out = {"gain_weighted": comparison.weighted.diff, "gain_weighted_ci_low": comparison.weighted.ci_low,
           "gain_weighted_ci_high": comparison.weighted.ci_high}
    for k, v in comparison.objectives.items():
        out.update({f"gain_{k}": v.diff, f"gain_{k}_ci_low": v.ci_low, f"gain_{k}_ci_high": v.ci_high})
    return out
