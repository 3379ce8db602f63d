"""Start and stop real `mlflow server` (sqlite or PostgreSQL), `prefect server` and Prefect
worker processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
POSTGRES_SCRIPT = REPO / "mlflow" / "postgres-server.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}) before {url} answered:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (loopback)
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def process(cmd: list[str], log: Path, env: dict | None = None, cwd: Path | None = None):
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                cwd=cwd, start_new_session=True)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def mlflow_server(work: Path):
    port = free_port()
    cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
           "--artifacts-destination", str(work / "mlflow-artifacts"), "--workers", "1"]
    log = work / "mlflow-server.log"
    with process(cmd, log) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", 120, proc, log)
        yield url


@contextlib.contextmanager
def prefect_server(work: Path):
    port = free_port()
    env = {"PREFECT_HOME": str(work / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": ""}
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    log = work / "prefect-server.log"
    with process(cmd, log, env=env) as proc:
        url = f"http://127.0.0.1:{port}/api"
        wait_http(url + "/health", 180, proc, log)
        yield url


def postgres_available() -> bool:
    """PostgreSQL's server binaries where mlflow/postgres-server.sh looks for them. With
    PARETOFLOW_REQUIRE_POSTGRES=1 (CI) this is always True, so a missing install fails
    the tests that need it instead of skipping them."""
    if os.environ.get("PARETOFLOW_REQUIRE_POSTGRES") == "1":
        return True
    if os.environ.get("PG_BINDIR"):
        return (Path(os.environ["PG_BINDIR"]) / "pg_ctl").exists()
    return shutil.which("pg_ctl") is not None or any(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))


@contextlib.contextmanager
def postgres_mlflow_server(work: Path | None = None):
    """`mlflow/postgres-server.sh`: MLflow on its own PostgreSQL cluster; yields (url, folder).

    The folder is made under /tmp (mode 0711) unless given: as root the cluster runs as the
    `postgres` user, which cannot traverse pytest's private (0700) tmp folders.
    """
    own = work is None
    if own:
        work = Path(tempfile.mkdtemp(prefix="pf-mlflow-pg-"))
        work.chmod(0o711)
    folder = work / "mlflow-pg"
    env = {**os.environ, "MLFLOW": str(BIN / "mlflow")}
    started = subprocess.run(["bash", str(POSTGRES_SCRIPT), "start", str(folder)], env=env,
                             capture_output=True, text=True, timeout=600)
    try:
        if started.returncode != 0:
            raise RuntimeError(f"postgres-server.sh start failed ({started.returncode}):\n{started.stderr[-3000:]}")
        yield started.stdout.strip().splitlines()[-1], folder
    finally:
        subprocess.run(["bash", str(POSTGRES_SCRIPT), "stop", str(folder)], env=env, capture_output=True,
                       text=True, timeout=180)
        if own:
            shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def prefect_workers(pool: str, count: int, work: Path, env: dict, limit: int = 1):
    """`count` real `paretoflow worker --pool` processes (each its own process group);
    yields their Popen objects. Each runs at most `limit` flow runs at once."""
    procs = []
    with contextlib.ExitStack() as stack:
        for i in range(count):
            procs.append(stack.enter_context(start_worker(pool, i, work, env, limit)))
        yield procs


@contextlib.contextmanager
def start_worker(pool: str, index: int, work: Path, env: dict, limit: int = 1):
    cmd = [sys.executable, "-m", "flows.cli", "worker", "--pool", pool, "--type", "process",
           "--limit", str(limit), "--name", f"{pool}-worker-{index}"]
    worker_env = {**env, "PARETOFLOW_WORK_DIR": str(work / f"worker-{index}")}
    with process(cmd, work / f"worker-{index}.log", env=worker_env, cwd=REPO) as proc:
        yield proc
        kill_tree(proc.pid, signal.SIGTERM)


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> list[int]:
    """Signal a process and all its descendants (a flow run's process has its own session,
    so killing the worker's process group alone would leave it running)."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    victims = [*root.children(recursive=True), root]
    for p in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)
    psutil.wait_procs(victims, timeout=20)
    return [p.pid for p in victims]


@contextlib.contextmanager
def tracking_server(work: Path):
    """The integration tier's MLflow server: on PostgreSQL where it is installed (CI and these
    machines), else on sqlite. Yields the tracking URI."""
    if postgres_available():
        with postgres_mlflow_server() as (url, _):
            yield url
    else:
        with mlflow_server(work) as url:
            yield url
