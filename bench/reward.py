"""Reward model benchmark on the shipped real data, in one run.

1. The reward stage as configured (`paretoflow.reward.train.run`), timed: texts encoded
   (0 when the per-text store has them all), feature and fit seconds.
2. Curate's *full* test split of every curated pair source (no sampling cap), per
   objective, accuracy and length-controlled (LC: chosen is the shorter) accuracy of
   - the stage's main model and its independent model (the Goodhart guard), with how
     often they order a pair alike and the correlation of their errors,
   - the previous guard: main on half "a" of the train prompts, a same-view twin on half "b",
   - refits on the same features: each head on the backbone / lexical view alone, length
     debiasing off and at 1.0, the ArmoRM verbosity penalty on the overall score,
   - a logistic-regression probe (sklearn, C=1, no intercept) on the backbone features
     and the same training pairs, and the rules "longer wins" / "shorter wins",
   with 95% paired prompt-cluster bootstrap intervals (scipy.stats.bootstrap) of main −
   probe and main − backbone-only.
3. `--cv K`: K-fold prompt-grouped CV on curate's train+val prompts: the stage's recipe
   (`fit_model`, the params' caps on each fold's training prompts) scored on every pair
   of the held-out prompts, for the variants above; paired intervals against main.
4. `--sizes 300,600,1200`: test accuracy vs `max_pairs_per_source`, with the texts each
   size encodes (the CPU budget: MiniLM ~40 texts/s on 2 idle cores).

    OMP_NUM_THREADS=1 .venv/bin/python bench/reward.py --root <project with curated data> --cv 5 --sizes 300,600,1200
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


def correct(scores, c, r) -> np.ndarray:
    return (scores[c] > scores[r]) + 0.5 * (scores[c] == scores[r])


def paired_interval(a: np.ndarray, b: np.ndarray, prompt_of) -> tuple[float, float]:
    """95% bootstrap CI of mean(a) − mean(b) (per-pair correctness), resampling prompts."""
    from scipy.stats import bootstrap

    frame = pd.DataFrame({"prompt": prompt_of, "diff": a - b}).groupby("prompt")["diff"].agg(["sum", "count"])
    result = bootstrap((frame["sum"].to_numpy(), frame["count"].to_numpy()), lambda s, n: s.sum() / n.sum(),
                       paired=True, vectorized=False, n_resamples=2000, random_state=0, method="percentile")
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def accuracy_interval(ok: np.ndarray, prompt_of) -> tuple[float, float]:
    """95% bootstrap CI of the accuracy (per-pair correctness), resampling prompts."""
    return paired_interval(ok, np.zeros_like(ok, dtype=float), prompt_of)


def with_reward(params, **update):
    return params.model_copy(update={"reward": params.reward.model_copy(update=update)})


def uncapped(params):
    """Params without sampling caps or judge ratings: every curated pair, for evaluation."""
    sources = {n: params.reward.weights(n).model_copy(update={"judges": 0.0}) for n in params.objective_names}
    return with_reward(params, max_pairs_per_source=None, max_pairs_per_prompt=None, sources=sources)


DEBIAS = [0.0, 1.0]  # --debias: length_debias strengths refitted beside the params' own


def variants(params) -> dict:
    """Refits of the main recipe: label -> (params, views or None, train half or None)."""
    names = params.objective_names
    debias = params.reward.length_debias
    out = {
        "main": (params, None, None),
        "backbone view only": (params, {n: ["backbone"] for n in names}, None),
        "lexical view only": (params, {n: ["lexical"] for n in names}, None),
        "both views": (params, {n: ["backbone", "lexical"] for n in names}, None),
    }
    for strength in DEBIAS:
        out[f"length_debias {strength:g}"] = (with_reward(params, length_debias={n: strength for n in debias}), None, None)
    out["previous guard: main on half a"] = (params, None, "a")
    out["previous guard: twin on half b"] = (params, None, "b")
    return out


def fit_variants(data, enc, params, train: set[str]) -> dict:
    from paretoflow.reward.train import fit_independent, fit_model, independent_halves

    halves = dict(zip("ab", independent_halves(train, params.project.seed)))
    models = {"independent": fit_independent(data, enc, params, train).model}
    for label, (p, views, half) in variants(params).items():
        models[label] = fit_model(data, enc, p, halves[half] if half else train, label=label, views=views).model
    models["verbosity_penalty 1 (overall)"] = fit_model(data, enc, with_reward(params, verbosity_penalty=1.0), train).model
    return models


def probe_scores(data, enc, params, train: set[str], name: str, test_enc) -> np.ndarray:
    """sklearn logistic regression on the standardised backbone features of the training pairs."""
    from sklearn.linear_model import LogisticRegression

    from paretoflow.reward.fit import single_thread, standardizer

    rows = np.flatnonzero(enc.responses["prompt_id"].isin(train).to_numpy())
    mean, scale = standardizer(enc.pair[rows, : enc.backbone_dim])
    pairs = data.pairs[(data.pairs["objective"] == name) & data.pairs["prompt_id"].isin(train)]
    x = (enc.pair[:, : enc.backbone_dim] - mean) / scale
    d = x[enc.rows(pairs["chosen_id"].tolist())] - x[enc.rows(pairs["rejected_id"].tolist())]
    with single_thread():
        probe = LogisticRegression(fit_intercept=False, max_iter=3000).fit(np.vstack([d, -d]), np.r_[np.ones(len(d)), np.zeros(len(d))])
    return ((test_enc.pair[:, : enc.backbone_dim] - mean) / scale) @ probe.coef_[0]


def objective_table(name, models, test, test_enc, probe, words) -> dict:
    """label -> per-pair correctness on the objective's test pairs (plus c, r, prompts)."""
    from paretoflow.reward.model import OVERALL

    pairs = test.pairs[test.pairs["objective"] == name]
    c, r = test_enc.rows(pairs["chosen_id"].tolist()), test_enc.rows(pairs["rejected_id"].tolist())
    texts = test_enc.responses["text"].tolist()
    scores = {k: m.score_matrix(test_enc.pair, test_enc.prompt, texts) for k, m in models.items()}
    table = {k: s[name] for k, s in scores.items()}
    table["overall (main)"] = scores["main"][OVERALL]
    table["overall, verbosity_penalty 1"] = scores["verbosity_penalty 1 (overall)"][OVERALL]
    del table["verbosity_penalty 1 (overall)"]
    table["probe (logistic regression, backbone)"] = probe
    table["longer wins"], table["shorter wins"] = words, -words
    return {"ok": {k: correct(s, c, r) for k, s in table.items()}, "diff": {k: s[c] - s[r] for k, s in table.items()},
            "lc": words[c] < words[r], "prompts": pairs["prompt_id"].to_numpy()}


