"""Merging LoRA experts into one policy: exact weighted sum, TIES, DARE, task arithmetic.

Every method works on the experts' weight updates ΔWᵢ = scalingᵢ · Bᵢ Aᵢ (per target
module), never on A and B separately: peft's `add_weighted_adapter` with 'linear' (and
'ties' / 'dare_*') combines A and B matrices apart, which adds cross terms, so the result
is NOT Σ wᵢ ΔWᵢ (peft#3004; shared STACK.md measured an error of 0.015 on entries ~0.024).
Rewarded Soups (Ramé et al. 2023) averaged A and B the same way; we compute the sum the
paper means.

- exact:            ΔW = Σ wᵢ ΔWᵢ                                  (Rewarded Soups target)
- task_arithmetic:  ΔW = λ Σ wᵢ ΔWᵢ, wᵢ may be negative           (Ilharco et al. 2023)
- ties:             trim each ΔWᵢ to its top-`density` entries by magnitude, elect the sign
                    of Σ wᵢ ΔŴᵢ per entry, then the weighted mean of the entries that agree
                    with it: Σ wᵢ ΔŴᵢ·agreeᵢ / Σ wᵢ·agreeᵢ, scaled by λ (Yadav et al. 2023;
                    the paper's disjoint mean is the case of equal weights; with weights
                    this is mergekit's normalized form, so weight 1 on one expert returns
                    that expert's trimmed update)
- dare:             drop each entry of each ΔWᵢ with probability p, rescale survivors by
                    1/(1−p), then Σ wᵢ ΔW̃ᵢ (Yu et al. 2023). The drop mask is seeded per
                    (seed, expert, module) so a merge repeats exactly.

The merged model is base + ΔW written into a loaded model's weights. `MergeTarget` keeps a
copy of every touched base weight and always writes base + ΔW from that copy, so base
weights are never accumulated into across candidates; `restore()` puts the base back.

Experts must share their base model: adapters whose meta.json `base_model_fingerprint`
(or adapter_config `base_model_name_or_path`, when no fingerprint is recorded) differ
refuse to merge, naming both bases.

Usage:
    experts = [load_expert(p) for p in adapter_dirs]
    target = MergeTarget(model)
    target.apply(merge_deltas(experts, [0.7, 0.3], method="exact"))
    ...generate...
    target.restore()
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file

from paretoflow.io import file_hash

MergeMethod = Literal["exact", "ties", "dare", "task_arithmetic"]
MERGE_METHODS: tuple[str, ...] = ("exact", "ties", "dare", "task_arithmetic")
# Methods whose coefficients are mixing weights; only task arithmetic may subtract a task.
_NON_NEGATIVE_METHODS = {"exact", "ties", "dare"}

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


def check_coefficients(coefficients: Sequence[float], n_experts: int, method: str) -> list[float]:
    """One finite coefficient per expert; non-negative unless the method allows subtraction."""
    if method not in MERGE_METHODS:
        raise ValueError(f"unknown merge method {method!r}; choose one of {list(MERGE_METHODS)}")
    values = [float(c) for c in coefficients]
    if len(values) != n_experts:
        raise ValueError(f"got {len(values)} coefficients {values} for {n_experts} experts")
    if any(not math.isfinite(c) for c in values):
        raise ValueError(f"coefficients must be finite, got {values}")
    if method in _NON_NEGATIVE_METHODS and any(c < 0 for c in values):
        raise ValueError(f"merge method {method!r} needs non-negative coefficients, got {values}")
    if method in ("ties",) and sum(values) <= 0:
        raise ValueError(f"merge method 'ties' needs at least one positive coefficient, got {values}")
    return values


# ----------------------------------------------------------------- per-tensor methods


def ties_merge(
    deltas: Sequence[torch.Tensor],
    coefficients: Sequence[float],
    density: float,
    scale: float = 1.0,
) -> torch.Tensor:
    """TIES-merge same-shaped updates (Yadav et al. 2023): trim, elect sign, disjoint mean.

    Trim keeps each update's top ⌈density·n⌉ entries by magnitude (ties at the threshold
    kept). The elected sign per entry is the sign of Σ wᵢ trimmedᵢ; the merge is the
    weighted mean over experts whose trimmed entry is non-zero and agrees with it.
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"TIES density must be in (0, 1], got {density}")
    stacked = torch.stack([d.float() for d in deltas])  # (experts, ...)
    flat = stacked.reshape(stacked.shape[0], -1)
    keep = max(1, math.ceil(density * flat.shape[1]))
    if keep < flat.shape[1]:
        threshold = flat.abs().kthvalue(flat.shape[1] - keep + 1, dim=1, keepdim=True).values
        flat = torch.where(flat.abs() >= threshold, flat, torch.zeros_like(flat))
    weights = torch.tensor(list(coefficients), dtype=flat.dtype).unsqueeze(1)
    weighted = flat * weights
    elected = torch.sign(weighted.sum(dim=0, keepdim=True))
    agree = (torch.sign(flat) == elected) & (flat != 0)
    numerator = (weighted * agree).sum(dim=0)
    denominator = (weights * agree).sum(dim=0)
    merged = torch.where(denominator > 0, numerator / denominator.clamp_min(1e-12), torch.zeros_like(numerator))
    return (scale * merged).reshape(stacked.shape[1:])


