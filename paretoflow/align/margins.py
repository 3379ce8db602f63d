"""MODPO margin rewards r₋ₖ: who scores the two responses of a pair on the other objectives.

MODPO (Zhou et al. 2024, eq. 8) subtracts w₋ₖ·[r₋ₖ(x, y_w) − r₋ₖ(x, y_l)] from the DPO
logit, where r₋ₖ are reward models of the other objectives: Bradley-Terry rewards, so
σ(r(y_w) − r(y_l)) is the probability that y_w is preferred. Raters (`align.margin_rater`):

- `reward_model`: the learned reward model of `reward.out_dir`, on its calibrated scale
  r̃_k = τ_k · s_k (s_k its head score, τ_k the temperature fitted on validation pairs), so
  r̃_k(y_w) − r̃_k(y_l) = τ_k·(s_k(y_w) − s_k(y_l)) is the fitted preference logit, the
  scale the MODPO loss expects. Objectives the model has no head for fall back to judges.
- `judges`: the judge mixture's goodness in [0, 1] (the scorer that made the on-policy
  pairs); differences lie in [−1, 1], a smaller scale than a reward model's logits.
- `auto` (default): `reward_model` when one is saved in `reward.out_dir`, else `judges`.
- any other name: that rater's rows of the ratings tables (`data.select_pairs`).

A live rater is a callable `(examples) -> (chosen (n, m), rejected (n, m))` over the m
declared objectives (NaN where not rated); the trainer calls it on the pairs its step
budget visits only, so a reward model scores a few hundred texts, not every human pair.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from paretoflow.align.data import PairExample

if TYPE_CHECKING:
    from paretoflow.config import Params

LIVE_RATERS = ("reward_model", "judges")
MarginRater = Callable[[Sequence[PairExample]], tuple[np.ndarray, np.ndarray]]


def reward_model_dir(params: Params, root: Path) -> Path:
    return Path(root) / params.reward.out_dir


def has_reward_model(params: Params, root: Path) -> bool:
    from paretoflow.reward.model import CONFIG_FILE, WEIGHTS_FILE

    folder = reward_model_dir(params, root)
    return (folder / CONFIG_FILE).exists() and (folder / WEIGHTS_FILE).exists()


def resolve_rater(params: Params, root: Path) -> str:
    """`align.margin_rater` with `auto` resolved against what is on disk."""
    rater = params.align.margin_rater
    if rater == "auto":
        return "reward_model" if has_reward_model(params, root) else "judges"
    return rater


def _both_sides(examples: Sequence[PairExample]) -> tuple[list, list[str], list[str], list[list[str]]]:
    messages = [e.messages for e in examples] * 2
    texts = [e.prompt_text or e.messages[-1]["content"] for e in examples] * 2
    responses = [e.chosen_text for e in examples] + [e.rejected_text for e in examples]
    tags = [list(e.tags) for e in examples] * 2
    return messages, texts, responses, tags


def _split(values: dict[str, np.ndarray], names: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    table = np.full((2 * n, len(names)), np.nan)
    for j, name in enumerate(names):
        if name in values:
            table[:, j] = values[name]
    return table[:n], table[n:]


def judge_margins(params: Params, root: Path, objectives: list[str]) -> MarginRater:
    """Judge-mixture goodness in [0, 1] (higher = better) on `objectives`."""
    from paretoflow.judges import JudgeMixture, goodness
    from paretoflow.judges.base import JudgeContext

    names = params.objective_names
    chosen_objectives = [params.objective(o) for o in objectives]
    mixture = JudgeMixture(chosen_objectives, JudgeContext(root=Path(root), params=params)) if objectives else None

    def rate(examples: Sequence[PairExample]) -> tuple[np.ndarray, np.ndarray]:
        if mixture is None or not examples:
            return _split({}, names, len(examples))
        _, texts, responses, tags = _both_sides(examples)
        values = mixture.score(texts, responses, tags)
        unit = {o.name: goodness(o, values[o.name]) for o in chosen_objectives}
        return _split(unit, names, len(examples))

    return rate


def reward_model_margins(model, names: list[str], objectives: list[str]) -> MarginRater:
    """Calibrated reward-model scores τ_k·s_k on `objectives` (see the module docstring)."""

    def rate(examples: Sequence[PairExample]) -> tuple[np.ndarray, np.ndarray]:
        if not objectives or not examples:
            return _split({}, names, len(examples))
        messages, _, responses, tags = _both_sides(examples)
        scores = model.score(messages, responses, tags, objectives=list(objectives))
        calibrated = {o: model.temperature(o) * np.asarray(scores[o], dtype=np.float64) for o in objectives}
        return _split(calibrated, names, len(examples))

    return rate


def _combine(names: list[str], parts: list[MarginRater]) -> MarginRater:
    def rate(examples: Sequence[PairExample]) -> tuple[np.ndarray, np.ndarray]:
        chosen = np.full((len(examples), len(names)), np.nan)
        rejected = chosen.copy()
        for part in parts:
            c, r = part(examples)
            chosen = np.where(np.isnan(chosen), c, chosen)
            rejected = np.where(np.isnan(rejected), r, rejected)
        return chosen, rejected

    return rate


def live_margin_rater(params: Params, root: Path, margin_objectives: list[str]) -> tuple[MarginRater | None, dict[str, str]]:
    """(rater callable, {objective: rater name}) for a live rater; (None, {}) otherwise."""
    rater = resolve_rater(params, root)
    if not margin_objectives or rater not in LIVE_RATERS:
        return None, ({o: rater for o in margin_objectives} if margin_objectives else {})
    names = params.objective_names
    if rater == "judges":
        return judge_margins(params, root, margin_objectives), {o: "judges" for o in margin_objectives}
    from paretoflow.reward.model import RewardModel

    model = RewardModel.load(reward_model_dir(params, root), root=root)
    with_head = [o for o in margin_objectives if o in model.objectives]
    without = [o for o in margin_objectives if o not in model.objectives]
    used = {**{o: "reward_model" for o in with_head}, **{o: "judges" for o in without}}
    parts = [reward_model_margins(model, names, with_head)]
    if without:
        parts.append(judge_margins(params, root, without))
    return _combine(names, parts), used


__all__ = [
    "LIVE_RATERS",
    "MarginRater",
    "has_reward_model",
    "judge_margins",
    "live_margin_rater",
    "resolve_rater",
    "reward_model_margins",
]
