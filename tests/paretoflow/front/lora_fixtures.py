"""Real LoRA adapters written with peft on the tiny model, with random non-zero B.

peft initializes B to zero (ΔW = 0 at start), which would make every merge test pass
trivially; we draw B at random so each expert moves the logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from paretoflow.align.meta import seal
from paretoflow.models import load_policy, model_fingerprint

TARGETS = ["q_proj", "v_proj", "down_proj"]


def write_random_expert(
    base_dir: Path,
    out_dir: Path,
    seed: int,
    *,
    objective: str | None = None,
    weights: list[float] | None = None,
    rank: int = 4,
    alpha: int = 8,
    targets: list[str] | None = None,
    scale: float = 0.2,
    use_rslora: bool = False,
    base_fingerprint: str | None = None,
) -> Path:
    model, _, path = load_policy(str(base_dir))
    config = LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=targets or TARGETS, lora_dropout=0.0,
        use_rslora=use_rslora,
    )
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    peft_model.save_pretrained(out_dir)
    # A complete adapter as paretoflow.align leaves it: train_log.json, then meta.json last
    # with the hashes of the other files (MODPO policies record their trained objective too).
    (Path(out_dir) / "train_log.json").write_text(json.dumps({"steps": [], "validation": []}))
    seal(out_dir, {
        "name": Path(out_dir).name, "loss": "modpo" if weights is not None else "dpo",
        "base_model_path": str(path),
        "base_model_fingerprint": base_fingerprint or model_fingerprint(path),
        "objective": objective if objective is not None else ("a" if weights is not None else None),
        "objective_weights": weights,
        "seen": {}, "truncation": {}, "steps": 0, "best_step": None, "best_metric": {}, "metrics": {},
    })
    return Path(out_dir)
