import pytest
import torch

from paretoflow.config import TrackingConfig, load_params
from paretoflow.tracking import (
    TrackingUnavailable,
    Tracker,
    check_reachable,
    flatten,
    lineage_tags,
    load_logged_adapter,
    metric_name,
)


@pytest.fixture
def tracker(tmp_path):
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
