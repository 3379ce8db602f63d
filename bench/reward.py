"""Reward model benchmark: feature throughput per backbone, RM training vs a baseline.

In one process:
1. Feature extraction throughput (sequences/s) of the MiniLM backbone and of the policy
   backbone (the default SmolLM2-135M) on the same `--n` (prompt, response) pairs, and
   their ratio.
2. The reward stage (`paretoflow.reward.train.run`) on the data (features cached first,
   so the training time excludes extraction), beside a plain logistic-regression
   baseline (sklearn, on the same features, the same split, the same test pairs): per
   objective test accuracy, fit time, and the ratios.

Data: `data/pairs` (+ curated labels) under `--root` when present ("real"); else a
stand-in built from the built-in prompts of data/raw/prompts: five templated responses
per prompt (refusal, one word, on-topic, off-topic = another prompt's answer, long
on-topic), rated by the real judge mixture, pairs = best vs worst per objective. The
script says which it used.

    .venv/bin/python bench/reward.py                 # MiniLM (CPU profile), n=32
    .venv/bin/python bench/reward.py --n 64 --backbone policy
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _split(prompt_id: str, role: str) -> str:
    if role == "eval":
        return "test"
    fraction = int(hashlib.sha256(prompt_id.encode()).hexdigest()[:8], 16) / 16**8
    return "train" if fraction < 0.8 else "val" if fraction < 0.9 else "test"


def build_standin(params, root: Path, limit: int | None) -> Path:
    """Write data/pairs-shaped tables under `root` from built-in prompts + judge ratings."""
    from paretoflow import schema
    from paretoflow.judges import build_mixture

    rows = []
    for role, name in (("train", "train.jsonl"), ("eval", "eval.jsonl")):
        for line in (REPO / "data/raw/prompts" / name).read_text().splitlines():
            if line.strip():
                rows.append((role, json.loads(line)))
    if limit:
        rows = rows[:limit]
    prompts, responses, ratings, pairs = [], [], [], []
    on_topic = []
    for role, row in rows:
        messages = row.get("messages") or [{"role": "user", "content": row["prompt"]}]
        text = messages[-1]["content"]
        words = [w.strip(".,?!:;") for w in text.split() if len(w) > 3][:8]
        on_topic.append(f"Here is what matters about {' '.join(words)}: start simple and check each step.")
    for index, (role, row) in enumerate(rows):
        messages = row.get("messages") or [{"role": "user", "content": row["prompt"]}]
        pid = schema.prompt_id(messages)
        prompts.append({"prompt_id": pid, "messages": schema.messages_json(messages), "text": messages[-1]["content"],
                        "source": "builtin", "split": _split(pid, role), "tags": json.dumps(row.get("tags", []))})
        candidates = [
            "I'm sorry, but I can't help with that request.",
            "Okay.",
            on_topic[index],
            on_topic[(index * 7 + 3) % len(on_topic)],
            on_topic[index] + " " + " ".join(["In more detail, each part deserves care and a concrete example."] * 4),
        ]
        for text in dict.fromkeys(candidates):
            responses.append({"response_id": schema.response_id(pid, text), "prompt_id": pid, "text": text, "origin": "template"})
    mixture = build_mixture(params, root)
    prompt_text = {p["prompt_id"]: p["text"] for p in prompts}
    prompt_tags = {p["prompt_id"]: json.loads(p["tags"]) for p in prompts}
    values = mixture.score([prompt_text[r["prompt_id"]] for r in responses], [r["text"] for r in responses],
                           [prompt_tags[r["prompt_id"]] for r in responses])
    for objective in params.objectives:
        low, high = objective.scale
        for r, v in zip(responses, values[objective.name]):
            ratings.append({"response_id": r["response_id"], "objective": objective.name, "value": float(v),
                            "scale_min": low, "scale_max": high, "rater": "judges"})
        by_prompt: dict[str, list] = {}
        for r, v in zip(responses, values[objective.name]):
            by_prompt.setdefault(r["prompt_id"], []).append((float(v), r["response_id"]))
        for pid, scored in by_prompt.items():
            scored.sort()
            (worst, rejected), (best, chosen) = scored[0], scored[-1]
            if best - worst >= params.reward.combined_min_margin:
                pairs.append({"pair_id": schema.pair_id(pid, chosen, rejected, objective.name), "prompt_id": pid,
                              "chosen_id": chosen, "rejected_id": rejected, "objective": objective.name,
                              "margin": best - worst, "source": "bench_standin"})
    out = root / params.pairs.out_dir
    out.mkdir(parents=True, exist_ok=True)
    for name, table in (("prompts", prompts), ("responses", responses), ("ratings", ratings), ("pairs", pairs)):
        schema.frame(name, table).to_parquet(out / f"{name}.parquet")
    return out


def throughput(spec, prompts, responses) -> tuple[float, float]:
    """(seconds, sequences/s) for one uncached pass; the model load is timed apart."""
    from paretoflow.reward.features import build_backbone

    backbone = build_backbone(spec)
    backbone.encode(prompts[:2], responses[:2], progress=False)  # load + warm up
    started = time.perf_counter()
    backbone.encode(prompts, responses, progress=False)
    seconds = time.perf_counter() - started
    return seconds, len(responses) / seconds


def logistic_baseline(params, root: Path, result) -> dict[str, dict[str, float]]:
    """sklearn LogisticRegression on x_c − x_r (both orders), same features/split/pairs."""
    from sklearn.linear_model import LogisticRegression

    from paretoflow.reward.features import build_backbone, extract_features
    from paretoflow.reward.fit import single_thread
    from paretoflow.reward.model import RewardModel
    from paretoflow.reward.train import held_out_splits, load_preference_data
    from paretoflow.schema import parse_messages

    data = load_preference_data(root, params)
    model = RewardModel.load(result.out_dir, root=root)
    used = set(data.ratings["response_id"]) | set(data.pairs["chosen_id"]) | set(data.pairs["rejected_id"])
    responses = data.responses[data.responses["response_id"].isin(used)].sort_values("response_id").reset_index(drop=True)
    prompts = data.prompts.set_index("prompt_id")
    features = extract_features(
        build_backbone(model.backbone_spec, root),
        [parse_messages(prompts.loc[p, "messages"]) for p in responses["prompt_id"]],
        responses["text"].tolist(), cache_dir=root / params.reward.feature_cache_dir, progress=False,
    )
    assert features.from_cache, "the baseline must read the same cached features as the reward model"
    position = {r: i for i, r in enumerate(responses["response_id"])}
    splits, _ = held_out_splits(prompts["split"], set(responses["prompt_id"]))
    t = model.tensors
    x = (features.pair - t["feature_mean"]) / t["feature_scale"]
    out = {}
    for name in params.objective_names:
        table = data.pairs[data.pairs["objective"] == name]
        split = splits.reindex(table["prompt_id"]).to_numpy()
        rows = {s: table[split == s] for s in ("train", "test")}
        if rows["train"].empty or rows["test"].empty:
            continue
        d_train = x[[position[c] for c in rows["train"]["chosen_id"]]] - x[[position[r] for r in rows["train"]["rejected_id"]]]
        d_test = x[[position[c] for c in rows["test"]["chosen_id"]]] - x[[position[r] for r in rows["test"]["rejected_id"]]]
        started = time.perf_counter()
        classifier = LogisticRegression(fit_intercept=False, max_iter=2000)  # sklearn default C=1
        with single_thread():  # the same threading as the reward model's fits
            classifier.fit(np.vstack([d_train, -d_train]), np.r_[np.ones(len(d_train)), np.zeros(len(d_train))])
        seconds = time.perf_counter() - started
        margin = d_test @ classifier.coef_[0]
        out[name] = {"accuracy": float(np.mean((margin > 0) + 0.5 * (margin == 0))), "fit_seconds": seconds,
                     "n_train_pairs": int(len(d_train)), "n_test_pairs": int(len(d_test))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="sequences for the throughput pass (policy: ~0.2 s each on 2 cores)")
    ap.add_argument("--root", default=str(REPO), help="project root holding data/pairs")
    ap.add_argument("--backbone", choices=["minilm", "policy"], default="minilm", help="backbone for the RM run")
    ap.add_argument("--limit", type=int, default=None, help="stand-in data: use only the first N built-in prompts")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()

    from paretoflow.config import load_params
    from paretoflow.reward.features import BackboneSpec
    from paretoflow.reward.train import run

    root = Path(args.root)
    params = load_params(root / "params.yaml", overrides={"reward": {"cpu": {"backbone": args.backbone}}})
    if (root / params.pairs.out_dir / "pairs.parquet").exists():
        data_kind, work = f"real: {root / params.pairs.out_dir}", root
    else:
        work = Path(tempfile.mkdtemp(prefix="pf-bench-reward-"))
        (work / ".cache").symlink_to((REPO / ".cache").resolve(), target_is_directory=True)
        started = time.perf_counter()
        build_standin(params, work, args.limit)
        data_kind = f"stand-in (no data/pairs): built-in prompts x 5 templated responses, judge-rated ({time.perf_counter() - started:.0f} s to build) in {work}"
    print(f"data: {data_kind}")

    if not args.skip_throughput:
        import pandas as pd

        from paretoflow.schema import parse_messages

        pairs_dir = work / params.pairs.out_dir
        responses = pd.read_parquet(pairs_dir / "responses.parquet").head(args.n)
        prompts = pd.read_parquet(pairs_dir / "prompts.parquet").set_index("prompt_id")
        messages = [parse_messages(prompts.loc[p, "messages"]) for p in responses["prompt_id"]]
        texts = responses["text"].tolist()
        minilm_s, minilm_rate = throughput(BackboneSpec(kind="minilm", max_length=params.reward.cpu.max_length), messages, texts)
        policy_s, policy_rate = throughput(
            BackboneSpec(kind="policy", policy=params.model.policy, models_cache_dir=str(root / params.model.cache_dir),
                         max_length=params.reward.cpu.max_length, batch_size=params.reward.cpu.batch_size), messages, texts)
        print(f"feature throughput on {len(texts)} sequences: minilm {minilm_rate:.1f} seq/s ({minilm_s:.1f} s), "
              f"policy {policy_rate:.1f} seq/s ({policy_s:.1f} s); minilm/policy = {minilm_rate / policy_rate:.1f}x")

    started = time.perf_counter()
    first = run(params, work, progress=True)
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    result = run(params, work, progress=False)  # features now cached: this is training + report time
    train_s = time.perf_counter() - started
    report = json.loads(result.report_path.read_text())
    print(f"reward stage ({args.backbone}): first run {first_s:.1f} s (features {first.metrics['feature_seconds']:.1f} s), "
          f"cached-feature run {train_s:.1f} s (heads {result.metrics['heads_seconds']:.2f} s, gating {result.metrics['gating_seconds']:.2f} s)")
    print(f"splits: {report['data']['responses_per_split']} ({report['data']['split_note']})")
    baseline = logistic_baseline(params, work, result)
    print(f"{'objective':<14} {'pairs':>6} {'RM acc':>7} {'RM ECE':>7} {'LR acc':>7} {'RM-LR':>7}")
    for name, values in report["evaluation"].items():
        lr = baseline.get(name, {})
        rm_acc, lr_acc = values["accuracy"], lr.get("accuracy")
        diff = f"{rm_acc - lr_acc:+.3f}" if rm_acc is not None and lr_acc is not None else "n/a"
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{name:<14} {values['n_test_pairs']:>6} {fmt(rm_acc):>7} {fmt(values['ece']):>7} {fmt(lr_acc):>7} {diff:>7}")
    rm_fit = result.metrics["heads_seconds"] + result.metrics["gating_seconds"]
    lr_fit = sum(v["fit_seconds"] for v in baseline.values())
    print(f"fit time: RM heads+gating {rm_fit:.2f} s vs logistic regression {lr_fit:.2f} s (all objectives); "
          f"ratio RM/LR = {rm_fit / max(lr_fit, 1e-9):.1f}x")
    print(f"report: {result.report_md_path}")


if __name__ == "__main__":
    main()
