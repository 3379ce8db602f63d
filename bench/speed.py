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
- a 32x576 @ 576x1536 matmul in fp32 vs bf16 (GFLOP/s), the kernel behind both;
- `--features N`: MiniLM (the reward features' and judges' encoder) on N curated responses
  in fp32 vs int8 dynamic quantisation of its Linear layers: ratio and the cosine of each
  int8 vector with its fp32 one;
- `--lanes`: the front's 64 test prompts (its two batches of 32, greedy, 64 new tokens) one
  batch after the other on 2 threads vs the two batches at once in 2 lanes of 1 thread
  (paretoflow/lanes.py, one tokenizer each, the same model): ratio, identical answers. The
  front runs whole candidates per lane (both lanes busy); this measures one candidate;
- `--align-lanes`: the align stage's four adapters (`align.run_all` on the params of
  `--root`, `--align-steps` optimizer steps each, selected once at the end) one after the
  other on 2 threads vs 2 at a time in lanes of 1 thread (align.cpu.lanes), into temporary
  folders (the project's adapters are not touched): ratio, identical adapter bytes;
- `--bf16-front`: the front's own candidates (base and the trained adapters of `--root`,
  its 64 test prompts, its generation settings) answered with fp32 weights and with bf16
  weights (exact merge in fp32, then rounded once), scored by the front's judges: seconds
  per candidate, identical answers, and the paired difference bf16 - fp32 per objective
  with its 95% interval (the question: does bf16 move what the front measures?);
- `--processes`: the front's greedy decode of 2 x `--prompts` prompts (64 new tokens, batch
  32) in this process on 2 threads vs in 2 processes of 1 thread each, one batch each (the
  same batches): ratio, identical answers.
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


def _features(root: Path, n: int) -> None:
    from paretoflow.embeddings import sentence_encoder

    texts = pd.read_parquet(root / "data/curated/responses.parquet")["text"].head(n).tolist()
    encoder = sentence_encoder()
    pieces = [encoder.piece(t) for t in texts]
    encoder.encode(pieces[:32])  # warm
    fp32, t32 = _timed(lambda: encoder.encode(pieces))
    from torch.ao.quantization import quantize_dynamic

    model = encoder.model
    encoder._model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    encoder.encode(pieces[:32])
    int8, t8 = _timed(lambda: encoder.encode(pieces))
    encoder._model = model
    cosine = (fp32 * int8).sum(axis=1)
    tokens = sum(len(encoder.tokenizer(p)["input_ids"]) for p in pieces)
    print(f"minilm, {n} responses ({tokens / n:.0f} word pieces on average): fp32 {t32:.1f} s, int8 {t8:.1f} s "
          f"-> {t32 / t8:.2f}x; cosine int8 vs fp32 min {cosine.min():.4f} mean {cosine.mean():.4f}")


def _greedy_child(convs, threads, root, queue) -> None:
    torch.set_num_threads(threads)
    model, tok, _ = load_policy("default", Path(root) / ".cache/models")
    model.eval()
    out, seconds = _timed(lambda: generate_counted(model, tok, convs, **_GREEDY))
    queue.put((out.texts, seconds))


_GREEDY = dict(max_new_tokens=64, batch_size=32, max_prompt_tokens=128, progress=False)