def print_table(name: str, t: dict, pairs_against=("probe (logistic regression, backbone)", "backbone view only")) -> None:
    from paretoflow.reward.evaluate import error_agreement

    lc = t["lc"]
    for label, ok in t["ok"].items():
        print(f"{name:<13} {label:<40} {len(ok):>6} {ok.mean():>6.3f} {ok[lc].mean() if lc.any() else float('nan'):>6.3f} ({lc.sum():>3})")
    for label in ("main", "independent"):
        low, high = accuracy_interval(t["ok"][label], t["prompts"])
        lc_low, lc_high = accuracy_interval(t["ok"][label][lc], t["prompts"][lc]) if lc.sum() > 1 else (np.nan, np.nan)
        print(f"{name:<13} {label} accuracy 95% CI [{low:.3f}, {high:.3f}], LC [{lc_low:.3f}, {lc_high:.3f}] (prompt bootstrap)")
    for other in pairs_against:
        low, high = paired_interval(t["ok"]["main"], t["ok"][other], t["prompts"])
        print(f"{name:<13} main − {other}: {t['ok']['main'].mean() - t['ok'][other].mean():+.3f}, 95% CI [{low:+.3f}, {high:+.3f}]")
    for a, b in (("main", "independent"), ("previous guard: main on half a", "previous guard: twin on half b")):
        e = error_agreement(t["diff"][a], t["diff"][b])
        print(f"{name:<13} {a} vs {b}: agreement {e['agreement']:.3f}, both wrong {e['both_wrong']:.3f}, "
              f"error correlation {e['error_correlation']:+.3f}")


