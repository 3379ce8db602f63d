"""Tracking paths of a project's params: absolute local paths outside the project root
are refused (issue 22); server URIs and paths inside the root stay allowed."""

from __future__ import annotations

import pytest
import yaml

from paretoflow.config import TrackingConfig, load_params

REPO_PARAMS = "params.yaml"


def _params_with(tmp_path, **tracking):
    raw = yaml.safe_load(open(REPO_PARAMS).read())
    raw["tracking"] = {**raw.get("tracking", {}), **tracking}
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    return project / "params.yaml"


@pytest.mark.parametrize("field, value", [
    ("tracking_uri", "sqlite:////var/shared/mlflow.db"), ("artifact_location", "/var/shared/artifacts"),
    ("artifact_location", "file:///var/shared/artifacts"),
])
def test_absolute_local_paths_outside_the_project_are_refused(tmp_path, field, value):
    with pytest.raises(ValueError, match="absolute local path outside the project root"):
        load_params(_params_with(tmp_path, **{field: value}))


def test_absolute_paths_inside_the_project_and_server_uris_are_accepted(tmp_path):
    inside = tmp_path / "project" / "mlflow"
    params = load_params(_params_with(tmp_path, tracking_uri=f"sqlite:///{inside}/mlflow.db",
                                      artifact_location=str(inside / "artifacts")))
    assert params.tracking.artifact_location == str(inside / "artifacts")
    for uri in ("http://127.0.0.1:5000", "postgresql+psycopg2://pf@127.0.0.1/mlflow", "s3://bucket/pf"):
        (tmp_path / "project").rename(tmp_path / "old")
        load_params(_params_with(tmp_path, tracking_uri=uri, artifact_location=uri))
        (tmp_path / "old" / "params.yaml").unlink()
        (tmp_path / "old").rmdir()


def test_a_config_built_in_code_knows_no_root_and_checks_only_dotdot():
    TrackingConfig(tracking_uri="sqlite:////var/shared/mlflow.db")  # no project file: no root to hold it to
    with pytest.raises(ValueError, match="leaving the project root"):
        TrackingConfig(tracking_uri="sqlite:///../x.db")
