"""LoRA experts read from disk: per-module A, B and scaling, and the same-base check."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from paretoflow.io import file_hash

_PEFT_PREFIX = "base_model.model."


@dataclass
class LoraExpert:
    """One LoRA adapter read from disk: per-module A, B and scaling, plus its metadata."""

    name: str
    path: Path
    config: dict
    meta: dict
    # module name in the base model (e.g. "model.layers.0.self_attn.q_proj") -> tensors
    lora_a: dict[str, torch.Tensor] = field(repr=False)
    lora_b: dict[str, torch.Tensor] = field(repr=False)
    scaling: dict[str, float] = field(repr=False)
    file_hash: str = ""

    @property
    def modules(self) -> list[str]:
        return sorted(self.lora_a)

    @property
    def base_fingerprint(self) -> str | None:
        """meta.json `base_model_fingerprint` (written by paretoflow.align), if recorded."""
        return self.meta.get("base_model_fingerprint") or self.meta.get("base_fingerprint")

    @property
    def objective_weights(self) -> list[float] | None:
        """meta.json `objective_weights` (MODPO policies); None for single-objective experts."""
        weights = self.meta.get("objective_weights", self.meta.get("weights"))
        return [float(w) for w in weights] if weights is not None else None

    @property
    def base_id(self) -> str:
        """The base this adapter was trained on: fingerprint if recorded, else its path/name."""
        if self.base_fingerprint:
            return f"fingerprint {self.base_fingerprint}"
        base = self.meta.get("base_model_path") or self.config.get("base_model_name_or_path")
        return f"model {base}" if base else "unknown base"

    def delta(self, module: str) -> torch.Tensor:
        """ΔW = scaling · B A for one module, shaped like the base weight (out, in)."""
        update = self.scaling[module] * (self.lora_b[module] @ self.lora_a[module])
        return update.T if self.config.get("fan_in_fan_out") else update


def _alpha_for(module: str, config: dict) -> float:
    # Same rule as peft's get_pattern_key: a pattern key matches the end of the module name.
    import re

    for key, alpha in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return float(alpha)
    return float(config["lora_alpha"])


def load_expert(adapter_dir: str | Path) -> LoraExpert:
    """Read adapter_model.safetensors + adapter_config.json (+ meta.json when present)."""
    adapter_dir = Path(adapter_dir)
    weights_path = adapter_dir / "adapter_model.safetensors"
    config_path = adapter_dir / "adapter_config.json"
    for p in (weights_path, config_path):
        if not p.exists():
            raise FileNotFoundError(f"adapter {adapter_dir}: missing {p.name}")
    config = json.loads(config_path.read_text())
    meta_path = adapter_dir / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"adapter {adapter_dir}: peft_type {config.get('peft_type')!r}, only LORA merges")
    if config.get("use_dora"):
        raise ValueError(f"adapter {adapter_dir}: DoRA adapters are not a plain ΔW = BA; cannot merge exactly")
    if config.get("lora_bias"):
        raise ValueError(f"adapter {adapter_dir}: lora_bias=True is not supported by the merge")
    state = load_file(str(weights_path))
    lora_a: dict[str, torch.Tensor] = {}
    lora_b: dict[str, torch.Tensor] = {}
    unsupported = []
    for key, tensor in state.items():
        name = key[len(_PEFT_PREFIX):] if key.startswith(_PEFT_PREFIX) else key
        if name.endswith(".lora_A.weight"):
            lora_a[name[: -len(".lora_A.weight")]] = tensor.float()
        elif name.endswith(".lora_B.weight"):
            lora_b[name[: -len(".lora_B.weight")]] = tensor.float()
        else:
            unsupported.append(key)
    if unsupported:
        raise ValueError(
            f"adapter {adapter_dir}: tensors other than LoRA A/B ({unsupported[:3]}...) "
            "(modules_to_save, embeddings) cannot be merged as ΔW"
        )
    if set(lora_a) != set(lora_b) or not lora_a:
        raise ValueError(f"adapter {adapter_dir}: LoRA A and B modules do not pair up (or none found)")
    scaling = {}
    for module, a in lora_a.items():
        rank = a.shape[0]
        alpha = _alpha_for(module, config)
        scaling[module] = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    return LoraExpert(
        name=adapter_dir.name,
        path=adapter_dir,
        config=config,
        meta=meta,
        lora_a=lora_a,
        lora_b=lora_b,
        scaling=scaling,
        file_hash=file_hash(weights_path),
    )


def check_same_base(experts: Sequence[LoraExpert]) -> None:
    """Refuse experts trained on different base models, naming both bases."""
    if not experts:
        raise ValueError("no experts to merge")
    first = experts[0]
    for other in experts[1:]:
        if other.base_id != first.base_id:
            raise ValueError(
                f"experts trained on different base models cannot be merged: "
                f"{first.name} on {first.base_id}, {other.name} on {other.base_id}"
            )
