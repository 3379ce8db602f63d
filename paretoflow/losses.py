"""Preference-optimisation losses as pure functions of per-sequence log-probs.

Every loss takes the summed log-probabilities of the chosen (y_w) and rejected (y_l)
responses under the trained policy π and the frozen reference π_ref, one value per
example, and returns a triple

    (per-example losses, chosen_rewards, rejected_rewards)

where the rewards are the implicit rewards the loss trains (detached, for logging the
reward margin and the pair accuracy). No reduction happens here: the trainer averages.
The trainer picks a loss by name from `LOSSES`; nothing here knows about models,
tokenizers or batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _log_ratios(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    shapes = {t.shape for t in (policy_chosen_logps, policy_rejected_logps,
                                reference_chosen_logps, reference_rejected_logps)}
    if len(shapes) != 1:
        raise ValueError(f"log-prob tensors must share one shape, got {sorted(map(tuple, shapes))}")
    chosen_log_ratio = policy_chosen_logps - reference_chosen_logps
    rejected_log_ratio = policy_rejected_logps - reference_rejected_logps
    return chosen_log_ratio, rejected_log_ratio


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO sigmoid loss (Rafailov et al. 2023, "Direct Preference Optimization", eq. 7).

        r(x, y)  = β · (log π(y|x) − log π_ref(y|x))
        loss     = −log σ( r(x, y_w) − r(x, y_l) )

    β = 0.1 is the paper's default. Returns (losses, r(x, y_w), r(x, y_l)).
    """
    chosen_log_ratio, rejected_log_ratio = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
    )
    logits = beta * (chosen_log_ratio - rejected_log_ratio)
    losses = -F.logsigmoid(logits)
    return losses, (beta * chosen_log_ratio).detach(), (beta * rejected_log_ratio).detach()


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IPO loss (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning
    from Human Preferences", eq. 17), with the regulariser τ written as `beta`:

        h(x, y_w, y_l) = (log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))
        loss           = ( h − 1 / (2τ) )²

    The squared loss pulls the log-ratio gap to 1/(2τ) instead of pushing it to infinity.
    Summed (not length-averaged) log-probs, as in the paper's definition. Rewards
    reported are β·(log-ratio), as for DPO, so margins stay comparable across losses.
    """
    if beta <= 0:
        raise ValueError(f"IPO needs tau (beta) > 0, got {beta}")
    chosen_log_ratio, rejected_log_ratio = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
    )
    gap = chosen_log_ratio - rejected_log_ratio
    losses = (gap - 1.0 / (2.0 * beta)) ** 2
    return losses, (beta * chosen_log_ratio).detach(), (beta * rejected_log_ratio).detach()


def modpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    chosen_margin_rewards: torch.Tensor,
    rejected_margin_rewards: torch.Tensor,
    objective_weights: Sequence[float] | torch.Tensor,
    objective_index: int,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MODPO loss (Zhou et al. 2024, "Beyond One-Preference-Fits-All Alignment:
    Multi-Objective Direct Preference Optimization", eq. 8).

    Trains on the preference pairs of objective k while the other objectives enter as
    fixed margin rewards r₋ₖ (from reward models in the paper; from judge ratings here):

        logits = ( β·[(log π − log π_ref)(y_w) − (log π − log π_ref)(y_l)]
                   − w₋ₖ · [r₋ₖ(x, y_w) − r₋ₖ(x, y_l)] ) / wₖ
        loss   = −log σ(logits)

    `chosen_margin_rewards` / `rejected_margin_rewards` are (batch, n_objectives): one
    column per objective, the column k is ignored (its weight is masked to zero), so the
    caller passes the full rating matrix. With one-hot weights on k this is exactly DPO.
    The implicit reward of objective k is returned for each side:
        r_k(x, y) = ( β·(log π − log π_ref)(y) − w₋ₖ · r₋ₖ(x, y) ) / wₖ
    so chosen − rejected equals the logits above.
    """
    weights = torch.as_tensor(objective_weights, dtype=chosen_margin_rewards.dtype,
                              device=chosen_margin_rewards.device)
    n_objectives = weights.shape[0]
    if not 0 <= objective_index < n_objectives:
        raise ValueError(f"objective_index {objective_index} out of range for {n_objectives} weights")
    weight_k = float(weights[objective_index])
    if weight_k <= 0:
        raise ValueError(f"MODPO needs w_k > 0 for the trained objective, got w={weights.tolist()}")
    for name, margins in (("chosen", chosen_margin_rewards), ("rejected", rejected_margin_rewards)):
        if margins.dim() != 2 or margins.shape != (policy_chosen_logps.shape[0], n_objectives):
            raise ValueError(
                f"{name}_margin_rewards must be (batch={policy_chosen_logps.shape[0]}, "
                f"n_objectives={n_objectives}), got {tuple(margins.shape)}"
            )
    chosen_log_ratio, rejected_log_ratio = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
    )
    other_weights = weights.clone()
    other_weights[objective_index] = 0.0
    chosen_rewards = (beta * chosen_log_ratio - chosen_margin_rewards @ other_weights) / weight_k
    rejected_rewards = (beta * rejected_log_ratio - rejected_margin_rewards @ other_weights) / weight_k
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


# Name → loss for the trainer's config (`loss: dpo|ipo`); MODPO is selected by weights.
LOSSES = {"dpo": dpo_loss, "ipo": ipo_loss}

__all__ = ["LOSSES", "dpo_loss", "ipo_loss", "modpo_loss"]
