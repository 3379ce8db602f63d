"""FSDP2 state handling on one process (a gloo group of size 1): the gathered adapter and
optimizer state equal the unsharded model's, round-trip into the shards, and generation on
the unwrapped model needs `full_weights`. Two processes: tests/test_multiprocess_training.py."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.distributed as dist
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from paretoflow.align.checkpoint import (
    adapter_tensors,
    load_adapter_tensors,
    load_optimizer_state,
    optimizer_state,
    optimizer_state_from_files,
    optimizer_state_to_files,
)
from paretoflow.align.fsdp import full_weights, is_sharded, shard_on_cpu
from paretoflow.align.logps import ResponseLogps

IDS = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]])


@pytest.fixture
def one_process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _scorer(policy_dir) -> ResponseLogps:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(policy_dir, use_safetensors=True)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    return ResponseLogps(get_peft_model(model, lora))


def _train_step(scorer: ResponseLogps, optimizer) -> None:
    mask = torch.ones_like(IDS)
    scorer(input_ids=IDS, attention_mask=mask, response_mask=mask).sum().backward()
    optimizer.step()
    optimizer.zero_grad()


def _train_one_step(scorer: ResponseLogps) -> torch.optim.Optimizer:
    optimizer = torch.optim.AdamW([p for p in scorer.parameters() if p.requires_grad], lr=1e-2)
    _train_step(scorer, optimizer)
    return optimizer


def test_gathered_state_equals_the_unsharded_model_and_round_trips_into_the_shards(
        tiny_policy_dir, one_process_group):
    plain = _scorer(tiny_policy_dir)
    sharded = shard_on_cpu(copy.deepcopy(plain))
    assert is_sharded(sharded) and not is_sharded(plain)
    assert all(type(p).__name__ == "DTensor" for p in sharded.parameters())
    plain_optimizer, sharded_optimizer = _train_one_step(plain), _train_one_step(sharded)

    expected = adapter_tensors(plain.model)
    gathered = adapter_tensors(sharded.model, sharded)
    assert gathered.keys() == expected.keys() and any(".lora_B." in k for k in gathered)
    for key, value in expected.items():
        assert type(gathered[key]) is torch.Tensor and gathered[key].shape == value.shape
        torch.testing.assert_close(gathered[key], value, rtol=0, atol=1e-7)   # measured: equal

    # through the checkpoint's file format (names, not positions, under FSDP)
    tensors, rest = optimizer_state_to_files(optimizer_state(sharded_optimizer, sharded))
    restored = optimizer_state_from_files(tensors, json.loads(json.dumps(rest)))
    assert all(isinstance(k, str) and "lora_" in k for k in restored["state"])
    fresh = shard_on_cpu(_scorer(tiny_policy_dir))
    fresh_optimizer = torch.optim.AdamW([p for p in fresh.parameters() if p.requires_grad], lr=0.5)
    load_adapter_tensors(fresh.model, gathered, fresh)
    load_optimizer_state(fresh_optimizer, restored, fresh)
    assert fresh_optimizer.param_groups[0]["lr"] == 1e-2
    for key, value in adapter_tensors(fresh.model, fresh).items():
        torch.testing.assert_close(value, gathered[key], rtol=0, atol=0)
    # the next step from the restored state is the next step of the unsharded run
    _train_step(plain, plain_optimizer)
    _train_step(fresh, fresh_optimizer)
    after_plain, after_fresh = adapter_tensors(plain.model), adapter_tensors(fresh.model, fresh)
    for key, value in after_plain.items():
        torch.testing.assert_close(after_fresh[key], value, rtol=0, atol=1e-6)
    assert max((after_plain[k] - expected[k]).abs().max() for k in expected) > 1e-4  # it stepped


def test_generation_on_the_unwrapped_model_needs_full_weights(tiny_policy_dir, one_process_group):
    plain = _scorer(tiny_policy_dir)
    _train_one_step(plain)                      # a non-zero adapter
    sharded = shard_on_cpu(copy.deepcopy(plain))
    _train_step(sharded, torch.optim.SGD([p for p in sharded.parameters() if p.requires_grad], lr=0.0))
    with torch.no_grad():
        # What generate() calls: after a backward the root's own weights (embeddings, head)
        # are sharded, and only the root's forward (not called by generate) gathers them.
        with pytest.raises(RuntimeError, match="mixed torch.Tensor and DTensor"):
            sharded.model(input_ids=IDS)
        with full_weights(sharded):
            got = sharded.model(input_ids=IDS).logits
            again = sharded.model(input_ids=IDS).logits   # kept across forwards inside the block
        expected = plain.model(input_ids=IDS).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(again, expected, rtol=0, atol=1e-6)
    assert all(type(p).__name__ == "DTensor" for p in sharded.parameters())   # resharded after it
    with full_weights(plain):                   # no-op without FSDP
        torch.testing.assert_close(plain.model(input_ids=IDS).logits, expected, rtol=0, atol=0)

