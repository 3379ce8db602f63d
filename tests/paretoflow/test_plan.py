"""The memory plan: estimates against measured CPU peaks; an 8B policy on one 80 GB GPU.

Measured on CPU in a fresh process (tests/paretoflow/plan_probe.py): bytes saved for
backward by one LoRA training step (saved-tensor hooks) and the peak-RSS rise of a step.
Tolerances: saved activations within 25% of the plan's activation term, the step's
peak rise within 35% of the plan's train-step phase (the plan errs high with
checkpointing: it counts one recomputed layer and the backward work in full).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from paretoflow.plan import DEFAULT_POLICY_CONFIG, GIB, memory_plan, model_shape, train_step_bytes

REPO = Path(__file__).resolve().parents[2]
TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 515, "tie_word_embeddings": True,
        "max_position_embeddings": 512}
# Meta-Llama-3-8B-Instruct's config.json (the architecture fields).
LLAMA3_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
             "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
             "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False,
             "bos_token_id": 128000, "eos_token_id": 128009, "hidden_act": "silu"}
SAVED_TOLERANCE, PEAK_TOLERANCE = 0.25, 0.35


def _probe(tmp_path: Path, config: dict, rows: int, tokens: int, response: int, checkpointing: bool) -> dict:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536"}
    cmd = [sys.executable, "-m", "tests.paretoflow.plan_probe", str(path), str(rows), str(tokens), str(response)]
    out = subprocess.run(cmd + (["ckpt"] if checkpointing else []), cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _check(tmp_path, config, rows, tokens, response, checkpointing):
    measured = _probe(tmp_path, config, rows, tokens, response, checkpointing)
    est = train_step_bytes(model_shape(config), rows, tokens, 16, 0.05, 4, checkpointing, 0, rows * response)
    if not checkpointing:  # with checkpointing the hooks see only the layer inputs
        saved_est = est["activations"] + est["logits"] // 2  # fp32 logits kept, not their gradient
        assert abs(measured["saved_bytes"] / saved_est - 1) < SAVED_TOLERANCE, (measured, est)
    total = sum(est.values())
    assert abs(measured["peak_rise_bytes"] / total - 1) < PEAK_TOLERANCE, (measured, est)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_tiny_model_step_matches_the_plan(tmp_path, checkpointing):
    _check(tmp_path, TINY, rows=8, tokens=256, response=128, checkpointing=checkpointing)


@pytest.mark.slow
@pytest.mark.parametrize("checkpointing", [False, True])
def test_default_model_step_matches_the_plan(tmp_path, checkpointing):
    # SmolLM2-135M's architecture (random weights: memory does not depend on their values)
    # at the cpu align budget: 2 pairs = 4 rows of 96 tokens, responses of 48.
    _check(tmp_path, DEFAULT_POLICY_CONFIG, rows=4, tokens=96, response=48, checkpointing=checkpointing)


def test_llama3_8b_fits_one_80gb_gpu_with_the_gpu_profile(params):
    gpu = params.model_copy(deep=True)
    gpu.project.profile = "gpu"
    plan = memory_plan(gpu, LLAMA3_8B, device_bytes=80 * 10**9)
    assert plan.shape.params == 8_030_261_248  # Llama-3-8B's published count
    assert plan.failures() == [], plan.failures()
    assert {s.stage for s in plan.stages} == {"pairs", "reward", "align", "front"}


def test_without_checkpointing_the_8b_align_stage_is_refused_naming_the_setting(params):
    gpu = params.model_copy(deep=True)
    gpu.project.profile = "gpu"
    gpu.align.gpu.gradient_checkpointing = False
    failures = memory_plan(gpu, LLAMA3_8B, device_bytes=80 * 10**9).failures()
    assert len(failures) == 1 and failures[0].startswith("align (train step)")
    assert "align.gpu.gradient_checkpointing: true" in failures[0]


def test_cli_exit_code_and_output(tmp_path, capsys):
    from paretoflow.cli import main

    (tmp_path / "config.json").write_text(json.dumps(LLAMA3_8B))
    args = ["--params", str(REPO / "params.yaml"), "plan", "--policy", str(tmp_path), "--profile", "gpu"]
    assert main(args + ["--gpu-memory-gb", "80"]) == 0
    out = capsys.readouterr().out
    assert "align: peak" in out and "fits" in out and "8.03B params" in out
    assert main(args + ["--gpu-memory-gb", "24"]) == 3
    assert "will not fit" in capsys.readouterr().err


def test_fsdp_shards_the_weights(params):
    gpu = params.model_copy(deep=True)
    gpu.project.profile = "gpu"
    one = memory_plan(gpu, LLAMA3_8B).stages[2]
    eight = memory_plan(gpu, LLAMA3_8B, num_processes=8, fsdp=True).stages[2]
    assert eight.resident["policy weights"] * 8 == pytest.approx(one.resident["policy weights"], abs=8)
    assert one.resident["policy weights"] / GIB == pytest.approx(8.03e9 * 2 / GIB, rel=0.01)
