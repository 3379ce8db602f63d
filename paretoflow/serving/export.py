"""Export a registered candidate for other servers: one standard peft adapter, or merged weights.

- peft: the exact Σ wᵢ ΔWᵢ as ONE LoRA adapter by concatenation, rank Σ rᵢ. peft's own
  `add_weighted_adapter(..., combination_type="cat")` builds it (A rows scaled by wᵢ·sᵢ, B
  concatenated, scaling 1), which is exact, unlike 'linear' (peft#3004, docs/measurements.md):
  B_cat A_cat = Σ Bᵢ (wᵢ sᵢ Aᵢ). The folder loads with plain `PeftModel.from_pretrained`
  and vLLM's `--enable-lora` (rank Σ rᵢ must be within its `--max-lora-rank`).
- merged: base + ΔW written as full safetensors weights with the tokenizer (any server,
  GGUF conversion, and the only export for TIES/DARE candidates, which are no low-rank sum).
"""

from __future__ import annotations

from pathlib import Path

from paretoflow.serving.policy import LINEAR_METHODS, InvalidRequest, ServedPolicy

COMBINED = "default"   # peft writes a non-default adapter into a sub-folder; this one goes to OUT itself


def export_peft(policy: ServedPolicy, out: Path, base_name: str, weights: list[float] | None = None) -> Path:
    """Write the candidate (or `weights`) as one peft LoRA adapter at `out`."""
    from peft import PeftModel

    checked = None if weights is None else policy.check(weights)
    _, names, values, method = policy._plan(checked)
    if method not in LINEAR_METHODS:
        raise InvalidRequest(f"candidate {policy.recipe.get('candidate')} was merged with {method!r}, not a weighted "
                             "sum of low-rank updates: export it with --format merged")
    if not names:
        raise InvalidRequest("this candidate is the base model (no adapter): export it with --format merged")
    scale = (policy.recipe.get("merge_params") or {}).get("task_arithmetic_lambda", 1.0) \
        if method == "task_arithmetic" else 1.0
    policy.target.restore()   # peft wraps the base weights: they must be the base's
    policy.applied = None
    model = PeftModel.from_pretrained(policy.model, str(policy.adapters[names[0]].path), adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(str(policy.adapters[name].path), adapter_name=name)
    model.add_weighted_adapter(names, [scale * v for v in values], COMBINED, combination_type="cat")
    model.set_adapter(COMBINED)
    for name in names:
        model.delete_adapter(name)
    model.peft_config[COMBINED].base_model_name_or_path = base_name
    # No embedding layers are adapted; False also stops peft probing the (models:/) base name for a config.
    model.save_pretrained(str(out), selected_adapters=[COMBINED], safe_serialization=True,
                          save_embedding_layers=False)
    policy.model = model.unload()   # the plain base again, for later use of `policy`
    return Path(out)


def export_merged(policy: ServedPolicy, out: Path, weights: list[float] | None = None) -> Path:
    """Write base + ΔW (the candidate, or `weights`) as a full safetensors model at `out`."""
    policy.apply(None if weights is None else policy.check(weights))
    policy.model.save_pretrained(str(out), safe_serialization=True)
    policy.tokenizer.save_pretrained(str(out))
    return Path(out)


__all__ = ["export_merged", "export_peft"]
