"""`tone`: VADER sentiment compound score mapped from [-1, 1] to [0, 1] ((c + 1) / 2).

VADER (Hutto & Gilbert 2014, `vaderSentiment`) is a lexicon and rule model: offline,
deterministic, ~microseconds per text. Neutral text scores 0.5, warm text more, hostile
text less. Empty or degenerate answers score `degenerate_score` (0).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from paretoflow.judges.base import JudgeContext, TextJudge, finite_float, register_judge, take_params


@lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


class ToneJudge(TextJudge):
    name = "tone"

    def _score(self, prompts, responses, tags) -> np.ndarray:
        analyzer = _analyzer()
        compound = np.array([analyzer.polarity_scores(r)["compound"] for r in responses], dtype=np.float64)
        return np.clip((compound + 1.0) / 2.0, 0.0, 1.0)


@register_judge("tone")
def make_tone(params: dict, context: JudgeContext) -> ToneJudge:
    p = take_params("tone", params, {"degenerate_score": 0.0})
    return ToneJudge(degenerate_score=finite_float("tone", "degenerate_score", p["degenerate_score"]))
