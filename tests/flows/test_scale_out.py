"""Integration (issue 12, done when): the nightly flow fans the experts out over a Prefect
process work pool with two real workers, against a real `prefect server`, MLflow on
PostgreSQL (mlflow/postgres-server.sh) and a local DVC remote.

One scenario, in order:
1. the experts train as separate flow runs on the two workers; two of them run at once
   (their intervals overlap, read from the Prefect API); each worker pulls its inputs
   from the DVC remote and logs its adapter to MLflow;
2. one worker is killed (with its flow-run process: a lost machine) while it trains the
   third or fourth expert: the server marks that run Crashed (no heartbeat) and the
   nightly fails naming that expert; nothing is registered;
3. the checkout's adapter folder is deleted and the nightly rerun: the finished experts
   are fetched from MLflow (same bytes, not retrained), only the lost one trains again,
   the front runs on the fetched adapters, and the registry ends with one version.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.flows.project import REPO, make_project
from tests.flows.servers import kill_tree, postgres_available, postgres_mlflow_server, prefect_server, prefect_workers

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not postgres_available(), reason="PostgreSQL 15 (initdb, pg_ctl) not installed")]

POOL = "paretoflow-it"
EXPERT_FLOW = "paretoflow-align-expert"
RUN_TIMEOUT = 1500


def scale_project(work: Path, tracking_uri: str) -> Path:
    """The tiny project with the work pool, an absolute DVC remote and a tight crash timer."""
    root, _ = make_project(work, tiny=True, tracking_uri=tracking_uri)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["scale"] = {**params["scale"], "work_pool": POOL, "heartbeat_s": 30, "crash_after_s": 75,
                       "poll_s": 2.0, "wait_timeout_s": RUN_TIMEOUT}
    params["dvc"]["remote_url"] = str(work / "dvc-remote")
    # A few more steps than the flow smoke test: training must last long enough to be
    # caught mid-way by a poll of the Prefect API (still seconds on the tiny model).
    params["align"]["cpu"].update(max_steps=8, eval_steps=4, checkpoint_steps=8, patience=4)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def _env(work: Path, api_url: str) -> dict:
    return {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(work / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
            "PREFECT_WORKER_QUERY_SECONDS": "2", "PARETOFLOW_CACHE_DIR": str(work / "worker-cache")}


def _nightly(root: Path, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "--params", str(root / "params.yaml"), "run"],
                            cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


async def _expert_runs(client, since=None):
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterStartTime

    flow_run_filter = FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)) if since else None
    return await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[EXPERT_FLOW])),
                                       flow_run_filter=flow_run_filter)


async def _training(client, run) -> bool:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    return any(t.name.startswith("train-expert") and t.state and t.state.is_running() for t in tasks)


def _owner(workers, pid: int):
    import psutil

    for worker in workers:
        try:
            if pid in {c.pid for c in psutil.Process(worker.pid).children(recursive=True)}:
                return worker
        except psutil.NoSuchProcess:
            continue
    return None


async def _kill_a_worker_mid_training(workers, nightly: subprocess.Popen, log: Path) -> str:
    """Once two experts completed, kill the worker training another one; its run's name."""
    from prefect.client.orchestration import get_client

    deadline = time.time() + RUN_TIMEOUT
    async with get_client() as client:
        while time.time() < deadline:
            assert nightly.poll() is None, log.read_text()[-4000:]
            runs = await _expert_runs(client)
            done = [r for r in runs if r.state and r.state.is_completed()]
            running = [r for r in runs if r.state and r.state.is_running() and r.infrastructure_pid]
            if len(done) >= 2:
                for run in running:
                    worker = _owner(workers, int(str(run.infrastructure_pid).rsplit(":", 1)[-1]))
                    if worker is not None and await _training(client, run):
                        kill_tree(worker.pid)
                        return run.name
            await asyncio.sleep(1)
    raise TimeoutError("no expert was seen training after two had completed")


def _overlap(a, b) -> bool:
    return a.start_time < b.end_time and b.start_time < a.end_time


