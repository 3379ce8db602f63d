"""Serve the nightly flow as two deployments against a Prefect server.

    prefect server start --host 127.0.0.1          # UI at http://127.0.0.1:4200
    PREFECT_API_URL=http://127.0.0.1:4200/api paretoflow serve

`nightly` runs on the cron from params.yaml (schedule.cron, default 02:00); `on-demand`
has no schedule and is triggered from the UI form or the API with typed parameters.
Both allow one run at a time: a second trigger waits in AwaitingConcurrencySlot
(ENQUEUE) or is cancelled (CANCEL_NEW), per schedule.collision_strategy.
"""

from __future__ import annotations

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron

from flows.nightly import nightly
from paretoflow.config import Params


def deployments(params: Params, root: str):
    limit = ConcurrencyLimitConfig(
        limit=1, collision_strategy=ConcurrencyLimitStrategy(params.schedule.collision_strategy)
    )
    base = {"root": root}
    scheduled = nightly.to_deployment(
        name="nightly",
        schedule=Cron(params.schedule.cron, timezone=params.schedule.timezone),
        concurrency_limit=limit,
        parameters=base,
        tags=["paretoflow", "nightly"],
    )
    on_demand = nightly.to_deployment(
        name="on-demand", concurrency_limit=limit, parameters=base, tags=["paretoflow"],
    )
    return scheduled, on_demand


def serve_deployments(params: Params, root: str) -> None:
    serve(*deployments(params, root))
