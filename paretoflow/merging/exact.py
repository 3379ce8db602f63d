"""exact: ΔW = Σ wᵢ ΔWᵢ, the Rewarded Soups target computed exactly (module docstring of
paretoflow.merging: peft's 'linear' combines A and B apart and is not this sum)."""

from __future__ import annotations

import torch

NON_NEGATIVE = True


def weighted_sum(module: str, present, weights, scale: float) -> torch.Tensor | None:
    """scale · Σ wᵢ sᵢ Bᵢ Aᵢ as one matmul of stacked factors (the 'cat' combination): the
    same sum with less work than forming each ΔWᵢ."""
    active = [(i, e) for i, e in present if weights[i] != 0.0]
    if not active:
        return None
    b = torch.cat([weights[i] * e.scaling[module] * e.lora_b[module] for i, e in active], dim=1)
    a = torch.cat([e.lora_a[module] for _, e in active], dim=0)
    delta = scale * (b @ a)
    return delta.T if active[0][1].config.get("fan_in_fan_out") else delta


def merge(module: str, present, weights, options) -> torch.Tensor | None:
    return weighted_sum(module, present, weights, 1.0)
