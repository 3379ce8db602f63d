"""MLflow model registry moves: register or reuse a candidate, move champion/previous/challenger,
roll back, block and unblock versions.

MLflow aliases are last-writer-wins upserts with no compare-and-set, and moving two
aliases is not atomic (docs/measurements.md). Every move therefore runs inside
`registry_lock(params, root)`:

- with a lock engine installed (`set_lock_factory`; the `paretoflow` command and the flows
  install tasks/locks.py when `PREFECT_API_URL` is set): a Prefect **global concurrency
  limit** of one slot named after the registered model. The Prefect server grants slots atomically, so
  the exclusion holds across processes, checkouts and machines that share the server;
  slots are leased (renewed while held), so a holder killed with -9 frees the slot when
  its lease expires instead of wedging every later promotion.
- without one (a server-less local run): a file lock beside the tracking store
  (`promote.lock_file`), which excludes the processes of this checkout only.

Inside the lock a move is: read the aliases (an error other than "not found" fails
closed: a transient outage must not read as "no champion"), check them against what the
decision compared with, move, re-read and verify.

History: the registered model's tag `paretoflow.champion_history` lists the versions that
held `champion`, oldest first; `rollback` walks it back past blocked versions, so it goes
back more than one step. A rolled-back version is tagged `paretoflow.blocked` and no
promotion moves it to champion again until a person runs `paretoflow unblock VERSION`.

An unchanged candidate is not registered again: versions carry `paretoflow.candidate_key`
(a hash of the recipe and the adapter files, see promote.candidate_key) and a candidate
with a known key reuses that version.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paretoflow.promotion import Decision

log = logging.getLogger(__name__)

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"
KEY_TAG = "paretoflow.candidate_key"
BLOCK_TAG = "paretoflow.blocked"
HISTORY_TAG = "paretoflow.champion_history"
# Versions kept in the history tag: ~7 characters each, well under MLflow's tag value limit.
HISTORY_LENGTH = 200

_held = threading.local()   # names of the registered models whose lock this thread holds


class RegistryUnavailable(RuntimeError):
    """The registry could not be read: a promotion must stop, not assume "no champion"."""


class ChampionChanged(RuntimeError):
    """The champion moved between the comparison and the move (someone bypassed the lock)."""


class RegistryInconsistent(RuntimeError):
    """After a move, the aliases are not what the move set."""


@dataclass
class PromotionOutcome:
    version: str
    alias: str            # champion or challenger
    previous: str | None  # the version that lost the champion alias, if any
    reasons: list[str]
    moved: bool = False   # whether this promotion moved the champion alias


# ------------------------------------------------------------------ the lock

# A lock factory: (registered model, timeout) → a context manager that holds the registry's
# exclusion, with a label naming the engine; or None when it does not apply (no server),
# and the file lock is used. The library knows no lock engine beyond the file lock; the
# orchestration layer installs one (tasks/locks.py: a Prefect global concurrency limit).
LockFactory = Callable[[str, float], "tuple[contextlib.AbstractContextManager, str] | None"]
_lock_factory: LockFactory | None = None


def set_lock_factory(factory: LockFactory | None) -> LockFactory | None:
    """Install the lock engine of registry moves (None: file locks only); returns the old one."""
    global _lock_factory
    old, _lock_factory = _lock_factory, factory
    return old


@contextlib.contextmanager
def registry_lock(params, root: str | Path, timeout_s: float | None = None) -> Iterator[str]:
    """Hold the registry's mutual exclusion for `params.tracking.registered_model`.

    Yields a description of the engine ("prefect:<limit>" or "file:<path>"). Re-entrant
    within one thread (the CLI and the flow may both wrap a library call that takes it).
    """
    name = params.tracking.registered_model
    timeout = params.promote.lock_timeout_s if timeout_s is None else timeout_s
    held = getattr(_held, "names", None)
    if held is None:
        held = _held.names = {}
    if name in held:
        yield held[name]
        return
    chosen = _lock_factory(name, timeout) if _lock_factory is not None else None
    if chosen is not None:
        engine, label = chosen
    else:
        if params.tracking.tracking_uri.startswith(("http://", "https://")):
            log.warning("registry lock: no lock server (PREFECT_API_URL), so the file lock excludes promotions "
                        "of this checkout only, not other machines on %s", params.tracking.tracking_uri)
        engine = _file_lock(Path(root).resolve() / params.promote.lock_file, timeout)
        label = f"file:{Path(root).resolve() / params.promote.lock_file}"
    with engine:
        held[name] = label
        try:
            yield label
        finally:
            held.pop(name, None)


def holds_lock(registered_model: str) -> bool:
    return registered_model in (getattr(_held, "names", None) or {})


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path), timeout=timeout):
        yield


def _require_lock(name: str) -> None:
    if not holds_lock(name):
        raise RuntimeError(f"registry moves of {name!r} must run inside registry_lock(params, root)")


# ------------------------------------------------------------------ reads (fail closed)

def _client(tracker: Any):
    """A Tracker or a bare MlflowClient."""
    return getattr(tracker, "client", tracker)


def _not_found(exc: Exception) -> bool:
    return getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"


def read_model(tracker, name: str) -> tuple[dict[str, str], dict[str, str]]:
    """(aliases → version, registered-model tags) in one read; empty when the model does not
    exist yet. Any other error raises RegistryUnavailable."""
    from mlflow.exceptions import MlflowException

    try:
        model = _client(tracker).get_registered_model(name)
    except MlflowException as exc:
        if _not_found(exc):
            return {}, {}
        raise RegistryUnavailable(f"cannot read registered model {name!r}: {exc}") from exc
    except Exception as exc:  # connection errors from the REST client, sqlite lock timeouts
        raise RegistryUnavailable(f"cannot read registered model {name!r}: {exc}") from exc
    return {a: str(v) for a, v in (model.aliases or {}).items()}, dict(model.tags or {})


def _version_tags(tracker, name: str, version: str) -> dict[str, str]:
    try:
        return dict(_client(tracker).get_model_version(name, version).tags)
    except Exception as exc:  # MlflowException, connection errors: fail closed
        raise RegistryUnavailable(f"cannot read version {version} of {name!r}: {exc}") from exc


def champion_objectives(tracker, name: str) -> tuple[str | None, dict[str, float]]:
    """(version, objective values recorded on it) of the current champion."""
    version = read_model(tracker, name)[0].get(CHAMPION)
    if version is None:
        return None, {}
    tags = _version_tags(tracker, name, version)
    return version, {k.split(".", 1)[1]: float(v) for k, v in tags.items() if k.startswith("objective.")}


def blocked_reason(tracker, name: str, version: str) -> str | None:
    return _version_tags(tracker, name, version).get(BLOCK_TAG)


def champion_history(tracker, name: str) -> list[str]:
    """Versions that held `champion`, oldest first, ending with the current champion."""
    aliases, tags = read_model(tracker, name)
    return _history(aliases, tags)


def _history(aliases: dict[str, str], tags: dict[str, str]) -> list[str]:
    history = [str(v) for v in json.loads(tags.get(HISTORY_TAG) or "[]")]
    champion = aliases.get(CHAMPION)
    # A champion set by hand (or a move that died before the history write) still counts.
    if champion is not None and (not history or history[-1] != champion):
        history.append(champion)
    return history


# ------------------------------------------------------------------ registration

def find_version(tracker, name: str, key: str) -> str | None:
    """The version registered for this candidate key, if any (the oldest, if several)."""
    if not re.fullmatch(r"[0-9a-f]+", key):
        raise ValueError(f"candidate key must be hex, got {key!r}")
    return find_tagged_version(tracker, name, KEY_TAG, key)


def find_tagged_version(tracker, name: str, tag: str, value: str) -> str | None:
    """The oldest version of `name` whose tag `tag` is `value` (word characters, dots, dashes)."""
    from mlflow.exceptions import MlflowException

    if not re.fullmatch(r"[\w.-]+", value) or not re.fullmatch(r"[\w.-]+", tag):
        raise ValueError(f"tag and value must be plain words, got {tag!r}={value!r}")
    try:
        found = _client(tracker).search_model_versions(f"name = '{_quote(name)}' and tags.`{tag}` = '{value}'")
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise RegistryUnavailable(f"cannot search versions of {name!r}: {exc}") from exc
    versions = sorted(int(v.version) for v in found)
    return str(versions[0]) if versions else None


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def register_candidate(tracker, name: str, run_id: str, artifact_path: str, tags: dict[str, str],
                       key: str | None = None) -> str:
    """Register `runs:/run_id/artifact_path` as a new version (tagged with `key` if given)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracker)
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if getattr(exc, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
            raise
    all_tags = {**tags, **({KEY_TAG: key} if key else {})}
    mv = client.create_model_version(name, source=f"runs:/{run_id}/{artifact_path}", run_id=run_id,
                                     tags=all_tags, await_creation_for=0)
    return str(mv.version)


# ------------------------------------------------------------------ moves (under the lock)

def apply_decision(tracker, name: str, version: str, decision: Decision,
                   compared_champion: str | None) -> PromotionOutcome:
    """Move aliases for a decided version: check, move, verify. Champion only if the gates
    passed, the version is not blocked, and the champion is still the one compared
    against (else ChampionChanged, and nothing moved). Must run inside registry_lock."""
    _require_lock(name)
    client = _client(tracker)
    aliases, model_tags = read_model(tracker, name)
    current = aliases.get(CHAMPION)
    if current == version:
        # An unchanged candidate that is already champion: nothing moves, whatever tonight's
        # gates say (its gate tags stay those it was promoted with).
        return PromotionOutcome(version, CHAMPION, aliases.get(PREVIOUS), decision.reasons, moved=False)
    for gate in decision.gates:
        client.set_model_version_tag(name, version, f"gate.{gate.name}",
                                     ("pass: " if gate.passed else "FAIL: ") + gate.reason[:4900])
    reasons = list(decision.reasons)
    blocked = blocked_reason(tracker, name, version)
    if blocked:
        reasons.append(f"rolled_back: version {version} is blocked ({blocked}); "
                       f"`paretoflow unblock {version}` clears it")
    if reasons:
        client.set_registered_model_alias(name, CHALLENGER, version)
        if not blocked:   # a blocked version keeps promotion=rolled_back
            client.set_model_version_tag(name, version, "promotion", "rejected")
        return PromotionOutcome(version, CHALLENGER, None, reasons)
    if current != compared_champion:
        raise ChampionChanged(f"champion of {name} moved from {compared_champion} to {current} during this "
                              "promotion; rerun the promotion against the new champion")
    history = _history(aliases, model_tags)
    _move_champion(client, name, version, current, history + [version])
    client.set_model_version_tag(name, version, "promotion", "champion")
    if current is not None:
        client.set_model_version_tag(name, current, "promotion", "replaced")
    client.set_model_version_tag(name, version, "paretoflow.promoted_at", _now())
    _verify(tracker, name, {CHAMPION: version, PREVIOUS: current})
    return PromotionOutcome(version, CHAMPION, current, [], moved=True)


def _move_champion(client, name: str, version: str, previous: str | None, history: list[str]) -> None:
    # The champion alias first: one upsert, what servers load. The history tag and the
    # `previous` alias follow; a reader reconciles a history that lags the alias (_history).
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-HISTORY_LENGTH:]))
    if previous is not None:
        client.set_registered_model_alias(name, PREVIOUS, previous)
    else:
        _delete_alias(client, name, PREVIOUS)


