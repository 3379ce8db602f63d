"""Choosing a front candidate and deciding whether it may become the champion.

Pure functions: the registry moves (paretoflow/registry.py) act on their decision.

Selection: among non-dominated candidates, either the best weighted sum of
scale-normalised objective values for a preference vector (the linear scalarisation
users state as "70% helpful, 30% concise"), or the best value of one objective under
lower bounds on others ("max helpfulness with harmlessness ≥ τ", the constrained form
of CGPO/MAP). Gates: validation passed; no objective worse than the current champion's
beyond a tolerance; judges and reward model agree on the direction of change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from paretoflow.config import Objective, check_weights


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


def select_by_constraint(candidates: Sequence[Candidate], objectives: Sequence[Objective],
                         maximize: str, minimums: Mapping[str, float]) -> Candidate:
    """Best `maximize` objective among candidates meeting every lower bound (scale units,
    after direction: for a minimised objective the bound is an upper bound)."""
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
    return max(pool, key=lambda c: normalized(c.objectives[maximize], by_name[maximize]))


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
           tolerance: float, rm_tolerance: float = 0.0) -> Decision:
    return Decision(candidate, [
        gate_validation(validation_passed),
        gate_no_regression(candidate, champion_objectives, objectives, tolerance),
        gate_judge_rm_agreement(candidate, reference, objectives, tolerance, rm_tolerance),
    ])
