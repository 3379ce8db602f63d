"""Stages exchange artifacts through stores, not through the flow's checkout.

A stage run on another machine (an `align-expert` flow run on a Prefect worker, see
docs/scaling.md) cannot read the flow's folders. So:

- its **inputs** come from the DVC remote, named by content hash: the flow commits and
  pushes the producing stages, and sends the dvc.lock entries of the stage's inputs
  (`locked_inputs`, derived from the registry's `inputs`); the worker materializes exactly
  those in a scratch DVC project (`pull_inputs`);
- its **outputs** go to MLflow as run artifacts (the adapter folder with its base-model
  fingerprint, `Tracker.log_adapter`), tagged with the stage cache key and the content
  hash of the files; the flow finds them by cache key (`find_adapter_run`) and fetches them
  back into the checkout, checked against that hash, in one rename (`adopt_adapter`).

Content hashes stay the cache keys (tasks/common.py): an adapter already in MLflow under
the current key is fetched, never retrained.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from paretoflow import dvc
from paretoflow.config import Params, TrackingConfig
from paretoflow.io import atomic_dir, files_hash, read_json

ADAPTER_ARTIFACT = "adapter"          # Tracker.log_adapter's default artifact path
BASE_RECORD = "base_model.json"       # written by Tracker.log_adapter beside the adapter
CACHE_KEY_TAG = "paretoflow.cache_key"
OUTPUTS_HASH_TAG = "paretoflow.outputs_hash"
FLOW_RUN_TAG = "paretoflow.prefect_flow_run_id"


class LockedOutput(BaseModel):
    """One output entry of dvc.lock: enough for DVC to fetch it by hash from a remote."""

    model_config = ConfigDict(extra="forbid")

    path: str
    md5: str
    size: int | None = None
    nfiles: int | None = None
    hash: str = "md5"


class ExpertJob(BaseModel):
    """One align job (one adapter): the DPO expert of `objective`, or MODPO for `weights`."""

    model_config = ConfigDict(extra="forbid")

    objective: str | None = None
    weights: list[float] | None = None

    def kwargs(self) -> dict:
        """The job as `paretoflow.align.run` keyword arguments (the registry's job dict)."""
        return self.model_dump(exclude_none=True)


class Handoff(BaseModel):
    """What a remote stage run needs besides params: where its inputs and outputs live."""

    model_config = ConfigDict(extra="forbid")

    tracking: TrackingConfig                     # an MLflow server URI, reachable from workers
    dvc_remote_url: str                          # absolute path or URL, reachable from workers
    inputs: list[LockedOutput]
    parent_run_id: str                           # the pipeline's MLflow parent run
    cache_key: str                               # tasks/common.stage_cache_key on the flow side
    lineage: dict[str, str] = Field(default_factory=dict)


def job_tags(job: dict) -> dict[str, str]:
    """The MLflow tags naming an align job (the same in process and on a worker)."""
    return {"paretoflow.objective": job.get("objective") or "", "paretoflow.weights": str(job.get("weights") or "")}


# ------------------------------------------------------------------ inputs: DVC


def _covers(out: str, wanted: str) -> bool:
    """An output entry covers an input when they are the same path or one holds the other."""
    return out == wanted or wanted.startswith(out + "/") or out.startswith(wanted + "/")


def locked_inputs(params: Params, root: Path, stage_name: str) -> list[LockedOutput]:
    """The dvc.lock entries holding the stage's inputs (`paretoflow.stages` registry)."""
    from paretoflow.pipeline import producer_of, stage

    outs = dvc.lock_outs(root)
    chosen: dict[str, dict] = {}
    for rel in stage(stage_name).inputs(params):
        wanted = rel.rstrip("/")
        matched = [o for o in outs if _covers(o["path"].rstrip("/"), wanted)]
        if not matched:
            raise ValueError(
                f"{stage_name} reads {wanted!r}, which {Path(root) / 'dvc.lock'} does not record: "
                f"`dvc commit {producer_of(params, wanted) or '<its stage>'}` and push it before "
                "a worker can pull it")
        chosen.update({o["path"]: o for o in matched})
    return [LockedOutput(**{k: v for k, v in o.items() if k in LockedOutput.model_fields})
            for _, o in sorted(chosen.items())]


def pull_inputs(inputs: list[LockedOutput], remote_url: str, workdir: Path) -> list[Path]:
    """Materialize `inputs` under `workdir` from the DVC remote, by hash; returns their paths.

    `workdir` becomes a scratch DVC project holding one `.dvc` file per input (the dvc.lock
    entry, path made relative to the file), so `dvc pull` fetches exactly those objects.
    """
    workdir = Path(workdir)
    dvc.init(workdir)
    dvc.run_dvc(workdir, "remote", "add", "--force", "--default", "origin", remote_url)
    for entry in inputs:
        target = workdir / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        out = entry.model_dump(exclude_none=True)
        out["path"] = target.name
        (target.parent / f"{target.name}.dvc").write_text(yaml.safe_dump({"outs": [out]}, sort_keys=False))
    dvc.run_dvc(workdir, "pull")
    missing = [e.path for e in inputs if not (workdir / e.path).exists()]
    if missing:
        raise FileNotFoundError(f"dvc pull from {remote_url} did not produce {missing} in {workdir}")
    return [workdir / e.path for e in inputs]


# ------------------------------------------------------------------ outputs: MLflow


def find_adapter_run(tracker, cache_key: str, flow_run_id: str | None = None):
    """The newest FINISHED MLflow run holding an adapter made under `cache_key`, or None.

    Only finished runs count: a worker killed while uploading leaves its run RUNNING.
    """
    query = f"tags.`{CACHE_KEY_TAG}` = '{cache_key}' and attributes.status = 'FINISHED'"
    if flow_run_id:
        query += f" and tags.`{FLOW_RUN_TAG}` = '{flow_run_id}'"
    runs = tracker.client.search_runs([tracker.experiment_id], filter_string=query,
                                      order_by=["attributes.start_time DESC"], max_results=5)
    return next((r for r in runs if r.data.tags.get(OUTPUTS_HASH_TAG)), None)


def adopt_adapter(tracker, run, dest: Path, base_fingerprint: str | None = None) -> str:
    """Fetch the adapter of MLflow `run` into `dest` (replaced in one rename); returns its hash.

    Refused, with `dest` untouched, when the files do not hash to what the worker recorded
    or (given `base_fingerprint`) when the adapter was trained on another base model.
    """
    dest = Path(dest)
    run_id, expected = run.info.run_id, run.data.tags[OUTPUTS_HASH_TAG]
    with tempfile.TemporaryDirectory(prefix="pf-adopt-") as tmp:
        downloaded = tracker.download(run_id, ADAPTER_ARTIFACT, Path(tmp) / "download")
        meta = read_json(downloaded / "meta.json")
        trained_on = meta.get("base_model_fingerprint")
        if base_fingerprint is not None and trained_on != base_fingerprint:
            raise ValueError(
                f"adapter {dest.name} (MLflow run {run_id}) was trained on base fingerprint {trained_on} "
                f"({meta.get('base_model_path')}), but this checkout's base has {base_fingerprint}")
        staged = Path(tmp) / dest.name  # same folder name as dest: files_hash names files by it
        staged.mkdir()
        for f in downloaded.iterdir():
            if f.is_file() and f.name != BASE_RECORD:
                shutil.copy2(f, staged / f.name)
        got = files_hash([staged])
        if got != expected:
            raise ValueError(f"adapter {dest.name} fetched from MLflow run {run_id} hashes {got}, but the worker "
                             f"recorded {expected}: the artifact is incomplete or was changed")
        with atomic_dir(dest) as final:
            for f in staged.iterdir():
                shutil.copy2(f, final / f.name)
    return got


__all__ = [
    "ADAPTER_ARTIFACT",
    "CACHE_KEY_TAG",
    "ExpertJob",
    "FLOW_RUN_TAG",
    "Handoff",
    "LockedOutput",
    "OUTPUTS_HASH_TAG",
    "adopt_adapter",
    "find_adapter_run",
    "job_tags",
    "locked_inputs",
    "pull_inputs",
]
