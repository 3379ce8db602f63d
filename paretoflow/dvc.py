"""Small helpers around the DVC command line for the flow and the CLI.

DVC is driven through its CLI (the `dvc` next to this Python, normally `.venv/bin/dvc`)
rather than its Python API, which is not a stable interface. Every call runs with
`cwd=root` (`dvc repro` resolves dvc.yaml from the current directory) and holds a file
lock under `.dvc/tmp`, so two DVC operations never run on one repository at once (DVC's
own rwlock refuses a second one instead of waiting).

    from paretoflow import dvc
    dvc.ensure_remote(params, root)            # local remote from params.dvc, if missing
    dvc.repro(root, ["curate", "validate"])    # rerun what changed
    dvc.data_hash(root, "data/curated/prompts.parquet")  # md5 from dvc.lock, lineage tag
    dvc.push(root); dvc.pull(root)
    dvc.lock_outs(root)                        # dvc.lock output entries (what a worker pulls by hash)
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from paretoflow.config import Params

LOCK_NAME = "paretoflow-dvc.lock"
_thread_lock = threading.Lock()  # flock is per open file; threads of one process need this too


class DvcError(RuntimeError):
    """A dvc command exited non-zero; the message holds the command and DVC's output."""


def dvc_executable() -> Path:
    """The `dvc` installed beside the running Python (the project venv's bin/)."""
    candidate = Path(sys.executable).parent / "dvc"
    if candidate.exists():
        return candidate
    raise FileNotFoundError(f"dvc executable not found beside {sys.executable}; install the project (pip install -e .)")


