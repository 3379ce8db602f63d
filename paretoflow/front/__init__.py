"""Front stage: merge the per-objective experts, evaluate every candidate on the same prompts,
compare each with the base prompt by prompt, keep the front.

    from paretoflow.front import run, generate_with_weights
    result = run(params, root)   # artifacts/front/{front.json, scores.parquet, candidates.parquet, front.png}
    text = generate_with_weights(params, [0.7, 0.2, 0.1], "How do I sleep better?", root)

Candidates: exact merges Σ wᵢ ΔWᵢ of the LoRA experts in artifacts/adapters/expert-<objective>
(Rewarded Soups, Ramé et al. 2023, computed exactly; see paretoflow.merging) on a simplex
lattice and/or listed weight vectors, or chosen by the MAP-style surrogate
(paretoflow.front.search), plus reference candidates: the base model and every other
complete trained adapter (MODPO policies). Each answers the same held-out prompts
(paretoflow.front.evaluate) and is scored by the judge mixture and, where present, the
main and the independent reward models. Every candidate carries `vs_base`: its mean
paired difference from the base with a paired bootstrap interval, and `distinguishable`
when some objective's interval excludes 0 (paretoflow.metrics). The hypervolume
(reference point fixed in params, written beside the value) carries a prompt-bootstrap
interval, and the run states its minimum detectable difference per objective.

Coefficients are over the experts found, ordered as the objectives are declared; a merge's
objective `weights` are its coefficients placed at each expert's objective (0 where an
objective has no expert). The artifact contract is paretoflow.front.document.
CLI: `paretoflow front`, `paretoflow generate --weights ...`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import importlib
from collections.abc import Sequence
from pathlib import Path

from paretoflow.sections import check_weights

if TYPE_CHECKING:
    from paretoflow.config import Params

# Loaded on first use (PEP 562): the artifact contract (paretoflow.front.document) and the
# statistics are read by promotion and the flow without importing torch.
_LAZY = {
    "EXPERT_PREFIX": "adapters", "AdapterInventory": "adapters", "discover_adapters": "adapters",
    "is_complete": "adapters", "CandidateRecord": "document", "FrontDocument": "document",
    "PairedDiff": "document", "PromptScores": "document", "read_front": "document",
    "FrontResult": "stage", "front_metrics": "stage", "reference_point": "stage", "run": "stage",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"paretoflow.front.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'paretoflow.front' has no attribute {name!r}")


def generate_with_weights(
    params: Params,
    weights: Sequence[float],
    prompt: str,
    root: Path = Path("."),
    *,
    max_new_tokens: int | None = None,
) -> str:
    """Answer `prompt` with the exact merge Σ wᵢ ΔWᵢ of the experts for these objective weights."""
    from paretoflow.front.adapters import discover_adapters
    from paretoflow.front.evaluate import check_base
    from paretoflow.generation import generate
    from paretoflow.merging import MergeTarget, merge_deltas
    from paretoflow.models import load_policy, model_fingerprint, place_for_profile

    root = Path(root)
    names = params.objective_names
    weights = check_weights(weights, names)
    inventory = discover_adapters(root / params.align.out_dir, names)
    missing = [n for n, w in zip(names, weights) if w > 0 and n not in inventory.expert_objectives]
    if missing:
        raise FileNotFoundError(
            f"no expert adapter for objectives {missing} under {root / params.align.out_dir} "
            "(expected expert-<objective>)"
        )
    model, tokenizer, base_path = load_policy(params.model.policy, root / params.model.cache_dir,
                                              profile=params.project.profile)
    model = place_for_profile(model, params.project.profile)
    fingerprint = model_fingerprint(base_path)
    for expert in inventory.experts:
        check_base(expert, fingerprint)
    coefficients = [weights[names.index(o)] for o in inventory.expert_objectives]
    if inventory.experts:
        MergeTarget(model).apply(merge_deltas(inventory.experts, coefficients, "exact"))
    budget = params.front.budget(params.project.profile)
    answer = generate(model, tokenizer, [[{"role": "user", "content": prompt}]],
                      max_new_tokens=max_new_tokens or budget.max_new_tokens,
                      seed=params.project.seed, progress=False)
    return answer[0][0]


__all__ = [
    "EXPERT_PREFIX",
    "AdapterInventory",
    "CandidateRecord",
    "FrontDocument",
    "FrontResult",
    "PairedDiff",
    "PromptScores",
    "discover_adapters",
    "front_metrics",
    "generate_with_weights",
    "is_complete",
    "read_front",
    "reference_point",
    "run",
]
