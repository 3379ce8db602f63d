"""The front's candidates: the references (base, trained adapters), the grid's merges
(lattice and weight vectors) and the MAP surrogate search, each evaluated through the
stage's `FrontContext` (paretoflow/front/stage.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from paretoflow.front.adapters import AdapterInventory
from paretoflow.front.evaluate import CandidateSpec
from paretoflow.front.search import grid_coefficients, map_search
from paretoflow.sections import check_weights

if TYPE_CHECKING:
    from paretoflow.config import Params
    from paretoflow.front.stage import FrontContext


def _merge_name(coefficients: Sequence[float]) -> str:
    return "merge-" + "-".join(f"{c:.2f}" for c in coefficients)


def merge_coefficients(params: Params, inventory: AdapterInventory) -> list[list[float]]:
    """Expert coefficients of the budget's weight vectors (objective order → expert order)."""
    names, budget = params.objective_names, params.front.budget(params.project.profile)
    out = []
    for index, vector in enumerate(budget.weight_vectors):
        label = f"front.{params.project.profile}.weight_vectors[{index}]"
        try:
            weights = check_weights(vector, names)
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
        missing = [n for n, w in zip(names, weights) if w > 0 and n not in inventory.expert_objectives]
        if missing:
            raise ValueError(f"{label} = {vector} needs experts for {missing}, which align did not produce")
        out.append([weights[names.index(o)] for o in inventory.expert_objectives])
    return out


def merge_spec(ctx: FrontContext, coefficients: Sequence[float], source: str) -> CandidateSpec:
    config = ctx.params.front
    merge_params = {
        "ties": {"ties_density": config.ties_density, "task_arithmetic_lambda": config.task_arithmetic_lambda},
        "dare": {"dare_drop_rate": config.dare_drop_rate, "task_arithmetic_lambda": config.task_arithmetic_lambda},
        "task_arithmetic": {"task_arithmetic_lambda": config.task_arithmetic_lambda},
    }.get(config.merge_method, {})
    coefficients = [float(round(c, 10)) for c in coefficients]
    weights = [0.0] * len(ctx.names)
    for objective, c in zip(ctx.inventory.expert_objectives, coefficients):
        weights[ctx.names.index(objective)] = c
    return CandidateSpec(_merge_name(coefficients), "merge", coefficients, [e.name for e in ctx.inventory.experts],
                         config.merge_method, merge_params, weights=weights, source=source)


def reference_specs(ctx: FrontContext) -> list[CandidateSpec]:
    """The base (the paired reference, always first) and every trained adapter."""
    specs = [CandidateSpec("base", "base", source="base")]
    for adapter in ctx.evaluator.adapters.values():
        weights = adapter.objective_weights
        source = "modpo" if adapter.name.startswith("modpo") or weights is not None else "adapter"
        specs.append(CandidateSpec(adapter.name, "adapter", adapter=adapter.name, weights=weights, source=source))
    return specs


def grid_specs(ctx: FrontContext) -> list[CandidateSpec]:
    """Grid method: the lattice and the weight vectors, each coefficient vector once."""
    experts = ctx.inventory.experts
    if not experts:
        return []
    budget = ctx.params.front.budget(ctx.params.project.profile)
    vectors = [(c, "grid") for c in (grid_coefficients(len(experts), budget.grid_step)
                                     if budget.grid_step is not None else [])]
    vectors += [(c, "weights") for c in merge_coefficients(ctx.params, ctx.inventory)]
    seen: set[tuple[float, ...]] = set()
    specs = []
    for coefficients, source in vectors:
        key = tuple(np.round(coefficients, 9))
        if key not in seen:
            seen.add(key)
            specs.append(merge_spec(ctx, coefficients, source))
    return specs


def evaluate_references(ctx: FrontContext) -> None:
    ctx.evaluations += [ctx.evaluator.evaluate(spec) for spec in reference_specs(ctx)]


def evaluate_merges(ctx: FrontContext) -> dict | None:
    """Grid method: lattice + weight vectors, each once. Map method: surrogate search."""
    if not ctx.inventory.experts:
        return None
    if ctx.params.front.method == "map":
        return _map_search(ctx)
    ctx.evaluations += [ctx.evaluator.evaluate(spec) for spec in grid_specs(ctx)]
    return None


def _map_search(ctx: FrontContext) -> dict:
    config, names, k = ctx.params.front, ctx.names, len(ctx.inventory.experts)
    n_design, calls = (k * (k + 1) // 2 if k > 1 else 1), [0]

    def evaluate_vector(coefficients: np.ndarray) -> list[float]:
        source = "map-design" if calls[0] < n_design else "map-verify"
        calls[0] += 1
        evaluation = ctx.evaluator.evaluate(merge_spec(ctx, coefficients, source))
        ctx.evaluations.append(evaluation)
        return [evaluation.objectives[n] for n in names]

    search = map_search(evaluate_vector, k, directions=ctx.directions, dense_step=config.map_dense_step,
                        n_verify=config.map_n_verify)
    return {
        "surrogate": "Scheffé quadratic per objective, least squares on the coefficient simplex",
        "n_design": len(search.design),
        "n_verified": len(search.verified),
        "n_predicted_front": int(len(search.predicted_front)),
        "mean_abs_error": dict(zip(names, map(float, search.mean_abs_error))),
        "max_abs_error": dict(zip(names, map(float, search.max_abs_error))),
        "verified": [
            {"coefficients": c.tolist(), "predicted": dict(zip(names, p.tolist())),
             "measured": dict(zip(names, m.tolist()))}
            for c, p, m in zip(search.verified, search.verified_predicted, search.verified_values)
        ],
    }


__all__ = ["evaluate_merges", "evaluate_references", "grid_specs", "merge_coefficients", "merge_spec", "reference_specs"]
