"""Training state and checkpoints of one adapter run (resume gives the same losses).

A checkpoint folder `<output_dir>/checkpoints/step-NNNNNN/` holds: the current LoRA
weights, the best LoRA weights so far (what selection would ship), the optimizer state
(tensors as safetensors, the rest as JSON), each process's RNG state, and
`trainer_state.json` (step, logs, best, scheduler), written LAST: a folder without it
was cut short and is ignored. No pickle anywhere. The two latest checkpoints are kept
(the newest may be cut short by a crash). A checkpoint resumes only a run with the same
fingerprint (config, data, base model, seed, world size, selection).

Under FSDP (`root` is the sharded prepared module) the adapter and optimizer state are
gathered before they are written and sliced back into the shards on restore (fsdp.py);
the optimizer state is then keyed by parameter name, not position.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from paretoflow.align.fsdp import (
    full_adapter_state,
    full_optimizer_state,
    gathered_trainable_state,
    is_sharded,
    load_full_adapter_state,
    load_full_optimizer_state,
)
from paretoflow.io import atomic_write, write_json

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
BEST_FILE = "best_adapter.safetensors"


@dataclass
class TrainState:
    """Everything the train loop carries from step to step."""

    step: int = 0
    tokens_seen: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    stopped_early: bool = False
    wall_time_s: float = 0.0  # spent in earlier sessions of this run (resume)
    # The best adapter's LoRA tensors (CPU copies); not part of the JSON.
    best_adapter: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    JSON_FIELDS = ("step", "tokens_seen", "history", "evaluations", "best_metric", "best_step",
                   "evals_without_improvement", "stopped_early")

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.JSON_FIELDS}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> "TrainState":
        return cls(**{k: payload[k] for k in cls.JSON_FIELDS if k in payload},
                   wall_time_s=payload.get("wall_time_s", 0.0))


def adapter_tensors(peft_model, root=None) -> dict[str, torch.Tensor]:
    """CPU copies of the trainable LoRA weights (peft's adapter state dict). With a sharded
    `root` (FSDP) they are gathered in full onto every process: call it on all of them."""
    from peft import get_peft_model_state_dict

    if is_sharded(root):
        return full_adapter_state(root, peft_model)
    return {k: v.detach().cpu().clone().contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}


def load_adapter_tensors(peft_model, tensors: dict[str, torch.Tensor], root=None) -> None:
    """Load full LoRA tensors (into this process's shards under FSDP: call it on all processes)."""
    from peft import set_peft_model_state_dict

    if is_sharded(root):
        load_full_adapter_state(root, peft_model, tensors)
    else:
        set_peft_model_state_dict(peft_model, tensors)


def optimizer_state(optimizer, root=None) -> dict:
    """The optimizer's state dict; gathered (complete on the main process) with a sharded root."""
    return full_optimizer_state(root, optimizer) if is_sharded(root) else optimizer.state_dict()


def load_optimizer_state(optimizer, state_dict: dict, root=None) -> None:
    if is_sharded(root):
        load_full_optimizer_state(root, optimizer, state_dict)
    else:
        optimizer.load_state_dict(state_dict)


def adapter_state_for_save(peft_model, root=None) -> dict[str, torch.Tensor] | None:
    """What `write_adapter` hands peft under FSDP: the trainable tensors gathered (collective:
    call it on every process); None otherwise (peft reads the model itself)."""
    return gathered_trainable_state(root, peft_model) if is_sharded(root) else None


def write_adapter(peft_model, directory: Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """peft's adapter files (safetensors + adapter_config.json, set-like lists sorted)."""
    extra = {} if state_dict is None else {"state_dict": state_dict}
    peft_model.save_pretrained(directory, safe_serialization=True, **extra)
    canonical_adapter_config(Path(directory) / "adapter_config.json")


# adapter_config.json fields peft reads as sets (a module matches if it is in the list).
_SET_FIELDS = ("target_modules", "exclude_modules", "modules_to_save", "layers_to_transform")


def canonical_adapter_config(path: Path) -> None:
    """Rewrite peft's adapter_config.json with its set-like lists sorted: peft writes
    `target_modules` from a Python set, in an order that varies between processes
    (string hashing is salted), so an adapter retrained to identical weights got other
    config bytes, another identity in promote and a new registry version. Same JSON
    layout as peft's own (indent 2, sorted keys); a regex string is left as it is."""
    config = json.loads(path.read_text())
    for name in _SET_FIELDS:
        if isinstance(config.get(name), list):
            config[name] = sorted(config[name], key=lambda v: (str(type(v)), v))
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2, sort_keys=True)))


# ------------------------------------------------------------------ optimizer / RNG state


