"""Evaluation metrics for reward models: pure numpy functions, tested on hand cases.

- `pairwise_accuracy`: fraction of pairs where the chosen response scores higher
  (a tie counts one half, so a constant scorer gets exactly 0.5 rather than 0 or 1).
- `expected_calibration_error`: ECE with equal-width confidence bins (Guo et al. 2017,
  "On Calibration of Modern Neural Networks", eq. 3): Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|.
- `pairwise_calibration_error`: ECE of pairwise probabilities p = σ(r_c − r_r). Every pair
  is entered in both orders, (p, label 1) and (1 − p, label 0): with "chosen" always
  first the labels would all be 1 and ECE would only measure how far p is from 1.
- `correlation_matrix`: Pearson or Spearman correlation between objective columns over
  pairwise-complete rows (the "conflict matrix": negative entries = objectives that
  trade off).
"""

from __future__ import annotations

import numpy as np


def _as_1d(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        bad = np.flatnonzero(~np.isfinite(array))[:5].tolist()
        raise ValueError(f"{name} must be finite; non-finite at positions {bad}")
    return array


def pairwise_accuracy(chosen_scores, rejected_scores) -> float:
    """Fraction of pairs with chosen > rejected; ties count 0.5. NaN for no pairs."""
    chosen = _as_1d("chosen_scores", chosen_scores)
    rejected = _as_1d("rejected_scores", rejected_scores)
    if chosen.shape != rejected.shape:
        raise ValueError(f"chosen and rejected differ in length: {chosen.size} vs {rejected.size}")
    if chosen.size == 0:
        return float("nan")
    wins = (chosen > rejected).astype(np.float64) + 0.5 * (chosen == rejected)
    return float(wins.mean())


def calibration_bins(probabilities, labels, num_bins: int = 10) -> dict[str, np.ndarray]:
    """Per-bin counts, mean confidence and accuracy over equal-width bins on [0, 1].

    Bin b holds probabilities in [b/num_bins, (b+1)/num_bins); the last bin is closed so
    p = 1 lands in it. Empty bins have count 0 and NaN confidence/accuracy.
    """
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    probs = _as_1d("probabilities", probabilities)
    labs = _as_1d("labels", labels)
    if probs.shape != labs.shape:
        raise ValueError(f"probabilities and labels differ in length: {probs.size} vs {labs.size}")
    if np.any((probs < 0) | (probs > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    index = np.minimum((probs * num_bins).astype(np.int64), num_bins - 1)
    counts = np.bincount(index, minlength=num_bins).astype(np.float64)
    confidence_sum = np.bincount(index, weights=probs, minlength=num_bins)
    label_sum = np.bincount(index, weights=labs, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(counts > 0, confidence_sum / counts, np.nan)
        accuracy = np.where(counts > 0, label_sum / counts, np.nan)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    return {"edges": edges, "count": counts, "confidence": confidence, "accuracy": accuracy}


def expected_calibration_error(probabilities, labels, num_bins: int = 10) -> float:
    """ECE = Σ_b (n_b / n) · |accuracy_b − confidence_b| over equal-width bins. NaN if empty."""
    bins = calibration_bins(probabilities, labels, num_bins)
    total = bins["count"].sum()
    if total == 0:
        return float("nan")
    filled = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    return float(np.sum(bins["count"][filled] / total * gaps))


def sigmoid(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    # Split by sign so exp never overflows.
    out = np.empty_like(x)
    positive = x >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-x[positive]))
    exp_x = np.exp(x[~positive])
    out[~positive] = exp_x / (1.0 + exp_x)
    return out


def symmetric_pairwise_outcomes(chosen_scores, rejected_scores, temperature: float = 1.0):
    """(probabilities, labels) with each pair in both orders: (σ(τΔ), 1) and (1 − σ(τΔ), 0)."""
    chosen = _as_1d("chosen_scores", chosen_scores)
    rejected = _as_1d("rejected_scores", rejected_scores)
    if chosen.shape != rejected.shape:
        raise ValueError(f"chosen and rejected differ in length: {chosen.size} vs {rejected.size}")
    p = sigmoid(temperature * (chosen - rejected))
    probabilities = np.concatenate([p, 1.0 - p])
    labels = np.concatenate([np.ones_like(p), np.zeros_like(p)])
    return probabilities, labels


def pairwise_calibration_error(
    chosen_scores, rejected_scores, temperature: float = 1.0, num_bins: int = 10
) -> float:
    """ECE of P(chosen ≻ rejected) = σ(τ·(r_c − r_r)), each pair entered in both orders."""
    probabilities, labels = symmetric_pairwise_outcomes(chosen_scores, rejected_scores, temperature)
    return expected_calibration_error(probabilities, labels, num_bins)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), 0-based."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(values.size, dtype=np.float64)
    start = 0
    while start < values.size:
        end = start
        while end + 1 < values.size and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0
        start = end + 1
    return ranks


def correlation_matrix(columns, method: str = "spearman") -> np.ndarray:
    """K×K correlation between the K columns of an (n, K) array, pairwise-complete rows.

    NaN marks a missing value; an entry is NaN when fewer than 3 shared rows remain or a
    column is constant on them. The diagonal is 1 wherever the column varies.
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    data = np.asarray(columns, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"columns must be a 2-D (rows, objectives) array, got shape {data.shape}")
    k = data.shape[1]
    out = np.full((k, k), np.nan)
    for i in range(k):
        for j in range(i, k):
            shared = np.isfinite(data[:, i]) & np.isfinite(data[:, j])
            if shared.sum() < 3:
                continue
            a, b = data[shared, i], data[shared, j]
            if method == "spearman":
                a, b = _ranks(a), _ranks(b)
            a, b = a - a.mean(), b - b.mean()
            denominator = np.sqrt((a * a).sum() * (b * b).sum())
            if denominator == 0:
                continue
            out[i, j] = out[j, i] = float((a * b).sum() / denominator)
    return out
