"""Reward model benchmark on the shipped real data, in one run.

1. The reward stage as configured (`paretoflow.reward.train.run`, with the params'
   sampling caps), timed: feature extraction (first run vs the per-text store) and fit.
2. On curate's *full* test split of every curated pair source (no sampling cap: all test
   prompts, all their pairs), per objective: test accuracy and length-controlled (LC)
   accuracy of
   - the stage's model (main) and its independent model (the Goodhart guard),
   - variants refitted on the same features: main on all train prompts (not half a),
     length debiasing off / on (`length_debias`), and the ArmoRM `verbosity_penalty`
     on the overall score off / on,
   - a logistic-regression probe (sklearn, C=1, no intercept) on the same standardised
     features and the same training pairs,
   - the rules "longer wins" / "shorter wins" (word counts; ties count 0.5),
   with a 95% prompt-cluster bootstrap interval of main − probe (scipy.stats.bootstrap,
   paired over test prompts).
3. `--sizes 60,150,300`: accuracy vs `max_pairs_per_source` (the default's trade-off).

    OMP_NUM_THREADS=1 .venv/bin/python bench/reward.py --root <project with curated data>
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def accuracy(scores, c, r) -> float:
    return float(np.mean((scores[c] > scores[r]) + 0.5 * (scores[c] == scores[r]))) if len(c) else float("nan")


def rows_for(scores, words, c, r) -> dict:
    lc = words[c] < words[r]
    return {"acc": accuracy(scores, c, r), "lc": accuracy(scores, c[lc], r[lc]), "n": len(c), "n_lc": int(lc.sum())}


def paired_interval(a, b, c, r, prompt_of) -> tuple[float, float]:
    """95% bootstrap CI of accuracy(a) − accuracy(b), resampling test prompts (clusters)."""
    from scipy.stats import bootstrap

    diff = ((a[c] > a[r]) + 0.5 * (a[c] == a[r])) - ((b[c] > b[r]) + 0.5 * (b[c] == b[r]))
    frame = pd.DataFrame({"prompt": prompt_of, "diff": diff}).groupby("prompt")["diff"].agg(["sum", "count"])
    result = bootstrap((frame["sum"].to_numpy(), frame["count"].to_numpy()), lambda s, n: s.sum() / n.sum(),
                       paired=True, vectorized=False, n_resamples=2000, random_state=0, method="percentile")
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def full_test_data(params, root):
    """Curated data without sampling caps or judge ratings, restricted to test prompts."""
    from paretoflow.reward.data import load_preference_data

    sources = {n: {"judges": 0.0} for n in params.objective_names}
    uncapped = params.model_copy(update={"reward": params.reward.model_copy(update={
        "max_pairs_per_source": None, "max_pairs_per_prompt": None,
        "sources": {n: params.reward.weights(n).model_copy(update=v) for n, v in sources.items()}})})
    data = load_preference_data(root, uncapped)
    test = set(data.prompts.index[data.prompts["split"] == "test"])
    data.pairs = data.pairs[data.pairs["prompt_id"].isin(test)].reset_index(drop=True)
    data.ratings = data.ratings.iloc[:0]
    used = set(data.pairs["chosen_id"]) | set(data.pairs["rejected_id"])
    data.responses = data.responses[data.responses["response_id"].isin(used)].reset_index(drop=True)
    return uncapped, data


def variant(params, root, data, enc, update: dict, label: str, all_train: bool = False):
    """Refit the stage's model with `update` applied to params.reward."""
    from paretoflow.reward.train import fit_model, independent_halves

    p = params.model_copy(update={"reward": params.reward.model_copy(update=update)})
    train = set(data.prompts.index[data.prompts["split"] == "train"])
    prompts = train if all_train else independent_halves(train, params.project.seed)[0]
    return fit_model(data, enc, p, prompts, label=label).model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(REPO), help="project root with curated data (curate.out_dir)")
    ap.add_argument("--sizes", default="", help="comma list of max_pairs_per_source values to sweep")
    args = ap.parse_args()

    from sklearn.linear_model import LogisticRegression

    from paretoflow.config import load_params
    from paretoflow.reward.data import load_preference_data
    from paretoflow.reward.fit import single_thread
    from paretoflow.reward.model import OVERALL, RewardModel, response_lengths
    from paretoflow.reward.train import INDEPENDENT_DIR, encode, run

    root = Path(args.root)
    params = load_params(root / "params.yaml")
    started = time.perf_counter()
    result = run(params, root, progress=False)
    print(f"reward stage: {time.perf_counter() - started:.1f} s (features {result.metrics['feature_seconds']:.1f} s, "
          f"fit {result.metrics['fit_seconds']:.1f} s); caps: {params.reward.max_pairs_per_source} prompts/source, "
          f"{params.reward.max_pairs_per_prompt} pairs/prompt")
    main_model = RewardModel.load(result.out_dir, root=root)
    independent = RewardModel.load(result.out_dir / INDEPENDENT_DIR, root=root)

    data = load_preference_data(root, params)  # the stage's (sampled) training data
    enc = encode(data, params, root, progress=False)
    models = {
        "main (half a)": main_model, "independent (half b)": independent,
        "all train prompts": variant(params, root, data, enc, {}, "all", all_train=True),
        "length_debias off": variant(params, root, data, enc, {"length_debias": {}}, "half a"),
        "length_debias 1.0": variant(params, root, data, enc, {"length_debias": {n: 1.0 for n in params.objective_names}}, "half a"),
        "verbosity_penalty 1 (overall)": variant(params, root, data, enc, {"verbosity_penalty": 1.0}, "half a"),
    }
    full_params, test = full_test_data(params, root)
    test_enc = encode(test, full_params, root, progress=False)
    texts = test_enc.responses["text"].tolist()
    words = response_lengths(texts)
    backbone = test_enc.pair[:, : test_enc.backbone_dim]
    scores = {k: m.score_features(backbone, test_enc.prompt, texts) for k, m in models.items()}
    # Probe: same standardised features, same training pairs as the main model's heads.
    train_rows = enc.responses["prompt_id"].isin(set(data.prompts.index[data.prompts["split"] == "train"])).to_numpy()
    t = main_model.tensors
    x_train = (enc.pair - t["feature_mean"]) / t["feature_scale"]
    x_test = (test_enc.pair - t["feature_mean"]) / t["feature_scale"]
    print(f"\nfull curate test split; train pairs from the stage's sample (train responses {int(train_rows.sum())})")
    print(f"{'objective':<13} {'scorer':<30} {'pairs':>6} {'acc':>6} {'LC (n)':>12}")
    for name in params.objective_names:
        pairs = test.pairs[test.pairs["objective"] == name]
        if pairs.empty:
            continue
        c, r = test_enc.rows(pairs["chosen_id"].tolist()), test_enc.rows(pairs["rejected_id"].tolist())
        train_pairs = data.pairs[(data.pairs["objective"] == name) & data.pairs["prompt_id"].isin(data.prompts.index[data.prompts["split"] == "train"])]
        d = x_train[enc.rows(train_pairs["chosen_id"].tolist())] - x_train[enc.rows(train_pairs["rejected_id"].tolist())]
        with single_thread():
            probe = LogisticRegression(fit_intercept=False, max_iter=3000).fit(np.vstack([d, -d]), np.r_[np.ones(len(d)), np.zeros(len(d))])
        table = {k: s[name] for k, s in scores.items()}
        table["overall (main)"] = scores["main (half a)"][OVERALL]
        table["overall, verbosity_penalty 1"] = scores["verbosity_penalty 1 (overall)"][OVERALL]
        table["probe (logistic regression)"] = x_test @ probe.coef_[0]
        table["longer wins"], table["shorter wins"] = words, -words
        for label, s in table.items():
            m = rows_for(s, words, c, r)
            print(f"{name:<13} {label:<30} {m['n']:>6} {m['acc']:>6.3f} {m['lc']:>6.3f} ({m['n_lc']:>3})")
        low, high = paired_interval(table["main (half a)"], table["probe (logistic regression)"], c, r, pairs["prompt_id"].to_numpy())
        low2, high2 = paired_interval(table["all train prompts"], table["probe (logistic regression)"], c, r, pairs["prompt_id"].to_numpy())
        print(f"{name:<13} main − probe 95% CI [{low:+.3f}, {high:+.3f}]; all-train − probe [{low2:+.3f}, {high2:+.3f}] (prompt bootstrap)")

    for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
        sized = params.model_copy(update={"reward": params.reward.model_copy(update={"max_pairs_per_source": size})})
        d2 = load_preference_data(root, sized)
        e2 = encode(d2, sized, root, progress=False)
        train = set(d2.prompts.index[d2.prompts["split"] == "train"])
        from paretoflow.reward.train import fit_model

        model = fit_model(d2, e2, sized, train, label="all").model
        s = model.score_features(backbone, test_enc.prompt, texts)
        line = []
        for name in params.objective_names:
            pairs = test.pairs[test.pairs["objective"] == name]
            if not pairs.empty:
                m = rows_for(s[name], words, test_enc.rows(pairs["chosen_id"].tolist()), test_enc.rows(pairs["rejected_id"].tolist()))
                line.append(f"{name} {m['acc']:.3f} (LC {m['lc']:.3f})")
        print(f"size {size:>4} prompts/source, {len(e2.responses)} responses, features {e2.seconds:.0f} s: " + ", ".join(line))


if __name__ == "__main__":
    main()
