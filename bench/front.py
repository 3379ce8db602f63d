"""Bench: the merged-experts front vs MODPO policies trained at the same weights.

One run trains one DPO expert per objective and one MODPO policy per interior weight
vector of a simplex grid (paretoflow.align), evaluates the exact merges Σ wᵢ ΔWᵢ at every
grid vector and the MODPO policies on the same held-out prompts (paretoflow.front), and
prints both hypervolumes (same fixed reference point) and both training computes:

    merged front: the expert trainings only;
    MODPO front:  one training per weight vector (a one-hot vector is the DPO expert itself,
                  so the vertices are shared and counted on both sides).

Goal (issue 5): HV(merged) / HV(MODPO) >= 0.95 at <= 1/3 of the MODPO compute.

Paired statistics (issue 10): every candidate answers the same held-out prompts, so the
HV ratio gets a prompt-bootstrap interval (prompts resampled, every candidate's means and
both hypervolumes recomputed on the same resample: paretoflow.metrics.prompt_bootstrap),
and at every interior weight vector the merge and the MODPO policy trained for it are
compared prompt by prompt (paired difference per objective with its interval). The report
also gives the run's minimum detectable difference per objective.

    python bench/front.py --tiny        # tiny llama, 2 objectives, synthetic pairs: ~1-3 min
    python bench/front.py               # default model: needs data/pairs and data/curated
                                        # from the pipeline (paretoflow pairs); long on CPU
    python bench/front.py --tiny --prompts 48   # more held-out prompts (tiny: up to 48)

Work goes to --work (default .cache/bench/front); the pipeline's artifacts/ are untouched.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _tiny_project(work: Path):
    """A tiny policy, two conflicting length objectives, synthetic pairs rated by the real judges."""
    from paretoflow import schema
    from paretoflow.config import Params
    from paretoflow.judges import build_mixture
    from paretoflow.models import build_tiny_policy

    policy = build_tiny_policy(work / "policy", seed=0)
    params = Params.model_validate({
        "project": {"seed": 0, "profile": "cpu"},
        "model": {"policy": str(policy)},
        "objectives": [
            {"name": "brevity", "judges": [{"name": "length_band", "params": {"low": 1, "high": 4}}]},
            {"name": "verbosity", "judges": [{"name": "length_band", "params": {"low": 12, "high": 24}}]},
        ],
        "align": {"cpu": {"lora_r": 4, "lora_alpha": 8.0, "lora_dropout": 0.0, "batch_size": 4,
                          "eval_batch_size": 8, "max_steps": 12, "eval_steps": 4, "checkpoint_steps": 4,
                          "patience": 3, "max_val_pairs": 8, "max_length": 64, "max_prompt_tokens": 24,
                          "learning_rate": 1e-2}},
        "front": {"cpu": {"n_eval_prompts": 48, "max_new_tokens": 24, "batch_size": 24, "grid_step": 0.5},
                  "n_boot": 1000},
    })
    short = ["Sure.", "I cannot help.", "Relax.", "Yes, the sea."]
    long = ["Sure! Here are three tips for better sleep: keep a schedule, avoid screens, relax.",
            "The quick brown fox jumps over the lazy dog. Write a short poem about the sea and the sky at dawn.",
            "Explain how photosynthesis works in simple terms: the sea and the sky at dawn, keep a schedule."]
    mixture = build_mixture(params, work)
    prompts, responses, ratings, pairs = [], [], [], []
    splits = ["train"] * 48 + ["val"] * 8 + ["test"] * 48
    for i, split in enumerate(splits):
        content = f"Question {i}: " + ["write a short poem about the sea.", "explain photosynthesis.",
                                       "give me tips for better sleep."][i % 3]
        messages = [{"role": "user", "content": content}]
        pid = schema.prompt_id(messages)
        prompts.append(dict(prompt_id=pid, messages=schema.messages_json(messages), text=content,
                            source="bench", split=split, tags="[]"))
        texts = {"short": short[i % len(short)], "long": long[i % len(long)]}
        ids = {}
        scores = mixture.score([content, content], [texts["short"], texts["long"]])
        for j, (kind, text) in enumerate(texts.items()):
            ids[kind] = schema.response_id(pid, text)
            responses.append(dict(response_id=ids[kind], prompt_id=pid, text=text, origin="bench"))
            for objective in params.objective_names:
                ratings.append(dict(response_id=ids[kind], objective=objective, value=float(scores[objective][j]),
                                    scale_min=0.0, scale_max=1.0, rater="judges"))
        for objective, (chosen, rejected) in (("brevity", ("short", "long")), ("verbosity", ("long", "short"))):
            pairs.append(dict(pair_id=schema.pair_id(pid, ids[chosen], ids[rejected], objective), prompt_id=pid,
                              chosen_id=ids[chosen], rejected_id=ids[rejected], objective=objective,
                              margin=1.0, source="bench"))
    for directory in (work / "data" / "pairs",):
        directory.mkdir(parents=True, exist_ok=True)
        for name, rows in (("prompts", prompts), ("responses", responses), ("ratings", ratings), ("pairs", pairs)):
            schema.frame(name, rows).to_parquet(directory / f"{name}.parquet", index=False)
    (work / "data" / "curated").mkdir(parents=True, exist_ok=True)
    shutil.copy(work / "data/pairs/prompts.parquet", work / "data/curated/prompts.parquet")
    return params


def _default_project(work: Path, params_path: Path):
    from paretoflow.config import load_params

    params = load_params(params_path)
    # Read the pipeline's data (linked into the bench folder), write adapters and the front
    # under the bench folder: paths in params stay inside the project root they name.
    for rel in (params.pairs.out_dir, params.curate.out_dir, params.reward.out_dir, params.model.cache_dir):
        if not (REPO / rel).exists():
            raise FileNotFoundError(f"{REPO / rel} missing: run the pipeline up to `paretoflow pairs` first")
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).symlink_to((REPO / rel).resolve(), target_is_directory=True)
    return params


def _train(params, work: Path, objective=None, weights=None) -> dict:
    from paretoflow import align

    start = time.perf_counter()
    result = align.run(params, work, objective=objective, weights=weights, progress=False, resume=False)
    seconds = time.perf_counter() - start
    meta = json.loads((result.adapter_dir / "meta.json").read_text())
    return {"name": result.name, "seconds": seconds, "tokens": int(meta.get("tokens_seen", 0)),
            "steps": int(meta.get("steps", 0))}


def _hv_ratio(result, params, names) -> dict:
    """HV(merged) / HV(MODPO front) with its prompt-bootstrap interval, from the stored scores."""
    from paretoflow.front.document import read_front
    from paretoflow.metrics import prompt_bootstrap
    from paretoflow.pareto import hypervolume

    document, scores = read_front(result.front_json.parent)
    directions = [o.direction for o in params.objectives]
    reference = [result.reference_point[n] for n in names]
    records = document.candidates
    merged = [i for i, r in enumerate(records) if r.kind == "merge"]
    vertices = [i for i in merged if max(records[i].coefficients.values()) == 1.0]
    modpo = [i for i, r in enumerate(records) if r.kind == "adapter"] + vertices
    per_prompt = np.stack([np.stack([scores.get(r.name)[n] for n in names], axis=1) for r in records])

    def statistic(means: np.ndarray) -> np.ndarray:
        hv_merged = hypervolume(means[merged], reference, directions)
        hv_modpo = hypervolume(means[modpo], reference, directions)
        return np.array([hv_merged, hv_modpo, hv_merged / hv_modpo if hv_modpo > 0 else np.nan])

    value, low, high = prompt_bootstrap(per_prompt, statistic, n_resamples=params.front.n_boot,
                                        level=params.front.ci_level, seed=params.project.seed)
    return {"hypervolume_merged": float(value[0]), "hypervolume_merged_ci": [float(low[0]), float(high[0])],
            "hypervolume_modpo": float(value[1]), "hypervolume_modpo_ci": [float(low[1]), float(high[1])],
            "hv_ratio_merged_over_modpo": float(value[2]), "hv_ratio_ci": [float(low[2]), float(high[2])]}


def _merge_vs_modpo(result, params, names) -> list[dict]:
    """At each interior weight vector: the merge minus the MODPO policy, paired over prompts."""
    from paretoflow.front.document import read_front
    from paretoflow.metrics import paired_difference

    document, scores = read_front(result.front_json.parent)
    merges = {tuple(round(r.weights[n], 6) for n in names): r for r in document.candidates if r.kind == "merge"}
    rows = []
    for record in document.candidates:
        if record.kind != "adapter" or not record.weights:
            continue
        merge = merges.get(tuple(round(record.weights[n], 6) for n in names))
        if merge is None:
            continue
        a, b = scores.get(merge.name), scores.get(record.name)
        row = {"weights": [record.weights[n] for n in names], "merge": merge.name, "modpo": record.name}
        for k, n in enumerate(names):
            d = paired_difference(a[n], b[n], n_resamples=params.front.n_boot, level=params.front.ci_level,
                                  seed=params.project.seed + k)
            row[n] = {"diff": round(d.diff, 4), "ci": [round(d.ci_low, 4), round(d.ci_high, 4)],
                      "distinguishable": d.excludes_zero}
        rows.append(row)
    return rows


def _train_all(params, work: Path, names, interior) -> tuple[list[dict], list[dict]]:
    experts = [_train(params, work, objective=o) for o in names]
    for e in experts:
        print(f"  trained {e['name']}: {e['seconds']:.1f} s, {e['tokens']} tokens", flush=True)
    modpo = []
    for w in interior:
        modpo.append(_train(params, work, weights=[float(x) for x in w]))
        print(f"  trained {modpo[-1]['name']}: {modpo[-1]['seconds']:.1f} s, {modpo[-1]['tokens']} tokens", flush=True)
    return experts, modpo


def _report(args, params, names, grid, experts, modpo, result, eval_seconds) -> dict:
    expert_seconds = sum(e["seconds"] for e in experts)
    expert_tokens = sum(e["tokens"] for e in experts)
    modpo_seconds = expert_seconds + sum(m["seconds"] for m in modpo)
    modpo_tokens = expert_tokens + sum(m["tokens"] for m in modpo)
    return {
        "mode": "tiny" if args.tiny else "default",
        "objectives": names,
        "reference_point": result.reference_point,
        "grid_vectors": len(grid),
        "n_prompts": int(result.metrics["n_prompts"]),
        **_hv_ratio(result, params, names),
        "mde_per_objective": {k: round(v, 4) for k, v in result.mde.get("judges", {}).items()},
        "merge_minus_modpo_at_same_weights": _merge_vs_modpo(result, params, names),
        "train_seconds_merged": expert_seconds,
        "train_seconds_modpo": modpo_seconds,
        "train_tokens_merged": expert_tokens,
        "train_tokens_modpo": modpo_tokens,
        "compute_ratio_seconds": expert_seconds / modpo_seconds,
        "compute_ratio_tokens": expert_tokens / modpo_tokens if modpo_tokens else float("nan"),
        "front_eval_seconds": eval_seconds,
        "n_candidates": result.n_candidates,
        "base": next(({n: round(r.objectives[n], 4) for n in names} for r in result.records if r.kind == "base"), None),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model and synthetic pairs (quick check)")
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    parser.add_argument("--divisions", type=int, default=None,
                        help="simplex grid step 1/divisions (default: tiny 5, default model 3)")
    parser.add_argument("--prompts", type=int, default=None, help="held-out prompts per candidate")
    parser.add_argument("--work", default=str(REPO / ".cache" / "bench" / "front"))
    args = parser.parse_args()

    from paretoflow import front
    from paretoflow.pareto import simplex_grid

    work = Path(args.work) / ("tiny" if args.tiny else "default")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    params = _tiny_project(work) if args.tiny else _default_project(work, Path(args.params))
    names = params.objective_names
    divisions = args.divisions or (5 if args.tiny else 3)
    grid = simplex_grid(len(names), 1.0 / divisions)
    interior = [w for w in grid if (w > 0).sum() > 1]
    print(f"objectives {names}; grid 1/{divisions}: {len(grid)} weight vectors, "
          f"{len(names)} experts + {len(interior)} MODPO trainings", flush=True)
    experts, modpo = _train_all(params, work, names, interior)

    budget = params.front.budget(params.project.profile)
    budget.grid_step, budget.weight_vectors = 1.0 / divisions, []
    if args.prompts:
        budget.n_eval_prompts = args.prompts
    params.front.method, params.front.merge_method, params.front.include_adapters = "grid", "exact", True
    start = time.perf_counter()
    result = front.run(params, work, progress=False)
    report = _report(args, params, names, grid, experts, modpo, result, time.perf_counter() - start)
    print(json.dumps(report, indent=2))
    for r in result.records:
        print(f"  {'*' if r.non_dominated else ' '}{'!' if r.distinguishable else ' '} {r.name:24s} "
              + " ".join(f"{n}={r.objectives[n]:.3f} ({r.vs_base[n].diff:+.3f})" for n in names))
    ratio_low = report["hv_ratio_ci"][0]
    goal = report["hv_ratio_merged_over_modpo"] >= 0.95 and report["compute_ratio_seconds"] <= 1 / 3
    print(f"goal (HV ratio >= 0.95 at <= 1/3 compute): {'met' if goal else 'not met'} on the point estimate; "
          f"{'also' if ratio_low >= 0.95 else 'not'} at the interval's lower bound ({ratio_low:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
