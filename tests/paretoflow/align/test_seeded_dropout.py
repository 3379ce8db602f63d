"""LoRA dropout from the session's own generator: the masks nn.Dropout draws, no global draw."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from paretoflow.align.session import SeededDropout, own_dropout_generator


def test_seeded_dropout_gives_what_nn_dropout_gives_from_the_same_state():
    x = torch.randn(3, 5, 7, requires_grad=True)
    torch.manual_seed(11)
    state = torch.get_rng_state()
    expected = torch.nn.Dropout(0.3).train()(x)
    expected.sum().backward()
    expected_grad, x.grad = x.grad.clone(), None

    generator = torch.Generator()
    generator.set_state(state)
    torch.manual_seed(12345)  # the global stream is elsewhere now, and must stay there
    global_before = torch.get_rng_state()
    got = SeededDropout(0.3, generator).train()(x)
    got.sum().backward()
    assert torch.equal(got, expected) and torch.equal(x.grad, expected_grad)
    assert torch.equal(torch.get_rng_state(), global_before)
    assert 0 < int((got == 0).sum()) < got.numel()  # it did drop something
    assert SeededDropout(0.3, generator).eval()(x) is x


def test_every_lora_dropout_gets_the_generator_in_the_global_state(tiny_policy_dir):
    torch.manual_seed(3)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_policy_dir, use_safetensors=True),
                           LoraConfig(r=2, lora_alpha=4, lora_dropout=0.1, target_modules="all-linear"))
    state = torch.get_rng_state()
    generator = own_dropout_generator(model)
    assert torch.equal(generator.get_state(), state)
    layers = [m for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict)]
    assert layers and all(isinstance(d, SeededDropout) and d.generator is generator and d.p == pytest.approx(0.1)
                          for m in layers for d in m.lora_dropout.values())
