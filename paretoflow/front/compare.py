"""Scoring a registered champion on the front's prompts with the front's scorer (for promotion).

Promotion compares a candidate with the current champion prompt by prompt, so both need
per-prompt scores on the same prompts from the same scorer. `package_scores` gets them
for a champion package (recipe.json + adapters, paretoflow.promote.package_candidate):

1. the package's base fingerprint must be the front's base;
2. if a candidate of this front applies the same weights (same adapter file hashes with
   the same coefficients, same merge method and params), its scores are the champion's:
   nothing is recomputed;
3. otherwise the recipe is rebuilt on the base model and evaluated through the front's
   evaluator on the front's prompts (their hash must match) with the judge mixture of
   the current params (its hash must match the front's). The generation cache key is the
   content of the applied weights, so a champion that was a candidate of an earlier front
   on the same prompts costs no generation, only scoring.

Anything that prevents an equal comparison raises `NotComparable` with the reason; the
promotion then fails closed (challenger, reason in the gate tag).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

import numpy as np

from paretoflow.front.document import CandidateRecord, FrontDocument, PromptScores
from paretoflow.io import read_json

if TYPE_CHECKING:
    from paretoflow.config import Params

RECIPE = "recipe.json"


class NotComparable(RuntimeError):
    """The reference cannot be scored on the same prompts with the same scorer."""


def _identity(method: str, merge_params: dict, weighted_hashes: list[tuple[str, float]]) -> tuple:
    pairs = sorted((h, round(float(c), 9)) for h, c in weighted_hashes if c != 0.0 or method != "exact")
    return method, tuple(sorted((merge_params or {}).items())) if method != "exact" else (), tuple(pairs)


def record_identity(record: CandidateRecord) -> tuple:
    """What weights a front candidate applies: (method, merge params, sorted (hash, coef))."""
    if record.kind == "base":
        return _identity("exact", {}, [])
    if record.kind == "adapter":
        return _identity("exact", {}, [(h, 1.0) for h in record.adapter_hashes.values()])
    pairs = [(record.adapter_hashes[n], c) for n, c in record.coefficients.items() if n in record.adapter_hashes]
    return _identity(record.method, record.merge_params, pairs)


def recipe_identity(package_dir: Path, recipe: dict) -> tuple:
    """The same identity for a registered package, hashing the adapter files it ships."""
    from paretoflow.io import file_hash

    pairs = []
    for name, coefficient in (recipe.get("coefficients") or {}).items():
        weights = package_dir / "adapters" / name / "adapter_model.safetensors"
        if not weights.is_file():
            raise NotComparable(f"package lacks adapter {name} ({weights})")
        pairs.append((file_hash(weights), coefficient))
    return _identity(recipe.get("method") or "exact", recipe.get("merge_params") or {}, pairs)


def _rebuild_and_score(params: Params, root: Path, document: FrontDocument, package_dir: Path, recipe: dict,
                       progress: bool) -> dict[str, np.ndarray]:
    from paretoflow.front.evaluate import CandidateSpec
    from paretoflow.front.stage import open_scorers
    from paretoflow.merging import load_expert

    judge, _, hashes = open_scorers(params, root, None, None)
    if hashes["judges"] != document.evaluation.scorers.get("judges"):
        raise NotComparable(f"the judge mixture changed since the front was scored "
                            f"({document.evaluation.scorers.get('judges')} → {hashes['judges']})")
    names = list(recipe.get("coefficients") or {})
    experts = [load_expert(package_dir / "adapters" / n) for n in names]
    evaluator = _evaluator(params, root, document, judge, experts, progress)
    spec = CandidateSpec(f"champion:{recipe.get('candidate', '?')}", "merge" if names else "base",
                         [float(recipe["coefficients"][n]) for n in names] or None, names,
                         recipe.get("method") or "exact", recipe.get("merge_params") or {})
    return evaluator.evaluate(spec).scores["judges"]


def _evaluator(params: Params, root: Path, document: FrontDocument, judge, experts, progress: bool):
    from paretoflow.front.evaluate import CandidateEvaluator, load_eval_prompts
    from paretoflow.models import load_policy, model_fingerprint, place_for_profile

    info = document.evaluation
    prompts = load_eval_prompts(root / params.curate.out_dir / "prompts.parquet", info.split, info.prompts)
    if prompts.digest != info.prompts_hash:
        raise NotComparable(f"held-out prompts changed since the front ({info.prompts_hash} → {prompts.digest})")
    model, tokenizer, base_path = load_policy(params.model.policy, root / params.model.cache_dir,
                                              profile=params.project.profile)
    if model_fingerprint(base_path) != info.base_fingerprint:
        raise NotComparable(f"base model changed since the front ({info.base_fingerprint})")
    model = place_for_profile(model, params.project.profile)
    return CandidateEvaluator(model, tokenizer, info.base_fingerprint, prompts, judge, params.objective_names,
                              experts=experts, max_new_tokens=info.max_new_tokens, batch_size=info.batch_size,
                              seed=info.seed, cache_dir=root / params.front.generations_cache, progress=progress)


def package_scores(params: Params, root: Path, document: FrontDocument, scores: PromptScores,
                   package_dir: Path, *, progress: bool = False) -> tuple[dict[str, np.ndarray], str]:
    """(judge-mixture scores per objective in the front's prompt order, how they were got)."""
    package_dir = Path(package_dir)
    try:
        recipe = read_json(package_dir / RECIPE)
    except (FileNotFoundError, ValueError) as exc:
        raise NotComparable(f"no readable recipe in the champion package: {exc}") from None
    if recipe.get("base_fingerprint") != document.evaluation.base_fingerprint:
        raise NotComparable(f"champion was built on base {recipe.get('base_fingerprint')}, "
                            f"the front on {document.evaluation.base_fingerprint}")
    identity = recipe_identity(package_dir, recipe)
    for record in document.candidates:
        if record_identity(record) == identity:
            return scores.get(record.name, "judges"), f"same weights as front candidate {record.name}"
    try:
        return _rebuild_and_score(params, Path(root), document, package_dir, recipe, progress), \
            "rebuilt from its package and scored on the front's prompts"
    except NotComparable:
        raise
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise NotComparable(f"could not rebuild the champion from its package: {exc}") from exc


__all__ = ["NotComparable", "package_scores", "recipe_identity", "record_identity"]
