"""Align stage: per-objective DPO experts and MODPO policies, as LoRA adapters.

- `run(params, root, objective="helpfulness")` trains the DPO expert of one objective on
  that objective's train pairs → artifacts/adapters/expert-helpfulness/
- `run(params, root, weights=[0.7, 0.3, 0.0])` trains a MODPO policy (Zhou et al. 2024)
  → artifacts/adapters/modpo-0.7-0.3-0/. Following the paper, one objective k supplies
  the preference pairs and the others enter as margin rewards r₋ₖ; we take k = the
  objective with the largest weight (the first one on ties), and r₋ₖ = the judge ratings
  of the pair's two responses (paper: trained reward models). Weights are validated
  against the declared objectives before any compute.
- `run_all(params, root)` trains every expert and every `align.modpo_weights` vector.

Budgets come from `params.align.<project.profile>` (cpu: sized for 2 cores; gpu: bf16).
The CLI (`paretoflow align ...`), Prefect tasks and `dvc repro` all call these functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from paretoflow.align.data import load_pair_tables, select_pairs, tables_hash
from paretoflow.align.trainer import TrainResult, train_adapter
from paretoflow.config import Params, check_weights


@dataclass
class AlignResult:
    name: str
    adapter_dir: Path
    objective: str  # whose pairs trained it
    objective_weights: list[float] | None  # None for a DPO expert
    train_pairs: int
    val_pairs: int
    metrics: dict[str, float] = field(default_factory=dict)
    completed: bool = True


def adapter_name(objective: str | None = None, weights: list[float] | None = None) -> str:
    """`expert-<objective>` or `modpo-<w1>-<w2>-...` (weights in declared objective order)."""
    if (objective is None) == (weights is None):
        raise ValueError("give exactly one of objective or weights")
    if objective is not None:
        return f"expert-{objective}"
    return "modpo-" + "-".join(f"{w:g}" for w in weights)


def modpo_objective_index(weights: list[float]) -> int:
    """k: the objective whose pairs MODPO trains on (largest weight, first on ties)."""
    return max(range(len(weights)), key=lambda i: (weights[i], -i))


def _plan(params: Params, objective: str | None, weights: list[float] | None):
    """Validate the request (no compute): (name, trained objective, weights, margin objectives)."""
    names = params.objective_names
    if (objective is None) == (weights is None):
        raise ValueError("align needs exactly one of --objective or --weights")
    if weights is not None:
        weights = check_weights(weights, names)
        k = modpo_objective_index(weights)
        margin_objectives = [n for i, n in enumerate(names) if i != k and weights[i] > 0]
        return adapter_name(weights=weights), names[k], weights, margin_objectives
    if objective not in names:
        raise ValueError(f"unknown objective {objective!r}; declared: {names}")
    return adapter_name(objective=objective), objective, None, []


def _no_pairs_error(objective: str, pairs_dir: Path, skipped: int, available: dict[str, int]) -> ValueError:
    detail = (f"; {skipped} were skipped for lack of judge ratings on the margin objectives"
              if skipped else "")
    return ValueError(
        f"{pairs_dir / 'pairs.parquet'}: no train pairs for objective {objective!r}{detail} "
        f"(train pairs per objective: {available}); rerun the pairs stage or drop this objective"
    )


def _train_pair_counts(tables) -> dict[str, int]:
    splits = dict(zip(tables.prompts["prompt_id"], tables.prompts["split"]))
    train = tables.pairs[tables.pairs["prompt_id"].map(splits) == "train"]
    return {str(k): int(v) for k, v in train["objective"].value_counts().items()}


def run(
    params: Params,
    root: Path = Path("."),
    objective: str | None = None,
    weights: list[float] | None = None,
    policy_path: str | None = None,
    progress: bool = True,
    resume: bool = True,
) -> AlignResult:
    """Train one adapter: the DPO expert of `objective`, or the MODPO policy for `weights`."""
    from paretoflow.models import resolve_policy_path

    name, trained_objective, weights, margin_objectives = _plan(params, objective, weights)
    root = Path(root)
    settings = params.align
    config = settings.budget(params.project.profile)
    pairs_dir = root / params.pairs.out_dir
    tables = load_pair_tables(pairs_dir)
    common = dict(objectives=params.objectives, margin_objectives=margin_objectives,
                  rater=settings.margin_rater)
    train, train_report = select_pairs(tables, trained_objective, "train", **common)
    if not train:
        raise _no_pairs_error(trained_objective, pairs_dir, train_report.skipped_missing_margin,
                              _train_pair_counts(tables))
    val, val_report = (select_pairs(tables, trained_objective, "val", limit=config.max_val_pairs, **common)
                       if config.max_val_pairs > 0 else ([], None))
    policy = policy_path or resolve_policy_path(params.model.policy, root / params.model.cache_dir)
    meta = {
        "name": name,
        "objective": trained_objective,
        "objective_names": params.objective_names,
        "margin_objectives": margin_objectives,
        "margin_rater": settings.margin_rater if margin_objectives else None,
        "pairs_dir": params.pairs.out_dir,
        "pairs_data_hash": tables_hash(pairs_dir),
        "selection": {"train": train_report.__dict__, "val": val_report.__dict__ if val_report else None},
        "params_hash": params.section_hash("align", "objectives", "model"),
    }
    result: TrainResult = train_adapter(
        config, policy, train, val, root / settings.out_dir / name,
        objective_weights=weights,
        objective_index=params.objective_names.index(trained_objective) if weights is not None else None,
        seed=settings.seed, profile=params.project.profile, meta=meta, resume=resume, progress=progress,
    )
    return AlignResult(name=name, adapter_dir=result.output_dir, objective=trained_objective,
                       objective_weights=weights, train_pairs=len(train), val_pairs=len(val),
                       metrics=result.metrics, completed=result.completed)


def jobs(params: Params) -> list[dict]:
    """The adapters `align --all` trains, as keyword arguments of `run`: one DPO expert
    per objective, then one MODPO policy per `align.modpo_weights` vector."""
    return ([{"objective": o} for o in params.objective_names]
            + [{"weights": [float(x) for x in w]} for w in params.align.modpo_weights])


def job_name(job: dict) -> str:
    """The adapter folder name of one job of `jobs`."""
    return adapter_name(objective=job.get("objective"), weights=job.get("weights"))


def run_all(params: Params, root: Path = Path("."), policy_path: str | None = None,
            progress: bool = True, resume: bool = True) -> list[AlignResult]:
    """Every objective's expert, then every configured MODPO weight vector.

    All requests are validated (weights, and train pairs present per trained objective)
    before the first adapter is trained, so a bad vector fails in seconds, not minutes.
    """
    requests = [(o, None) for o in params.objective_names]
    requests += [(None, list(w)) for w in params.align.modpo_weights]
    plans = [_plan(params, o, w) for o, w in requests]
    pairs_dir = Path(root) / params.pairs.out_dir
    counts = _train_pair_counts(load_pair_tables(pairs_dir))
    for _, trained_objective, _, _ in plans:
        if counts.get(trained_objective, 0) == 0:
            raise _no_pairs_error(trained_objective, pairs_dir, 0, counts)
    return [run(params, root, objective=o, weights=w, policy_path=policy_path, progress=progress,
                resume=resume) for o, w in requests]


__all__ = ["AlignResult", "adapter_name", "job_name", "jobs", "modpo_objective_index", "run", "run_all"]
