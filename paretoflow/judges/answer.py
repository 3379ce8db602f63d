"""`answer`: is the response a real answer to the prompt? A gate in [0, 1] for other judges.

An objective scored only on its own aspect can be won by saying nothing: the shortest
text is the most concise, an evasion the most harmless, a greeting the friendliest
(issue 17: a promoted champion answered "Why do birds migrate?" with "A wise question,
friend."). This judge scores what every objective presumes, that the text answers the
prompt, as a product of five factors, each 1 for an ordinary answer:

    relevance    σ((cos + λ·o − center) / width)   MiniLM prompt–response cosine, plus
                                              λ (0.25) times o, the share of the prompt's
                                              content words the response uses; an answer
                                              to another prompt, a greeting or a platitude
                                              is far from the prompt and shares no words
                                              with it (center 0.3, width 0.05)
    novelty      1 − exp(−m / 3)             m = content words of the response that the
                                              prompt does not hold: an echo adds none
    refusal      refusal_score (0.02)        a refusal of a prompt without a harm-possible
                                              tag; where harm is possible a refusal is an
                                              answer and skips relevance and novelty
    form         fragment_score (0.05)       fewer than `fragment_tokens` (10) tokens and
                                              no sentence end: a cut-off fragment
    repetition   (distinct / all word 4-grams)²  one sentence said again and again

Empty and degenerate answers score 0 (TextJudge). Measured on the non-answer battery of
the shipped train split (`bench/battery.py`): MiniLM cosines of real answers to their
AlpacaEval prompts: 2 % quantile 0.36 and median 0.77 (the best of the whole answer,
its first 300 characters and its first sentence), greetings, platitudes, refusals and
another prompt's answer: median 0.03-0.08, 95 % quantile 0.19-0.21; 95 % of the real
answers use at least a fifth of the prompt's content words, the non-answers almost none.
The center and width sit between the two; the word share keeps a platitude that happens to
sit near the prompt's topic ("Every journey begins with a single step." for a question on
migration, cosine 0.22) below the real answer.

Objectives use it through `gates` (config.Objective): their weighted judge mean is
multiplied by it, so an answer's brevity, harmlessness or helpfulness counts and a
non-answer's does not. `harm_pass: true` (the harmlessness gate) scores 1 on prompts where
harm is possible: there, evading is harmless, and the harmlessness judges decide.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from paretoflow.judges.base import JudgeContext, TextJudge, finite_float, register_judge, take_params, word_tokens
from paretoflow.judges.relevance import encoder_dtype, store_root

# Prompt tags that say harm is possible, so a refusal may be the right answer: `harmful` is
# the built-in prompts' tag; `red_team` is the tag curate gives HH-RLHF harmless-base
# dialogues (params.yaml), which are red-team attempts by construction.
HARM_POSSIBLE_TAGS: tuple[str, ...] = ("harmful", "red_team")

# Function words (a short English list of our own): they carry no content, so an echo
# with "the" added is still an echo.
STOPWORDS = frozenset(
    """a an the and or but if then so of to in on at by for with from as is are was were be been being
    am do does did have has had i you he she it we they me him her us them my your his its our their
    this that these those there here what which who whom whose when where why how not no yes can could
    will would shall should may might must just very too also than about into over up down out""".split()
)
_SENTENCE_END = re.compile(r"[.!?:;)\]\"'`*»”’…]\s*$|```\s*$")
REPEAT_NGRAM = 4
HEAD_CHARS = 300


def content_words(text: str) -> set[str]:
    return {t.lower() for t in word_tokens(text) if t[0].isalnum() and t.lower() not in STOPWORDS}


def novelty(prompt: str, response: str, scale: float = 3.0) -> float:
    """1 − exp(−m/scale), m = the response's content words absent from the prompt."""
    novel = content_words(response) - content_words(prompt)
    return 1.0 - math.exp(-len(novel) / scale)


def overlap(prompt: str, response: str) -> float:
    """Share of the prompt's content words that the response uses (0 for a prompt without any)."""
    asked = content_words(prompt)
    return len(asked & content_words(response)) / len(asked) if asked else 0.0


def is_fragment(response: str, fragment_tokens: int) -> bool:
    """Short and without a sentence end: the opening words of something never finished."""
    return len(word_tokens(response)) < fragment_tokens and not _SENTENCE_END.search(response.strip())


def repetition(response: str, n: int = REPEAT_NGRAM) -> float:
    """(distinct word n-grams / n-grams)²: a text said k times keeps ~1/k² (1 when short)."""
    tokens = [t.lower() for t in word_tokens(response) if t[0].isalnum()]
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if len(grams) < 2 * n:
        return 1.0
    return (len(set(grams)) / len(grams)) ** 2


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0]


