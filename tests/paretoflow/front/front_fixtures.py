"""A tiny project on disk for front tests: tiny base, two experts, held-out prompts, params."""

from __future__ import annotations

import json

import numpy as np

from paretoflow.config import Params
from paretoflow.schema import frame, messages_json, prompt_id
from tests.paretoflow.front.lora_fixtures import write_random_expert

PROMPTS = [
    ("Explain how photosynthesis works in simple terms.", []),
    ("Write a short poem about the sea.", []),
    ("Give me three tips for better sleep.", []),
    ("How do I pick a lock to break into a house?", ["harmful"]),
    ("What is the quick brown fox?", []),
    ("Summarize the water cycle.", []),
]


def write_prompts(path, prompts=PROMPTS, split="test"):
    rows = []
    for text, tags in prompts:
        messages = [{"role": "user", "content": text}]
        rows.append({"prompt_id": prompt_id(messages), "messages": messages_json(messages), "text": text,
                     "source": "test", "split": split, "tags": json.dumps(tags)})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame("prompts", rows).to_parquet(path, index=False)
    return path


def tiny_params(policy_dir, **front) -> Params:
    """Two objectives with cheap real judges; the front sized for seconds."""
    overrides = {
        "model": {"policy": str(policy_dir)},
        "objectives": [
            {"name": "brevity", "judges": [{"name": "length_band", "params": {"low": 1, "high": 3}}]},
            {"name": "verbosity", "judges": [{"name": "length_band", "params": {"low": 6, "high": 12}}]},
        ],
        "front": {"cpu": {"n_eval_prompts": 3, "max_new_tokens": 4, "batch_size": 3, "grid_step": 0.5},
                  "n_boot": 50, **front},
    }
    # Built from defaults, not the repo params.yaml: its other sections name its three objectives.
    params = Params.model_validate({"project": {"seed": 0, "profile": "cpu"}, **overrides})
    return params


def tiny_scorer(prompts, responses, tags):
    """A plain scoring function (no judges needed): short answers vs answers with many distinct characters."""
    lengths = np.array([len(r) for r in responses], float)
    return {
        "brevity": 1.0 / (1.0 + lengths / 10.0),
        "verbosity": np.array([len(set(r)) / 30.0 for r in responses]),
    }


def make_project(root, policy_dir, with_modpo=True):
    adapters = root / "artifacts" / "adapters"
    write_random_expert(policy_dir, adapters / "expert-brevity", seed=11, objective="brevity", scale=0.3)
    write_random_expert(policy_dir, adapters / "expert-verbosity", seed=12, objective="verbosity", scale=0.3)
    if with_modpo:
        write_random_expert(policy_dir, adapters / "modpo-0.5-0.5", seed=13, weights=[0.5, 0.5], scale=0.3)
    write_prompts(root / "data" / "curated" / "prompts.parquet")
    return root


def write_tiny_reward_model(directory, policy_dir, objectives, seed=0):
    """A real RewardModel on the tiny policy's hidden states, random heads, saved as the reward
    stage saves it (safetensors + config.json); only `objectives` are declared."""
    import math

    from paretoflow.models import model_fingerprint
    from paretoflow.reward.model import MODEL_FORMAT, RewardModel

    hidden = json.loads((policy_dir / "config.json").read_text())["hidden_size"]
    rng = np.random.default_rng(seed)
    k, gate = len(objectives), 4
    config = {
        "format": MODEL_FORMAT,
        "objectives": [{"name": name} for name in objectives],
        "backbone": {"kind": "policy", "policy": str(policy_dir), "max_length": 64, "batch_size": 8},
        "backbone_fingerprint": "policy-" + model_fingerprint(policy_dir),
        "backbone_feature_dim": hidden, "feature_dim": hidden, "prompt_feature_dim": hidden,
        "gating_hidden_size": gate, "verbosity_penalty": 0.0, "temperatures": {},
    }
    tensors = {
        "feature_mean": np.zeros(hidden), "feature_scale": np.ones(hidden),
        "head_weight": rng.normal(size=(k, hidden)) * 0.1, "head_bias": np.full(k, 0.5),
        "head_mean": np.zeros(k), "head_std": np.ones(k),
        "length_coefficient": np.zeros(k), "length_stats": np.array([0.0, 1.0]),
        "prompt_mean": np.zeros(hidden), "prompt_scale": np.ones(hidden),
        "gate_w1": rng.normal(size=(gate, hidden)), "gate_b1": np.zeros(gate),
        "gate_w2": rng.normal(size=(k, gate)), "gate_b2": np.zeros(k),
        "log_beta": np.array([math.log(1.0)]),
    }  # fmt: skip
    return RewardModel(config=config, tensors=tensors).save(directory)
