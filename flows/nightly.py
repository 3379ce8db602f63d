"""The nightly pipeline: curate → validate → reward model (human data) → on-policy pairs
(judged by the reward model and rules) → experts and MODPO → merged Pareto front → gated
promotion, with one MLflow parent run and lineage tags.

Run it locally with no server (`python -m flows.nightly` or `paretoflow [--params F] run`,
what `make run` does), or serve it against a Prefect server (`paretoflow serve`, see
flows/serve.py). Each stage section of params.yaml is a typed flow parameter, so the
Prefect UI shows a form. The stages, their inputs, outputs and cache keys are declared
once in `paretoflow/stages/` (registry: `paretoflow.pipeline`); this module only says in which order they run.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock
from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from paretoflow.config import (
    AlignConfig,
    CurateConfig,
    DvcConfig,
    FrontConfig,
    ModelConfig,
    Objective,
    PairsConfig,
    Params,
    ProjectConfig,
    PromoteConfig,
    RewardConfig,
    ScaleConfig,
    TrackingConfig,
    ValidateConfig,
    load_params,
)
from paretoflow.front.stage import ANSWERS_MARKDOWN
from paretoflow.pipeline import stage
from tasks.dvc import dvc_commit_task
from tasks.stages import (
    log_front_candidates,
    log_stage,
    prepare_policy,
    promote_task,
    register_reward_model,
    run_stage,
    run_stage_jobs,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = load_params(REPO_ROOT / "params.yaml")


def flow_parameters(params: Params) -> dict[str, Any]:
    """Params → the typed keyword arguments of `nightly` (one per section)."""
    return {
        "project": params.project, "model": params.model, "objectives": params.objectives,
        "curate": params.curate, "validation": params.validate_, "pairs": params.pairs,
        "reward": params.reward, "align": params.align, "front": params.front,
        "promote": params.promote, "tracking": params.tracking, "dvc": params.dvc, "scale": params.scale,
    }


def assemble(sections: dict[str, Any], base: Params = DEFAULTS) -> Params:
    """Typed flow parameters → one validated Params (sections not given come from `base`)."""
    values = {**flow_parameters(base), **sections}
    values["validate"] = values.pop("validation")
    values["schedule"] = base.schedule
    return Params.model_validate(values)


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
    dvc: DvcConfig = DEFAULTS.dvc,
    scale: ScaleConfig = DEFAULTS.scale,
) -> dict:
    params = assemble({"project": project, "model": model, "objectives": objectives, "curate": curate,
                       "validation": validation, "pairs": pairs, "reward": reward, "align": align,
                       "front": front, "promote": promote, "tracking": tracking, "dvc": dvc, "scale": scale})
    return run_pipeline(params, Path(root).resolve())


def run_pipeline(params: Params, root: Path) -> dict:
    """The pipeline under one MLflow parent run, holding the project lock."""
    from paretoflow.tracking import Tracker, sweep_zombie_runs
    from tasks.tracking import flow_run_is_alive

    # A local run holds the project lock: a second run on this checkout waits (DVC and the
    # stage outputs are not safe to share). Deployments add a Prefect concurrency limit.
    with FileLock(str(root / ".paretoflow.lock")):
        # Fails here, before any training, when the tracking server is unreachable.
        tracker = Tracker(params.tracking, root)
        # Runs of earlier flow runs that died (kill -9) are still RUNNING: mark them FAILED.
        sweep_zombie_runs(tracker, flow_run_is_alive, current_flow_run_id=_flow_run_id())
        parent = tracker.start_run("nightly", tags={"paretoflow.flow_run_id": _flow_run_id()})
        try:
            result = Pipeline(params, root, tracker, parent).run()
        except BaseException:
            tracker.end_run(parent, "FAILED")
            raise
        tracker.end_run(parent)
    return result


def _flow_run_id() -> str:
    return str(flow_run.get_id() or "local")


@dataclass
class Pipeline:
    """One pipeline run: each stage from the registry, logged as a nested MLflow run."""

    params: Params
    root: Path
    tracker: Any
    parent: str
    lineage: dict[str, str] = field(default_factory=dict)
    summaries: list[dict] = field(default_factory=list)
    # wall seconds of stages whose jobs ran side by side (their jobs' seconds overlap)
    parallel_seconds: dict[str, float] = field(default_factory=dict)

    def stage(self, name: str, job: dict | None = None, tags: dict[str, str] | None = None) -> tuple[dict, str]:
        summary = run_stage(name, self.params, str(self.root), job)
        return summary, self.log(summary, tags)

    def log(self, summary: dict, tags: dict[str, str] | None = None) -> str:
        self.summaries.append(summary)
        label = summary["job_name"] or summary["stage"]
        return log_stage(self.params, str(self.root), self.parent, label, summary, self.lineage, tags)

    def run(self) -> dict:
        from paretoflow.tracking import lineage_tags

        params, root = self.params, str(self.root)
        policy = prepare_policy.submit(params, root)   # in a thread, beside the data stages
        curated = run_stage("curate", params, root)
        validation = run_stage("validate", params, root)   # raises ValidationFailed: the flow stops
        dvc_commit_task(root, ["curate", "validate"], params)   # lineage below reads dvc.lock's data hash
        self.lineage = lineage_tags(params, self.root, _flow_run_id())
        self.tracker.set_tags(self.parent, self.lineage)
        self.log(curated)
        self.log(validation)

        # MiniLM features (cpu profile) need no policy: the reward model trains while the
        # policy is still being prepared; the policy backbone waits for it
        if stage("reward").policy_read(params):
            policy.result()
        reward, reward_run = self.stage("reward")
        register_reward_model(params, root, reward_run, reward, self.lineage)
        policy.result()
        self.stage("pairs")
        self.align()
        front, front_run = self.stage("front")
        log_front_candidates(params, root, front_run, front["records"], self.lineage)

        # the last commit (every stage's outputs) beside promotion, which reads none of DVC's files
        commit = dvc_commit_task.submit(root, None, params)
        promotion = promote_task(params, root, self.parent, self.lineage)
        commit.result()
        promotion.update(stage="promote", cached=False)
        self.summaries.append(promotion)
        _prefect_artifacts(params, front, promotion)
        return {"front": front, "promotion": promotion, "parent_run_id": self.parent,
                "tracking_uri": self.tracker.uri, "stage_summaries": self.summaries,
                "parallel_seconds": self.parallel_seconds}

    def align(self) -> None:
        """One adapter per job: in this process, or one flow run each on `scale.work_pool`
        (flows/fanout.py; the workers log their own MLflow runs)."""
        from flows.exchange import job_tags

        if not self.params.scale.work_pool:
            from paretoflow.align import job_lanes

            # `align.<profile>.lanes` adapters at a time in threads; logged in job order after
            jobs = stage("align").job_list(self.params)
            lanes = job_lanes(self.params)
            started = time.perf_counter()
            summaries = run_stage_jobs("align", self.params, str(self.root), jobs, lanes)
            if lanes > 1 and len(jobs) > 1:
                self.parallel_seconds["align"] = time.perf_counter() - started
            for job, summary in zip(jobs, summaries):
                self.log(summary, tags=job_tags(job))
            return
        from flows.fanout import align_on_pool

        for summary in align_on_pool(self.params, self.root, self.tracker, self.parent, self.lineage):
            if summary["logged"]:
                self.summaries.append(summary)
            else:
                self.log(summary, job_tags(summary["job"]))


def _prefect_artifacts(params: Params, front: dict, promotion: dict) -> None:
    from paretoflow.front.document import CandidateRecord

    records = [CandidateRecord(**c) for c in front["records"]]
    rows = [r.table_row() for r in records]
    create_table_artifact(rows, key="front-candidates",
                          description="Every evaluated candidate: means and paired differences vs the base [95% CI]")
    ref = ", ".join(f"{k}={v}" for k, v in front["reference_point"].items())
    low, high = front["hypervolume_ci"]
    mde = ", ".join(f"{k} {v:.3f}" for k, v in (front.get("mde") or {}).get("judges", {}).items())
    names = params.objective_names
    lines = ["# paretoflow nightly", "",
             f"Hypervolume {front['hypervolume']:.4f} [{low:.4f}, {high:.4f}] (reference point {ref})", "",
             f"Minimum detectable difference vs the base: {mde}", "",
             "| candidate | non-dominated | distinguishable | " + " | ".join(f"{n} vs base" for n in names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for row in rows:
        lines.append(f"| {row['candidate']} | {row['non_dominated']} | {row['distinguishable']} | "
                     + " | ".join(str(row.get(f"{n} vs base")) for n in names) + " |")
    lines += ["", "## Promotion", "", f"- candidate: {promotion.get('candidate')}",
              f"- version: {promotion.get('version')} → alias `{promotion.get('alias')}`"]
    lines += [f"- {r}" for r in promotion.get("reasons", [])]
    create_markdown_artifact("\n".join(lines), key="nightly-summary", description="Front and promotion")
    answers = Path(front["front_json"]).parent / ANSWERS_MARKDOWN
    if answers.is_file():
        create_markdown_artifact(answers.read_text(), key="front-answers",
                                 description="Every candidate's answers to the same front prompts")


def run_report(result: dict, wall: float) -> list[str]:
    """The closing summary: only work done in this run counts; cached stages say so."""
    done = [s for s in result["stage_summaries"] if not s.get("cached")]
    cached = [s for s in result["stage_summaries"] if s.get("cached")]
    parallel = result.get("parallel_seconds") or {}
    # a stage whose jobs ran side by side counts its wall time, not the sum of its jobs'
    work = sum(s.get("library_seconds", 0.0) for s in done if s["stage"] not in parallel) + sum(parallel.values())
    saved = sum(s.get("library_seconds", 0.0) for s in cached)
    front, promotion = result["front"], result["promotion"]
    lines = ["", "=== paretoflow nightly: done ===",
             f"front plot:      {front['front_png']}",
             f"front table:     {front['front_json']}",
             f"promotion:       {promotion.get('candidate')} → version {promotion.get('version')} "
             f"({promotion.get('alias')})"]
    lines += [f"  gate: {reason}" for reason in promotion.get("reasons", [])]
    lines.append(f"MLflow UI:       .venv/bin/mlflow ui --backend-store-uri {result['tracking_uri']} --host 127.0.0.1")
    lines.append("stages:          " + ", ".join(_stage_line(s) for s in result["stage_summaries"]))
    for name, seconds in parallel.items():
        lines.append(f"                 {name} jobs side by side: {seconds:.0f} s wall")
    lines.append(f"wall time:       {wall:.0f} s, of which stage work {work:.0f} s; Prefect + MLflow + DVC "
                 f"overhead {wall - work:.0f} s ({100 * (wall - work) / max(wall, 1e-9):.1f} %)")
    if cached:
        lines.append(f"from the cache:  {len(cached)} stages, {saved:.0f} s of earlier work not redone")
    return lines


def _stage_line(summary: dict) -> str:
    name = summary.get("job_name") or summary["stage"]
    return f"{name} cached" if summary.get("cached") else f"{name} {summary.get('library_seconds', 0.0):.0f} s"


def prepare(params_path: str | Path, root: str | Path | None = None) -> None:
    """Before the flow: Prefect's temporary server (when no PREFECT_API_URL is set) starts in
    a thread and migrates its database while this process warms up (flows/ephemeral.py)."""
    from flows.ephemeral import start_early

    params_path = Path(params_path).resolve()
    early = start_early()
    warm_up(load_params(params_path), Path(root).resolve() if root else params_path.parent)
    if early is not None:
        early.wait()


def warm_up(params: Params, root: Path) -> None:
    """What every run does first anyway, done while the temporary Prefect server starts
    (flows/ephemeral.py): import the stage libraries (torch, transformers, sentence-
    transformers, peft, pandas, pyarrow, MLflow: several seconds of one core) and create
    or open the MLflow store (a fresh SQLite store runs its migrations, ~5 s)."""
    import importlib

    for module in ("torch", "transformers", "sentence_transformers", "peft", "pandas", "pyarrow.parquet",
                   "mlflow", "great_expectations"):
        try:
            importlib.import_module(module)
        except ImportError:  # the stage that needs it says so, with its own message
            pass
    from paretoflow.tracking import Tracker

    Tracker(params.tracking, root)


def run_from_file(params_path: str | Path, root: str | Path | None = None) -> dict:
    """The flow with every section from one params file (what `paretoflow --params F run` does)."""
    params_path = Path(params_path).resolve()
    params = load_params(params_path)
    root = Path(root).resolve() if root else params_path.parent
    return nightly(root=str(root), **flow_parameters(params))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the nightly flow locally (no Prefect server needed).")
    parser.add_argument("--params", default=str(REPO_ROOT / "params.yaml"))
    parser.add_argument("--root", default=None, help="project root (default: the params file's folder)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    prepare(args.params, args.root)
    result = run_from_file(args.params, args.root)
    print("\n".join(run_report(result, time.perf_counter() - started)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
