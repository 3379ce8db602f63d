"""Integration: the registry's mutual exclusion and the zombie sweep on real servers.

Two promoters in two processes, each with its own checkout (so its own file lock), share
one real `mlflow server` and one real `prefect server`: only the Prefect global
concurrency limit can serialise them. They promote the same candidate at the same
instant; the registry must end with one version and one champion move.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.flows.project import REPO
from tests.flows.servers import mlflow_server, prefect_server
from tests.paretoflow.test_registry import PromoteProject

pytestmark = pytest.mark.integration

PROMOTER = """
import json, sys, time
from pathlib import Path
root, barrier = Path(sys.argv[1]), Path(sys.argv[2])
from paretoflow.config import load_params
from paretoflow.promote import run
from paretoflow.tracking import Tracker
from tasks.locks import install_prefect_lock
install_prefect_lock()   # as the `paretoflow` command and the flow do
params = load_params(root / "params.yaml")
tracker = Tracker(params.tracking, root)
(barrier / root.name).write_text("ready")
while not (barrier / "go").exists():      # both promoters start at the same instant
    time.sleep(0.01)
with tracker.run("promote") as parent:
    result = run(params, root, tracker, parent, validation_passed=True, lineage={})
print("RESULT", json.dumps({"version": result.version, "alias": result.alias,
                            "moved": result.metrics["promoted"], "reused": result.metrics["reused_version"]}))
"""


def _promoters(roots, barrier, env, logs):
    procs = [subprocess.Popen([sys.executable, "-c", PROMOTER, str(root), str(barrier)], cwd=REPO, env=env,
                              stdout=log.open("w"), stderr=subprocess.STDOUT) for root, log in zip(roots, logs)]
    deadline = time.time() + 300
    while not all((barrier / r.name).exists() for r in roots):
        assert time.time() < deadline and all(p.poll() is None for p in procs), \
            "\n".join(log.read_text()[-3000:] for log in logs)
        time.sleep(0.05)
    (barrier / "go").write_text("go")
    for p, log in zip(procs, logs):
        assert p.wait(timeout=600) == 0, log.read_text()[-4000:]
    return [json.loads(log.read_text().split("RESULT ", 1)[1].splitlines()[0]) for log in logs]


def test_two_promoters_on_two_checkouts_move_the_champion_once(tmp_path, tiny_policy_dir):
    with mlflow_server(tmp_path) as mlflow_url, prefect_server(tmp_path) as api_url:
        a = PromoteProject(tmp_path / "machine-a", tiny_policy_dir, tracking_uri=mlflow_url)
        b = PromoteProject(tmp_path / "machine-b", tiny_policy_dir, tracking_uri=mlflow_url)
        a.train(seed=1)
        shutil.copytree(a.adapters, b.adapters)      # the same DVC outputs pulled on two machines
        a.front(helpfulness=0.6)
        b.front(helpfulness=0.6)
        barrier = tmp_path / "barrier"
        barrier.mkdir()
        env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        results = _promoters([a.root, b.root], barrier, env, [tmp_path / "a.log", tmp_path / "b.log"])

        tracker = a.tracker()
        name = a.params.tracking.registered_model
        versions = tracker.client.search_model_versions(f"name = '{name}'")
        assert len(versions) == 1, results
        version = str(versions[0].version)
        assert sorted(r["moved"] for r in results) == [0.0, 1.0], results       # one champion move
        assert sorted(r["reused"] for r in results) == [0.0, 1.0], results      # one registration
        assert {r["version"] for r in results} == {version}
        model = tracker.client.get_registered_model(name)
        assert {k: str(v) for k, v in model.aliases.items()} == {"champion": version}
        assert json.loads(model.tags["paretoflow.champion_history"]) == [version]
        runs = tracker.client.search_runs([tracker.experiment_id], filter_string="tags.`paretoflow.stage` = 'promote'")
        from tasks.locks import lock_name

        assert {r.data.tags["paretoflow.registry_lock"] for r in runs} == {f"prefect:{lock_name(name)}"}
        assert {r.info.status for r in tracker.client.search_runs([tracker.experiment_id])} == {"FINISHED"}
        _check_limit(api_url, lock_name(name))


def _check_limit(api_url, limit_name):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(limit_name)
    assert (limit.limit, limit.active, limit.active_slots) == (1, True, 0)


def test_prefect_backed_sweep_fails_runs_of_finished_flow_runs(tmp_path):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Running

    from paretoflow.config import TrackingConfig
    from paretoflow.tracking import Tracker, sweep_zombie_runs
    from tasks.tracking import flow_run_is_alive

    @flow(name="zombie-probe")
    def probe() -> int:
        return 1

    with mlflow_server(tmp_path) as mlflow_url, prefect_server(tmp_path) as api_url, \
            temporary_settings({PREFECT_API_URL: api_url}):
        done = probe(return_state=True).state_details.flow_run_id
        with get_client(sync_client=True) as client:
            running = client.create_flow_run(probe, state=Running()).id
        assert flow_run_is_alive(str(done)) is False
        assert flow_run_is_alive(str(running)) is True
        assert flow_run_is_alive("00000000-0000-0000-0000-000000000000") is True   # unknown: never swept
        tracker = Tracker(TrackingConfig(tracking_uri=mlflow_url, experiment="sweep"), tmp_path)
        orphan = tracker.start_run("nightly", tags={"paretoflow.flow_run_id": str(done)})
        working = tracker.start_run("nightly", tags={"paretoflow.flow_run_id": str(running)})
        assert sweep_zombie_runs(tracker, flow_run_is_alive, current_flow_run_id=None) == [orphan]
        assert tracker.client.get_run(orphan).info.status == "FAILED"
        assert tracker.client.get_run(working).info.status == "RUNNING"
