"""Prefect + MLflow overhead as a share of a nightly run.

Runs the nightly flow once in this process and compares its wall time with the time
spent inside the library's stage functions (each task records `library_seconds`): the
rest is orchestration (Prefect task runs, result persistence, cache keys), tracking
(MLflow runs, params, metrics, artifact copies), DVC commits and the temporary Prefect
server's start. Printed with and without that one-off server start.

    .venv/bin/python bench/overhead.py            # on the default model (~10 min)
    .venv/bin/python bench/overhead.py --tiny     # tiny model, seconds (overhead dominates)
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
    args = ap.parse_args()

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


def _summaries(result: dict):
    yield from result.get("stage_summaries", [])


if __name__ == "__main__":
    main()
