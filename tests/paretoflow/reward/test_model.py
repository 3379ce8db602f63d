"""RewardModel inference on hand-built weights: formula, simplex, round trip, errors."""

import math

import numpy as np
import pytest

from paretoflow.reward.model import MODEL_FORMAT, OVERALL, RewardModel


def _model(rng=None, hidden=3):
    rng = rng or np.random.default_rng(0)
    d, dp, k = 4, 2, 2
    config = {
        "format": MODEL_FORMAT,
        "objectives": [{"name": "helpfulness", "head": "ridge"}, {"name": "conciseness", "head": "bradley_terry"}],
        "backbone": {"kind": "minilm"},
        "backbone_fingerprint": "x",
        "feature_dim": d,
        "prompt_feature_dim": dp,
        "gating_hidden_size": hidden,
        "gating_target": "mean_rating",
        "verbosity_penalty": 0.0,
        "temperatures": {"helpfulness": 2.0},
    }
    tensors = {
        "feature_mean": np.zeros(d), "feature_scale": np.ones(d),
        "head_weight": rng.normal(size=(k, d)), "head_bias": np.array([0.5, 0.0]),
        "head_mean": np.zeros(k), "head_std": np.ones(k),
        "length_coefficient": np.zeros(k), "length_stats": np.array([0.0, 1.0]),
        "prompt_mean": np.zeros(dp), "prompt_scale": np.ones(dp),
        "gate_w1": rng.normal(size=(hidden, dp)), "gate_b1": rng.normal(size=hidden),
        "gate_w2": rng.normal(size=(k, hidden)), "gate_b2": rng.normal(size=k),
        "log_beta": np.array([math.log(2.0)]),
    }  # fmt: skip
    return RewardModel(config=config, tensors=tensors)


def test_overall_is_beta_times_gated_sum_hand_case():
    model = _model()
    t = model.tensors
    t["head_weight"] = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    t["head_bias"] = np.zeros(2)
    t["gate_w2"] = np.zeros((2, 3))
    t["gate_b2"] = np.array([0.0, math.log(3.0)])  # softmax -> weights 1/4, 3/4
    scores = model.score_features(np.array([[2.0, 4.0, 9, 9]]), np.zeros((1, 2)), np.array([10.0]))
    assert scores["helpfulness"][0] == pytest.approx(2.0)
    assert scores["conciseness"][0] == pytest.approx(4.0)
    assert scores[OVERALL][0] == pytest.approx(2.0 * (0.25 * 2.0 + 0.75 * 4.0))


def test_gate_rows_are_on_the_simplex():
    weights = _model().gate(np.random.default_rng(1).normal(size=(50, 2)) * 10)
    assert np.all(weights >= 0) and np.allclose(weights.sum(axis=1), 1.0)


def test_save_load_round_trip_gives_identical_scores(tmp_path):
    model = _model()
    rng = np.random.default_rng(2)
    pair, prompt, lengths = rng.normal(size=(7, 4)), rng.normal(size=(7, 2)), rng.integers(1, 50, 7)
    before = model.score_features(pair, prompt, lengths)
    loaded = RewardModel.load(model.save(tmp_path / "rm"))
    after = loaded.score_features(pair, prompt, lengths)
    assert loaded.config == model.config
    for name in before:
        assert np.array_equal(before[name], after[name])
    assert not list((tmp_path / "rm").glob("*.pt")) and not list((tmp_path / "rm").glob("*.pkl"))


def test_undeclared_objective_is_a_key_error_naming_it():
    model = _model()
    with pytest.raises(KeyError, match="'harmlessness'.*declared"):
        model.score_features(np.zeros((1, 4)), np.zeros((1, 2)), np.ones(1), objectives=["harmlessness"])
    with pytest.raises(KeyError, match="'safety'"):
        model.temperature("safety")
    assert model.temperature("helpfulness") == 2.0 and model.temperature("conciseness") == 1.0


def test_nan_wrong_shape_and_empty_inputs():
    model = _model()
    with pytest.raises(ValueError, match="NaN"):
        model.score_features(np.full((1, 4), np.nan), np.zeros((1, 2)), np.ones(1))
    with pytest.raises(ValueError, match=r"expects \(n, 4\)"):
        model.score_features(np.zeros((1, 3)), np.zeros((1, 2)), np.ones(1))
    empty = model.score([], [])
    assert set(empty) == {"helpfulness", "conciseness", OVERALL} and all(v.size == 0 for v in empty.values())
    with pytest.raises(ValueError, match="2 prompts but 1"):
        model.score(["a", "b"], ["x"])


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        RewardModel.load(tmp_path)
    model = _model()
    model.save(tmp_path)
    (tmp_path / "config.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="format 'other'"):
        RewardModel.load(tmp_path)


def test_wrong_head_shape_rejected():
    model = _model()
    tensors = dict(model.tensors, head_weight=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="head_weight has shape"):
        RewardModel(config=model.config, tensors=tensors)
