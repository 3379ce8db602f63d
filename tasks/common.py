"""What every stage task shares: the cross-process cache key and JSON-able summaries.

Cache key = stage name + project root + the params sections the stage reads + a content
hash of its input files + a hash of the code it runs (its DVC code deps + shared modules). A rerun after a crash (kill -9 mid-align)
therefore skips every stage whose inputs, params and code are unchanged and resumes at
the first that is not. Outputs on disk are the stage's real result and the cached
summary only describes them, so the flow refreshes the cache of a stage whose output
files are missing (`outputs_present`).
Results are persisted as JSON (no pickle) under PREFECT_HOME.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from paretoflow.config import Params
from paretoflow.io import files_hash

LIBRARY_ROOT = Path(__file__).resolve().parents[1]


# Modules every stage runs through; each stage adds the code it lists as DVC deps.
SHARED_CODE = ("paretoflow/config.py", "paretoflow/models.py", "paretoflow/schema.py",
               "paretoflow/generation.py", "tasks")


@functools.lru_cache(maxsize=None)
def code_hash(stage: str) -> str:
    """Hash of the code a stage runs: its DVC code deps (dvc.yaml, the same list `dvc repro`
    watches) plus the shared modules. Editing the front code does not rerun alignment."""
    import yaml

    dvc_yaml = yaml.safe_load((LIBRARY_ROOT / "dvc.yaml").read_text())
    deps = [d for d in dvc_yaml["stages"][stage]["deps"] if d.startswith("paretoflow")]
    h = hashlib.sha256()
    for rel in sorted({*deps, *SHARED_CODE}):
        path = LIBRARY_ROOT / rel
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(f.relative_to(LIBRARY_ROOT).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class StageIO:
    sections: tuple[str, ...]   # params sections the stage reads
    inputs: tuple[str, ...]     # files/folders it reads (relative to root)
    outputs: tuple[str, ...]    # files/folders it writes (relative to root)


def stage_io(params: Params, stage: str, adapter: str | None = None) -> StageIO:
    c = params.curate.out_dir
    raw_sources = tuple(s.path for s in params.curate.sources)
    table = {
        "curate": StageIO(("objectives", "curate"), raw_sources,
                          (f"{c}/prompts.parquet", f"{c}/quarantine.parquet", f"{c}/report.json")),
        "validate": StageIO(("objectives", "validate"), (c,), (f"{params.validate_.docs_dir}",)),
        "pairs": StageIO(("project", "model", "objectives", "pairs"), (f"{c}/prompts.parquet",),
                         ("data/pairs/pairs.parquet", "data/pairs/ratings.parquet")),
        "reward": StageIO(("project", "objectives", "reward"),
                          ("data/pairs", f"{c}/ratings.parquet", f"{c}/pairs.parquet"),
                          ("artifacts/reward/model.safetensors", "artifacts/reward/report.json")),
        "align": StageIO(("project", "model", "objectives", "align"), ("data/pairs",),
                         (f"artifacts/adapters/{adapter}/adapter_model.safetensors",)),
        "front": StageIO(("project", "model", "objectives", "front"),
                         ("artifacts/adapters", "artifacts/reward", f"{c}/prompts.parquet"),
                         ("artifacts/front/front.json", "artifacts/front/front.png")),
    }
    return table[stage]


def outputs_present(params: Params, root: Path, stage: str, adapter: str | None = None) -> bool:
    return all((Path(root) / o).exists() for o in stage_io(params, stage, adapter).outputs)


def stage_cache_key(stage: str, params: Params, root: Path, adapter: str | None = None,
                    extra: Any = None) -> str:
    io = stage_io(params, stage, adapter)
    payload = {
        "stage": stage,
        "root": str(Path(root).resolve()),
        "adapter": adapter,
        "extra": extra,
        "sections": params.section_hash(*io.sections),
        "inputs": files_hash([root / i for i in io.inputs]),
        "code": code_hash(stage),
    }
    return stage + "-" + hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def summarize(result: Any, seconds: float | None = None) -> dict[str, Any]:
    """A library result dataclass → plain JSON (paths as strings) for Prefect's JSON results.

    `library_seconds` records the time spent in the library call itself, so
    bench/overhead.py can separate orchestration and tracking cost from the work.
    """
    if dataclasses.is_dataclass(result):
        result = dataclasses.asdict(result)
    out = json.loads(json.dumps(result, default=str))
    if seconds is not None:
        out["library_seconds"] = seconds
    return out


def timed(fn, *args, **kwargs) -> dict[str, Any]:
    """Call a library stage function and summarize its result with its wall time."""
    import time

    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return summarize(result, time.perf_counter() - start)
