"""The `align-expert` flow: one adapter, trained wherever a worker of the work pool runs it.

    paretoflow worker --pool trainers          # on each training machine (N workers)
    scale.work_pool: trainers                  # params.yaml: the nightly fans out over it

The nightly flow (flows/fanout.py) submits one run of this flow per align job with
`run_deployment`. A run has no access to the flow's checkout: it trains in a scratch
folder, pulls its inputs from the DVC remote by content hash, and logs the adapter to
MLflow under the pipeline's parent run, tagged with the stage cache key and the files'
content hash (flows/exchange.py); the flow fetches it back from there.

`register(params)` creates the pool if missing, the deployment (entrypoint by module path,
so any worker whose environment has paretoflow installed runs it: process, Docker and
Kubernetes pools alike) and a server automation that marks a run Crashed when its
heartbeats stop, which is how a lost worker shows up (Prefect's zombie-flow recipe).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from filelock import FileLock
from prefect import flow, task
from prefect.runtime import flow_run

from paretoflow.config import (
    AlignConfig,
    CurateConfig,
    ModelConfig,
    Objective,
    PairsConfig,
    Params,
    ProjectConfig,
    RewardConfig,
    ScaleConfig,
)
from flows.exchange import (
    CACHE_KEY_TAG,
    FLOW_RUN_TAG,
    OUTPUTS_HASH_TAG,
    ExpertJob,
    Handoff,
    LockedOutput,
    job_tags,
    pull_inputs,
)
from paretoflow.pipeline import stage
from tasks.common import outputs_hash, timed
from tasks.stages import log_stage

EXPERT_FLOW = "paretoflow-align-expert"
EXPERT_DEPLOYMENT = "align-expert"
DEPLOYMENT_NAME = f"{EXPERT_FLOW}/{EXPERT_DEPLOYMENT}"
CRASH_AUTOMATION = f"paretoflow: crash {EXPERT_DEPLOYMENT} runs that stop heart-beating"
# The params sections an expert run receives (typed, the UI form); a test checks that they
# cover what the align stage reads (`paretoflow.pipeline`).
SECTIONS = ("project", "model", "objectives", "curate", "pairs", "reward", "align")
# Where a worker keeps scratch projects and its model cache (a run's scratch is removed).
WORK_DIR_ENV = "PARETOFLOW_WORK_DIR"
CACHE_DIR_ENV = "PARETOFLOW_CACHE_DIR"


@flow(name=EXPERT_FLOW, log_prints=True)
def align_expert(
    job: ExpertJob,
    handoff: Handoff,
    project: ProjectConfig,
    model: ModelConfig,
    objectives: list[Objective],
    curate: CurateConfig,
    pairs: PairsConfig,
    reward: RewardConfig,
    align: AlignConfig,
) -> dict:
    """Pull inputs by hash → train one adapter → log it to MLflow under the parent run."""
    params = Params(project=project, model=model, objectives=objectives, curate=curate, pairs=pairs,
                    reward=reward, align=align, tracking=handoff.tracking)
    with workspace(params) as scratch:
        pull_task(handoff.inputs, handoff.dvc_remote_url, scratch)
        summary = train_task(params, scratch, job.kwargs())
        run_id = log_stage(params, scratch, handoff.parent_run_id, summary["job_name"], summary,
                           handoff.lineage, tags=_run_tags(handoff, summary))
    return {"mlflow_run_id": run_id, "outputs_hash": summary["outputs_hash"], "job_name": summary["job_name"]}


@contextmanager
def workspace(params: Params):
    """A scratch project folder for one run; its model cache links to the worker's cache."""
    base = os.environ.get(WORK_DIR_ENV)
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pf-expert-", dir=base) as scratch:
        cache = Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "paretoflow") / "models"
        cache.mkdir(parents=True, exist_ok=True)
        link = Path(scratch) / params.model.cache_dir
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(cache, target_is_directory=True)
        yield scratch


@task(name="pull-inputs", retries=2, retry_delay_seconds=10, persist_result=False)
def pull_task(inputs: list[LockedOutput], remote_url: str, root: str) -> list[str]:
    """The stage's inputs from the DVC remote, by the hashes the flow recorded."""
    return [str(p) for p in pull_inputs(inputs, remote_url, Path(root))]


