"""Prefect tasks of the align fan-out (flows/fanout.py): publish inputs to the DVC remote,
run one `align-expert` deployment run, adopt an adapter from MLflow into the checkout."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import task

from paretoflow.config import Params
from paretoflow.pipeline import producer_of, stage
from tasks.common import write_manifest


class ExpertRunFailed(RuntimeError):
    """An expert's flow run ended in a state other than Completed."""


@task(name="publish-inputs", retries=1, retry_delay_seconds=5, persist_result=False)
def publish_inputs(params: Params, root: str, stage_name: str = "align") -> dict:
    """`dvc commit` the stages producing `stage_name`'s inputs and push them to the remote;
    returns the remote (absolute) and the dvc.lock entries a worker pulls."""
    from paretoflow import dvc
    from flows.exchange import locked_inputs

    rootp = Path(root)
    producers = sorted({producer_of(params, rel) for rel in stage(stage_name).inputs(params)} - {None})
    dvc.commit(rootp, producers)
    dvc.ensure_remote(params, rootp)
    dvc.push(rootp)
    inputs = locked_inputs(params, rootp, stage_name)
    return {"remote_url": dvc.resolve_remote_url(params, rootp), "inputs": [i.model_dump() for i in inputs]}


@task(name="run-expert", persist_result=False)
def run_expert(deployment: str, parameters: dict[str, Any], label: str, idempotency_key: str,
               poll_s: float, timeout_s: float) -> dict:
    """One flow run of the align-expert deployment, waited for; raises naming the expert
    unless it completed. Returns its id, name and timings (submission → start → end)."""
    from prefect.deployments import run_deployment

    submitted = datetime.now(timezone.utc)
    run = run_deployment(deployment, parameters=parameters, flow_run_name=label, timeout=timeout_s,
                         poll_interval=poll_s, idempotency_key=idempotency_key,
                         tags=["paretoflow", "align-expert"])
    state = run.state
    if state is None or not state.is_final():
        raise ExpertRunFailed(f"{label}: flow run '{run.name}' ({run.id}) not finished after {timeout_s:.0f} s "
                              f"(state {state.name if state else 'none'}): is a worker polling the pool?")
    if not state.is_completed():
        raise ExpertRunFailed(f"{label}: flow run '{run.name}' ({run.id}) ended {state.name}: {state.message}")
    start, end = run.start_time, run.end_time
    return {"flow_run_id": str(run.id), "flow_run_name": run.name, "state": state.name,
            "submitted": submitted.isoformat(), "start": start.isoformat() if start else None,
            "end": end.isoformat() if end else None,
            "queue_s": (start - submitted).total_seconds() if start else None,
            "run_s": (end - start).total_seconds() if start and end else None}


@task(name="adopt-adapter", retries=2, retry_delay_seconds=5, persist_result=False)
def adopt_task(params: Params, root: str, job: dict[str, Any], cache_key: str, run_id: str,
               base_model_path: str) -> dict:
    """Fetch an adapter from MLflow into the checkout (hash-checked, one rename) and record
    the stage manifest, so the next run takes it from the cache."""
    from flows.exchange import adopt_adapter
    from paretoflow.models import model_fingerprint
    from paretoflow.tracking import Tracker

    rootp = Path(root)
    tracker = Tracker(params.tracking, rootp)
    run = tracker.client.get_run(run_id)
    started = time.perf_counter()
    dest = rootp / stage("align").outputs_for(params, job)[0]
    adopt_adapter(tracker, run, dest, base_fingerprint=model_fingerprint(base_model_path))
    digest = write_manifest("align", params, rootp, cache_key, job)
    return {"mlflow_run_id": run_id, "outputs_hash": digest, "fetch_seconds": time.perf_counter() - started}