def test_split(params, root, data, enc) -> None:
    """Section 2: every pair of curate's test split."""
    from paretoflow.reward.data import load_preference_data
    from paretoflow.reward.model import response_lengths
    from paretoflow.reward.train import encode

    train = set(data.prompts.index[data.prompts["split"] == "train"])
    models = fit_variants(data, enc, params, train)
    test = load_preference_data(root, uncapped(params))
    test_prompts = set(test.prompts.index[test.prompts["split"] == "test"])
    test.pairs = test.pairs[test.pairs["prompt_id"].isin(test_prompts)].reset_index(drop=True)
    test.ratings = test.ratings.iloc[:0]
    used = set(test.pairs["chosen_id"]) | set(test.pairs["rejected_id"])
    test.responses = test.responses[test.responses["response_id"].isin(used)].reset_index(drop=True)
    test_enc = encode(test, uncapped(params), root, progress=False)
    words = response_lengths(test_enc.responses["text"].tolist())
    print(f"\n== curate's full test split (train pairs: the stage's sample)\n{'objective':<13} {'scorer':<40} {'pairs':>6} {'acc':>6} {'LC (n)':>12}")
    for name in params.objective_names:
        if (test.pairs["objective"] == name).any():
            probe = probe_scores(data, enc, params, train, name, test_enc)
            print_table(name, objective_table(name, models, test, test_enc, probe, words))


def cv_folds(prompt_ids, k: int, seed: int) -> dict[str, int]:
    from paretoflow.reward.data import salted_fraction

    return {p: int(salted_fraction(p, f"bench-cv-{seed}") * k) for p in prompt_ids}


def fold_data(full, params, fold_of: dict, j: int):
    """The stage's view of fold j: held-out prompts → test, caps on the rest's pairs."""
    import copy

    from paretoflow.reward.data import sample_pairs

    data = copy.copy(full)
    held = {p for p, f in fold_of.items() if f == j}
    data.prompts = full.prompts.assign(split=np.where(full.prompts.index.isin(held), "test", full.prompts["split"]))
    rest = full.pairs[full.pairs["prompt_id"].isin(set(fold_of) - held)]
    capped, _ = sample_pairs(rest, params.reward.max_pairs_per_source, params.reward.max_pairs_per_prompt, params.project.seed)
    data.pairs = pd.concat([capped, full.pairs[full.pairs["prompt_id"].isin(held)]], ignore_index=True)
    return data, held


def cross_validation(params, root, k: int) -> None:
    """Section 3: the stage's recipe in K prompt-grouped folds of curate's train+val prompts."""
    from paretoflow.reward.data import load_preference_data
    from paretoflow.reward.evaluate import error_agreement
    from paretoflow.reward.model import response_lengths
    from paretoflow.reward.train import encode, fit_independent, fit_model, independent_halves

    every_pair = with_reward(params, max_pairs_per_source=None, max_pairs_per_prompt=None)  # judge ratings kept
    full = load_preference_data(root, every_pair)
    enc = encode(full, every_pair, root, progress=False)
    words, texts = response_lengths(enc.responses["text"].tolist()), enc.responses["text"].tolist()
    fold_of = cv_folds(full.prompts.index[full.prompts["split"].isin(["train", "val"])], k, params.project.seed)
    out: dict = {}
    for j in range(k):
        data, held = fold_data(full, params, fold_of, j)
        train = set(data.prompts.index[data.prompts["split"] == "train"])
        halves = dict(zip("ab", independent_halves(train, params.project.seed)))
        models = {"independent": fit_independent(data, enc, params, train).model}
        for label, (p, views, half) in variants(params).items():
            models[label] = fit_model(data, enc, p, halves[half] if half else train, views=views).model
        scores = {label: m.score_matrix(enc.pair, enc.prompt, texts) for label, m in models.items()}
        for name in params.objective_names:
            pairs = data.pairs[(data.pairs["objective"] == name) & data.pairs["prompt_id"].isin(held)]
            c, r = enc.rows(pairs["chosen_id"].tolist()), enc.rows(pairs["rejected_id"].tolist())
            row = out.setdefault(name, {"lc": [], "prompts": [], "diff": {}})
            row["lc"].append(words[c] < words[r])
            row["prompts"].append(pairs["prompt_id"].to_numpy())
            for label, s in scores.items():
                row["diff"].setdefault(label, []).append(s[name][c] - s[name][r])
        print(f"fold {j + 1}/{k} done", flush=True)
    print(f"\n== {k}-fold prompt-grouped CV on curate's train+val prompts (caps on training folds, every held-out pair)")
    for name, row in out.items():
        lc, prompts = np.concatenate(row["lc"]), np.concatenate(row["prompts"])
        if not lc.size:
            continue
        diff = {label: np.concatenate(v) for label, v in row["diff"].items()}
        ok = {label: (d > 0) + 0.5 * (d == 0) for label, d in diff.items()}
        for label in ("main", "independent"):
            low, high = accuracy_interval(ok[label], prompts)
            lc_low, lc_high = accuracy_interval(ok[label][lc], prompts[lc])
            print(f"{name:<13} {label} CV accuracy 95% CI [{low:.3f}, {high:.3f}], LC [{lc_low:.3f}, {lc_high:.3f}] (prompt bootstrap)")
        for label, v in ok.items():
            interval = "" if label == "main" else "  main − this: {:+.3f} [{:+.3f}, {:+.3f}]".format(
                ok["main"].mean() - v.mean(), *paired_interval(ok["main"], v, prompts))
            print(f"{name:<13} {label:<32} {len(v):>6} {v.mean():.3f} LC {v[lc].mean() if lc.any() else float('nan'):.3f} ({lc.sum()}){interval}")
        for a, b in (("main", "independent"), ("previous guard: main on half a", "previous guard: twin on half b")):
            e = error_agreement(diff[a], diff[b])
            print(f"{name:<13} {a} vs {b}: agreement {e['agreement']:.3f}, error correlation {e['error_correlation']:+.3f}")


