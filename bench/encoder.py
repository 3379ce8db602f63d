"""The sentence encoder's precision (`model.encoder_dtype`): MiniLM in float32 against bf16
autocast (and int8 dynamic quantisation), in the same process, with what each changes.

    .venv/bin/python bench/encoder.py --texts 512 [--root .]   # speed and cosine
    .venv/bin/python bench/encoder.py --front [--root .]       # the front's scores

- `--texts N`: N curated responses of `--root` (the shipped AlpacaEval answers when the
  project has not been curated), each cut to the window MiniLM reads, encoded in float32,
  under bf16 autocast (what "auto" runs on a CPU with AVX512_BF16/AMX) and with int8
  dynamic quantisation of the Linear layers: seconds, ratio against float32, and the cosine
  of each vector with its float32 one. Then one 8192x384 @ 384x1536 product (a batch of 32
  windows through the first FFN layer) in float32 and bf16 under each oneDNN ISA cap, in
  subprocesses (`ONEDNN_MAX_CPU_ISA`): what bf16 costs where the CPU lacks the instructions.
- `--front`: the front's candidates of `--root` (answers from the front's own cache, so
  both sides score the same texts; run the front first), scored by the front's judges with
  the encoder in float32 and in bf16: per candidate and objective the paired difference
  bf16 - float32 over the prompts with its 95% interval, the answer check's verdicts that
  differ, and each candidate's difference from the base both ways (does a verdict move?).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_PRODUCT = """
import time, torch
a, w = torch.randn(32 * 256, 384), torch.nn.Linear(384, 1536)
def per_call(f, n=10):
    f(); start = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - start) / n
def bf16():
    with torch.autocast("cpu", dtype=torch.bfloat16): return w(a)
