"""Integration: kill -9 during alignment, rerun → resumes from cached stages."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from paretoflow.io import files_hash
from tests.flows.project import REPO, make_project

pytestmark = pytest.mark.integration

RUNNER = """
import json, sys
from flows.nightly import nightly
overrides = json.load(open(sys.argv[2]))
result = nightly(root=sys.argv[1], **overrides)
print("PROMOTION", json.dumps(result["promotion"]))
"""


def _run(root, overrides_file, env, log):
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(root), str(overrides_file)], cwd=REPO, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def test_kill_during_align_then_rerun_completes_from_cache(tmp_path):
    root, overrides = make_project(tmp_path, tiny=True)
    overrides_file = tmp_path / "overrides.json"
    overrides_file.write_text(json.dumps(overrides))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": "",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    proc = _run(root, overrides_file, env, tmp_path / "run1.log")
    adapters = root / "artifacts/adapters"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if adapters.exists() and any(adapters.iterdir()):
            break
        time.sleep(0.2)
    assert proc.poll() is None, (tmp_path / "run1.log").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)        # kill -9 the flow mid-alignment
    proc.wait()
    curated_hash = files_hash([root / "data/curated" / f"{t}.parquet" for t in ("prompts", "responses", "ratings", "pairs")])
    pairs_hash = files_hash([root / "data/pairs"])

    proc = _run(root, overrides_file, env, tmp_path / "run2.log")
    assert proc.wait(timeout=900) == 0, (tmp_path / "run2.log").read_text()[-4000:]
    out = (tmp_path / "run2.log").read_text()
    promotion = json.loads(out.split("PROMOTION ", 1)[1].splitlines()[0])
    # earlier stages came from the cache (not recomputed) and the data hash is unchanged
    for stage in ("curate", "pairs", "reward"):
        assert re.search(rf"Task run '{stage}-\w+' - Finished in state Cached", out), stage
    assert files_hash([root / "data/curated" / f"{t}.parquet" for t in ("prompts", "responses", "ratings", "pairs")]) == curated_hash
    assert files_hash([root / "data/pairs"]) == pairs_hash
    assert (root / "artifacts/front/front.json").exists()

    from paretoflow.config import load_params
    from paretoflow.tracking import Tracker

    params = load_params(root / "params.yaml")
    tracker = Tracker(params.tracking, root)
    version = tracker.client.get_model_version_by_alias(params.tracking.registered_model, promotion["alias"])
    assert str(version.version) == promotion["version"]   # MLflow documents versions as str; sqlite gives int
    # the killed run left no registry version behind: exactly one was registered
    assert len(tracker.client.search_model_versions(f"name = '{params.tracking.registered_model}'")) == 1
