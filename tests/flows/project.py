"""Build a small, real paretoflow project in a folder: params, built-in prompts, a slice of
the shipped human preference data, DVC.

Used by the flow smoke test, the integration test and bench/overhead.py. `tiny=True`
swaps in a 2-layer llama and budgets that run the whole pipeline in about a minute;
`tiny=False` keeps the default model and the CPU profile from params.yaml.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _subset(src: Path, dst: Path, n: int) -> None:
    lines = src.read_text().splitlines()
    harmful = [line for line in lines if '"harmful"' in line]
    other = [line for line in lines if '"harmful"' not in line]
    take = other[: n - n // 4] + harmful[: n // 4]   # keep some prompts that should be refused
    dst.write_text("\n".join(take) + "\n")


def _slice_gz(src: Path, dst: Path, n: int) -> None:
    """The first n lines of a shipped .jsonl.gz (its rows are in no particular order)."""
    import gzip

    with gzip.open(src, "rt", encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(n)]
    with gzip.open(dst, "wt", encoding="utf-8") as out:
        out.writelines(lines)


def tiny_overrides(policy_dir: Path) -> dict:
    """Flow-parameter overrides (one dict per stage section) for the tiny pipeline."""
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    align = base["align"]
    align["modpo_weights"] = [[0.5, 0.5, 0.0]]
    align["cpu"] = {**align.get("cpu", {}), "max_steps": 2, "eval_steps": 1, "checkpoint_steps": 1,
                    "batch_size": 2, "eval_batch_size": 4, "max_val_pairs": 4, "max_length": 64,
                    "max_prompt_tokens": 32, "lora_r": 2, "lora_alpha": 4.0}
    front = base["front"]
    front["n_boot"] = 50
    front["cpu"] = {"n_eval_prompts": 4, "max_new_tokens": 6, "batch_size": 4, "grid_step": 0.5,
                    "max_prompt_tokens": 512}
    pairs = base["pairs"]
    pairs["min_margin"] = 0.0
    pairs["cpu"] = {"n_train_prompts": 8, "n_val_prompts": 4, "samples_per_prompt": 3,
                    "max_new_tokens": 12, "batch_size": 12, "max_prompt_tokens": 512}
    reward = base["reward"]
    reward.update({"gating_epochs": 20})
    reward["cpu"] = {"backbone": "policy", "max_length": 64, "batch_size": 16}
    # A random tiny model rarely stops before the token cap, so every answer has the same
    # length and the length judge alone ties everywhere; the profanity probability varies
    # continuously with the text and breaks those ties, so conciseness still gets pairs.
    objectives = base["objectives"]
    for objective in objectives:
        # A random tiny model writes no real answer: the answer gate would zero every sample
        # (tests/paretoflow/judges/test_answer.py tests the gates; the slow tier keeps them).
        objective["gates"] = []
        if objective["name"] == "conciseness":
            objective["judges"] = [{"name": "length_band", "weight": 0.5, "params": {"low": 2, "high": 8}},
                                   {"name": "profanity", "weight": 0.5}]
    return {
        "objectives": objectives,
        "model": {"policy": str(policy_dir), "cache_dir": ".cache/models"},
        "pairs": pairs, "reward": reward, "align": align, "front": front,
        # A tiny model scores near-randomly: promotion must still decide, not crash.
        "promote": {**base["promote"]},
    }


def make_project(work: Path, tiny: bool = True, n_train: int = 40, n_eval: int = 16,
                 tracking_uri: str | None = None, n_human: int = 60) -> tuple[Path, dict]:
    """Create `work/project` and return (root, flow-parameter overrides)."""
    root = work / "project"
    (root / "data/raw/prompts").mkdir(parents=True)
    _subset(REPO / "data/raw/prompts/train.jsonl", root / "data/raw/prompts/train.jsonl", n_train)
    _subset(REPO / "data/raw/prompts/eval.jsonl", root / "data/raw/prompts/eval.jsonl", n_eval)
    # dvc.yaml names library files as stage deps; the project carries a copy of them.
    shutil.copytree(REPO / "paretoflow", root / "paretoflow",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    overrides: dict = {}
    if tiny:
        from paretoflow.models import build_tiny_policy

        overrides = tiny_overrides(build_tiny_policy(work / "tiny_policy", seed=0))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.update(overrides)
    # The project carries a slice of each shipped human-data source at the same path (the
    # reward model trains on it); validate asks for as many pairs as a slice can give.
    for source in params["curate"]["sources"]:
        if not source["path"].startswith("data/raw/prompts/"):
            source.pop("max_prompts", None)
            _slice_gz(REPO / source["path"], root / source["path"], n_human)
    params["validate"]["min_pairs_per_objective_split"] = 0
    overrides.update(curate=params["curate"], validation=params["validate"])
    if tracking_uri:
        params["tracking"]["tracking_uri"] = tracking_uri
        overrides["tracking"] = params["tracking"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run([str(dvc), "init", "--no-scm", "-q"], cwd=root, check=True)
    subprocess.run([str(dvc), "config", "core.analytics", "false"], cwd=root, check=True)
    (root / "project.json").write_text(json.dumps({"tiny": tiny}))
    return root, overrides
