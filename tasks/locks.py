"""The registry lock's Prefect engine: a global concurrency limit of one slot per
registered model, installed into the library with `paretoflow.registry.set_lock_factory`.

The Prefect server grants slots atomically, so the exclusion holds across processes,
checkouts and machines that share the server; slots are leased (renewed while held), so a
holder killed with -9 frees the slot when its lease expires. Without PREFECT_API_URL the
factory declines and the library's file lock is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator

from paretoflow.registry import RegistryUnavailable, set_lock_factory

LOCK_PREFIX = "paretoflow-registry-"


def lock_name(registered_model: str) -> str:
    """Prefect limit names refuse `/ % & > <` (Prefect docs); other characters become `-`
    and a short hash keeps two model names that differ only there apart."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", registered_model)
    if safe != registered_model:
        safe += "-" + hashlib.sha256(registered_model.encode()).hexdigest()[:8]
    return LOCK_PREFIX + safe


def prefect_api_url() -> str | None:
    """The configured Prefect API, or None for a server-less (ephemeral) run."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def prefect_lock_factory(registered_model: str, timeout: float):
    """(lock, label) on a Prefect server; None without one (the file lock applies)."""
    if not prefect_api_url():
        return None
    return _prefect_lock(registered_model, timeout), f"prefect:{lock_name(registered_model)}"


def install_prefect_lock() -> None:
    """Make registry moves in this process take the Prefect limit when a server is configured."""
    set_lock_factory(prefect_lock_factory)


def ensure_prefect_limit(limit_name: str) -> None:
    """Create the one-slot limit if missing; refuse one that would not exclude (limit ≠ 1,
    inactive, or a rate limit): `concurrency(strict=True)` would then let two holders in."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(limit_name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit_name, limit=1))
            except ObjectAlreadyExists:
                pass   # created by a concurrent promoter: same settings
            limit = client.read_global_concurrency_limit_by_name(limit_name)
    if limit.limit != 1 or not limit.active or limit.slot_decay_per_second:
        raise RegistryUnavailable(
            f"Prefect concurrency limit {limit_name!r} must be active with 1 slot and no slot decay to "
            f"exclude registry moves; it has limit={limit.limit}, active={limit.active}, "
            f"slot_decay_per_second={limit.slot_decay_per_second} (fix it: prefect gcl update {limit_name} ...)")


@contextlib.contextmanager
def _prefect_lock(registered_model: str, timeout: float) -> Iterator[None]:
    from prefect.concurrency.sync import concurrency

    limit_name = lock_name(registered_model)
    ensure_prefect_limit(limit_name)
    # strict: a missing limit is an error, not a silent pass; a failed lease renewal
    # cancels the holder rather than letting a second promoter in beside it.
    with concurrency(limit_name, occupy=1, timeout_seconds=timeout, strict=True):
        yield
