"""Losses against values worked out by hand (see the comments for the arithmetic)."""

from __future__ import annotations

import pytest
import torch

from paretoflow.losses import dpo_loss, ipo_loss, modpo_loss

# Two examples. Example 0: log-ratios chosen = -1 - (-2) = 1, rejected = -3 - (-2) = -1.
# Example 1: everything equal, log-ratios 0.
POLICY_CHOSEN = torch.tensor([-1.0, -5.0])
POLICY_REJECTED = torch.tensor([-3.0, -5.0])
REFERENCE_CHOSEN = torch.tensor([-2.0, -5.0])
REFERENCE_REJECTED = torch.tensor([-2.0, -5.0])


def test_dpo_by_hand():
    losses, chosen, rejected = dpo_loss(
        POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED, beta=0.5
    )
    # ex 0: logits = 0.5 * (1 - (-1)) = 1 → -log σ(1) = log(1 + e^-1) = 0.313261687518...
    # ex 1: logits = 0 → log 2
    assert losses.tolist() == pytest.approx([0.31326168751822286, 0.6931471805599453], abs=1e-6)
    assert chosen.tolist() == pytest.approx([0.5, 0.0])
    assert rejected.tolist() == pytest.approx([-0.5, 0.0])
    assert not chosen.requires_grad


def test_dpo_gradient_pushes_chosen_up():
    policy_chosen = POLICY_CHOSEN.clone().requires_grad_(True)
    losses, _, _ = dpo_loss(policy_chosen, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED, beta=0.5)
    losses.sum().backward()
    # d/dz[-log σ(βz)] = -β(1 - σ(βz)): ex 1 → -0.5 * 0.5 = -0.25
    assert policy_chosen.grad[1].item() == pytest.approx(-0.25)
    assert (policy_chosen.grad < 0).all()


def test_ipo_by_hand():
    # tau = 0.25 → target gap 1/(2·0.25) = 2. ex 0: gap 2 → 0; ex 1: gap 0 → 4.
    losses, chosen, rejected = ipo_loss(
        POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED, beta=0.25
    )
    assert losses.tolist() == pytest.approx([0.0, 4.0])
    assert chosen.tolist() == pytest.approx([0.25, 0.0])
    # gap 1: (1 - 2)^2 = 1
    one, _, _ = ipo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.0]),
                         torch.tensor([-1.0]), beta=0.25)
    assert one.item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="tau"):
        ipo_loss(POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED, beta=0.0)


def test_modpo_by_hand():
    # w = (0.5, 0.25, 0.25), k = 0, beta = 0.5; example 0 of the tensors above:
    # β·(log-ratio gap) = 0.5 · 2 = 1
    # margins: chosen (9, 0.8, 0.6), rejected (-9, 0.2, 0.2); column k=0 ignored
    # w₋ₖ·Δr = 0.25·0.6 + 0.25·0.4 = 0.25 → logits = (1 - 0.25) / 0.5 = 1.5
    # loss = log(1 + e^-1.5) = 0.2014132779827524
    # r_k(y_w) = (0.5·1 - (0.25·0.8 + 0.25·0.6)) / 0.5 = 0.3; r_k(y_l) = (-0.5 - 0.1) / 0.5 = -1.2
    losses, chosen, rejected = modpo_loss(
        POLICY_CHOSEN[:1], POLICY_REJECTED[:1], REFERENCE_CHOSEN[:1], REFERENCE_REJECTED[:1],
        chosen_margin_rewards=torch.tensor([[9.0, 0.8, 0.6]]),
        rejected_margin_rewards=torch.tensor([[-9.0, 0.2, 0.2]]),
        objective_weights=[0.5, 0.25, 0.25], objective_index=0, beta=0.5,
    )
    assert losses.item() == pytest.approx(0.2014132779827524, abs=1e-6)
    assert chosen.item() == pytest.approx(0.3)
    assert rejected.item() == pytest.approx(-1.2)


def test_modpo_one_hot_equals_dpo():
    generator = torch.Generator().manual_seed(0)
    tensors = [torch.randn(5, generator=generator) * 3 for _ in range(4)]
    margins_chosen = torch.rand(5, 3, generator=generator)
    margins_rejected = torch.rand(5, 3, generator=generator)
    expected = dpo_loss(*tensors, beta=0.1)
    got = modpo_loss(*tensors, margins_chosen, margins_rejected, objective_weights=[0.0, 1.0, 0.0],
                     objective_index=1, beta=0.1)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e)


def test_modpo_rejects_bad_inputs():
    args = (POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED)
    margins = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="w_k > 0"):
        modpo_loss(*args, margins, margins, objective_weights=[0.0, 1.0], objective_index=0)
    with pytest.raises(ValueError, match="n_objectives=3"):
        modpo_loss(*args, margins, margins, objective_weights=[0.5, 0.5, 0.0], objective_index=0)
    with pytest.raises(ValueError, match="one shape"):
        dpo_loss(POLICY_CHOSEN, POLICY_REJECTED[:1], REFERENCE_CHOSEN, REFERENCE_REJECTED)
