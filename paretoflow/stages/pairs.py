"""The pairs stage: sample the policy on curated prompts (chat template), judge every
sample per objective (reward model + rules, `paretoflow/judges/`), pair (`paretoflow/pairs.py`).

Config: `PairsConfig` (params.yaml `pairs`, budgets `PairsBudget`). Entry:
`run(params, root)`. CLI: `paretoflow pairs`; across processes (the sampling split,
paretoflow/generation.py): `accelerate launch --num_processes N -m paretoflow.cli pairs`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from paretoflow.sections import ProjectPath, _Budgeted, _Section
from paretoflow.stages.base import Stage, curated

if TYPE_CHECKING:
    from paretoflow.config import Params
    from paretoflow.pairs import PairsResult


class PairsBudget(_Section):
    """Sampling budget of the pairs stage for one hardware profile."""

    n_train_prompts: int = Field(40, ge=0)
    n_val_prompts: int = Field(12, ge=0)
    samples_per_prompt: int = Field(4, ge=2)
    max_new_tokens: int = Field(48, ge=1)
    # Sequences per generate() forward (prompts per batch = batch_size // samples).
    batch_size: int = Field(32, ge=1)
    # A longer conversation keeps its last tokens (the latest turns).
    max_prompt_tokens: int = Field(128, ge=8)
    # Batches sampled at once, one thread each (paretoflow/lanes.py; every batch draws from
    # its own seeded generator, so the samples do not depend on it). 1 on a GPU.
    lanes: int = Field(1, ge=1, le=16)


class PairsConfig(_Budgeted):
    """On-policy preference pairs: sample the policy, score with the judge mixture, pair."""

    out_dir: ProjectPath = "data/pairs"
    # Sampling: temperature 0.8 / top-p 0.95, the on-policy sampling settings of SimPO
    # (Meng et al. 2024) for UltraFeedback prompts.
    temperature: float = Field(0.8, gt=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    # best_worst: one pair per prompt and objective (best vs worst sample);
    # all_above_margin: every pair of samples whose score difference >= min_margin.
    pair_strategy: Literal["best_worst", "all_above_margin"] = "best_worst"
    # Score differences below this (on the objective's scale) are ties, skipped and counted:
    # 0.05 = 5% of a [0, 1] scale, above the jitter of the continuous judges (relevance).
    min_margin: float = Field(0.05, ge=0.0)
    # Add one reference refusal to each prompt's samples, paired only for objectives judged
    # by `refusal` (paretoflow/pairs.py: the small default policy never refuses).
    refusal_exemplars: bool = True
    # cpu: sized for the 2-core default run (docs/measurements.md#pairs). gpu: one 80 GB card
    # (not yet timed).
    cpu: PairsBudget = Field(default_factory=lambda: PairsBudget(lanes=2))
    gpu: PairsBudget = Field(
        default_factory=lambda: PairsBudget(
            n_train_prompts=2000, n_val_prompts=200, samples_per_prompt=8,
            max_new_tokens=256, batch_size=128, max_prompt_tokens=512,
        )
    )


def check(params: Params) -> None:
    """Nothing here names objectives: every declared objective is paired."""


def run(params: Params, root: Path, *, policy_path: str | None = None) -> PairsResult | None:
    """Sample, judge and pair; write <pairs.out_dir>. Under `accelerate launch` the
    processes share the sampling and only the main one writes (the others get None)."""
    from paretoflow.pairs import run as make_pairs

    return make_pairs(params, Path(root), policy_path=policy_path)


STAGE = Stage(
    name="pairs",
    run=run,
    command="paretoflow pairs",
    sections=("project", "model", "objectives", "pairs"),
    inputs=lambda p: [*curated(p, "prompts"), p.reward.out_dir],  # the reward model judges
    outputs=lambda p: [p.pairs.out_dir],
    artifacts=lambda p: [f"{p.pairs.out_dir}/report.json"],
    retries=1,  # an LLM judge endpoint may fail transiently
    reads_policy=True,
    extra_code=("paretoflow.reward.judge",),  # the reward_model judge, loaded by name
    summary="sample N answers per prompt (chat template), judge per objective (reward model + rules), pair",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pairs", help="sample the policy, judge, write on-policy pairs")
    parser.add_argument("--policy", default=None, help="policy name/path (default: model.policy)")
    parser.add_argument("--root", default=".", help="repo root (data paths are relative to it)")
    parser.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    result = run(args.load_params(), Path(args.root), policy_path=args.policy)
    if result is None:  # not the main process of an `accelerate launch`
        from paretoflow.distributed import current

        processes = current()
        print(f"pairs: process {processes.index} of {processes.count} sampled its share; "
              "the main process writes")
        return 0
    print(f"wrote {result.n_pairs} pairs from {result.n_responses} responses "
          f"to {result.n_prompts} prompts in {result.out_dir}")
    for key, value in result.metrics.items():
        print(f"  {key}: {value}")
    return 0
