"""Integration: `mlflow models serve -m models:/m@champion --env-manager local` on a real
`mlflow server` answers POST /invocations with the exact merge for each request's weights.

The candidate is registered through a real tracking server (the base model too, as
`paretoflow-base`); the serving process gets only MLFLOW_TRACKING_URI and an empty base
cache, so everything it loads comes through MLflow. Greedy answers must equal
`paretoflow generate --weights` (paretoflow.front.generate_with_weights) for the same
weights, differ between the two weight vectors, and bad weights must be an HTTP 400.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request

import pytest

from tests.flows.servers import BIN, free_port, kill_tree, mlflow_server, process, wait_http
from tests.paretoflow.serving.fixtures import WEIGHTS, merge_candidate, register_tiny_candidate, tiny_registry

pytestmark = pytest.mark.integration

PROMPT = "Explain how photosynthesis works in simple terms."
TOKENS = 6


def _invoke(url: str, weights: list[float] | None) -> tuple[int, dict]:
    params = {"max_new_tokens": TOKENS, **({"weights": weights} if weights is not None else {})}
    body = json.dumps({"dataframe_records": [{"prompt": PROMPT}], "params": params}).encode()
    request = urllib.request.Request(url + "/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310 (loopback)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_models_serve_answers_each_request_with_its_weights(tmp_path, tiny_policy_dir):
    from paretoflow.front import generate_with_weights

    with mlflow_server(tmp_path) as tracking_url:
        root = tmp_path / "project"
        root.mkdir()
        params, tracker = tiny_registry(root, tiny_policy_dir, tracking_uri=tracking_url)
        version = register_tiny_candidate(params, tracker, root, tiny_policy_dir, merge_candidate(WEIGHTS))
        tracker.client.set_registered_model_alias("m", "champion", version)

        port = free_port()
        cmd = [str(BIN / "mlflow"), "models", "serve", "-m", "models:/m@champion", "--env-manager", "local",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        # `mlflow models serve` execs `uvicorn` from PATH: the venv's bin must be on it.
        env = {"MLFLOW_TRACKING_URI": tracking_url, "PARETOFLOW_BASE_CACHE": str(tmp_path / "serve-base-cache"),
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        log = tmp_path / "models-serve.log"
        with process(cmd, log, env=env) as proc:
            try:
                url = f"http://127.0.0.1:{port}"
                wait_http(url + "/ping", 240, proc, log)
                answers = {}
                for weights in ([1.0, 0.0], [0.0, 1.0]):
                    status, body = _invoke(url, weights)
                    assert status == 200, (body, log.read_text()[-3000:])
                    answers[tuple(weights)] = body["predictions"]
                    expected = generate_with_weights(params, weights, PROMPT, root, max_new_tokens=TOKENS)
                    assert body["predictions"] == [expected], weights
                assert answers[(1.0, 0.0)] != answers[(0.0, 1.0)]
                status, body = _invoke(url, [0.7, 0.7])
                assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", body
                assert "sum to 1" in body["message"]
            finally:
                kill_tree(proc.pid, signal.SIGTERM)   # uvicorn runs in a child process
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)  # noqa: S310
