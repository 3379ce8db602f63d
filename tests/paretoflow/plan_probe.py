"""Measured memory of one LoRA training step, for tests/paretoflow/test_plan.py.

Run as a script in a fresh process (`python -m tests.paretoflow.plan_probe CONFIG.json ROWS
TOKENS RESPONSE [ckpt]`); prints JSON: bytes saved for backward (saved-tensor hooks, the
model's own parameters excluded) and the peak-RSS rise of the second step (VmHWM reset
through /proc/self/clear_refs after a warm-up step; glibc told to mmap large blocks so a
freed tensor leaves the RSS, MALLOC_MMAP_THRESHOLD_ set by the caller).
"""

from __future__ import annotations

import json
import sys


def _status_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    raise KeyError(field)


def measure(config: dict, rows: int, tokens: int, response: int, checkpointing: bool, dropout: float = 0.05) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from paretoflow.align.logps import ResponseLogps

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=dropout,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    scorer = ResponseLogps(model).train()
    trainable = [p for p in scorer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    ids = torch.randint(0, config["vocab_size"], (rows, tokens))
    mask = torch.ones(rows, tokens, dtype=torch.long)
    mask[0, : tokens // 4] = 0  # one padded row: the sdpa mask path of real batches
    response_mask = torch.zeros(rows, tokens, dtype=torch.long)
    response_mask[:, tokens - response:] = 1
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def step(saved: dict | None = None):
        def pack(t):
            storage = t.untyped_storage()
            if saved is not None and storage.data_ptr() not in params:
                saved[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = scorer(ids, mask, response_mask).sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    saved: dict[int, int] = {}
    step(saved)  # warm-up: optimizer state, lazy inits
    open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    step()
    return {"saved_bytes": sum(saved.values()), "peak_rise_bytes": (_status_kib("VmHWM") - before) * 1024}


if __name__ == "__main__":
    config = json.loads(open(sys.argv[1]).read())
    rows, tokens, response = (int(x) for x in sys.argv[2:5])
    print(json.dumps(measure(config, rows, tokens, response, checkpointing="ckpt" in sys.argv[5:])))
