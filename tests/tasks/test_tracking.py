"""MLflow run hygiene of the tasks: a retried log_stage reuses its run."""

from paretoflow.config import load_params
from paretoflow.tracking import Tracker
from tests.conftest import REPO_ROOT
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
    (tmp_path / adapter).mkdir(parents=True)
    (tmp_path / adapter / "adapter_config.json").write_text("{}")
    run_id = log_stage.fn(**args)
    children = tracker.client.search_runs([tracker.experiment_id],
                                          filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert [(r.info.run_id, r.info.status) for r in children] == [(run_id, "FINISHED")]
    assert children[0].data.metrics["loss"] == 0.5
