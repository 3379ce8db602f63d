"""The validate stage: the Great Expectations gate on the curated tables; a failure stops
the flow naming rows and reason (`paretoflow/data/validate.py`).

Config: `ValidateConfig` (params.yaml `validate`). Entry: `run(params, root)`. CLI:
`paretoflow validate` (exit 1 when an expectation fails, the reasons printed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from paretoflow.sections import ProjectPath, _Section, check_objective_keys
from paretoflow.stages.base import CURATED_TABLES, Stage, curated

if TYPE_CHECKING:
    from paretoflow.config import Params
    from paretoflow.data.validate import ValidationResult

class ValidateConfig(_Section):
    # Minimum prompts per split, and pairs per (objective, split): one number for every
    # objective, or {objective: number} (objectives left out: 0), so that an objective
    # without human pairs does not fail the gate while a lost source does.
    min_prompts_per_split: int = Field(5, ge=0)
    min_pairs_per_objective_split: int | dict[str, int] = 0
    max_words: int = Field(2048, ge=1)
    docs_dir: ProjectPath = "data/curated/data_docs"

    @field_validator("min_pairs_per_objective_split")
    @classmethod
    def _non_negative(cls, v: int | dict[str, int]) -> int | dict[str, int]:
        values = v.values() if isinstance(v, dict) else [v]
        if any(n < 0 for n in values):
            raise ValueError(f"min_pairs_per_objective_split must be >= 0, got {v}")
        return v

    def min_pairs(self, objective: str) -> int:
        v = self.min_pairs_per_objective_split
        return v.get(objective, 0) if isinstance(v, dict) else v


def report_path(params: Params) -> str:
    """validation.json, relative to the root: beside the Data Docs folder."""
    from paretoflow.data.validate import REPORT_NAME

    return (Path(params.validate_.docs_dir).parent / REPORT_NAME).as_posix()


def check(params: Params) -> None:
    per_objective = params.validate_.min_pairs_per_objective_split
    if isinstance(per_objective, dict):
        check_objective_keys(per_objective, params.objective_names, "validate.min_pairs_per_objective_split")


def run(params: Params, root: Path) -> ValidationResult:
    """Validate the curated tables; raises ValidationFailed on any failed expectation."""
    from paretoflow.data.validate import run as validate_project

    return validate_project(params, Path(root))


STAGE = Stage(
    name="validate",
    run=run,
    command="paretoflow validate",
    sections=("objectives", "validate", "curate"),
    inputs=lambda p: curated(p, *CURATED_TABLES, "quarantine"),
    outputs=lambda p: [p.validate_.docs_dir, report_path(p)],
    artifacts=lambda p: [p.validate_.docs_dir],
    summary="Great Expectations gate; a failure stops the flow naming rows and reason",
    cached=False,  # the gate re-checks the data on every run
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("validate", help="validate the curated tables (Great Expectations gate)")
    parser.add_argument("--root", default=".", help="project root the params paths are relative to")
    parser.add_argument("--all", action="store_true", help="list passing expectations too, not only a summary")
    parser.set_defaults(func=_command)


def format_table(result, show_passing: bool = False) -> str:
    """Per-table pass/fail counts, then one line per failed (or, with show_passing, every)
    expectation."""
    per_table: dict[str, list[int]] = {}
    for o in result.outcomes:
        passed_failed = per_table.setdefault(o.table, [0, 0])
        passed_failed[0 if o.success else 1] += 1
    width = max([len(t) for t in per_table] + [5])
    lines = [f"{'table':<{width}}  passed  failed  status"]
    for table, (passed, failed) in per_table.items():
        lines.append(f"{table:<{width}}  {passed:>6}  {failed:>6}  {'PASS' if failed == 0 else 'FAIL'}")
    shown = result.outcomes if show_passing else result.failures
    if shown:
        lines.append("")
        lines += [f"{'PASS' if o.success else 'FAIL'}  {o.describe()}" for o in shown]
    if result.skipped:
        lines.append(f"skipped (columns missing): {', '.join(result.skipped)}")
    lines.append("")
    lines.append(f"{'PASSED' if result.success else 'FAILED'}: {len(result.outcomes) - len(result.failures)}"
                 f"/{len(result.outcomes)} expectations; Data Docs {result.docs_path}; report {result.report_path}")
    return "\n".join(lines)


def _command(args: argparse.Namespace) -> int:
    from paretoflow.data.validate import ValidationFailed

    try:
        result = run(args.load_params(), Path(args.root))
    except ValidationFailed as failed:
        print(format_table(failed.result, args.all), file=sys.stderr)
        return 1
    print(format_table(result, args.all))
    return 0
