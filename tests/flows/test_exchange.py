"""flows.exchange: inputs by hash from a DVC remote, adapters through MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.exchange import (
    CACHE_KEY_TAG,
    OUTPUTS_HASH_TAG,
    LockedOutput,
    adopt_adapter,
    find_adapter_run,
    locked_inputs,
    pull_inputs,
)
from paretoflow.io import files_hash

DVC = str(Path(sys.executable).parent / "dvc")


def _lock(root: Path, outs: dict[str, list[dict]]) -> None:
    stages = {name: {"cmd": f"paretoflow {name}", "outs": entries} for name, entries in outs.items()}
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))


def _out(path: str, md5: str) -> dict:
    return {"path": path, "hash": "md5", "md5": md5, "size": 10, "nfiles": 2 if md5.endswith(".dir") else None}


def test_locked_inputs_are_the_lock_entries_of_the_registry_inputs(params, tmp_path):
    from flows.exchange import _covers
    from paretoflow.pipeline import stage

    curated = [_out(f"data/curated/{t}.parquet", f"{i}" * 32) for i, t in
               enumerate(("prompts", "responses", "ratings", "pairs", "quarantine"))]
    _lock(tmp_path, {"curate": curated, "pairs": [_out("data/pairs", "a" * 32 + ".dir")],
                     "reward": [_out("artifacts/reward", "b" * 32 + ".dir")],
                     "align": [_out("artifacts/adapters", "c" * 32 + ".dir")]})
    for name in ("align", "validate"):
        got = locked_inputs(params, tmp_path, name)
        wanted = stage(name).inputs(params)
        # every input the registry names is covered, and nothing else is pulled
        assert all(any(_covers(e.path, w) for e in got) for w in wanted), name
        assert all(any(_covers(e.path, w) for w in wanted) for e in got), name
    assert next(e for e in locked_inputs(params, tmp_path, "align") if e.path == "data/pairs").md5 == "a" * 32 + ".dir"
    # file inputs get the one entry each names (validate reads the curated tables)
    assert {e.path for e in locked_inputs(params, tmp_path, "validate")} == {e["path"] for e in curated}


def test_an_input_dvc_never_recorded_is_a_clear_error_naming_its_stage(params, tmp_path):
    curated = [_out(f"data/curated/{t}.parquet", "0" * 32) for t in ("prompts", "responses", "ratings", "pairs")]
    _lock(tmp_path, {"curate": curated})
    with pytest.raises(ValueError, match=r"'data/pairs'.*dvc commit pairs"):
        locked_inputs(params, tmp_path, "align")


def _dvc(root: Path, *args: str) -> None:
    subprocess.run([DVC, *args], cwd=root, check=True, capture_output=True, text=True)


def test_pull_inputs_materializes_exactly_the_locked_files_from_the_remote(tmp_path):
    source, remote, scratch = tmp_path / "source", tmp_path / "remote", tmp_path / "scratch"
    (source / "data/pairs").mkdir(parents=True)
    (source / "data/pairs/pairs.parquet").write_bytes(b"pairs-bytes")
    (source / "data/pairs/report.json").write_text('{"n": 3}')
    (source / "data/other.txt").write_text("not an input")
    _dvc(source, "init", "--no-scm", "-q")
    _dvc(source, "add", "-q", "data/pairs", "data/other.txt")
    _dvc(source, "remote", "add", "-d", "r", str(remote))
    _dvc(source, "push", "-q")
    entry = yaml.safe_load((source / "data/pairs.dvc").read_text())["outs"][0]
    locked = LockedOutput(**{**entry, "path": "data/pairs"})

    pulled = pull_inputs([locked], str(remote), scratch)
    assert pulled == [scratch / "data/pairs"]
    assert files_hash([scratch / "data/pairs"]) == files_hash([source / "data/pairs"])
    assert not (scratch / "data/other.txt").exists()
    # a hash the remote does not hold fails loudly instead of leaving an empty input
    bogus = LockedOutput(path="data/pairs", md5="0" * 32 + ".dir", size=1, nfiles=1)
    with pytest.raises(Exception, match="pull"):
        pull_inputs([bogus], str(remote), tmp_path / "scratch2")


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    from paretoflow.config import TrackingConfig
    from paretoflow.tracking import Tracker

    tmp_path = tmp_path_factory.mktemp("mlflow")  # one sqlite store: its migrations take seconds
    return Tracker(TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                                  artifact_location=str(tmp_path / "artifacts")), tmp_path)


def _adapter(folder: Path, base_fingerprint: str) -> Path:
    from safetensors.torch import save_file
    import torch

    folder.mkdir(parents=True)
    save_file({"w": torch.arange(6, dtype=torch.float32)}, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
    (folder / "meta.json").write_text(json.dumps({"base_model_fingerprint": base_fingerprint}))
    (folder / "train_log.json").write_text(json.dumps({"steps": []}))
    return folder


def _publish(tracker, adapter: Path, base: Path, key: str, digest: str, finish: bool = True) -> str:
    run_id = tracker.start_run(adapter.name, tags={CACHE_KEY_TAG: key, OUTPUTS_HASH_TAG: digest})
    tracker.log_adapter(run_id, adapter, str(base))
    if finish:
        tracker.end_run(run_id)
    return run_id


def test_adapter_roundtrip_through_mlflow_is_byte_identical_and_checked(tracker, tiny_policy_dir, tmp_path):
    from paretoflow.models import model_fingerprint

    base_fp = model_fingerprint(tiny_policy_dir)
    worker = _adapter(tmp_path / "worker/artifacts/adapters/expert-helpfulness", base_fp)
    digest = files_hash([worker])
    assert find_adapter_run(tracker, "align-key1") is None
    _publish(tracker, worker, tiny_policy_dir, "align-key1", digest, finish=False)
    assert find_adapter_run(tracker, "align-key1") is None       # a RUNNING upload is not trusted
    run_id = _publish(tracker, worker, tiny_policy_dir, "align-key1", digest)
    run = find_adapter_run(tracker, "align-key1")
    assert run.info.run_id == run_id

    dest = tmp_path / "checkout/artifacts/adapters/expert-helpfulness"
    assert adopt_adapter(tracker, run, dest, base_fingerprint=base_fp) == digest
    assert files_hash([dest]) == digest                          # the worker's bytes, nothing added
    assert not (dest / "base_model.json").exists()

    # another base: refused, and the adopted folder stays as it was
    with pytest.raises(ValueError, match="trained on base fingerprint"):
        adopt_adapter(tracker, run, dest, base_fingerprint="f" * 16)
    assert files_hash([dest]) == digest


def test_adapter_whose_files_differ_from_the_recorded_hash_is_refused(tracker, tiny_policy_dir, tmp_path):
    from paretoflow.models import model_fingerprint

    worker = _adapter(tmp_path / "worker/expert-conciseness", model_fingerprint(tiny_policy_dir))
    _publish(tracker, worker, tiny_policy_dir, "align-key2", "0123456789abcdef")
    dest = tmp_path / "checkout/expert-conciseness"
    with pytest.raises(ValueError, match="hashes .* but the worker recorded 0123456789abcdef"):
        adopt_adapter(tracker, find_adapter_run(tracker, "align-key2"), dest)
    assert not dest.exists()
