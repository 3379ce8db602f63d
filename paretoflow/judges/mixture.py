"""Mixture of judges: each objective's value is the weighted mean of its judges' scores.

For objective o with judges j (weights w_j ≥ 0, Σ w_j > 0) and judge scores s_j ∈ [0, 1]
(higher = better for the judge's aspect):

    g_o   = Σ_j w_j s_j / Σ_j w_j                 goodness in [0, 1]
    value = lo + g_o (hi - lo)        if direction == "maximize"
    value = hi - g_o (hi - lo)        if direction == "minimize"

where (lo, hi) is the objective's scale. An objective's `gates` (judges too, e.g. `answer`)
multiply the goodness: g_o = (Σ_j w_j s_j / Σ_j w_j) · Π_k s_k, so an aspect counts only
as far as the response is what the gate asks for (a real answer), and a short greeting
cannot win conciseness (issue 17). Raw gate scores appear in `score_detailed` as
"gate:<name>". So values are reported RAW on the objective's
own scale and in its own direction: for a "minimize" objective lower is better and the
mixture does not flip the sign; consumers compare with `better_is_higher(objective)` or
map back with `goodness(objective, values)`. A judge used by several objectives with the
same params is built and run once per call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from paretoflow.judges.base import Judge, JudgeContext, build_judge, check_inputs, check_scores

if TYPE_CHECKING:
    from paretoflow.config import Params
    from paretoflow.sections import Objective


def better_is_higher(objective: Objective) -> bool:
    return objective.direction == "maximize"


def to_scale(objective: Objective, goodness_values: np.ndarray) -> np.ndarray:
    lo, hi = objective.scale
    g = np.asarray(goodness_values, dtype=np.float64)
    return lo + g * (hi - lo) if better_is_higher(objective) else hi - g * (hi - lo)


def goodness(objective: Objective, values: np.ndarray) -> np.ndarray:
    """Inverse of `to_scale`: raw objective values back to [0, 1], higher = better."""
    lo, hi = objective.scale
    v = np.asarray(values, dtype=np.float64)
    return (v - lo) / (hi - lo) if better_is_higher(objective) else (hi - v) / (hi - lo)


def _judge_key(name: str, params: dict) -> str:
    return name + json.dumps(params, sort_keys=True, default=str)


class JudgeMixture:
    """Scores responses on every declared objective with its weighted judges."""

    def __init__(self, objectives: list[Objective], context: JudgeContext | None = None):
        if not objectives:
            raise ValueError("a judge mixture needs at least one objective")
        self.objectives = list(objectives)
        self.context = context or JudgeContext()
        self._judges: dict[str, Judge] = {}
        # objective name -> [(judge key, normalised weight, label)]; gates: [(judge key, label)]
        self._plan: dict[str, list[tuple[str, float, str]]] = {}
        self._gates: dict[str, list[tuple[str, str]]] = {}
        for objective in self.objectives:
            if not objective.judges:
                raise ValueError(f"objective {objective.name!r} declares no judges")
            total = sum(ref.weight for ref in objective.judges)
            if total <= 0:
                raise ValueError(f"objective {objective.name!r}: judge weights sum to 0")
            self._plan[objective.name] = [
                (self._build(objective.name, ref), ref.weight / total, ref.name) for ref in objective.judges
            ]
            self._gates[objective.name] = [(self._build(objective.name, ref), f"gate:{ref.name}") for ref in objective.gates]

    def _build(self, objective: str, ref) -> str:
        """Build the judge `ref` names once per (name, params); its key."""
        key = _judge_key(ref.name, ref.params)
        if key not in self._judges:
            try:
                self._judges[key] = build_judge(ref, self.context)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"objective {objective!r}, judge {ref.name!r}: {exc}") from exc
        return key

    @property
    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    def score_detailed(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        tags: Sequence[Sequence[str]] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
        """(objective values, objective -> judge name -> raw judge scores in [0, 1])."""
        prompts_, responses_, tags_ = check_inputs(prompts, responses, tags)
        n = len(responses_)
        raw: dict[str, np.ndarray] = {}
        for key, judge in self._judges.items():
            raw[key] = check_scores(judge.name, judge.score(prompts_, responses_, tags_), n)
        values: dict[str, np.ndarray] = {}
        per_judge: dict[str, dict[str, np.ndarray]] = {}
        for objective in self.objectives:
            g = np.zeros(n, dtype=np.float64)
            per_judge[objective.name] = {}
            for key, weight, label in self._plan[objective.name]:
                g += weight * raw[key]
                per_judge[objective.name][label] = raw[key]
            g = np.clip(g, 0.0, 1.0)
            for key, label in self._gates[objective.name]:
                g = g * raw[key]
                per_judge[objective.name][label] = raw[key]
            values[objective.name] = to_scale(objective, np.clip(g, 0.0, 1.0))
        return values, per_judge

    def score(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        tags: Sequence[Sequence[str]] | None = None,
    ) -> dict[str, np.ndarray]:
        """Objective name -> (n,) float64 values on the objective's scale (see module doc)."""
        return self.score_detailed(prompts, responses, tags)[0]


def build_mixture(params: Params, root: Path = Path(".")) -> JudgeMixture:
    """The mixture for every objective declared in params."""
    return JudgeMixture(params.objectives, JudgeContext(root=Path(root), params=params))
