"""LoRA DPO / IPO / MODPO trainer on accelerate: one adapter per call.

What it does, in order:
1. loads the policy (safetensors, trust_remote_code=False) and wraps it with a peft LoRA
   adapter (all linear layers by default);
2. computes the reference log-probs ONCE, with the same model and the adapter disabled
   (`with model.disable_adapter()`: no second copy of the weights), for exactly the
   training pairs the step budget will visit and for the validation pairs; they are
   cached in the checkpoint folder so a resumed run reuses them bit for bit;
3. trains with AdamW under `accelerate` (gradient accumulation, mixed precision "no" on
   CPU, "bf16" on CUDA with the gpu profile), seeded, with a tqdm bar showing the loss
   and the reward margin;
4. validates every `eval_steps` (loss, pair accuracy, margin) and keeps the best adapter
   in the output folder; stops after `patience` evaluations without improvement (one
   objective alone is gamed within minutes: shared STACK.md);
5. checkpoints every `checkpoint_steps` (adapter, optimizer, scheduler, RNG, step; tensors
   as safetensors, the rest as JSON, no pickle) and resumes from the latest checkpoint
   of an identical run (same config, data, base model, seed, world size), giving the same
   losses as an uninterrupted run.

Outputs in `output_dir`: adapter_model.safetensors, adapter_config.json (peft),
train_log.json (per-step loss/margin/accuracy/lr/tokens, validation curves) and
meta.json (objective and weights, base model path + fingerprint, data hashes,
truncation counts, tokens seen, wall time, versions).

Departures from the papers: LoRA instead of full fine-tuning (so the reference is the
base with the adapter off); MODPO margins are judge ratings, not trained reward models.

Multi-GPU: the same code runs under accelerate's launcher; every process loads the
model, the reference pass and validation are sharded across processes and gathered,
each optimizer step consumes batch_size × gradient_accumulation_steps × num_processes
pairs, and only the main process writes files:

    accelerate launch --num_processes 4 -m paretoflow.cli --params params.yaml align --all

(with `project.profile: gpu` for bf16 and the larger budget). Several CPU processes
(gloo; checked with 2) run under torchrun:
`python -m torch.distributed.run --nproc_per_node 2 -m paretoflow.cli align --all`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from paretoflow.align.data import (
    PairExample,
    TokenizedPair,
    TruncationCounts,
    collate_pairs,
    examples_digest,
    margin_tensors,
    tokenize_pairs,
)
from paretoflow.align.logps import ResponseLogps
from paretoflow.config import AlignBudget
from paretoflow.losses import LOSSES, modpo_loss

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
REFERENCE_FILE = "reference_logps.safetensors"
OUTPUT_FILES = ("adapter_model.safetensors", "adapter_config.json", "train_log.json", "meta.json", "README.md")


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    best_step: int | None
    best_metric: float | None
    stopped_early: bool
    completed: bool
    tokens_seen: int
    wall_time_s: float
    metrics: dict[str, float] = field(default_factory=dict)
    # The trained peft model in memory, holding the best adapter (as saved), for callers
    # that evaluate right away; None on a run that stopped before completing.
    model: Any = field(default=None, repr=False)


# ------------------------------------------------------------------ small helpers


def resolve_mixed_precision(setting: str, profile: str) -> str:
    """'auto' → bf16 on CUDA with the gpu profile, otherwise no mixed precision."""
    if setting != "auto":
        return setting
    return "bf16" if (profile == "gpu" and torch.cuda.is_available()) else "no"


def _epoch_permutation(n: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


class PairStream:
    """Endless seeded stream of pair indices: epoch e is a fixed permutation of 0..n-1.

    Position p maps to (epoch p // n, offset p % n), so any step's batch is a pure
    function of (seed, step): resuming needs no sampler state.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._cache: dict[int, list[int]] = {}

    def at(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        if epoch not in self._cache:
            self._cache[epoch] = _epoch_permutation(self.n, self.seed, epoch)
        return self._cache[epoch][offset]

    def take(self, start: int, count: int) -> list[int]:
        return [self.at(p) for p in range(start, start + count)]


def micro_batch_indices(stream: PairStream, config: AlignBudget, step: int, micro: int,
                        process_index: int, num_processes: int) -> list[int]:
    """This process's pair indices for optimizer step `step`, micro-batch `micro`."""
    global_micro = step * config.gradient_accumulation_steps + micro
    start = (global_micro * num_processes + process_index) * config.batch_size
    return stream.take(start, config.batch_size)


def _to_device(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default, allow_nan=True))
    tmp.replace(path)


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


def _rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    return tensors


def _restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


# ------------------------------------------------------------------ the trainer


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


def make_loss_fn(config: AlignBudget, objective_weights: list[float] | None,
                 objective_index: int | None) -> tuple[str, Callable]:
    """(loss name, fn(policy_c, policy_r, ref_c, ref_r, margin_c, margin_r) → triple)."""
    if objective_weights is None:
        base = partial(LOSSES[config.loss], beta=config.beta)
        return config.loss, lambda pc, pr, rc, rr, mc, mr: base(pc, pr, rc, rr)
    if objective_index is None:
        raise ValueError("MODPO needs objective_index (the objective whose pairs are trained)")
    if config.loss != "dpo":
        raise ValueError(f"MODPO is defined on the DPO loss; got loss={config.loss!r}")
    fn = partial(modpo_loss, objective_weights=objective_weights, objective_index=objective_index,
                 beta=config.beta)
    return "modpo", lambda pc, pr, rc, rr, mc, mr: fn(pc, pr, rc, rr, mc, mr)


def _score_pairs(scorer: ResponseLogps, tokenized: list[TokenizedPair], indices: list[int],
                 accelerator, batch_size: int, pad_token_id: int, desc: str,
                 progress: bool) -> torch.Tensor:
    """(len(tokenized), 2) chosen/rejected summed log-probs for `indices` (others NaN).

    Sharded across processes and gathered; batches sorted by length to pad less.
    """
    out = torch.full((len(tokenized), 2), math.nan)
    if not indices:
        return out
    world, rank = accelerator.num_processes, accelerator.process_index
    ordered = sorted(indices, key=lambda i: len(tokenized[i].prompt_ids)
                     + max(len(tokenized[i].chosen_ids), len(tokenized[i].rejected_ids)))
    per_process = math.ceil(len(ordered) / world)
    mine = ordered[rank * per_process: (rank + 1) * per_process]
    values = []
    was_training = scorer.training
    scorer.eval()
    bar = tqdm(total=math.ceil(len(mine) / batch_size), desc=desc, unit="batch",
               disable=not (progress and accelerator.is_main_process), leave=False)
    with torch.no_grad():
        for start in range(0, len(mine), batch_size):
            chunk = mine[start: start + batch_size]
            batch = _to_device(collate_pairs([tokenized[i] for i in chunk], pad_token_id), accelerator.device)
            with accelerator.autocast():
                logps = scorer(**batch).float()
            values.append(torch.stack([logps[: len(chunk)], logps[len(chunk):]], dim=1))
            bar.update(1)
    bar.close()
    scorer.train(was_training)
    local_values = torch.cat(values) if values else torch.zeros((0, 2), device=accelerator.device)
    local_index = torch.tensor(mine, dtype=torch.long, device=accelerator.device)
    if world > 1:  # pad to equal length for gather; -1 marks padding
        pad = per_process - len(mine)
        local_values = torch.cat([local_values, torch.zeros((pad, 2), device=local_values.device)])
        local_index = torch.cat([local_index, torch.full((pad,), -1, dtype=torch.long, device=local_index.device)])
        local_values, local_index = accelerator.gather(local_values), accelerator.gather(local_index)
    local_values, local_index = local_values.float().cpu(), local_index.cpu()
    keep = local_index >= 0
    out[local_index[keep]] = local_values[keep]
    return out


def _batch_loss(scorer, tokenized, indices, reference, margins, loss_fn, accelerator, pad_token_id):
    batch = _to_device(collate_pairs([tokenized[i] for i in indices], pad_token_id), accelerator.device)
    with accelerator.autocast():
        logps = scorer(**batch).float()
    n = len(indices)
    idx = torch.tensor(indices)
    ref = reference[idx].to(logps.device)
    margin_chosen = margins[0][idx].to(logps.device)
    margin_rejected = margins[1][idx].to(logps.device)
    losses, chosen_rewards, rejected_rewards = loss_fn(
        logps[:n], logps[n:], ref[:, 0], ref[:, 1], margin_chosen, margin_rejected
    )
    tokens = int(batch["attention_mask"].sum())
    return losses, chosen_rewards, rejected_rewards, tokens


def _evaluate(scorer, tokenized, reference, margins, loss_fn, accelerator, config, pad_token_id,
              progress) -> dict[str, float]:
    indices = list(range(len(tokenized)))
    policy = _score_pairs(scorer, tokenized, indices, accelerator, config.eval_batch_size,
                          pad_token_id, "validate", progress)
    losses, chosen, rejected = loss_fn(policy[:, 0], policy[:, 1], reference[:, 0], reference[:, 1],
                                       margins[0], margins[1])
    margin = chosen - rejected
    return {
        "val_loss": float(losses.mean()),
        "val_accuracy": float((margin > 0).float().mean()),
        "val_margin": float(margin.mean()),
    }


def _improved(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if metric == "val_loss" else value > best


def _run_fingerprint(config: AlignBudget, policy_fingerprint: str, train_digest: str, val_digest: str,
                     seed: int, weights, objective_index, num_processes: int) -> str:
    payload = json.dumps([config.model_dump(mode="json"), policy_fingerprint, train_digest, val_digest,
                          seed, weights, objective_index, num_processes], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _latest_checkpoint(output_dir: Path) -> Path | None:
    folders = sorted((output_dir / CHECKPOINTS).glob("step-*"))
    for folder in reversed(folders):
        if (folder / "trainer_state.json").exists():  # written last: marks a complete checkpoint
            return folder
    return None


def train_adapter(
    config: AlignBudget,
    policy_path: str | Path,
    train_examples: list[PairExample],
    val_examples: list[PairExample],
    output_dir: str | Path,
    *,
    objective_weights: list[float] | None = None,
    objective_index: int | None = None,
    seed: int = 0,
    profile: str = "cpu",
    meta: dict[str, Any] | None = None,
    resume: bool = True,
    stop_at_step: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train one LoRA adapter with DPO/IPO (no weights) or MODPO (weights + objective_index).

    `stop_at_step` ends the run early after checkpointing (a time box, or a simulated
    preemption in tests); the next call with `resume=True` continues from there.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from paretoflow.models import load_tokenizer, model_fingerprint

    if not train_examples:
        raise ValueError("no training pairs: nothing to train on")
    output_dir = Path(output_dir)
    loss_name, loss_fn = make_loss_fn(config, objective_weights, objective_index)
    started = time.perf_counter()

    mixed_precision = resolve_mixed_precision(config.mixed_precision, profile)
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        cpu=not torch.cuda.is_available(),
    )
    world, rank = accelerator.num_processes, accelerator.process_index
    set_seed(seed)

    tokenizer = load_tokenizer(str(policy_path))
    pad_token_id = tokenizer.pad_token_id
    train_tokenized, train_counts = tokenize_pairs(tokenizer, train_examples, config.max_length,
                                                   config.max_prompt_tokens)
    val_tokenized, val_counts = tokenize_pairs(tokenizer, val_examples, config.max_length,
                                               config.max_prompt_tokens)
    train_margins, val_margins = margin_tensors(train_examples), margin_tensors(val_examples)

    model = AutoModelForCausalLM.from_pretrained(
        str(policy_path), dtype=torch.float32, trust_remote_code=False, use_safetensors=True
    )
    target_modules = config.target_modules
    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=target_modules, bias="none", task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    scorer = ResponseLogps(model)
    trainable = [p for p in scorer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    scorer, optimizer = accelerator.prepare(scorer, optimizer)
    # The scheduler is stepped by hand once per optimizer step: accelerate's wrapper would
    # step it num_processes times per step.
    scheduler = _make_scheduler(optimizer, config)
    plain_scorer = accelerator.unwrap_model(scorer)
    peft_model = plain_scorer.model

    policy_fp = model_fingerprint(policy_path)
    run_fp = _run_fingerprint(config, policy_fp, examples_digest(train_examples),
                              examples_digest(val_examples), seed, objective_weights,
                              objective_index, world)
    stream = PairStream(len(train_tokenized), seed)
    used = sorted({i for step in range(config.max_steps)
                   for micro in range(config.gradient_accumulation_steps)
                   for r in range(world)
                   for i in micro_batch_indices(stream, config, step, micro, r, world)})

    # ---- resume or start fresh
    checkpoint_root = output_dir / CHECKPOINTS
    checkpoint = _latest_checkpoint(output_dir) if resume else None
    state: dict[str, Any] | None = None
    if checkpoint is not None:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        if state.get("run_fingerprint") != run_fp:
            log.warning("checkpoint %s belongs to a different run (config, data or base changed): "
                        "starting fresh", checkpoint)
            state, checkpoint = None, None
    if checkpoint is None and accelerator.is_main_process:
        for name in OUTPUT_FILES:
            (output_dir / name).unlink(missing_ok=True)
        shutil.rmtree(checkpoint_root, ignore_errors=True)
    accelerator.wait_for_everyone()
    output_dir.mkdir(parents=True, exist_ok=True)

    # ---- reference log-probs, once (cached beside the checkpoints)
    reference_path = checkpoint_root / REFERENCE_FILE
    if checkpoint is not None and reference_path.exists():
        cached = load_file(reference_path)
        train_reference, val_reference = cached["train"], cached["val"]
    else:
        with peft_model.disable_adapter():
            train_reference = _score_pairs(plain_scorer, train_tokenized, used, accelerator,
                                           config.eval_batch_size, pad_token_id, "reference (train)", progress)
            val_reference = _score_pairs(plain_scorer, val_tokenized, list(range(len(val_tokenized))),
                                         accelerator, config.eval_batch_size, pad_token_id,
                                         "reference (val)", progress)
        if accelerator.is_main_process:
            checkpoint_root.mkdir(parents=True, exist_ok=True)
            save_file({"train": train_reference.contiguous(), "val": val_reference.contiguous()},
                      reference_path, metadata={"run_fingerprint": run_fp})

    # ---- restore training state
    step, tokens_seen, history, evaluations = 0, 0, [], []
    best_metric, best_step, evals_without_improvement, stopped_early = None, None, 0, False
    if state is not None:
        from peft import set_peft_model_state_dict

        adapter = load_file(checkpoint / "adapter_model.safetensors")
        set_peft_model_state_dict(peft_model, adapter)
        optimizer_rest = json.loads((checkpoint / "optimizer.json").read_text())
        optimizer.load_state_dict(optimizer_state_from_files(
            load_file(checkpoint / "optimizer.safetensors"), optimizer_rest))
        scheduler.load_state_dict(state["scheduler"])
        _restore_rng(load_file(checkpoint / f"rng-{rank}.safetensors"))
        step, tokens_seen = state["step"], state["tokens_seen"]
        history, evaluations = state["history"], state["evaluations"]
        best_metric, best_step = state["best_metric"], state["best_step"]
        evals_without_improvement = state["evals_without_improvement"]
        started -= state["wall_time_s"]  # wall time accumulates across resumes
        if accelerator.is_main_process:
            log.info("resumed from %s (step %d)", checkpoint, step)

    last_checkpoint_step = step

    def save_checkpoint() -> None:
        from peft import get_peft_model_state_dict

        nonlocal last_checkpoint_step
        last_checkpoint_step = step
        folder = checkpoint_root / f"step-{step:06d}"
        if accelerator.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        save_file(_rng_tensors(), folder / f"rng-{rank}.safetensors")
        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            return
        adapter = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}
        save_file(adapter, folder / "adapter_model.safetensors")
        tensors, rest = optimizer_state_to_files(optimizer.state_dict())
        save_file(tensors, folder / "optimizer.safetensors")
        _write_json(folder / "optimizer.json", rest)
        _write_json(folder / "trainer_state.json", {
            "run_fingerprint": run_fp, "step": step, "tokens_seen": tokens_seen,
            "scheduler": scheduler.state_dict(), "history": history, "evaluations": evaluations,
            "best_metric": best_metric, "best_step": best_step,
            "evals_without_improvement": evals_without_improvement,
            "wall_time_s": time.perf_counter() - started,
        })
        # keep the two latest checkpoints: the newest may be cut short by a crash
        for old in sorted(checkpoint_root.glob("step-*"))[:-2]:
            shutil.rmtree(old, ignore_errors=True)

    def save_best() -> None:
        if accelerator.is_main_process:
            peft_model.save_pretrained(output_dir, safe_serialization=True)

    # ---- train
    metric_name = config.early_stopping_metric
    bar = tqdm(total=config.max_steps, initial=step, desc=f"align {output_dir.name}", unit="step",
               disable=not (progress and accelerator.is_main_process))
    scorer.train()
    while step < config.max_steps and not stopped_early:
        if stop_at_step is not None and step >= stop_at_step:
            break
        step_losses, step_margins, step_tokens = [], [], 0
        step_started = time.perf_counter()
        for micro in range(config.gradient_accumulation_steps):
            indices = micro_batch_indices(stream, config, step, micro, rank, world)
            with accelerator.accumulate(scorer):
                losses, chosen_rewards, rejected_rewards, tokens = _batch_loss(
                    scorer, train_tokenized, indices, train_reference, train_margins, loss_fn,
                    accelerator, pad_token_id)
                accelerator.backward(losses.mean())
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            step_losses.append(accelerator.gather(losses.detach()).float().cpu())
            step_margins.append(accelerator.gather((chosen_rewards - rejected_rewards).detach()).float().cpu())
            step_tokens += int(accelerator.reduce(torch.tensor(tokens, device=accelerator.device), "sum"))
        scheduler.step()
        step += 1
        tokens_seen += step_tokens
        losses_all, margins_all = torch.cat(step_losses), torch.cat(step_margins)
        entry = {
            "step": step,
            "loss": float(losses_all.mean()),
            "margin": float(margins_all.mean()),
            "accuracy": float((margins_all > 0).float().mean()),
            "lr": float(scheduler.get_last_lr()[0]),
            "tokens": step_tokens,
            "step_time_s": time.perf_counter() - step_started,
        }
        history.append(entry)
        bar.update(1)
        bar.set_postfix(loss=f"{entry['loss']:.4f}", margin=f"{entry['margin']:.3f}")

        if val_tokenized and (step % config.eval_steps == 0 or step == config.max_steps):
            metrics = _evaluate(scorer, val_tokenized, val_reference, val_margins, loss_fn, accelerator,
                                config, pad_token_id, progress)
            evaluations.append({"step": step, **metrics})
            if _improved(metric_name, metrics[metric_name], best_metric):
                best_metric, best_step, evals_without_improvement = metrics[metric_name], step, 0
                save_best()
            else:
                evals_without_improvement += 1
                stopped_early = evals_without_improvement >= config.patience
            bar.set_postfix(loss=f"{entry['loss']:.4f}", margin=f"{entry['margin']:.3f}",
                            **{metric_name: f"{metrics[metric_name]:.4f}"})
        if step % config.checkpoint_steps == 0 or (stop_at_step is not None and step >= stop_at_step):
            save_checkpoint()
    bar.close()

    completed = step >= config.max_steps or stopped_early
    wall_time = time.perf_counter() - started
    if not completed:
        if last_checkpoint_step != step:
            save_checkpoint()
        return TrainResult(output_dir, step, best_step, best_metric, stopped_early, False, tokens_seen, wall_time)

    if not val_tokenized:  # no validation: the final adapter is the result
        best_step = step
        save_best()
    accelerator.wait_for_everyone()
    if best_step != step:  # hand back the model as saved: the best adapter, not the last
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(peft_model, load_file(output_dir / "adapter_model.safetensors"))
    peft_model.eval()
    final = history[-1] if history else {}
    best_eval = next((e for e in evaluations if e["step"] == best_step), {})
    metrics = {
        "train_loss": final.get("loss", math.nan),
        "train_margin": final.get("margin", math.nan),
        "steps": step,
        "best_step": best_step,
        "tokens_seen": tokens_seen,
        "wall_time_s": wall_time,
        "tokens_per_s": tokens_seen / max(sum(h["step_time_s"] for h in history), 1e-9),
        **{k: v for k, v in best_eval.items() if k != "step"},
    }
    if accelerator.is_main_process:
        _write_json(output_dir / "train_log.json", {"steps": history, "validation": evaluations,
                                                    "early_stopping_metric": metric_name})
        import peft
        import transformers

        _write_json(output_dir / "meta.json", {
            **(meta or {}),
            "loss": loss_name,
            "objective_weights": objective_weights,
            "objective_index": objective_index,
            "base_model_path": str(policy_path),
            "base_model_fingerprint": policy_fp,
            "train_pairs": len(train_examples),
            "val_pairs": len(val_examples),
            "train_pairs_digest": examples_digest(train_examples),
            "val_pairs_digest": examples_digest(val_examples),
            "truncation": {"train": train_counts.as_dict(), "val": val_counts.as_dict()},
            "tokens_seen": tokens_seen,
            "wall_time_s": wall_time,
            "steps": step,
            "best_step": best_step,
            "best_metric": {metric_name: best_metric},
            "stopped_early": stopped_early,
            "seed": seed,
            "profile": profile,
            "mixed_precision": mixed_precision,
            "num_processes": world,
            "config": config.model_dump(mode="json"),
            "metrics": metrics,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "peft": peft.__version__},
        })
        shutil.rmtree(checkpoint_root, ignore_errors=True)  # the run is complete
    accelerator.wait_for_everyone()
    return TrainResult(output_dir, step, best_step, best_metric, stopped_early, True, tokens_seen,
                       wall_time, metrics, model=peft_model)


__all__ = [
    "PairStream",
    "TrainResult",
    "TruncationCounts",
    "make_loss_fn",
    "micro_batch_indices",
    "optimizer_state_from_files",
    "optimizer_state_to_files",
    "resolve_mixed_precision",
    "train_adapter",
]
