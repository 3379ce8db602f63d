"""LoRA DPO/MODPO trainer on the tiny model: learning, isolation, resume, reload."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from paretoflow.align.data import load_pair_tables, select_pairs
from paretoflow.align.trainer import (
    PairStream,
    optimizer_state_from_files,
    optimizer_state_to_files,
    train_adapter,
)
from paretoflow.config import Objective

from .conftest import tiny_profile

OBJECTIVES = [Objective(name=n) for n in ("helpfulness", "conciseness", "harmlessness")]


def _examples(directory, margin_objectives=None):
    tables = load_pair_tables(directory)
    train, _ = select_pairs(tables, "helpfulness", "train", OBJECTIVES, margin_objectives=margin_objectives)
    val, _ = select_pairs(tables, "helpfulness", "val", OBJECTIVES, margin_objectives=margin_objectives)
    return train, val


def test_training_learns_and_only_lora_moves(tiny_policy_dir, pair_tables_dir, tmp_path):
    train, val = _examples(pair_tables_dir)
    result = train_adapter(tiny_profile(), tiny_policy_dir, train, val, tmp_path / "expert",
                           progress=False)
    log = json.loads((tmp_path / "expert" / "train_log.json").read_text())
    losses = [s["loss"] for s in log["steps"]]
    margins = [s["margin"] for s in log["steps"]]
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at step 1: log 2
    assert losses[-1] < losses[0] - 0.1
    assert margins[-1] > margins[0] + 0.1
    assert [e["step"] for e in log["validation"]] == [3, 6]
    assert log["validation"][-1]["val_accuracy"] == 1.0

    result.model.cpu()  # on a GPU machine the trainer ran on cuda
    base = AutoModelForCausalLM.from_pretrained(tiny_policy_dir, use_safetensors=True)
    base_state = base.state_dict()
    lora_moved = 0
    for name, param in result.model.named_parameters():
        if "lora_" in name:
            if "lora_B" in name:  # initialised at zero by peft
                lora_moved += int(param.abs().max() > 0)
        else:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            torch.testing.assert_close(param.detach(), base_state[key], rtol=0, atol=0)
    assert lora_moved > 0

    meta = json.loads((tmp_path / "expert" / "meta.json").read_text())
    assert meta["loss"] == "dpo" and meta["train_pairs"] == 8 and meta["val_pairs"] == 4
    assert meta["tokens_seen"] == sum(s["tokens"] for s in log["steps"]) > 0
    assert meta["truncation"]["train"]["pairs"] == 8
    assert not (tmp_path / "expert" / "checkpoints").exists()  # removed once complete


def test_reloaded_adapter_gives_identical_logits(tiny_policy_dir, pair_tables_dir, tmp_path):
    train, val = _examples(pair_tables_dir)
    result = train_adapter(tiny_profile(max_steps=3), tiny_policy_dir, train, val, tmp_path / "a",
                           progress=False)
    result.model.cpu()
    base = AutoModelForCausalLM.from_pretrained(tiny_policy_dir, use_safetensors=True)
    reloaded = PeftModel.from_pretrained(base, tmp_path / "a").eval()
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        expected = result.model(input_ids=ids).logits
        got = reloaded(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    with reloaded.disable_adapter(), torch.no_grad():
        assert (reloaded(input_ids=ids).logits - got).abs().max() > 1e-4  # the adapter matters


def test_resume_gives_same_losses_as_uninterrupted(tiny_policy_dir, pair_tables_dir, tmp_path, monkeypatch):
    train, val = _examples(pair_tables_dir)
    # dropout on and a decaying schedule: resume must restore RNG and scheduler too
    config = tiny_profile(lora_dropout=0.1, lr_scheduler="linear", gradient_accumulation_steps=2,
                          batch_size=2)
    train_adapter(config, tiny_policy_dir, train, val, tmp_path / "once", progress=False)
    partial = train_adapter(config, tiny_policy_dir, train, val, tmp_path / "twice", progress=False,
                            stop_at_step=4)
    assert not partial.completed and partial.steps == 4
    assert (tmp_path / "twice" / "checkpoints" / "step-000004" / "optimizer.safetensors").exists()
    from paretoflow.align import trainer

    calls = []
    original = trainer._batch_loss
    monkeypatch.setattr(trainer, "_batch_loss", lambda *a, **k: calls.append(1) or original(*a, **k))
    train_adapter(config, tiny_policy_dir, train, val, tmp_path / "twice", progress=False)
    assert len(calls) == (6 - 4) * 2  # it resumed: only steps 5-6 (2 micro-batches each) ran
    once = json.loads((tmp_path / "once" / "train_log.json").read_text())
    twice = json.loads((tmp_path / "twice" / "train_log.json").read_text())
    # bit-identical on CPU; CUDA's atomic index_add reorders float sums, hence the tolerance
    assert [s["loss"] for s in twice["steps"]] == pytest.approx([s["loss"] for s in once["steps"]], abs=1e-5)
    assert [s["lr"] for s in twice["steps"]] == [s["lr"] for s in once["steps"]]
    for a, b in zip(twice["validation"], once["validation"]):
        assert a == pytest.approx(b, abs=1e-5)


def test_modpo_one_hot_matches_dpo_and_margins_shift_loss(tiny_policy_dir, pair_tables_dir, tmp_path):
    train, val = _examples(pair_tables_dir, margin_objectives=["conciseness"])
    config = tiny_profile(max_steps=2, eval_steps=2)
    dpo = train_adapter(config, tiny_policy_dir, train, val, tmp_path / "dpo", progress=False)
    one_hot = train_adapter(config, tiny_policy_dir, train, val, tmp_path / "one_hot", progress=False,
                            objective_weights=[1.0, 0.0, 0.0], objective_index=0)
    mixed = train_adapter(config, tiny_policy_dir, train, val, tmp_path / "mixed", progress=False,
                          objective_weights=[0.5, 0.5, 0.0], objective_index=0)
    log = lambda r: json.loads((r.output_dir / "train_log.json").read_text())["steps"]  # noqa: E731
    assert [s["loss"] for s in log(one_hot)] == pytest.approx([s["loss"] for s in log(dpo)], abs=1e-6)
    # step 1, policy == reference: logits = -(0.5 · (0.8 - 0.2)) / 0.5 = -0.6 → log(1 + e^0.6)
    assert log(mixed)[0]["loss"] == pytest.approx(1.0374879504858856, abs=1e-4)
    assert json.loads((mixed.output_dir / "meta.json").read_text())["loss"] == "modpo"


def test_early_stopping_keeps_best_adapter(tiny_policy_dir, pair_tables_dir, tmp_path):
    train, val = _examples(pair_tables_dir)
    # accuracy saturates at 1.0 early, so later evaluations cannot improve: patience 1 stops
    config = tiny_profile(max_steps=40, eval_steps=2, patience=1, early_stopping_metric="val_accuracy")
    result = train_adapter(config, tiny_policy_dir, train, val, tmp_path / "es", progress=False)
    assert result.stopped_early and result.steps < 40
    log = json.loads((tmp_path / "es" / "train_log.json").read_text())
    accuracies = [e["val_accuracy"] for e in log["validation"]]
    assert result.best_step == log["validation"][accuracies.index(max(accuracies))]["step"]


def test_pair_stream_is_a_pure_function_of_seed_and_position():
    a, b = PairStream(5, seed=3), PairStream(5, seed=3)
    assert a.take(0, 12) == b.take(0, 12)
    assert sorted(a.take(0, 5)) == list(range(5)) and sorted(a.take(5, 5)) == list(range(5))
    assert a.take(0, 5) != PairStream(5, seed=4).take(0, 5)


def test_optimizer_state_round_trip():
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([param], lr=0.1)
    param.grad = torch.tensor([1.0, -2.0, 3.0])
    optimizer.step()
    tensors, rest = optimizer_state_to_files(optimizer.state_dict())
    json.dumps(rest)  # the non-tensor part is plain JSON
    restored = optimizer_state_from_files(tensors, json.loads(json.dumps(rest)))
    other = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=0.5)
    other.load_state_dict(restored)
    state = other.state_dict()["state"][0]
    torch.testing.assert_close(state["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert other.param_groups[0]["lr"] == 0.1


def test_activation_checkpointing_and_chunked_logps_train_the_same(tiny_policy_dir, pair_tables_dir, tmp_path):
    """The GPU profile's memory settings (checkpointed decoder layers, chunked log-probs) are
    recomputation only: on the same pairs and seed the losses match the plain path."""
    train, val = _examples(pair_tables_dir)
    plain = train_adapter(tiny_profile(), tiny_policy_dir, train, val, tmp_path / "plain", progress=False)
    lean_budget = tiny_profile().model_copy(update={"gradient_checkpointing": True, "logps_chunk_tokens": 7})
    lean = train_adapter(lean_budget, tiny_policy_dir, train, val, tmp_path / "lean", progress=False)
    plain_losses = [s["loss"] for s in json.loads((tmp_path / "plain" / "train_log.json").read_text())["steps"]]
    lean_losses = [s["loss"] for s in json.loads((tmp_path / "lean" / "train_log.json").read_text())["steps"]]
    assert len(plain_losses) == len(lean_losses) > 3
    assert lean_losses == pytest.approx(plain_losses, abs=1e-5)
    assert lean.model.config.use_cache is False and plain.model.config.use_cache is not False
