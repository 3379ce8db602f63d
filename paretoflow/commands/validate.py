"""`paretoflow validate`: run the Great Expectations gate on data/curated and print a
pass/fail table; exits 1 when any expectation fails (the reasons are printed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("validate", help="validate the curated tables (Great Expectations gate)")
    parser.add_argument("--root", default=".", help="project root the params paths are relative to")
    parser.add_argument("--all", action="store_true", help="list passing expectations too, not only a summary")
    parser.set_defaults(func=main)


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


def main(args: argparse.Namespace) -> int:
    from paretoflow.config import load_params
    from paretoflow.data import validate

    params = load_params(args.params)
    try:
        result = validate.run(params, Path(args.root))
    except validate.ValidationFailed as failed:
        print(format_table(failed.result, args.all), file=sys.stderr)
        return 1
    print(format_table(result, args.all))
    return 0
