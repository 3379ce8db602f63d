"""`paretoflow worker --gpus 0,1`: the worker's flow runs see only those GPUs."""

from __future__ import annotations

import pytest


def test_gpus_are_parsed_strictly():
    from flows.worker import parse_gpus

    assert parse_gpus("0,1") == "0,1" and parse_gpus(" 3 ") == "3"
    for bad in ("", "0,a", "0,0", "-1", "0;1"):
        with pytest.raises(ValueError, match="--gpus"):
            parse_gpus(bad)


def test_worker_starts_with_cuda_visible_devices_bound(monkeypatch, tmp_path):
    import flows.worker as worker
    from flows.cli import build_parser

    started = {}
    monkeypatch.setattr(worker.os, "execve", lambda path, argv, env: started.update(argv=argv, env=env))
    monkeypatch.setattr(worker, "worker_command", lambda *a: [__file__, "worker", "start"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    args = build_parser().parse_args(["--params", str(tmp_path / "none.yaml"), "worker", "--pool", "gpu",
                                      "--gpus", "2,3"])
    worker._handle(args)
    assert started["env"]["CUDA_VISIBLE_DEVICES"] == "2,3"
    args = build_parser().parse_args(["--params", str(tmp_path / "none.yaml"), "worker", "--pool", "gpu"])
    worker._handle(args)
    assert started["env"]["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"        # no --gpus: left as it was


def test_the_bound_env_reaches_the_flow_run_prefects_process_worker_starts(monkeypatch):
    """Prefect's own job configuration of a process-pool run, built in the worker's
    environment, carries the binding into the run's environment."""
    from uuid import uuid4

    from prefect.client.schemas.objects import FlowRun
    from prefect.workers.process import ProcessJobConfiguration

    from flows.worker import worker_env

    for key, value in worker_env("0,1", {}).items():
        monkeypatch.setenv(key, value)
    config = ProcessJobConfiguration(env={"OTHER": "x"})
    config.prepare_for_flow_run(FlowRun(flow_id=uuid4(), name="run"))
    assert config.env["CUDA_VISIBLE_DEVICES"] == "0,1" and config.env["OTHER"] == "x"
