"""Stage-1 heads, stage-2 gating and calibration on synthetic features (no backbone)."""

import math

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


def test_preference_loss_hand_case():
    # One pair with x_c − x_r = [1, 0] and w = [2, 0]: softplus(−2) = log(1 + e^−2).
    # One rating x = [1, 0], y = 0.25, c = 0.5: z = 2.5, softplus(2.5) − 0.25·2.5.
    # Source weights 1 (pairs) and 3 (ratings): (1·a + 3·b) / 4.
    a = math.log1p(math.exp(-2.0))
    b = math.log1p(math.exp(2.5)) - 0.625
    value = fit.preference_loss(
        np.array([2.0, 0.0]), {"r": 0.5},
        [fit.PairSource("p", np.array([[1.0, 0.0]]), weight=1.0)],
        [fit.RatingSource("r", np.array([[1.0, 0.0]]), np.array([0.25]), weight=3.0)],
    )  # fmt: skip
    assert value == pytest.approx((a + 3 * b) / 4, rel=1e-12)
    assert a == pytest.approx(0.126928, abs=1e-6) and b == pytest.approx(1.953889, abs=1e-6)


def test_pair_weights_weigh_pairs_inside_a_source():
    # Two pairs, losses softplus(−1) and softplus(1), weights 3:1 → (3·0.313262 + 1.313262) / 4.
    source = fit.PairSource("p", np.array([[1.0], [-1.0]]), pair_weights=np.array([3.0, 1.0]))
    value = fit.preference_loss(np.array([1.0]), {}, [source], [])
    assert value == pytest.approx((3 * math.log1p(math.exp(-1)) + math.log1p(math.exp(1))) / 4, rel=1e-12)


def test_gradient_matches_finite_differences():
    from scipy.optimize import check_grad

    rng = np.random.default_rng(4)
    pairs = [fit.PairSource("p", rng.normal(size=(30, 5)), weight=2.0, pair_weights=rng.uniform(0.5, 2, 30))]
    ratings = [fit.RatingSource("r", rng.normal(size=(20, 5)), rng.uniform(0, 1, 20), weight=0.5)]
    value = lambda t: fit._source_terms(t, 5, pairs, ratings, False)[0]  # noqa: E731
    grad = lambda t: fit._source_terms(t, 5, pairs, ratings, True)[1]  # noqa: E731
    assert check_grad(value, grad, rng.normal(size=6)) < 1e-6


def test_head_recovers_planted_linear_preference():
    rng = np.random.default_rng(0)
    dim = 16
    weight = rng.normal(size=dim)
    train_x, test_x = rng.normal(size=(300, dim)), rng.normal(size=(200, dim))
    chosen, rejected = _planted_pairs(rng, train_x, weight, 600)
    test_chosen, test_rejected = _planted_pairs(rng, test_x, weight, 400)
    head = fit.fit_preference_head([fit.PairSource("p", train_x[chosen] - train_x[rejected])], [], [1e-3, 1e-1])
    accuracy = pairwise_accuracy(test_x[test_chosen] @ head.weight, test_x[test_rejected] @ head.weight)
    assert accuracy >= 0.95
    cosine = head.weight @ weight / np.linalg.norm(head.weight) / np.linalg.norm(weight)
    assert cosine > 0.9 and head.selected_on == "train"


def _two_sources(rng, n_ratings=200, n_pairs=2000):
    """Pairs planted on dims 0-3, ratings on dims 4-7: each source carries its own signal."""
    dim = 8
    w_pairs = np.r_[rng.normal(size=4), np.zeros(4)]
    w_ratings = np.r_[np.zeros(4), rng.normal(size=4)]
    x = rng.normal(size=(600, dim))
    chosen, rejected = _planted_pairs(rng, x, w_pairs, n_pairs)
    rated = rng.normal(size=(n_ratings, dim))
    y = 1 / (1 + np.exp(-2 * rated @ w_ratings))
    return x, chosen, rejected, rated, y, w_pairs, w_ratings


def test_an_objective_with_200_ratings_and_2000_pairs_learns_from_both():
    rng = np.random.default_rng(5)
    x, chosen, rejected, rated, y, w_pairs, w_ratings = _two_sources(rng)
    pairs = fit.PairSource("human_pairs", x[chosen] - x[rejected])
    ratings = fit.RatingSource("judges", rated, y)
    alphas = [1e-3, 1e-2]
    both = fit.fit_preference_head([pairs], [ratings], alphas).weight
    pairs_only = fit.fit_preference_head([pairs], [], alphas).weight
    ratings_only = fit.fit_preference_head([], [ratings], alphas).weight

    test_x = rng.normal(size=(400, 8))
    c, r = _planted_pairs(rng, test_x, w_pairs, 800)
    rc, rr = _planted_pairs(rng, test_x, w_ratings, 800)

    def accuracy(w, cc, rr_):
        return pairwise_accuracy(test_x[cc] @ w, test_x[rr_] @ w)

    # Removing the ratings loses the ratings' direction; removing the pairs loses theirs.
    assert accuracy(both, rc, rr) > accuracy(pairs_only, rc, rr) + 0.15
    assert accuracy(both, c, r) > accuracy(ratings_only, c, r) + 0.15
    # Both sources move the head: it differs from either single-source head.
    assert np.linalg.norm(both[4:]) > 5 * np.linalg.norm(pairs_only[4:])
    assert np.linalg.norm(both[:4]) > 5 * np.linalg.norm(ratings_only[:4])
    # A source's weight moves the balance between them.
    heavy = fit.fit_preference_head([pairs], [fit.RatingSource("judges", rated, y, weight=10.0)], alphas).weight
    assert np.linalg.norm(heavy[4:]) / np.linalg.norm(heavy[:4]) > np.linalg.norm(both[4:]) / np.linalg.norm(both[:4])


def test_alpha_is_picked_on_validation_loss():
    rng = np.random.default_rng(2)
    # Pure noise: the largest penalty (smallest weights) has the lowest validation loss.
    noise = fit.PairSource("p", rng.normal(size=(40, 30)))
    val = fit.PairSource("p", rng.normal(size=(400, 30)))
    head = fit.fit_preference_head([noise], [], [1e-3, 1.0, 1e3], [val])
    assert head.alpha == 1e3 and head.selected_on == "val"
    # A clean planted signal: the smallest penalty wins.
    w = rng.normal(size=5)
    x = rng.normal(size=(300, 5))
    c, r = _planted_pairs(rng, x, w, 600)
    xv = rng.normal(size=(300, 5))
    vc, vr = _planted_pairs(rng, xv, w, 300)
    head = fit.fit_preference_head([fit.PairSource("p", x[c] - x[r])], [], [1e-3, 1.0, 1e3], [fit.PairSource("p", xv[vc] - xv[vr])])
    assert head.alpha == 1e-3


def test_head_inputs_are_checked():
    with pytest.raises(ValueError, match="at least one source"):
        fit.fit_preference_head([], [], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        fit.fit_preference_head([fit.PairSource("p", np.array([[np.nan]]))], [], [1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit.fit_preference_head([], [fit.RatingSource("r", np.ones((2, 1)), np.array([0.5, 2.0]))], [1.0])
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