def sizes(params, root, values: list[int], test_enc_cache: dict) -> None:
    """Section 4: test accuracy vs max_pairs_per_source, and the texts each size encodes."""
    from paretoflow.reward.data import load_preference_data
    from paretoflow.reward.train import encode, fit_model

    full = load_preference_data(root, uncapped(params))
    test_prompts = set(full.prompts.index[full.prompts["split"] == "test"])
    enc_full = encode(full, uncapped(params), root, progress=False)
    print("\n== accuracy vs max_pairs_per_source (main recipe, curate's full test split)")
    for size in values:
        sized = with_reward(params, max_pairs_per_source=size)
        data = load_preference_data(root, sized)
        enc = encode(data, sized, root, progress=False)
        model = fit_model(data, enc, sized, set(data.prompts.index[data.prompts["split"] == "train"])).model
        scores = model.score_matrix(enc_full.pair, enc_full.prompt, enc_full.responses["text"].tolist())
        n_texts = len(enc.responses) + data.responses["prompt_id"].nunique()
        line = []
        for name in params.objective_names:
            pairs = full.pairs[(full.pairs["objective"] == name) & full.pairs["prompt_id"].isin(test_prompts)]
            if pairs.empty:
                continue
            c, r = enc_full.rows(pairs["chosen_id"].tolist()), enc_full.rows(pairs["rejected_id"].tolist())
            words = np.array([len(t.split()) for t in enc_full.responses["text"]])
            ok, lc = correct(scores[name], c, r), words[c] < words[r]
            line.append(f"{name} {ok.mean():.3f} (LC {ok[lc].mean():.3f})")
        print(f"size {size:>5}: {data.sampling} | ~{n_texts} texts (responses + prompts) | " + ", ".join(line), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(REPO), help="project root with curated data (curate.out_dir)")
    ap.add_argument("--cv", type=int, default=0, help="K of the prompt-grouped CV (0 = skip)")
    ap.add_argument("--sizes", default="", help="comma list of max_pairs_per_source values to sweep")
    ap.add_argument("--skip-test", action="store_true", help="skip sections 1-2")
    ap.add_argument("--debias", default="0,1", help="length_debias strengths to refit (objectives of params.reward.length_debias)")
    args = ap.parse_args()
    DEBIAS[:] = [float(v) for v in args.debias.split(",") if v.strip()]

    from paretoflow.config import load_params
    from paretoflow.reward.data import load_preference_data
    from paretoflow.reward.train import encode, run

    root = Path(args.root)
    params = load_params(root / "params.yaml")
    if not args.skip_test:
        started = time.perf_counter()
        result = run(params, root, progress=False)
        print(f"reward stage: {time.perf_counter() - started:.1f} s (features {result.metrics['feature_seconds']:.1f} s, "
              f"fit {result.metrics['fit_seconds']:.1f} s); caps: {params.reward.max_pairs_per_source} pairs/source, "
              f"{params.reward.max_pairs_per_prompt} pairs/prompt")
        data = load_preference_data(root, params)
        test_split(params, root, data, encode(data, params, root, progress=False))
    if args.cv:
        cross_validation(params, root, args.cv)
    if args.sizes:
        sizes(params, root, [int(s) for s in args.sizes.split(",") if s.strip()], {})


if __name__ == "__main__":
    main()
