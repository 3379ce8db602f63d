"""Judge contract, input checks and the judge registry.

A judge scores (prompt, response, tags) triples for one aspect of quality and returns a
float64 array in [0, 1], higher = better for that aspect. Built-in judges subclass
`TextJudge`, which does the shared work once:

- input checks: prompts and responses must be `str`; anything else (None, a number)
  raises TypeError naming the index, so a broken row never turns into a silent score;
- truncation: texts longer than `MAX_TEXT_CHARS` characters keep their first
  `MAX_TEXT_CHARS` characters (documented rule; far above any `max_new_tokens` we sample,
  and it bounds regex and encoder cost on pathological inputs);
- anti-gaming: empty, whitespace-only and degenerate responses (no letters or digits, or
  one token looping) get `degenerate_score` (0 by default) without reaching the judge.
  docs/measurements.md: measured a policy collapsing to empty answers within minutes under a pure
  shortness reward; every judge refusing to reward such answers closes that door.

Other packages add judges with `@register_judge("name")` on a factory
`(params: dict, context: JudgeContext) -> Judge`. `build_judge` imports the known plugin
modules (`PLUGIN_MODULES`) when a name is not registered yet, and also accepts a
qualified name `"some.module:judge_name"`.
"""

from __future__ import annotations

import importlib
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from paretoflow.config import JudgeRef, Params

# 20,000 characters ≈ 4-5k tokens: 40× the largest GPU-profile max_new_tokens.
MAX_TEXT_CHARS = 20_000
# Degenerate-loop test window and threshold: natural English keeps a type/token ratio well
# above 0.4 over its first 256 tokens; "ha ha ha ..." or a 3-word loop repeated 5+ times
# falls below 0.25.
LOOP_WINDOW_TOKENS = 256
LOOP_MIN_TOKENS = 8
LOOP_MAX_DISTINCT_RATIO = 0.25

_TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def word_tokens(text: str) -> list[str]:
    """Model-independent tokens: runs of word characters, and each punctuation mark.

    Judges must not depend on the policy's tokenizer (the reward model and front
    evaluation compare different policies on one scale), so lengths count these tokens.
    """
    return _TOKEN_RE.findall(text)


def is_degenerate(text: str) -> bool:
    """Empty, whitespace-only, no letter or digit, one token repeated, or a tight loop."""
    if not text.strip():
        return True
    if not any(ch.isalnum() for ch in text):
        return True
    tokens = [t.lower() for t in word_tokens(text)[:LOOP_WINDOW_TOKENS]]
    if len(tokens) >= 3 and len(set(tokens)) == 1:
        return True
    if len(tokens) >= LOOP_MIN_TOKENS and len(set(tokens)) / len(tokens) < LOOP_MAX_DISTINCT_RATIO:
        return True
    return False


def _check_texts(kind: str, values: Sequence[Any]) -> list[str]:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{kind}s must be a sequence of str, got a single {type(values).__name__}")
    out = []
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise TypeError(f"{kind} {i} is {type(v).__name__} ({v!r:.60}), expected str")
        out.append(v[:MAX_TEXT_CHARS])
    return out


def check_inputs(
    prompts: Sequence[str],
    responses: Sequence[str],
    tags: Sequence[Sequence[str]] | None = None,
) -> tuple[list[str], list[str], list[tuple[str, ...]]]:
    """Validate and normalise judge inputs; truncate long texts (see module docstring)."""
    prompts_ = _check_texts("prompt", prompts)
    responses_ = _check_texts("response", responses)
    if len(prompts_) != len(responses_):
        raise ValueError(f"{len(prompts_)} prompts but {len(responses_)} responses")
    if tags is None:
        tags_: list[tuple[str, ...]] = [()] * len(prompts_)
    else:
        if isinstance(tags, str):
            raise TypeError("tags must be one sequence of str per prompt, got a single str")
        tags_ = []
        for i, t in enumerate(tags):
            if t is None:
                tags_.append(())
                continue
            if isinstance(t, str):
                raise TypeError(f"tags {i} is a str ({t!r:.60}); expected a list of str")
            bad = [x for x in t if not isinstance(x, str)]
            if bad:
                raise TypeError(f"tags {i} holds non-str {bad[0]!r}")
            tags_.append(tuple(t))
        if len(tags_) != len(prompts_):
            raise ValueError(f"{len(prompts_)} prompts but {len(tags_)} tag lists")
    return prompts_, responses_, tags_


