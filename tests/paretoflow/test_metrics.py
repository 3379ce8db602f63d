"""Metrics against values worked out by hand."""

import math

import numpy as np
import pytest

from paretoflow.metrics import (
    calibration_bins,
    correlation_matrix,
    expected_calibration_error,
    pairwise_accuracy,
    pairwise_calibration_error,
)


def test_pairwise_accuracy_counts_ties_as_half():
    # win, tie, loss -> (1 + 0.5 + 0) / 3
    assert pairwise_accuracy([3.0, 1.0, 2.0], [1.0, 1.0, 3.0]) == pytest.approx(0.5)
    assert pairwise_accuracy([2.0, 2.0], [1.0, 0.0]) == 1.0
    assert math.isnan(pairwise_accuracy([], []))


def test_ece_two_bins_hand_case():
    # bin [0, .5): p .1, .3 -> conf .2, acc .5, gap .3;  bin [.5, 1]: p .8, .9 -> conf .85, acc 1, gap .15
    # ECE = .5 * .3 + .5 * .15 = .225
    ece = expected_calibration_error([0.1, 0.3, 0.8, 0.9], [0, 1, 1, 1], num_bins=2)
    assert ece == pytest.approx(0.225)


def test_ece_is_zero_when_confidence_matches_frequency():
    probs = [0.75] * 4
    labels = [1, 1, 1, 0]
    assert expected_calibration_error(probs, labels, num_bins=10) == pytest.approx(0.0)


def test_bin_edges_put_one_in_last_bin_and_half_in_upper():
    table = calibration_bins([0.0, 0.5, 1.0], [0, 1, 1], num_bins=2)
    assert table["count"].tolist() == [1.0, 2.0]
    assert table["confidence"][1] == pytest.approx(0.75)


def test_pairwise_ece_enters_each_pair_in_both_orders():
    # Δ = 1, τ = ln 3 -> p = σ(ln 3) = 3/4. Outcomes (.75, 1) and (.25, 0):
    # each bin has gap .25 with weight 1/2 -> ECE .25.
    ece = pairwise_calibration_error([1.0], [0.0], temperature=math.log(3.0), num_bins=10)
    assert ece == pytest.approx(0.25)
    # A tie (p = 1/2): (.5, 1) and (.5, 0) share one bin, conf .5 = acc .5 -> 0.
    assert pairwise_calibration_error([0.0], [0.0]) == pytest.approx(0.0)


def test_spearman_with_ties_hand_case():
    # ranks a = [0, 1.5, 1.5, 3], b = [0, 1, 2, 3]; centred dot 4.5, norms² 4.5 and 5
    # -> 4.5 / sqrt(22.5) = 0.948683
    matrix = correlation_matrix(np.array([[1, 1], [2, 2], [2, 3], [3, 4]], dtype=float))
    assert matrix[0, 1] == pytest.approx(4.5 / math.sqrt(22.5))
    assert matrix[0, 0] == pytest.approx(1.0)


def test_correlation_pairwise_complete_and_sign():
    data = np.array([[1, 4, 1], [2, 3, np.nan], [3, 2, 1], [4, 1, 1]], dtype=float)
    matrix = correlation_matrix(data, method="pearson")
    assert matrix[0, 1] == pytest.approx(-1.0)
    assert math.isnan(matrix[0, 2])  # constant column on shared rows


def test_metrics_reject_non_finite_input():
    with pytest.raises(ValueError, match="non-finite"):
        pairwise_accuracy([np.nan], [0.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([1.5], [1])
