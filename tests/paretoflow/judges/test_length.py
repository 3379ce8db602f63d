import math

import pytest

from paretoflow.config import JudgeRef
from paretoflow.judges import build_judge
from paretoflow.judges.length import band_score


def test_band_score_by_hand():
    assert band_score(0, 5, 30, 30) == 0.0
    assert band_score(2, 5, 30, 30) == pytest.approx(0.4)
    assert band_score(5, 5, 30, 30) == 1.0
    assert band_score(30, 5, 30, 30) == 1.0
    assert band_score(60, 5, 30, 30) == pytest.approx(math.exp(-1))


def test_inside_band_beats_far_outside_and_empty_scores_zero():
    judge = build_judge(JudgeRef(name="length_band", params={"low": 3, "high": 10}))
    inside = "Bread needs flour, water, yeast and salt."  # 9 tokens
    outside = " ".join(f"word{i}" for i in range(60))
    scores = judge.score(["q"] * 4, [inside, outside, "", "   "], [[]] * 4)
    assert scores[0] == 1.0
    assert scores[1] == pytest.approx(math.exp(-(60 - 10) / 10))
    assert scores[2] == scores[3] == 0.0


def test_bad_band_is_rejected():
    with pytest.raises(ValueError, match="low <= high"):
        build_judge(JudgeRef(name="length_band", params={"low": 10, "high": 3}))
    with pytest.raises(ValueError, match="must be a number"):
        build_judge(JudgeRef(name="length_band", params={"low": "a"}))
