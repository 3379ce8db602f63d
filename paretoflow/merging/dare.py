"""dare: drop each entry of each ΔWᵢ with probability p, rescale survivors by 1/(1−p), then
λ Σ wᵢ ΔW̃ᵢ (Yu et al. 2023). The drop mask is seeded per (seed, expert, module), so a merge
repeats exactly."""

from __future__ import annotations

import hashlib

import torch

NON_NEGATIVE = True


def dare_drop(delta: torch.Tensor, drop_rate: float, generator: torch.Generator) -> torch.Tensor:
    """DARE (Yu et al. 2023): zero each entry with probability p, rescale the rest by 1/(1−p)."""
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"DARE drop rate must be in [0, 1), got {drop_rate}")
    if drop_rate == 0.0:
        return delta.clone()
    keep = torch.rand(delta.shape, generator=generator) >= drop_rate
    return delta * keep / (1.0 - drop_rate)


def dare_generator(seed: int, expert_index: int, module: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{expert_index}:{module}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def merge(module: str, present, weights, options) -> torch.Tensor | None:
    total = None
    for i, e in present:
        if weights[i] == 0.0:
            continue
        dropped = dare_drop(e.delta(module), options.dare_drop_rate, dare_generator(options.seed, i, module))
        total = weights[i] * dropped if total is None else total + weights[i] * dropped
    return None if total is None else options.task_arithmetic_lambda * total
