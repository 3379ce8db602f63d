"""Shared fixtures: a tiny llama built from config (fast tier never loads the 135M model)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory) -> Path:
    """An HF folder with a 2-layer llama (hidden 64) and a locally trained BPE tokenizer."""
    from paretoflow.models import build_tiny_policy

    return build_tiny_policy(tmp_path_factory.mktemp("tiny_policy"), seed=0)


def rule_judges_only(objectives: list[dict]) -> list[dict]:
    """`objectives` (params.yaml's list) with the reward-model judge removed: tests that train
    no reward model under artifacts/ score with the rule judges (relevance where none is left).
    The `answer` gates go too: a tiny random model writes no real answer, so the gate would
    zero every sample and leave those tests nothing to pair (judges/test_answer.py and
    test_battery.py test the gates)."""
    out = []
    for objective in objectives:
        rules = [j for j in objective["judges"] if j["name"] != "reward_model"]
        out.append({**objective, "judges": rules or [{"name": "relevance", "weight": 1.0}], "gates": []})
    return out


def rules_overrides() -> dict:
    """load_params overrides that put the project's objectives on rule judges only."""
    import yaml

    return {"objectives": rule_judges_only(yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["objectives"])}


@pytest.fixture(scope="session")
def params():
    from paretoflow.config import load_params

    return load_params(REPO_ROOT / "params.yaml")


@pytest.fixture
def one_torch_thread():
    """Tiny-model matmuls take microseconds: with 2 threads on a shared 2-core machine the
    thread hand-offs dominate (measured 0.6 s vs 4-12 s per tiny training run)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