def _delete_alias(client, name: str, alias: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.delete_registered_model_alias(name, alias)
    except MlflowException as exc:
        if getattr(exc, "error_code", None) not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise


def _verify(tracker, name: str, expected: dict[str, str | None]) -> None:
    aliases, _ = read_model(tracker, name)
    wrong = {a: (v, aliases.get(a)) for a, v in expected.items() if aliases.get(a) != v}
    if wrong:
        raise RegistryInconsistent(
            f"after moving aliases of {name}: " + ", ".join(f"{a} is {got}, expected {want}"
                                                            for a, (want, got) in wrong.items())
            + " (a move bypassed registry_lock?)")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _who() -> str:
    try:
        return os.environ.get("PARETOFLOW_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def rollback(tracker, name: str, reason: str = "") -> tuple[str, str]:
    """champion ← the latest earlier champion that is not blocked. The demoted version is
    blocked from promotion until `unblock`. Returns (demoted, restored). Under the lock."""
    _require_lock(name)
    client = _client(tracker)
    aliases, tags = read_model(tracker, name)
    current = aliases.get(CHAMPION)
    if current is None:
        raise ValueError(f"cannot roll back {name}: it has no champion")
    history = _history(aliases, tags)
    earlier = [v for v in history[:-1] if v != current]
    target = next((v for v in reversed(earlier) if not blocked_reason(tracker, name, v)), None)
    if target is None:
        raise ValueError(f"cannot roll back {name}: no earlier champion that is not blocked "
                         f"(history {history}, champion {current})")
    # Block first: if the move below dies, the demoted version still cannot be re-promoted.
    note = f"rolled back from champion at {_now()} by {_who()}; champion restored to {target}"
    client.set_model_version_tag(name, current, BLOCK_TAG, note + (f": {reason}" if reason else ""))
    client.set_model_version_tag(name, current, "promotion", "rolled_back")
    kept = history[: len(history) - 1 - history[::-1].index(target)]   # up to the last `target`
    previous = next((v for v in reversed(kept) if v != target and not blocked_reason(tracker, name, v)), None)
    _move_champion(client, name, target, previous, kept + [target])
    client.set_model_version_tag(name, target, "promotion", "champion")
    _verify(tracker, name, {CHAMPION: target, PREVIOUS: previous})
    return current, target


def unblock(tracker, name: str, version: str) -> str:
    """A person clears a rollback block; the version may be promoted again. Under the lock.
    Returns the block note that was cleared."""
    _require_lock(name)
    note = blocked_reason(tracker, name, str(version))
    if not note:
        raise ValueError(f"version {version} of {name} is not blocked")
    client = _client(tracker)
    client.delete_model_version_tag(name, str(version), BLOCK_TAG)
    client.set_model_version_tag(name, str(version), "paretoflow.unblocked", f"{_now()} by {_who()} (was: {note})"[:4900])
    return note
