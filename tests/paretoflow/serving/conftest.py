"""One tiny project with a registered candidate (exact merge 0.3/0.7), shared by the serving tests."""

from __future__ import annotations

import pytest

from tests.paretoflow.serving.fixtures import WEIGHTS, merge_candidate, register_tiny_candidate, tiny_registry


@pytest.fixture(scope="session")
def registered(tiny_policy_dir, tmp_path_factory):
    """(root, params, tracker, version); downloaded bases are cached under root/base-cache."""
    import os

    root = tmp_path_factory.mktemp("serving")
    old_cache = os.environ.get("PARETOFLOW_BASE_CACHE")
    os.environ["PARETOFLOW_BASE_CACHE"] = str(root / "base-cache")
    params, tracker = tiny_registry(root, tiny_policy_dir)
    version = register_tiny_candidate(params, tracker, root, tiny_policy_dir, merge_candidate(WEIGHTS))
    yield root, params, tracker, version
    if old_cache is None:
        os.environ.pop("PARETOFLOW_BASE_CACHE", None)
    else:
        os.environ["PARETOFLOW_BASE_CACHE"] = old_cache
