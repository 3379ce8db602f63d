"""Speed of the default run's hot paths on this machine: each change against the current
path, in the same process (these machines are noisy), with the outputs compared.

    .venv/bin/python bench/speed.py [--prompts 32] [--root .]

Measures, on the default policy (SmolLM2-135M-Instruct) and the curated train prompts of
`--root` (run curate first):
- pairs sampling (4 samples per prompt, 48 new tokens, 8 prompts a batch as the cpu
  profile): transformers' `generate` repeating each prompt 4x before its prefill vs
  `generation._generate_shared_prefill` (prompt prefilled once, cache repeated), same
  seed: ratio and how many samples are token-identical;
- greedy answers in fp32 vs bf16 weights (the front's decode), ratio and identical answers;
- a 32x576 @ 576x1536 matmul in fp32 vs bf16 (GFLOP/s), the kernel behind both.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

from paretoflow import generation
from paretoflow.generation import generate_counted
from paretoflow.models import load_policy


def _matmul_gflops(dtype: torch.dtype, n: int = 100) -> float:
    a, b = torch.randn(32, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(n):
        a @ b
    return 2 * 32 * 576 * 1536 * n / (time.perf_counter() - start) / 1e9


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--root", default=".")
    parser.add_argument("--skip-bf16", action="store_true")
    args = parser.parse_args()
    root = Path(args.root)
    model, tok, _ = load_policy("default", root / ".cache/models")
    model.eval()
    prompts = pd.read_parquet(root / "data/curated/prompts.parquet")
    prompts = prompts[prompts["split"] == "train"].head(args.prompts)
    convs = [[dict(m) for m in (json.loads(x) if isinstance(x, str) else x)] for x in prompts["messages"]]
    sample = dict(max_new_tokens=48, do_sample=True, temperature=1.0, top_p=0.95, num_return_sequences=4,
                  batch_size=8, max_prompt_tokens=128, seed=0, progress=False)

    shared = generation._generate_shared_prefill
    generation._generate_shared_prefill = lambda m, enc, r, kw: m.generate(**enc, **kw)
    try:
        old, t_old = _timed(lambda: generate_counted(model, tok, convs, **sample))
    finally:
        generation._generate_shared_prefill = shared
    new, t_new = _timed(lambda: generate_counted(model, tok, convs, **sample))
    same = sum(a == b for x, y in zip(old.texts, new.texts) for a, b in zip(x, y))
    total = sum(len(x) for x in old.texts)
    print(f"pairs sampling, {len(convs)} prompts x 4: generate {t_old:.1f} s, shared prefill {t_new:.1f} s "
          f"-> {t_old / t_new:.2f}x; identical samples {same}/{total}")

    if not args.skip_bf16:
        greedy = dict(max_new_tokens=64, batch_size=32, max_prompt_tokens=128, progress=False)
        fp32, t32 = _timed(lambda: generate_counted(model, tok, convs, **greedy))
        model.to(torch.bfloat16)
        bf16, t16 = _timed(lambda: generate_counted(model, tok, convs, **greedy))
        model.to(torch.float32)
        same = sum(a == b for a, b in zip(fp32.texts, bf16.texts))
        print(f"greedy, {len(convs)} prompts: fp32 {t32:.1f} s, bf16 weights {t16:.1f} s -> "
              f"{t32 / t16:.2f}x; identical answers {same}/{len(convs)}")
    print(f"matmul 32x576 @ 576x1536: fp32 {_matmul_gflops(torch.float32):.1f} GFLOP/s, "
          f"bf16 {_matmul_gflops(torch.bfloat16, 10):.1f} GFLOP/s")


if __name__ == "__main__":
    main()
