"""`reward_model`: the learned ArmoRM-style reward model as a judge.

Params: `objective` (a head the model declares, or "overall"; default "overall") and
`model_dir` (default `reward.out_dir` of the params in the context, else
artifacts/reward; `<reward.out_dir>/independent` names the independent model),
resolved against `context.root`. The model is loaded once, when the
judge is built; an objective the model does not declare is a KeyError naming it.

Mapping to [0, 1] (the judge contract), the same for every head: σ(τ·(r − μ)), the
calibrated probability that the response beats a typical training response (μ = the
head's mean score over the training responses, 0 for "overall" whose inputs are
z-scored; τ = the temperature fitted on validation pairs): `RewardModel.probability`.
Every head is a logit fitted on human pairs and/or ratings, so one mapping serves all.
Empty and degenerate answers score 0 like every built-in judge (TextJudge).

Dependency direction: reward → judges, one way. The reward model trains on judge ratings
and rule cues (reward/data.py, reward/lexical.py), so this judge lives in the reward
package, and `paretoflow.judges` finds it by name (`judges.base.PLUGIN_MODULES`) when an
objective names `reward_model`; the judges package imports nothing of reward. The stages
that judge with it list it as code they run (`extra_code` in paretoflow/stages/).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paretoflow.judges.base import JudgeContext, TextJudge, register_judge, take_params


class RewardModelJudge(TextJudge):
    name = "reward_model"

    def __init__(self, model, objective: str, degenerate_score: float = 0.0, cache_dir: Path | None = None):
        super().__init__(degenerate_score)
        self.model = model
        self.cache_dir = cache_dir
        self.objective = model.check_objective(objective)
        self.name = f"reward_model:{objective}"

    def _score(self, prompts, responses, tags) -> np.ndarray:
        values = self.model.score(prompts, responses, tags, objectives=[self.objective], cache_dir=self.cache_dir)
        return self.model.probability(self.objective, values[self.objective])


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
    reward = getattr(context.params, "reward", None) if context.params is not None else None
    cache_dir = root / reward.feature_cache_dir if reward is not None else None
    return RewardModelJudge(model, str(options["objective"]), float(options["degenerate_score"]), cache_dir)
