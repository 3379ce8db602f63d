"""`paretoflow export`: the peft export is one standard LoRA adapter (rank Σ rᵢ) whose logits
equal the in-process exact merge; the merged export is full safetensors weights."""

from __future__ import annotations

import json

import pytest
import torch

from tests.paretoflow.serving.fixtures import EXPERTS, WEIGHTS

def _reference_logits(policy_dir, root, coefficients, input_ids):
    from paretoflow.merging import MergeTarget, load_expert, merge_deltas
    from paretoflow.models import load_policy

    model, _, _ = load_policy(str(policy_dir))
    experts = [load_expert(root / "artifacts/adapters" / n) for n in EXPERTS]
    MergeTarget(model).apply(merge_deltas(experts, coefficients, "exact"))
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def test_peft_export_is_the_exact_merge_and_loads_with_plain_peft(registered, tiny_policy_dir):
    from peft import PeftModel

    from paretoflow.commands.export import export_version
    from paretoflow.models import load_policy

    root, _, tracker, version = registered
    out = export_version(tracker, "m", version, "peft", root / "peft")
    config = json.loads((out / "adapter_config.json").read_text())
    ranks = [json.loads((root / "artifacts/adapters" / n / "adapter_config.json").read_text())["r"] for n in EXPERTS]
    assert config["r"] == sum(ranks) and (out / "adapter_model.safetensors").exists()
    base, tokenizer, _ = load_policy(str(tiny_policy_dir))
    model = PeftModel.from_pretrained(base, str(out))
    input_ids = tokenizer(["Explain how photosynthesis works in simple terms."], return_tensors="pt").input_ids
    with torch.no_grad():
        exported = model(input_ids=input_ids).logits
    expected = _reference_logits(tiny_policy_dir, root, list(WEIGHTS.values()), input_ids)
    diff = (exported - expected).abs().max().item()
    print(f"peft export vs in-process merge: max abs logit difference {diff:.2e}")
    assert diff < 1e-5
    assert (exported - _reference_logits(tiny_policy_dir, root, [1.0, 0.0], input_ids)).abs().max() > 1e-3


def test_merged_export_for_other_weights_is_that_merge(registered, tiny_policy_dir):
    from transformers import AutoModelForCausalLM

    from paretoflow.commands.export import export_version
    from paretoflow.models import load_tokenizer

    root, _, tracker, version = registered
    out = export_version(tracker, "m", version, "merged", root / "merged", weights=[0.8, 0.2])
    assert list(out.glob("*.safetensors")) and not list(out.glob("*.bin"))
    model = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True, trust_remote_code=False)
    input_ids = load_tokenizer(str(out))(["Write a short poem."], return_tensors="pt").input_ids
    with torch.no_grad():
        got = model(input_ids=input_ids).logits
    assert (got - _reference_logits(tiny_policy_dir, root, [0.8, 0.2], input_ids)).abs().max() < 1e-5