print(per_call(lambda: w(a)), per_call(bf16))
"""


def _texts(root: Path, n: int) -> list[str]:
    curated = root / "data/curated/responses.parquet"
    if curated.exists():
        import pandas as pd

        return pd.read_parquet(curated)["text"].head(n).tolist()
    texts: list[str] = []
    with gzip.open(root / "data/raw/alpaca_eval_helpfulness.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts += [row["chosen"], row["rejected"]]
            if len(texts) >= n:
                break
    return texts[:n]


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def speed(root: Path, n: int) -> None:
    import torch
    from torch.ao.quantization import quantize_dynamic

    from paretoflow.cpu import native_bf16
    from paretoflow.embeddings import sentence_encoder

    fp32, bf16 = sentence_encoder(dtype="float32"), sentence_encoder(dtype="bfloat16")
    texts = _texts(root, n)
    pieces = [fp32.piece(t) for t in texts]
    tokens = np.mean([len(fp32.tokenizer(p)["input_ids"]) for p in pieces])
    fp32.encode(pieces[:32]), bf16.encode(pieces[:32])  # warm both
    exact, t32 = _timed(lambda: fp32.encode(pieces))
    low, t16 = _timed(lambda: bf16.encode(pieces))
    model = fp32.model
    fp32._model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    int8, t8 = _timed(lambda: fp32.encode(pieces))
    fp32._model = model
    print(f"minilm, {len(pieces)} responses ({tokens:.0f} word pieces on average), native bf16: {native_bf16()}, "
          f"{torch.get_num_threads()} threads")
    for name, vectors, seconds in (("bf16 autocast", low, t16), ("int8 dynamic", int8, t8)):
        cosine = np.sum(exact * vectors, axis=1)
        print(f"  {name}: float32 {t32:.1f} s, {name} {seconds:.1f} s -> {t32 / seconds:.2f}x; cosine to float32 "
              f"min {cosine.min():.5f} mean {cosine.mean():.6f}")
    for isa in ("", "AVX512_CORE", "AVX2"):
        env = dict(os.environ, ONEDNN_MAX_CPU_ISA=isa) if isa else dict(os.environ)
        out = subprocess.run([sys.executable, "-c", _PRODUCT], env=env, capture_output=True, text=True, check=True)
        t_fp32, t_bf16 = map(float, out.stdout.split())
        print(f"  8192x384 @ 384x1536, oneDNN ISA {isa or 'native'}: float32 {t_fp32 * 1e3:.1f} ms, bf16 "
              f"{t_bf16 * 1e3:.1f} ms -> {t_fp32 / t_bf16:.2f}x")


def front(root: Path) -> None:
    from paretoflow import cpu
    from paretoflow.config import load_params
    from paretoflow.front.answers import answered
    from paretoflow.front.candidates import grid_specs, reference_specs
    from paretoflow.front.stage import open_evaluation
    from paretoflow.judges import relevance
    from paretoflow.metrics import paired_difference

    params = load_params(root / "params.yaml")
    if params.model.encoder_dtype != "auto":
        raise SystemExit("--front compares what model.encoder_dtype 'auto' resolves to; params say "
                         f"{params.model.encoder_dtype!r}")
    results, checks = {}, {}
    native = cpu.native_bf16
    for dtype in ("float32", "bfloat16"):
        # "auto" everywhere (judges, the reward model's saved spec): resolved as if the CPU
        # had bf16 instructions or not
        cpu.native_bf16 = (lambda flag: lambda: flag)(dtype == "bfloat16")
        relevance._MEMO.clear()
        ctx = open_evaluation(params, root, progress=False)
        specs = reference_specs(ctx) + grid_specs(ctx)
        (evaluations, seconds) = _timed(lambda: [ctx.evaluator.evaluate(spec) for spec in specs])
        results[dtype] = evaluations
        checks[dtype] = [answered(ctx.prompts.texts, e.responses, dtype=dtype) for e in evaluations]
        print(f"{dtype}: {len(specs)} candidates x {len(ctx.prompts.texts)} prompts scored in {seconds:.1f} s "
              f"(answers from the front's cache where present)", flush=True)
    cpu.native_bf16 = native
    for index, (a, b) in enumerate(zip(results["float32"], results["bfloat16"])):
        if a.responses != b.responses:
            raise SystemExit(f"{a.spec.name}: the two passes answered differently (front cache missing?)")
        moves = []
        for objective, values in a.scores["judges"].items():
            d = paired_difference(b.scores["judges"][objective], values)
            most = float(np.max(np.abs(b.scores["judges"][objective] - values)))
            moves.append(f"{objective} {d.diff:+.5f} [{d.ci_low:+.5f}, {d.ci_high:+.5f}] (max |d| {most:.4f})")
        flips = int(np.sum(checks["float32"][index] != checks["bfloat16"][index]))
        print(f"{a.spec.name}: bf16 - float32 " + ", ".join(moves) + f"; answer check verdicts changed {flips}")
    base = {d: results[d][0] for d in results}
    for a, b in zip(results["float32"][1:], results["bfloat16"][1:]):
        lines = []
        for objective in a.scores["judges"]:
            x = paired_difference(a.scores["judges"][objective], base["float32"].scores["judges"][objective])
            y = paired_difference(b.scores["judges"][objective], base["bfloat16"].scores["judges"][objective])
            lines.append(f"{objective} float32 {x.diff:+.4f} [{x.ci_low:+.4f}, {x.ci_high:+.4f}] / bf16 "
                         f"{y.diff:+.4f} [{y.ci_low:+.4f}, {y.ci_high:+.4f}]")
        print(f"  {a.spec.name} vs base: " + "; ".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=".")
    parser.add_argument("--texts", type=int, default=0, metavar="N")
    parser.add_argument("--front", action="store_true")
    args = parser.parse_args()
    root = Path(args.root).resolve()
    if args.texts:
        speed(root, args.texts)
    if args.front:
        front(root)
    if not (args.texts or args.front):
        parser.error("nothing to measure: give --texts N and/or --front")


if __name__ == "__main__":
    main()
