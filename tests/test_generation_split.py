"""Integration: the pairs and front stages split their generation across two processes
(`accelerate launch`, CPU, gloo) and write what one process writes.

Every process plans the same batches (sorted by prompt length), answers every other one
with that batch's own seed, and the answers are gathered (paretoflow/generation.py); the
main process alone judges and writes. So sampled pairs and greedy front answers are equal
token for token, not to a tolerance. Both runs use one thread per process
(OMP_NUM_THREADS=1), as tests/test_multiprocess_training.py does, so the comparison is
about the split, not about a thread count changing float reductions. Each run has its own
root, so the front's generation cache cannot carry answers from one run to the other.

The stages are driven through the CLI exactly as a user runs them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
# Prompts of unequal length, so batches pad; 6 sampled (train/val) and 6 held out (test).
PAIRS_PROMPTS = [
    ("How do I bake bread?", "train"), ("Explain photosynthesis in simple terms, step by step.", "train"),
    ("Name a colour.", "train"), ("Write a short poem about the sea at night, with rhymes.", "train"),
    ("Give me three tips for better sleep.", "val"), ("What is the capital of France?", "val"),
]
FRONT_PROMPTS = [
    "Summarize the water cycle.", "What is the quick brown fox?", "Tell me a joke.",
    "Explain how a rainbow forms, in two sentences for a child.", "List three fruits.",
    "Why do cats purr when they are happy and also when they are hurt?",
]


def _write_prompts(path: Path) -> None:
    from paretoflow.schema import frame, messages_json, prompt_id

    rows = []
    for text, split in [*PAIRS_PROMPTS, *((t, "test") for t in FRONT_PROMPTS)]:
        messages = [{"role": "user", "content": text}]
        rows.append({"prompt_id": prompt_id(messages), "messages": messages_json(messages), "text": text,
                     "source": "test", "split": split, "tags": "[]"})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame("prompts", rows).to_parquet(path, index=False)


def _project(root: Path, policy: Path) -> tuple[Path, Path]:
    """A root with curated prompts and two experts; (pairs params file, front params file)."""
    from paretoflow.config import load_params
    from tests.conftest import rules_overrides
    from tests.paretoflow.front.front_fixtures import tiny_params
    from tests.paretoflow.front.lora_fixtures import write_random_expert

    _write_prompts(root / "data" / "curated" / "prompts.parquet")
    adapters = root / "artifacts" / "adapters"
    write_random_expert(policy, adapters / "expert-brevity", seed=11, objective="brevity", scale=0.3)
    write_random_expert(policy, adapters / "expert-verbosity", seed=12, objective="verbosity", scale=0.3)
    # 2 prompts x 3 samples per batch: 3 batches, process 0 samples two, process 1 one.
    pairs = load_params(REPO / "params.yaml", overrides={
        **rules_overrides(), "model": {"policy": str(policy)},
        "pairs": {"min_margin": 0.0, "cpu": {"n_train_prompts": 4, "n_val_prompts": 2, "samples_per_prompt": 3,
                                             "max_new_tokens": 8, "batch_size": 6}}})
    # 2 prompts per batch, 3 batches, for each of base + 3 lattice merges.
    front = tiny_params(policy, include_adapters=False)
    front.front.cpu.n_eval_prompts, front.front.cpu.batch_size, front.front.cpu.max_new_tokens = 6, 2, 6
    paths = root / "pairs.yaml", root / "front.yaml"
    for path, params in zip(paths, (pairs, front)):
        path.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    return paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(root: Path, params: Path, stage: str, processes: int, succeed: bool = True, timeout: int = 900) -> str:
    cli = ["-m", "paretoflow.cli", "--params", str(params), stage, "--root", str(root)]
    if processes == 1:
        cmd = [sys.executable, *cli]
    else:
        cmd = [str(Path(sys.executable).parent / "accelerate"), "launch",
               "--config_file", str(REPO / "configs/accelerate/cpu-2proc.yaml"),
               "--main_process_port", str(_free_port()), *cli]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    (root / f"{stage}.log").write_text(proc.stdout + proc.stderr)
    assert (proc.returncode == 0) == succeed, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


def _generations(root: Path) -> dict[str, dict]:
    """Cached front answers by cache key: responses and token counts (not the seconds)."""
    out = {}
    for path in sorted((root / ".cache" / "generations").glob("*.json")):
        record = json.loads(path.read_text())
        out[path.stem] = {k: record[k] for k in ("candidate", "prompt_ids", "responses", "new_tokens")}
    return out


def test_pairs_and_front_split_over_two_processes_write_what_one_process_writes(tiny_policy_dir, tmp_path):
    roots = {n: tmp_path / f"procs-{n}" for n in (1, 2)}
    for n, root in roots.items():
        pairs_params, front_params = _project(root, tiny_policy_dir)
        _run(root, pairs_params, "pairs", n)
        _run(root, front_params, "front", n)
    # Only the main process reports (and writes): one result line from either launch; the
    # second process of the launch says it ran as process 1 of 2.
    for n, root in roots.items():
        logs = {stage: (root / f"{stage}.log").read_text() for stage in ("pairs", "front")}
        assert logs["pairs"].count("wrote ") == 1 and logs["front"].count("front: 4 candidates") == 1
        for stage, log in logs.items():
            assert (f"{stage}: process 1 of 2 " in log) == (n == 2)

    one, two = (r / "data" / "pairs" for r in roots.values())
    for table in ("prompts", "responses", "ratings", "pairs"):
        pd.testing.assert_frame_equal(pd.read_parquet(one / f"{table}.parquet"), pd.read_parquet(two / f"{table}.parquet"))
    assert json.loads((one / "report.json").read_text()) == json.loads((two / "report.json").read_text())
    responses = pd.read_parquet(one / "responses.parquet")
    sampled = responses[responses["origin"].str.startswith("policy:")]
    assert sampled.groupby("prompt_id").size().max() > 1 and len(sampled) > 6   # several distinct samples

    generations = {n: _generations(r) for n, r in roots.items()}
    assert len(generations[1]) == 4 and generations[1] == generations[2]       # base + 3 merges
    assert len({tuple(g["responses"]) for g in generations[1].values()}) > 1   # the merges change answers
    front = {n: r / "artifacts" / "front" for n, r in roots.items()}
    pd.testing.assert_frame_equal(pd.read_parquet(front[1] / "scores.parquet"), pd.read_parquet(front[2] / "scores.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(front[1] / "answers.parquet"),
                                  pd.read_parquet(front[2] / "answers.parquet"))
    documents = [json.loads((f / "front.json").read_text()) for f in front.values()]
    assert documents[0]["hypervolume"] == documents[1]["hypervolume"]


def test_a_main_only_failure_stops_both_processes(tiny_policy_dir, tmp_path):
    """The main process alone builds the judges; when that fails (here: the params'
    reward-model judge and no reward model trained) the other process is told and stops
    too, instead of waiting in the gather until the process group times out (30 min)."""
    from paretoflow.config import load_params

    _write_prompts(tmp_path / "data" / "curated" / "prompts.parquet")
    params = load_params(REPO / "params.yaml", overrides={"model": {"policy": str(tiny_policy_dir)}})
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    log = _run(tmp_path, path, "pairs", 2, succeed=False, timeout=300)  # a hang fails here
    assert "reward model file missing" in log                                  # the main process's error
    assert "RuntimeError: the main process failed: FileNotFoundError" in log   # the other process's
