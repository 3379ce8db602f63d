"""The align-expert flow (one adapter on a worker) and the fan-out's configuration, no servers.

The full fan-out over a real work pool is tests/flows/test_scale_out.py (integration).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.flows.project import REPO

TINY_BUDGET = dict(lora_r=2, lora_alpha=4.0, lora_dropout=0.0, batch_size=2, eval_batch_size=4, max_steps=2,
                   eval_steps=1, checkpoint_steps=2, patience=5, max_val_pairs=2, max_length=48,
                   max_prompt_tokens=24, selection_prompts=2, selection_max_new_tokens=4, selection_batch_size=2)


def test_expert_flow_receives_every_section_the_align_stage_reads():
    from flows.expert import SECTIONS, align_expert
    from paretoflow.pipeline import stage

    assert set(stage("align").sections) <= set(SECTIONS)
    assert list(inspect.signature(align_expert.fn).parameters) == ["job", "handoff", *SECTIONS]


def _handoff(tracking_uri: str, inputs=(), key: str = "align-k"):
    from paretoflow.config import TrackingConfig
    from flows.exchange import Handoff

    return Handoff(tracking=TrackingConfig(tracking_uri=tracking_uri), dvc_remote_url="/srv/dvc", inputs=list(inputs),
                   parent_run_id="p" * 32, cache_key=key, lineage={"paretoflow.git_sha": "abc"})


def test_expert_parameters_survive_the_json_trip_as_typed_flow_parameters(params):
    from flows.expert import align_expert, expert_parameters
    from flows.exchange import ExpertJob, Handoff

    handoff = _handoff("http://127.0.0.1:5000")
    sent = expert_parameters(params, {"weights": [0.5, 0.5, 0.0]}, handoff)
    received = align_expert.validate_parameters(yaml.safe_load(yaml.safe_dump(sent)))   # plain JSON types only
    assert received["job"] == ExpertJob(weights=[0.5, 0.5, 0.0])
    assert received["job"].kwargs() == {"weights": [0.5, 0.5, 0.0]}
    assert received["handoff"] == Handoff.model_validate(handoff.model_dump())
    assert received["align"] == params.align and received["objectives"] == params.objectives


def test_scale_config_defaults_to_in_process_and_refuses_a_crash_timer_shorter_than_two_heartbeats(params):
    from paretoflow.config import ScaleConfig

    assert params.scale.work_pool is None                    # params.yaml: today's behaviour
    with pytest.raises(ValueError, match="at least two heartbeats"):
        ScaleConfig(work_pool="p", heartbeat_s=60, crash_after_s=90)
    with pytest.raises(ValueError):
        ScaleConfig(heartbeat_s=10)                           # Prefect's minimum is 30 s


def test_pool_mode_refuses_stores_a_remote_worker_cannot_reach(params, tmp_path):
    from flows.fanout import check_ready

    pooled = params.model_copy(update={"scale": params.scale.model_copy(update={"work_pool": "gpu"})})
    with pytest.raises(ValueError, match="tracking server URL"):
        check_ready(pooled, tmp_path)                         # sqlite: on this machine only
    served = pooled.model_copy(update={"tracking": pooled.tracking.model_copy(
        update={"tracking_uri": "http://127.0.0.1:5000"})})
    with pytest.raises(ValueError, match="not a DVC project"):
        check_ready(served, tmp_path)


def test_failure_message_names_each_failed_expert(params):
    from flows.fanout import _failure_message

    pooled = params.model_copy(update={"scale": params.scale.model_copy(update={"work_pool": "gpu"})})
    message = _failure_message(pooled, {"expert-harmlessness": "expert-harmlessness: flow run 'x' ended Crashed: "
                                        "no heartbeat for 90 s"}, 4)
    assert message.splitlines()[0] == "align on work pool 'gpu': 1 of 4 expert runs failed: expert-harmlessness"
    assert "ended Crashed: no heartbeat" in message and "rerun trains only the failed ones" in message


def test_worker_command_is_prefects_worker_on_the_named_pool():
    from flows.cli import build_parser
    from flows.worker import worker_command

    args = build_parser().parse_args(["worker", "--pool", "trainers", "--limit", "1"])
    assert (args.pool, args.limit) == ("trainers", 1)
    command = worker_command("trainers", "process", limit=1, name="gpu-0")
    assert Path(command[0]).name == "prefect"
    assert command[1:] == ["worker", "start", "--pool", "trainers", "--type", "process", "--limit", "1",
                           "--name", "gpu-0"]


def _inputs_on_a_remote(work: Path):
    """data/curated (human pairs) and data/pairs (on-policy) of a project, `dvc add`-ed and
    pushed to a local remote; their lock entries. No reward model: the rule judges rate."""
    from flows.exchange import LockedOutput
    from tests.paretoflow.align.conftest import write_pair_tables

    source, remote = work / "flow-checkout", work / "dvc-remote"
    write_pair_tables(source / "data/curated", source="hh.jsonl.gz", rated_objectives=())
    write_pair_tables(source / "data/pairs")
    dvc = str(Path(sys.executable).parent / "dvc")
    for args in (["init", "--no-scm", "-q"], ["add", "-q", "data/curated", "data/pairs"],
                 ["remote", "add", "-d", "r", str(remote)], ["push", "-q"]):
        subprocess.run([dvc, *args], cwd=source, check=True, capture_output=True)
    entries = [yaml.safe_load((source / f"data/{name}.dvc").read_text())["outs"][0] for name in ("curated", "pairs")]
    return remote, [LockedOutput(**{**e, "path": f"data/{e['path']}"}) for e in entries]


def test_expert_flow_trains_from_the_remote_and_hands_the_adapter_over_through_mlflow(
        prefect_harness, tiny_policy_dir, tmp_path, monkeypatch, one_torch_thread):
    from flows.expert import align_expert
    from paretoflow.config import TrackingConfig, load_params
    from flows.exchange import ExpertJob, adopt_adapter, find_adapter_run
    from paretoflow.io import files_hash
    from paretoflow.tracking import Tracker

    from tests.conftest import rules_overrides

    remote, inputs = _inputs_on_a_remote(tmp_path)
    monkeypatch.setenv("PARETOFLOW_WORK_DIR", str(tmp_path / "worker"))
    monkeypatch.setenv("PARETOFLOW_CACHE_DIR", str(tmp_path / "worker-cache"))
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                              artifact_location=str(tmp_path / "mlflow-artifacts"))
    params = load_params(REPO / "params.yaml", overrides={
        **rules_overrides(), "model": {"policy": str(tiny_policy_dir)}, "align": {"cpu": TINY_BUDGET}})
    tracker = Tracker(tracking, tmp_path)
    parent = tracker.start_run("nightly")
    handoff = _handoff(tracking.tracking_uri, inputs, key="align-expert-test").model_copy(
        update={"tracking": tracking, "dvc_remote_url": str(remote), "parent_run_id": parent})

    result = align_expert(job=ExpertJob(objective="helpfulness"), handoff=handoff, project=params.project,
                          model=params.model, objectives=params.objectives, curate=params.curate,
                          pairs=params.pairs, reward=params.reward, align=params.align)

    assert result["job_name"] == "expert-helpfulness"
    assert os.listdir(tmp_path / "worker") == []                 # the scratch project is gone
    run = find_adapter_run(tracker, "align-expert-test")
    assert run.info.run_id == result["mlflow_run_id"]
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["paretoflow.objective"] == "helpfulness"
    assert [m.step for m in tracker.client.get_metric_history(run.info.run_id, "loss")] == [1, 2]
    dest = tmp_path / "checkout/artifacts/adapters/expert-helpfulness"
    assert adopt_adapter(tracker, run, dest) == result["outputs_hash"] == files_hash([dest])
