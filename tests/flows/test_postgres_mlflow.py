"""Integration: mlflow/postgres-server.sh runs MLflow on its own PostgreSQL cluster.

Checked: tracking, artifacts and the registry work through the server; the generated
password is in a 0600 file and nowhere else (not in the script's output, the logs or any
process's command line); both servers listen on 127.0.0.1 only; `stop` leaves no process
behind; a restart keeps the data.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.flows.servers import BIN, POSTGRES_SCRIPT, postgres_available, postgres_mlflow_server

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not postgres_available(), reason="PostgreSQL 15 (initdb, pg_ctl) not installed")]


def _script(action: str, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(POSTGRES_SCRIPT), action, str(folder)], capture_output=True, text=True,
                          env={**os.environ, "MLFLOW": str(BIN / "mlflow")}, timeout=600)


def _processes_under(folder: Path) -> list[str]:
    """Command lines of live processes that name the folder (the servers)."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if str(folder) in cmdline and "pytest" not in cmdline:
            found.append(cmdline)
    return found


def _listening(pid_names: tuple[str, ...]) -> set[str]:
    import psutil

    addresses = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid:
            try:
                name = " ".join(psutil.Process(conn.pid).cmdline())
            except psutil.NoSuchProcess:
                continue
            if any(n in name for n in pid_names):
                addresses.add(conn.laddr.ip)
    return addresses


def test_postgres_backed_server_tracks_registers_and_keeps_its_secret(tmp_path):
    from mlflow import MlflowClient

    with postgres_mlflow_server() as (url, folder):
        password = (folder / "password").read_text().strip()
        assert len(password) >= 24
        for name in ("password", "pgpass"):
            assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
        client = MlflowClient(tracking_uri=url, registry_uri=url)
        experiment = client.create_experiment("pg-check")
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "loss", 0.5, step=3)
        (tmp_path / "note.txt").write_text("artifact")
        client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
        client.set_terminated(run.info.run_id)
        client.create_registered_model("pg-model")
        version = client.create_model_version("pg-model", f"runs:/{run.info.run_id}/note.txt", run.info.run_id)
        client.set_registered_model_alias("pg-model", "champion", version.version)
        assert client.get_model_version_by_alias("pg-model", "champion").version == version.version
        # Artifacts land in the separate artifact root, not in the database folder.
        assert list((folder / "artifacts").rglob("note.txt"))
        # The password is in its file only: not in any server's command line or log.
        servers = _processes_under(folder)
        assert any("mlflow" in c for c in servers) and any("postgres" in c for c in servers), servers
        assert not any(password in c for c in servers)
        for log in folder.glob("*.log"):
            assert password not in log.read_text(errors="replace"), log
        assert _listening(("postgres", "mlflow", "uvicorn", "gunicorn")) <= {"127.0.0.1"}
        status = _script("status", folder)
        assert status.returncode == 0 and password not in status.stdout + status.stderr

        # stop → nothing left; start again → the same data
        stopped = _script("stop", folder)
        assert stopped.returncode == 0, stopped.stderr
        assert _processes_under(folder) == []
        assert _script("status", folder).returncode != 0
        started = _script("start", folder)
        assert started.returncode == 0, started.stderr
        assert password not in started.stdout + started.stderr
        again = MlflowClient(tracking_uri=started.stdout.strip().splitlines()[-1])
        history = again.get_metric_history(run.info.run_id, "loss")
        assert [(m.step, m.value) for m in history] == [(3, 0.5)]
