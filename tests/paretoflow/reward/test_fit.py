"""Stage-1 heads, stage-2 gating and calibration on synthetic features (no backbone)."""

import numpy as np
import pytest

from paretoflow.metrics import pairwise_accuracy
from paretoflow.reward import fit


def _planted_pairs(rng, features, weight, n_pairs):
    i = rng.integers(0, len(features), n_pairs)
    j = rng.integers(0, len(features), n_pairs)
    keep = i != j
    i, j = i[keep], j[keep]
    better = features[i] @ weight > features[j] @ weight
    return np.where(better, i, j), np.where(better, j, i)


def test_bradley_terry_head_recovers_planted_linear_preference():
    rng = np.random.default_rng(0)
    dim = 16
    weight = rng.normal(size=dim)
    train_x, test_x = rng.normal(size=(300, dim)), rng.normal(size=(200, dim))
    chosen, rejected = _planted_pairs(rng, train_x, weight, 600)
    test_chosen, test_rejected = _planted_pairs(rng, test_x, weight, 400)
    head = fit.fit_bradley_terry_head(train_x[chosen], train_x[rejected], epochs=200, lr=0.05, seed=0)
    accuracy = pairwise_accuracy(test_x[test_chosen] @ head.weight, test_x[test_rejected] @ head.weight)
    assert accuracy >= 0.95
    cosine = head.weight @ weight / np.linalg.norm(head.weight) / np.linalg.norm(weight)
    assert cosine > 0.9


def test_ridge_picks_smallest_alpha_for_noise_free_signal():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.7
    val_x = rng.normal(size=(50, 5))
    result = fit.select_ridge_alpha(x, y, [1e-3, 1.0, 1e3], val_x, val_x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.7)
    assert result.alpha == 1e-3 and result.selection == "validation"
    assert result.bias == pytest.approx(0.7, abs=1e-3)
    loo = fit.select_ridge_alpha(x, y, [1e-3, 1.0, 1e3])
    assert loo.alpha == 1e-3 and loo.selection == "leave_one_out"


def test_ridge_picks_largest_alpha_for_pure_noise():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 25)), rng.normal(size=30)
    val_x, val_y = rng.normal(size=(200, 25)), rng.normal(size=200)
    result = fit.select_ridge_alpha(x, y, [1e-3, 1.0, 1e4], val_x, val_y)
    assert result.alpha == 1e4
    assert fit.select_ridge_alpha(x, y, [1e-3, 1.0, 1e4]).alpha == 1e4


def test_ridge_rejects_nan_and_empty():
    with pytest.raises(ValueError, match="NaN"):
        fit.select_ridge_alpha(np.array([[np.nan], [1.0]]), np.array([0.0, 1.0]), [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        fit.select_ridge_alpha(np.zeros((0, 2)), np.zeros(0), [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        fit.standardizer(np.zeros((0, 3)))


def test_gating_learns_prompt_dependent_weights_on_the_simplex():
    # Prompt type A (feature +1) prefers objective 0, type B (-1) objective 1.
    rng = np.random.default_rng(3)
    n = 400
    prompt_type = rng.integers(0, 2, n)
    prompt_features = np.where(prompt_type[:, None] == 0, 1.0, -1.0) + 0.1 * rng.normal(size=(n, 2))
    chosen, rejected = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    objective = np.where(prompt_type == 0, 0, 1)
    swap = chosen[np.arange(n), objective] < rejected[np.arange(n), objective]
    chosen[swap], rejected[swap] = rejected[swap].copy(), chosen[swap].copy()
    gating = fit.fit_gating(prompt_features, chosen, rejected, hidden_size=8, epochs=300, lr=0.05, seed=0)
    from paretoflow.reward.model import _relu, _softmax

    t = gating.tensors
    weights = _softmax(_relu(prompt_features @ t["gate_w1"].T + t["gate_b1"]) @ t["gate_w2"].T + t["gate_b2"])
    assert np.all(weights >= 0) and np.allclose(weights.sum(axis=1), 1.0)
    assert weights[prompt_type == 0, 0].mean() > 0.8
    assert weights[prompt_type == 1, 1].mean() > 0.8


def test_temperature_recovers_the_generating_scale():
    rng = np.random.default_rng(4)
    difference = rng.normal(size=20000)
    won = rng.random(20000) < 1 / (1 + np.exp(-2.0 * difference))
    tau = fit.fit_temperature(np.where(won, difference, -difference))
    assert tau == pytest.approx(2.0, rel=0.1)
    assert fit.fit_temperature(np.array([])) == 1.0


def test_full_verbosity_penalty_removes_linear_length_component():
    rng = np.random.default_rng(5)
    length = rng.normal(size=500)
    z = np.column_stack([2.0 * length + rng.normal(size=500), rng.normal(size=500)])
    lam = fit.length_coefficients(z, length, penalty=1.0)
    debiased = z - np.outer(length, lam)
    covariance = ((debiased - debiased.mean(0)) * (length - length.mean())[:, None]).mean(0)
    assert np.allclose(covariance, 0.0, atol=1e-10)
    assert np.all(fit.length_coefficients(z, length, penalty=0.0) == 0.0)
    with pytest.raises(ValueError, match="penalty"):
        fit.length_coefficients(z, length, penalty=2.0)
