"""model_fingerprint hashes the full content and records it beside the files (issue 22)."""

from __future__ import annotations

import os

import pytest

from paretoflow import models
from paretoflow.config import TrackingConfig


def _model(folder, size=3 << 20):
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(os.urandom(size))
    (folder / "config.json").write_text('{"a": 1}')
    return folder


def test_an_edit_in_the_middle_of_the_weights_changes_the_fingerprint(tmp_path):
    folder = _model(tmp_path / "m")
    before = models.model_fingerprint(folder)
    weights = folder / "model.safetensors"
    stat = weights.stat()
    with weights.open("r+b") as fh:  # beyond the first and last MiB the old hash read
        fh.seek(3 << 19)
        fh.write(b"\x00" * 4096)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the mtime set back
    assert models.model_fingerprint(folder) != before


def test_a_rerun_reads_the_recorded_digest_not_the_file(tmp_path, monkeypatch):
    folder = _model(tmp_path / "m")
    first = models.model_fingerprint(folder)
    assert (folder / models.FINGERPRINTS_FILE).exists()
    calls = []
    real = models._sha256
    monkeypatch.setattr(models, "_sha256", lambda path: calls.append(path) or real(path))
    assert models.model_fingerprint(folder) == first and calls == []
    (folder / "config.json").write_text('{"a": 2}')
    assert models.model_fingerprint(folder) != first and [p.name for p in calls] == ["config.json"]


def test_a_read_only_folder_still_fingerprints(tmp_path, monkeypatch):
    folder = _model(tmp_path / "m", size=1024)

    def refuse(*args, **kwargs):
        raise PermissionError("read-only")

    monkeypatch.setattr("paretoflow.io.write_text", refuse)
    assert models.model_fingerprint(folder) == models.model_fingerprint(folder)
    assert not (folder / models.FINGERPRINTS_FILE).exists()


@pytest.mark.parametrize("field, value", [
    ("tracking_uri", "sqlite:///../../mlflow.db"), ("artifact_location", "../artifacts"),
    ("artifact_location", "file:../artifacts"), ("tracking_uri", "mlruns/../../x"),
])
def test_tracking_paths_may_not_leave_the_project(field, value):
    with pytest.raises(ValueError, match="leaving the project root"):
        TrackingConfig(**{field: value})


@pytest.mark.parametrize("value", ["sqlite:///mlflow/mlflow.db", "http://127.0.0.1:5000", "-",
                                   "postgresql+psycopg2://pf@127.0.0.1/mlflow", "s3://bucket/pf", "mlflow/artifacts"])
def test_server_uris_and_inside_paths_are_accepted(value):
    TrackingConfig(tracking_uri=value, artifact_location=value)