def test_experts_fan_out_over_a_work_pool_and_a_lost_worker_retrains_alone(tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with postgres_mlflow_server() as (mlflow_url, _), prefect_server(tmp_path) as api_url, \
            temporary_settings({PREFECT_API_URL: api_url}):
        root = scale_project(tmp_path, mlflow_url)
        env = _env(tmp_path, api_url)
        with prefect_workers(POOL, 2, tmp_path, env) as workers:
            log1 = tmp_path / "nightly-1.log"
            first = _nightly(root, env, log1)
            try:
                lost = asyncio.run(_kill_a_worker_mid_training(workers, first, log1))
                assert first.wait(timeout=RUN_TIMEOUT) != 0, log1.read_text()[-4000:]
            finally:
                kill_tree(first.pid)
            runs_1 = asyncio.run(_check_first_run(lost, log1.read_text()))
            _check_nothing_registered(root, mlflow_url)
            automation = _crash_automation_id()

            shutil.rmtree(root / "artifacts/adapters")          # the checkout's adapters are gone
            rerun_start = runs_1["latest"]
            log2 = tmp_path / "nightly-2.log"
            second = _nightly(root, env, log2)
            assert second.wait(timeout=RUN_TIMEOUT) == 0, log2.read_text()[-6000:]
        asyncio.run(_check_rerun(lost, rerun_start))
        assert _crash_automation_id() == automation          # registered once, kept across runs
        _check_mlflow(root, mlflow_url, lost)


async def _check_first_run(lost: str, log: str) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    async with get_client() as client:
        runs = await _expert_runs(client)
    by_name = {r.name: r for r in runs}
    assert by_name[lost].state.type == StateType.CRASHED, by_name[lost].state
    assert "no heartbeat" in (by_name[lost].state.message or "")
    # The flow failed naming the lost expert, and only it.
    assert f"1 of 4 expert runs failed: {lost}" in log, log[-4000:]
    completed = [r for r in runs if r.state.is_completed()]
    assert len(completed) == 3, [(r.name, r.state.name) for r in runs]
    assert any(_overlap(a, b) for i, a in enumerate(completed) for b in completed[i + 1:]), \
        [(r.name, r.start_time, r.end_time) for r in completed]
    return {"latest": max(r.expected_start_time or r.start_time for r in runs)}


def _crash_automation_id():
    from prefect.automations import Automation

    from flows.expert import CRASH_AUTOMATION

    return Automation.read(name=CRASH_AUTOMATION).id


def _mlflow(url: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


def _check_nothing_registered(root: Path, url: str) -> None:
    assert _mlflow(url).search_model_versions("name = 'paretoflow-policy'") == []


async def _check_rerun(lost: str, since) -> None:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        new = [r for r in await _expert_runs(client) if (r.expected_start_time or r.start_time) > since]
    # Only the lost expert ran again; the others were fetched from MLflow.
    assert [(r.name, r.state.name) for r in new] == [(lost, "Completed")]


def _check_mlflow(root: Path, url: str, lost: str) -> None:
    from paretoflow import dvc
    from flows.exchange import CACHE_KEY_TAG, OUTPUTS_HASH_TAG
    from paretoflow.io import files_hash

    ml = _mlflow(url)
    exp = ml.get_experiment_by_name("paretoflow")
    trained = ml.search_runs([exp.experiment_id], filter_string=f"tags.`{CACHE_KEY_TAG}` != ''")
    names = sorted(r.info.run_name for r in trained)
    assert names == sorted(["expert-helpfulness", "expert-conciseness", "expert-harmlessness", "modpo-0.5-0.5-0"])
    from paretoflow.config import load_params
    from paretoflow.pipeline import stage

    locked = dvc.lock_hashes(root)
    align_inputs = {p.rstrip("/") for p in stage("align").inputs(load_params(root / "params.yaml"))}
    assert {"data/pairs", "artifacts/reward", "data/curated/pairs.parquet"} <= align_inputs
    for run in trained:
        # Inputs by hash from the DVC remote (every input the stage registry lists for align,
        # at dvc.lock's hash); the adapter in the checkout is the worker's.
        assert json.loads(run.data.tags["paretoflow.inputs"]) == {p: locked[p] for p in align_inputs}
        folder = root / "artifacts/adapters" / run.info.run_name
        assert files_hash([folder]) == run.data.tags[OUTPUTS_HASH_TAG], run.info.run_name
        assert not (folder / "base_model.json").exists()
    versions = ml.search_model_versions("name = 'paretoflow-policy'")
    assert len(versions) == 1
    front = json.loads((root / "artifacts/front/front.json").read_text())
    assert any(c["kind"] == "merge" for c in front["candidates"])
    assert lost in {r.info.run_name for r in trained}
