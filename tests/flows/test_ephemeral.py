"""The temporary Prefect server of a local run: started early, reaped after a kill -9."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from flows.ephemeral import MARKER, reap_orphan
from tests.conftest import REPO_ROOT


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _sleeper(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *argv])


def _write(record, server: int, owner: int) -> None:
    record.write_text(json.dumps({"server_pid": server, "owner_pid": owner, "port": 8123}))


def test_reap_kills_only_a_dead_runs_prefect_server(tmp_path):
    record = tmp_path / "record.json"
    server = _sleeper(MARKER)          # a command line that names Prefect's server app
    try:
        # Its run is alive (this process): left alone, record kept.
        _write(record, server.pid, os.getppid())
        assert reap_orphan(record) is None and server.poll() is None and record.exists()
        # Its run is dead: terminated, record gone.
        _write(record, server.pid, _dead_pid())
        assert reap_orphan(record, grace_s=5) == server.pid
        assert server.wait(timeout=10) == -signal.SIGTERM and not record.exists()
    finally:
        server.kill()
    other = _sleeper("not-prefect")    # a reused pid that is something else: never touched
    try:
        _write(record, other.pid, _dead_pid())
        assert reap_orphan(record) is None and other.poll() is None and not record.exists()
    finally:
        other.kill()
    assert reap_orphan(tmp_path / "missing.json") is None
    record.write_text("{not json")
    assert reap_orphan(record) is None


@pytest.mark.integration
def test_server_of_a_killed_run_is_reaped_at_the_next_start(tmp_path):
    """A run started the temporary server early, then died by kill -9: its uvicorn lives
    on (Prefect's atexit never ran); the next start terminates it."""
    home = tmp_path / "prefect-home"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": "",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", "PYTHONPATH": str(REPO_ROOT)}
    script = textwrap.dedent("""
        import time
        from flows.ephemeral import start_early
        start_early().wait()
        print("started", flush=True)
        time.sleep(600)
    """)
    run = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert run.stdout.readline().strip() == "started"
        entry = json.loads((home / "paretoflow-ephemeral-server.json").read_text())
        assert entry["owner_pid"] == run.pid
        server = entry["server_pid"]
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
        time.sleep(1)
        os.kill(server, 0)                             # the orphan is still there
        reaper = subprocess.run([sys.executable, "-c", "from flows.ephemeral import reap_orphan; print(reap_orphan())"],
                                env=env, capture_output=True, text=True, timeout=60)
        assert reaper.stdout.strip() == str(server), reaper.stderr
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists(f"/proc/{server}") and \
                open(f"/proc/{server}/stat").read().split()[2] != "Z":
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{server}") or open(f"/proc/{server}/stat").read().split()[2] == "Z"
    finally:
        run.kill()
