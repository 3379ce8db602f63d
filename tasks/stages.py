"""One Prefect task per pipeline stage. Each body calls the library's `run` and returns
a JSON summary; `log_stage` records it in MLflow as a nested run under the pipeline run.

Compute tasks are cached across processes (tasks/common.py); logging is never cached,
so every pipeline run's MLflow parent holds every front artifact, also on a resume.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import CacheKeyFnPolicy

from paretoflow.config import Params
from tasks.common import stage_cache_key, timed


def _params(p: dict[str, Any]) -> Params:
    return Params.model_validate(p)


def _stage_policy(stage: str, adapter_arg: str | None = None) -> CacheKeyFnPolicy:
    def key(context, parameters):
        adapter = parameters.get(adapter_arg) if adapter_arg else None
        return stage_cache_key(stage, _params(parameters["params"]), Path(parameters["root"]),
                               adapter=adapter, extra=parameters.get("extra"))
    return CacheKeyFnPolicy(cache_key_fn=key)


_CACHED = dict(persist_result=True, result_serializer="json")


@task(name="curate", cache_policy=_stage_policy("curate"), **_CACHED)
def curate_task(params: dict, root: str) -> dict:
    from paretoflow.data.curate import run

    return timed(run, _params(params), Path(root))


@task(name="validate", persist_result=False)
def validate_task(params: dict, root: str) -> dict:
    # Never cached: the gate re-checks the data on every run and stops the flow on failure.
    from paretoflow.data.validate import run

    return timed(run, _params(params), Path(root))


@task(name="pairs", cache_policy=_stage_policy("pairs"), retries=1, **_CACHED)
def pairs_task(params: dict, root: str) -> dict:
    from paretoflow.pairs import run

    return timed(run, _params(params), Path(root))


@task(name="train-reward-model", cache_policy=_stage_policy("reward"), **_CACHED)
def reward_task(params: dict, root: str) -> dict:
    from paretoflow.reward.train import run

    return timed(run, _params(params), Path(root))


@task(name="align", cache_policy=_stage_policy("align", adapter_arg="adapter"), **_CACHED)
def align_task(params: dict, root: str, adapter: str, objective: str | None = None,
               weights: list[float] | None = None) -> dict:
    from paretoflow.align import run

    return timed(run, _params(params), Path(root), objective=objective, weights=weights)


@task(name="front", cache_policy=_stage_policy("front"), **_CACHED)
def front_task(params: dict, root: str) -> dict:
    from paretoflow.front import run

    return timed(run, _params(params), Path(root))


@task(name="promote", persist_result=False)
def promote_task(params: dict, root: str, parent_run_id: str, validation_passed: bool,
                 lineage: dict[str, str]) -> dict:
    from paretoflow.promote import run
    from paretoflow.tracking import Tracker

    p = _params(params)
    tracker = Tracker(p.tracking, Path(root))
    return timed(run, p, Path(root), tracker, parent_run_id, validation_passed, lineage)


@task(name="log-stage", retries=2, retry_delay_seconds=5, persist_result=False)
def log_stage(params: dict, root: str, parent_run_id: str, stage: str, summary: dict,
              lineage: dict[str, str], artifacts: list[str], sections: list[str],
              tags: dict[str, str] | None = None, adapter_dir: str | None = None) -> str:
    """A nested MLflow run for one stage: params, metrics, artifacts, lineage tags."""
    from paretoflow.tracking import Tracker

    p = _params(params)
    rootp = Path(root)
    tracker = Tracker(p.tracking, rootp)
    # A retry of this task reuses the run its failed attempt created (one run per stage).
    with tracker.run(stage, parent_run_id, tags={**lineage, "paretoflow.stage": stage, **(tags or {})},
                     run_key=f"log-stage:{stage}") as run_id:
        _log_stage_run(tracker, run_id, p, rootp, summary, artifacts, sections, adapter_dir)
    return run_id


def _log_stage_run(tracker, run_id: str, p: Params, rootp: Path, summary: dict, artifacts: list[str],
                   sections: list[str], adapter_dir: str | None) -> None:
    dumped = p.model_dump(mode="json", by_alias=True)
    tracker.log_params(run_id, {s: dumped[s] for s in sections if s in dumped and s != "objectives"})
    tracker.log_metrics(run_id, summary.get("metrics", {}))
    for curve_name, values in (summary.get("curves") or {}).items():
        tracker.log_curve(run_id, curve_name, values)
    if adapter_dir and (rootp / adapter_dir / "train_log.json").exists():
        # Training curves at their optimizer steps: loss, reward margin, pair accuracy, val.
        log = json.loads((rootp / adapter_dir / "train_log.json").read_text())
        for row in log.get("steps", []) + log.get("validation", []):
            tracker.log_metrics(run_id, {k: v for k, v in row.items() if k != "step"}, step=row["step"])
    for rel in artifacts:
        tracker.log_artifact(run_id, rootp / rel, artifact_path=Path(rel).name if (rootp / rel).is_dir() else None)
    if adapter_dir:
        tracker.log_adapter(run_id, rootp / adapter_dir, summary.get("base_model_path") or str(p.model.policy))


@task(name="log-front-candidates", retries=2, retry_delay_seconds=5, persist_result=False)
def log_front_candidates(params: dict, root: str, front_run_id: str, records: list[dict],
                         lineage: dict[str, str]) -> list[str]:
    """One nested MLflow run per front candidate (under the front stage run)."""
    from paretoflow.tracking import Tracker

    tracker = Tracker(_params(params).tracking, Path(root))
    run_ids = []
    for record in records:
        run_id = tracker.start_run(record["name"], front_run_id, tags={
            **lineage, "paretoflow.stage": "front-candidate", "paretoflow.candidate": record["name"],
            "paretoflow.kind": record["kind"], "paretoflow.non_dominated": str(record["non_dominated"])})
        tracker.log_params(run_id, {"kind": record["kind"], "source": record["source"], "method": record["method"],
                                    "coefficients": record["coefficients"], "weights": record["weights"]})
        tracker.log_metrics(run_id, {**record["objectives"], **{f"rm_{k}": v for k, v in record["reward_model"].items()},
                                     **{f"{k}_ci_low": v[0] for k, v in record["intervals"].items()},
                                     **{f"{k}_ci_high": v[1] for k, v in record["intervals"].items()},
                                     "non_dominated": float(record["non_dominated"])})
        tracker.end_run(run_id)
        run_ids.append(run_id)
    return run_ids


@task(name="register-reward-model", retries=2, retry_delay_seconds=5, persist_result=False)
def register_reward_model(params: dict, root: str, reward_run_id: str, summary: dict,
                          lineage: dict[str, str]) -> str:
    """Register the reward model logged under the reward stage run as a model version."""
    from paretoflow.registry import register_candidate
    from paretoflow.tracking import Tracker

    p = _params(params)
    tracker = Tracker(p.tracking, Path(root))
    metrics = {f"metric.{k}": f"{v:.6f}" for k, v in summary.get("metrics", {}).items()
               if isinstance(v, (int, float)) and k.startswith("test_")}
    return register_candidate(tracker, f"{p.tracking.registered_model}-reward", reward_run_id, "reward",
                              {**lineage, **metrics})
