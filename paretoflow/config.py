"""Typed configuration: `params.yaml` loaded into validated pydantic models.

`Params` holds one typed section per stage. Each stage's section is declared beside the
stage (`paretoflow/stages/<stage>.py`: `CurateConfig`, `ValidateConfig`, `RewardConfig`,
`PairsConfig`, `AlignConfig`, `FrontConfig`, `PromoteConfig`); the sections every stage
reads (objectives, project, model) in `paretoflow/sections.py`; the orchestration
sections (tracking, dvc, schedule, scale) here. params.yaml is the one home of the values
a user tunes (tests/paretoflow/test_config.py checks that a code default never disagrees
with it silently). DVC reads the same keys and Prefect flow parameters default to them, so
the Prefect UI renders each section as a form.

Checks that span sections (a weight vector against the declared objectives, a mapping
keyed by objective names) run here, when params load: each stage's `check(params)`, so a
mistake fails in a second naming the key, not minutes into a run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationInfo, field_validator, model_validator

from paretoflow.sections import (
    JudgeRef,
    ModelConfig,
    Objective,
    Profile,
    ProjectConfig,
    ProjectPath,
    _Budgeted,
    _Section,
    check_objective_keys,
    check_weights,
)
from paretoflow.stages.align import SOURCE_KINDS, AlignBudget, AlignConfig, check_source_weights
from paretoflow.stages.curate import CurateConfig, SourceConfig
from paretoflow.stages.front import FrontBudget, FrontConfig
from paretoflow.stages.pairs import PairsBudget, PairsConfig
from paretoflow.stages.promote import PromoteConfig
from paretoflow.stages.reward import FeatureView, RewardBudget, RewardConfig, RewardSourceWeights
from paretoflow.stages.validate import ValidateConfig


# URI schemes that name a local path; every other scheme names a server or remote store.
_LOCAL_SCHEMES = {"sqlite": "sqlite:///", "file": "file:"}


def _local_path_of(value: str) -> str | None:
    """The filesystem path a tracking URI / artifact location names, or None for a server."""
    scheme, sep, _ = value.partition(":")
    if sep and scheme.lower() in _LOCAL_SCHEMES:
        path = value[len(_LOCAL_SCHEMES[scheme.lower()]):] if value.lower().startswith(
            _LOCAL_SCHEMES[scheme.lower()]) else value[len(scheme) + 1:]
        return path[2:] if path.startswith("//") and scheme.lower() == "file" else path
    if sep and len(scheme) > 1 and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum():
        return None  # http(s)://, postgresql+psycopg2://, s3://, databricks, ...
    return value


# Validation context key: the project root a params file belongs to (load_params sets it).
PROJECT_ROOT_CONTEXT = "project_root"


def _contained_uri(value: str, root: Path | None = None) -> str:
    """A local path in a tracking URI must stay inside the project root: a relative one
    may not use '..' (`sqlite:///../../x.db` wrote the store outside it), and, when the
    root is known (params read by load_params), an absolute one must resolve inside it
    (`sqlite:////var/shared/x.db` wrote another project's store). A store shared between
    machines or projects is a server URI (http(s)://, postgresql://, s3://, ...)."""
    path = _local_path_of(value)
    if path is None:
        return value
    if ".." in Path(path).parts:
        raise ValueError(f"{value!r}: a local path leaving the project root ('..'); use a path inside it "
                         "or a server URI")
    if root is not None and Path(path).is_absolute():
        project, full = Path(root).resolve(), Path(path).resolve()
        if full != project and project not in full.parents:
            raise ValueError(f"{value!r}: an absolute local path outside the project root {project}; use a path "
                             "inside it or a server URI")
    return value


class TrackingConfig(_Section):
    # Embedded default: sqlite under mlflow/ (the file store is refused in MLflow 3.17).
    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_location: str = "mlflow/artifacts"
    experiment: str = "paretoflow"
    registered_model: str = "paretoflow-policy"

    @field_validator("tracking_uri", "artifact_location")
    @classmethod
    def _inside_project(cls, v: str, info: ValidationInfo) -> str:
        # The root is known only where params are read from a project's file (load_params
        # passes it as validation context); a TrackingConfig built in code checks '..' only.
        root = (info.context or {}).get(PROJECT_ROOT_CONTEXT)
        return _contained_uri(v, root)


class DvcConfig(_Section):
    # A local DVC remote by default; any DVC remote URL works.
    remote_name: str = "local"
    remote_url: str = "dvc-remote"


class ScheduleConfig(_Section):
    """Prefect deployments made by `paretoflow serve`."""

    cron: str = "0 2 * * *"   # nightly at 02:00 (issue 6)
    timezone: str = "UTC"
    # One run per deployment at a time; a second trigger waits (ENQUEUE) or is dropped.
    collision_strategy: Literal["ENQUEUE", "CANCEL_NEW"] = "ENQUEUE"


class ScaleConfig(_Section):
    """Where the heavy work runs (docs/scaling.md). With no work pool, today's behaviour:
    every stage in the flow's process. With one, each align job (one adapter) is a flow
    run of the `align-expert` deployment on that Prefect work pool: its inputs come from
    the DVC remote, its adapter goes to MLflow and is fetched back before the front."""

    # A Prefect work pool name, or null to train in process. Any pool type works (process,
    # docker, kubernetes): the deployment names its flow by module path, so a worker's
    # environment needs paretoflow installed, nothing else.
    work_pool: str | None = None
    # The type a missing pool is created with (`paretoflow worker`, `paretoflow serve`).
    pool_type: str = "process"
    # Expert runs emit a Prefect heartbeat this often (PREFECT_FLOWS_HEARTBEAT_FREQUENCY;
    # Prefect's minimum is 30 s) and are marked Crashed by a server automation after
    # `crash_after_s` without one: 3 heartbeats, as Prefect's zombie-flow recipe
    # (docs.prefect.io/v3/advanced/detect-zombie-flows).
    heartbeat_s: int = Field(30, ge=30)
    crash_after_s: int = Field(90, ge=60)
    # How often the flow polls an expert run's state (run_deployment's default: 5 s).
    poll_s: float = Field(5.0, gt=0.0)
    # An expert run not finished after this long fails the nightly, named (our choice: a
    # nightly must end before the next one starts).
    wait_timeout_s: int = Field(12 * 3600, ge=60)

    @model_validator(mode="after")
    def _crash_after_heartbeats(self) -> "ScaleConfig":
        if self.crash_after_s < 2 * self.heartbeat_s:
            raise ValueError(f"scale.crash_after_s ({self.crash_after_s}) must be at least two heartbeats "
                             f"(2 x heartbeat_s = {2 * self.heartbeat_s}) or live runs would be crashed")
        return self


class Params(_Section):
    """All of params.yaml, one typed section per stage."""

    project: ProjectConfig = Field(default_factory=ProjectConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    objectives: list[Objective]
    curate: CurateConfig = Field(default_factory=CurateConfig)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    dvc: DvcConfig = Field(default_factory=DvcConfig)
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    align: AlignConfig = Field(default_factory=AlignConfig)
    front: FrontConfig = Field(default_factory=FrontConfig)
    promote: PromoteConfig = Field(default_factory=PromoteConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    scale: ScaleConfig = Field(default_factory=ScaleConfig)

    @model_validator(mode="after")
    def _objectives_unique(self) -> "Params":
        names = [o.name for o in self.objectives]
        if not names:
            raise ValueError("at least one objective must be declared")
        if len(set(names)) != len(names):
            raise ValueError(f"objective names must be unique, got {names}")
        return self

    @model_validator(mode="after")
    def _stages_agree_with_objectives(self) -> "Params":
        """Every stage's cross-section checks (paretoflow/stages/<stage>.py `check`)."""
        from paretoflow.pipeline import check

        check(self)
        return self

    @property
    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    def objective(self, name: str) -> Objective:
        for o in self.objectives:
            if o.name == name:
                return o
        raise KeyError(f"unknown objective {name!r}; declared: {self.objective_names}")

    def section_hash(self, *sections: str) -> str:
        """Stable short hash of the named sections (lineage tag, cache key)."""
        dumped = self.model_dump(mode="json", by_alias=True)
        payload = {s: dumped.get(s) for s in sections} if sections else dumped
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Read and validate params.yaml; `overrides` are deep-merged section dicts."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"params file not found: {path.resolve()} (run paretoflow in the project's folder, "
                                "or name the file: paretoflow --params FILE ...)")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    if overrides:
        raw = deep_merge(raw, overrides)
    try:
        return Params.model_validate(raw, context={PROJECT_ROOT_CONTEXT: path.resolve().parent})
    except Exception as exc:  # pydantic's message names the field; add the file
        raise ValueError(f"{path}: invalid params:\n{exc}") from exc


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


__all__ = [
    "SOURCE_KINDS", "AlignBudget", "AlignConfig", "CurateConfig", "DvcConfig", "FeatureView", "FrontBudget",
    "FrontConfig", "JudgeRef", "ModelConfig", "Objective", "PairsBudget", "PairsConfig", "Params", "Profile",
    "ProjectConfig", "ProjectPath", "PromoteConfig", "RewardBudget", "RewardConfig", "RewardSourceWeights",
    "ScaleConfig", "ScheduleConfig", "SourceConfig", "TrackingConfig", "ValidateConfig", "check_objective_keys",
    "check_source_weights", "check_weights", "deep_merge", "load_params",
]
