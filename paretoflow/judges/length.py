"""`length_band`: 1 inside a target length band, decaying outside it.

Length counts model-independent word/punctuation tokens (`base.word_tokens`):

    score(n) = n / low                       if n < low
             = 1                             if low <= n <= high
             = exp(-(n - high) / decay)      if n > high     (decay defaults to high)

so one band-top beyond the band costs a factor e. With `floor` f > 0 the score is
f + (1 − f)·score(n): any answer keeps f, so the conciseness of a long real answer stays
above a short non-answer's once both pass the `answer` gate (a gated objective, issue 17). Empty and degenerate answers score
`degenerate_score` (0): docs/measurements.md: measured DPO on pure "shorter is better" pairs collapsing
the default policy to an immediate end-of-sequence, so shortness alone never wins.
"""

from __future__ import annotations

import math

import numpy as np

from paretoflow.judges.base import JudgeContext, TextJudge, finite_float, register_judge, take_params, word_tokens


def band_score(n_tokens: int, low: float, high: float, decay: float) -> float:
    """The piecewise band score above, for one token count."""
    if n_tokens < low:
        return n_tokens / low
    if n_tokens <= high:
        return 1.0
    return math.exp(-(n_tokens - high) / decay)


class LengthBandJudge(TextJudge):
    name = "length_band"

    def __init__(self, low: float, high: float, decay: float | None = None, degenerate_score: float = 0.0,
                 floor: float = 0.0):
        super().__init__(degenerate_score)
        if not 0.0 <= floor < 1.0:
            raise ValueError(f"length_band: floor must be in [0, 1), got {floor}")
        self.floor = float(floor)
        if not (0 < low <= high):
            raise ValueError(f"length_band: need 0 < low <= high, got low={low} high={high}")
        decay = float(high) if decay is None else decay
        if decay <= 0:
            raise ValueError(f"length_band: decay must be > 0, got {decay}")
        self.low, self.high, self.decay = float(low), float(high), float(decay)

    def _score(self, prompts, responses, tags) -> np.ndarray:
        band = np.array(
            [band_score(len(word_tokens(r)), self.low, self.high, self.decay) for r in responses],
            dtype=np.float64,
        )
        return self.floor + (1.0 - self.floor) * band


@register_judge("length_band")
def make_length_band(params: dict, context: JudgeContext) -> LengthBandJudge:
    # Defaults: the band params.yaml declares for the CPU default run (SmolLM2 answers run
    # 40-96 tokens, so 5-30 asks for visibly shorter answers).
    p = take_params("length_band", params, {"low": 5, "high": 30, "decay": None, "degenerate_score": 0.0,
                                                   "floor": 0.0})
    return LengthBandJudge(
        low=finite_float("length_band", "low", p["low"]),
        high=finite_float("length_band", "high", p["high"]),
        decay=None if p["decay"] is None else finite_float("length_band", "decay", p["decay"]),
        degenerate_score=finite_float("length_band", "degenerate_score", p["degenerate_score"]),
        floor=finite_float("length_band", "floor", p["floor"]),
    )
