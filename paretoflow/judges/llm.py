"""`llm`: LLM-as-judge over any OpenAI-compatible HTTP endpoint (optional; needs a server).

For each (prompt, response) the judge POSTs one `/v1/chat/completions` request
(temperature 0) asking for an integer 1–10 against the objective's `rubric`, parses the
first integer in 1..10 from the reply, and maps it to [0, 1] as (s − 1) / 9.

Params: `url` (server base, e.g. http://127.0.0.1:8000, or the full
…/chat/completions URL), `model`, `rubric`, `timeout_s` (30, per attempt: connect and
read each), `retries` (2) and `backoff_s` (0.5), `max_tokens` (16), `api_key_env` (name of
an environment variable holding a bearer token; the key itself never goes into
params.yaml), `max_prompt_chars` / `max_response_chars` (4000: judge context is
expensive; texts are cut to their first characters, noted in the request).

Transient failures are retried by urllib3's `Retry`: connection errors, timeouts and
HTTP 429/500/502/503/504, up to `retries` times with exponential backoff (`backoff_s`
x 2^(n-1) seconds before retry n >= 2, urllib3's schedule) and any Retry-After the
server sends. 2 retries from 0.5 s: the OpenAI Python client's defaults (max_retries=2,
initial delay 0.5 s). A request is idempotent here (temperature 0), so POST is retried.

Errors are loud: a server still unreachable after the retries is one error naming the
URL and the last cause; an HTTP error status, a reply that is not OpenAI-shaped JSON, or
a reply without a 1–10 score raises with the URL, the index of the example and an excerpt
of the reply. Empty/degenerate answers score 0 without a call.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import MaxRetryError

from paretoflow.judges.base import JudgeContext, TextJudge, finite_float, register_judge, take_params

SYSTEM_PROMPT = (
    "You are a strict, impartial judge of assistant responses. Rate the response only for "
    "this criterion: {rubric}\nReply with a single integer from 1 (worst) to 10 (best) and "
    "nothing else."
)
# A standalone 1..10: not part of a longer number or a decimal ("2.5" has no score).
_SCORE_RE = re.compile(r"(?<![\d.])(10|[1-9])(?!\d|\.\d)")
# Statuses worth another try: rate limits and server-side, usually transient, failures.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


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
        retries: int = 2,
        backoff_s: float = 0.5,
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
        if retries < 0 or backoff_s < 0:
            raise ValueError(f"llm judge: retries and backoff_s must be >= 0, got {retries}, {backoff_s}")
        self.url, self.model, self.rubric = chat_url(url), model, rubric
        self.timeout_s, self.max_tokens = float(timeout_s), int(max_tokens)
        self.retries, self.backoff_s = int(retries), float(backoff_s)
        self._pool: urllib3.PoolManager | None = None  # made at first use (judges get pickled)
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
        raw = self._post(index, json.dumps(body).encode())
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

    def _http(self) -> urllib3.PoolManager:
        if self._pool is None:
            retry = urllib3.Retry(
                total=self.retries, connect=self.retries, read=self.retries, status=self.retries,
                backoff_factor=self.backoff_s, status_forcelist=RETRY_STATUSES,
                allowed_methods=frozenset({"POST"}), respect_retry_after_header=True,
                raise_on_status=False,  # the last error reply comes back: its status and body are reported
            )
            timeout = urllib3.Timeout(connect=self.timeout_s, read=self.timeout_s)
            self._pool = urllib3.PoolManager(retries=retry, timeout=timeout)
        return self._pool

    def _post(self, index: int, body: bytes) -> bytes:
        """POST with retries; the reply's bytes, or one error naming the URL and the cause."""
        try:
            reply = self._http().request("POST", self.url, body=body, headers=self._headers())
        except MaxRetryError as exc:
            raise RuntimeError(f"llm judge: cannot reach {self.url} (example {index}) after {self.retries} "
                               f"retries: {exc.reason}") from None
        except Urllib3Error as exc:
            raise RuntimeError(f"llm judge: cannot reach {self.url} (example {index}): {exc}") from None
        if reply.status >= 400:
            detail = reply.data[:200].decode("utf-8", "replace")
            tried = f" after {self.retries} retries" if reply.status in RETRY_STATUSES and self.retries else ""
            raise RuntimeError(f"llm judge: {self.url} answered HTTP {reply.status}{tried} for example {index}: {detail}")
        return reply.data

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pool": None}  # a connection pool does not travel

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
        {"url": None, "model": None, "rubric": None, "timeout_s": 30.0, "retries": 2, "backoff_s": 0.5,
         "max_tokens": 16,
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
        retries=int(p["retries"]),
        backoff_s=finite_float("llm", "backoff_s", p["backoff_s"]),
        max_tokens=int(p["max_tokens"]),
        api_key_env=p["api_key_env"],
        max_prompt_chars=int(p["max_prompt_chars"]),
        max_response_chars=int(p["max_response_chars"]),
        degenerate_score=finite_float("llm", "degenerate_score", p["degenerate_score"]),
    )
