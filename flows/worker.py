"""`paretoflow worker --pool NAME`: a Prefect worker that runs the align-expert flow runs.

    paretoflow worker --pool trainers --limit 1     # one adapter at a time on this machine
    paretoflow worker --pool trainers --gpus 0,1    # this worker's runs see GPUs 0 and 1 only

It is Prefect's own worker (`prefect worker start`), started with the pool type from
params (`scale.pool_type`, a missing pool is created with it). Start one per machine (or
per GPU with `--limit 1` each); the machine needs paretoflow installed, access to the
MLflow server and the DVC remote, and the base model (docs/scaling.md).

`--gpus` sets CUDA_VISIBLE_DEVICES in the worker's environment; Prefect's process worker
starts each flow run with the worker's environment under the job's `env` variables
(prefect/workers/process.py: `{**os.environ, **self.env}`), so every run it starts sees
only those GPUs. A deployment whose job variables set CUDA_VISIBLE_DEVICES overrides it.
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


def parse_gpus(spec: str) -> str:
    """'0,1' → '0,1': comma-separated distinct non-negative GPU indices, as CUDA reads them."""
    items = [item.strip() for item in spec.split(",")]
    if not items or not all(item.isdigit() for item in items) or len(set(items)) != len(items):
        raise ValueError(f"--gpus takes distinct GPU indices separated by commas (e.g. 0,1), got {spec!r}")
    return ",".join(str(int(item)) for item in items)


def worker_env(gpus: str | None, base: dict[str, str]) -> dict[str, str]:
    """The worker's environment: `base`, with CUDA_VISIBLE_DEVICES bound when `gpus` is given."""
    return {**base, "CUDA_VISIBLE_DEVICES": parse_gpus(gpus)} if gpus is not None else dict(base)


def _handle(args) -> int:
    from paretoflow.config import load_params

    pool_type = args.type
    if pool_type is None:
        pool_type = load_params(args.params).scale.pool_type if Path(args.params).exists() else "process"
    command = worker_command(args.pool, pool_type, args.limit, args.name)
    if not Path(command[0]).exists():
        raise FileNotFoundError(f"prefect executable not found beside {sys.executable}")
    env = worker_env(args.gpus, dict(os.environ))
    os.execve(command[0], command, env)  # the worker replaces this process: signals reach it directly
    return 0  # not reached


def register(subparsers) -> None:
    parser = subparsers.add_parser("worker", help="start a Prefect worker for the align-expert runs",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--pool", required=True, help="work pool name (params: scale.work_pool)")
    parser.add_argument("--type", default=None, help="pool type for a new pool (default: scale.pool_type)")
    parser.add_argument("--limit", type=int, default=None, help="most flow runs at once on this worker")
    parser.add_argument("--name", default=None, help="worker name (default: Prefect's)")
    parser.add_argument("--gpus", default=None,
                        help="GPU indices the worker's runs may use, e.g. 0,1 (sets CUDA_VISIBLE_DEVICES)")
    parser.set_defaults(func=_handle)