def dare_drop(delta: torch.Tensor, drop_rate: float, generator: torch.Generator) -> torch.Tensor:
    """DARE (Yu et al. 2023): zero each entry with probability p, rescale the rest by 1/(1−p)."""
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"DARE drop rate must be in [0, 1), got {drop_rate}")
    if drop_rate == 0.0:
        return delta.clone()
    keep = torch.rand(delta.shape, generator=generator) >= drop_rate
    return delta * keep / (1.0 - drop_rate)


def _dare_generator(seed: int, expert_index: int, module: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{expert_index}:{module}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def merge_deltas(
    experts: Sequence[LoraExpert],
    coefficients: Sequence[float],
    method: MergeMethod = "exact",
    *,
    ties_density: float = 0.2,
    dare_drop_rate: float = 0.9,
    task_arithmetic_lambda: float = 1.0,
    seed: int = 0,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (module name, merged ΔW) for every module any expert adapts.

    A generator: one module's updates live in memory at a time (the default model with
    LoRA on all linear layers has ~100M ΔW entries per expert). Experts lacking a module
    contribute a zero update there.
    """
    check_same_base(experts)
    weights = check_coefficients(coefficients, len(experts), method)
    modules = sorted({m for e in experts for m in e.lora_a})
    for module in modules:
        present = [(i, e) for i, e in enumerate(experts) if module in e.lora_a]
        if method == "exact" or method == "task_arithmetic":
            # Σ wᵢ Bᵢ Aᵢ sᵢ as one matmul of stacked factors (the 'cat' combination): the same
            # sum with less work than forming each ΔWᵢ.
            scale = task_arithmetic_lambda if method == "task_arithmetic" else 1.0
            active = [(i, e) for i, e in present if weights[i] != 0.0]
            if not active:
                continue
            b = torch.cat([weights[i] * e.scaling[module] * e.lora_b[module] for i, e in active], dim=1)
            a = torch.cat([e.lora_a[module] for _, e in active], dim=0)
            delta = scale * (b @ a)
            fan_in_fan_out = active[0][1].config.get("fan_in_fan_out")
            yield module, (delta.T if fan_in_fan_out else delta)
        elif method == "ties":
            deltas = [e.delta(module) for _, e in present]
            yield module, ties_merge(
                deltas, [weights[i] for i, _ in present], ties_density, task_arithmetic_lambda
            )
        elif method == "dare":
            total = None
            for i, e in present:
                if weights[i] == 0.0:
                    continue
                dropped = dare_drop(e.delta(module), dare_drop_rate, _dare_generator(seed, i, module))
                total = weights[i] * dropped if total is None else total + weights[i] * dropped
            if total is not None:
                yield module, task_arithmetic_lambda * total


class MergeTarget:
    """A loaded base model whose adapted weights are rewritten as base + ΔW per candidate.

    The first `apply` copies each touched base weight once; every later `apply` writes
    base_copy + ΔW (never weight += ΔW), and modules a candidate does not touch go back to
    the base, so candidates never leak into each other.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self._params = dict(model.named_parameters())
        self._base: dict[str, torch.Tensor] = {}
        self._dirty: set[str] = set()

    def _param(self, module: str) -> tuple[str, torch.nn.Parameter]:
        name = f"{module}.weight"
        if name not in self._params:
            raise KeyError(
                f"adapter module {module!r} has no weight {name!r} in the base model: "
                "was the adapter trained on another architecture?"
            )
        return name, self._params[name]

    @torch.no_grad()
    def apply(self, module_deltas) -> None:
        """Set weights to base + ΔW for each (module, ΔW); restore all others touched before."""
        touched = set()
        for module, delta in module_deltas:
            name, param = self._param(module)
            if name not in self._base:
                self._base[name] = param.detach().clone()
            base = self._base[name]
            if delta.shape != base.shape:
                raise ValueError(f"ΔW for {module} has shape {tuple(delta.shape)}, base weight {tuple(base.shape)}")
            # ΔW is computed on the CPU from the adapter files; the base may sit on a GPU.
            torch.add(base, delta.to(device=base.device, dtype=base.dtype), out=param.data)
            touched.add(name)
        for name in self._dirty - touched:
            self._params[name].data.copy_(self._base[name])
        self._dirty = touched

    @torch.no_grad()
    def restore(self) -> None:
        """Put every touched weight back to the base."""
        for name in self._dirty:
            self._params[name].data.copy_(self._base[name])
        self._dirty = set()


__all__ = [
    "MERGE_METHODS",
    "LoraExpert",
    "MergeTarget",
    "check_coefficients",
    "check_same_base",
    "dare_drop",
    "load_expert",
    "merge_deltas",
    "ties_merge",
]
