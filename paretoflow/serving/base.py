"""The base model through MLflow: registered once per fingerprint, downloaded at load time.

A candidate holds only its adapters; the base it was built on is its own registered model
(`paretoflow-base`), one version per base fingerprint, reused while the fingerprint holds.
Only safetensors and JSON/text files are logged (no pickled weights, no remote code). At
load time the candidate's `base.json` names that version; `resolve_base` downloads it
through the tracking server (`mlflow.artifacts.download_artifacts`) into a local cache
keyed by fingerprint ($PARETOFLOW_BASE_CACHE, default ~/.cache/paretoflow/base) and
checks the fingerprint before anything loads it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

BASE_MODEL_NAME = "paretoflow-base"
FINGERPRINT_TAG = "paretoflow.base_fingerprint"
BASE_ARTIFACT = "base"
# Files a base folder may publish: weights as safetensors, configs, tokenizer files.
SAFE_SUFFIXES = (".safetensors", ".json", ".txt", ".model", ".jinja")


def _stage_safe_files(base_dir: Path, out: Path) -> Path:
    out.mkdir(parents=True)
    files = [f for f in Path(base_dir).iterdir() if f.is_file() and f.suffix in SAFE_SUFFIXES]
    if not any(f.suffix == ".safetensors" for f in files):
        raise FileNotFoundError(f"base model {base_dir} has no safetensors weights to publish")
    for f in files:
        shutil.copy2(f, out / f.name)
    return out


def register_base(tracker, base_dir: str | Path, fingerprint: str, parent_run_id: str | None = None,
                  name: str = BASE_MODEL_NAME) -> dict:
    """The registered version of this base (registered now if no version has its fingerprint).
    Returns base.json's content: {registered_model, version, uri, fingerprint}."""
    from paretoflow.registry import find_tagged_version, register_candidate

    version = find_tagged_version(tracker, name, FINGERPRINT_TAG, fingerprint)
    if version is None:
        with tracker.run(f"base-{fingerprint}", parent_run_id, tags={"paretoflow.stage": "publish-base"}) as run_id:
            with tempfile.TemporaryDirectory() as tmp:
                staged = _stage_safe_files(Path(base_dir), Path(tmp) / BASE_ARTIFACT)
                tracker.log_artifact(run_id, staged, BASE_ARTIFACT)
            version = register_candidate(tracker, name, run_id, BASE_ARTIFACT, {FINGERPRINT_TAG: fingerprint})
    return {"registered_model": name, "version": version, "uri": f"models:/{name}/{version}",
            "fingerprint": fingerprint}


def base_cache_dir() -> Path:
    """Where downloaded bases are kept, one folder per fingerprint."""
    return Path(os.environ.get("PARETOFLOW_BASE_CACHE") or Path.home() / ".cache" / "paretoflow" / "base")


def resolve_base(base_json: Path, fingerprint: str) -> Path:
    """Local folder of the registered base named by `base_json`, downloaded once per fingerprint."""
    import mlflow

    from paretoflow.models import model_fingerprint
    from paretoflow.serving.policy import PackageChanged

    info = json.loads(Path(base_json).read_text())
    if info.get("fingerprint") != fingerprint:
        raise PackageChanged(f"base.json names base {info.get('fingerprint')}, the recipe {fingerprint}")
    target = base_cache_dir() / fingerprint
    if target.is_dir() and model_fingerprint(target) == fingerprint:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{fingerprint}-", dir=target.parent))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=info["uri"], dst_path=str(staging)))
        if model_fingerprint(local) != fingerprint:
            raise PackageChanged(f"{info['uri']} has fingerprint {model_fingerprint(local)}, expected {fingerprint}")
        if target.exists():   # a stale or partial copy: replace it
            shutil.rmtree(target, ignore_errors=True)
        try:
            local.rename(target)
        except OSError:       # another process renamed its copy first: use that one
            if not (target.is_dir() and model_fingerprint(target) == fingerprint):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def open_package(package_dir: Path):
    """A ServedPolicy from a downloaded package: adapters hash-checked, base through MLflow."""
    from paretoflow.serving.policy import ServedPolicy, load_base, read_package

    recipe, adapter_dirs = read_package(Path(package_dir))
    base_dir = resolve_base(Path(package_dir) / "base.json", recipe["base_fingerprint"])
    model, tokenizer = load_base(base_dir, recipe["base_fingerprint"])
    return ServedPolicy(model, tokenizer, recipe, adapter_dirs)


__all__ = ["BASE_MODEL_NAME", "base_cache_dir", "open_package", "register_base", "resolve_base"]
