"""FSDP for the trainer: sharding on CPU, gathered adapter/optimizer state, full weights
for generation.

Under FSDP every process holds a shard of each parameter, so what peft's
`get_peft_model_state_dict` and `optimizer.state_dict()` return on rank 0 is rank 0's
shard. Here the state goes through torch.distributed.checkpoint.state_dict instead:
`get_model_state_dict` / `get_optimizer_state_dict` with `full_state_dict=True` gather it
(every process takes part: the calls are collective), and `set_model_state_dict` /
`set_optimizer_state_dict` slice the full tensors back into this process's shard on resume.
The adapter is saved in peft's own key format (the same files a single process writes);
the optimizer state is keyed by parameter name instead of position.

accelerate 1.15 does not set up FSDP on CPU: `accelerate launch` with an FSDP config exports
ACCELERATE_USE_FSDP=true, but `Accelerator(cpu=True)` selects DistributedType.MULTI_CPU
(accelerate/state.py turns FSDP on only for accelerator device types) and `prepare` would
wrap the model in DDP. `shard_on_cpu` therefore applies torch's FSDP2 `fully_shard`
itself: one unit per decoder layer (the LM's `_no_split_modules`), then the root, over
gloo. Only FSDP2 is supported (`fsdp_version: 2`), on CPU and through accelerate on GPUs:
generation needs `full_weights`, written for FSDP2 units.

Run on CPU (tests/test_multiprocess_training.py):
    accelerate launch --config_file configs/accelerate/cpu-fsdp-2proc.yaml \
        -m paretoflow.cli --params params.yaml align --objective helpfulness
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn


def fsdp_modules(root: nn.Module) -> list[nn.Module]:
    """The FSDP units (FSDP2 `fully_shard` modules or FSDP1 wrappers) inside `root`."""
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel

    return [m for m in root.modules() if isinstance(m, (FSDPModule, FullyShardedDataParallel))]


def is_sharded(root: nn.Module | None) -> bool:
    return root is not None and bool(fsdp_modules(root))


def fsdp_requested_on_cpu(accelerator) -> bool:
    """An FSDP launch config on a machine where accelerate fell back to MULTI_CPU."""
    from accelerate.utils import DistributedType

    return (accelerator.distributed_type == DistributedType.MULTI_CPU
            and os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true")


def check_fsdp_version(accelerator) -> None:
    """Refuse FSDP1: `full_weights` (generation for checkpoint selection) handles FSDP2 units."""
    from accelerate.utils import DistributedType

    if fsdp_requested_on_cpu(accelerator):
        version = os.environ.get("FSDP_VERSION", "1")  # accelerate's default when the config names none
    elif accelerator.distributed_type == DistributedType.FSDP:
        version = "2" if accelerator.is_fsdp2 else "1"
    else:
        return
    if version != "2":
        raise ValueError(f"FSDP version {version} is not supported by the trainer: set fsdp_version: 2 "
                         "in the accelerate config (configs/accelerate/fsdp.yaml)")


def shard_on_cpu(scorer: nn.Module) -> nn.Module:
    """FSDP2 in place: every decoder layer (class named in `scorer._no_split_modules`) is one
    unit, the root holds the rest (embeddings, final norm, head). Parameters are replaced by
    sharded DTensors: build the optimizer afterwards."""
    from torch.distributed.fsdp import fully_shard

    layer_classes = set(getattr(scorer, "_no_split_modules", None) or [])
    layers = [m for m in scorer.modules() if type(m).__name__ in layer_classes]
    if not layers:
        raise ValueError(f"no decoder layer of classes {sorted(layer_classes)} found to shard")
    for layer in layers:
        fully_shard(layer)
    fully_shard(scorer)
    return scorer


# ------------------------------------------------------------------ adapter state


def _prefix(root: nn.Module, peft_model: nn.Module) -> str:
    """`peft_model`'s name inside `root` as torch.distributed.checkpoint spells it (FSDP1
    wrapper prefixes dropped), with a trailing dot; '' when they are the same module."""
    for name, module in root.named_modules():
        if module is peft_model:
            clean = name.replace("_fsdp_wrapped_module.", "").replace("_fsdp_wrapped_module", "")
            return f"{clean}." if clean else ""
    raise ValueError("peft_model is not a submodule of root")


def _own(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def gathered_trainable_state(root: nn.Module, peft_model) -> dict[str, torch.Tensor]:
    """The trainable tensors under `peft_model`'s own names (adapter name included: what
    `save_pretrained(state_dict=...)` takes), gathered in full onto every process (CPU
    copies). Collective: every process must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(root, options=StateDictOptions(full_state_dict=True, ignore_frozen_params=True))
    return {k: v.detach().cpu().clone().contiguous() for k, v in _own(full, _prefix(root, peft_model)).items()}


