"""Bench: how many held-out prompts the front needs, and what they cost.

The minimum detectable difference of a paired comparison on n prompts is
MDE = (z₁₋α/₂ + z_power) · SD(d) / √n (paretoflow.metrics), with SD(d) the per-prompt SD
of the differences candidate − base. This bench measures SD(d) and the generation cost,
and prints the MDE per objective at several prompt counts and the count that reaches a
target MDE.

    # From a finished front (real candidates: experts, MODPO, merges), no generation:
    python bench/front_budget.py --front artifacts/front
    # Before any expert exists: the default model against behaviour-changing proxies
    # (the same model under a system prompt asking for brevity / for refusing harm),
    # answers greedy on the test split, scored by the judges of params.yaml; also times
    # generation (tokens per wall second and per CPU second) at each --batch-size:
    python bench/front_budget.py --proxy --prompts 64 --batch-size 16 32

Timings on a shared machine are not budgets: the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROXIES = {
    "concise": "Answer in one or two short sentences.",
    "careful": "You are a careful assistant. Refuse any request that could cause harm, "
               "saying 'I can't help with that.'",
}


def _mde_table(sds: dict[str, dict[str, float]], counts: list[int], target: float) -> dict:
    from paretoflow.metrics import minimum_detectable_difference, prompts_needed

    table = {}
    for candidate, by_objective in sds.items():
        table[candidate] = {
            objective: {"sd_diff": round(sd, 4),
                        **{f"mde_at_{n}": round(minimum_detectable_difference(sd, n), 4) for n in counts},
                        f"prompts_for_mde_{target:g}": prompts_needed(sd, target) if sd > 0 else 1}
            for objective, sd in by_objective.items()
        }
    return table


def from_front(directory: Path, counts: list[int], target: float) -> dict:
    """SD of paired differences of every candidate of a finished front (judge mixture)."""
    from paretoflow.front.document import read_front

    document, scores = read_front(directory)
    base = scores.get(document.base.name)
    sds = {}
    for record in document.candidates:
        if record.kind == "base":
            continue
        mine = scores.get(record.name)
        sds[record.name] = {k: float(np.std(mine[k] - base[k], ddof=1)) for k in base}
    seconds = sum(r.generation_seconds for r in document.candidates if not r.cached)
    tokens = sum(r.mean_new_tokens * document.evaluation.prompts for r in document.candidates)
    return {"prompts": document.evaluation.prompts, "candidates": len(document.candidates),
            "max_new_tokens": document.evaluation.max_new_tokens, "generated_tokens": round(tokens),
            "generation_seconds_uncached": round(seconds, 1), "table": _mde_table(sds, counts, target)}


def _generate(model, tokenizer, messages, batch_size: int, max_new_tokens: int) -> tuple[list[str], dict]:
    from paretoflow.generation import generate_counted

    cpu, wall = time.process_time(), time.perf_counter()
    out = generate_counted(model, tokenizer, messages, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           progress=False)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    tokens = sum(c[0] for c in out.token_counts)
    timing = {"batch_size": batch_size, "prompts": len(messages), "tokens": tokens,
              "mean_tokens": round(tokens / len(messages), 1), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
              "tokens_per_wall_s": round(tokens / wall, 1), "tokens_per_cpu_s": round(tokens / cpu, 1),
              "load_1min": round(os.getloadavg()[0], 1)}
    return [t[0] for t in out.texts], timing


def from_proxies(params_path: Path, n: int, batch_sizes: list[int], counts: list[int], target: float) -> dict:
    from paretoflow.config import load_params
    from paretoflow.front.evaluate import load_eval_prompts
    from paretoflow.judges import build_mixture
    from paretoflow.models import load_policy

    params = load_params(params_path)
    budget = params.front.budget(params.project.profile)
    prompts = load_eval_prompts(REPO / params.curate.out_dir / "prompts.parquet", params.front.prompts_split, n)
    model, tokenizer, _ = load_policy(params.model.policy, REPO / params.model.cache_dir)
    mixture = build_mixture(params, REPO)
    timings, scores = [], {}
    for index, batch_size in enumerate(batch_sizes):
        texts, timing = _generate(model, tokenizer, prompts.messages, batch_size, budget.max_new_tokens)
        timings.append(timing)
        print(json.dumps({"base": timing}), flush=True)
        if index == 0:
            scores["base"] = mixture.score(prompts.texts, texts, prompts.tags)
    for name, system in PROXIES.items():
        messages = [[{"role": "system", "content": system}, *m] for m in prompts.messages]
        texts, timing = _generate(model, tokenizer, messages, batch_sizes[0], budget.max_new_tokens)
        print(json.dumps({name: timing}), flush=True)
        scores[name] = mixture.score(prompts.texts, texts, prompts.tags)
    base = scores["base"]
    sds = {name: {k: float(np.std(np.asarray(s[k]) - np.asarray(base[k]), ddof=1)) for k in base}
           for name, s in scores.items() if name != "base"}
    base_sd = {k: round(float(np.std(v, ddof=1)), 4) for k, v in base.items()}
    return {"prompts": len(prompts.texts), "max_new_tokens": budget.max_new_tokens, "timings": timings,
            "base_sd": base_sd, "table": _mde_table(sds, counts, target)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--front", type=Path, help="a finished front folder (front.json + scores.parquet)")
    source.add_argument("--proxy", action="store_true", help="default model vs system-prompt proxies")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--prompts", type=int, default=64, help="--proxy: held-out prompts to answer")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[32], help="--proxy: batch sizes to time")
    parser.add_argument("--counts", type=int, nargs="+", default=[32, 48, 64, 96, 128, 192])
    parser.add_argument("--target", type=float, default=0.05, help="target MDE")
    args = parser.parse_args()
    if args.front:
        report = from_front(args.front, args.counts, args.target)
    else:
        report = from_proxies(args.params, args.prompts, args.batch_size, args.counts, args.target)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
