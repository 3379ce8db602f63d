"""Bradley-Terry preference loss for reward heads and the gating network.

Bradley & Terry (1952); as a reward-model loss in Ouyang et al. 2022 (InstructGPT, eq. 1)
and ArmoRM stage 2 (Wang et al. 2024, eq. 4):

    P(chosen ≻ rejected) = σ(r_c − r_r)
    loss = −log σ(r_c − r_r) = softplus(−(r_c − r_r))

An optional margin m (Llama 2, Touvron et al. 2023, eq. 2) asks for r_c − r_r ≥ m:
loss = −log σ(r_c − r_r − m). The function returns per-pair losses so callers can weight
or mask them, plus the pairwise probabilities for metrics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    margin: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair −log σ(r_c − r_r − m) and P(chosen ≻ rejected) = σ(r_c − r_r).

    softplus(−x) equals −log σ(x) and stays finite for large |x| (log σ underflows).
    """
    if chosen_rewards.shape != rejected_rewards.shape:
        raise ValueError(
            f"chosen and rejected rewards differ in shape: {tuple(chosen_rewards.shape)} "
            f"vs {tuple(rejected_rewards.shape)}"
        )
    difference = chosen_rewards - rejected_rewards
    shifted = difference if margin is None else difference - margin
    losses = F.softplus(-shifted)
    return losses, torch.sigmoid(difference)
