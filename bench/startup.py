"""Start-up of a local nightly run on a fresh clone: Prefect's temporary server (a fresh
SQLite database to migrate), the stage libraries' imports and a fresh MLflow store, one
after the other (what a run did before flows/ephemeral.py) vs overlapped
(`flows.nightly.prepare`: the server starts in a thread meanwhile). Each way runs in its
own fresh process with its own empty PREFECT_HOME and project folder, `--repeats` times,
alternating; prints the seconds from process start to "ready for the flow" and the ratio.

    .venv/bin/python bench/startup.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SEQUENTIAL = """
import time, sys
from pathlib import Path
start = time.perf_counter()
from prefect.server.api.server import SubprocessASGIServer
SubprocessASGIServer().start()
from flows.nightly import warm_up
from paretoflow.config import load_params
warm_up(load_params(sys.argv[1]), Path(sys.argv[2]))
print(time.perf_counter() - start)
"""

OVERLAPPED = """
import time, sys
start = time.perf_counter()
from flows.nightly import prepare
prepare(sys.argv[1], sys.argv[2])
print(time.perf_counter() - start)
"""


def _once(code: str) -> float:
    work = Path(tempfile.mkdtemp(prefix="pf-startup-"))
    try:
        shutil.copy(REPO / "params.yaml", work / "params.yaml")
        env = {**os.environ, "PREFECT_HOME": str(work / ".prefect"), "PYTHONPATH": str(REPO),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1"}
        env.pop("PREFECT_API_URL", None)
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code, str(work / "params.yaml"), str(work)], env=env,
                             capture_output=True, text=True, timeout=300, cwd=REPO)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        return time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    sequential, overlapped = [], []
    for _ in range(args.repeats):
        sequential.append(_once(SEQUENTIAL))
        overlapped.append(_once(OVERLAPPED))
    s, o = min(sequential), min(overlapped)
    print(f"start-up to the flow, fresh PREFECT_HOME and MLflow store (best of {args.repeats}): one after the other "
          f"{s:.1f} s, overlapped {o:.1f} s -> {s / o:.2f}x ({s - o:.1f} s saved); all: {sequential} / {overlapped}")


if __name__ == "__main__":
    main()
