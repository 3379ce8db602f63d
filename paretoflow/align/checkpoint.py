"""Training state and checkpoints of one adapter run (resume gives the same losses).

A checkpoint folder `<output_dir>/checkpoints/step-NNNNNN/` holds: the current LoRA
weights, the best LoRA weights so far (what selection would ship), the optimizer state
(tensors as safetensors, the rest as JSON), each process's RNG state, and
`trainer_state.json` (step, logs, best, scheduler), written LAST: a folder without it
was cut short and is ignored. No pickle anywhere. The two latest checkpoints are kept
(the newest may be cut short by a crash). A checkpoint resumes only a run with the same
fingerprint (config, data, base model, seed, world size, selection).
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

from paretoflow.io import write_json

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


def adapter_tensors(peft_model) -> dict[str, torch.Tensor]:
    """CPU copies of the trainable LoRA weights (peft's adapter state dict)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().clone().contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}


def load_adapter_tensors(peft_model, tensors: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(peft_model, tensors)


# ------------------------------------------------------------------ optimizer / RNG state


def optimizer_state_to_files(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into safetensors tensors and JSON-able rest."""
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
        _, param_id, key = name.split(".", 2)
        state.setdefault(int(param_id), {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    return tensors


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


# ------------------------------------------------------------------ the checkpointer


class Checkpointer:
    """Saves and restores TrainState + model/optimizer/scheduler/RNG under `output_dir`."""

    def __init__(self, output_dir: Path, run_fingerprint: str, accelerator):
        self.root = Path(output_dir) / CHECKPOINTS
        self.run_fingerprint = run_fingerprint
        self.accelerator = accelerator
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
        accelerator = self.accelerator
        folder = self.root / f"step-{state.step:06d}"
        if accelerator.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        save_file(rng_tensors(), folder / f"rng-{accelerator.process_index}.safetensors")
        accelerator.wait_for_everyone()
        self.last_saved_step = state.step
        if not accelerator.is_main_process:
            return
        save_file(adapter_tensors(peft_model), folder / "adapter_model.safetensors")
        if state.best_adapter is not None:
            save_file(state.best_adapter, folder / BEST_FILE)
        tensors, rest = optimizer_state_to_files(optimizer.state_dict())
        save_file(tensors, folder / "optimizer.safetensors")
        write_json(folder / "optimizer.json", rest)
        write_json(folder / STATE_FILE, {**state.to_json(), "run_fingerprint": self.run_fingerprint,
                                         "scheduler": scheduler.state_dict(), "wall_time_s": wall_time_s})
        for old in sorted(self.root.glob("step-*"))[:-2]:
            shutil.rmtree(old, ignore_errors=True)

    def restore(self, folder: Path, payload: dict[str, Any], peft_model, optimizer, scheduler) -> TrainState:
        load_adapter_tensors(peft_model, load_file(folder / "adapter_model.safetensors"))
        rest = json.loads((folder / "optimizer.json").read_text())
        optimizer.load_state_dict(optimizer_state_from_files(load_file(folder / "optimizer.safetensors"), rest))
        scheduler.load_state_dict(payload["scheduler"])
        restore_rng(load_file(folder / f"rng-{self.accelerator.process_index}.safetensors"))
        state = TrainState.from_json(payload)
        if (folder / BEST_FILE).exists():
            state.best_adapter = load_file(folder / BEST_FILE)
        self.last_saved_step = state.step
        return state


__all__ = [
    "CHECKPOINTS",
    "Checkpointer",
    "TrainState",
    "adapter_tensors",
    "load_adapter_tensors",
    "optimizer_state_from_files",
    "optimizer_state_to_files",
]
