"""Choosing a front candidate and deciding whether it may become the champion.

Pure functions: the registry moves (paretoflow/registry.py) act on their decision.

Selection: among non-dominated candidates, either the best weighted sum of
scale-normalised objective values for a preference vector (the linear scalarisation
users state as "70% helpful, 30% concise"), or the best value of one objective under
lower bounds on others ("max helpfulness with harmlessness ≥ τ", the constrained form
of CGPO/MAP). With per-prompt scores (`PairedComparison` against the base) the choice
ranks by the lower bound of the paired interval instead of the mean, so a noisy
candidate does not win on a lucky draw.

Gates: validation passed; no regression; judges and reward models agree on the direction
of change. The no-regression gate on paired scores (`gate_paired_improvement`), with d the
per-prompt difference candidate − reference (the champion, or the base when there is
none) on the [0, 1]-normalised, direction-aware scale and τ = promote.tolerance:

    pass  ⇔  mean(Σₖ wₖ dₖ) > 0  and  CI_low(Σₖ wₖ dₖ) > −τ  and  no k with CI_high(dₖ) < −τ

(w: the preference vector; a constraint rule weighs its maximised objective alone).
Without a comparison (the champion could not be rebuilt or scored on the same prompts)
the gate fails closed with the reason. `gate_no_regression` on means is the legacy form
for callers without per-prompt scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from paretoflow.sections import check_weights
from paretoflow.metrics import PairedInterval, paired_difference

if TYPE_CHECKING:
    from paretoflow.sections import Objective


@dataclass
class Candidate:
    name: str
    objectives: dict[str, float]                       # judge-mixture scores
    rm_objectives: dict[str, float] = field(default_factory=dict)  # reward-model scores
    dominated: bool = False
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class GateResult:
    name: str
    passed: bool
    reason: str


@dataclass
class Decision:
    candidate: Candidate
    gates: list[GateResult]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def reasons(self) -> list[str]:
        return [f"{g.name}: {g.reason}" for g in self.gates if not g.passed]


def normalized(value: float, objective: Objective) -> float:
    """Map a value onto [0, 1] of its scale with 1 = better (direction respected)."""
    low, high = objective.scale
    x = (value - low) / (high - low)
    return x if objective.direction == "maximize" else 1.0 - x


def select_by_preference(candidates: Sequence[Candidate], objectives: Sequence[Objective],
                         weights: Sequence[float]) -> Candidate:
    """argmax_c Σ_k w_k · normalised f_k(c) over non-dominated candidates (ties: first)."""
    w = check_weights(list(weights), [o.name for o in objectives])
    pool = [c for c in candidates if not c.dominated] or list(candidates)
    if not pool:
        raise ValueError("no candidates to choose from")
    return max(pool, key=lambda c: sum(wk * normalized(c.objectives[o.name], o) for wk, o in zip(w, objectives)))


def feasible_candidates(candidates: Sequence[Candidate], objectives: Sequence[Objective], maximize: str,
                        minimums: Mapping[str, float]) -> list[Candidate]:
    """Candidates meeting every lower bound (scale units, after direction: for a minimised
    objective the bound is an upper bound); an error naming the best values when none does."""
    by_name = {o.name: o for o in objectives}
    for name in [maximize, *minimums]:
        if name not in by_name:
            raise KeyError(f"unknown objective {name!r}; declared: {list(by_name)}")

    def feasible(c: Candidate) -> bool:
        for name, bound in minimums.items():
            v = c.objectives[name]
            ok = v >= bound if by_name[name].direction == "maximize" else v <= bound
            if not ok:
                return False
        return True

    pool = [c for c in candidates if feasible(c)]
    if not pool:
        raise ValueError(f"no candidate satisfies {dict(minimums)}; best values: "
                         + ", ".join(f"{n}={max(c.objectives[n] for c in candidates):.3f}" for n in minimums))
    return pool


def select_by_constraint(candidates: Sequence[Candidate], objectives: Sequence[Objective],
                         maximize: str, minimums: Mapping[str, float]) -> Candidate:
    """Best `maximize` objective among candidates meeting every lower bound (see feasible_candidates)."""
    pool = feasible_candidates(candidates, objectives, maximize, minimums)
    objective = next(o for o in objectives if o.name == maximize)
    return max(pool, key=lambda c: normalized(c.objectives[maximize], objective))


# ------------------------------------------------------------------ paired comparisons


@dataclass
class PairedComparison:
    """Candidate vs a reference on the same prompts, normalised so that + is better."""

    reference: str                          # "base" or "champion v<N>"
    weighted: PairedInterval                # Σₖ wₖ · normalised difference
    objectives: dict[str, PairedInterval]   # per objective, normalised difference


def normalized_scores(values, objective: Objective) -> np.ndarray:
    """Per-prompt values onto [0, 1] of the objective's scale, 1 = better."""
    low, high = objective.scale
    x = (np.asarray(values, dtype=np.float64) - low) / (high - low)
    return x if objective.direction == "maximize" else 1.0 - x


