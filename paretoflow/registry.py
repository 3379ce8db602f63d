"""MLflow model registry moves: register a candidate, move champion/previous/challenger.

MLflow aliases are last-writer-wins upserts with no compare-and-set, and moving two
aliases is not atomic (shared STACK.md). Promotion therefore runs under a file lock
beside the tracking store and re-checks the champion it compared against:
read alias → verify unchanged → set previous, then champion → re-read. For a remote
tracking server shared by several machines, run promotions from one Prefect deployment
with a concurrency limit of 1 (flows/nightly.py) so the lock's scope holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from paretoflow.promotion import Decision
from paretoflow.tracking import Tracker

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"


class ChampionChanged(RuntimeError):
    """Another promotion moved the champion between our comparison and our move."""


@dataclass
class PromotionOutcome:
    version: str
    alias: str            # champion or challenger
    previous: str | None  # the version that lost the champion alias, if any
    reasons: list[str]


def _alias_version(tracker: Tracker, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return tracker.client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        return None


def champion_objectives(tracker: Tracker, name: str) -> tuple[str | None, dict[str, float]]:
    """(version, objective values recorded on it) of the current champion."""
    version = _alias_version(tracker, name, CHAMPION)
    if version is None:
        return None, {}
    mv = tracker.client.get_model_version(name, version)
    values = {k.split(".", 1)[1]: float(v) for k, v in mv.tags.items() if k.startswith("objective.")}
    return version, values


def register_candidate(tracker: Tracker, name: str, run_id: str, artifact_path: str,
                       tags: dict[str, str]) -> str:
    from mlflow.exceptions import MlflowException

    try:
        tracker.client.create_registered_model(name)
    except MlflowException:
        pass  # exists
    source = f"runs:/{run_id}/{artifact_path}"
    mv = tracker.client.create_model_version(name, source=source, run_id=run_id, tags=tags,
                                             await_creation_for=0)
    return mv.version


def apply_decision(tracker: Tracker, name: str, version: str, decision: Decision,
                   compared_champion: str | None, lock_path: Path) -> PromotionOutcome:
    """Move aliases for a decided version; champion only if the gates passed and nobody
    promoted in between (else ChampionChanged, and nothing moved)."""
    client = tracker.client
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path), timeout=120):
        for gate in decision.gates:
            client.set_model_version_tag(name, version, f"gate.{gate.name}",
                                         ("pass: " if gate.passed else "FAIL: ") + gate.reason[:4900])
        if not decision.passed:
            client.set_registered_model_alias(name, CHALLENGER, version)
            client.set_model_version_tag(name, version, "promotion", "rejected")
            return PromotionOutcome(version, CHALLENGER, None, decision.reasons)
        current = _alias_version(tracker, name, CHAMPION)
        if current != compared_champion:
            raise ChampionChanged(
                f"champion moved from {compared_champion} to {current} during this promotion; "
                "rerun the promotion against the new champion")
        if current is not None:
            client.set_registered_model_alias(name, PREVIOUS, current)
        client.set_registered_model_alias(name, CHAMPION, version)
        client.set_model_version_tag(name, version, "promotion", "champion")
        if _alias_version(tracker, name, CHAMPION) != version:
            raise ChampionChanged(f"champion alias of {name} is not {version} after the move")
        return PromotionOutcome(version, CHAMPION, current, [])


def rollback(tracker: Tracker, name: str, lock_path: Path) -> tuple[str, str]:
    """champion ← previous. Returns (demoted, restored). The demoted version keeps a tag."""
    client = tracker.client
    with FileLock(str(lock_path), timeout=120):
        current = _alias_version(tracker, name, CHAMPION)
        previous = _alias_version(tracker, name, PREVIOUS)
        if current is None or previous is None:
            raise ValueError(f"cannot roll back {name}: champion={current}, previous={previous}")
        client.set_registered_model_alias(name, CHAMPION, previous)
        client.delete_registered_model_alias(name, PREVIOUS)
        client.set_model_version_tag(name, current, "promotion", "rolled_back")
        return current, previous