def _processes(model, tok, convs, root: Path) -> None:
    import multiprocessing as mp

    convs = sorted(convs, key=lambda c: len(tok.apply_chat_template(c, tokenize=False)))
    halves = [convs[: len(convs) // 2], convs[len(convs) // 2 :]]
    torch.set_num_threads(2)
    one, t_one = _timed(lambda: [generate_counted(model, tok, h, **_GREEDY).texts for h in halves])
    ctx = mp.get_context("spawn")  # fork after OpenMP regions can hang the child
    queue = ctx.Queue()
    start = time.perf_counter()
    children = [ctx.Process(target=_greedy_child, args=(h, 1, str(root), queue)) for h in halves]
    for c in children:
        c.start()
    results = [queue.get() for _ in children]
    for c in children:
        c.join()
    t_two = time.perf_counter() - start
    gen = max(s for _, s in results)
    texts = {tuple(map(tuple, t)) for t, _ in results}
    same = sum(tuple(map(tuple, h)) in texts for h in one)
    print(f"greedy, 2 x {len(halves[0])} prompts: 1 process x 2 threads {t_one:.1f} s, 2 processes x 1 thread "
          f"{t_two:.1f} s with their model load ({gen:.1f} s generating) -> {t_one / t_two:.2f}x "
          f"({t_one / gen:.2f}x without the load); batches with identical answers {same}/2")


def _lanes(model, tok, root: Path) -> None:
    import copy

    from paretoflow.front.evaluate import load_eval_prompts
    from paretoflow.lanes import in_lanes

    prompts = load_eval_prompts(root / "data/curated/prompts.parquet", "test", 64)
    batches = generation.plan_batches(generation.render_prompts(tok, prompts.messages), 32)
    halves = [[prompts.messages[i] for i in batch] for batch in batches]
    run = lambda tokenizer, half: generate_counted(model, tokenizer, half, **_GREEDY).texts  # noqa: E731
    run(tok, halves[0][:4])  # warm
    one, t_one = _timed(lambda: [run(tok, h) for h in halves])
    two, t_two = _timed(lambda: in_lanes(halves, run, [tok, copy.deepcopy(tok)]))
    same = sum(a == b for x, y in zip(one, two) for a, b in zip(x, y))
    print(f"greedy, the front's {len(prompts.texts)} test prompts in {len(halves)} batches: one after the other "
          f"on {torch.get_num_threads()} threads {t_one:.1f} s, in 2 lanes {t_two:.1f} s -> {t_one / t_two:.2f}x; "
          f"identical answers {same}/{len(prompts.texts)}")
    # The pairs stage's sampling: 4 batches of 8 train prompts x 4 samples, 48 new tokens,
    # one lane then two (generate_counted's own lanes), alternating twice.
    frame = pd.read_parquet(root / "data/curated/prompts.parquet")
    train = frame[frame["split"] == "train"].head(32)
    convs = [[dict(m) for m in (json.loads(x) if isinstance(x, str) else x)] for x in train["messages"]]
    sample = dict(max_new_tokens=48, do_sample=True, temperature=0.8, top_p=0.95, num_return_sequences=4,
                  batch_size=8, max_prompt_tokens=128, seed=0, progress=False)
    times = {1: [], 2: []}
    outputs = {}
    for _ in range(2):
        for lanes in (1, 2):
            out, seconds = _timed(lambda: generate_counted(model, tok, convs, lanes=lanes, **sample))
            times[lanes].append(seconds)
            outputs[lanes] = out.texts
    print(f"sampling, {len(convs)} train prompts x 4 in {len(convs) // 8} batches: 1 lane {min(times[1]):.1f} s, "
          f"2 lanes {min(times[2]):.1f} s -> {min(times[1]) / min(times[2]):.2f}x (best of 2 each, alternating); "
          f"identical samples: {outputs[1] == outputs[2]}")


def _align_lanes(root: Path, steps: int) -> None:
    import hashlib
    import tempfile

    from paretoflow import align
    from paretoflow.config import load_params

    params = load_params(root / "params.yaml")
    budget = params.align.budget(params.project.profile)
    budget.max_steps, budget.eval_steps, budget.checkpoint_steps = steps, steps, steps
    seconds, adapters = {}, {}
    with tempfile.TemporaryDirectory(dir=root / ".cache") as scratch:
        for lanes in (1, 2):
            # fresh align cache each time: both runs pay the reference pass and base answers
            where = Path(scratch).relative_to(root)  # stage paths are project-relative
            params.align.out_dir = str(where / f"adapters-{lanes}")
            params.align.cache_dir = str(where / f"cache-{lanes}")
            budget.lanes = lanes
            results, seconds[lanes] = _timed(lambda: align.run_all(params, root, progress=False, resume=False))
            adapters[lanes] = [hashlib.sha256((r.adapter_dir / "adapter_model.safetensors").read_bytes()).hexdigest()
                               for r in results]
    same = sum(a == b for a, b in zip(adapters[1], adapters[2]))
    print(f"align, {len(adapters[1])} adapters x {steps} steps: one after the other on {torch.get_num_threads()} "
          f"threads {seconds[1]:.1f} s, 2 lanes {seconds[2]:.1f} s -> {seconds[1] / seconds[2]:.2f}x; "
          f"identical adapters {same}/{len(adapters[1])}")


def _bf16_front(root: Path) -> None:
    from paretoflow.config import load_params
    from paretoflow.front.candidates import grid_specs, reference_specs
    from paretoflow.front.stage import open_evaluation
    from paretoflow.metrics import paired_difference

    params = load_params(root / "params.yaml")
    budget = params.front.budget(params.project.profile)
    budget.lanes = 1  # one model; the ratio is per candidate
    ctx = open_evaluation(params, root, progress=False)
    evaluator = ctx.evaluator
    evaluator.cache_dir = None  # the cache is keyed without the dtype: generate both
    specs = reference_specs(ctx) + grid_specs(ctx)  # the front's candidates: base, MODPO, the merges
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        # MergeTarget keeps the fp32 weights it first touched: applied once before the cast,
        # every later merge is base_fp32 + dW rounded once to the model's dtype
        if dtype == torch.bfloat16:
            for spec in specs:
                evaluator._apply(spec)
            evaluator.target.restore()
            evaluator.model.to(dtype)
        results[dtype] = [_timed(lambda: evaluator.evaluate(spec)) for spec in specs]
    evaluator.model.to(torch.float32)
    for index, spec in enumerate(specs):
        (fp32, t32), (bf16, t16) = results[torch.float32][index], results[torch.bfloat16][index]
        same = sum(a == b for a, b in zip(fp32.responses, bf16.responses))
        moves = []
        for objective, values in fp32.scores["judges"].items():
            d = paired_difference(bf16.scores["judges"][objective], values)
            moves.append(f"{objective} {d.diff:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}]")
        print(f"front {spec.name}: fp32 {t32:.1f} s, bf16 {t16:.1f} s -> {t32 / t16:.2f}x; identical answers "
              f"{same}/{len(fp32.responses)}; bf16 - fp32: " + ", ".join(moves), flush=True)
    base32, base16 = results[torch.float32][0][0], results[torch.bfloat16][0][0]
    for spec, (fp32, _), (bf16, _) in zip(specs[1:], results[torch.float32][1:], results[torch.bfloat16][1:]):
        lines = []
        for objective in fp32.scores["judges"]:
            a = paired_difference(fp32.scores["judges"][objective], base32.scores["judges"][objective])
            b = paired_difference(bf16.scores["judges"][objective], base16.scores["judges"][objective])
            lines.append(f"{objective} fp32 {a.diff:+.3f} [{a.ci_low:+.3f}, {a.ci_high:+.3f}] / bf16 {b.diff:+.3f} "
                         f"[{b.ci_low:+.3f}, {b.ci_high:+.3f}]")
        print(f"  {spec.name} vs base: " + "; ".join(lines))
    for spec, (fp32, _), (bf16, _) in zip(specs, results[torch.float32], results[torch.bfloat16]):
        print(f"  {spec.name} first answer, fp32: {fp32.responses[0][:160]!r}")
        print(f"  {spec.name} first answer, bf16: {bf16.responses[0][:160]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--root", default=".")
    parser.add_argument("--skip-bf16", action="store_true")
    parser.add_argument("--skip-pairs", action="store_true")
    parser.add_argument("--features", type=int, default=0, metavar="N")
    parser.add_argument("--processes", action="store_true")
    parser.add_argument("--lanes", action="store_true")
    parser.add_argument("--align-lanes", action="store_true")
    parser.add_argument("--align-steps", type=int, default=4)
    parser.add_argument("--bf16-front", action="store_true")
    args = parser.parse_args()
    root = Path(args.root)
    if args.bf16_front:
        _bf16_front(root.resolve())
    if args.align_lanes:
        _align_lanes(root.resolve(), args.align_steps)
    if args.features:
        _features(root, args.features)
    model, tok, _ = load_policy("default", root / ".cache/models")
    model.eval()
    prompts_frame = pd.read_parquet(root / "data/curated/prompts.parquet")
    prompts = prompts_frame[prompts_frame["split"] == "train"].head(args.prompts)
    convs = [[dict(m) for m in (json.loads(x) if isinstance(x, str) else x)] for x in prompts["messages"]]
    sample = dict(max_new_tokens=48, do_sample=True, temperature=1.0, top_p=0.95, num_return_sequences=4,
                  batch_size=8, max_prompt_tokens=128, seed=0, progress=False)

    if args.lanes:
        _lanes(model, tok, root)
    if args.processes:
        more = prompts_frame[prompts_frame["split"] == "train"].head(2 * args.prompts)
        _processes(model, tok, [[dict(m) for m in (json.loads(x) if isinstance(x, str) else x)] for x in more["messages"]], root)
    if not args.skip_pairs:
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