def compare_paired(candidate: Mapping[str, Sequence[float]], reference: Mapping[str, Sequence[float]],
                   objectives: Sequence[Objective], weights: Sequence[float], reference_name: str, *,
                   n_resamples: int = 2000, level: float = 0.95, seed: int = 0) -> PairedComparison:
    """Paired bootstrap of the preference-weighted and per-objective normalised differences."""
    w = check_weights(list(weights), [o.name for o in objectives])
    missing = [o.name for o in objectives if o.name not in candidate or o.name not in reference]
    if missing:
        raise KeyError(f"no per-prompt scores for objectives {missing} on both sides")
    normalised_c = {o.name: normalized_scores(candidate[o.name], o) for o in objectives}
    normalised_r = {o.name: normalized_scores(reference[o.name], o) for o in objectives}
    per_objective = {
        o.name: paired_difference(normalised_c[o.name], normalised_r[o.name], n_resamples=n_resamples,
                                  level=level, seed=seed + k)
        for k, o in enumerate(objectives)
    }
    weighted_c = sum(wk * normalised_c[o.name] for wk, o in zip(w, objectives))
    weighted_r = sum(wk * normalised_r[o.name] for wk, o in zip(w, objectives))
    weighted = paired_difference(weighted_c, weighted_r, n_resamples=n_resamples, level=level, seed=seed)
    return PairedComparison(reference_name, weighted, per_objective)


def select_by_paired_preference(candidates: Sequence[Candidate],
                                comparisons: Mapping[str, PairedComparison]) -> Candidate:
    """Among non-dominated candidates, the best lower bound of the weighted gain vs the base
    (then the best mean gain). `comparisons` holds each candidate's PairedComparison."""
    pool = [c for c in candidates if not c.dominated] or list(candidates)
    if not pool:
        raise ValueError("no candidates to choose from")
    missing = [c.name for c in pool if c.name not in comparisons]
    if missing:
        raise KeyError(f"no paired comparison for candidates {missing}")
    return max(pool, key=lambda c: (comparisons[c.name].weighted.ci_low, comparisons[c.name].weighted.diff))


def _interval(p: PairedInterval) -> str:
    return f"{p.diff:+.4f} [{p.ci_low:+.4f}, {p.ci_high:+.4f}]"


def gate_paired_improvement(comparison: PairedComparison | None, tolerance: float,
                            unavailable: str = "no paired comparison") -> GateResult:
    """The paired no-regression gate (module docstring); fails closed without a comparison."""
    if comparison is None:
        return GateResult("no_regression", False, f"cannot compare on the same prompts: {unavailable}")
    weighted, against = comparison.weighted, comparison.reference
    problems = []
    if weighted.diff <= 0:
        problems.append(f"weighted score does not improve on {against}: {_interval(weighted)}")
    elif weighted.ci_low <= -tolerance:
        problems.append(f"weighted gain over {against} is within noise: {_interval(weighted)}, "
                        f"lower bound not above -{tolerance}")
    for name, paired in comparison.objectives.items():
        if paired.ci_high < -tolerance:
            problems.append(f"{name} worse than {against} beyond {tolerance}: {_interval(paired)}")
    if problems:
        return GateResult("no_regression", False, "; ".join(problems))
    return GateResult("no_regression", True, f"weighted gain over {against} {_interval(weighted)} "
                      f"(n={weighted.n}); no objective below -{tolerance}")


