"""RewardModel inference on hand-built weights: formula, simplex, round trip, errors."""

import math

import numpy as np
import pytest

from paretoflow.reward.model import MODEL_FORMAT, OVERALL, RewardModel, RewardModelConfig, text_features

TEXTS = ["a b", "one two three", "x", "- item\n- item two", "## Title\n**bold** text", "w " * 9, "end"]


def _model(rng=None, hidden=3):
    rng = rng or np.random.default_rng(0)
    d, dp, k = 4, 2, 2
    config = {
        "format": MODEL_FORMAT,
        "objectives": [{"name": "helpfulness", "sources": {"h": 1.0}}, {"name": "conciseness"}],
        "backbone": {"kind": "minilm"},
        "backbone_fingerprint": "x",
        "backbone_feature_dim": d,
        "feature_dim": d,
        "prompt_feature_dim": dp,
        "gating_hidden_size": hidden,
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
    scores = model.score_features(np.array([[2.0, 4.0, 9, 9]]), np.zeros((1, 2)), ["ten words " * 5])
    assert scores["helpfulness"][0] == pytest.approx(2.0)
    assert scores["conciseness"][0] == pytest.approx(4.0)
    assert scores[OVERALL][0] == pytest.approx(2.0 * (0.25 * 2.0 + 0.75 * 4.0))


def test_gate_rows_are_on_the_simplex():
    weights = _model().gate(np.random.default_rng(1).normal(size=(50, 2)) * 10)
    assert np.all(weights >= 0) and np.allclose(weights.sum(axis=1), 1.0)


def test_save_load_round_trip_gives_identical_scores(tmp_path):
    model = _model()
    rng = np.random.default_rng(2)
    pair, prompt = rng.normal(size=(7, 4)), rng.normal(size=(7, 2))
    before = model.score_features(pair, prompt, TEXTS)
    loaded = RewardModel.load(model.save(tmp_path / "rm"))
    after = loaded.score_features(pair, prompt, TEXTS)
    assert isinstance(loaded.config, RewardModelConfig)
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
        model.score_features(np.full((1, 4), np.nan), np.zeros((1, 2)), ["a"])
    with pytest.raises(ValueError, match=r"expects \(n, 4\)"):
        model.score_features(np.zeros((1, 3)), np.zeros((1, 2)), ["a"])
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
    (tmp_path / "config.json").write_text('{"format": "%s", "objectives": []}' % MODEL_FORMAT)
    with pytest.raises(ValueError, match="invalid reward model config"):
        RewardModel.load(tmp_path)


def test_wrong_head_shape_rejected():
    model = _model()
    tensors = dict(model.tensors, head_weight=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="head_weight has shape"):
        RewardModel(config=model.config, tensors=tensors)


def test_text_features_hand_counts():
    values = text_features(["Intro line\n- one\n- two\n\n## Head\nSome **bold** and **more**.", ""])
    # words: Intro line - one - two ## Head Some **bold** and **more**. = 12; lines 5; items 2;
    # emphasis: 1 header + 2 bold spans = 3
    assert values[0] == pytest.approx(np.log1p([12, 5, 2, 3]))
    assert values[1] == pytest.approx(np.zeros(4))


def test_text_features_enter_the_head_after_backbone_features():
    model = _model()
    model.config.text_features = ["log_words", "log_lines", "log_list_items", "log_emphasis"]
    model.config.feature_dim = 8
    t = model.tensors
    t["feature_mean"], t["feature_scale"] = np.zeros(8), np.ones(8)
    t["head_weight"] = np.zeros((2, 8))
    t["head_weight"][0, 4] = 1.0  # helpfulness = log(1 + words)
    t["head_bias"] = np.zeros(2)
    scores = model.score_features(np.zeros((2, 4)), np.zeros((2, 2)), ["a b c", "a"], objectives=["helpfulness"])
    assert scores["helpfulness"] == pytest.approx(np.log1p([3.0, 1.0]))


def test_probability_is_calibrated_logistic_around_the_training_mean():
    model = _model()
    model.tensors["head_mean"] = np.array([1.0, 0.0])
    p = model.probability("helpfulness", np.array([1.0, 2.0]))
    assert p == pytest.approx([0.5, 1 / (1 + math.exp(-2.0))])  # τ = 2