def full_adapter_state(root: nn.Module, peft_model) -> dict[str, torch.Tensor]:
    """The LoRA tensors in peft's key format (as `get_peft_model_state_dict` returns them on
    one process), gathered in full onto every process. Collective."""
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(peft_model, state_dict=gathered_trainable_state(root, peft_model))


def load_full_adapter_state(root: nn.Module, peft_model, tensors: dict[str, torch.Tensor]) -> None:
    """Load peft-format full LoRA tensors into the sharded model (each process keeps its shard)."""
    from peft import get_peft_model_state_dict
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        set_model_state_dict,
    )

    prefix = _prefix(root, peft_model)
    # peft's own renaming (adapter name dropped), read off the model's trainable names: the
    # sharded state dict holds references, no gather.
    local = _own(get_model_state_dict(root, options=StateDictOptions(ignore_frozen_params=True)), prefix)
    name_of = {id(v): k for k, v in local.items()}
    model_key = {peft_key: name_of[id(v)]
                 for peft_key, v in get_peft_model_state_dict(peft_model, state_dict=local).items()}
    if set(tensors) != set(model_key):
        raise ValueError(f"adapter keys differ from the model's: {sorted(set(tensors) ^ set(model_key))[:4]}")
    full = {prefix + model_key[k]: v for k, v in tensors.items()}
    set_model_state_dict(root, full, options=StateDictOptions(full_state_dict=True, strict=False))


# ------------------------------------------------------------------ optimizer state


def _plain(optimizer) -> torch.optim.Optimizer:
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps one


def full_optimizer_state(root: nn.Module, optimizer) -> dict:
    """The optimizer state dict, gathered, keyed by parameter name; complete on the main
    process only (empty elsewhere). Collective: every process must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(root, _plain(optimizer),
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_optimizer_state(root: nn.Module, optimizer, state_dict: dict) -> None:
    """Load a gathered optimizer state dict (every process passes the whole of it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(root, _plain(optimizer), state_dict, options=StateDictOptions(full_state_dict=True))


# ------------------------------------------------------------------ generation


@contextlib.contextmanager
def full_weights(root: nn.Module | None) -> Iterator[None]:
    """Inside the block every FSDP2 unit of `root` holds its full parameters and keeps
    them across forwards, so the unwrapped model can generate (the root's own forward,
    which would gather them, is not called by `generate`) and no collective runs while it
    does: processes may stop generating at different times. Costs a full copy of the
    weights per process for the block's duration. No-op on an unsharded model."""
    from torch.distributed.fsdp import FSDPModule

    units = fsdp_modules(root) if root is not None else []
    if not units:
        yield
        return
    if not all(isinstance(m, FSDPModule) for m in units):
        raise ValueError("generation under FSDP1 is not supported: use fsdp_version: 2")
    # The root's forward does not run inside the block, so its setting is left alone.
    inner = [m for m in units if m is not root]
    for unit in units:
        unit.unshard()
    for unit in inner:
        unit.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for unit in inner:
            # FSDP2's default for non-root units (accelerate passes the same unless the
            # config sets fsdp_reshard_after_forward: false): memory/speed, not numerics.
            unit.set_reshard_after_forward(True, recurse=False)
        for unit in units:
            unit.reshard()


__all__ = [
    "check_fsdp_version",
    "fsdp_modules",
    "fsdp_requested_on_cpu",
    "full_adapter_state",
    "full_optimizer_state",
    "full_weights",
    "gathered_trainable_state",
    "is_sharded",
    "load_full_adapter_state",
    "load_full_optimizer_state",
    "shard_on_cpu",
]
