"""Align stage: per-objective DPO experts and MODPO policies, as LoRA adapters.

- `run(params, root, objective="helpfulness")` trains the DPO expert of one objective
  → artifacts/adapters/expert-helpfulness/
- `run(params, root, weights=[0.7, 0.3, 0.0])` trains a MODPO policy (Zhou et al. 2024)
  → artifacts/adapters/modpo-0.7-0.3-0/. Following the paper, one objective k supplies
  the preference pairs and the others enter as margin rewards r₋ₖ; we take k = the
  objective with the largest weight (the first one on ties), and r₋ₖ from
  `align.margin_rater` (margins.py: the reward model of `reward.out_dir` when there is
  one, as the paper, else the judges). Weights are validated against the declared
  objectives before any compute.
- `run_all(params, root)` trains every expert and every `align.modpo_weights` vector.

Pairs come from a mixture of sources (sources.py): the curated human pairs of
`curate.out_dir` and the judged on-policy pairs of `pairs.out_dir`, weighted by
`align.sources` / `align.objective_sources` (or `run(..., sources={...})`, the CLI's
`--sources human=1,on_policy=0`). Checkpoints are selected on the objective itself
(selection.py). `is_complete(folder)` says whether an adapter folder is finished
(meta.py): the front, promote and the stage cache use it.

Budgets come from `params.align.budget(project.profile)` (cpu: sized for 2 cores; gpu:
bf16). The stage's entry point, config and CLI are paretoflow/stages/align.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from paretoflow.align.margins import LIVE_RATERS, live_margin_rater, resolve_rater
from paretoflow.align.meta import AdapterMeta, is_complete, read_meta
from paretoflow.align.selection import Selection, judge_scorer, load_selection_prompts
from paretoflow.align.sources import SourcedPairs, load_sources, select_sourced_pairs
from paretoflow.align.trainer import TrainResult, train_adapter
from paretoflow.sections import check_weights
from paretoflow.stages.align import SOURCE_KINDS, check_source_weights

if TYPE_CHECKING:
    from paretoflow.config import Params
    from paretoflow.stages.align import AlignBudget


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
    names = params.objective_names  # align.* keys are checked when params load (stages/align.py)
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


def _source_weights(params: Params, objective: str, sources: dict[str, float] | None) -> dict[str, float]:
    if sources is None:
        return params.align.source_weights(objective)
    return {kind: float(check_source_weights(dict(sources)).get(kind, 0.0)) for kind in SOURCE_KINDS}


def _no_pairs_error(objective: str, sourced: SourcedPairs, weights: dict[str, float]) -> ValueError:
    detail = "; ".join(
        f"{kind} ({s.directory}): {s.available_train} train pairs, weight {s.weight:g}"
        + (f", {s.skipped_missing_margin} skipped for lack of margin ratings" if s.skipped_missing_margin else "")
        + (f", {s.dropped_tradeoff} dropped by align.tradeoff_max_drop" if s.dropped_tradeoff else "")
        for kind, s in sourced.report.items()
    )
    unread = [k for k, w in weights.items() if w <= 0]
    return ValueError(
        f"no train pairs for objective {objective!r} in the sources read ({detail or 'none'})"
        + (f"; sources with weight 0, not read: {unread}" if unread else "")
        + ". Run the curate/pairs stages, change align.sources, or drop this objective"
    )


def _selection(params: Params, root: Path, config: AlignBudget, objective: str,
               weights: list[float] | None) -> Selection | None:
    """Greedy answers to the first val prompts, scored on the objective (or MODPO's weighted score)."""
    if config.selection_prompts == 0:
        return None
    path = root / params.curate.out_dir / "prompts.parquet"
    prompts = load_selection_prompts(path, config.selection_prompts)
    if not prompts:
        raise ValueError(f"{path}: no val prompts to select checkpoints on (align.<profile>.selection_prompts "
                         f"= {config.selection_prompts}); set it to 0 to select on val_loss")
    names = params.objective_names
    objective_weights = ({objective: 1.0} if weights is None
                         else {n: w for n, w in zip(names, weights) if w > 0})
    max_drop = params.align.selection_max_drop
    guard = {n: max_drop for n in names if n not in objective_weights} if max_drop is not None else {}
    return Selection(prompts, judge_scorer(params, root, [*objective_weights, *guard]), objective_weights,
                     max_new_tokens=config.selection_max_new_tokens, batch_size=config.selection_batch_size,
                     max_prompt_tokens=config.selection_max_prompt_tokens,
                     cache_dir=root / params.align.cache_dir, scorer_name="judges", guard=guard)


def _pairs(params: Params, root: Path, config: AlignBudget, objective: str, source_weights: dict[str, float],
           margin_objectives: list[str]) -> SourcedPairs:
    rater = resolve_rater(params, root) if margin_objectives else None
    tables = load_sources(params, root, source_weights)
    sourced = select_sourced_pairs(
        tables, source_weights, objective, params.objectives,
        max_pairs_per_source=config.max_pairs_per_source, max_val_pairs=config.max_val_pairs,
        margin_objectives=margin_objectives, rater=rater if rater not in LIVE_RATERS else None,
        tradeoff_max_drop=params.align.tradeoff_max_drop.get(objective), tradeoff_rater=params.align.tradeoff_rater)
    if not sourced.train:
        raise _no_pairs_error(objective, sourced, source_weights)
    return sourced


def run(
    params: Params,
    root: Path = Path("."),
    objective: str | None = None,
    weights: list[float] | None = None,
    policy_path: str | None = None,
    progress: bool = True,
    resume: bool = True,
    sources: dict[str, float] | None = None,
) -> AlignResult:
    """Train one adapter: the DPO expert of `objective`, or the MODPO policy for `weights`.

    `sources` overrides the source mix ({"human": w, "on_policy": w}); default: params.
    """
    from paretoflow.models import resolve_policy_path

    name, trained_objective, weights, margin_objectives = _plan(params, objective, weights)
    root = Path(root)
    config = params.align.budget(params.project.profile)
    source_weights = _source_weights(params, trained_objective, sources)
    sourced = _pairs(params, root, config, trained_objective, source_weights, margin_objectives)
    live_rater, margin_raters = live_margin_rater(params, root, margin_objectives)
    selection = _selection(params, root, config, trained_objective, weights)
    policy = policy_path or resolve_policy_path(params.model.policy, root / params.model.cache_dir)
    meta = {
        "name": name,
        "objective": trained_objective,
        "objective_names": params.objective_names,
        "margin_objectives": margin_objectives,
        "margin_raters": margin_raters,
        "reward_model": _reward_model_lineage(params, root, margin_raters),
        "sources": {kind: s.__dict__ for kind, s in sourced.report.items()},
        "params_hash": params.section_hash("align", "objectives", "model"),
    }
    result: TrainResult = train_adapter(
        config, policy, sourced.train, sourced.val, root / params.align.out_dir / name,
        objective_weights=weights,
        objective_index=params.objective_names.index(trained_objective) if weights is not None else None,
        seed=params.align.seed, profile=params.project.profile, meta=meta, resume=resume, progress=progress,
        selection=selection, source_sizes=sourced.sizes, source_weights=sourced.weights, margin_rater=live_rater,
        cache_dir=root / params.align.cache_dir,
    )
    return AlignResult(name=name, adapter_dir=result.output_dir, objective=trained_objective,
                       objective_weights=weights, train_pairs=len(sourced.train), val_pairs=len(sourced.val),
                       metrics=result.metrics, completed=result.completed)


def _reward_model_lineage(params: Params, root: Path, margin_raters: dict[str, str]) -> dict | None:
    if "reward_model" not in margin_raters.values():
        return None
    from paretoflow.align.margins import reward_model_dir
    from paretoflow.io import files_hash

    folder = reward_model_dir(params, root)
    return {"dir": params.reward.out_dir, "hash": files_hash([folder])}


def run_all(params: Params, root: Path = Path("."), policy_path: str | None = None,
            progress: bool = True, resume: bool = True) -> list[AlignResult]:
    """Every objective's expert, then every configured MODPO weight vector, `lanes` of
    the profile's budget at a time (results in that order).

    All requests are validated (weights, and train pairs present per trained objective)
    before the first adapter is trained, so a bad vector fails in seconds, not minutes.
    """
    requests = [(o, None) for o in params.objective_names]
    requests += [(None, list(w)) for w in params.align.modpo_weights]
    plans = [_plan(params, o, w) for o, w in requests]
    config = params.align.budget(params.project.profile)
    for _, trained_objective, _, _ in plans:
        _pairs(params, Path(root), config, trained_objective, _source_weights(params, trained_objective, None), [])
    from paretoflow.lanes import in_lanes

    return in_lanes(requests, lambda _, request: run(params, root, objective=request[0], weights=request[1],
                                                     policy_path=policy_path, progress=progress, resume=resume),
                    [None] * job_lanes(params))


def job_lanes(params: Params) -> int:
    """Adapters trained at once: the profile's `lanes`, one thread each (the adapters are the
    same either way); 1 under a launch of several processes, whose two jobs' collectives
    must not interleave."""
    from paretoflow.distributed import current

    return params.align.budget(params.project.profile).lanes if current().count == 1 else 1


__all__ = ["AdapterMeta", "AlignResult", "adapter_name", "is_complete", "job_lanes", "modpo_objective_index",
           "read_meta", "run", "run_all"]
