import numpy as np
import pytest

from paretoflow.config import JudgeRef, Objective
from paretoflow.judges import JudgeMixture, build_mixture, goodness, register_judge


class _Fixed:
    """Returns the scores given in its params (one per response), counting its calls."""

    name = "fixed_values_test"

    def __init__(self, values):
        self.values, self.calls = np.asarray(values, dtype=float), 0

    def score(self, prompts, responses, tags):
        self.calls += 1
        return self.values[: len(responses)]


@register_judge("fixed_values_test")
def _make_fixed(params, context):
    return _Fixed(params["values"])


def _ref(values, weight):
    return JudgeRef(name="fixed_values_test", weight=weight, params={"values": values})


def test_weights_combine_as_computed_by_hand_and_scales_and_directions_apply():
    a, b = [0.2, 1.0], [0.6, 0.0]
    objectives = [
        # (1*a + 3*b) / 4 = [(0.2 + 1.8)/4, (1.0 + 0)/4] = [0.5, 0.25]
        Objective(name="mixed", judges=[_ref(a, 1.0), _ref(b, 3.0)]),
        # scale [0, 10], maximize: 10 * g
        Objective(name="scaled", scale=(0.0, 10.0), judges=[_ref(a, 2.0)]),
        # scale [-1, 1], minimize: raw value = hi - g (hi - lo) = 1 - 2 g
        Objective(name="lower_better", direction="minimize", scale=(-1.0, 1.0), judges=[_ref(b, 1.0)]),
    ]
    mixture = JudgeMixture(objectives)
    values = mixture.score(["p", "q"], ["r", "s"])
    np.testing.assert_allclose(values["mixed"], [0.5, 0.25])
    np.testing.assert_allclose(values["scaled"], [2.0, 10.0])
    np.testing.assert_allclose(values["lower_better"], [1 - 1.2, 1.0])
    np.testing.assert_allclose(goodness(objectives[2], values["lower_better"]), b)
    # a judge shared by two objectives with the same params runs once per call
    shared = [j for j in mixture._judges.values() if list(j.values) == a]
    assert len(shared) == 1 and shared[0].calls == 1


def test_gates_multiply_the_weighted_mean_as_computed_by_hand():
    a, b, gate = [0.2, 1.0], [0.6, 0.0], [0.5, 0.1]
    objectives = [
        # (1*a + 3*b) / 4 = [0.5, 0.25], times the gate [0.5, 0.1] = [0.25, 0.025]
        Objective(name="gated", judges=[_ref(a, 1.0), _ref(b, 3.0)], gates=[_ref(gate, 1.0)]),
        # two gates multiply: a * gate * gate = [0.2*0.25, 1.0*0.01]; scale [0, 10]
        Objective(name="twice", scale=(0.0, 10.0), judges=[_ref(a, 1.0)],
                  gates=[_ref(gate, 1.0), JudgeRef(name="fixed_values_test", params={"values": gate, "x": 1})]),
    ]
    mixture = JudgeMixture(objectives)
    values, per_judge = mixture.score_detailed(["p", "q"], ["r", "s"])
    np.testing.assert_allclose(values["gated"], [0.25, 0.025])
    np.testing.assert_allclose(values["twice"], [10 * 0.2 * 0.25, 10 * 1.0 * 0.01])
    np.testing.assert_allclose(per_judge["gated"]["gate:fixed_values_test"], gate)


def test_mixture_rejects_bad_judges_and_outputs():
    with pytest.raises(ValueError, match="declares no judges"):
        JudgeMixture([Objective(name="empty")])
    with pytest.raises(ValueError, match="weights sum to 0"):
        JudgeMixture([Objective(name="zero", judges=[_ref([0.5], 0.0)])])
    bad = JudgeMixture([Objective(name="bad", judges=[_ref([0.5, float("nan")], 1.0)])])
    with pytest.raises(ValueError, match="index 1"):
        bad.score(["p", "q"], ["r", "s"])
    with pytest.raises(ValueError, match="objective 'x', judge 'length_band'"):
        JudgeMixture([Objective(name="x", judges=[JudgeRef(name="length_band", params={"low": -1})])])


def test_default_params_mixture_scores_every_objective(params, tmp_path, tiny_policy_dir):
    # The default objectives are judged by the trained reward model's heads: a reward model
    # (random heads on the tiny policy's features) lies where the reward stage writes it.
    from tests.paretoflow.front.front_fixtures import write_tiny_reward_model

    write_tiny_reward_model(tmp_path / params.reward.out_dir, tiny_policy_dir, params.objective_names)
    mixture = build_mixture(params, tmp_path)
    values = mixture.score(
        ["How do I make a bomb?", "What is the capital of France?"],
        ["I'm sorry, but I can't help with that.", ""],
        [["harmful"], []],
    )
    assert set(values) == set(params.objective_names)
    for name, v in values.items():
        assert v.shape == (2,) and np.isfinite(v).all(), name
        assert v[1] == 0.0, name  # the empty answer wins on nothing
