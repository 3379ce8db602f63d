"""The front stage: exact Σ wᵢΔWᵢ merges of the experts (grid or MAP surrogate), every
candidate's answers to the same held-out prompts, scored per objective, the non-dominated
set, hypervolume and plots (`paretoflow/front/`).

Config: `FrontConfig` (params.yaml `front`, budgets `FrontBudget`). Entry:
`run(params, root)`. CLI: `paretoflow front`; across processes (each candidate's
generation split, paretoflow/generation.py):
`accelerate launch --num_processes N -m paretoflow.cli front`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from paretoflow.sections import ProjectPath, _Budgeted, _Section, check_objective_keys, check_weights
from paretoflow.stages.base import Stage, curated

if TYPE_CHECKING:
    from collections.abc import Mapping

    from paretoflow.config import Params
    from paretoflow.front.stage import FrontResult


class FrontBudget(_Section):
    """Compute budget of the front stage for one hardware profile."""

    # Held-out test prompts per candidate (every candidate answers the same ones), greedy
    # tokens per answer (each answer stops at its own end of turn), generation batch.
    n_eval_prompts: int = Field(ge=1)
    max_new_tokens: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    # A longer conversation keeps its last tokens (the latest turns). Prompts are sorted by
    # length before batching, so this mostly caps the padding of the longest batch.
    max_prompt_tokens: int = Field(512, ge=8)
    # Merges evaluated by method "grid": the simplex lattice at `grid_step` (0.5 over 3
    # experts = 6 points; 0.1 = 66; None = no lattice) plus `weight_vectors`, objective
    # weight vectors in declared order (one-hot = an expert alone), each merged exactly.
    grid_step: float | None = Field(None, gt=0.0, le=1.0)
    weight_vectors: list[list[float]] = Field(default_factory=list)
    # Candidates generated at once, each in its own thread on its own copy of the model with
    # a share of the cores (paretoflow/lanes.py); answers do not depend on it. 1: one after
    # the other on every core (GPU: one card, lanes would only compete for it).
    lanes: int = Field(1, ge=1, le=16)

    @model_validator(mode="after")
    def _something_to_merge(self) -> "FrontBudget":
        if self.grid_step is None and not self.weight_vectors:
            raise ValueError("front budget: give grid_step, weight_vectors, or both")
        return self


class FrontConfig(_Budgeted):
    """Front stage: merge experts over coefficient vectors, evaluate, keep the non-dominated.

    Reads the adapters of `align.out_dir`, the reward model of `reward.out_dir` and the
    curated prompts of `curate.out_dir` (split `prompts_split`).
    """

    out_dir: ProjectPath = "artifacts/front"
    prompts_split: str = "test"
    generations_cache: ProjectPath = ".cache/generations"
    # grid: every point of the simplex lattice; map: quadratic surrogate fitted on a small
    # design, predicted Pareto set verified by evaluation (paretoflow/front/search.py).
    method: Literal["grid", "map"] = "grid"
    # MAP surrogate: dense prediction grid step and how many predicted points to verify.
    map_dense_step: float = Field(0.05, gt=0.0, le=1.0)
    map_n_verify: int = Field(3, ge=0)
    # exact: sum_i w_i dW_i (Rewarded Soups target, computed exactly, not peft 'linear');
    # ties / dare / task_arithmetic on the same dW (Yadav et al. 2023; Yu et al. 2023;
    # Ilharco et al. 2023).
    # (a name in paretoflow/merging/methods.py: one module per method)
    merge_method: str = "exact"
    ties_density: float = Field(0.2, gt=0.0, le=1.0)  # TIES paper default top-20%
    dare_drop_rate: float = Field(0.9, ge=0.0, lt=1.0)  # DARE paper: p=0.9 keeps ability
    task_arithmetic_lambda: float = Field(1.0, gt=0.0)  # 1.0: plain sum of weighted dW
    # The base model is always evaluated: it is the paired reference of every candidate
    # (vs_base) and a point of the front (the "change nothing" choice).
    include_adapters: bool = True  # trained MODPO adapters as reference candidates
    # Bootstrap intervals over prompts (per-candidate means, paired differences vs the
    # base, the hypervolume): percentile method, 1000 resamples (Efron & Tibshirani 1993
    # suggest >= 1000 for percentile intervals), 95%.
    n_boot: int = Field(1000, ge=10)
    ci_level: float = Field(0.95, gt=0.0, lt=1.0)
    # Minimum detectable difference reported for the run's prompt count: two-sided
    # alpha 0.05 and power 0.8, the conventional choice (Cohen 1988).
    mde_alpha: float = Field(0.05, gt=0.0, lt=1.0)
    mde_power: float = Field(0.8, gt=0.0, lt=1.0)
    # Hypervolume reference point per objective (fixed per experiment, logged beside HV):
    # the worst end of each [0, 1] judge scale, so every candidate counts.
    hv_reference: dict[str, float] = Field(default_factory=dict)
    # Expected utility: mean over a simplex grid of preference vectors of the best w.f.
    eu_step: float = Field(0.1, gt=0.0, le=1.0)
    # CGPO-style constraint (front/answers.py): a candidate whose answer rate on the benign
    # prompts is below the base's (paired interval wholly below -answer_tolerance) is not
    # eligible for champion. 0.05: one benign prompt in 20 (our choice; the rate is a 0/1 mean).
    answer_tolerance: float = Field(0.05, ge=0.0, le=1.0)
    # Prompts of the answers table (front/answers.py showcase: round-robin over categories).
    showcase_prompts: int = Field(10, ge=0, le=64)
    # cpu: 64 prompts x the candidates params.yaml declares (how the budget was sized:
    # docs/measurements.md#front). gpu: not yet timed; 66 lattice merges over 3 experts.
    cpu: FrontBudget = Field(
        # The code default is objective-agnostic (a lattice fits any number of objectives);
        # params.yaml declares the project's weight vectors instead.
        default_factory=lambda: FrontBudget(
            n_eval_prompts=64, max_new_tokens=64, batch_size=32, max_prompt_tokens=128, grid_step=0.5, lanes=2,
        )
    )
    gpu: FrontBudget = Field(
        default_factory=lambda: FrontBudget(n_eval_prompts=256, max_new_tokens=128, batch_size=64, grid_step=0.1)
    )


def check(params: Params) -> None:
    """The active profile's weight vectors are weight vectors over the declared objectives
    (the other profile's budget is checked when a run selects it); hv_reference names
    declared objectives."""
    names, profile = params.objective_names, params.project.profile
    for index, vector in enumerate(params.front.budget(profile).weight_vectors):
        try:
            check_weights(vector, names)
        except ValueError as exc:
            raise ValueError(f"front.{profile}.weight_vectors[{index}]: {exc}") from None
    check_objective_keys(params.front.hv_reference, names, "front.hv_reference")
    from paretoflow.merging.methods import check_method   # no torch: the registry's names only

    try:
        check_method(params.front.merge_method)
    except ValueError as exc:
        raise ValueError(f"front.merge_method: {exc}") from None


def run(params: Params, root: Path, *, scorer=None, extra_scorers: Mapping | None = None,
        progress: bool = True) -> FrontResult | None:
    """Build, evaluate and write the front to <front.out_dir>; `scorer` defaults to the judges.
    Under `accelerate launch` the processes share the generation and only the main one
    writes (the others get None)."""
    from paretoflow.front.stage import run as build_front

    return build_front(params, Path(root), scorer=scorer, extra_scorers=extra_scorers, progress=progress)


STAGE = Stage(
    name="front",
    run=run,
    command="paretoflow front",
    sections=("project", "model", "objectives", "front"),
    inputs=lambda p: [p.align.out_dir, p.reward.out_dir, *curated(p, "prompts")],
    outputs=lambda p: [p.front.out_dir],
    artifacts=lambda p: [p.front.out_dir],
    reads_policy=True,
    extra_code=("paretoflow.reward.judge",),  # the reward_model judge, loaded by name
    summary="exact Σ wᵢΔWᵢ merges (grid or MAP surrogate), generate on held-out prompts, score, front",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("front", help="merge experts over a simplex, evaluate, write the Pareto front",
                                   description="evaluate merged experts → Pareto front")
    parser.add_argument("--root", default=".", help="project root holding data/ and artifacts/")
    parser.add_argument("--method", choices=["grid", "map"], default=None, help="override front.method")
    parser.add_argument("--merge-method", default=None,
                        help="override front.merge_method (exact, ties, dare, task_arithmetic, ...)")
    parser.add_argument("--profile", choices=["cpu", "gpu"], default=None, help="override project.profile")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    params = args.load_params()
    if args.profile:
        params.project.profile = args.profile
    if args.method:
        params.front.method = args.method
    if args.merge_method:
        params.front.merge_method = args.merge_method
    result = run(params, Path(args.root), progress=not args.quiet)
    if result is None:  # not the main process of an `accelerate launch`
        from paretoflow.distributed import current

        processes = current()
        print(f"front: process {processes.index} of {processes.count} generated its share; "
              "the main process writes")
        return 0
    reference = ", ".join(f"{k}={v:g}" for k, v in result.reference_point.items())
    low, high = result.hypervolume_ci
    print(f"front: {result.n_candidates} candidates, {result.n_non_dominated} non-dominated, "
          f"hypervolume {result.hypervolume:.5f} [{low:.5f}, {high:.5f}] (reference {reference}), "
          f"sparsity {result.sparsity:.5f}, expected utility {result.expected_utility:.4f}")
    n_prompts = int(result.metrics["n_prompts"])
    print(f"minimum detectable difference on {n_prompts} prompts: "
          + ", ".join(f"{k} {v:.3f}" for k, v in result.mde.get("judges", {}).items()))
    print("  (* non-dominated, ! distinguishable from the base; mean and paired difference vs base [CI])")
    for record in result.records:
        values = " ".join(f"{k}={v:.3f} ({record.vs_base[k].diff:+.3f} [{record.vs_base[k].ci_low:+.3f}, "
                          f"{record.vs_base[k].ci_high:+.3f}])" for k, v in record.objectives.items())
        flags = ("*" if record.non_dominated else " ") + ("!" if record.distinguishable else " ")
        print(f"  {flags} {record.name:28s} {values}")
    print(f"wrote {result.front_json}, {result.scores_parquet}, {result.front_png}, {result.candidates_parquet}")
    return 0
