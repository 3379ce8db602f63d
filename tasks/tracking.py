"""Prefect-side helpers for MLflow run hygiene: the liveness predicate the zombie sweep
(paretoflow.tracking.sweep_zombie_runs) needs, kept here so the library stays Prefect-free.

    from paretoflow.tracking import sweep_zombie_runs
    from tasks.tracking import flow_run_is_alive
    sweep_zombie_runs(tracker, flow_run_is_alive, current_flow_run_id=str(flow_run.get_id()))
"""

from __future__ import annotations

import uuid


def flow_run_is_alive(flow_run_id: str) -> bool:
    """False when the Prefect API knows this flow run and its state is final (Completed,
    Failed, Crashed, Cancelled). True otherwise, including when it cannot tell (an id that
    is not a UUID, a run unknown to this API, the API unreachable): the sweep must never
    fail a run that may still be working. A run killed with -9 stays Running in Prefect
    unless the server's zombie detection marks it Crashed; the sweep's process check
    covers such runs on the machine that ran them."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        run_uuid = uuid.UUID(str(flow_run_id))
    except ValueError:
        return True
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_uuid)
    except ObjectNotFound:
        return True
    except Exception:  # noqa: BLE001 (an unreachable API must not fail live runs)
        return True
    return not (run.state is not None and run.state.is_final())
