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

Paired statistics over prompts (the front and promotion): is a candidate really
different from the base?

Every candidate answers the same held-out prompts, so each prompt gives one paired
difference dᵢ = f(candidate, promptᵢ) − f(base, promptᵢ). Prompt difficulty is shared by
both sides and cancels in dᵢ, which is why a paired interval is far narrower than two
overlapping per-candidate intervals (the "cloud of error bars" of issue 10).

- `paired_difference`: mean(d) with a percentile bootstrap interval that resamples
  prompts and keeps each prompt's pair together (`scipy.stats.bootstrap`, `paired=True`).
  Percentile rather than scipy's default BCa: judge scores are often identical for both
  sides on most prompts, and BCa is undefined on such degenerate resamples (NaN); the
  percentile interval of a constant difference is that constant.
- `prompt_bootstrap`: the same prompt resampling for any statistic of the candidates'
  mean scores (the hypervolume of the front, the HV ratio of two fronts): resample prompt
  indices, recompute every candidate's means on them, recompute the statistic.
- `minimum_detectable_difference`: the smallest true mean difference a paired test at
  two-sided level α detects with the given power, normal approximation:

      MDE = (z₁₋α/₂ + z_power) · SD(d) / √n

  with SD(d) the per-prompt standard deviation of the paired differences and n the
  number of prompts (α = 0.05, power = 0.8: MDE ≈ 2.80 · SD(d)/√n; Lehr's rule). Its
  inverse `prompts_needed` gives n for a target MDE.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


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


# ------------------------------------------------------------------ paired statistics over prompts




@dataclass(frozen=True)
class PairedInterval:
    """Mean paired difference, its bootstrap interval, SD of the differences, n prompts."""

    diff: float
    ci_low: float
    ci_high: float
    sd: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low > 0.0 or self.ci_high < 0.0


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def paired_difference(
    candidate: Sequence[float],
    base: Sequence[float],
    *,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedInterval:
    """mean(candidate − base) over prompts with a paired percentile bootstrap interval."""
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(base, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be two 1-D arrays of one length, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("paired difference of an empty sample")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("paired scores must be finite")
    difference = a - b
    sd = float(difference.std(ddof=1)) if a.size > 1 else 0.0
    if a.size == 1 or sd == 0.0:
        # One prompt, or the same difference on every prompt: every resample has that mean.
        mean = float(difference.mean())
        return PairedInterval(mean, mean, mean, sd, int(a.size))
    result = stats.bootstrap(
        (a, b), lambda x, y, axis: np.mean(x - y, axis=axis), paired=True, vectorized=True,
        n_resamples=n_resamples, confidence_level=level, method="percentile", rng=_rng(seed),
    )
    low, high = result.confidence_interval
    return PairedInterval(float(difference.mean()), float(low), float(high), sd, int(a.size))


def mean_interval(
    values: Sequence[float], *, n_resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of one candidate's mean over prompts."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"bootstrap of an empty sample (shape {array.shape})")
    if not 0.0 < level < 1.0:
        raise ValueError(f"CI level must be in (0, 1), got {level}")
    mean = float(array.mean())
    if array.size == 1 or np.all(array == array[0]):
        return mean, mean, mean
    result = stats.bootstrap((array,), np.mean, vectorized=True, n_resamples=n_resamples,
                             confidence_level=level, method="percentile", rng=_rng(seed))
    low, high = result.confidence_interval
    return mean, float(low), float(high)


def prompt_bootstrap(
    per_prompt: np.ndarray,
    statistic: Callable[[np.ndarray], float | np.ndarray],
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value, low, high) of `statistic(means)` under resampling of prompts.

    `per_prompt` is (n_candidates, n_prompts, n_objectives); `statistic` receives the
    (n_candidates, n_objectives) means over a resample of prompt indices (the same
    prompts for every candidate) and returns a number or a vector of numbers.
    """
    scores = np.asarray(per_prompt, dtype=np.float64)
    if scores.ndim != 3 or scores.shape[1] == 0:
        raise ValueError(f"per_prompt must be (n_candidates, n_prompts, n_objectives), got {scores.shape}")
    value = np.asarray(statistic(scores.mean(axis=1)), dtype=np.float64)
    if scores.shape[1] == 1:
        return value, value.copy(), value.copy()

    def on_indices(indices: np.ndarray) -> np.ndarray:
        return np.asarray(statistic(scores[:, indices.astype(int), :].mean(axis=1)), dtype=np.float64)

    # Degenerate resamples (every one the same value) make scipy warn; the interval is
    # then that value, which the percentile method returns.
    with np.errstate(invalid="ignore"):
        result = stats.bootstrap(
            (np.arange(scores.shape[1]),), on_indices, vectorized=False, n_resamples=n_resamples,
            confidence_level=level, method="percentile", rng=_rng(seed),
        )
    low, high = result.confidence_interval
    return value, np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)


def _z_sum(alpha: float, power: float) -> float:
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must lie in (0, 1), got alpha={alpha}, power={power}")
    return float(stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power))


def minimum_detectable_difference(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """MDE = (z₁₋α/₂ + z_power) · sd / √n (see module docstring)."""
    if n < 1:
        raise ValueError(f"need at least one prompt, got n={n}")
    if sd < 0 or not math.isfinite(sd):
        raise ValueError(f"sd must be finite and >= 0, got {sd}")
    return _z_sum(alpha, power) * sd / math.sqrt(n)


def prompts_needed(sd: float, mde: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Smallest n with minimum_detectable_difference(sd, n) <= mde."""
    if mde <= 0:
        raise ValueError(f"target MDE must be > 0, got {mde}")
    return max(1, math.ceil((_z_sum(alpha, power) * sd / mde) ** 2))
