"""`llm`: LLM-as-judge over any OpenAI-compatible HTTP endpoint (optional; needs a server).

For each (prompt, response) the judge POSTs one `/v1/chat/completions` request
(temperature 0) asking for an integer 1–10 against the objective's `rubric`, parses the
first integer in 1..10 from the reply, and maps it to [0, 1] as (s − 1) / 9.

Params: `url` (server base, e.g. http://127.0.0.1:8000, or the full
…/chat/completions URL), `model`, `rubric`, `timeout_s` (30), `max_tokens` (16),
`api_key_env` (name of an environment variable holding a bearer token; the key itself
never goes into params.yaml), `max_prompt_chars` / `max_response_chars` (4000: judge
context is expensive; texts are cut to their first characters, noted in the request).

Errors are loud: an unreachable server, an HTTP error status, a reply that is not
OpenAI-shaped JSON, or a reply without a 1–10 score raises with the URL, the index of
the example and an excerpt of the reply. Empty/degenerate answers score 0 without a call.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request

import numpy as np

from paretoflow.judges.base import JudgeContext, TextJudge, finite_float, register_judge, take_params

SYSTEM_PROMPT = (
    "You are a strict, impartial judge of assistant responses. Rate the response only for "
    "this criterion: {rubric}\nReply with a single integer from 1 (worst) to 10 (best) and "
    "nothing else."
)
# A standalone 1..10: not part of a longer number or a decimal ("2.5" has no score).
_SCORE_RE = re.compile(r"(?<![\d.])(10|[1-9])(?!\d|\.\d)")


def parse_score(reply: str) -> int | None:
    """First standalone integer 1..10 in the reply ("Score: 7/10" → 7), else None."""
    match = _SCORE_RE.search(reply)
    return int(match.group(1)) if match else None


def chat_url(url: str) -> str:
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if url.endswith("/v1"):
        return url + "/chat/completions"
    return url + "/v1/chat/completions"


class LLMJudge(TextJudge):
    name = "llm"

    def __init__(
        self,
        url: str,
        model: str,
        rubric: str,
        timeout_s: float = 30.0,
        max_tokens: int = 16,
        api_key_env: str | None = None,
        max_prompt_chars: int = 4000,
        max_response_chars: int = 4000,
        degenerate_score: float = 0.0,
    ):
        super().__init__(degenerate_score)
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"llm judge: url must start with http:// or https://, got {url!r}")
        if not model or not rubric:
            raise ValueError("llm judge: params `model` and `rubric` are required")
        if timeout_s <= 0:
            raise ValueError(f"llm judge: timeout_s must be > 0, got {timeout_s}")
        self.url, self.model, self.rubric = chat_url(url), model, rubric
        self.timeout_s, self.max_tokens = float(timeout_s), int(max_tokens)
        self.api_key_env = api_key_env
        self.max_prompt_chars, self.max_response_chars = int(max_prompt_chars), int(max_response_chars)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueError(f"llm judge: environment variable {self.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _ask(self, index: int, prompt: str, response: str) -> str:
        user = (
            f"[User prompt]\n{prompt[: self.max_prompt_chars]}\n\n"
            f"[Assistant response]\n{response[: self.max_response_chars]}\n\n"
            "Score (1-10):"
        )
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT.format(rubric=self.rubric)},
                {"role": "user", "content": user},
            ],
            "temperature": 0.0,
            "max_tokens": self.max_tokens,
        }
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=self._headers(), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                raw = reply.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace")
            raise RuntimeError(f"llm judge: {self.url} answered HTTP {exc.code} for example {index}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RuntimeError(f"llm judge: cannot reach {self.url} (example {index}): {reason}") from None
        try:
            payload = json.loads(raw)
            content = payload["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ValueError(
                f"llm judge: malformed reply from {self.url} for example {index} ({exc}): {raw[:200]!r}"
            ) from None
        return content

    def _score(self, prompts, responses, tags) -> np.ndarray:
        out = np.empty(len(responses), dtype=np.float64)
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            content = self._ask(i, prompt, response)
            score = parse_score(content)
            if score is None:
                raise ValueError(
                    f"llm judge: reply for example {i} holds no score from 1 to 10: {content[:200]!r}"
                )
            out[i] = (score - 1) / 9.0
        return out


@register_judge("llm")
def make_llm(params: dict, context: JudgeContext) -> LLMJudge:
    p = take_params(
        "llm",
        params,
        {"url": None, "model": None, "rubric": None, "timeout_s": 30.0, "max_tokens": 16,
         "api_key_env": None, "max_prompt_chars": 4000, "max_response_chars": 4000,
         "degenerate_score": 0.0},
    )
    missing = [k for k in ("url", "model", "rubric") if not p[k]]
    if missing:
        raise ValueError(f"judge 'llm': missing required params {missing}")
    return LLMJudge(
        url=str(p["url"]),
        model=str(p["model"]),
        rubric=str(p["rubric"]),
        timeout_s=finite_float("llm", "timeout_s", p["timeout_s"]),
        max_tokens=int(p["max_tokens"]),
        api_key_env=p["api_key_env"],
        max_prompt_chars=int(p["max_prompt_chars"]),
        max_response_chars=int(p["max_response_chars"]),
        degenerate_score=finite_float("llm", "degenerate_score", p["degenerate_score"]),
    )
