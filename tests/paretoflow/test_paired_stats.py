"""Paired statistics over prompts (paretoflow.metrics) against cases worked out by hand."""

import math

import numpy as np
import pytest

from paretoflow.metrics import (
    mean_interval,
    minimum_detectable_difference,
    paired_difference,
    prompt_bootstrap,
    prompts_needed,
)
from paretoflow.pareto import hypervolume


def test_paired_interval_hand_case():
    # Differences d = (0, 0, 0.3): a resample of 3 prompts holds k copies of 0.3, k ~ Bin(3, 1/3),
    # so its mean is 0.1·k with P(k) = 8/27, 12/27, 6/27, 1/27 (cumulative .296, .741, .963, 1).
    # 95% percentile interval: 2.5% quantile 0, 97.5% quantile 0.3 (0.963 < 0.975).
    # 90% interval: 5% quantile 0, 95% quantile 0.2 (0.963 >= 0.95).
    candidate, base = [0.5, 0.9, 0.4], [0.5, 0.9, 0.1]
    wide = paired_difference(candidate, base, n_resamples=20000, level=0.95, seed=0)
    assert (wide.diff, wide.ci_low, wide.ci_high) == pytest.approx((0.1, 0.0, 0.3))
    narrow = paired_difference(candidate, base, n_resamples=20000, level=0.90, seed=0)
    assert (narrow.ci_low, narrow.ci_high) == pytest.approx((0.0, 0.2))
    assert wide.sd == pytest.approx(math.sqrt(0.03)) and wide.n == 3   # SD of (0, 0, .3), ddof 1


def test_pairing_removes_shared_prompt_difficulty():
    """Scores that vary a lot across prompts but move by +0.1 on every one: the paired interval
    is the point 0.1, while separate per-candidate intervals overlap widely."""
    base = np.array([0.1, 0.9, 0.3, 0.7, 0.5, 0.2, 0.8, 0.4])
    candidate = base + 0.1
    paired = paired_difference(candidate, base, n_resamples=2000)
    assert (paired.diff, paired.ci_low, paired.ci_high) == pytest.approx((0.1, 0.1, 0.1))
    assert paired.excludes_zero and paired.sd == pytest.approx(0.0, abs=1e-12)
    _, base_low, base_high = mean_interval(base, n_resamples=2000)
    _, cand_low, _ = mean_interval(candidate, n_resamples=2000)
    assert cand_low < base_high   # unpaired intervals overlap: that view could not tell them apart


def test_paired_interval_is_reproducible_and_checks_input():
    rng = np.random.default_rng(3)
    a, b = rng.random(30), rng.random(30)
    assert paired_difference(a, b, seed=4) == paired_difference(a, b, seed=4)
    with pytest.raises(ValueError, match="one length"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="empty"):
        paired_difference([], [])
    with pytest.raises(ValueError, match="finite"):
        paired_difference([1.0, float("nan")], [1.0, 1.0])


def test_paired_interval_matches_normal_theory_on_many_prompts():
    rng = np.random.default_rng(0)
    d = rng.normal(0.05, 0.2, size=400)
    paired = paired_difference(d, np.zeros_like(d), n_resamples=4000)
    half = 1.96 * d.std(ddof=1) / math.sqrt(d.size)
    assert paired.ci_low == pytest.approx(d.mean() - half, abs=0.004)
    assert paired.ci_high == pytest.approx(d.mean() + half, abs=0.004)


def test_mean_interval_by_hand():
    # Sample (0, 1): resampled means 0, .5, 1 with probabilities 1/4, 1/2, 1/4.
    assert mean_interval([0.0, 1.0], n_resamples=4000, level=0.95) == (0.5, 0.0, 1.0)
    assert mean_interval([0.0, 1.0], n_resamples=4000, level=0.4)[1:] == (0.5, 0.5)
    assert mean_interval([3.0, 3.0, 3.0]) == (3.0, 3.0, 3.0)


def test_hypervolume_interval_by_hand():
    # One candidate, two objectives, two prompts scoring (0.2, 0.4) and (0.6, 0.8); reference 0.
    # HV of the mean point is m1·m2. Resamples: both prompt 1 → 0.08 (p 1/4), both prompt 2 →
    # 0.48 (p 1/4), one of each → 0.4·0.6 = 0.24 (p 1/2). 95% interval [0.08, 0.48].
    scores = np.array([[[0.2, 0.4], [0.6, 0.8]]])
    value, low, high = prompt_bootstrap(scores, lambda means: hypervolume(means, [0.0, 0.0]),
                                        n_resamples=4000, level=0.95, seed=0)
    assert float(value) == pytest.approx(0.24)
    assert (float(low), float(high)) == pytest.approx((0.08, 0.48))
    # The same prompts are drawn for every candidate: two identical candidates stay identical.
    twins = np.concatenate([scores, scores])
    _, low2, high2 = prompt_bootstrap(twins, lambda m: m[0, 0] - m[1, 0], n_resamples=500)
    assert float(low2) == float(high2) == 0.0


def test_minimum_detectable_difference_by_hand():
    # (z_.975 + z_.8) = 1.959964 + 0.841621 = 2.801585; sd 0.25, n 100 → 2.801585 · 0.025
    assert minimum_detectable_difference(0.25, 100) == pytest.approx(0.0700396, abs=1e-6)
    # Lehr: n = (2.8016 · 0.25 / 0.05)^2 = 196.2 → 197
    assert prompts_needed(0.25, 0.05) == 197
    assert minimum_detectable_difference(0.25, 197) <= 0.05 < minimum_detectable_difference(0.25, 196)
    assert minimum_detectable_difference(0.0, 10) == 0.0
    with pytest.raises(ValueError, match="alpha and power"):
        minimum_detectable_difference(0.2, 10, power=1.0)
