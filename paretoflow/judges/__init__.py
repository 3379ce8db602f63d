"""Judges: offline scorers of (prompt, response) for one aspect each, mixed per objective.

    from paretoflow.judges import build_mixture
    mixture = build_mixture(params, root)
    values = mixture.score(prompts, responses, tags)   # {objective: (n,) array on its scale}

Built-in judges (one module each): `answer` (is it a real answer: the gate every objective
multiplies by, see `mixture`), `length_band`, `relevance` (MiniLM cosine), `tone`
(VADER), `profanity` (alt-profanity-check), `refusal` (phrase set, harmful-tag aware),
`llm` (OpenAI-compatible endpoint). Every judge returns float64 in [0, 1], higher =
better, and scores empty/degenerate answers 0 by default (see `base`). Register more with
`@register_judge("name")`; the learned reward model registers from `paretoflow.reward.judge`
(a plugin module imported on first use: reward imports judges, never the reverse).

CLI: `paretoflow judge --prompt P --response R [--tags harmful]`,
`paretoflow judge --file data/pairs` (a folder of canonical tables), or
`paretoflow judge --pairs FILE` (how often each objective prefers the chosen answer;
`battery` builds the non-answer battery that measures it).
"""

from paretoflow.judges.base import (
    MAX_TEXT_CHARS,
    Judge,
    JudgeContext,
    TextJudge,
    build_judge,
    check_inputs,
    check_scores,
    is_degenerate,
    register_judge,
    registered_judges,
    word_tokens,
)

# Built-in judges register themselves on import.
from paretoflow.judges import answer, length, llm, profanity, refusal, relevance, tone  # noqa: E402,F401
from paretoflow.judges.mixture import (  # noqa: E402
    JudgeMixture,
    better_is_higher,
    build_mixture,
    goodness,
    to_scale,
)

__all__ = [
    "MAX_TEXT_CHARS",
    "Judge",
    "JudgeContext",
    "JudgeMixture",
    "TextJudge",
    "better_is_higher",
    "build_judge",
    "build_mixture",
    "check_inputs",
    "check_scores",
    "goodness",
    "is_degenerate",
    "register_judge",
    "registered_judges",
    "to_scale",
    "word_tokens",
]
