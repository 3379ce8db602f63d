"""LoRA DPO / IPO / MODPO trainer on accelerate: one adapter per call.

What `train_adapter` does, in named steps:
1. `build_session`: loads the policy (safetensors, trust_remote_code=False), wraps it
   with a peft LoRA adapter (all linear layers by default), AdamW + scheduler under
   `accelerate` (gradient accumulation; mixed precision "no" on CPU, "bf16" on CUDA with
   the gpu profile), seeded;
2. `prepare_data`: tokenizes (truncation counted, data.py), lays out the seeded mixture
   stream of the sources (sources.py) and the pairs the step budget will visit, and has
   a live margin rater score those pairs (MODPO, margins.py);
3. `Checkpointer` (checkpoint.py): resumes from the latest checkpoint of an identical run
   (same config, data, base model, seed, world size, selection), giving the same losses
   as an uninterrupted run;
4. `reference_logps`: the reference log-probs ONCE, with the same model and the adapter
   disabled (no second copy of the weights), for exactly the visited training pairs and
   the validation pairs, cached beside the checkpoints so a resumed run reuses them;
5. `train_loop`: AdamW steps with a tqdm bar (loss, reward margin); every `eval_steps`
   `evaluate` logs the DPO validation loss/accuracy/margin and, with a `Selection`,
   greedy answers to val prompts scored on the objective (selection.py); the best
   adapter by `early_stopping_metric` is kept in memory and in the checkpoints; stops
   after `patience` evaluations without improvement;
6. `finalize`: writes the best adapter, train_log.json and meta.json into a temporary
   folder that replaces `output_dir` in one rename (paretoflow.io.atomic_dir); meta.json
   is written last and lists the hashes of the other files. A folder without meta.json
   is incomplete (`paretoflow.align.is_complete`): a killed run never leaves an adapter
   that looks finished.

Outputs in `output_dir`: adapter_model.safetensors, adapter_config.json (peft),
train_log.json (per-step loss/margin/accuracy/lr/tokens, validation curves) and
meta.json (paretoflow/align/meta.py: objective and weights, base model path +
fingerprint, pairs per source seen and truncated, selection, tokens, wall time,
versions, file hashes).

Departures from the papers: LoRA instead of full fine-tuning (so the reference is the
base with the adapter off); checkpoints are selected on the judged objective, not on
the DPO loss.

Multi-GPU: the same code runs under accelerate's launcher; every process loads the
model, the reference pass and validation are sharded across processes and gathered,
each optimizer step consumes batch_size × gradient_accumulation_steps × num_processes
pairs, selection answers are generated on every process (greedy: identical), and only
the main process writes files. Under FSDP (FSDP2, also on CPU: fsdp.py) saved state is
gathered first, resumed state sliced into the shards, and generation runs in `full_weights`:

    accelerate launch --num_processes 4 -m paretoflow.cli --params params.yaml align --all

(with `project.profile: gpu` for bf16 and the larger budget). Several CPU processes
(gloo; checked with 2) run under torchrun:
`python -m torch.distributed.run --nproc_per_node 2 -m paretoflow.cli align --all`, or
sharded with `accelerate launch --config_file configs/accelerate/cpu-fsdp-2proc.yaml`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from paretoflow.align.checkpoint import (
    CHECKPOINTS,
    Checkpointer,
    TrainState,
    adapter_state_for_save,
    adapter_tensors,
    load_adapter_tensors,
    optimizer_state_from_files,
    optimizer_state_to_files,
    write_adapter,
)
from paretoflow.align.data import (
    PairExample,
    TokenizedPair,
    TruncationCounts,
    collate_pairs,
    even_shard,
    examples_digest,
    margin_tensors,
    tokenize_pairs,
)
from paretoflow.align.fsdp import full_weights, is_sharded
from paretoflow.align.logps import ResponseLogps
from paretoflow.align.margins import MarginRater
from paretoflow.align.meta import META_FILE, seal
from paretoflow.align.session import Session, build_session, resolve_mixed_precision
from paretoflow.align.selection import Selection, base_answers, generate_answers, score_answers
from paretoflow.align.sources import MixtureStream, PairStream, visited_counts
from paretoflow.io import atomic_write
from paretoflow.losses import LOSSES, modpo_loss

if TYPE_CHECKING:
    from paretoflow.stages.align import AlignBudget

log = logging.getLogger(__name__)

REFERENCE_FILE = "reference_logps.safetensors"
OUTPUT_FILES = ("adapter_model.safetensors", "adapter_config.json", "train_log.json", "README.md")


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
    # that evaluate right away; None on a run that stopped before completing. Under FSDP
    # it holds this process's shards (reload the saved adapter to evaluate it).
    model: Any = field(default=None, repr=False)


@dataclass
class PairData:
    """Training and validation pairs, tokenized, with margins and reference log-probs."""

    train_examples: list[PairExample]
    val_examples: list[PairExample]
    train: list[TokenizedPair]
    val: list[TokenizedPair]
    stream: Any  # PairStream / MixtureStream
    used: list[int]  # train pair indices the step budget visits (sorted, distinct)
    train_margins: tuple[torch.Tensor, torch.Tensor]
    val_margins: tuple[torch.Tensor, torch.Tensor]
    train_reference: torch.Tensor | None = None
    val_reference: torch.Tensor | None = None


# ------------------------------------------------------------------ small helpers


def micro_batch_indices(stream, config: AlignBudget, step: int, micro: int,
                        process_index: int, num_processes: int) -> list[int]:
    """This process's pair indices for optimizer step `step`, micro-batch `micro`."""
    global_micro = step * config.gradient_accumulation_steps + micro
    start = (global_micro * num_processes + process_index) * config.batch_size
    return stream.take(start, config.batch_size)