def check_scores(judge_name: str, values: Any, n: int) -> np.ndarray:
    """The output contract: shape (n,), float64, finite, in [0, 1]; clear error otherwise."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"judge {judge_name!r} returned shape {arr.shape}, expected ({n},)")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0.0) | (arr > 1.0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"judge {judge_name!r} returned {arr[i]!r} at index {i} "
            f"({bad.size} bad values); scores must be finite and in [0, 1]"
        )
    return arr


@runtime_checkable
class Judge(Protocol):
    """Anything with a `name` and this `score` method is a judge."""

    name: str

    def score(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        tags: Sequence[Sequence[str]],
    ) -> np.ndarray:
        """Shape (n,), float64, finite, in [0, 1]; higher = better for the judge's aspect."""
        ...


class TextJudge(ABC):
    """Base for built-in judges: input checks, truncation, degenerate answers → fixed score."""

    name: str = "text_judge"

    def __init__(self, degenerate_score: float = 0.0) -> None:
        if not (0.0 <= float(degenerate_score) <= 1.0):
            raise ValueError(f"{self.name}: degenerate_score must be in [0, 1], got {degenerate_score}")
        self.degenerate_score = float(degenerate_score)

    def score(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        tags: Sequence[Sequence[str]] | None = None,
    ) -> np.ndarray:
        prompts_, responses_, tags_ = check_inputs(prompts, responses, tags)
        n = len(responses_)
        out = np.full(n, self.degenerate_score, dtype=np.float64)
        keep = [i for i, r in enumerate(responses_) if not is_degenerate(r)]
        if keep:
            scored = self._score(
                [prompts_[i] for i in keep], [responses_[i] for i in keep], [tags_[i] for i in keep]
            )
            out[keep] = check_scores(self.name, scored, len(keep))
        return out

    @abstractmethod
    def _score(
        self, prompts: list[str], responses: list[str], tags: list[tuple[str, ...]]
    ) -> np.ndarray:
        """Score non-degenerate, validated, truncated inputs."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


@dataclass
class JudgeContext:
    """What a judge factory may need beyond its params: the repo root and the full params
    (the learned reward-model judge finds `artifacts/reward` through them)."""

    root: Path = field(default_factory=lambda: Path("."))
    params: Params | None = None


JudgeFactory = Callable[[dict[str, Any], JudgeContext], Judge]

_REGISTRY: dict[str, JudgeFactory] = {}
# Modules of other packages that register judges of their own, imported when a name is not
# found yet: the learned reward model's judge (reward depends on judges, not back; the
# stages that use it name it in their `extra_code`, so their code hash covers it).
PLUGIN_MODULES: tuple[str, ...] = ("paretoflow.reward.judge",)


def register_judge(name: str) -> Callable[[JudgeFactory], JudgeFactory]:
    """Decorator registering `factory(params, context) -> Judge` under `name`."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"judge name must match [a-z][a-z0-9_]*, got {name!r}")

    def decorator(factory: JudgeFactory) -> JudgeFactory:
        existing = _REGISTRY.get(name)
        # Re-importing the same module (reload in tests) re-registers the same qualname.
        if existing is not None and getattr(existing, "__qualname__", None) != getattr(
            factory, "__qualname__", None
        ):
            raise ValueError(f"judge {name!r} is already registered by {existing!r}")
        _REGISTRY[name] = factory
        return factory

    return decorator


def registered_judges() -> list[str]:
    return sorted(_REGISTRY)


def _import_plugins() -> None:
    for module in PLUGIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the plugin exists but is broken: say so
                raise


def _lookup(name: str) -> JudgeFactory:
    if ":" in name:
        module, _, short = name.partition(":")
        importlib.import_module(module)
        name = short
    if name not in _REGISTRY:
        _import_plugins()
    if name not in _REGISTRY:
        raise KeyError(f"unknown judge {name!r}; registered: {registered_judges()}")
    return _REGISTRY[name]


def build_judge(ref: JudgeRef, context: JudgeContext | None = None) -> Judge:
    """Build the judge a `JudgeRef` names, with its params; errors name the judge."""
    factory = _lookup(ref.name)
    judge = factory(dict(ref.params), context or JudgeContext())
    if not isinstance(judge, Judge):
        raise TypeError(f"judge factory {ref.name!r} returned {type(judge).__name__}, not a Judge")
    return judge


def take_params(judge: str, params: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Merge judge params over defaults; unknown keys are an error (typos must not pass)."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"judge {judge!r}: unknown params {unknown}; allowed: {sorted(defaults)}")
    return {**defaults, **params}


def finite_float(judge: str, key: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"judge {judge!r}: param {key} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"judge {judge!r}: param {key} must be finite, got {value!r}")
    return out
