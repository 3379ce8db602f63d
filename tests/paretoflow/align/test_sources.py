"""The source mixture: proportions, determinism, the single-source case."""

from __future__ import annotations

import pytest

from paretoflow.align.sources import MixtureStream, PairStream


def test_single_source_is_exactly_the_pair_stream():
    assert MixtureStream([7], [1.0], seed=3).take(0, 30) == PairStream(7, seed=3).take(0, 30)


def test_mixture_follows_weights_in_every_window_and_stays_in_each_source():
    sizes, weights = [5, 0, 3], [3.0, 1.0, 1.0]  # the empty source never appears
    stream = MixtureStream(sizes, weights, seed=0)
    picks = stream.take(0, 40)
    first = [i for i in picks if i < 5]
    third = [i for i in picks if i >= 5]
    assert len(first) == 30 and len(third) == 10 and all(5 <= i < 8 for i in third)
    for start in range(0, 40, 4):  # smooth round-robin: 3 of every 4 positions from source 0
        assert sum(i < 5 for i in picks[start:start + 4]) == 3
    # inside a source, pairs follow that source's own epochs: each epoch visits every pair once
    assert sorted(first[:5]) == list(range(5)) and sorted(third[:3]) == [5, 6, 7]


def test_mixture_is_a_pure_function_of_seed_and_position():
    a, b = MixtureStream([4, 6], [1.0, 2.0], seed=1), MixtureStream([4, 6], [1.0, 2.0], seed=1)
    assert a.take(10, 8) == b.take(0, 18)[10:]  # a position does not depend on what was read before
    assert a.take(0, 12) != MixtureStream([4, 6], [1.0, 2.0], seed=2).take(0, 12)


def test_mixture_without_any_usable_source_is_an_error():
    with pytest.raises(ValueError, match="no source has both pairs and weight"):
        MixtureStream([0, 3], [1.0, 0.0], seed=0)
