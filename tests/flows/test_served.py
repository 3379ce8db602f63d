"""Integration: real mlflow (on PostgreSQL where installed) + prefect servers, a served
deployment triggered through the API."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import pytest

from tests.flows.project import REPO, make_project
from tests.flows.servers import prefect_server, process, tracking_server

pytestmark = pytest.mark.integration


async def _wait_deployment(client, name: str, timeout: float):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            return await client.read_deployment_by_name(name)
        except Exception:
            await asyncio.sleep(1)
    raise TimeoutError(f"deployment {name} was not registered in {timeout} s")


async def _wait_final(client, run_id, timeout: float):
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = await client.read_flow_run(run_id)
        if run.state and run.state.is_final():
            return run
        await asyncio.sleep(2)
    raise TimeoutError(f"flow run {run_id} not finished in {timeout} s")


def test_served_deployment_triggered_with_parameters_logs_to_tracking_server(tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with tracking_server(tmp_path) as mlflow_url, prefect_server(tmp_path) as api_url:
        root, overrides = make_project(tmp_path, tiny=True, tracking_uri=mlflow_url)
        env = {"PREFECT_API_URL": api_url, "PREFECT_HOME": str(tmp_path / "prefect-home"),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(REPO),
               "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        serve_cmd = [sys.executable, "-m", "flows.cli", "--params", str(root / "params.yaml"),
                     "serve", "--root", str(root)]
        # Prefect reads its settings once per process: earlier tests in this session may have
        # loaded them, so the client here is pointed at this server explicitly (and only here).
        with process(serve_cmd, tmp_path / "serve.log", env=env, cwd=REPO), \
                temporary_settings({PREFECT_API_URL: api_url}):
            asyncio.run(_trigger_and_check(root, overrides, mlflow_url, tmp_path))


async def _trigger_and_check(root, overrides, mlflow_url, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    # The served flow takes stage sections only: root and tracking are fixed by `serve`.
    params = {**{k: v for k, v in overrides.items() if k != "tracking"},
              "promote": {"preference": [0.2, 0.4, 0.4], "constraint": None, "tolerance": 0.05,
                          "lock_file": "mlflow/registry.lock"}}
    async with get_client() as client:
        deployment = await _wait_deployment(client, "paretoflow-pipeline/on-demand", 120)
        assert deployment.concurrency_limit == 1 or deployment.global_concurrency_limit is not None
        exposed = set(deployment.parameter_openapi_schema["properties"])
        assert not exposed & {"root", "tracking", "dvc"}, exposed
        # Two triggers at once: the second must wait for the first (ENQUEUE).
        first = await run_deployment("paretoflow-pipeline/on-demand", parameters=params, timeout=0)
        second = await run_deployment("paretoflow-pipeline/on-demand", parameters=params, timeout=0)
        first = await _wait_final(client, first.id, 900)
        second = await _wait_final(client, second.id, 900)
        log = (tmp_path / "serve.log").read_text()[-4000:]
        assert first.state.is_completed(), log
        assert second.state.is_completed(), log
        assert second.start_time >= first.end_time or first.start_time >= second.end_time
        states = [s.name for s in await client.read_flow_run_states(second.id)]
        states += [s.name for s in await client.read_flow_run_states(first.id)]
        assert "AwaitingConcurrencySlot" in states, states

    from mlflow import MlflowClient

    ml = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    exp = ml.get_experiment_by_name("paretoflow")
    runs = ml.search_runs([exp.experiment_id], filter_string=f"tags.`paretoflow.flow_run_id` = '{first.id}'")
    stages = {r.data.tags.get("paretoflow.stage") for r in runs}
    assert {"curate", "validate", "pairs", "reward", "front", "promote"} <= stages
    promote = next(r for r in runs if r.data.tags.get("paretoflow.stage") == "promote")
    assert json.loads(promote.data.params["preference"]) == [0.2, 0.4, 0.4]   # the non-default value
    versions = ml.search_model_versions("name = 'paretoflow-policy'")
    assert len(versions) == 1   # the second run promotes the same (cached) candidate: its version is reused
    moved = {}
    for alias in ("champion", "challenger"):
        try:
            moved[alias] = ml.get_model_version_by_alias("paretoflow-policy", alias).version
        except Exception:
            pass
    assert moved, "neither champion nor challenger was set"
    assert set(moved.values()) <= {v.version for v in versions}
