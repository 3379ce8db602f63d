"""`reward_model`: the learned ArmoRM-style reward model as a judge.

Params: `objective` (a head the model declares, or "overall"; default "overall") and
`model_dir` (default `reward.out_dir` of the params in the context, else
artifacts/reward), resolved against `context.root`. The model is loaded once, when the
judge is built; an objective the model does not declare is a KeyError naming it.

Mapping to [0, 1] (the judge contract):
- ridge heads predict the direction-aware rating rescaled to [0, 1]: clipped to [0, 1];
- Bradley-Terry heads and "overall" are logits: σ(τ·(r − μ)), the calibrated probability
  that the response beats a typical training response (μ = mean over the training
  responses, τ = the temperature fitted on validation pairs; μ = 0 for "overall", whose
  inputs are z-scored).
Empty and degenerate answers score 0 like every built-in judge (TextJudge).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paretoflow.judges.base import JudgeContext, TextJudge, register_judge, take_params


class RewardModelJudge(TextJudge):
    name = "reward_model"

    def __init__(self, model, objective: str, degenerate_score: float = 0.0):
        super().__init__(degenerate_score)
        self.model = model
        self.objective = model.check_objective(objective)
        self.name = f"reward_model:{objective}"

    def _to_unit(self, values: np.ndarray) -> np.ndarray:
        from paretoflow.metrics import sigmoid
        from paretoflow.reward.model import OVERALL

        if self.objective == OVERALL:
            return sigmoid(self.model.temperature(OVERALL) * values)
        k = self.model.objectives.index(self.objective)
        if self.model.config["objectives"][k]["head"] == "ridge":
            return np.clip(values, 0.0, 1.0)
        centre = float(self.model.tensors["head_mean"][k])
        return sigmoid(self.model.temperature(self.objective) * (values - centre))

    def _score(self, prompts, responses, tags) -> np.ndarray:
        values = self.model.score(prompts, responses, tags, objectives=[self.objective])[self.objective]
        return self._to_unit(values)


@register_judge("reward_model")
def build_reward_model_judge(params: dict, context: JudgeContext) -> RewardModelJudge:
    from paretoflow.reward.model import OVERALL, RewardModel

    options = take_params("reward_model", params, {"objective": OVERALL, "model_dir": None, "degenerate_score": 0.0})
    root = Path(context.root)
    model_dir = options["model_dir"]
    if model_dir is None:
        reward = getattr(context.params, "reward", None) if context.params is not None else None
        model_dir = reward.out_dir if reward is not None else "artifacts/reward"
    model_dir = Path(model_dir)
    if not model_dir.is_absolute():
        model_dir = root / model_dir
    model = RewardModel.load(model_dir, root=root)
    return RewardModelJudge(model, str(options["objective"]), float(options["degenerate_score"]))
