"""The temporary Prefect server of a local run (no PREFECT_API_URL): started early, beside
the run's other start-up work, and reaped at the next start if a killed run left it behind.

Prefect starts this server itself when the flow first needs its API
(`prefect.server.api.server.SubprocessASGIServer`, a singleton per process): uvicorn in a
subprocess that creates or migrates the SQLite database under PREFECT_HOME, 19 s on a fresh
clone of these 2-core machines (2026-12-03 `make run`). Starting the same singleton in a
thread first lets that subprocess work while this process imports torch and the stage
libraries and creates the MLflow store (`flows/nightly.py` `main`); the flow then finds it
running. The server is Prefect's own, started by Prefect's code; only the moment changes.

Prefect stops it at exit (atexit), which a `kill -9` of the run skips: the uvicorn process
then lives on, holding its port and database. `start_early` records the server's and this
process's pids under PREFECT_HOME; the next start that finds the recording process dead and
the server alive (its command line still Prefect's server) terminates it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

RECORD = "paretoflow-ephemeral-server.json"
MARKER = "prefect.server.api.server:create_app"


def _record_path() -> Path:
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()) / RECORD


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_prefect_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return MARKER in cmdline


def reap_orphan(record: Path | None = None, grace_s: float = 5.0) -> int | None:
    """Terminate the temporary server a dead run left behind; its pid, or None if there
    was none. A server whose recording process still runs (another run on this
    PREFECT_HOME) is left alone."""
    record = record or _record_path()
    try:
        entry = json.loads(record.read_text())
        server, owner = int(entry["server_pid"]), int(entry["owner_pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if _alive(owner) and owner != os.getpid():
        return None
    record.unlink(missing_ok=True)
    if not (_alive(server) and _is_prefect_server(server)):
        return None
    os.kill(server, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _alive(server) and _is_prefect_server(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(server) and _is_prefect_server(server):
        os.kill(server, signal.SIGKILL)
    return server


class EarlyServer:
    """The temporary server starting in a thread; `wait()` re-raises its start's error."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._start, name="prefect-ephemeral-start", daemon=True)

    def _start(self) -> None:
        try:
            from prefect.server.api.server import SubprocessASGIServer

            server = SubprocessASGIServer()
            server.start()
            record = _record_path()
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps({"server_pid": server.server_process.pid, "owner_pid": os.getpid(),
                                          "port": server.port}))
        except BaseException as exc:  # re-raised in the main thread by wait()
            self.error = exc

    def wait(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def start_early() -> EarlyServer | None:
    """Start the temporary server in a thread when this run will need one (no
    PREFECT_API_URL: Prefect's own condition, prefect.client.orchestration.get_client);
    reap a dead run's server first. None otherwise."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    reap_orphan()
    # Imported here, not in the thread: there the import would share the GIL with the
    # caller's imports and launch the server only after them (~50 s late on a fresh clone,
    # 2026-12-03); now the thread's first step is the server's Popen.
    from prefect.server.api.server import SubprocessASGIServer  # noqa: F401

    early = EarlyServer()
    early.thread.start()
    return early


__all__ = ["EarlyServer", "reap_orphan", "start_early"]
