"""Bradley-Terry loss against hand-computed values."""

import math

import pytest
import torch

from paretoflow.reward.losses import bradley_terry_loss


def test_bradley_terry_hand_values():
    losses, probs = bradley_terry_loss(torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0]))
    # -log σ(2) = log(1 + e^-2); -log σ(0) = log 2; -log σ(-2) = log(1 + e^2)
    expected = [math.log1p(math.exp(-2)), math.log(2), math.log1p(math.exp(2))]
    assert losses.tolist() == pytest.approx(expected, rel=1e-6)
    assert probs.tolist() == pytest.approx([1 / (1 + math.exp(-2)), 0.5, 1 / (1 + math.exp(2))], rel=1e-6)


def test_bradley_terry_margin_shifts_difference():
    losses, probs = bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0]), margin=1.0)
    assert losses.item() == pytest.approx(math.log1p(math.exp(-1)), rel=1e-6)
    assert probs.item() == pytest.approx(1 / (1 + math.exp(-2)), rel=1e-6)  # margin only in the loss


def test_bradley_terry_stays_finite_for_large_gaps():
    losses, _ = bradley_terry_loss(torch.tensor([-200.0]), torch.tensor([200.0]))
    assert losses.item() == pytest.approx(400.0)


def test_bradley_terry_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        bradley_terry_loss(torch.zeros(2), torch.zeros(3))