@task(name="train-expert", persist_result=False)
def train_task(params: Params, root: str, job: dict[str, Any]) -> dict:
    """Train one adapter in the scratch project (the align stage's library entry point)."""
    from paretoflow.models import resolve_policy_path

    rootp = Path(root)
    cache = rootp / params.model.cache_dir
    # Two runs on one worker machine share its model cache: one materializes, the other waits.
    with FileLock(str(cache.resolve() / ".materialize.lock")):
        policy = resolve_policy_path(params.model.policy, cache)
    summary = timed(stage("align").run, params, rootp, **job)
    digest = outputs_hash("align", params, rootp, job)
    if digest is None:
        raise FileNotFoundError(f"align {job}: no adapter under {rootp / params.align.out_dir} after training")
    summary.update(stage="align", job=job, job_name=stage("align").name_of(job), cached=False,
                   base_model_path=policy, outputs_hash=digest)
    return summary


def _run_tags(handoff: Handoff, summary: dict) -> dict[str, str]:
    return {**job_tags(summary["job"]), CACHE_KEY_TAG: handoff.cache_key, OUTPUTS_HASH_TAG: summary["outputs_hash"],
            FLOW_RUN_TAG: str(flow_run.get_id() or ""), "paretoflow.worker": socket.gethostname(),
            "paretoflow.inputs": json.dumps({i.path: i.md5 for i in handoff.inputs})}


def expert_parameters(params: Params, job: dict[str, Any], handoff: Handoff) -> dict:
    """The flow-run parameters of one expert run, JSON-ready."""
    dumped = params.model_dump(mode="json", by_alias=True)
    return {"job": ExpertJob(**job).model_dump(mode="json"), "handoff": handoff.model_dump(mode="json"),
            **{name: dumped[name] for name in SECTIONS}}


# ------------------------------------------------------------------ registration


def register(params: Params) -> str:
    """Work pool (created if missing), deployment, crash automation; returns the deployment name."""
    from prefect.deployments.runner import EntrypointType
    from prefect.utilities.asyncutils import run_coro_as_sync

    scale = params.scale
    if not scale.work_pool:
        raise ValueError("scale.work_pool is not set: there is no pool to register the align-expert deployment on")
    run_coro_as_sync(_ensure_pool(scale))
    deployment = align_expert.to_deployment(
        name=EXPERT_DEPLOYMENT,
        work_pool_name=scale.work_pool,
        entrypoint_type=EntrypointType.MODULE_PATH,
        job_variables={"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(scale.heartbeat_s)}},
        tags=["paretoflow", EXPERT_DEPLOYMENT],
        description="One align job (one LoRA adapter); submitted by the nightly flow, one run per expert.",
    )
    deployment_id = deployment.apply()
    ensure_crash_automation(deployment_id, scale)
    return DEPLOYMENT_NAME


async def _ensure_pool(scale: ScaleConfig) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type

    async with get_client() as client:
        try:
            await client.read_work_pool(scale.work_pool)
            return
        except ObjectNotFound:
            pass
        template = await get_default_base_job_template_for_infrastructure_type(scale.pool_type)
        if template is None:
            raise ValueError(f"scale.pool_type {scale.pool_type!r}: no worker type of that name is installed")
        try:
            await client.create_work_pool(WorkPoolCreate(name=scale.work_pool, type=scale.pool_type,
                                                         base_job_template=template))
        except ObjectAlreadyExists:  # created concurrently (a worker starting)
            pass


def crash_automation(deployment_id, scale: ScaleConfig):
    """Prefect's zombie-flow automation, scoped to this deployment's runs: a run that has
    sent a heartbeat and then sends nothing (no heartbeat, no final state) for
    `crash_after_s` is marked Crashed."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    return Automation(
        name=CRASH_AUTOMATION,
        description="A worker that dies (machine lost, kill -9) leaves its flow run Running; "
                    "missing heartbeats mark it Crashed so the nightly fails naming the expert.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.id": f"prefect.deployment.{deployment_id}",
                           "prefect.resource.role": "deployment"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=scale.crash_after_s),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {scale.crash_after_s} s: the worker running "
                                            "this expert was lost")],
    )


def ensure_crash_automation(deployment_id, scale: ScaleConfig) -> None:
    from prefect.automations import Automation

    wanted = crash_automation(deployment_id, scale)
    try:
        existing = Automation.read(name=CRASH_AUTOMATION)
    except ValueError:  # "not found"
        existing = None
    if existing is not None:
        if _signature(existing) == _signature(wanted):
            return
        existing.delete()  # another deployment id or timer: replace it
    wanted.create()


def _signature(automation) -> tuple:
    """What makes two crash automations the same (server copies add ids and defaults)."""
    trigger = automation.trigger
    return (json.dumps(trigger.match_related.model_dump(mode="json") if hasattr(trigger.match_related, "model_dump")
                       else trigger.match_related, sort_keys=True, default=str),
            trigger.within.total_seconds(), sorted(trigger.after), sorted(trigger.expect),
            [(a.state, a.message) for a in automation.actions], automation.enabled)
