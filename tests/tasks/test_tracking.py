"""MLflow run hygiene of the tasks: a retried log_stage reuses its run."""

import json

from paretoflow.config import load_params
from paretoflow.tracking import Tracker
from tests.conftest import REPO_ROOT
from tests.paretoflow.front.lora_fixtures import write_random_expert
from tests.paretoflow.test_registry import fresh_store


def test_log_stage_retry_reuses_its_run(tmp_path, tiny_policy_dir):
    from tasks.stages import log_stage

    fresh_store(tmp_path)
    params = load_params(REPO_ROOT / "params.yaml")
    tracker = Tracker(params.tracking, tmp_path)
    parent = tracker.start_run("nightly")
    adapter = "artifacts/adapters/expert-helpfulness"
    job = {"objective": "helpfulness"}
    args = dict(params=params, root=str(tmp_path), parent_run_id=parent, label="expert-helpfulness",
                summary={"metrics": {"loss": 0.5}, "base_model_path": str(tiny_policy_dir), "stage": "align",
                         "job": job, "job_name": "expert-helpfulness"},
                lineage={"paretoflow.flow_run_id": "fr-1"})
    try:   # first attempt: the adapter folder is not there yet (what a Prefect retry then reruns)
        log_stage.fn(**args)
        raise AssertionError("the first attempt should have failed")
    except FileNotFoundError:
        pass
    children = tracker.client.search_runs([tracker.experiment_id],
                                          filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert [r.info.status for r in children] == ["FAILED"]
    write_random_expert(tiny_policy_dir, tmp_path / adapter, seed=0, objective="helpfulness")   # sealed by meta.json
    run_id = log_stage.fn(**args)
    children = tracker.client.search_runs([tracker.experiment_id],
                                          filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert [(r.info.run_id, r.info.status) for r in children] == [(run_id, "FINISHED")]
    assert children[0].data.metrics["loss"] == 0.5
    # the adapter is logged with the base recorded at training (meta.json), not params' model.policy
    from paretoflow.align.meta import read_meta

    meta = read_meta(tmp_path / adapter)
    logged = tracker.download(run_id, "adapter", tmp_path / "downloaded") / "base_model.json"
    assert json.loads(logged.read_text()) == {"base_model_path": meta.base_model_path,
                                              "base_fingerprint": meta.base_model_fingerprint}
