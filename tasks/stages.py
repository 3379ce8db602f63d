"""Prefect tasks around the stage registry (`paretoflow.pipeline`).

`stage_task` runs any registered stage (one job of it, for align) and returns a JSON
summary; `log_stage` records a summary as a nested MLflow run under the pipeline run.
Compute is cached across processes (tasks/common.py), valid only while the outputs on
disk are the ones the cached run wrote; logging is never cached, so every pipeline run's
MLflow parent holds every front artifact, also on a resume.
Params travel typed (`Params`), never as dicts re-parsed per task.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE, CacheKeyFnPolicy

from paretoflow.config import Params
from paretoflow.pipeline import stage
from tasks.common import cache_valid, stage_cache_key, timed, write_manifest


def _cache_key(context, parameters) -> str:
    return stage_cache_key(parameters["name"], parameters["params"], Path(parameters["root"]), parameters.get("job"))


@task(name="stage", cache_policy=CacheKeyFnPolicy(cache_key_fn=_cache_key), persist_result=True,
      result_serializer="json")
def stage_task(name: str, params: Params, root: str, job: dict[str, Any] | None = None) -> dict:
    """Run one stage (one job of it) through the library; record its output manifest."""
    rootp = Path(root)
    key = stage_cache_key(name, params, rootp, job)
    summary = timed(stage(name).run, params, rootp, **(job or {}))
    if stage(name).cached:
        summary["outputs_hash"] = write_manifest(name, params, rootp, key, job)
    summary["cache_key"] = key
    return summary


def run_stage(name: str, params: Params, root: str, job: dict[str, Any] | None = None) -> dict:
    """Submit a stage: from the cache when its outputs on disk are the cached run's, else
    recomputed. The summary says `cached` and, for cached work, the seconds it saved."""
    s = stage(name)
    label = "-".join(x for x in (name, s.name_of(job or {})) if x)
    if s.cached:
        options = dict(refresh_cache=not cache_valid(name, params, Path(root), job), retries=s.retries)
    else:
        options = dict(cache_policy=NO_CACHE, persist_result=False, retries=s.retries)
    state = stage_task.with_options(name=label, **options)(name, params, root, job, return_state=True)
    summary = dict(state.result())
    summary["cached"] = state.name == "Cached"
    summary["stage"] = name
    summary["job"] = job or {}
    summary["job_name"] = s.name_of(job or {})
    return summary


def run_stage_jobs(name: str, params: Params, root: str, jobs: list[dict[str, Any]], lanes: int = 1) -> list[dict]:
    """`run_stage` for every job, `lanes` at a time in threads (paretoflow/lanes.py), each
    one task run of this flow (the thread runs it in a copy of the flow's context, as
    Prefect's own thread pool does); summaries in job order."""
    lanes = max(1, min(lanes, len(jobs)))
    if lanes == 1:
        return [run_stage(name, params, root, job) for job in jobs]
    from contextvars import copy_context

    from paretoflow.lanes import in_lanes

    items = [(job, copy_context()) for job in jobs]  # a context is entered by one thread at a time
    return in_lanes(items, lambda _, item: item[1].run(run_stage, name, params, root, item[0]), [None] * lanes)


def _params_for_mlflow(params: Params, sections: list[str]) -> dict:
    dumped = params.model_dump(mode="json", by_alias=True)
    return {s: dumped[s] for s in sections if s in dumped and s != "objectives"}


@task(name="prepare-policy", persist_result=False)
def prepare_policy(params: Params, root: str) -> str:
    """The policy as a folder `from_pretrained` reads: for the embedded default, the GGUF
    dequantized once into .cache/models (~25-55 s on 2 cores, measured). The flow submits
    it beside curate and validate, which leave a core idle, instead of paying for it inside
    the first stage that reads the policy."""
    from paretoflow.models import DEFAULT_POLICY, materialize_default_policy

    if params.model.policy != DEFAULT_POLICY:   # a folder or hub id: nothing to prepare
        return params.model.policy
    cache_dir = Path(params.model.cache_dir)
    return str(materialize_default_policy(cache_dir if cache_dir.is_absolute() else Path(root) / cache_dir))


@task(name="log-stage", retries=2, retry_delay_seconds=5, persist_result=False)
def log_stage(params: Params, root: str, parent_run_id: str, label: str, summary: dict,
              lineage: dict[str, str], tags: dict[str, str] | None = None) -> str:
    """A nested MLflow run for one stage (job): params, metrics, artifacts, lineage tags."""
    from paretoflow.tracking import Tracker

    rootp = Path(root)
    s = stage(summary["stage"])
    tracker = Tracker(params.tracking, rootp)
    tags = {**lineage, "paretoflow.stage": s.name, "paretoflow.cached": str(bool(summary.get("cached"))).lower(),
            **(tags or {})}
    # A retry of this task reuses the run its failed attempt created (one run per stage).
    with tracker.run(label, parent_run_id, tags=tags, run_key=f"log-stage:{label}") as run_id:
        _log_stage_run(tracker, run_id, params, rootp, s, summary)
    return run_id


def _log_stage_run(tracker, run_id: str, params: Params, rootp: Path, s, summary: dict) -> None:
    tracker.log_params(run_id, _params_for_mlflow(params, list(s.sections)))
    tracker.log_metrics(run_id, summary.get("metrics", {}))
    for curve_name, values in (summary.get("curves") or {}).items():
        tracker.log_curve(run_id, curve_name, values)
    for rel in s.artifacts(params):
        tracker.log_artifact(run_id, rootp / rel, artifact_path=Path(rel).name if (rootp / rel).is_dir() else None)
    if summary.get("job"):  # one adapter of the align stage: its folder is the job's output
        _log_adapter(tracker, run_id, rootp / s.outputs_for(params, summary["job"])[0])


def _log_adapter(tracker, run_id: str, adapter_dir: Path) -> None:
    """Training curves at their optimizer steps, then the adapter with its base model."""
    log_path = adapter_dir / "train_log.json"
    if log_path.exists():
        log = json.loads(log_path.read_text())
        rows = log.get("steps", []) + log.get("validation", [])
        tracker.log_metric_rows(run_id, [(row["step"], {k: v for k, v in row.items() if k != "step"}) for row in rows])
    from paretoflow.align.meta import read_meta

    meta = read_meta(adapter_dir)   # the base it was trained on, as resolved then (not params' "default")
    tracker.log_adapter(run_id, adapter_dir, meta.base_model_path, base_fingerprint=meta.base_model_fingerprint)


@task(name="log-front-candidates", retries=2, retry_delay_seconds=5, persist_result=False)
def log_front_candidates(params: Params, root: str, front_run_id: str, records: list[dict],
                         lineage: dict[str, str]) -> list[str]:
    """One nested MLflow run per front candidate (under the front stage run): the same
    numbers as front.json, the plot and the Prefect table (CandidateRecord); and the
    answers table on the front run (`log_table`: the UI's artifact view shows it)."""
    from paretoflow.front.document import CandidateRecord
    from paretoflow.front.stage import ANSWERS_TABLE
    from paretoflow.io import read_table
    from paretoflow.tracking import Tracker

    tracker = Tracker(params.tracking, Path(root))
    answers = Path(root) / params.front.out_dir / ANSWERS_TABLE
    if answers.is_file():
        tracker.client.log_table(front_run_id, data=read_table(answers), artifact_file="answers_table.json")
    run_ids = []
    for raw in records:
        record = CandidateRecord(**raw)
        tags = {**lineage, "paretoflow.stage": "front-candidate", "paretoflow.candidate": record.name,
                "paretoflow.kind": record.kind, "paretoflow.non_dominated": str(record.non_dominated),
                "paretoflow.distinguishable": str(record.distinguishable)}
        with tracker.run(record.name, front_run_id, tags=tags, run_key=f"front-candidate:{record.name}") as run_id:
            tracker.log_params(run_id, record.mlflow_params())
            tracker.log_metrics(run_id, record.mlflow_metrics())
        run_ids.append(run_id)
    return run_ids


@task(name="register-reward-model", retries=2, retry_delay_seconds=5, persist_result=False)
def register_reward_model(params: Params, root: str, reward_run_id: str, summary: dict,
                          lineage: dict[str, str]) -> str:
    """Register the reward model logged under the reward stage run as a model version; an
    unchanged model (same files by content hash) keeps the version it already has."""
    from paretoflow.io import files_hash
    from paretoflow.registry import find_version, register_candidate
    from paretoflow.tracking import Tracker

    tracker = Tracker(params.tracking, Path(root))
    name = f"{params.tracking.registered_model}-reward"
    key = files_hash([Path(root) / params.reward.out_dir], length=32)
    existing = find_version(tracker, name, key)
    if existing is not None:
        return existing
    metrics = {f"metric.{k}": f"{v:.6f}" for k, v in summary.get("metrics", {}).items()
               if isinstance(v, (int, float)) and k.startswith("test_")}
    return register_candidate(tracker, name, reward_run_id, "reward", {**lineage, **metrics}, key=key)


@task(name="promote", persist_result=False)
def promote_task(params: Params, root: str, parent_run_id: str, lineage: dict[str, str]) -> dict:
    """The promote stage under the pipeline's MLflow run; registry moves take the Prefect
    limit when a server is configured (tasks/locks.py)."""
    from tasks.locks import install_prefect_lock

    install_prefect_lock()
    return timed(stage("promote").run, params, Path(root), parent_run_id=parent_run_id, lineage=lineage)
