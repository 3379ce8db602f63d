"""`paretoflow worker --pool NAME`: a Prefect worker that runs the align-expert flow runs.

    paretoflow worker --pool trainers --limit 1     # one adapter at a time on this machine

It is Prefect's own worker (`prefect worker start`), started with the pool type from
params (`scale.pool_type`, a missing pool is created with it). Start one per machine (or
per GPU with `--limit 1` each); the machine needs paretoflow installed, access to the
MLflow server and the DVC remote, and the base model (docs/scaling.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def worker_command(pool: str, pool_type: str, limit: int | None = None, name: str | None = None) -> list[str]:
    """The `prefect worker start` command line this subcommand runs."""
    executable = Path(sys.executable).parent / "prefect"
    command = [str(executable), "worker", "start", "--pool", pool, "--type", pool_type]
    if limit is not None:
        command += ["--limit", str(limit)]
    if name:
        command += ["--name", name]
    return command


def _handle(args) -> int:
    from paretoflow.config import load_params

    pool_type = args.type
    if pool_type is None:
        pool_type = load_params(args.params).scale.pool_type if Path(args.params).exists() else "process"
    command = worker_command(args.pool, pool_type, args.limit, args.name)
    if not Path(command[0]).exists():
        raise FileNotFoundError(f"prefect executable not found beside {sys.executable}")
    os.execv(command[0], command)  # the worker replaces this process: signals reach it directly
    return 0  # not reached


def register(subparsers) -> None:
    parser = subparsers.add_parser("worker", help="start a Prefect worker for the align-expert runs",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--pool", required=True, help="work pool name (params: scale.work_pool)")
    parser.add_argument("--type", default=None, help="pool type for a new pool (default: scale.pool_type)")
    parser.add_argument("--limit", type=int, default=None, help="most flow runs at once on this worker")
    parser.add_argument("--name", default=None, help="worker name (default: Prefect's)")
    parser.set_defaults(func=_handle)
