"""Prefect + MLflow overhead as a share of a nightly run.

Runs the nightly flow once in this process and compares its wall time with the time
spent inside the library's stage functions (each task records `library_seconds`): the
rest is orchestration (Prefect task runs, result persistence, cache keys), tracking
(MLflow runs, params, metrics, artifact copies), DVC commits and the temporary Prefect
server's start. Printed with and without that one-off server start.

    .venv/bin/python bench/overhead.py            # on the default model (~10 min)
    .venv/bin/python bench/overhead.py --tiny     # tiny model, seconds (overhead dominates)
    .venv/bin/python bench/overhead.py --tiny --pool 2   # experts fanned out over 2 workers

With `--pool N` the bench starts a real Prefect server, MLflow on PostgreSQL (where
installed, else sqlite) and N process workers (tests/flows/servers.py), sets
`scale.work_pool`, and reports the fan-out's cost per expert: submission → start of its
flow run (queueing + worker pickup + process start), the flow run's duration and, inside
it, the training time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny model + tiny budgets")
    ap.add_argument("--pool", type=int, default=0, metavar="N", help="fan the experts out over N workers")
    args = ap.parse_args()
    if args.pool:
        return fan_out(args.tiny, args.pool)

    from tests.flows.project import make_project  # the same project builder the flow tests use

    work = Path(tempfile.mkdtemp(prefix="pf-overhead-"))
    root, overrides = make_project(work, tiny=args.tiny)

    t0 = time.perf_counter()
    from prefect import flow

    @flow
    def _warm() -> int:  # start the temporary Prefect server once, timed apart
        return 1

    _warm()
    server_start = time.perf_counter() - t0

    from flows.nightly import nightly

    t1 = time.perf_counter()
    result = nightly(root=str(root), **overrides)
    wall = time.perf_counter() - t1
    lib = sum(v.get("library_seconds", 0.0) for v in _summaries(result) if not v.get("cached"))
    print(f"nightly wall time          {wall:8.1f} s   (temporary Prefect server start {server_start:.1f} s apart)")
    print(f"library stage time         {lib:8.1f} s")
    print(f"orchestration + tracking   {wall - lib:8.1f} s = {100 * (wall - lib) / wall:5.1f} % of the run")
    print(f"incl. server start         {100 * (wall - lib + server_start) / (wall + server_start):5.1f} %")
    shutil.rmtree(work, ignore_errors=True)


def fan_out(tiny: bool, n_workers: int) -> None:
    """The nightly with the experts on a process work pool of `n_workers` real workers."""
    import os

    import yaml
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.nightly import run_from_file
    from tests.flows.project import make_project
    from tests.flows.servers import prefect_server, prefect_workers, tracking_server

    work = Path(tempfile.mkdtemp(prefix="pf-overhead-pool-"))
    with tracking_server(work) as mlflow_url, prefect_server(work) as api_url, \
            temporary_settings({PREFECT_API_URL: api_url}):
        root, _ = make_project(work, tiny=tiny, tracking_uri=mlflow_url)
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["scale"]["work_pool"] = "bench"
        params["dvc"]["remote_url"] = str(work / "dvc-remote")
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(work / "prefect-home"),
               "PYTHONPATH": str(REPO), "PREFECT_WORKER_QUERY_SECONDS": "2", "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "PARETOFLOW_CACHE_DIR": str(work / "worker-cache")}
        with prefect_workers("bench", n_workers, work, env):
            t0 = time.perf_counter()
            result = run_from_file(root / "params.yaml")
            wall = time.perf_counter() - t0
        from prefect.logging.handlers import APILogHandler

        APILogHandler.flush()  # the flow's last log lines, before the server stops
    experts = [s for s in _summaries(result) if s.get("pool")]
    print(f"nightly wall time {wall:.1f} s with {n_workers} workers; experts on the pool: {len(experts)}")
    print(f"{'expert':24s} {'submit→start s':>15s} {'flow run s':>11s} {'training s':>11s} {'run − training s':>17s}")
    for s in experts:
        pool, train = s["pool"], s["library_seconds"]
        print(f"{s['job_name']:24s} {pool['queue_s']:15.1f} {pool['run_s']:11.1f} {train:11.1f} "
              f"{pool['run_s'] - train:17.1f}")
    if experts:
        from datetime import datetime

        first = min(datetime.fromisoformat(s["pool"]["submitted"]) for s in experts)
        last = max(datetime.fromisoformat(s["pool"]["end"]) for s in experts)
        print(f"align on the pool: {(last - first).total_seconds():.1f} s wall, "
              f"{sum(s['library_seconds'] for s in experts):.1f} s of training")
    shutil.rmtree(work, ignore_errors=True)


def _summaries(result: dict):
    yield from result.get("stage_summaries", [])


if __name__ == "__main__":
    main()
