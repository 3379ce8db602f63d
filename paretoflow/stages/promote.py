"""The promote stage: a preference vector (or constraint) chooses an eligible front
candidate; it is packaged, registered (or its existing version reused), gated against
the champion on the same prompts, and given the `champion` alias (`paretoflow/promote.py`).

Config: `PromoteConfig` (params.yaml `promote`). Entry: `run(params, root)`: it builds its
own tracker from `params.tracking` and reads the validation verdict itself. CLI:
`paretoflow promote [--weights W | --constraint JSON]`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from paretoflow.sections import ProjectPath, _Section, check_objective_keys, check_weights
from paretoflow.stages.base import Stage

if TYPE_CHECKING:
    from paretoflow.config import Params
    from paretoflow.promote import PromoteResult


class PromoteConfig(_Section):
    """How a front candidate is chosen and gated (paretoflow/promotion.py)."""

    # Preference vector, one weight per declared objective (order of `objectives`), sum 1.
    # Default: equal weights: no axis favoured until a team states its trade-off.
    preference: list[float] | None = None
    # Constrained choice instead of a preference: {"maximize": name, "minimums": {name: τ}}.
    constraint: dict[str, Any] | None = None
    # Paired gate (paretoflow/promotion.py), on the [0, 1]-normalised scale: the candidate
    # must improve the preference-weighted score over the champion (or the base) with the
    # paired interval's lower bound above -tolerance, and no objective's interval may lie
    # wholly below -tolerance (0.02: docs/measurements.md#promote; 0 demands a gain whose
    # interval excludes 0).
    tolerance: float = Field(0.02, ge=0.0, le=1.0)
    # The file lock of server-less runs (paretoflow/registry.py); with PREFECT_API_URL set,
    # a Prefect global concurrency limit named after the registered model is used instead.
    lock_file: ProjectPath = "mlflow/registry.lock"
    # How long a promotion or rollback waits for the registry lock. A holder keeps it for
    # seconds (package upload + alias moves); 10 minutes covers a queue of several.
    lock_timeout_s: float = Field(600.0, gt=0)

    @model_validator(mode="after")
    def _one_rule(self) -> "PromoteConfig":
        if self.preference is not None and self.constraint is not None:
            raise ValueError("promote: give either preference or constraint, not both")
        if self.constraint is not None and set(self.constraint) - {"maximize", "minimums"}:
            raise ValueError(f"promote.constraint takes maximize and minimums, got {sorted(self.constraint)}")
        return self


def check(params: Params) -> None:
    """The preference is a weight vector over the objectives; a constraint names declared ones."""
    names = params.objective_names
    if params.promote.preference is not None:
        try:
            check_weights(params.promote.preference, names)
        except ValueError as exc:
            raise ValueError(f"promote.preference: {exc}") from None
    constraint = params.promote.constraint or {}
    if "maximize" in constraint:
        check_objective_keys([constraint["maximize"]], names, "promote.constraint.maximize")
    check_objective_keys(constraint.get("minimums") or {}, names, "promote.constraint.minimums")


def run(params: Params, root: Path, *, parent_run_id: str | None = None,
        lineage: dict[str, str] | None = None) -> PromoteResult:
    """Choose, package, register, gate and move aliases. Under `parent_run_id` (the flow's
    pipeline run) or, without one, under a `promote` run of its own (the CLI)."""
    from paretoflow.promote import run as promote, validation_passed
    from paretoflow.tracking import Tracker, lineage_tags

    root = Path(root)
    tracker = Tracker(params.tracking, root)
    lineage = lineage_tags(params, root) if lineage is None else lineage
    if parent_run_id is not None:
        return promote(params, root, tracker, parent_run_id, validation_passed(params, root), lineage)
    with tracker.run("promote", tags=lineage) as parent:   # FAILED on any error, never left RUNNING
        return promote(params, root, tracker, parent, validation_passed(params, root), lineage)


STAGE = Stage(
    name="promote",
    run=run,
    command="paretoflow promote",
    sections=("objectives", "promote", "tracking"),
    inputs=lambda p: [p.front.out_dir, p.align.out_dir],
    outputs=lambda p: [],
    summary="preference/constraint → candidate → package → registry version → gates → alias",
    cached=False,
    dvc=False,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("promote", help="choose a front candidate, gate it, move registry aliases")
    parser.add_argument("--root", default=".")
    parser.add_argument("--weights", help="preference vector, e.g. 0.5,0.3,0.2")
    parser.add_argument("--constraint", help='JSON, e.g. {"maximize":"helpfulness","minimums":{"harmlessness":0.8}}')
    parser.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    from paretoflow.commands import parse_weights
    overrides: dict[str, Any] = {}
    if args.weights:
        overrides = {"promote": {"preference": parse_weights(args.weights), "constraint": None}}
    if args.constraint:
        overrides = {"promote": {"preference": None, "constraint": json.loads(args.constraint)}}
    outcome = run(args.load_params(overrides), Path(args.root).resolve())
    moved = "" if outcome.alias != "champion" or outcome.metrics.get("promoted") else " (unchanged: already champion)"
    print(f"{outcome.candidate}: version {outcome.version} → {outcome.alias}{moved}")
    for reason in outcome.reasons:
        print(f"  gate failed: {reason}")
    return 0