def gate_scorer_agreement(judges: Mapping[str, tuple[float, float]],
                          others: Mapping[str, Mapping[str, tuple[float, float]]],
                          objectives: Sequence[Objective]) -> GateResult:
    """Where the judges' paired interval vs the base excludes 0, no reward model's interval may
    exclude 0 the other way. Intervals are (ci_low, ci_high) on each scorer's own scale:
    judges on the objective's raw scale (lower is better for a minimised objective), reward
    models higher = better (their heads are direction-aware, paretoflow.reward.model). An
    interval holding 0 is "no change", not a disagreement."""
    disagree = []
    for o in objectives:
        if o.name not in judges:
            continue
        low, high = judges[o.name]
        judged = 1 if low > 0 else (-1 if high < 0 else 0)
        if o.direction == "minimize":
            judged = -judged
        for scorer, intervals in others.items():
            if judged == 0 or o.name not in intervals:
                continue
            rlow, rhigh = intervals[o.name]
            scored = 1 if rlow > 0 else (-1 if rhigh < 0 else 0)
            if scored == -judged:
                disagree.append(f"{o.name}: judges [{low:+.4f}, {high:+.4f}], {scorer} [{rlow:+.4f}, {rhigh:+.4f}]")
    if disagree:
        return GateResult("judge_rm_agreement", False, "scorers disagree on the direction vs the base: "
                          + "; ".join(disagree))
    scorers = ", ".join(others) or "no reward model"
    return GateResult("judge_rm_agreement", True, f"judges and {scorers} agree (paired intervals vs the base)")


# ------------------------------------------------------------------ gates


def gate_validation(validation_passed: bool) -> GateResult:
    return GateResult("validation", bool(validation_passed),
                      "data validation passed" if validation_passed else "data validation failed")


def gate_no_regression(candidate: Candidate, champion: Mapping[str, float] | None,
                       objectives: Sequence[Objective], tolerance: float) -> GateResult:
    """No objective may be worse than the champion's by more than `tolerance` (normalised)."""
    if not champion:
        return GateResult("no_regression", True, "no current champion")
    worse = []
    for o in objectives:
        if o.name not in champion:
            continue
        drop = normalized(champion[o.name], o) - normalized(candidate.objectives[o.name], o)
        if drop > tolerance:
            worse.append(f"{o.name} {candidate.objectives[o.name]:.4f} vs champion {champion[o.name]:.4f}")
    if worse:
        return GateResult("no_regression", False, "worse than champion beyond tolerance "
                          f"{tolerance}: " + "; ".join(worse))
    return GateResult("no_regression", True, f"within {tolerance} of champion on every objective")


def gate_judge_rm_agreement(candidate: Candidate, reference: Candidate | None,
                            objectives: Sequence[Objective], tolerance: float,
                            rm_tolerance: float = 0.0) -> GateResult:
    """Where both judges and the RM score an objective, the candidate's change against the
    reference must have the same sign under both. Judge changes within `tolerance`
    (normalised) and RM changes within `rm_tolerance` (RM units) count as no change."""
    if reference is None or not candidate.rm_objectives or not reference.rm_objectives:
        return GateResult("judge_rm_agreement", True, "no reward-model scores to compare")
    disagree = []
    for o in objectives:
        if o.name not in candidate.rm_objectives or o.name not in reference.rm_objectives:
            continue
        dj = normalized(candidate.objectives[o.name], o) - normalized(reference.objectives[o.name], o)
        dr = candidate.rm_objectives[o.name] - reference.rm_objectives[o.name]
        if o.direction == "minimize":
            dr = -dr
        if abs(dj) > tolerance and abs(dr) > rm_tolerance and (dj > 0) != (dr > 0):
            disagree.append(f"{o.name}: judges {dj:+.4f}, reward model {dr:+.4f}")
    if disagree:
        return GateResult("judge_rm_agreement", False, "judges and reward model disagree: " + "; ".join(disagree))
    return GateResult("judge_rm_agreement", True, f"agree against {reference.name}")


def decide(candidate: Candidate, *, objectives: Sequence[Objective], validation_passed: bool,
           champion_objectives: Mapping[str, float] | None, reference: Candidate | None,
           tolerance: float, rm_tolerance: float = 0.0,
           comparison: PairedComparison | None = None, comparison_error: str | None = None,
           agreement: GateResult | None = None) -> Decision:
    """The gates. Paired form (promote.run): pass `comparison` (or `comparison_error` when the
    reference could not be scored on the same prompts: the gate then fails closed) and the
    paired `agreement` gate. Legacy form (means only): neither, as before."""
    if comparison is not None or comparison_error is not None:
        regression = gate_paired_improvement(comparison, tolerance, comparison_error or "")
    else:
        regression = gate_no_regression(candidate, champion_objectives, objectives, tolerance)
    return Decision(candidate, [
        gate_validation(validation_passed),
        regression,
        agreement or gate_judge_rm_agreement(candidate, reference, objectives, tolerance, rm_tolerance),
    ])
