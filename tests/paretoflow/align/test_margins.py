"""MODPO margins: from the trained reward model (calibrated), from judges, chosen automatically."""

from __future__ import annotations

import numpy as np
import pytest

from paretoflow import align
from paretoflow.align.data import load_pair_tables, select_pairs
from paretoflow.align.margins import judge_margins, live_margin_rater, resolve_rater
from paretoflow.config import load_params

from .test_run import TINY_BUDGET, write_sources


@pytest.fixture(scope="module")
def with_reward_model(tiny_policy_dir, tmp_path_factory):
    """A project with human + on-policy pairs and a reward model trained on them (tiny backbone)."""
    from paretoflow.reward.train import run as train_reward
    from tests.conftest import REPO_ROOT

    root = tmp_path_factory.mktemp("margins")
    write_sources(root, human_objectives=("helpfulness", "conciseness", "harmlessness"))
    params = load_params(REPO_ROOT / "params.yaml", overrides={
        "project": {"profile": "cpu"}, "model": {"policy": str(tiny_policy_dir)},
        "pairs": {"out_dir": "pairs"}, "curate": {"out_dir": "curated"}, "reward": {
            "out_dir": "reward", "gating_epochs": 30, "independent": False,
            "cpu": {"backbone": "policy", "max_length": 64}},
        "align": {"out_dir": "adapters", "cpu": TINY_BUDGET, "cache_dir": "align-cache"},
    })
    train_reward(params, root, progress=False)
    return root, params


def _pairs(root, params):
    tables = load_pair_tables(root / "pairs")
    examples, _ = select_pairs(tables, "helpfulness", "train", params.objectives)
    return examples[:3]


def test_margin_is_the_calibrated_reward_model_score_difference(with_reward_model):
    from paretoflow.reward.model import RewardModel

    root, params = with_reward_model
    assert resolve_rater(params, root) == "reward_model"  # auto: a reward model is saved
    rater, used = live_margin_rater(params, root, ["conciseness", "harmlessness"])
    assert used == {"conciseness": "reward_model", "harmlessness": "reward_model"}
    examples = _pairs(root, params)
    chosen, rejected = rater(examples)
    model = RewardModel.load(root / "reward", root=root)
    for j, objective in ((1, "conciseness"), (2, "harmlessness")):
        scores_c = model.score([e.messages for e in examples], [e.chosen_text for e in examples],
                               objectives=[objective])[objective]
        scores_r = model.score([e.messages for e in examples], [e.rejected_text for e in examples],
                               objectives=[objective])[objective]
        expected = model.temperature(objective) * (scores_c - scores_r)
        # batched with the other side here: features differ by float rounding of padded batches
        np.testing.assert_allclose(chosen[:, j] - rejected[:, j], expected, rtol=1e-4, atol=1e-6)
    assert np.isnan(chosen[:, 0]).all()  # helpfulness is the trained objective: no margin


def test_judge_margins_are_the_mixture_goodness(with_reward_model):
    from paretoflow.judges import build_mixture, goodness

    root, params = with_reward_model
    examples = _pairs(root, params)
    chosen, rejected = judge_margins(params, root, ["conciseness"])(examples)
    mixture = build_mixture(params, root)
    texts = [e.prompt_text for e in examples]
    expected = goodness(params.objective("conciseness"),
                        mixture.score(texts, [e.rejected_text for e in examples])["conciseness"])
    np.testing.assert_allclose(rejected[:, 1], expected)
    assert np.isnan(chosen[:, [0, 2]]).all()


def test_modpo_run_takes_margins_from_the_reward_model(with_reward_model, tiny_policy_dir):
    root, params = with_reward_model
    result = align.run(params, root, weights=[0.6, 0.4, 0.0], policy_path=str(tiny_policy_dir), progress=False)
    meta = align.read_meta(result.adapter_dir)
    assert meta.margin_raters == {"conciseness": "reward_model"}
    assert meta.reward_model["dir"] == "reward" and len(meta.reward_model["hash"]) == 16
    judged = params.model_copy(deep=True)
    judged.align.margin_rater = "judges"
    assert live_margin_rater(judged, root, ["conciseness"])[1] == {"conciseness": "judges"}
