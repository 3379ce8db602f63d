"""The nightly pipeline: curate → validate → pairs → reward model → experts and MODPO
→ merged Pareto front → gated promotion, with one MLflow parent run and lineage tags.

Run it locally with no server (`python -m flows.nightly`, what `make run` does), or
serve it against a Prefect server (`paretoflow serve`, see flows/serve.py). Each stage
section of params.yaml is a typed flow parameter, so the Prefect UI shows a form.
"""

from __future__ import annotations

import sys
from pathlib import Path

from filelock import FileLock
from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from paretoflow.config import (
    AlignConfig,
    CurateConfig,
    FrontConfig,
    ModelConfig,
    Objective,
    PairsConfig,
    Params,
    ProjectConfig,
    PromoteConfig,
    RewardConfig,
    TrackingConfig,
    ValidateConfig,
    load_params,
)
from tasks.common import outputs_present, stage_io
from tasks.dvc import dvc_commit_task
from tasks.stages import (
    align_task,
    curate_task,
    front_task,
    log_front_candidates,
    log_stage,
    pairs_task,
    register_reward_model,
    promote_task,
    reward_task,
    validate_task,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = load_params(REPO_ROOT / "params.yaml")


def adapter_jobs(params: Params) -> list[dict]:
    """One DPO expert per objective, then one MODPO policy per configured weight vector."""
    from paretoflow.align import adapter_name

    jobs = [{"adapter": adapter_name(objective=o), "objective": o} for o in params.objective_names]
    jobs += [{"adapter": adapter_name(weights=w), "weights": list(w)} for w in params.align.modpo_weights]
    return jobs


@flow(name="paretoflow-nightly", log_prints=True)
def nightly(
    root: str = str(REPO_ROOT),
    project: ProjectConfig = DEFAULTS.project,
    model: ModelConfig = DEFAULTS.model,
    objectives: list[Objective] = DEFAULTS.objectives,
    curate: CurateConfig = DEFAULTS.curate,
    validation: ValidateConfig = DEFAULTS.validate_,
    pairs: PairsConfig = DEFAULTS.pairs,
    reward: RewardConfig = DEFAULTS.reward,
    align: AlignConfig = DEFAULTS.align,
    front: FrontConfig = DEFAULTS.front,
    promote: PromoteConfig = DEFAULTS.promote,
    tracking: TrackingConfig = DEFAULTS.tracking,
) -> dict:
    from paretoflow.tracking import Tracker, lineage_tags

    params = Params.model_validate({
        "project": project, "model": model, "objectives": objectives, "curate": curate,
        "validate": validation, "pairs": pairs, "reward": reward, "align": align, "front": front,
        "promote": promote, "tracking": tracking, "dvc": DEFAULTS.dvc,
    })
    rootp = Path(root).resolve()
    p = params.model_dump(mode="json", by_alias=True)
    # A local run holds the project lock: a second run on this checkout waits (DVC and the
    # stage outputs are not safe to share). Deployments add a Prefect concurrency limit.
    with FileLock(str(rootp / ".paretoflow.lock")):
        # Fails here, before any training, when the tracking server is unreachable.
        tracker = Tracker(params.tracking, rootp)
        run_tags = {"paretoflow.flow_run_id": str(flow_run.get_id() or "local")}
        parent = tracker.start_run("nightly", tags=run_tags)
        try:
            result = _pipeline(params, p, str(rootp), tracker, parent)
        except BaseException:
            tracker.end_run(parent, "FAILED")
            raise
        tracker.end_run(parent)
    return result


def _pipeline(params: Params, p: dict, root: str, tracker, parent: str) -> dict:
    from paretoflow.tracking import lineage_tags

    summaries: list[dict] = []

    def cached(task_fn, stage, *args, **kwargs):
        # A stage whose outputs were deleted must recompute even when its inputs match.
        fresh = not outputs_present(params, Path(root), stage, kwargs.get("adapter"))
        return task_fn.with_options(refresh_cache=fresh)(*args, **kwargs)

    def record(stage, summary, artifacts, **kw):
        summaries.append(summary)
        io = stage_io(params, "align" if stage.startswith(("expert-", "modpo-")) else stage, kw.get("adapter"))
        kw.pop("adapter", None)
        return log_stage(p, root, parent, stage, summary, lineage, artifacts, list(io.sections), **kw)

    curated = cached(curate_task, "curate", p, root)
    validation = validate_task(p, root)      # raises ValidationFailed: the flow stops here
    dvc_commit_task(root, ["curate", "validate"], p)
    lineage = lineage_tags(params, Path(root), str(flow_run.get_id() or "local"))
    tracker.set_tags(parent, lineage)
    record("curate", curated, [f"{params.curate.out_dir}/report.json", f"{params.curate.out_dir}/quarantine.parquet"])
    record("validate", validation, [params.validate_.docs_dir])

    pairs = cached(pairs_task, "pairs", p, root)
    record("pairs", pairs, ["data/pairs/report.json"])
    reward = cached(reward_task, "reward", p, root)
    reward_run = record("reward", reward, ["artifacts/reward"])
    register_reward_model(p, root, reward_run, reward, lineage)

    adapters = {}
    for job in adapter_jobs(params):
        summary = cached(align_task, "align", p, root, **job)
        adapters[job["adapter"]] = summary
        tags = {"paretoflow.objective": job.get("objective", ""), "paretoflow.weights": str(job.get("weights", ""))}
        record(job["adapter"], summary, [], adapter=job["adapter"], tags=tags,
               adapter_dir=f"{params.align.out_dir}/{job['adapter']}")

    front = cached(front_task, "front", p, root)
    front_run = record("front", front, ["artifacts/front"])
    log_front_candidates(p, root, front_run, front["records"], lineage)
    dvc_commit_task(root, None, p)
    promotion = promote_task(p, root, parent, bool(validation.get("success")), lineage)

    summaries.append(promotion)
    _prefect_artifacts(params, front, promotion)
    return {"front": front, "promotion": promotion, "parent_run_id": parent, "tracking_uri": tracker.uri,
            "stage_summaries": summaries}


def _prefect_artifacts(params: Params, front: dict, promotion: dict) -> None:
    rows = [
        {"candidate": c["name"], "kind": c["kind"], "non_dominated": c["non_dominated"],
         **{k: round(v, 4) for k, v in c["objectives"].items()}}
        for c in front["records"]
    ]
    create_table_artifact(rows, key="front-candidates", description="Every evaluated candidate")
    ref = ", ".join(f"{k}={v}" for k, v in front["reference_point"].items())
    lines = ["# paretoflow nightly", "", f"Hypervolume {front['hypervolume']:.4f} (reference point {ref})", "",
             "| candidate | non-dominated | " + " | ".join(params.objective_names) + " |",
             "|---|---|" + "---|" * len(params.objective_names)]
    for r in rows:
        lines.append(f"| {r['candidate']} | {r['non_dominated']} | "
                     + " | ".join(str(r.get(o)) for o in params.objective_names) + " |")
    lines += ["", "## Promotion", "", f"- candidate: {promotion.get('candidate')}",
              f"- version: {promotion.get('version')} → alias `{promotion.get('alias')}`"]
    lines += [f"- {r}" for r in promotion.get("reasons", [])]
    create_markdown_artifact("\n".join(lines), key="nightly-summary", description="Front and promotion")


def main() -> int:
    import time

    started = time.perf_counter()
    result = nightly()
    wall = time.perf_counter() - started
    library = sum(s.get("library_seconds", 0.0) for s in result["stage_summaries"])
    front, promotion = result["front"], result["promotion"]
    print("\n=== paretoflow nightly: done ===")
    print(f"front plot:      {front['front_png']}")
    print(f"front table:     {front['front_json']}")
    print(f"promotion:       {promotion.get('candidate')} → version {promotion.get('version')} "
          f"({promotion.get('alias')})")
    for reason in promotion.get("reasons", []):
        print(f"  gate: {reason}")
    print(f"MLflow UI:       .venv/bin/mlflow ui --backend-store-uri {result['tracking_uri']} --host 127.0.0.1")
    print(f"wall time:       {wall:.0f} s, of which stage work {library:.0f} s; Prefect + MLflow + DVC "
          f"overhead {wall - library:.0f} s ({100 * (wall - library) / wall:.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
