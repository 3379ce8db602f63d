"""From evaluated candidates to the front's numbers: paired differences, front, HV interval.

Pure functions of the per-prompt scores (no model): `paired_block` compares one candidate
with the base prompt by prompt under one scorer; `build_records` makes the front.json
records (absolute means and intervals, `vs_base` for every scorer, `distinguishable`,
non-dominated flag); `hypervolume_interval` resamples prompts and recomputes every
candidate's means and the hypervolume; `pooled_mde` states the minimum detectable
difference of the run per scorer and objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from paretoflow.front.document import CandidateRecord, PairedDiff
from paretoflow.front.evaluate import JUDGES, CandidateEvaluation
from paretoflow.metrics import mean_interval, minimum_detectable_difference, paired_difference, prompt_bootstrap
from paretoflow.pareto import hypervolume, non_dominated_mask


@dataclass(frozen=True)
class StatSettings:
    n_boot: int = 1000
    ci_level: float = 0.95
    alpha: float = 0.05      # MDE: two-sided test level
    power: float = 0.8       # MDE: power
    seed: int = 0


def paired_block(candidate: dict[str, np.ndarray], base: dict[str, np.ndarray],
                 settings: StatSettings) -> dict[str, PairedDiff]:
    """{objective: PairedDiff} of candidate − base over the same prompts (one scorer)."""
    out = {}
    for index, name in enumerate([n for n in candidate if n in base]):
        paired = paired_difference(candidate[name], base[name], n_resamples=settings.n_boot,
                                   level=settings.ci_level, seed=settings.seed + index)
        mde = minimum_detectable_difference(paired.sd, paired.n, alpha=settings.alpha, power=settings.power)
        out[name] = PairedDiff(paired.diff, paired.ci_low, paired.ci_high, paired.sd, mde)
    return out


def _means_and_intervals(scores: dict[str, np.ndarray], settings: StatSettings):
    means, intervals = {}, {}
    for index, (name, values) in enumerate(scores.items()):
        mean, low, high = mean_interval(values, n_resamples=settings.n_boot, level=settings.ci_level,
                                        seed=settings.seed + index)
        means[name], intervals[name] = mean, [low, high]
    return means, intervals


def build_records(evaluations: Sequence[CandidateEvaluation], base: CandidateEvaluation,
                  names: Sequence[str], directions: Sequence[str],
                  settings: StatSettings) -> list[CandidateRecord]:
    """front.json records, in evaluation order; non-dominated over the judge-mixture means."""
    values = np.array([[e.objectives[n] for n in names] for e in evaluations])
    mask = non_dominated_mask(values, directions)
    records = []
    for evaluation, non_dominated in zip(evaluations, mask):
        spec = evaluation.spec
        judged = {n: evaluation.scores[JUDGES][n] for n in names}
        means, intervals = _means_and_intervals(judged, settings)
        vs_base = paired_block(judged, base.scores[JUDGES], settings)
        blocks = {s: paired_block(evaluation.scores.get(s, {}), base.scores.get(s, {}), settings)
                  for s in ("reward_model", "independent")}
        rm_means, rm_intervals = _means_and_intervals(evaluation.scores.get("reward_model", {}), settings)
        independent = {k: float(np.mean(v)) for k, v in evaluation.scores.get("independent", {}).items()}
        records.append(CandidateRecord(
            name=spec.name, kind=spec.kind, source=spec.source,
            method=spec.method if spec.kind == "merge" else ("exact" if spec.kind == "adapter" else "none"),
            coefficients=dict(zip(spec.expert_names, spec.coefficients or [])),
            weights=dict(zip(names, spec.weights)) if spec.weights else {},
            merge_params=spec.merge_params if spec.kind == "merge" else {},
            objectives=means, intervals=intervals, vs_base=vs_base,
            distinguishable=any(p.distinguishable for p in vs_base.values()),
            non_dominated=bool(non_dominated),
            reward_model=rm_means, reward_model_intervals=rm_intervals,
            reward_model_vs_base=blocks["reward_model"],
            independent=independent, independent_vs_base=blocks["independent"],
            adapter_hashes=evaluation.adapter_hashes,
            mean_new_tokens=float(np.mean(evaluation.new_tokens)) if evaluation.new_tokens else 0.0,
            generation_seconds=evaluation.generation_seconds, cached=evaluation.cached,
            cache_key=evaluation.cache_key,
        ))
    return records


def judge_tensor(evaluations: Sequence[CandidateEvaluation], names: Sequence[str]) -> np.ndarray:
    """(n_candidates, n_prompts, n_objectives) judge-mixture scores."""
    return np.stack([np.stack([e.scores[JUDGES][n] for n in names], axis=1) for e in evaluations])


def hypervolume_interval(per_prompt: np.ndarray, reference: Sequence[float], directions: Sequence[str],
                         settings: StatSettings) -> tuple[float, float, float]:
    """(HV, low, high): prompts resampled, every candidate's means and the HV recomputed."""
    value, low, high = prompt_bootstrap(
        per_prompt, lambda means: hypervolume(means, reference, directions),
        n_resamples=settings.n_boot, level=settings.ci_level, seed=settings.seed,
    )
    return float(value), float(low), float(high)


def pooled_mde(records: Sequence[CandidateRecord], n_prompts: int, settings: StatSettings) -> dict[str, dict[str, float]]:
    """Per scorer and objective: MDE at this prompt count from the RMS of the candidates' SDs.

    The base (SD 0 against itself) is left out; with no other candidate the MDE is 0.
    """
    out: dict[str, dict[str, float]] = {}
    for scorer, attribute in ((JUDGES, "vs_base"), ("reward_model", "reward_model_vs_base"),
                              ("independent", "independent_vs_base")):
        sds: dict[str, list[float]] = {}
        for record in records:
            if record.kind == "base":
                continue
            for name, paired in getattr(record, attribute).items():
                sds.setdefault(name, []).append(paired.sd)
        if sds:
            out[scorer] = {
                name: minimum_detectable_difference(float(np.sqrt(np.mean(np.square(v)))), n_prompts,
                                                    alpha=settings.alpha, power=settings.power)
                for name, v in sds.items()
            }
    return out


__all__ = ["StatSettings", "build_records", "hypervolume_interval", "judge_tensor", "paired_block", "pooled_mde"]
