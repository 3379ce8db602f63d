"""The front stage in named steps: open the evaluation, evaluate candidates, summarise, write.

    run(params, root)   # artifacts/front/{front.json, scores.parquet, candidates.parquet, front.png}

1. `open_evaluation`: complete adapters (paretoflow.front.adapters), the base model, the
   held-out prompts and the scorers (judge mixture; main reward model from
   `reward.out_dir`; independent reward model from `<reward.out_dir>/independent/`).
2. `evaluate_references`: the base (always: the paired reference) and trained adapters.
3. `evaluate_merges`: the lattice and the listed weight vectors (method "grid") or the
   MAP-style surrogate search (method "map").
4. `summarise`: records with paired differences vs the base, the non-dominated set, the
   hypervolume with its prompt-bootstrap interval, the run's minimum detectable
   differences.
   Each candidate's answer rate on the benign prompts, paired vs the base, and whether it
   may be champion (paretoflow.front.answers: a CGPO-style constraint).
5. `write_outputs`: scores.parquet, then front.json (which records the scores' hash),
   candidates.parquet, front.png and the answers table (answers.parquet, answers.md:
   every candidate's answers to the same showcase prompts), each written atomically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from paretoflow.front.adapters import AdapterInventory, discover_adapters
from paretoflow.front.candidates import evaluate_merges, evaluate_references, grid_specs, merge_coefficients, reference_specs
from paretoflow.front.answers import answers_markdown, answers_table, apply_answer_rates
from paretoflow.front.document import (
    AdapterInfo,
    CandidateRecord,
    EvaluationInfo,
    FrontDocument,
    ObjectiveInfo,
    PromptScores,
    SkippedAdapter,
    write_front,
)
from paretoflow.front.evaluate import (
    CandidateEvaluation,
    CandidateEvaluator,
    EvalPrompts,
    Scorer,
    load_eval_prompts,
)
from paretoflow.front.plot import plot_front
from paretoflow.front.summary import StatSettings, build_records, hypervolume_interval, judge_tensor, pooled_mde
from paretoflow.io import atomic_write, files_hash, inside, write_table
from paretoflow.pareto import expected_utility, hypervolume, non_dominated_mask, sparsity

if TYPE_CHECKING:
    from paretoflow.config import Params

INDEPENDENT_DIR = "independent"   # <reward.out_dir>/independent/: the independent reward model
ANSWERS_TABLE, ANSWERS_MARKDOWN = "answers.parquet", "answers.md"   # in front.out_dir


@dataclass
class FrontResult:
    front_json: Path
    front_png: Path
    candidates_parquet: Path
    scores_parquet: Path
    hypervolume: float
    hypervolume_ci: tuple[float, float]
    reference_point: dict[str, float]
    n_candidates: int
    n_non_dominated: int
    sparsity: float
    expected_utility: float
    records: list[CandidateRecord]
    mde: dict[str, dict[str, float]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)   # flat numbers for the MLflow front run
    map_report: dict | None = None


@dataclass
class FrontContext:
    params: Params
    root: Path
    inventory: AdapterInventory
    prompts: EvalPrompts
    evaluator: CandidateEvaluator
    base_fingerprint: str
    scorer_hashes: dict[str, str]
    evaluations: list[CandidateEvaluation] = field(default_factory=list)
    answered: dict[str, np.ndarray] = field(default_factory=dict)   # candidate -> per prompt (answers.py)

    @property
    def names(self) -> list[str]:
        return self.params.objective_names

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.params.objectives]


# ------------------------------------------------------------------ reference point, front metrics


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


# ------------------------------------------------------------------ step 1: open the evaluation


def reward_scorer(directory: Path, root: Path, names: Sequence[str]) -> Scorer | None:
    """Scores of a saved reward model on the objectives it declares (None if no model there)."""
    if not (directory / "config.json").is_file():
        return None
    from paretoflow.reward.model import RewardModel

    model = RewardModel.load(directory, root=root)
    declared = [n for n in names if n in model.objectives]
    return lambda prompts, responses, tags: model.score(prompts, responses, tags, objectives=declared)


def _model_hash(directory: Path) -> str:
    return files_hash(sorted(p for p in directory.iterdir() if p.is_file()))


def open_scorers(params: Params, root: Path, scorer: Scorer | None,
                 extra_scorers: Mapping[str, Scorer] | None) -> tuple[Scorer, dict[str, Scorer], dict[str, str]]:
    """(judge scorer, reward-model scorers by name, content hash of every scorer)."""
    # Inputs are read where params put them (ProjectPath: relative, no '..'); they may be
    # symlinks (shared caches, bench folders), so only the written out_dir goes through `inside`.
    reward_dir = root / params.reward.out_dir
    hashes = {"judges": hashlib.sha256(json.dumps(
        [o.model_dump(mode="json") for o in params.objectives], sort_keys=True).encode()).hexdigest()[:16]}
    if any(j.name == "reward_model" for o in params.objectives for j in o.judges) and reward_dir.is_dir():
        hashes["judges"] += "+" + _model_hash(reward_dir)
    if scorer is None:
        from paretoflow.judges import build_mixture

        scorer = build_mixture(params, root).score
    extras: dict[str, Scorer] = {}
    for name, directory in (("reward_model", reward_dir), ("independent", reward_dir / INDEPENDENT_DIR)):
        found = reward_scorer(directory, root, params.objective_names)
        if found is not None:
            extras[name], hashes[name] = found, _model_hash(directory)
    for name, extra in (extra_scorers or {}).items():
        extras[name], hashes[name] = extra, f"given:{name}"
    return scorer, extras, hashes


def open_evaluation(params: Params, root: Path, *, scorer: Scorer | None = None,
                    extra_scorers: Mapping[str, Scorer] | None = None, progress: bool = True) -> FrontContext:
    """Adapters, base model, prompts and scorers, checked before any generation (scorers on
    the main process of a launch only: it alone scores, paretoflow.front.evaluate)."""
    from paretoflow.distributed import current
    from paretoflow.models import load_policy, model_fingerprint, place_for_profile

    config, budget = params.front, params.front.budget(params.project.profile)
    inventory = discover_adapters(root / params.align.out_dir, params.objective_names)
    if not inventory.experts and not inventory.others:
        raise FileNotFoundError(f"no complete LoRA adapters under {root / params.align.out_dir}"
                                + (f" (skipped: {inventory.skipped})" if inventory.skipped else ""))
    merge_coefficients(params, inventory)  # a bad weight vector fails here, before any compute
    processes = current()
    judge, extras, hashes = processes.on_main(lambda: open_scorers(params, root, scorer, extra_scorers)) or (None, {}, {})
    model, tokenizer, base_path = load_policy(params.model.policy, root / params.model.cache_dir, profile=params.project.profile)
    model = place_for_profile(model, params.project.profile)
    prompts = load_eval_prompts(root / params.curate.out_dir / "prompts.parquet", config.prompts_split,
                                budget.n_eval_prompts)
    fingerprint = model_fingerprint(base_path)
    evaluator = CandidateEvaluator(
        model, tokenizer, fingerprint, prompts, judge, params.objective_names,
        experts=inventory.experts,
        adapters={a.name: a for a in inventory.others} if config.include_adapters else {},
        extra_scorers=extras, max_new_tokens=budget.max_new_tokens, batch_size=budget.batch_size,
        max_prompt_tokens=budget.max_prompt_tokens, seed=params.project.seed,
        cache_dir=root / config.generations_cache, progress=progress, processes=processes, lanes=budget.lanes,
    )
    return FrontContext(params, root, inventory, prompts, evaluator, fingerprint, hashes)


# ------------------------------------------------------------------ steps 2-3: candidates (front/candidates.py)


# ------------------------------------------------------------------ step 4: summarise


def stat_settings(params: Params) -> StatSettings:
    config = params.front
    return StatSettings(n_boot=config.n_boot, ci_level=config.ci_level, alpha=config.mde_alpha,
                        power=config.mde_power, seed=params.project.seed)


def summarise(ctx: FrontContext) -> tuple[list[CandidateRecord], dict[str, float], dict]:
    """(records, flat metrics, document numbers) of the evaluated candidates."""
    settings, names, params = stat_settings(ctx.params), ctx.names, ctx.params
    records = build_records(ctx.evaluations, ctx.evaluations[0], names, ctx.directions, settings)
    ctx.answered = apply_answer_rates(records, ctx.evaluations, ctx.prompts.texts, ctx.prompts.tags, settings,
                                      params.front.answer_tolerance, params.model.encoder_dtype)
    values = np.array([[r.objectives[n] for n in names] for r in records])
    reference = reference_point(params)
    overall = front_metrics(values, params)
    hv, hv_low, hv_high = hypervolume_interval(judge_tensor(ctx.evaluations, names), list(reference.values()),
                                               ctx.directions, settings)
    mde = pooled_mde(records, len(ctx.prompts.texts), settings)
    kinds = np.array([r.kind for r in records])
    metrics = {
        "hypervolume": hv, "hypervolume_ci_low": hv_low, "hypervolume_ci_high": hv_high,
        "sparsity": overall["sparsity"], "expected_utility": overall["expected_utility"],
        "n_candidates": float(len(records)), "n_non_dominated": float(overall["n_non_dominated"]),
        "n_distinguishable": float(sum(r.distinguishable for r in records)),
        "n_prompts": float(len(ctx.prompts.texts)),
        "hypervolume_merged": front_metrics(values[kinds == "merge"], params)["hypervolume"],
        "hypervolume_adapters": front_metrics(values[kinds == "adapter"], params)["hypervolume"],
        "generation_seconds": float(sum(e.generation_seconds for e in ctx.evaluations)),
        "generated_tokens": float(sum(sum(e.new_tokens) for e in ctx.evaluations if not e.cached)),
        "n_cached": float(sum(e.cached for e in ctx.evaluations)),
        "n_eligible": float(sum(r.eligible for r in records)),
    }
    metrics.update({f"hv_reference_{k}": v for k, v in reference.items()})
    for scorer, by_objective in mde.items():
        prefix = "mde_" if scorer == "judges" else f"mde_{scorer}_"
        metrics.update({f"{prefix}{k}": v for k, v in by_objective.items()})
    numbers = {"hypervolume": hv, "hypervolume_ci": (hv_low, hv_high), "reference_point": reference,
               "sparsity": overall["sparsity"], "expected_utility": overall["expected_utility"], "mde": mde}
    return records, metrics, numbers


# ------------------------------------------------------------------ step 5: write


def _document_fields(ctx: FrontContext, records, metrics, numbers, map_report) -> dict:
    params, budget, inventory = ctx.params, ctx.params.front.budget(ctx.params.project.profile), ctx.inventory
    generation = ctx.evaluator.generation
    return {
        **numbers,
        "objectives": [ObjectiveInfo(name=o.name, direction=o.direction, scale=o.scale) for o in params.objectives],
        "expected_utility_step": params.front.eu_step,
        "metrics": metrics, "method": params.front.method, "merge_method": params.front.merge_method,
        "experts": [AdapterInfo(name=e.name, objective=o, file_hash=e.file_hash)
                    for e, o in zip(inventory.experts, inventory.expert_objectives)],
        "adapters": [AdapterInfo(name=a.name, file_hash=a.file_hash, objective=a.meta.get("objective"),
                                 weights=a.objective_weights) for a in ctx.evaluator.adapters.values()],
        "skipped_adapters": [SkippedAdapter(name=n, reason=r) for n, r in inventory.skipped],
        "evaluation": EvaluationInfo(
            prompts=len(ctx.prompts.texts), split=params.front.prompts_split, prompts_hash=ctx.prompts.digest,
            prompt_ids=ctx.prompts.prompt_ids, max_new_tokens=budget.max_new_tokens, batch_size=budget.batch_size,
            max_prompt_tokens=budget.max_prompt_tokens, do_sample=bool(generation["do_sample"]),
            seed=int(generation["seed"]), n_boot=params.front.n_boot,
            ci_level=params.front.ci_level, mde_alpha=params.front.mde_alpha, mde_power=params.front.mde_power,
            scorers=ctx.scorer_hashes, base_fingerprint=ctx.base_fingerprint),
        "map": map_report,
        "candidates": records,
    }


def candidates_table(records: Sequence[CandidateRecord], names: Sequence[str]) -> pd.DataFrame:
    """One row per candidate: absolute means with intervals and differences vs the base."""
    rows = []
    for r in records:
        row = {"name": r.name, "kind": r.kind, "source": r.source, "method": r.method,
               "coefficients": json.dumps(r.coefficients), "weights": json.dumps(r.weights),
               "non_dominated": r.non_dominated, "distinguishable": r.distinguishable,
               "mean_new_tokens": r.mean_new_tokens, "generation_seconds": r.generation_seconds,
               "cache_key": r.cache_key}
        for n in names:
            row[n] = r.objectives[n]
            row[f"{n}_ci_low"], row[f"{n}_ci_high"] = r.intervals[n]
            paired = r.vs_base[n]
            row[f"{n}_vs_base"], row[f"{n}_vs_base_ci_low"], row[f"{n}_vs_base_ci_high"] = (
                paired.diff, paired.ci_low, paired.ci_high)
            row[f"rm_{n}"] = r.reward_model.get(n, np.nan)
            row[f"independent_{n}"] = r.independent.get(n, np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def write_outputs(ctx: FrontContext, records, metrics, numbers, map_report) -> tuple[FrontDocument, dict[str, Path]]:
    out_dir = inside(ctx.root, ctx.params.front.out_dir, what="front.out_dir")
    scores = PromptScores.from_arrays(ctx.prompts.prompt_ids, {e.spec.name: e.scores for e in ctx.evaluations})
    document = write_front(out_dir, _document_fields(ctx, records, metrics, numbers, map_report), scores)
    paths = {"front_json": out_dir / "front.json", "scores": out_dir / "scores.parquet",
             "candidates": write_table(candidates_table(records, ctx.names), out_dir / "candidates.parquet")}
    paths["png"] = plot_front(records, document.objectives, out_dir / "front.png",
                              title=_plot_title(document), mde=document.mde.get("judges"))
    table = answers_table(ctx.prompts.prompt_ids, ctx.prompts.texts, ctx.prompts.tags,
                          {e.spec.name: e.responses for e in ctx.evaluations}, ctx.answered,
                          n=ctx.params.front.showcase_prompts)
    paths["answers"] = write_table(table, out_dir / ANSWERS_TABLE)
    atomic_write(out_dir / ANSWERS_MARKDOWN, lambda tmp: Path(tmp).write_text(answers_markdown(table)))
    paths["answers_md"] = out_dir / ANSWERS_MARKDOWN
    return document, paths


def _plot_title(document: FrontDocument) -> str:
    low, high = document.hypervolume_ci
    mde = ", ".join(f"{k} {v:.3f}" for k, v in document.mde.get("judges", {}).items())
    return (f"HV {document.hypervolume:.4f} [{low:.4f}, {high:.4f}] on {document.evaluation.prompts} prompts; "
            f"MDE (α={document.evaluation.mde_alpha:g}, power {document.evaluation.mde_power:g}): {mde}")


# ------------------------------------------------------------------ the stage


def run(
    params: Params,
    root: Path = Path("."),
    *,
    scorer: Scorer | None = None,
    extra_scorers: Mapping[str, Scorer] | None = None,
    progress: bool = True,
) -> FrontResult | None:
    """Build, evaluate and write the front (module docstring). `scorer` defaults to the judges.
    Under `accelerate launch` only the main process summarises and writes (others: None)."""
    started = time.perf_counter()
    ctx = open_evaluation(params, Path(root), scorer=scorer, extra_scorers=extra_scorers, progress=progress)
    # Every candidate known before the first score (the MAP search picks its own as it
    # goes) is generated up front, `lanes` at a time; scoring then runs in order.
    ctx.evaluator.prefetch(reference_specs(ctx) + (grid_specs(ctx) if params.front.method == "grid" else []))
    evaluate_references(ctx)
    map_report = evaluate_merges(ctx)
    if not ctx.evaluator.processes.is_main:
        return None
    records, metrics, numbers = summarise(ctx)
    if map_report:
        metrics.update({f"map_surrogate_mae_{k}": v for k, v in map_report["mean_abs_error"].items()})
    metrics["seconds"] = time.perf_counter() - started
    document, paths = write_outputs(ctx, records, metrics, numbers, map_report)
    return FrontResult(
        front_json=paths["front_json"], front_png=paths["png"], candidates_parquet=paths["candidates"],
        scores_parquet=paths["scores"], hypervolume=document.hypervolume, hypervolume_ci=document.hypervolume_ci,
        reference_point=document.reference_point, n_candidates=len(records),
        n_non_dominated=int(metrics["n_non_dominated"]), sparsity=document.sparsity,
        expected_utility=document.expected_utility, records=records, mde=document.mde, metrics=metrics,
        map_report=map_report,
    )


__all__ = [
    "FrontContext", "FrontResult", "evaluate_merges", "evaluate_references", "front_metrics",
    "open_evaluation", "reference_point", "run", "summarise", "write_outputs",
]