def run_dvc(root: Path, *args: str, timeout: float | None = None) -> str:
    """Run `dvc <args>` in `root` under the repository lock; return its stdout."""
    root = Path(root).resolve()
    if not (root / ".dvc").is_dir():
        raise FileNotFoundError(f"{root} is not a DVC repository (no .dvc/); run `dvc init` there")
    executable = dvc_executable()
    env = dict(os.environ)
    # Stage commands (`paretoflow curate`) must resolve to this venv's entry points.
    env["PATH"] = f"{executable.parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DVC_NO_ANALYTICS", "1")  # offline machines
    lock_path = root / ".dvc" / "tmp" / LOCK_NAME
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with _thread_lock, open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            proc = subprocess.run(
                [str(executable), *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
            )
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        tail = "\n".join(output.splitlines()[-30:])
        raise DvcError(f"`dvc {' '.join(args)}` failed in {root} (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def _remote_urls(root: Path) -> dict[str, str]:
    # `dvc config --list` prints one `remote.<name>.url=<url>` per line; `dvc remote list`
    # wraps long paths over several lines and cannot be parsed reliably.
    out = run_dvc(root, "config", "--list")
    remotes = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "remote" and parts[2] == "url":
            remotes[parts[1]] = value.strip()
    return remotes


def _configured(root: Path, name: str, wanted: str) -> bool:
    """True when the repository's own config (.dvc/config, .dvc/config.local over it) already
    makes `name` the default remote at `wanted`. Read with configobj, the parser DVC itself
    reads its config with, instead of two `dvc` processes (~2 s each on these machines,
    measured); anything else goes through the CLI (`ensure_remote`). Repository settings
    override the global and system ones, so a match here is DVC's answer too."""
    from configobj import ConfigObj, ConfigObjError

    merged: dict[str, dict] = {}
    try:
        for file in (root / ".dvc" / "config", root / ".dvc" / "config.local"):
            if file.is_file():
                for section, values in ConfigObj(str(file), encoding="utf-8").items():
                    if isinstance(values, dict):
                        merged.setdefault(section.strip(), {}).update(values)
    except (ConfigObjError, OSError, UnicodeError):
        return False
    remote = merged.get(f'remote "{name}"', {}).get("url")
    return (merged.get("core", {}).get("remote") == name and isinstance(remote, str)
            and _resolve_local(remote, root / ".dvc") == wanted)


def _resolve_local(url: str, base: Path) -> str:
    """A local path as an absolute path (relative to `base`); URLs unchanged."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", url):
        return url
    return str((base / url).resolve())


def resolve_remote_url(params: "Params", root: Path = Path(".")) -> str:
    """`params.dvc.remote_url` as workers elsewhere must see it: absolute, or the URL as given."""
    return _resolve_local(params.dvc.remote_url, Path(root).resolve())


def ensure_remote(params: "Params", root: Path = Path(".")) -> bool:
    """Make `params.dvc.remote_name` → `remote_url` the default remote; True if changed.

    A relative local url is relative to `root` (DVC itself stores it relative to
    .dvc/config, so it is compared after resolving both).
    """
    root = Path(root).resolve()
    name, url = params.dvc.remote_name, params.dvc.remote_url
    wanted = _resolve_local(url, root)
    if _configured(root, name, wanted):   # the usual case, read without a `dvc` process
        return False
    remotes = _remote_urls(root)
    if name in remotes and _resolve_local(remotes[name], root / ".dvc") == wanted:
        current_default = run_dvc(root, "remote", "default").strip()
        if current_default == name:
            return False
        run_dvc(root, "remote", "default", name)
        return True
    if name in remotes:
        run_dvc(root, "remote", "modify", name, "url", url)
        run_dvc(root, "remote", "default", name)
    else:
        run_dvc(root, "remote", "add", "--default", name, url)
    return True


def lock_outs(root: Path) -> list[dict]:
    """Every stage output entry of dvc.lock (path, md5, size, nfiles, hash), as DVC wrote it."""
    lock_path = Path(root) / "dvc.lock"
    if not lock_path.exists():
        raise FileNotFoundError(f"{lock_path} not found: run `dvc repro` (or `dvc commit`) first")
    lock = yaml.safe_load(lock_path.read_text()) or {}
    return [dict(out) for stage in (lock.get("stages") or {}).values() for out in stage.get("outs") or []]


def lock_hashes(root: Path) -> dict[str, str]:
    """Every stage output in dvc.lock: path → DVC md5 (a directory's ends in `.dir`)."""
    return {out["path"]: out.get("md5") or out.get("etag") or out.get("checksum") for out in lock_outs(root)}


def init(root: Path) -> None:
    """`dvc init --no-scm` in `root` (created if missing); a DVC project already there is kept."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if (root / ".dvc").is_dir():
        return
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run([str(dvc_executable()), "init", "--no-scm", "-q"], cwd=root, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise DvcError(f"`dvc init --no-scm` failed in {root}: {(proc.stdout + proc.stderr).strip()[-2000:]}")


def data_hash(root: Path, paths: str | Sequence[str]) -> str:
    """The DVC md5 of one output, or for several a sha256 over their sorted `path md5`
    lines (short): a lineage tag that changes exactly when the data changes."""
    hashes = lock_hashes(root)
    names = [paths] if isinstance(paths, str) else list(paths)
    missing = [p for p in names if p.rstrip("/") not in hashes]
    if missing:
        raise KeyError(f"outputs {missing} not in {Path(root) / 'dvc.lock'}; recorded: {sorted(hashes)}")
    if len(names) == 1:
        return hashes[names[0].rstrip("/")]
    lines = "\n".join(sorted(f"{p.rstrip('/')} {hashes[p.rstrip('/')]}" for p in names))
    return hashlib.sha256(lines.encode()).hexdigest()[:32]


def repro(root: Path = Path("."), stages: Iterable[str] | None = None, force: bool = False) -> str:
    """`dvc repro [stages]`: rerun the stages whose deps or params changed; returns DVC's log."""
    return run_dvc(root, "repro", *(["--force"] if force else []), *(stages or []))


def commit(root: Path = Path("."), stages: Iterable[str] | None = None) -> str:
    """`dvc commit --force [stages]`: record outputs produced outside `dvc repro` (by the
    Prefect flow calling the same functions) in dvc.lock and the cache."""
    return run_dvc(root, "commit", "--force", *(stages or []))


def push(root: Path = Path("."), remote: str | None = None) -> str:
    return run_dvc(root, "push", *(["--remote", remote] if remote else []))


def pull(root: Path = Path("."), remote: str | None = None) -> str:
    return run_dvc(root, "pull", *(["--remote", remote] if remote else []))


def status(root: Path = Path(".")) -> str:
    return run_dvc(root, "status")
