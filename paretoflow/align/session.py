"""Step 1 of the trainer: the policy, its LoRA adapter, AdamW and the scheduler under an
`accelerate` Accelerator, seeded (`build_session`).

On CPU the policy loads in fp32 with no mixed precision. On the gpu profile it loads in
bf16 straight onto this process's GPU (no fp32 copy on the host), the LoRA parameters stay
fp32 (peft's autocast_adapter_dtype), autocast runs bf16, TF32 covers the remaining fp32
matmuls, and activation checkpointing of the decoder layers is a budget setting
(`AlignBudget.gradient_checkpointing`, on in the gpu profile). Under FSDP accelerate places
and shards the weights itself, so no device_map is passed there. accelerate does not shard
on CPU (an FSDP launch config falls back to DDP there): with an FSDP config on CPU the
session applies FSDP2 itself (fsdp.py) and hands accelerate the optimizer only.

On CPU, LoRA dropout draws its masks from the session's own generator (`SeededDropout`),
which starts where the seeded global generator stands once the adapter is initialised:
the masks are the ones nn.Dropout would draw, and two sessions can train at once in
threads (the align lanes, paretoflow/lanes.py) without sharing a random stream. Seeding
and the LoRA initialisation still use the process-global generators, so they run under a
lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from paretoflow.align.fsdp import check_fsdp_version, fsdp_requested_on_cpu, shard_on_cpu
from paretoflow.align.logps import ResponseLogps

if TYPE_CHECKING:
    from paretoflow.stages.align import AlignBudget


@dataclass
class Session:
    """The model, optimizer and accelerator of one training run."""

    config: AlignBudget
    accelerator: Any
    scorer: Any  # ResponseLogps, prepared (DDP-wrapped, or FSDP-sharded in place)
    peft_model: Any
    tokenizer: Any
    optimizer: Any
    scheduler: Any
    trainable: list
    mixed_precision: str
    generator: torch.Generator | None = None  # LoRA dropout's masks on CPU (SeededDropout); None: global RNG

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id


def resolve_mixed_precision(setting: str, profile: str) -> str:
    """'auto' → bf16 on CUDA with the gpu profile; without CUDA, bf16 where the CPU
    multiplies bf16 in hardware (paretoflow/cpu.py: emulated it is slower than fp32);
    otherwise no mixed precision. On CPU accelerate's autocast runs the matmuls of the
    reference pass and the training steps in bf16 (LoRA weights, optimizer and loss stay
    fp32); the selection's greedy answers are fp32. Measured (docs/measurements.md#align):
    one expert, 16 steps on 2 threads, 2.53 -> 1.76 s a step."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if profile == "gpu" else "no"
    from paretoflow.cpu import native_bf16

    return "bf16" if native_bf16() else "no"


def _make_scheduler(optimizer, config: AlignBudget):
    from transformers import (
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    if config.lr_scheduler == "constant":
        return get_constant_schedule_with_warmup(optimizer, config.warmup_steps)
    if config.lr_scheduler == "linear":
        return get_linear_schedule_with_warmup(optimizer, config.warmup_steps, config.max_steps)
    return get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.max_steps)


def _policy_load_kwargs(config: AlignBudget, profile: str, accelerator) -> dict:
    """bf16 base weights loaded straight onto this process's GPU on GPU profiles; fp32 on CPU.
    FSDP places and shards the weights itself (accelerate), so no device_map there."""
    from accelerate.utils import DistributedType

    from paretoflow.models import enable_tf32

    on_gpu = profile == "gpu" and accelerator.device.type == "cuda"
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(
        config.base_dtype, torch.bfloat16 if on_gpu else torch.float32)
    kwargs: dict = {"dtype": dtype}
    if accelerator.device.type == "cuda":
        enable_tf32()
        if accelerator.distributed_type != DistributedType.FSDP:
            kwargs["device_map"] = {"": accelerator.device}
    return kwargs


def _enable_checkpointing(model) -> None:
    """transformers' activation checkpointing of every decoder layer, non-reentrant (no
    enable_input_require_grads needed with frozen embeddings; works under FSDP)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False


class SeededDropout(torch.nn.Module):
    """nn.Dropout whose masks come from `generator` instead of torch's global generator.
    Hand-written because nn.Dropout takes no generator. Its masks and outputs are the ones
    F.dropout would give on CPU from a global generator in the same state: ATen's CPU
    dropout (no fused kernel there) is `empty_like(x).bernoulli_(1 - p)`, divided by
    1 - p, times x, and so is this (tests/paretoflow/align/test_seeded_dropout.py)."""

    def __init__(self, p: float, generator: torch.Generator):
        super().__init__()
        self.p, self.generator = p, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        noise = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.generator)
        return x * noise.div_(1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, own generator"


def own_dropout_generator(model) -> torch.Generator:
    """Give every LoRA dropout of `model` one generator, in the global CPU generator's
    current state, and return it (its state is what checkpoints save)."""
    generator = torch.Generator()
    generator.set_state(torch.get_rng_state())
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, torch.nn.ModuleDict):
            for name, layer in list(dropouts.items()):
                if isinstance(layer, torch.nn.Dropout):
                    dropouts[name] = SeededDropout(layer.p, generator)
    return generator


# set_seed and peft's LoRA initialisation draw from process-global generators: one session
# at a time builds (the align lanes build theirs side by side), and nothing else may set
# those generators meanwhile (selection's greedy answers seed and restore them: lock too).
GLOBAL_RNG = threading.Lock()


def build_session(config: AlignBudget, policy_path: str | Path, seed: int, profile: str) -> Session:
    """Policy + LoRA + AdamW + scheduler under an accelerate Accelerator, seeded."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from paretoflow.models import load_tokenizer

    mixed_precision = resolve_mixed_precision(config.mixed_precision, profile)
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        cpu=not torch.cuda.is_available(),
    )
    check_fsdp_version(accelerator)
    tokenizer = load_tokenizer(str(policy_path))
    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=config.target_modules, bias="none", task_type="CAUSAL_LM",
    )
    with GLOBAL_RNG:
        set_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(
            str(policy_path), trust_remote_code=False, use_safetensors=True,
            **_policy_load_kwargs(config, profile, accelerator),
        )
        if config.gradient_checkpointing:
            _enable_checkpointing(model)
        # autocast_adapter_dtype (peft default, explicit here): LoRA params fp32 on a bf16 base.
        model = get_peft_model(model, lora, autocast_adapter_dtype=True)
        generator = own_dropout_generator(model) if accelerator.device.type == "cpu" else None
    scorer = ResponseLogps(model, chunk_tokens=config.logps_chunk_tokens)
    shard_here = fsdp_requested_on_cpu(accelerator)
    if shard_here:  # before the optimizer: sharding replaces the parameters
        shard_on_cpu(scorer)
    trainable = [p for p in scorer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    if shard_here:
        optimizer = accelerator.prepare(optimizer)
    else:
        scorer, optimizer = accelerator.prepare(scorer, optimizer)
        # accelerate's FSDP2 replaces the parameters too: clip the ones that get gradients
        trainable = [p for p in scorer.parameters() if p.requires_grad]
    # The scheduler is stepped by hand once per optimizer step: accelerate's wrapper would
    # step it num_processes times per step.
    scheduler = _make_scheduler(optimizer, config)
    return Session(config, accelerator, scorer, accelerator.unwrap_model(scorer).model, tokenizer, optimizer,
                   scheduler, trainable, mixed_precision, generator)
