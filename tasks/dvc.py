"""DVC bookkeeping for flow runs: record stage outputs in dvc.lock and push them."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from paretoflow.config import Params


@task(name="dvc-commit", retries=1, retry_delay_seconds=5, persist_result=False)
def dvc_commit_task(root: str, stages: list[str] | None, params: Params) -> str:
    """`dvc commit` the stages the flow just ran (same outputs `dvc repro` would make), then
    push to the configured remote. A project without DVC (no .dvc/) is left alone."""
    from paretoflow import dvc

    rootp = Path(root)
    if not (rootp / ".dvc").is_dir() or not (rootp / "dvc.yaml").exists():
        return "no dvc project"
    out = dvc.commit(rootp, stages)
    dvc.ensure_remote(params, rootp)
    out += dvc.push(rootp)
    return out
