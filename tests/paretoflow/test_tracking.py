import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from paretoflow.config import TrackingConfig, load_params
from paretoflow.tracking import (
    TrackingUnavailable,
    Tracker,
    check_reachable,
    flatten,
    git_dirty,
    git_sha,
    lineage_tags,
    load_logged_adapter,
    metric_name,
    process_identity,
    process_is_dead,
    sweep_zombie_runs,
)
from tests.paretoflow.test_registry import fresh_store


@pytest.fixture
def tracker(tmp_path):
    fresh_store(tmp_path)
    return Tracker(TrackingConfig(tracking_uri="sqlite:///mlflow/mlflow.db", experiment="t"), tmp_path)


def test_logged_adapter_reloads_to_identical_logits(tracker, tiny_policy_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from paretoflow.models import load_policy

    base, tok, _ = load_policy(str(tiny_policy_dir))
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter_dir = tmp_path / "adapter"
    model.save_pretrained(adapter_dir)
    enc = tok(["hello there sea"], return_tensors="pt")
    with torch.no_grad():
        expected = model(**enc).logits
    run = tracker.start_run("align")
    tracker.log_adapter(run, adapter_dir, str(tiny_policy_dir))
    reloaded, _ = load_logged_adapter(tracker, run)
    with torch.no_grad():
        got = reloaded(**enc).logits
    assert torch.equal(got, expected)
    # and the adapter matters: logits differ from the bare base model
    bare, _, _ = load_policy(str(tiny_policy_dir))
    with torch.no_grad():
        assert not torch.allclose(bare(**enc).logits, expected)


def test_reload_refuses_other_base(tracker, tiny_policy_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from paretoflow.models import build_tiny_policy, load_policy

    base, _, _ = load_policy(str(tiny_policy_dir))
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(tmp_path / "a")
    run = tracker.start_run("align")
    tracker.log_adapter(run, tmp_path / "a", str(tiny_policy_dir))
    other = build_tiny_policy(tmp_path / "other", seed=3)
    with pytest.raises(ValueError, match="was trained on"):
        load_logged_adapter(tracker, run, base_model_path=str(other))


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(TrackingUnavailable, match="unreachable"):
        check_reachable("http://127.0.0.1:9", timeout=1)


def test_params_metrics_and_lineage(tracker, tmp_path):
    from tests.conftest import REPO_ROOT

    params = load_params(REPO_ROOT / "params.yaml")
    run = tracker.start_run("stage", tags=lineage_tags(params, REPO_ROOT, flow_run_id="fr-1"))
    tracker.log_params(run, {"a": {"b": 1}, "api_key": "s3cret", "llm": {"auth_token": "t0k", "password": "p"},
                             "gen": {"max_new_tokens": 48}})
    tracker.log_metrics(run, {"acc(test)": 0.5, "nan": float("nan"), "flag": True})
    r = tracker.client.get_run(run)
    assert r.data.params == {"a.b": "1", "gen.max_new_tokens": "48"}   # secrets never logged; budgets are
    assert r.data.metrics == {"acc_test_": 0.5}
    assert r.data.tags["paretoflow.flow_run_id"] == "fr-1"
    assert len(r.data.tags["paretoflow.params_hash"]) == 16
    # the data hash follows the curated tables, not the Data Docs rewritten beside them
    root = tmp_path / "proj"
    (root / "data/curated/data_docs").mkdir(parents=True)
    (root / "data/curated/prompts.parquet").write_bytes(b"v1")
    first = lineage_tags(params, root)["paretoflow.data_hash"]
    (root / "data/curated/data_docs/index.html").write_text("<html>rebuilt</html>")
    assert lineage_tags(params, root)["paretoflow.data_hash"] == first
    (root / "data/curated/prompts.parquet").write_bytes(b"v2")
    assert lineage_tags(params, root)["paretoflow.data_hash"] != first
    assert flatten({"x": {"y": {"z": 1}}}) == {"x.y.z": 1}
    assert metric_name("hv@ref(1)") == "hv_at_ref_1_"


def test_batched_logging_keeps_every_param_metric_step_and_tag(tracker):
    """Past MLflow's per-call limits (100 params or tags, 1,000 metrics): nothing lost,
    every curve point at its step, re-logging the same params is no error."""
    run = tracker.start_run("many")
    params = {f"p{i}": i for i in range(250)}
    tracker.log_params(run, params)
    tracker.log_params(run, params)  # a retried task logs them again
    tracker.log_metric_rows(run, [(step, {"loss": 1.0 / (step + 1), "margin": float(step)}) for step in range(600)])
    tracker.log_curve(run, "hv", [0.1, None, 0.3])
    tracker.set_tags(run, {f"t{i}": i for i in range(130)})
    r = tracker.client.get_run(run)
    assert r.data.params == {k: str(v) for k, v in params.items()}
    assert {k: v for k, v in r.data.tags.items() if k.startswith("t") and k[1:].isdigit()} == {f"t{i}": str(i) for i in range(130)}
    loss = tracker.client.get_metric_history(run, "loss")
    assert sorted((m.step, m.value) for m in loss) == [(s, 1.0 / (s + 1)) for s in range(600)]
    assert len(tracker.client.get_metric_history(run, "margin")) == 600
    assert sorted((m.step, m.value) for m in tracker.client.get_metric_history(run, "hv")) == [(0, 0.1), (2, 0.3)]


def test_keyed_run_is_reused_under_the_same_parent(tracker):
    parent = tracker.start_run("nightly")
    first = tracker.start_run("curate", parent, run_key="log-stage:curate")
    tracker.end_run(first, "FAILED")                                   # the attempt failed
    retry = tracker.start_run("curate", parent, run_key="log-stage:curate")
    assert retry == first and tracker.client.get_run(retry).info.status == "RUNNING"
    other_parent = tracker.start_run("nightly")
    assert tracker.start_run("curate", other_parent, run_key="log-stage:curate") != first
    assert tracker.start_run("curate", parent) != first                # no key: always a new run
    children = tracker.client.search_runs([tracker.experiment_id],
                                          filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(children) == 2


def test_run_block_ends_failed_on_error(tracker):
    with pytest.raises(KeyError):
        with tracker.run("promote") as run_id:
            raise KeyError("boom")
    assert tracker.client.get_run(run_id).info.status == "FAILED"
    with tracker.run("promote") as ok:
        pass
    assert tracker.client.get_run(ok).info.status == "FINISHED"


_ORPHAN = """
import sys, time
from pathlib import Path
from paretoflow.config import TrackingConfig
from paretoflow.tracking import Tracker
t = Tracker(TrackingConfig(tracking_uri="sqlite:///mlflow/mlflow.db", experiment="t"), Path(sys.argv[1]))
parent = t.start_run("nightly", tags={"paretoflow.flow_run_id": "fr-killed"})
child = t.start_run("align", parent, tags={"paretoflow.flow_run_id": "fr-killed"})
print(parent, child, flush=True)
time.sleep(600)
"""


def test_zombie_runs_are_swept(tracker, tmp_path):
    # A flow process killed with -9 mid-run: its parent and nested runs stay RUNNING.
    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        killed = proc.stdout.readline().split()
        assert len(killed) == 2, "the orphan process did not start its runs"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    alive_here = tracker.start_run("front", tags={"paretoflow.flow_run_id": "fr-other"})   # this process lives
    finished_flow = tracker.start_run("pairs", tags={"paretoflow.flow_run_id": "fr-done"})
    current = tracker.start_run("curate", tags={"paretoflow.flow_run_id": "fr-now"})
    foreign = tracker.client.create_run(tracker.experiment_id, tags={"paretoflow.flow_run_id": "fr-remote",
                                                                      "paretoflow.process": "other-host/0:1:2"}).info.run_id
    unrelated = tracker.client.create_run(tracker.experiment_id).info.run_id   # not a paretoflow run
    asked = []

    def is_alive(flow_run_id):
        asked.append(flow_run_id)
        return flow_run_id not in ("fr-done", "fr-now")

    swept = sweep_zombie_runs(tracker, is_alive, current_flow_run_id="fr-now")
    assert sorted(swept) == sorted([*killed, finished_flow])
    status = {r: tracker.client.get_run(r).info.status for r in [*killed, alive_here, finished_flow, current,
                                                                  foreign, unrelated]}
    assert [status[r] for r in killed] == ["FAILED", "FAILED"] and status[finished_flow] == "FAILED"
    assert {status[r] for r in (alive_here, current, foreign, unrelated)} == {"RUNNING"}
    assert "process" in tracker.client.get_run(killed[0]).data.tags["paretoflow.zombie"]
    assert sorted(asked) == ["fr-done", "fr-other", "fr-remote"]          # once per flow run, never the current
    assert sweep_zombie_runs(tracker, is_alive, current_flow_run_id="fr-now") == []


def test_process_identity_tells_dead_from_alive():
    assert not process_is_dead(process_identity())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = process_identity(proc.pid)
    proc.wait()
    time.sleep(0.1)
    assert process_is_dead(identity)
    host, pid, started = process_identity().rsplit(":", 2)
    assert process_is_dead(f"{host}:{pid}:{float(started) - 100:.2f}")   # same pid, another process
    assert not process_is_dead("another-machine/abcd:1:0.00") and not process_is_dead("garbage")


def _git(root, *args):
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=root, check=True,
                   capture_output=True)


def test_git_sha_is_head_and_git_dirty_lists_changed_code(tmp_path):
    root = tmp_path / "clone"
    (root / "paretoflow").mkdir(parents=True)
    (root / "paretoflow/losses.py").write_text("x = 1\n")
    (root / "dvc.lock").write_text("schema: '2.0'\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "init")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    assert git_sha(root) == head and git_dirty(root) == ""
    (root / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")        # what every repro rewrites
    (root / "notes.txt").write_text("untracked")
    assert git_sha(root) == head and git_dirty(root) == ""
    (root / "paretoflow/losses.py").write_text("x = 2\n")
    assert git_sha(root) == head and git_dirty(root) == "paretoflow/losses.py"
    assert git_dirty(tmp_path / "not-a-repo") == "unknown"