def optimizer_state_to_files(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into safetensors tensors and JSON-able rest. Parameters
    are keyed by position (a plain state dict) or by name (gathered under FSDP)."""
    tensors, scalars = {}, {}
    for param_id, state in state_dict["state"].items():
        for key, value in state.items():
            name = f"state.{param_id}.{key}"
            if torch.is_tensor(value):
                tensors[name] = value.detach().cpu().contiguous()
            else:
                scalars[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_state_from_files(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in list(tensors.items()) + list(rest["scalars"].items()):
        # "state.<param>.<key>": a parameter name has dots, an optimizer's state keys do not
        param_id, key = name.split(".", 1)[1].rsplit(".", 1)
        state.setdefault(int(param_id) if param_id.isdigit() else param_id, {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def rng_tensors(generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The random state training continues from: the session's dropout generator on CPU
    (session.SeededDropout), else torch's global one (same key: a checkpoint written
    before the generator existed restores into it)."""
    tensors = {"torch_cpu": torch.get_rng_state() if generator is None else generator.get_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    return tensors


def restore_rng(tensors: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> None:
    if generator is None:
        torch.set_rng_state(tensors["torch_cpu"])
    else:
        generator.set_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


# ------------------------------------------------------------------ the checkpointer


class Checkpointer:
    """Saves and restores TrainState + model/optimizer/scheduler/RNG under `output_dir`.
    `model_root`: the prepared module; when it is sharded (FSDP), every process must call
    `save` and `restore` (the state is gathered and sliced back). `generator`: the
    session's dropout generator, whose state is saved instead of the global one's."""

    def __init__(self, output_dir: Path, run_fingerprint: str, accelerator, model_root=None,
                 generator: torch.Generator | None = None):
        self.root = Path(output_dir) / CHECKPOINTS
        self.run_fingerprint = run_fingerprint
        self.accelerator = accelerator
        self.model_root = model_root
        self.generator = generator
        self.last_saved_step: int | None = None

    def latest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest complete checkpoint of this run, or None (a foreign one is logged)."""
        for folder in sorted(self.root.glob("step-*"), reverse=True):
            if (folder / STATE_FILE).exists():
                state = json.loads((folder / STATE_FILE).read_text())
                if state.get("run_fingerprint") == self.run_fingerprint:
                    return folder, state
                log.warning("checkpoint %s belongs to a different run (config, data or base changed): "
                            "starting fresh", folder)
                return None
        return None

    def clear(self) -> None:
        if self.accelerator.is_main_process:
            shutil.rmtree(self.root, ignore_errors=True)

    def save(self, state: TrainState, peft_model, optimizer, scheduler, wall_time_s: float) -> None:
        accelerator, root = self.accelerator, self.model_root
        folder = self.root / f"step-{state.step:06d}"
        if accelerator.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        save_file(rng_tensors(self.generator), folder / f"rng-{accelerator.process_index}.safetensors")
        # gathered on every process under FSDP (collective calls)
        adapter, optimizer_dict = adapter_tensors(peft_model, root), optimizer_state(optimizer, root)
        accelerator.wait_for_everyone()
        self.last_saved_step = state.step
        if not accelerator.is_main_process:
            return
        save_file(adapter, folder / "adapter_model.safetensors")
        if state.best_adapter is not None:
            save_file(state.best_adapter, folder / BEST_FILE)
        tensors, rest = optimizer_state_to_files(optimizer_dict)
        save_file(tensors, folder / "optimizer.safetensors")
        write_json(folder / "optimizer.json", rest)
        write_json(folder / STATE_FILE, {**state.to_json(), "run_fingerprint": self.run_fingerprint,
                                         "scheduler": scheduler.state_dict(), "wall_time_s": wall_time_s})
        for old in sorted(self.root.glob("step-*"))[:-2]:
            shutil.rmtree(old, ignore_errors=True)

    def restore(self, folder: Path, payload: dict[str, Any], peft_model, optimizer, scheduler) -> TrainState:
        """Every process reads the whole checkpoint (and keeps its shard under FSDP)."""
        root = self.model_root
        load_adapter_tensors(peft_model, load_file(folder / "adapter_model.safetensors"), root)
        rest = json.loads((folder / "optimizer.json").read_text())
        load_optimizer_state(optimizer, optimizer_state_from_files(load_file(folder / "optimizer.safetensors"), rest),
                             root)
        scheduler.load_state_dict(payload["scheduler"])
        restore_rng(load_file(folder / f"rng-{self.accelerator.process_index}.safetensors"), self.generator)
        state = TrainState.from_json(payload)
        if (folder / BEST_FILE).exists():
            state.best_adapter = load_file(folder / BEST_FILE)
        self.last_saved_step = state.step
        return state


__all__ = [
    "CHECKPOINTS",
    "Checkpointer",
    "TrainState",
    "adapter_state_for_save",
    "adapter_tensors",
    "canonical_adapter_config",
    "load_adapter_tensors",
    "load_optimizer_state",
    "optimizer_state",
    "optimizer_state_from_files",
    "optimizer_state_to_files",
    "write_adapter",
]
