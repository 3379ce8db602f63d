"""merge_deltas: the merged ΔW of every module, by any registered method (methods.py)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from paretoflow.merging.experts import LoraExpert, check_same_base
from paretoflow.merging.methods import MergeOptions, method_module

if TYPE_CHECKING:
    import torch

MergeMethod = str  # a name in paretoflow.merging.methods.METHODS


def check_coefficients(coefficients: Sequence[float], n_experts: int, method: str) -> list[float]:
    """One finite coefficient per expert; non-negative unless the method allows subtraction."""
    module = method_module(method)
    values = [float(c) for c in coefficients]
    if len(values) != n_experts:
        raise ValueError(f"got {len(values)} coefficients {values} for {n_experts} experts")
    if any(not math.isfinite(c) for c in values):
        raise ValueError(f"coefficients must be finite, got {values}")
    if module.NON_NEGATIVE and any(c < 0 for c in values):
        raise ValueError(f"merge method {method!r} needs non-negative coefficients, got {values}")
    if hasattr(module, "check"):
        module.check(values)
    return values


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
    merge = method_module(method).merge
    options = MergeOptions(ties_density, dare_drop_rate, task_arithmetic_lambda, seed)
    for module in sorted({m for e in experts for m in e.lora_a}):
        present = [(i, e) for i, e in enumerate(experts) if module in e.lora_a]
        delta = merge(module, present, weights, options)
        if delta is not None:
            yield module, delta
