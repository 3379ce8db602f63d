"""Front stage: merge the per-objective experts over coefficient vectors, evaluate, keep the front.

    from paretoflow.front import run, generate_with_weights
    result = run(params, root)          # artifacts/front/{front.json, front.png, candidates.parquet}
    text = generate_with_weights(params, [0.7, 0.2, 0.1], "How do I sleep better?", root)

Candidates: exact merges Σ wᵢ ΔWᵢ of the LoRA experts in artifacts/adapters/expert-<objective>
(Rewarded Soups, Ramé et al. 2023, computed exactly; see paretoflow.merging) on a simplex
grid or chosen by the MAP-style surrogate (paretoflow.front.search), plus reference
candidates: the base model and every other trained adapter (MODPO policies). Each is
evaluated on held-out prompts (paretoflow.front.evaluate) and the non-dominated set,
hypervolume (reference point fixed in params, written beside the value), sparsity and
expected utility are computed with paretoflow.pareto.

Coefficients are over the experts found, ordered as the objectives are declared; a merge's
objective `weights` are its coefficients placed at each expert's objective (0 where an
objective has no expert). CLI: `paretoflow front`, `paretoflow generate --weights ...`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from paretoflow.config import Params, check_weights
from paretoflow.front.evaluate import (
    CandidateEvaluation,
    CandidateEvaluator,
    CandidateSpec,
    Scorer,
    load_eval_prompts,
)
from paretoflow.front.plot import plot_front
from paretoflow.front.search import grid_coefficients, map_search
from paretoflow.merging import LoraExpert, MergeTarget, load_expert, merge_deltas
from paretoflow.pareto import expected_utility, hypervolume, non_dominated_mask, sparsity

EXPERT_PREFIX = "expert-"


# ------------------------------------------------------------------ discovering adapters


@dataclass
class AdapterInventory:
    experts: list[LoraExpert]           # ordered as the objectives are declared
    expert_objectives: list[str]
    others: list[LoraExpert]            # MODPO and any other trained adapter


def discover_adapters(adapters_dir: str | Path, objective_names: Sequence[str]) -> AdapterInventory:
    """Experts (`expert-<objective>` or meta.json `objective`) and other adapters under a folder."""
    adapters_dir = Path(adapters_dir)
    if not adapters_dir.is_dir():
        raise FileNotFoundError(f"adapters folder not found: {adapters_dir} (run `paretoflow align` first)")
    by_objective: dict[str, LoraExpert] = {}
    others: list[LoraExpert] = []
    for folder in sorted(p for p in adapters_dir.iterdir() if (p / "adapter_model.safetensors").exists()):
        adapter = load_expert(folder)
        # MODPO policies also record the objective whose pairs trained them; what makes an
        # expert is having no objective weights.
        if adapter.objective_weights is not None or not (
            folder.name.startswith(EXPERT_PREFIX) or adapter.meta.get("objective")
        ):
            others.append(adapter)
            continue
        objective = adapter.meta.get("objective") or folder.name[len(EXPERT_PREFIX):]
        if objective not in objective_names:
            raise ValueError(f"adapter {folder}: objective {objective!r} is not declared ({list(objective_names)})")
        if objective in by_objective:
            raise ValueError(f"two experts for objective {objective!r}: {by_objective[objective].path} and {folder}")
        by_objective[objective] = adapter
    ordered = [name for name in objective_names if name in by_objective]
    return AdapterInventory([by_objective[n] for n in ordered], ordered, others)


# ------------------------------------------------------------------ results


@dataclass
class CandidateRecord:
    """One evaluated candidate, flat enough to log as a nested MLflow run."""

    name: str
    kind: str                                   # base | merge | adapter
    source: str                                 # grid | map-design | map-verify | modpo | adapter | base
    method: str
    coefficients: dict[str, float]              # expert name -> coefficient (merges)
    weights: dict[str, float]                   # objective -> weight (merges, MODPO)
    merge_params: dict
    objectives: dict[str, float]
    intervals: dict[str, list[float]]
    reward_model: dict[str, float]
    reward_model_intervals: dict[str, list[float]]
    non_dominated: bool
    generation_seconds: float
    cached: bool
    cache_key: str

    def mlflow_params(self) -> dict[str, str]:
        out = {"kind": self.kind, "source": self.source, "method": self.method}
        out.update({f"coef_{k}": f"{v:g}" for k, v in self.coefficients.items()})
        out.update({f"weight_{k}": f"{v:g}" for k, v in self.weights.items()})
        return out

    def mlflow_metrics(self) -> dict[str, float]:
        out: dict[str, float] = {"non_dominated": float(self.non_dominated)}
        for name, value in self.objectives.items():
            out[name] = value
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = self.intervals[name]
        out.update({f"rm_{k}": v for k, v in self.reward_model.items()})
        return out


@dataclass
class FrontResult:
    front_json: Path
    front_png: Path
    candidates_parquet: Path
    hypervolume: float
    reference_point: dict[str, float]
    n_candidates: int
    n_non_dominated: int
    sparsity: float
    expected_utility: float
    records: list[CandidateRecord]
    metrics: dict[str, float] = field(default_factory=dict)   # flat numbers for MLflow
    map_report: dict | None = None


def reference_point(params: Params) -> dict[str, float]:
    """hv_reference from params; missing objectives take the worst end of their scale."""
    config = params.front
    unknown = set(config.hv_reference) - set(params.objective_names)
    if unknown:
        raise ValueError(f"front.hv_reference names undeclared objectives {sorted(unknown)}")
    out = {}
    for objective in params.objectives:
        worst = objective.scale[0] if objective.direction == "maximize" else objective.scale[1]
        out[objective.name] = float(config.hv_reference.get(objective.name, worst))
    return out


def front_metrics(values: np.ndarray, params: Params) -> dict[str, float]:
    """Hypervolume (at the fixed reference), sparsity and expected utility of a set."""
    directions = [o.direction for o in params.objectives]
    reference = list(reference_point(params).values())
    if len(values) == 0:
        return {"hypervolume": 0.0, "sparsity": 0.0, "expected_utility": float("nan"), "n_non_dominated": 0}
    return {
        "hypervolume": hypervolume(values, reference, directions),
        "sparsity": sparsity(values, directions),
        "expected_utility": expected_utility(values, step=params.front.eu_step, directions=directions),
        "n_non_dominated": int(non_dominated_mask(values, directions).sum()),
    }


# ------------------------------------------------------------------ the stage


def _merge_name(coefficients: Sequence[float]) -> str:
    return "merge-" + "-".join(f"{c:.2f}" for c in coefficients)


def _default_scorer(params: Params, root: Path) -> Scorer:
    from paretoflow.judges import build_mixture

    return build_mixture(params, root).score


def _reward_scorer(params: Params, root: Path) -> Scorer | None:
    directory = root / params.reward.out_dir
    if not directory.is_dir() or not any(directory.iterdir()):
        return None
    from paretoflow.reward.model import RewardModel

    model = RewardModel.load(directory, root=root)
    return lambda prompts, responses, tags: model.score(prompts, responses, tags, objectives=params.objective_names)


def run(
    params: Params,
    root: Path = Path("."),
    *,
    scorer: Scorer | None = None,
    progress: bool = True,
) -> FrontResult:
    """Build, evaluate and write the front (see module docstring). `scorer` defaults to the judges."""
    started = time.perf_counter()
    root = Path(root)
    config = params.front
    budget = config.budget(params.project.profile)
    names = params.objective_names
    directions = [o.direction for o in params.objectives]
    inventory = discover_adapters(root / params.align.out_dir, names)
    if not inventory.experts and not inventory.others:
        raise FileNotFoundError(f"no LoRA adapters under {root / params.align.out_dir}")

    from paretoflow.models import load_policy, model_fingerprint, place_for_profile

    model, tokenizer, base_path = load_policy(params.model.policy, root / params.model.cache_dir)
    model = place_for_profile(model, params.project.profile)
    prompts = load_eval_prompts(root / params.curate.out_dir / "prompts.parquet", config.prompts_split, budget.n_eval_prompts)
    evaluator = CandidateEvaluator(
        model, tokenizer, model_fingerprint(base_path), prompts,
        scorer or _default_scorer(params, root), names,
        experts=inventory.experts,
        adapters={a.name: a for a in inventory.others} if config.include_adapters else {},
        reward_scorer=_reward_scorer(params, root),
        max_new_tokens=budget.max_new_tokens, batch_size=budget.batch_size,
        seed=params.project.seed, n_boot=config.n_boot, ci_level=config.ci_level,
        cache_dir=root / config.generations_cache, progress=progress,
    )
    merge_params = {
        "ties": {"ties_density": config.ties_density, "task_arithmetic_lambda": config.task_arithmetic_lambda},
        "dare": {"dare_drop_rate": config.dare_drop_rate, "task_arithmetic_lambda": config.task_arithmetic_lambda},
        "task_arithmetic": {"task_arithmetic_lambda": config.task_arithmetic_lambda},
    }.get(config.merge_method, {})
    expert_names = [e.name for e in inventory.experts]

    def merge_spec(coefficients: Sequence[float], source: str) -> CandidateSpec:
        coefficients = [float(round(c, 10)) for c in coefficients]
        weights = [0.0] * len(names)
        for objective, c in zip(inventory.expert_objectives, coefficients):
            weights[names.index(objective)] = c
        return CandidateSpec(_merge_name(coefficients), "merge", coefficients, expert_names,
                             config.merge_method, merge_params, weights=weights, source=source)

    evaluations: list[CandidateEvaluation] = []
    if config.include_base:
        evaluations.append(evaluator.evaluate(CandidateSpec("base", "base", source="base")))
    for adapter in evaluator.adapters.values():
        weights = adapter.objective_weights
        source = "modpo" if adapter.name.startswith("modpo") or weights is not None else "adapter"
        evaluations.append(evaluator.evaluate(
            CandidateSpec(adapter.name, "adapter", adapter=adapter.name, weights=weights, source=source)))

    map_report = None
    if inventory.experts:
        if config.method == "grid":
            for coefficients in grid_coefficients(len(inventory.experts), budget.grid_step):
                evaluations.append(evaluator.evaluate(merge_spec(coefficients, "grid")))
        else:
            design_count = [0]
            n_design = len(inventory.experts) * (len(inventory.experts) + 1) // 2 if len(inventory.experts) > 1 else 1

            def evaluate_vector(coefficients: np.ndarray) -> list[float]:
                source = "map-design" if design_count[0] < n_design else "map-verify"
                design_count[0] += 1
                evaluation = evaluator.evaluate(merge_spec(coefficients, source))
                evaluations.append(evaluation)
                return [evaluation.objectives[n] for n in names]

            search = map_search(evaluate_vector, len(inventory.experts), directions=directions,
                                dense_step=config.map_dense_step, n_verify=config.map_n_verify)
            map_report = {
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

    values = np.array([[e.objectives[n] for n in names] for e in evaluations])
    mask = non_dominated_mask(values, directions)
    reference = reference_point(params)
    records = [_record(e, mask[i], names) for i, e in enumerate(evaluations)]
    overall = front_metrics(values, params)
    merged_values = values[[r.kind == "merge" for r in records]]
    adapter_values = values[[r.kind == "adapter" for r in records]]
    metrics = {
        "hypervolume": overall["hypervolume"],
        "sparsity": overall["sparsity"],
        "expected_utility": overall["expected_utility"],
        "n_candidates": float(len(records)),
        "n_non_dominated": float(overall["n_non_dominated"]),
        "hypervolume_merged": front_metrics(merged_values, params)["hypervolume"],
        "hypervolume_adapters": front_metrics(adapter_values, params)["hypervolume"],
    }
    metrics.update({f"hv_reference_{k}": v for k, v in reference.items()})
    if map_report:
        metrics.update({f"map_surrogate_mae_{k}": v for k, v in map_report["mean_abs_error"].items()})

    out_dir = root / config.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics["seconds"] = time.perf_counter() - started
    document = {
        "objectives": [{"name": o.name, "direction": o.direction, "scale": list(o.scale)} for o in params.objectives],
        "hypervolume": overall["hypervolume"],
        "reference_point": reference,
        "sparsity": overall["sparsity"],
        "expected_utility": overall["expected_utility"],
        "expected_utility_step": config.eu_step,
        "metrics": metrics,
        "method": config.method,
        "merge_method": config.merge_method,
        "experts": [{"name": e.name, "objective": o, "file_hash": e.file_hash}
                    for e, o in zip(inventory.experts, inventory.expert_objectives)],
        # Other evaluated adapters (MODPO): promote checks the packaged files against these.
        "adapters": [{"name": a.name, "file_hash": a.file_hash} for a in evaluator.adapters.values()],
        "evaluation": {"prompts": len(prompts.texts), "split": config.prompts_split,
                       "prompts_hash": prompts.digest, **evaluator.generation,
                       "n_boot": config.n_boot, "ci_level": config.ci_level,
                       "reward_model": evaluator.reward_scorer is not None},
        "map": map_report,
        "candidates": [asdict(r) for r in records],
    }
    front_json = out_dir / "front.json"
    front_json.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    candidates_parquet = out_dir / "candidates.parquet"
    _table(records, names).to_parquet(candidates_parquet, index=False)
    intervals = np.array([[r.intervals[n] for n in names] for r in records])
    front_png = plot_front(
        values, [r.kind for r in records], [r.name for r in records], mask, names, out_dir / "front.png",
        directions=directions, intervals=intervals,
        title=f"HV {overall['hypervolume']:.4f} (ref {[round(v, 3) for v in reference.values()]})",
    )
    return FrontResult(front_json, front_png, candidates_parquet, overall["hypervolume"], reference,
                       len(records), overall["n_non_dominated"], overall["sparsity"],
                       overall["expected_utility"], records, metrics, map_report)


def _record(evaluation: CandidateEvaluation, non_dominated: bool, names: list[str]) -> CandidateRecord:
    spec = evaluation.spec
    return CandidateRecord(
        name=spec.name,
        kind=spec.kind,
        source=spec.source,
        method=spec.method if spec.kind == "merge" else ("exact" if spec.kind == "adapter" else "none"),
        coefficients=dict(zip(spec.expert_names, spec.coefficients or [])),
        weights=dict(zip(names, spec.weights)) if spec.weights else {},
        merge_params=spec.merge_params if spec.kind == "merge" else {},
        objectives=evaluation.objectives,
        intervals={k: list(v) for k, v in evaluation.intervals.items()},
        reward_model=evaluation.reward_model,
        reward_model_intervals={k: list(v) for k, v in evaluation.reward_model_intervals.items()},
        non_dominated=bool(non_dominated),
        generation_seconds=evaluation.generation_seconds,
        cached=evaluation.cached,
        cache_key=evaluation.cache_key,
    )


def _table(records: list[CandidateRecord], names: list[str]) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {"name": r.name, "kind": r.kind, "source": r.source, "method": r.method,
               "coefficients": json.dumps(r.coefficients), "weights": json.dumps(r.weights),
               "non_dominated": r.non_dominated, "generation_seconds": r.generation_seconds,
               "cache_key": r.cache_key}
        for n in names:
            row[n] = r.objectives[n]
            row[f"{n}_ci_low"], row[f"{n}_ci_high"] = r.intervals[n]
            row[f"rm_{n}"] = r.reward_model.get(n, np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ inference-time control


def generate_with_weights(
    params: Params,
    weights: Sequence[float],
    prompt: str,
    root: Path = Path("."),
    *,
    max_new_tokens: int | None = None,
) -> str:
    """Answer `prompt` with the exact merge Σ wᵢ ΔWᵢ of the experts for these objective weights."""
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
    from paretoflow.generation import generate
    from paretoflow.models import load_policy, model_fingerprint, place_for_profile
    from paretoflow.front.evaluate import check_base

    model, tokenizer, base_path = load_policy(params.model.policy, root / params.model.cache_dir)
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
    "AdapterInventory",
    "CandidateRecord",
    "FrontResult",
    "discover_adapters",
    "front_metrics",
    "generate_with_weights",
    "reference_point",
    "run",
]