def visited_positions(stream, config: AlignBudget, steps: int, num_processes: int) -> list[int]:
    """Train pair index of every stream position the first `steps` steps consume."""
    return stream.take(0, steps * config.gradient_accumulation_steps * num_processes * config.batch_size)


def _to_device(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


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


def _improved(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if metric == "val_loss" else value > best


def _run_fingerprint(config: AlignBudget, policy_fingerprint: str, data: PairData, seed: int,
                     weights, objective_index, num_processes: int, stream_layout, selection) -> str:
    payload = json.dumps([config.model_dump(mode="json", exclude={"lanes"}),  # lanes: jobs at once, not the run's
                          policy_fingerprint, examples_digest(data.train_examples), examples_digest(data.val_examples),
                          seed, weights, objective_index, num_processes, stream_layout,
                          selection.describe() if selection else None], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# ------------------------------------------------------------------ step 1: the session (session.py)


# ------------------------------------------------------------------ step 2: the data


def _apply_margins(examples: list[PairExample], indices: list[int], rater: MarginRater) -> list[PairExample]:
    """Copies of `examples` with the rater's margins on `indices` (others unchanged)."""
    if not indices:
        return list(examples)
    chosen, rejected = rater([examples[i] for i in indices])
    out = list(examples)
    for row, i in enumerate(indices):
        out[i] = replace(examples[i], chosen_margins=[float(x) for x in chosen[row]],
                         rejected_margins=[float(x) for x in rejected[row]])
    return out


def prepare_data(session: Session, train_examples: list[PairExample], val_examples: list[PairExample],
                 seed: int, source_sizes: list[int] | None, source_weights: list[float] | None,
                 margin_rater: MarginRater | None) -> PairData:
    """Tokenize, lay out the mixture stream, find the visited pairs, rate their margins."""
    config, accelerator = session.config, session.accelerator
    if source_sizes is None:
        stream = PairStream(len(train_examples), seed)
    else:
        if sum(source_sizes) != len(train_examples):
            raise ValueError(f"source sizes {source_sizes} do not add up to {len(train_examples)} train pairs")
        stream = MixtureStream(source_sizes, source_weights, seed)
    positions = visited_positions(stream, config, config.max_steps, accelerator.num_processes)
    used = sorted(set(positions))
    if margin_rater is not None:
        train_examples = _apply_margins(train_examples, used, margin_rater)
        val_examples = _apply_margins(val_examples, list(range(len(val_examples))), margin_rater)
    train, _ = tokenize_pairs(session.tokenizer, train_examples, config.max_length, config.max_prompt_tokens)
    val, _ = tokenize_pairs(session.tokenizer, val_examples, config.max_length, config.max_prompt_tokens)
    return PairData(train_examples, val_examples, train, val, stream, used,
                    margin_tensors(train_examples), margin_tensors(val_examples))


# ------------------------------------------------------------------ step 4: reference log-probs


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
    mine, real = even_shard(ordered, world, rank)
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
    # -1 marks the repeated pairs that only kept the shards even
    local_index = torch.tensor(mine[:real] + [-1] * (len(mine) - real), dtype=torch.long,
                               device=accelerator.device)
    if world > 1:
        local_values, local_index = accelerator.gather(local_values), accelerator.gather(local_index)
    local_values, local_index = local_values.float().cpu(), local_index.cpu()
    keep = local_index >= 0
    out[local_index[keep]] = local_values[keep]
    return out


def _reference_key(session: Session, data: PairData, policy_fingerprint: str) -> str:
    """Content key of a reference pass: base weights, precision, and the exact token ids scored."""
    h = hashlib.sha256(json.dumps([policy_fingerprint, session.mixed_precision,
                                   session.accelerator.device.type]).encode())
    for i in data.used:
        pair = data.train[i]
        h.update(json.dumps([i, pair.prompt_ids, pair.chosen_ids, pair.rejected_ids]).encode())
    h.update(b"val")
    for pair in data.val:
        h.update(json.dumps([pair.prompt_ids, pair.chosen_ids, pair.rejected_ids]).encode())
    return h.hexdigest()[:20]


def reference_logps(session: Session, data: PairData, checkpointer: Checkpointer, resumed: bool,
                    progress: bool, cache_dir: Path | None = None, policy_fingerprint: str = "") -> None:
    """Fill data.train_reference / data.val_reference: from the checkpoint, the shared
    content-keyed cache (another adapter scored the same pairs), or computed."""
    path = checkpointer.root / REFERENCE_FILE
    shared = (Path(cache_dir) / f"reference-{_reference_key(session, data, policy_fingerprint)}.safetensors"
              if cache_dir is not None else None)
    for source in ([path] if resumed else []) + ([shared] if shared is not None else []):
        if source.exists():
            cached = load_file(source)
            data.train_reference, data.val_reference = cached["train"], cached["val"]
            break
    else:
        _compute_reference(session, data, progress)
    if session.accelerator.is_main_process:
        tensors = {"train": data.train_reference.contiguous(), "val": data.val_reference.contiguous()}
        for target in (path, shared):
            if target is not None and not target.exists():  # atomic: another adapter may read it
                atomic_write(target, lambda tmp: save_file(tensors, tmp))


def _compute_reference(session: Session, data: PairData, progress: bool) -> None:
    accelerator, batch = session.accelerator, session.config.eval_batch_size
    # The prepared (DDP/FSDP-wrapped) scorer: under FSDP the unwrapped one holds only shards.
    with session.peft_model.disable_adapter():
        data.train_reference = _score_pairs(session.scorer, data.train, data.used, accelerator, batch,
                                            session.pad_token_id, "reference (train)", progress)
        data.val_reference = _score_pairs(session.scorer, data.val, list(range(len(data.val))),
                                          accelerator, batch, session.pad_token_id, "reference (val)", progress)


# ------------------------------------------------------------------ step 5: train, evaluate, select


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


def train_step(session: Session, data: PairData, state: TrainState, loss_fn) -> dict[str, float]:
    """One optimizer step (all micro-batches); returns the history entry."""
    accelerator, config = session.accelerator, session.config
    world, rank = accelerator.num_processes, accelerator.process_index
    step_losses, step_margins, step_tokens = [], [], 0
    started = time.perf_counter()
    for micro in range(config.gradient_accumulation_steps):
        indices = micro_batch_indices(data.stream, config, state.step, micro, rank, world)
        with accelerator.accumulate(session.scorer):
            losses, chosen_rewards, rejected_rewards, tokens = _batch_loss(
                session.scorer, data.train, indices, data.train_reference, data.train_margins, loss_fn,
                accelerator, session.pad_token_id)
            accelerator.backward(losses.mean())
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(session.trainable, config.max_grad_norm)
            session.optimizer.step()
            session.optimizer.zero_grad()
        step_losses.append(accelerator.gather(losses.detach()).float().cpu())
        step_margins.append(accelerator.gather((chosen_rewards - rejected_rewards).detach()).float().cpu())
        step_tokens += int(accelerator.reduce(torch.tensor(tokens, device=accelerator.device), "sum"))
    session.scheduler.step()
    state.step += 1
    state.tokens_seen += step_tokens
    losses_all, margins_all = torch.cat(step_losses), torch.cat(step_margins)
    entry = {
        "step": state.step,
        "loss": float(losses_all.mean()),
        "margin": float(margins_all.mean()),
        "accuracy": float((margins_all > 0).float().mean()),
        "lr": float(session.scheduler.get_last_lr()[0]),
        "tokens": step_tokens,
        "step_time_s": time.perf_counter() - started,
    }
    state.history.append(entry)
    return entry


def evaluate(session: Session, data: PairData, loss_fn, selection: Selection | None,
             progress: bool) -> dict[str, float]:
    """DPO validation metrics (if val pairs) and the objective's score (if a selection)."""
    metrics: dict[str, float] = {}
    if data.val:
        policy = _score_pairs(session.scorer, data.val, list(range(len(data.val))), session.accelerator,
                              session.config.eval_batch_size, session.pad_token_id, "validate", progress)
        losses, chosen, rejected = loss_fn(policy[:, 0], policy[:, 1], data.val_reference[:, 0],
                                           data.val_reference[:, 1], data.val_margins[0], data.val_margins[1])
        margin = chosen - rejected
        metrics.update(val_loss=float(losses.mean()), val_accuracy=float((margin > 0).float().mean()),
                       val_margin=float(margin.mean()))
    if selection is not None:
        started = time.perf_counter()
        with full_weights(session.scorer):  # generate() bypasses the sharded root's forward
            answers = generate_answers(session.peft_model, session.tokenizer, selection)
        metrics.update(score_answers(selection, answers))
        metrics["selection_time_s"] = time.perf_counter() - started
    return metrics


def _consider(state: TrainState, session: Session, metric: str, metrics: dict[str, float], patience: int,
              selection: Selection | None = None) -> bool:
    """Record an evaluation; keep the adapter when it is the best eligible one so far."""
    base = next((e for e in state.evaluations if e["step"] == 0), None)
    eligible = selection is None or selection.eligible(metrics, base)
    state.evaluations.append({"step": state.step, **metrics, **({} if eligible else {"eligible": False})})
    if eligible and _improved(metric, metrics[metric], state.best_metric):
        state.best_metric, state.best_step, state.evals_without_improvement = metrics[metric], state.step, 0
        state.best_adapter = adapter_tensors(session.peft_model, session.scorer)
        return True
    state.evals_without_improvement += 1
    state.stopped_early = state.evals_without_improvement >= patience
    return False


def evaluate_base(session: Session, state: TrainState, selection: Selection, policy_fingerprint: str,
                  progress: bool) -> None:
    """Step 0: the base policy (the LoRA update is zero) is the first selection candidate."""
    started = time.perf_counter()
    with full_weights(session.scorer):
        answers = base_answers(session.peft_model, session.tokenizer, selection, policy_fingerprint, progress)
    metrics = {**score_answers(selection, answers), "selection_time_s": time.perf_counter() - started}
    _consider(state, session, "val_objective", metrics, patience=math.inf)


def train_loop(session: Session, data: PairData, state: TrainState, loss_fn, metric: str,
               selection: Selection | None, checkpointer: Checkpointer, clock: Callable[[], float],
               stop_at_step: int | None, progress: bool, name: str) -> None:
    """Steps until max_steps, early stop, or `stop_at_step` (checkpointed there)."""
    config, accelerator = session.config, session.accelerator
    evaluates = bool(data.val) if metric != "val_objective" else selection is not None
    bar = tqdm(total=config.max_steps, initial=state.step, desc=f"align {name}", unit="step",
               disable=not (progress and accelerator.is_main_process))
    session.scorer.train()
    while state.step < config.max_steps and not state.stopped_early:
        if stop_at_step is not None and state.step >= stop_at_step:
            break
        entry = train_step(session, data, state, loss_fn)
        bar.update(1)
        postfix = {"loss": f"{entry['loss']:.4f}", "margin": f"{entry['margin']:.3f}"}
        if evaluates and (state.step % config.eval_steps == 0 or state.step == config.max_steps):
            metrics = evaluate(session, data, loss_fn, selection, progress)
            _consider(state, session, metric, metrics, config.patience, selection)
            postfix[metric] = f"{metrics[metric]:.4f}"
        bar.set_postfix(**postfix)
        if state.step % config.checkpoint_steps == 0 or (stop_at_step is not None and state.step >= stop_at_step):
            checkpointer.save(state, session.peft_model, session.optimizer, session.scheduler, clock())
    bar.close()
    if not evaluates:  # nothing to select on: the final adapter is the result
        state.best_step, state.best_adapter = state.step, adapter_tensors(session.peft_model, session.scorer)


# ------------------------------------------------------------------ step 6: outputs, atomically


def _counts(examples: list[PairExample], tokenized: list[TokenizedPair], indices: list[int],
            positions: list[int]) -> dict[str, Any]:
    """Per kind: distinct pairs seen, pair-visits, truncation of the seen pairs, per dataset."""
    visits = visited_counts(examples, positions)
    out: dict[str, Any] = {}
    for kind in sorted({examples[i].kind for i in indices}):
        mine = [i for i in indices if examples[i].kind == kind]
        out[kind] = {
            "pairs": len(mine),
            "visits": sum(v["visits"] for v in visits.get(kind, {}).values()),
            "truncation": TruncationCounts.of([tokenized[i] for i in mine]).as_dict(),
            "datasets": visits.get(kind, {}),
        }
    return out


def data_summary(data: PairData, config: AlignBudget, steps: int, num_processes: int) -> dict[str, Any]:
    """What the adapter saw: per-kind counts and truncation of visited train pairs and val pairs."""
    positions = visited_positions(data.stream, config, steps, num_processes)
    seen = sorted(set(positions))
    val_indices = list(range(len(data.val)))
    return {
        "train_seen": _counts(data.train_examples, data.train, seen, positions),
        "val": _counts(data.val_examples, data.val, val_indices, val_indices),
        "truncation": {"train": TruncationCounts.of([data.train[i] for i in seen]).as_dict(),
                       "val": TruncationCounts.of(data.val).as_dict()},
    }


def finalize(session: Session, output_dir: Path, state: TrainState, train_log: dict[str, Any],
             meta: dict[str, Any]) -> None:
    """Best adapter + train_log.json + meta.json (last, with file hashes) in one folder rename."""
    from paretoflow.io import atomic_dir, write_json

    accelerator = session.accelerator
    load_adapter_tensors(session.peft_model, state.best_adapter, session.scorer)
    session.peft_model.eval()
    gathered = adapter_state_for_save(session.peft_model, session.scorer)  # collective under FSDP
    if accelerator.is_main_process:
        with atomic_dir(output_dir) as tmp:
            write_adapter(session.peft_model, tmp, gathered)
            write_json(tmp / "train_log.json", train_log)
            seal(tmp, meta)
    accelerator.wait_for_everyone()


def _result_metrics(state: TrainState, summary: dict[str, Any], wall_time: float) -> dict[str, float]:
    final = state.history[-1] if state.history else {}
    best_eval = next((e for e in state.evaluations if e["step"] == state.best_step), {})
    base_eval = next((e for e in state.evaluations if e["step"] == 0), {})
    metrics: dict[str, float] = {
        "train_loss": final.get("loss", math.nan),
        "train_margin": final.get("margin", math.nan),
        "steps": state.step,
        "best_step": state.best_step,
        "tokens_seen": state.tokens_seen,
        "wall_time_s": wall_time,
        "tokens_per_s": state.tokens_seen / max(sum(h["step_time_s"] for h in state.history), 1e-9),
        "step_time_s": sum(h["step_time_s"] for h in state.history) / max(len(state.history), 1),
        **{k: v for k, v in best_eval.items() if k != "step"},
    }
    if "val_objective" in base_eval:
        metrics["base_val_objective"] = base_eval["val_objective"]
    for kind, seen in summary["train_seen"].items():
        metrics[f"pairs_seen_{kind}"] = seen["pairs"]
        metrics[f"pairs_truncated_{kind}"] = seen["truncation"]["pairs_truncated"]
    return metrics


# ------------------------------------------------------------------ the entry point


@dataclass
class RunSpec:
    """What one train_adapter call was asked to do (goes into meta.json)."""

    config: AlignBudget
    output_dir: Path
    policy_path: str
    policy_fingerprint: str
    loss_name: str
    metric: str
    objective_weights: list[float] | None
    objective_index: int | None
    seed: int
    profile: str
    selection: Selection | None
    meta: dict[str, Any]


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
    selection: Selection | None = None,
    source_sizes: list[int] | None = None,
    source_weights: list[float] | None = None,
    margin_rater: MarginRater | None = None,
    cache_dir: str | Path | None = None,
) -> TrainResult:
    """Train one LoRA adapter with DPO/IPO (no weights) or MODPO (weights + objective_index).

    `selection` selects checkpoints on the objective (needed by the default
    `early_stopping_metric: val_objective`); `source_sizes`/`source_weights` mix the
    train examples (laid end to end per source) by weight; `margin_rater` scores the
    MODPO margins of the visited pairs; `cache_dir` shares reference passes across adapters
    (content-keyed). `stop_at_step` ends the run early after
    checkpointing (a time box, or a simulated preemption in tests); the next call with
    `resume=True` continues from there.
    """
    from paretoflow.models import model_fingerprint

    if not train_examples:
        raise ValueError("no training pairs: nothing to train on")
    if config.early_stopping_metric == "val_objective" and selection is None:
        raise ValueError("early_stopping_metric val_objective needs a selection (prompts + scorer); "
                         "pass one, or select on val_loss")
    loss_name, loss_fn = make_loss_fn(config, objective_weights, objective_index)
    spec = RunSpec(config, Path(output_dir), str(policy_path), model_fingerprint(policy_path), loss_name,
                   config.early_stopping_metric, objective_weights, objective_index, seed, profile,
                   selection, dict(meta or {}))
    started = time.perf_counter()
    session = build_session(config, policy_path, seed, profile)
    data = prepare_data(session, train_examples, val_examples, seed, source_sizes, source_weights, margin_rater)
    run_fp = _run_fingerprint(config, spec.policy_fingerprint, data, seed, objective_weights, objective_index,
                              session.accelerator.num_processes, [source_sizes, source_weights], selection)
    checkpointer = Checkpointer(spec.output_dir, run_fp, session.accelerator, session.scorer, session.generator)
    found = checkpointer.latest() if resume else None
    if found is None:
        _start_fresh(spec.output_dir, checkpointer)
    reference_logps(session, data, checkpointer, found is not None, progress, cache_dir, spec.policy_fingerprint)
    if found is not None:
        state = checkpointer.restore(*found, session.peft_model, session.optimizer, session.scheduler)
        log.info("resumed from %s (step %d)", found[0], state.step)
    else:
        state = TrainState()
        if selection is not None and spec.metric == "val_objective":
            evaluate_base(session, state, selection, spec.policy_fingerprint, progress)
    clock = lambda: state.wall_time_s + time.perf_counter() - started  # noqa: E731
    train_loop(session, data, state, loss_fn, spec.metric, selection, checkpointer, clock, stop_at_step,
               progress, spec.output_dir.name)
    if state.step < config.max_steps and not state.stopped_early:  # stopped at stop_at_step
        if checkpointer.last_saved_step != state.step:
            checkpointer.save(state, session.peft_model, session.optimizer, session.scheduler, clock())
        return TrainResult(spec.output_dir, state.step, state.best_step, state.best_metric, False, False,
                           state.tokens_seen, clock())
    return _complete(spec, session, data, state, clock())


def _start_fresh(output_dir: Path, checkpointer: Checkpointer) -> None:
    """Mark any earlier adapter incomplete (meta.json first), then clear its files."""
    if checkpointer.accelerator.is_main_process:
        (output_dir / META_FILE).unlink(missing_ok=True)
        for name in OUTPUT_FILES:
            (output_dir / name).unlink(missing_ok=True)
        checkpointer.clear()
    checkpointer.accelerator.wait_for_everyone()
    output_dir.mkdir(parents=True, exist_ok=True)


def _complete(spec: RunSpec, session: Session, data: PairData, state: TrainState, wall_time: float) -> TrainResult:
    """Summaries, then the atomic write of the adapter folder."""
    summary = data_summary(data, spec.config, state.step, session.accelerator.num_processes)
    metrics = _result_metrics(state, summary, wall_time)
    selection = spec.selection.describe() if spec.selection else None
    train_log = {"steps": state.history, "validation": state.evaluations,
                 "early_stopping_metric": spec.metric, "selection": selection}
    finalize(session, spec.output_dir, state, train_log, _meta(spec, session, data, state, summary, metrics,
                                                               wall_time))
    return TrainResult(spec.output_dir, state.step, state.best_step, state.best_metric, state.stopped_early,
                       True, state.tokens_seen, wall_time, metrics, model=session.peft_model)


def _meta(spec: RunSpec, session: Session, data: PairData, state: TrainState, summary: dict[str, Any],
          metrics: dict[str, float], wall_time: float) -> dict[str, Any]:
    import peft
    import transformers

    return {
        "name": spec.output_dir.name,
        **spec.meta,
        "loss": spec.loss_name,
        "objective_weights": spec.objective_weights,
        "objective_index": spec.objective_index,
        "base_model_path": spec.policy_path,
        "base_model_fingerprint": spec.policy_fingerprint,
        "train_pairs": len(data.train_examples),
        "val_pairs": len(data.val_examples),
        "train_pairs_digest": examples_digest(data.train_examples),
        "val_pairs_digest": examples_digest(data.val_examples),
        "seen": {"train": summary["train_seen"], "val": summary["val"]},
        "truncation": summary["truncation"],
        "selection": spec.selection.describe() if spec.selection else None,
        "tokens_seen": state.tokens_seen,
        "wall_time_s": wall_time,
        "steps": state.step,
        "best_step": state.best_step,
        "best_metric": {spec.metric: state.best_metric},
        "stopped_early": state.stopped_early,
        "seed": spec.seed,
        "profile": spec.profile,
        "mixed_precision": session.mixed_precision,
        "num_processes": session.accelerator.num_processes,
        **({"sharding": "fsdp"} if is_sharded(session.scorer) else {}),
        "config": spec.config.model_dump(mode="json"),
        "metrics": metrics,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__},
    }


__all__ = [
    "CHECKPOINTS",
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