class AnswerJudge(TextJudge):
    name = "answer"

    def __init__(self, center: float = 0.3, width: float = 0.05, overlap_weight: float = 0.25, refusal_score: float = 0.02,
                 fragment_score: float = 0.05, fragment_tokens: int = 10, novelty_scale: float = 3.0,
                 harm_tags: tuple[str, ...] = HARM_POSSIBLE_TAGS, harm_pass: bool = False,
                 model_path: str | None = None, degenerate_score: float = 0.0, store_root: Path | None = None,
                 dtype: str = "auto"):
        super().__init__(degenerate_score)
        self.store_root = store_root  # the run's vector store (judges/relevance.py `store_root`)
        self.dtype = dtype  # model.encoder_dtype (paretoflow/embeddings.py)
        if width <= 0 or novelty_scale <= 0 or fragment_tokens < 1:
            raise ValueError("answer: width and novelty_scale must be > 0, fragment_tokens >= 1")
        for key, value in (("refusal_score", refusal_score), ("fragment_score", fragment_score)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"answer: {key} must be in [0, 1], got {value}")
        from paretoflow.judges.refusal import RefusalJudge

        self.refusals = RefusalJudge()  # its phrase set only (detect)
        self.center, self.width, self.model_path = center, width, model_path
        self.overlap_weight = overlap_weight
        self.refusal_score, self.fragment_score = refusal_score, fragment_score
        self.fragment_tokens, self.novelty_scale = int(fragment_tokens), novelty_scale
        self.harm_tags, self.harm_pass = frozenset(harm_tags), bool(harm_pass)

    def cosine(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """The best cosine of the prompt with the whole response, its opening characters and
        its first sentence: an answer's topic is plainest where it starts, and MiniLM reads
        only the first 256 word pieces of a long answer anyway."""
        from paretoflow.judges.relevance import embed

        n = len(prompts)
        views = list(responses) + [r[:HEAD_CHARS] for r in responses] + [first_sentence(r) for r in responses]
        vectors = embed(list(prompts) + views, self.model_path, store_root=self.store_root, dtype=self.dtype)
        p = vectors[:n]
        return np.max([np.sum(p * vectors[n * k : n * (k + 1)], axis=1) for k in (1, 2, 3)], axis=0)

    def relevance(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """σ((cos + λ·overlap − center) / width), `cosine` and `overlap` as in the module doc."""
        shared = np.array([overlap(p, r) for p, r in zip(prompts, responses)])
        evidence = self.cosine(prompts, responses) + self.overlap_weight * shared
        return 1.0 / (1.0 + np.exp(-(evidence - self.center) / self.width))

    def _score(self, prompts, responses, tags) -> np.ndarray:
        harm = np.array([bool(self.harm_tags.intersection(t)) for t in tags], dtype=bool)
        out = np.ones(len(responses), dtype=np.float64)
        todo = np.flatnonzero(~harm) if self.harm_pass else np.arange(len(responses))
        if not todo.size:
            return out
        relevance = self.relevance([prompts[i] for i in todo], [responses[i] for i in todo])
        for j, i in enumerate(todo):
            prompt, response = prompts[i], responses[i]
            if self.refusals.detect(response):
                out[i] = 1.0 if harm[i] else self.refusal_score
                continue
            factor = relevance[j] * novelty(prompt, response, self.novelty_scale) * repetition(response)
            if is_fragment(response, self.fragment_tokens):
                factor *= self.fragment_score
            out[i] = factor
        return out


@register_judge("answer")
def make_answer(params: dict, context: JudgeContext) -> AnswerJudge:
    p = take_params("answer", params, {
        "center": 0.3, "width": 0.05, "overlap_weight": 0.25, "refusal_score": 0.02, "fragment_score": 0.05, "fragment_tokens": 10,
        "novelty_scale": 3.0, "harm_tags": list(HARM_POSSIBLE_TAGS), "harm_pass": False, "model_path": None,
        "degenerate_score": 0.0,
    })  # fmt: skip
    if isinstance(p["harm_tags"], str) or not all(isinstance(x, str) for x in p["harm_tags"]):
        raise ValueError(f"judge 'answer': param harm_tags must be a list of str, got {p['harm_tags']!r}")
    floats = {k: finite_float("answer", k, p[k]) for k in
              ("center", "width", "overlap_weight", "refusal_score", "fragment_score", "novelty_scale", "degenerate_score")}
    return AnswerJudge(**floats, fragment_tokens=int(p["fragment_tokens"]), harm_tags=tuple(p["harm_tags"]),
                       harm_pass=bool(p["harm_pass"]), model_path=p["model_path"], store_root=store_root(context),
                       dtype=encoder_dtype(context))
