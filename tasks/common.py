"""What every stage task shares: the cross-process cache key and the output manifests.

Cache key = stage (+ job) + project root + the params sections the stage reads + a
content hash of its input files + a hash of the code it runs (the import closure of its
stage module, `paretoflow.stages.base`) + for the stages that read the policy, the
policy's content fingerprint. A rerun after a crash therefore skips every stage whose
inputs, params and code are unchanged and resumes at the first that is not.

A cached summary only *describes* files on disk, and outputs live at fixed paths: a run
with other params, or a killed run, overwrites them. So every completed stage writes a
**manifest** (`.paretoflow/stages/<stage>[-<job>].json`): the cache key it ran under and
the content hash of the outputs it wrote. The flow uses the cache only when the manifest
names the same key and the files on disk still hash to what it recorded (`cache_valid`);
otherwise the stage recomputes. The manifest is written last, atomically, after the
outputs: a stage killed half-way never has a valid one.
Results are persisted as JSON (no pickle) under PREFECT_HOME.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from paretoflow.config import Params
from paretoflow.cpu import native_bf16
from paretoflow.io import files_hash, read_json, write_json
from paretoflow.pipeline import stage

MANIFEST_DIR = ".paretoflow/stages"


def stage_cache_key(name: str, params: Params, root: Path, job: dict[str, Any] | None = None) -> str:
    s = stage(name)
    root = Path(root)
    payload = {
        "stage": name,
        "root": str(root.resolve()),
        "job": job or {},
        "sections": params.section_hash(*s.sections),
        "inputs": files_hash([root / i for i in s.inputs(params)]),
        "code": s.code_hash(),
        # The policy's weights by content (models.model_fingerprint, recorded beside the files so
        # reruns hash nothing): a model overwritten in place reruns the stages that read it.
        "policy": policy_fingerprint(params, root) if s.policy_read(params) else None,
        # the "auto" precisions (MiniLM, align's autocast) resolve by CPU (paretoflow/cpu.py):
        # a cache made with bf16 is not served where they run in float32, or back
        "cpu_bf16": native_bf16() if "model" in s.sections else None,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return f"{name}-{digest}"


def policy_fingerprint(params: Params, root: Path) -> str:
    """The content fingerprint of the policy `model.policy` names, resolved as the stages do."""
    from paretoflow.models import model_fingerprint, resolve_policy_path

    return model_fingerprint(resolve_policy_path(params.model.policy, Path(root) / params.model.cache_dir))


def manifest_path(name: str, root: Path, job: dict[str, Any] | None = None) -> Path:
    job_name = stage(name).name_of(job or {})
    return Path(root) / MANIFEST_DIR / (f"{name}-{job_name}.json" if job_name else f"{name}.json")


def outputs_hash(name: str, params: Params, root: Path, job: dict[str, Any] | None = None) -> str | None:
    """Content hash of what the stage (job) wrote; None when an output is missing."""
    outs = [Path(root) / o for o in stage(name).outputs_for(params, job)]
    if not all(o.exists() for o in outs):
        return None
    return files_hash(outs)


def write_manifest(name: str, params: Params, root: Path, key: str, job: dict[str, Any] | None = None) -> str:
    """Record that `key` produced the outputs now on disk (called after the stage wrote them)."""
    digest = outputs_hash(name, params, root, job)
    if digest is None:
        raise FileNotFoundError(f"stage {name}: outputs {stage(name).outputs_for(params, job)} missing after the run")
    write_json(manifest_path(name, root, job), {"stage": name, "job": job or {}, "cache_key": key,
                                                "outputs_hash": digest, "written_at": time.time()})
    return digest


def cache_valid(name: str, params: Params, root: Path, job: dict[str, Any] | None = None) -> bool:
    """True when the outputs on disk are exactly what a run under the current key produced."""
    path = manifest_path(name, root, job)
    if not path.exists():
        return False
    try:
        manifest = read_json(path)
    except ValueError:
        return False
    if manifest.get("cache_key") != stage_cache_key(name, params, root, job):
        return False
    return manifest.get("outputs_hash") == outputs_hash(name, params, root, job)


def summarize(result: Any, seconds: float | None = None) -> dict[str, Any]:
    """A library result dataclass → plain JSON (paths as strings) for Prefect's JSON results.

    `library_seconds` records the time spent in the library call itself, so the run
    summary and bench/overhead.py can separate orchestration and tracking cost from work.
    """
    if dataclasses.is_dataclass(result):
        result = dataclasses.asdict(result)
    elif hasattr(result, "model_dump"):
        result = result.model_dump(mode="json")
    out = json.loads(json.dumps(result, default=str))
    if not isinstance(out, dict):
        out = {"result": out}
    if seconds is not None:
        out["library_seconds"] = seconds
    return out


def timed(fn, *args, **kwargs) -> dict[str, Any]:
    """Call a library stage function and summarize its result with its wall time."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return summarize(result, time.perf_counter() - start)
