"""Integration: `accelerate launch` with two processes (CPU, gloo) trains the same adapter as one,
data parallel (DDP) and sharded (FSDP2), and a run cut short after a checkpoint resumes under
two processes to the adapter of the uninterrupted run.

Each optimizer step of the trainer consumes batch_size x num_processes pairs, taken from
one seeded pair stream (process r reads the r-th slice of the step's pairs) and the
gradients are averaged (DDP all-reduce, FSDP reduce-scatter): two processes at batch 2 see
exactly the pairs one process sees at batch 4 and take the same steps. So the documented
difference is the effective batch, and with it fixed the adapters agree to float rounding:
measured max |Δ| 8e-7 (DDP) and 9e-7 (FSDP) on weights of size ~0.15, tolerance 1e-5. LoRA
dropout is off: each process draws its own dropout masks, which no single process reproduces.
Resume is bit-identical on CPU (measured max |Δ| 0.0 for DDP and FSDP): tolerance 1e-7.
The train_adapter runs clip gradients at every step (max_grad_norm 1e-3, CLIP): under FSDP
the norm is taken over sharded gradients. Clipping moves the one-process adapter by 0.025
(measured), and the FSDP adapter still matches it within 1.1e-6.

The DDP comparison drives training through the CLI exactly as a user runs it; the others run
tests/multiprocess_job.py (train_adapter with stop_at_step, which the CLI does not expose,
and a small deterministic selection so generation under FSDP is exercised), each process
reporting how many micro-batches it computed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
# Selection on val loss (no generation): the comparison is about the training steps. Float32
# (mixed_precision "no"): "auto" is bf16 autocast on a CPU with bf16 instructions, whose rounding
# depends on the micro-batch shape (measured 5e-5 DDP, 1.7e-5 FSDP), so it would test bf16, not sharding.
BUDGET = dict(mixed_precision="no", lora_r=4, lora_alpha=8.0, lora_dropout=0.0, eval_batch_size=8, max_steps=4,
              eval_steps=2, checkpoint_steps=2, patience=5, max_val_pairs=4, max_length=48, max_prompt_tokens=24,
              learning_rate=1e-2, early_stopping_metric="val_loss", selection_prompts=0)
TOLERANCE = 1e-5
CLIP = 1e-3
RESUME_TOLERANCE = 1e-7
CONFIGS = REPO / "configs" / "accelerate"


def _params_file(root: Path, policy: Path, name: str, batch_size: int) -> Path:
    from paretoflow.config import load_params
    from tests.conftest import rules_overrides

    # On-policy pairs only (no curated human data here) and rule judges (no reward model).
    params = load_params(REPO / "params.yaml", overrides={
        **rules_overrides(), "model": {"policy": str(policy)}, "pairs": {"out_dir": "pairs"},
        "align": {"out_dir": f"adapters-{name}", "sources": {"human": 0.0, "on_policy": 1.0},
                  "cpu": {**BUDGET, "batch_size": batch_size}}})
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], log: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1"}
    env.pop("ACCELERATE_USE_FSDP", None)  # the launcher sets it from the config alone
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    log.write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def test_two_processes_train_the_adapter_one_process_trains_at_the_same_effective_batch(tiny_policy_dir, tmp_path):
    from safetensors.torch import load_file

    from tests.paretoflow.align.conftest import write_pair_tables

    write_pair_tables(tmp_path / "pairs", n_train=16, n_val=4)
    one = _params_file(tmp_path, tiny_policy_dir, "one", batch_size=4)
    two = _params_file(tmp_path, tiny_policy_dir, "two", batch_size=2)
    align = ["-m", "paretoflow.cli", "--params"]
    job = ["align", "--objective", "helpfulness", "--root", str(tmp_path)]
    _run([sys.executable, *align, str(one), *job], tmp_path / "one.log")
    _run([str(Path(sys.executable).parent / "accelerate"), "launch",
          "--config_file", str(REPO / "configs/accelerate/cpu-2proc.yaml"),
          "--main_process_port", str(_free_port()), *align, str(two), *job], tmp_path / "two.log")

    folders = {n: tmp_path / f"adapters-{n}" / "expert-helpfulness" for n in ("one", "two")}
    meta = {n: json.loads((f / "meta.json").read_text()) for n, f in folders.items()}
    assert (meta["one"]["num_processes"], meta["two"]["num_processes"]) == (1, 2)
    assert meta["one"]["tokens_seen"] == meta["two"]["tokens_seen"]          # the same pairs per step
    logs = {n: json.loads((f / "train_log.json").read_text()) for n, f in folders.items()}
    for a, b in zip(logs["one"]["steps"], logs["two"]["steps"], strict=True):
        assert abs(a["loss"] - b["loss"]) < TOLERANCE and a["tokens"] == b["tokens"]
    weights = {n: load_file(f / "adapter_model.safetensors") for n, f in folders.items()}
    assert weights["one"].keys() == weights["two"].keys()
    moved = max(w.abs().max().item() for k, w in weights["one"].items() if "lora_B" in k)
    assert moved > 100 * TOLERANCE                                           # it trained: B starts at zero
    worst = max((weights["one"][k] - weights["two"][k]).abs().max().item() for k in weights["one"])
    assert worst < TOLERANCE, worst


# ------------------------------------------------------------------ train_adapter under the launcher


class Jobs:
    """Runs tests/multiprocess_job.py once per name (module-scoped: tests share runs)."""

    def __init__(self, root: Path, policy: Path):
        self.root, self.policy, self.results = root, policy, {}
        from tests.paretoflow.align.conftest import write_pair_tables

        write_pair_tables(root / "pairs", n_train=16, n_val=4)

    def __call__(self, name: str, config: str | None, batch_size: int, output: str | None = None,
                 **job) -> list[dict]:
        if name in self.results:
            return self.results[name]
        spec = {"mode": "train", "policy": str(self.policy), "pairs": str(self.root / "pairs"),
                "output": str(self.root / (output or name)), "result": str(self.root / f"result-{name}"),
                "budget": {**BUDGET, "batch_size": batch_size, "max_grad_norm": CLIP}, "selection": True, **job}
        path = self.root / f"{name}.json"
        path.write_text(json.dumps(spec))
        script = [str(REPO / "tests" / "multiprocess_job.py"), str(path)]
        if config is None:
            cmd = [sys.executable, *script]
        else:
            cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file", str(CONFIGS / config),
                   "--main_process_port", str(_free_port()), *script]
        _run(cmd, self.root / f"{name}.log")
        ranks = 1 if config is None else 2
        self.results[name] = [json.loads((self.root / f"result-{name}-{r}.json").read_text()) for r in range(ranks)]
        return self.results[name]

    def folder(self, name: str) -> Path:
        return self.root / name


@pytest.fixture(scope="module")
def jobs(tiny_policy_dir, tmp_path_factory) -> Jobs:
    return Jobs(tmp_path_factory.mktemp("multiprocess"), tiny_policy_dir)


def _outputs(folder: Path) -> tuple[dict, dict, dict]:
    from safetensors.torch import load_file

    return (json.loads((folder / "meta.json").read_text()), json.loads((folder / "train_log.json").read_text()),
            load_file(folder / "adapter_model.safetensors"))


def _max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_fsdp_two_processes_train_the_adapter_one_process_trains(jobs):
    jobs("one", None, batch_size=4)
    jobs("fsdp", "cpu-fsdp-2proc.yaml", batch_size=2)
    (meta_one, log_one, one), (meta_two, log_two, two) = _outputs(jobs.folder("one")), _outputs(jobs.folder("fsdp"))
    assert (meta_one["num_processes"], meta_two["num_processes"]) == (1, 2)
    assert meta_two["sharding"] == "fsdp" and "sharding" not in meta_one       # sharded, not DDP in disguise
    assert meta_one["tokens_seen"] == meta_two["tokens_seen"]
    for a, b in zip(log_one["steps"], log_two["steps"], strict=True):
        assert abs(a["loss"] - b["loss"]) < TOLERANCE and a["tokens"] == b["tokens"]
    # validation ran the sharded scorer, selection generated under full_weights
    for a, b in zip(log_one["validation"], log_two["validation"], strict=True):
        assert a["step"] == b["step"] and abs(a["val_loss"] - b["val_loss"]) < TOLERANCE
        assert a["val_objective"] == b["val_objective"]
    assert {k: v.shape for k, v in one.items()} == {k: v.shape for k, v in two.items()}   # whole, not a shard
    moved = max(w.abs().max().item() for k, w in one.items() if "lora_B" in k)
    assert moved > 100 * TOLERANCE
    assert _max_abs_diff(one, two) < TOLERANCE


def _resume(jobs: Jobs, name: str, config: str) -> None:
    """`name`-cut stops after step 2 (checkpointed); `name`-resumed continues it to step 4."""
    cut = jobs(f"{name}-cut", config, batch_size=2, output=f"{name}-resumed", stop_at_step=2)
    assert [r["steps"] for r in cut] == [2, 2] and not cut[0]["completed"]
    checkpoint = jobs.folder(f"{name}-resumed") / "checkpoints" / "step-000002"
    from safetensors.torch import load_file

    final_one = _outputs(jobs.folder("one"))[2]
    saved = load_file(checkpoint / "adapter_model.safetensors")
    assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in final_one.items()}
    moments = load_file(checkpoint / "optimizer.safetensors")
    assert sum(v.numel() for k, v in moments.items() if k.endswith(".exp_avg")) == \
        sum(v.numel() for v in final_one.values())                            # whole optimizer state
    resumed = jobs(f"{name}-resumed", config, batch_size=2)
    assert [r["micro_batches"] for r in resumed] == [2, 2]   # steps 3-4 only: it resumed from step 2
    (_, log_full, full), (_, log_resumed, after) = _outputs(jobs.folder(name)), _outputs(jobs.folder(f"{name}-resumed"))
    for a, b in zip(log_full["steps"], log_resumed["steps"], strict=True):
        assert abs(a["loss"] - b["loss"]) < RESUME_TOLERANCE and a["lr"] == b["lr"]
    assert _max_abs_diff(full, after) < RESUME_TOLERANCE


def test_fsdp_run_resumes_from_a_checkpoint_to_the_uninterrupted_adapter(jobs):
    jobs("one", None, batch_size=4)
    jobs("fsdp", "cpu-fsdp-2proc.yaml", batch_size=2)
    _resume(jobs, "fsdp", "cpu-fsdp-2proc.yaml")


def test_ddp_run_resumes_from_a_checkpoint_to_the_uninterrupted_adapter(jobs):
    jobs("one", None, batch_size=4)
    jobs("ddp", "cpu-2proc.yaml", batch_size=2)
    assert "sharding" not in _outputs(jobs.folder("ddp"))[0]
    _resume(jobs, "ddp", "cpu-2proc.yaml")


def test_fsdp_unwrapped_model_generates_what_the_saved_adapter_generates(jobs):
    """A saved adapter loaded into the sharded session (sliced into the shards), gathered back
    unchanged, and under full_weights the unwrapped peft model gives the logits and greedy
    tokens of the same adapter loaded on one process."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from paretoflow.generation import _greedy_until_eos
    from tests.multiprocess_job import PROMPT_IDS

    jobs("one", None, batch_size=4)
    ranks = jobs("generate", "cpu-fsdp-2proc.yaml", batch_size=2, mode="generate",
                 adapter=str(jobs.folder("one") / "adapter_model.safetensors"))
    base = AutoModelForCausalLM.from_pretrained(jobs.policy, use_safetensors=True)
    model = PeftModel.from_pretrained(base, jobs.folder("one")).eval()
    ids = torch.tensor(PROMPT_IDS)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    tokens = _greedy_until_eos(model, ids, torch.ones_like(ids), 8, {model.config.eos_token_id})
    for rank in ranks:
        assert rank["sharded"] and rank["adapter_max_abs_diff"] == 0.0
        assert (torch.tensor(rank["logits"]) - logits).abs().max().item() < TOLERANCE   # measured 0.0
        assert rank["tokens"] == tokens
