"""One way to read and write what stages exchange: atomic, deterministic, checked.

- `atomic_write(path, write)` writes beside the target and renames it into place, so a
  killed run never leaves a half-written file; `write_text` / `write_json` /
  `write_table` build on it.
- `atomic_dir(path)` does the same for a set of files: the caller fills a temporary
  sibling folder, which replaces `path` in one rename when the block ends without error.
- `write_table` writes Parquet whose bytes depend on the rows only (no pandas metadata,
  no index), so DVC and the stage cache see unchanged data as unchanged.
- `read_table(path, required)` is the one reader of the canonical tables: a missing file
  or column is one error naming the file and what is missing.
- `file_hash` / `files_hash` are the content hashes used by cache keys and lineage.
- `inside(root, rel)` resolves a path from params and refuses one that leaves the root.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd


FINGERPRINTS_FILE = ".fingerprints.json"  # paretoflow.models' per-file digest record


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` on a temp file beside `path`, then rename it over `path`.

    The file gets the permissions a plain `open(path, "w")` would give (mkstemp makes 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | Path, document: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """JSON with a trailing newline; non-JSON values (paths, numpy scalars) as strings."""
    text = json.dumps(document, indent=indent, sort_keys=sort_keys, default=_json_default)
    return write_text(path, text + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    if hasattr(value, "tolist"):  # numpy array
        return value.tolist()
    return str(value)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Parquet without pandas metadata or index: the bytes depend on the rows only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def read_table(path: str | Path, required: Sequence[str] = (), *, what: str = "table") -> pd.DataFrame:
    """Read a Parquet table; a missing file or required column is one clear error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    frame = pd.read_parquet(path)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (has {list(frame.columns)})")
    return frame


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temp folder beside `path`; on success it replaces `path` at once.

    Readers see the old folder or the new one, never a mix. On error the temp folder is
    removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # as mkdir would (mkdtemp makes 0700)
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def file_hash(path: str | Path, length: int = 16) -> str:
    """sha256 of one file's bytes, streamed."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def files_hash(paths: Sequence[str | Path], length: int = 16) -> str:
    """Content hash of files / folders (sorted, recursive; temp files skipped).

    Names are taken relative to each given path's parent, so the same content under
    another root hashes the same. A missing path contributes nothing.
    """
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        if p.is_dir():
            # Skipped: temp files, and model_fingerprint's digest record (a cache of hashes
            # written on first use; counting it would change a folder's hash once, unedited).
            files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.endswith(".tmp")
                           and f.name != FINGERPRINTS_FILE)
        else:
            files = [p] if p.exists() else []
        base = p.parent
        for f in files:
            h.update(f.relative_to(base).as_posix().encode())
            h.update(bytes.fromhex(file_hash(f, 64)))
    return h.hexdigest()[:length]


def inside(root: str | Path, rel: str | Path, *, what: str = "path") -> Path:
    """`root / rel`, resolved; refuses a path that is empty, absolute, or leaves `root`."""
    if str(rel).strip() in ("", "."):
        raise ValueError(f"{what}: empty path (it would name the project root itself)")
    root = Path(root).resolve()
    full = (root / rel).resolve()
    if full == root or root not in full.parents:
        raise ValueError(f"{what}: {rel!r} resolves to {full}, outside the project root {root}")
    return full


__all__ = [
    "atomic_dir",
    "atomic_write",
    "file_hash",
    "files_hash",
    "inside",
    "read_json",
    "read_table",
    "write_bytes",
    "write_json",
    "write_table",
    "write_text",
]
