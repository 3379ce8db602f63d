"""ArmoRM-style multi-objective reward model (Wang et al. 2024).

- `features`: frozen-backbone features (policy hidden states or MiniLM), cached on disk.
- `losses`:   the Bradley-Terry loss.
- `fit`:      ridge / Bradley-Terry heads, gating network, calibration (array level).
- `model`:    `RewardModel` (inference, save/load; no training code needed to score).
- `train`:    `run(params, root) -> RewardResult`, the reward stage.
- `report`:   report.json / report.md / plots.
"""

from paretoflow.reward.model import OVERALL, RewardModel

__all__ = ["OVERALL", "RewardModel"]

# `paretoflow.judges` imports this package to find plugin judges: registering here makes
# the "reward_model" judge available by name.
from paretoflow.judges import reward_model as _reward_model_judge  # noqa: E402,F401
