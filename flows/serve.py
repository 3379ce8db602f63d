"""Serve the pipeline as two deployments against a Prefect server.

    prefect server start --host 127.0.0.1          # UI at http://127.0.0.1:4200
    PREFECT_API_URL=http://127.0.0.1:4200/api paretoflow [--params F] serve

`nightly` runs on the cron from params (schedule.cron, default 02:00); `on-demand` has no
schedule and is triggered from the UI form or the API with typed parameters. Both allow
one run at a time: a second trigger waits in AwaitingConcurrencySlot (ENQUEUE) or is
cancelled (CANCEL_NEW), per schedule.collision_strategy.

With `scale.work_pool` set, `serve` also registers the `align-expert` deployment on that
work pool (flows/expert.py): the nightly then trains one expert per flow run on the pool's
workers (`paretoflow worker --pool NAME`).

The served flow (`served_pipeline`) exposes the stage sections only: the project root, the
tracking URI, the DVC remote and the work pool are fixed by whoever runs `paretoflow
serve` (read from its params file), so nobody with API access can point the flow at
another folder or tracking server. Write paths in the sections are project-relative (config.ProjectPath).
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron

from flows.nightly import DEFAULTS, assemble, flow_parameters, run_pipeline
from paretoflow.config import (
    AlignConfig,
    CurateConfig,
    FrontConfig,
    ModelConfig,
    Objective,
    PairsConfig,
    Params,
    ProjectConfig,
    PromoteConfig,
    RewardConfig,
    ValidateConfig,
    load_params,
)

# Set by `serve_deployments` in the serving process; the served flow runs in that process.
ROOT_ENV = "PARETOFLOW_ROOT"
PARAMS_ENV = "PARETOFLOW_PARAMS"
FIXED_SECTIONS = ("tracking", "dvc", "scale")


@flow(name="paretoflow-pipeline", log_prints=True)
def served_pipeline(
    project: ProjectConfig = DEFAULTS.project,
    model: ModelConfig = DEFAULTS.model,
    objectives: list[Objective] = DEFAULTS.objectives,
    curate: CurateConfig = DEFAULTS.curate,
    validation: ValidateConfig = DEFAULTS.validate_,
    pairs: PairsConfig = DEFAULTS.pairs,
    reward: RewardConfig = DEFAULTS.reward,
    align: AlignConfig = DEFAULTS.align,
    front: FrontConfig = DEFAULTS.front,
    promote: PromoteConfig = DEFAULTS.promote,
) -> dict:
    root = Path(os.environ.get(ROOT_ENV, str(Path(__file__).resolve().parents[1]))).resolve()
    served = load_params(os.environ.get(PARAMS_ENV, str(root / "params.yaml")))
    params = assemble({"project": project, "model": model, "objectives": objectives, "curate": curate,
                       "validation": validation, "pairs": pairs, "reward": reward, "align": align,
                       "front": front, "promote": promote}, base=served)
    return run_pipeline(params, root)


def deployment_parameters(params: Params) -> dict:
    """The served params file as the deployments' default form values (sections only)."""
    values = flow_parameters(params)
    for name in FIXED_SECTIONS:
        values.pop(name)
    return {k: (v.model_dump(mode="json", by_alias=True) if hasattr(v, "model_dump")
                else [o.model_dump(mode="json") for o in v]) for k, v in values.items()}


def deployments(params: Params):
    limit = ConcurrencyLimitConfig(
        limit=1, collision_strategy=ConcurrencyLimitStrategy(params.schedule.collision_strategy)
    )
    defaults = deployment_parameters(params)
    scheduled = served_pipeline.to_deployment(
        name="nightly",
        schedule=Cron(params.schedule.cron, timezone=params.schedule.timezone),
        concurrency_limit=limit,
        parameters=defaults,
        tags=["paretoflow", "nightly"],
    )
    on_demand = served_pipeline.to_deployment(
        name="on-demand", concurrency_limit=limit, parameters=defaults, tags=["paretoflow"],
    )
    return scheduled, on_demand


def serve_deployments(params_path: str | Path, root: str | Path) -> None:
    os.environ[ROOT_ENV] = str(Path(root).resolve())
    os.environ[PARAMS_ENV] = str(Path(params_path).resolve())
    params = load_params(params_path)
    if params.scale.work_pool:  # the experts' deployment on the pool (flows/expert.py)
        from flows.expert import register

        print(f"registered {register(params)} on work pool {params.scale.work_pool!r}")
    serve(*deployments(params))
