"""The align stage: one LoRA DPO expert per objective and MODPO policies for weight
vectors, via peft + accelerate (`paretoflow/align/`).

Config: `AlignConfig` (params.yaml `align`, budgets `AlignBudget`). Entry:
`run(params, root, objective=... | weights=...)`, one adapter per job of `jobs(params)`.
CLI: `paretoflow align --objective O | --weights W | --all`; multi-GPU:
`accelerate launch --num_processes N -m paretoflow.cli align --all`.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from paretoflow.sections import ProjectPath, _Budgeted, _Section, check_objective_keys, check_weights
from paretoflow.stages.base import Stage, curated

if TYPE_CHECKING:
    from paretoflow.align import AlignResult
    from paretoflow.config import Params


class AlignBudget(_Section):
    """LoRA DPO/MODPO training budget for one hardware profile (see AlignConfig).

    Defaults are the cpu profile of params.yaml; params.yaml says how each was measured.
    """

    # LoRA (Hu et al. 2021) on all linear layers ("all-linear": every linear layer except
    # the output head, peft keyword); alpha = 2r (torchtune/peft habit); dropout 0.05
    # (peft examples).
    lora_r: int = Field(16, ge=1)
    lora_alpha: float = Field(32.0, gt=0.0)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = "all-linear"
    loss: Literal["dpo", "ipo"] = "dpo"
    beta: float = Field(0.1, gt=0.0)  # DPO paper default (Rafailov et al. 2023)
    # LoRA needs far more than full fine-tuning DPO (~5e-7); params.yaml records the runs.
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)  # TRL DPOConfig default
    warmup_steps: int = Field(0, ge=0)
    # constant after warmup by default: short budgets select on validation, and a decay
    # to 0 would spend half of a few-step CPU budget at small learning rates.
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"
    max_grad_norm: float = Field(1.0, gt=0.0)  # TRL/transformers default
    batch_size: int = Field(2, ge=1)  # pairs per micro-batch per process
    gradient_accumulation_steps: int = Field(1, ge=1)
    eval_batch_size: int = Field(8, ge=1)
    max_steps: int = Field(16, ge=1)  # optimizer steps
    eval_steps: int = Field(8, ge=1)  # validate (and select) every N steps
    checkpoint_steps: int = Field(8, ge=1)
    # Early stopping: stop after `patience` evaluations without improvement of the metric.
    patience: int = Field(3, ge=1)
    # val_objective: mean judge score of greedy answers to the selection prompts (the
    # objective itself; for MODPO the weighted score). The DPO loss cannot pick the
    # checkpoint (docs/measurements.md#align: a policy collapsed while it kept falling).
    # val_loss / val_accuracy: the DPO validation pairs.
    early_stopping_metric: Literal["val_objective", "val_loss", "val_accuracy"] = "val_objective"
    max_val_pairs: int = Field(4, ge=0)  # DPO validation pairs (logged); 0 = none
    # Train pairs kept per source kind (human / on_policy) before mixing; 0 = all. The
    # reference pass scores only the pairs the step budget visits, so this bounds
    # tokenization and margin scoring, not training.
    max_pairs_per_source: int = Field(0, ge=0)
    # Selection: greedy answers to this many val prompts (round-robin over strata of
    # source and tags), `selection_max_new_tokens` each, scored by the objective's judges every
    # eval_steps (paretoflow/align/selection.py). 0 = no objective selection.
    selection_prompts: int = Field(12, ge=0)
    selection_max_new_tokens: int = Field(48, ge=1)
    selection_batch_size: int = Field(12, ge=1)
    # Tokens: prompt cut from the left to max_prompt_tokens, response from the right to
    # max_length - prompt (paretoflow/align/data.py); counted per source in meta.json.
    max_length: int = Field(96, ge=8)
    max_prompt_tokens: int = Field(48, ge=1)
    # Prompt tokens of the selection prompts' greedy answers (left-truncated): longer than
    # the training prompts, which only need to fit one pair in max_length.
    selection_max_prompt_tokens: int = Field(256, ge=8)
    # "auto": bf16 when CUDA is available on the gpu profile; without CUDA, bf16 autocast
    # where the CPU has bf16 instructions (paretoflow/cpu.py); otherwise no mixed precision.
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    # dtype the frozen base weights are loaded in (LoRA parameters stay fp32: peft's
    # autocast_adapter_dtype). "auto": bf16 when CUDA is available on the gpu profile (an 8B
    # policy is 16 GB instead of 32 GB), else fp32 (the CPU run stays exactly as before).
    base_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # Activation checkpointing of the decoder layers (transformers gradient_checkpointing,
    # use_reentrant=False): only each layer's input is kept for backward, the layer is
    # recomputed (~1/3 more compute). TRL's DPOConfig turns it on by default; off on CPU,
    # where activations of the small default model fit and the recompute only costs time.
    gradient_checkpointing: bool = False
    # Response tokens per chunk of the output head + log-softmax (paretoflow/align/logps.py):
    # the [tokens, vocab] fp32 logits are never held whole (128k-152k vocab on 7-8B models);
    # in training each chunk is recomputed in backward. 0 = one chunk (the CPU default).
    logps_chunk_tokens: int = Field(0, ge=0)
    # Adapters trained at once, each in its own thread with its own model and a share of
    # the cores (paretoflow/lanes.py): on 2 cores two LoRA jobs of one thread each beat the
    # same two one after the other on both (docs/measurements.md#align). The adapters do
    # not depend on it: dropout draws from each session's own generator (align/session.py).
    # 1: one after the other (GPU: one card; accelerate launch spreads one job instead).
    lanes: int = Field(1, ge=1, le=16)

    @model_validator(mode="after")
    def _prompt_fits(self) -> "AlignBudget":
        if self.max_prompt_tokens >= self.max_length:
            raise ValueError(
                f"max_prompt_tokens ({self.max_prompt_tokens}) must be < max_length ({self.max_length})"
            )
        if self.lanes > 1 and self.gradient_accumulation_steps > 1:
            # accelerate keeps one GradientState per process: with accumulation, one lane's
            # "not yet" would skip another lane's optimizer step
            raise ValueError(f"align lanes {self.lanes} need gradient_accumulation_steps 1 (got "
                             f"{self.gradient_accumulation_steps}): accelerate's gradient state is one per process")
        return self


# Where an objective's training pairs come from: curated human pairs (curate.out_dir, the
# `source` column names the dataset) and on-policy pairs judged by the pairs stage
# (pairs.out_dir).
SOURCE_KINDS = ("human", "on_policy")


def check_source_weights(value: dict[str, float]) -> dict[str, float]:
    """Source-kind sampling weights: known kinds, finite, >= 0, at least one > 0."""
    unknown = sorted(set(value) - set(SOURCE_KINDS))
    if unknown:
        raise ValueError(f"unknown pair source kinds {unknown}; expected {list(SOURCE_KINDS)}")
    bad = {k: w for k, w in value.items() if not (math.isfinite(w) and w >= 0)}
    if bad:
        raise ValueError(f"source weights must be finite and >= 0, got {bad}")
    if not any(w > 0 for w in value.values()):
        raise ValueError(f"at least one source weight must be > 0, got {value}")
    return value


SourceWeights = Annotated[dict[str, float], AfterValidator(check_source_weights)]


class AlignConfig(_Budgeted):
    """Align stage: one DPO expert per objective and MODPO policies for weight vectors."""

    out_dir: ProjectPath = "artifacts/adapters"
    # MODPO margin rewards r_-k. auto: the reward model of reward.out_dir when one is there
    # (the MODPO paper's choice: reward models of the other objectives), else judges.
    # reward_model: its heads, calibrated (tau_k * r_k, so sigma of a difference is the
    # fitted preference probability); judges: the judge mixture's goodness in [0, 1];
    # any other name: that rater's rows of the ratings tables (pairs lacking one skipped).
    margin_rater: str = "auto"
    seed: int = 0
    # Sampling weight of each source kind in every training batch (SOURCE_KINDS; weights
    # are relative, a kind with weight 0 is not read). Objectives without pairs of a kind
    # train on the others. `objective_sources` overrides the mix per objective.
    sources: SourceWeights = Field(default_factory=lambda: {"human": 1.0, "on_policy": 1.0})
    objective_sources: dict[str, SourceWeights] = Field(default_factory=dict)
    # Trade-off filter on rated pairs, per objective k: a pair of k is kept only when its
    # chosen response is at most this much worse than the rejected one on every other
    # declared objective (ratings of `tradeoff_rater`, goodness on [0, 1]); unrated pairs
    # (human pairs) are kept; objectives not listed keep every pair. params.yaml records
    # the measurement.
    tradeoff_max_drop: dict[str, Annotated[float, Field(ge=0.0)]] = Field(default_factory=dict)
    tradeoff_rater: str = "judges"
    # Selection guard: a checkpoint is eligible only when every objective outside the
    # selection score keeps its val goodness >= the base policy's - this. None: no guard.
    selection_max_drop: float | None = Field(0.15, ge=0.0)
    # Content-keyed caches shared by every adapter of a run and across runs: the base
    # policy's answers to the selection prompts and reference log-probs of pair sets
    # (a MODPO vector trained on an expert's pairs reuses that expert's reference pass).
    cache_dir: ProjectPath = ".cache/align"
    # Weight vectors (one weight per objective, in declared order) trained with MODPO by
    # `align --all`; checked against the objectives before any compute.
    modpo_weights: list[list[float]] = Field(default_factory=list)
    # cpu: the defaults above (2 cores; params.yaml records the measurements). gpu: bf16,
    # bigger budgets for one H100-class card (not yet timed end to end).
    cpu: AlignBudget = Field(default_factory=lambda: AlignBudget(lanes=2))
    gpu: AlignBudget = Field(
        default_factory=lambda: AlignBudget(
            learning_rate=5e-4, batch_size=16, gradient_accumulation_steps=2,
            eval_batch_size=32, max_steps=400, eval_steps=25, checkpoint_steps=50,
            patience=4, max_val_pairs=256, max_length=512, max_prompt_tokens=256,
            warmup_steps=20, lr_scheduler="cosine", selection_prompts=64,
            selection_max_new_tokens=128, selection_batch_size=64,
            # paretoflow plan: without checkpointing an 8B policy needs ~130 GB of
            # activations at 16 pairs x 512 tokens; with it and 2048-token logit chunks
            # the align stage plans well inside one 80 GB card.
            gradient_checkpointing=True, logps_chunk_tokens=2048,
        )
    )

    def source_weights(self, objective: str) -> dict[str, float]:
        """The source mix of one objective: its override, else `sources` (kinds missing = 0)."""
        weights = self.objective_sources.get(objective, self.sources)
        return {kind: float(weights.get(kind, 0.0)) for kind in SOURCE_KINDS}


def check(params: Params) -> None:
    """Per-objective settings name declared objectives; every MODPO vector is a weight vector."""
    names = params.objective_names
    for key in ("objective_sources", "tradeoff_max_drop"):
        check_objective_keys(getattr(params.align, key), names, f"align.{key}")
    for index, vector in enumerate(params.align.modpo_weights):
        try:
            check_weights(vector, names)
        except ValueError as exc:
            raise ValueError(f"align.modpo_weights[{index}]: {exc}") from None


def run(params: Params, root: Path, *, objective: str | None = None, weights: list[float] | None = None,
        policy_path: str | None = None, progress: bool = True, resume: bool = True,
        sources: dict[str, float] | None = None) -> AlignResult:
    """Train one adapter: the DPO expert of `objective`, or the MODPO policy for `weights`."""
    from paretoflow.align import run as train_one

    return train_one(params, Path(root), objective=objective, weights=weights, policy_path=policy_path,
                     progress=progress, resume=resume, sources=sources)


def jobs(params: Params) -> list[dict[str, Any]]:
    """The adapters `align --all` trains, as keyword arguments of `run`: one DPO expert
    per objective, then one MODPO policy per `align.modpo_weights` vector."""
    return ([{"objective": o} for o in params.objective_names]
            + [{"weights": [float(x) for x in w]} for w in params.align.modpo_weights])


def job_name(job: dict[str, Any]) -> str:
    """The adapter folder name of one job of `jobs`."""
    from paretoflow.align import adapter_name

    return adapter_name(objective=job.get("objective"), weights=job.get("weights"))


STAGE = Stage(
    name="align",
    run=run,
    command="paretoflow align --all",
    sections=("project", "model", "objectives", "curate", "pairs", "reward", "align"),
    # human pairs + selection prompts (curated), on-policy pairs, the reward model (MODPO
    # margins; judges of the selection score)
    inputs=lambda p: [*curated(p, "prompts", "responses", "ratings", "pairs"), p.pairs.out_dir, p.reward.out_dir],
    outputs=lambda p: [p.align.out_dir],
    summary="one DPO expert per objective (human + on-policy pairs, selected on the judged objective), "
            "MODPO per weight vector; LoRA via peft + accelerate",
    jobs=jobs,
    job_name=job_name,
    reads_policy=True,
    extra_code=("paretoflow.reward.judge",),  # the reward_model judge, loaded by name
)


def _handle(args: argparse.Namespace) -> int:
    from paretoflow import align
    from paretoflow.commands import parse_weights
    params = args.load_params()
    if args.profile:
        params.project.profile = args.profile
    root = Path(args.root)
    if args.sources is not None and args.all:
        raise ValueError("--sources applies to one adapter; for --all set align.sources in params")
    if args.all:
        results = align.run_all(params, root, policy_path=args.policy, resume=not args.fresh)
    else:
        weights = parse_weights(args.weights) if args.weights is not None else None
        results = [align.run(params, root, objective=args.objective, weights=weights,
                             policy_path=args.policy, resume=not args.fresh,
                             sources=parse_sources(args.sources) if args.sources is not None else None)]
    for result in results:
        summary = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.metrics.items()}
        print(f"{result.name}: {result.adapter_dir} {json.dumps(summary)}")
    return 0


def parse_sources(text: str) -> dict[str, float]:
    """`human=1,on_policy=0.5` → {"human": 1.0, "on_policy": 0.5} (kinds checked by the caller)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--sources: {part!r} is not kind=weight (e.g. human=1,on_policy=0)")
        try:
            out[kind.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--sources: weight {value!r} of {kind!r} is not a number") from None
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("align", help="train LoRA DPO experts / MODPO policies",
                                   description="train LoRA experts (DPO) and MODPO policies")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--objective", help="train the DPO expert of this objective")
    what.add_argument("--weights", help="train a MODPO policy for these weights, e.g. 0.7,0.3,0.0")
    what.add_argument("--all", action="store_true", help="every expert and align.modpo_weights")
    parser.add_argument("--root", default=".", help="project root holding data/ and artifacts/")
    parser.add_argument("--policy", default=None, help="base policy folder (default: model.policy)")
    parser.add_argument("--profile", choices=["cpu", "gpu"], default=None,
                        help="override project.profile for this run")
    parser.add_argument("--fresh", action="store_true", help="ignore checkpoints, start over")
    parser.add_argument("--sources", default=None,
                        help="pair source weights for this adapter, e.g. human=1,on_policy=0 "
                             "(default: align.sources / align.objective_sources)")
    parser.set_defaults(func=_handle)
