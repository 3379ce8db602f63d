"""ArmoRM-style multi-objective reward model (Wang et al. 2024) trained on curated human data.

- `data`:     curated tables → per-objective sources (human pairs, ratings, judge ratings), splits.
- `features`: frozen-backbone features (MiniLM windows or policy hidden states), cached per text.
- `losses`:   the Bradley-Terry loss.
- `fit`:      multi-source preference heads, gating network, calibration (array level).
- `model`:    `RewardModel` (inference, save/load; no training code needed to score).
- `train`:    `run(params, root) -> RewardResult`, the reward stage.
- `evaluate`: accuracy / length-controlled accuracy on any importable file (`eval-rm`).
- `report`:   report.json / report.md / plots.

- `judge`:    the `reward_model` judge (found by name by `paretoflow.judges`).

Dependency direction: reward → judges (judge ratings as training targets, rule cues as
features, the judge plugin); the judges package never imports reward.
"""

from paretoflow.reward.model import OVERALL, RewardModel

__all__ = ["OVERALL", "RewardModel"]
