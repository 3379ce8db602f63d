"""ties: trim each ΔWᵢ to its top-`density` entries by magnitude, elect the sign of
Σ wᵢ ΔŴᵢ per entry, then the weighted mean of the entries that agree with it, scaled by λ
(Yadav et al. 2023; with weights this is mergekit's normalized form, so weight 1 on one
expert returns that expert's trimmed update)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

NON_NEGATIVE = True


def check(weights: list[float]) -> None:
    if sum(weights) <= 0:
        raise ValueError(f"merge method 'ties' needs at least one positive coefficient, got {weights}")


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


def merge(module: str, present, weights, options) -> torch.Tensor:
    deltas = [e.delta(module) for _, e in present]
    return ties_merge(deltas, [weights[i] for i, _ in present], options.ties_density, options.task_arithmetic_lambda)
