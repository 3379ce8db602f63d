"""The align stage fanned out over a Prefect work pool: one `align-expert` run per adapter.

For each align job (one adapter), in order of preference:
1. the checkout already holds it under the current cache key (manifest valid): cached;
2. MLflow holds an adapter made under that key (an earlier run, or a checkout whose adapter
   folder was deleted): fetched, hash-checked; not retrained;
3. otherwise one flow run of the align-expert deployment (flows/expert.py), submitted with
   `run_deployment`: all submitted runs train at once, one per free worker.
Every expert that finished is fetched into the checkout before the flow goes on; if any
failed (a lost worker's run is Crashed by the server automation), the flow then fails
naming each of them, and a rerun trains only those (the others are now cached).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.futures import wait

from paretoflow.config import Params
from paretoflow.io import read_json
from paretoflow.pipeline import stage
from tasks.common import cache_valid, stage_cache_key
from tasks.fanout import adopt_task, publish_inputs, run_expert


class ExpertRunsFailed(RuntimeError):
    """One or more expert runs on the work pool did not complete."""


def align_on_pool(params: Params, root: Path, tracker, parent_run_id: str, lineage: dict[str, str]) -> list[dict]:
    """Every align job's summary, in job order; `logged` marks those a worker logged itself."""
    from flows.expert import register
    from flows.exchange import find_adapter_run
    from paretoflow.models import resolve_policy_path

    check_ready(params, root)
    deployment = register(params)
    published = publish_inputs(params, str(root))
    policy = resolve_policy_path(params.model.policy, root / params.model.cache_dir)
    summaries: dict[str, dict] = {}
    submitted: dict[str, tuple[dict, str, Any]] = {}
    for job in stage("align").job_list(params):
        name, key = stage("align").name_of(job), stage_cache_key("align", params, root, job)
        if cache_valid("align", params, root, job):
            summaries[name] = _summary(params, root, job, key, policy, cached=True, source="checkout")
        elif (run := find_adapter_run(tracker, key)) is not None:
            fetched = adopt_task(params, str(root), job, key, run.info.run_id, policy)
            summaries[name] = _summary(params, root, job, key, policy, cached=True, source="mlflow", **fetched)
        else:
            submitted[name] = (job, key, _submit(params, deployment, job, key, published, parent_run_id, lineage))
    failures = _collect(params, root, tracker, policy, submitted, summaries)
    if failures:
        raise ExpertRunsFailed(_failure_message(params, failures, len(submitted)))
    return [summaries[stage("align").name_of(job)] for job in stage("align").job_list(params)]


def check_ready(params: Params, root: Path) -> None:
    """The stores a worker on another machine needs; a clear error before any submission."""
    from prefect.settings import get_current_settings

    if not params.tracking.tracking_uri.startswith(("http://", "https://")):
        raise ValueError(f"scale.work_pool is set but tracking.tracking_uri is {params.tracking.tracking_uri!r}: "
                         "workers log adapters to MLflow, so it must be a tracking server URL "
                         "(mlflow/postgres-server.sh)")
    if not (root / ".dvc").is_dir():
        raise ValueError(f"scale.work_pool is set but {root} is not a DVC project: workers pull their inputs "
                         "from the DVC remote (`dvc init`, dvc.remote_url)")
    if not get_current_settings().api.url:
        raise ValueError("scale.work_pool is set but PREFECT_API_URL is not: workers poll a Prefect server "
                         "(`prefect server start`), not this process's temporary one")


def _submit(params, deployment, job, key, published, parent_run_id, lineage):
    from flows.expert import expert_parameters
    from flows.exchange import Handoff
    from prefect.runtime import flow_run

    name = stage("align").name_of(job)
    handoff = Handoff(tracking=params.tracking, dvc_remote_url=published["remote_url"], inputs=published["inputs"],
                      parent_run_id=parent_run_id, cache_key=key, lineage=lineage)
    # A retry of this task within the same nightly run gets the same flow run back.
    idempotency_key = f"{flow_run.get_id() or 'local'}-{key}"
    return run_expert.with_options(name=f"align-{name}").submit(
        deployment, expert_parameters(params, job, handoff), name, idempotency_key,
        params.scale.poll_s, params.scale.wait_timeout_s)


def _collect(params, root, tracker, policy, submitted, summaries) -> dict[str, str]:
    """Wait for every submitted run; adopt the completed ones; return {name: reason} of the rest."""
    from flows.exchange import find_adapter_run

    wait([future for _, _, future in submitted.values()])
    failures = {}
    for name, (job, key, future) in submitted.items():
        if not future.state.is_completed():
            failures[name] = str(future.state.result(raise_on_failure=False))
            continue
        info = future.result()
        run = find_adapter_run(tracker, key, info["flow_run_id"])
        if run is None:
            failures[name] = f"flow run {info['flow_run_name']} completed but no finished MLflow run holds its adapter"
            continue
        fetched = adopt_task(params, str(root), job, key, run.info.run_id, policy)
        summaries[name] = _summary(params, root, job, key, policy, cached=False, source="worker", logged=True,
                                   pool=info, **fetched)
    if failures:
        _fail_orphan_runs(tracker, failures)
    return failures


def _summary(params: Params, root: Path, job: dict, key: str, policy: str, **extra) -> dict:
    """A stage summary like the in-process one, read from the adapter's meta.json."""
    meta = read_json(root / stage("align").outputs_for(params, job)[0] / "meta.json")
    return {"stage": "align", "job": job, "job_name": stage("align").name_of(job), "cache_key": key,
            "metrics": meta.get("metrics", {}), "library_seconds": float(meta.get("wall_time_s", 0.0)),
            "base_model_path": policy, "logged": False, **extra}


def _fail_orphan_runs(tracker, failures: dict[str, str]) -> None:
    """A lost worker leaves its MLflow run RUNNING: end it FAILED (found by the flow-run id)."""
    import re

    from flows.exchange import FLOW_RUN_TAG

    for reason in failures.values():
        for flow_run_id in re.findall(r"\(([0-9a-f-]{36})\)", reason):
            for run in tracker.client.search_runs(
                    [tracker.experiment_id],
                    filter_string=f"tags.`{FLOW_RUN_TAG}` = '{flow_run_id}' and attributes.status = 'RUNNING'"):
                tracker.end_run(run.info.run_id, "FAILED")


def _failure_message(params: Params, failures: dict[str, str], n_submitted: int) -> str:
    lines = [f"align on work pool {params.scale.work_pool!r}: {len(failures)} of {n_submitted} expert runs "
             f"failed: {', '.join(sorted(failures))}"]
    lines += [f"  - {reason}" for _, reason in sorted(failures.items())]
    lines.append("The experts that completed are in the checkout and in MLflow: a rerun trains only the failed ones.")
    return "\n".join(lines)
