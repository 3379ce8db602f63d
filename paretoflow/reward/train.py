"""Reward stage: preference data → ArmoRM-style reward model + honest report.

`run(params, root)` reads the on-policy tables in `pairs.out_dir` (ratings by the
judges) and, when present, human ratings/pairs from `curate.out_dir`; extracts
(cached) backbone features; fits stage 1 (one head per declared objective: ridge on
absolute ratings where the objective has ratings, else a Bradley-Terry head on its
pairs) and stage 2 (the gating network, see `paretoflow.reward.model`); and writes
artifacts/reward/{model.safetensors, config.json, report.json, report.md, *.png}.

Splits follow the prompts' `split` column: fit on train, pick hyperparameters (ridge
alpha, early-stopping epoch, calibration temperature) on val, report on test.

Stage-2 target (departure from ArmoRM, which trained its gate on ~10^5 human overall
preference pairs): with `gating_target: mean_rating`, the gate learns from pairs of the
combined objective, i.e. two responses to one prompt whose unweighted mean of
direction-aware ratings (each rescaled to [0, 1]) differs by at least
`combined_min_margin`, plus any pair whose objective is "overall". Where no such pair
exists (pairs-only data) it falls back to all per-objective pairs (`all_pairs`).

Run: `paretoflow train-rm` (or `python -c "from paretoflow.reward.train import run; ..."`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from paretoflow.config import Params
from paretoflow.metrics import pairwise_accuracy, pairwise_calibration_error
from paretoflow.reward import fit as fitting
from paretoflow.reward.features import BackboneSpec, build_backbone, extract_features
from paretoflow.reward.model import MODEL_FORMAT, OVERALL, RewardModel, response_lengths
from paretoflow.schema import parse_messages

TABLE_NAMES = ("prompts", "responses", "ratings", "pairs")


@dataclass
class PreferenceData:
    """Joined tables: prompts (with split), responses, normalised ratings, pairs."""

    prompts: pd.DataFrame  # prompt_id, messages, split
    responses: pd.DataFrame  # response_id, prompt_id, text
    ratings: pd.DataFrame  # response_id, objective, value in [0, 1], higher = better
    pairs: pd.DataFrame  # prompt_id, chosen_id, rejected_id, objective, source
    files: list[str] = field(default_factory=list)


@dataclass
class RewardResult:
    out_dir: Path
    model_path: Path
    config_path: Path
    report_path: Path
    report_md_path: Path
    plots: list[Path]
    metrics: dict[str, float]  # flat numbers the flow logs to MLflow


# ------------------------------------------------------------------------- data


def _read_table(path: Path, required: list[str]) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    return frame


def _check_finite(frame: pd.DataFrame, column: str, path: Path) -> None:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = frame.index[~np.isfinite(values.to_numpy(dtype=np.float64))]
    if len(bad):
        raise ValueError(f"{path}: row {int(bad[0])}: {column} is not a finite number ({frame.loc[bad[0], column]!r})")


def normalize_ratings(ratings: pd.DataFrame, objectives: dict[str, tuple[str, float, float]], path: Path) -> pd.DataFrame:
    """Ratings of declared objectives → [0, 1], higher better; mean over raters."""
    ratings = ratings[ratings["objective"].isin(objectives)]
    if ratings.empty:
        return pd.DataFrame(columns=["response_id", "objective", "value"])
    for column in ("value", "scale_min", "scale_max"):
        _check_finite(ratings, column, path)
    low = ratings["scale_min"].astype(float).to_numpy()
    high = ratings["scale_max"].astype(float).to_numpy()
    if np.any(high <= low):
        row = ratings.index[np.flatnonzero(high <= low)[0]]
        raise ValueError(f"{path}: row {int(row)}: scale_max must exceed scale_min")
    value = (ratings["value"].astype(float).to_numpy() - low) / (high - low)
    minimize = ratings["objective"].map(lambda o: objectives[o][0] == "minimize").to_numpy(dtype=bool)
    value = np.where(minimize, 1.0 - value, value)
    out = pd.DataFrame({"response_id": ratings["response_id"].to_numpy(), "objective": ratings["objective"].to_numpy(), "value": value})
    return out.groupby(["response_id", "objective"], as_index=False)["value"].mean()


def load_preference_data(root: Path, params: Params) -> PreferenceData:
    """Read data/pairs (and curated ratings/pairs if any) into one joined view."""
    config = params.reward
    objectives = {o.name: (o.direction, *o.scale) for o in params.objectives}
    prompts, responses, ratings, pairs, files = [], [], [], [], []
    for directory, needs_labels in ((root / params.pairs.out_dir, False), (root / params.curate.out_dir, True)):
        paths = {name: directory / f"{name}.parquet" for name in TABLE_NAMES}
        if not (paths["prompts"].exists() and paths["responses"].exists()):
            continue
        if needs_labels and not (paths["ratings"].exists() or paths["pairs"].exists()):
            continue  # curated prompts alone carry no preference
        prompt_table = _read_table(paths["prompts"], ["prompt_id", "messages", "split"])
        prompts.append(prompt_table[["prompt_id", "messages", "split"]])
        responses.append(_read_table(paths["responses"], ["response_id", "prompt_id", "text"])[["response_id", "prompt_id", "text"]])
        files += [str(paths["prompts"]), str(paths["responses"])]
        if paths["ratings"].exists():
            table = _read_table(paths["ratings"], ["response_id", "objective", "value", "scale_min", "scale_max"])
            ratings.append(normalize_ratings(table, objectives, paths["ratings"]))
            files.append(str(paths["ratings"]))
        if paths["pairs"].exists():
            table = _read_table(paths["pairs"], ["prompt_id", "chosen_id", "rejected_id", "objective"])
            table = table.assign(source=table["source"] if "source" in table else directory.name)
            pairs.append(table[["prompt_id", "chosen_id", "rejected_id", "objective", "source"]])
            files.append(str(paths["pairs"]))
    if not prompts:
        raise FileNotFoundError(
            f"no preference data: neither {root / params.pairs.out_dir} nor {root / params.curate.out_dir} "
            "has prompts+responses with ratings or pairs (run the pairs stage first)"
        )
    prompt_frame = pd.concat(prompts).drop_duplicates("prompt_id")
    response_frame = pd.concat(responses).drop_duplicates("response_id")
    rating_frame = pd.concat(ratings) if ratings else pd.DataFrame(columns=["response_id", "objective", "value"])
    rating_frame = rating_frame.groupby(["response_id", "objective"], as_index=False)["value"].mean()
    pair_frame = pd.concat(pairs) if pairs else pd.DataFrame(columns=["prompt_id", "chosen_id", "rejected_id", "objective", "source"])
    pair_frame = pair_frame[pair_frame["objective"].isin(list(objectives) + [OVERALL])]
    pair_frame = pair_frame.drop_duplicates(["chosen_id", "rejected_id", "objective"]).reset_index(drop=True)

    known = set(response_frame["response_id"])
    for column in ("chosen_id", "rejected_id"):
        unknown = ~pair_frame[column].isin(known)
        if unknown.any():
            row = pair_frame[unknown].iloc[0]
            raise ValueError(f"pairs: {column} {row[column]!r} (objective {row['objective']}) has no response row")
    unknown_ratings = ~rating_frame["response_id"].isin(known)
    if unknown_ratings.any():
        raise ValueError(f"ratings: response_id {rating_frame[unknown_ratings].iloc[0]['response_id']!r} has no response row")
    unknown_prompts = ~response_frame["prompt_id"].isin(set(prompt_frame["prompt_id"]))
    if unknown_prompts.any():
        raise ValueError(f"responses: prompt_id {response_frame[unknown_prompts].iloc[0]['prompt_id']!r} has no prompt row")
    return PreferenceData(prompt_frame.reset_index(drop=True), response_frame.reset_index(drop=True), rating_frame, pair_frame, files)


def pairs_from_ratings(ratings: pd.Series, prompt_of: pd.Series, min_margin: float) -> pd.DataFrame:
    """All within-prompt pairs whose rating gap is ≥ min_margin (and > 0): chosen = higher."""
    frame = pd.DataFrame({"value": ratings, "prompt_id": prompt_of.reindex(ratings.index)}).dropna()
    rows = []
    for prompt, group in frame.groupby("prompt_id"):
        ids, values = group.index.to_numpy(), group["value"].to_numpy()
        for i in range(len(ids)):
            for j in range(i + 1, len(ids)):
                gap = values[i] - values[j]
                if abs(gap) >= max(min_margin, 1e-12):
                    chosen, rejected = (ids[i], ids[j]) if gap > 0 else (ids[j], ids[i])
                    rows.append((prompt, chosen, rejected, abs(gap)))
    return pd.DataFrame(rows, columns=["prompt_id", "chosen_id", "rejected_id", "margin"])


# ------------------------------------------------------------------------- training


def backbone_spec(params: Params) -> BackboneSpec:
    config = params.reward
    budget = config.budget(params.project.profile)
    return BackboneSpec(
        kind=budget.backbone,
        policy=(config.backbone_policy or params.model.policy) if budget.backbone == "policy" else None,
        models_cache_dir=params.model.cache_dir,
        max_length=budget.max_length,
        batch_size=budget.batch_size,
    )


def _has_training_data(name: str, data: PreferenceData, rating_wide: pd.DataFrame, split_of_prompt: pd.Series, prompt_of: pd.Series) -> bool:
    """At least 2 rated training responses, or a training pair (from the table or from ratings)."""
    train_prompts = set(split_of_prompt.index[split_of_prompt == "train"])
    if name in rating_wide:
        rated = rating_wide[name].dropna()
        if prompt_of.reindex(rated.index).isin(train_prompts).sum() >= 2:
            return True
    pairs = data.pairs[data.pairs["objective"] == name]
    return bool(pairs["prompt_id"].isin(train_prompts).any())


def _hash_fraction(prompt_id: str) -> float:
    """A stable number in [0, 1) from the content-hash id (same prompt → same side)."""
    import hashlib

    return int(hashlib.sha256(prompt_id.encode()).hexdigest()[:8], 16) / 16**8


def held_out_splits(splits: pd.Series, used_prompts: set[str]) -> tuple[pd.Series, str]:
    """Prompt → split, making sure val and test both hold prompts when possible.

    The pairs stage never samples test prompts (the front is judged on them), so
    on-policy data usually has train and val only. Rather than report on the split that
    picked the hyperparameters, half of the val prompts (by prompt-id hash) become the
    reported test split; with no val prompts either, 10% + 10% of train are carved out.
    The returned note says what was done (it goes into the report).
    """
    splits = splits.copy()
    used = splits[splits.index.isin(used_prompts)]
    counts = used.value_counts()
    if counts.get("test", 0) > 0 and counts.get("val", 0) > 0:
        return splits, "prompt splits as given"
    if counts.get("test", 0) == 0 and counts.get("val", 0) >= 2:
        moved = [pid for pid in used.index[used == "val"] if _hash_fraction(pid) >= 0.5]
        splits[moved] = "test"
        return splits, f"no test prompts in the data: {len(moved)} of {counts['val']} val prompts (prompt-id hash) held out as test"
    if counts.get("test", 0) == 0 and counts.get("val", 0) == 0:
        fractions = {pid: _hash_fraction(pid) for pid in used.index[used == "train"]}
        splits[[p for p, f in fractions.items() if f < 0.1]] = "val"
        splits[[p for p, f in fractions.items() if 0.1 <= f < 0.2]] = "test"
        return splits, "no val/test prompts in the data: 10% + 10% of train prompts (prompt-id hash) held out as val/test"
    return splits, "prompt splits as given (no val prompts: hyperparameters chosen by leave-one-out / train loss)"


def _index(ids, position: dict[str, int]) -> np.ndarray:
    return np.array([position[i] for i in ids], dtype=np.int64)


def run(params: Params, root: Path = Path("."), progress: bool = True) -> RewardResult:
    """Train the reward model on train, tune on val, report on test; write artifacts."""
    from paretoflow.reward.report import write_report  # matplotlib only when reporting

    root = Path(root)
    config = params.reward
    seed = params.project.seed
    objective_names = params.objective_names
    data = load_preference_data(root, params)

    # Every response that appears in a rating or a pair gets one feature row.
    used = set(data.ratings["response_id"]) | set(data.pairs["chosen_id"]) | set(data.pairs["rejected_id"])
    responses = data.responses[data.responses["response_id"].isin(used)].sort_values("response_id").reset_index(drop=True)
    if responses.empty:
        raise ValueError(f"no rated or paired responses in {data.files}")
    prompt_table = data.prompts.set_index("prompt_id")
    messages_of = {pid: parse_messages(m) for pid, m in prompt_table["messages"].items()}
    split_of_prompt, split_note = held_out_splits(prompt_table["split"], set(responses["prompt_id"]))
    position = {rid: i for i, rid in enumerate(responses["response_id"])}
    prompt_of = pd.Series(responses["prompt_id"].to_numpy(), index=responses["response_id"].to_numpy())
    response_split = split_of_prompt.reindex(responses["prompt_id"]).to_numpy()

    rating_wide = data.ratings.pivot_table(index="response_id", columns="objective", values="value").reindex(responses["response_id"])
    # Check every objective has training data before the (slow) feature extraction.
    missing = [name for name in objective_names if not _has_training_data(name, data, rating_wide, split_of_prompt, prompt_of)]
    if missing:
        raise ValueError(
            f"objectives {missing} have neither training ratings nor training pairs in {data.files}; "
            "every declared objective needs data"
        )

    spec = backbone_spec(params)
    started = time.perf_counter()
    backbone = build_backbone(spec, root)
    features = extract_features(
        backbone,
        [messages_of[p] for p in responses["prompt_id"]],
        responses["text"].tolist(),
        cache_dir=root / config.feature_cache_dir,
        progress=progress,
    )
    feature_seconds = time.perf_counter() - started
    train_rows = np.flatnonzero(response_split == "train")
    if train_rows.size == 0:
        raise ValueError("no training responses: no prompt has split 'train'")
    feature_mean, feature_scale = fitting.standardizer(features.pair[train_rows])
    x = (features.pair.astype(np.float64) - feature_mean) / feature_scale
    prompt_mean, prompt_scale = fitting.standardizer(features.prompt[train_rows])
    xp = (features.prompt.astype(np.float64) - prompt_mean) / prompt_scale

    def pairs_of(objective: str, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(chosen rows, rejected rows): the pairs table, else pairs built from ratings."""
        table = data.pairs[(data.pairs["objective"] == objective) & (split_of_prompt.reindex(data.pairs["prompt_id"]).to_numpy() == split)]
        if table.empty and objective in rating_wide:
            derived = pairs_from_ratings(rating_wide[objective].dropna(), prompt_of, config.combined_min_margin)
            table = derived[split_of_prompt.reindex(derived["prompt_id"]).to_numpy() == split]
        return _index(table["chosen_id"], position), _index(table["rejected_id"], position)

    # ---- stage 1: one head per declared objective
    started = time.perf_counter()
    k = len(objective_names)
    head_weight = np.zeros((k, x.shape[1]))
    head_bias = np.zeros(k)
    objective_configs, head_details = [], {}
    for j, name in enumerate(objective_names):
        rated = rating_wide[name].notna().to_numpy() if name in rating_wide else np.zeros(len(responses), bool)
        rated_train = np.flatnonzero(rated & (response_split == "train"))
        rated_val = np.flatnonzero(rated & (response_split == "val"))
        if rated_train.size >= 2:
            y = rating_wide[name].to_numpy()
            fit = fitting.select_ridge_alpha(x[rated_train], y[rated_train], config.ridge_alphas, x[rated_val], y[rated_val])
            head_weight[j], head_bias[j] = fit.weight, fit.bias
            objective_configs.append({"name": name, "head": "ridge", "alpha": fit.alpha})
            head_details[name] = {
                "head": "ridge", "alpha": fit.alpha, "selection": fit.selection,
                "selection_mse": {str(a): m for a, m in fit.selection_mse.items()},
                "n_train_ratings": int(rated_train.size), "n_val_ratings": int(rated_val.size),
            }  # fmt: skip
            continue
        chosen, rejected = pairs_of(name, "train")
        val_chosen, val_rejected = pairs_of(name, "val")
        bt = fitting.fit_bradley_terry_head(
            x[chosen], x[rejected], x[val_chosen], x[val_rejected],
            epochs=config.bt_epochs, lr=config.bt_lr, weight_decay=config.bt_weight_decay, seed=seed,
        )  # fmt: skip
        head_weight[j] = bt.weight
        objective_configs.append({"name": name, "head": "bradley_terry"})
        head_details[name] = {
            "head": "bradley_terry", "best_epoch": bt.best_epoch, "train_loss": bt.train_loss,
            "val_loss": bt.val_loss, "n_train_pairs": int(chosen.size), "n_val_pairs": int(val_chosen.size),
        }  # fmt: skip
    raw = x @ head_weight.T + head_bias
    head_mean = raw[train_rows].mean(axis=0)
    head_std = raw[train_rows].std(axis=0)
    head_std[head_std < 1e-12] = 1.0
    log_lengths = np.log1p(response_lengths(responses["text"].tolist()))
    length_stats = np.array([log_lengths[train_rows].mean(), max(log_lengths[train_rows].std(), 1e-6)])
    ell = (log_lengths - length_stats[0]) / length_stats[1]
    z_raw = (raw - head_mean) / head_std
    length_coefficient = fitting.length_coefficients(z_raw[train_rows], ell[train_rows], config.verbosity_penalty)
    z = z_raw - np.outer(ell, length_coefficient)
    heads_seconds = time.perf_counter() - started

    # ---- stage 2: gating on pairs of the combined objective
    started = time.perf_counter()
    if config.gating_target == "mean_rating" and all(n in rating_wide for n in objective_names):
        combined = rating_wide[objective_names].mean(axis=1, skipna=False).dropna()
        gate_pairs = pairs_from_ratings(combined, prompt_of, config.combined_min_margin)
        gate_pairs = pd.concat([gate_pairs, data.pairs[data.pairs["objective"] == OVERALL]])
        gating_target = "mean_rating"
    else:
        gate_pairs = pd.DataFrame(columns=["prompt_id", "chosen_id", "rejected_id"])
    if gate_pairs.empty:
        gate_pairs = data.pairs
        gating_target = "all_pairs"
    gate_pairs = gate_pairs.drop_duplicates(["chosen_id", "rejected_id"])
    gate_split = split_of_prompt.reindex(gate_pairs["prompt_id"]).to_numpy()
    gate_rows = {s: (_index(gate_pairs["chosen_id"][gate_split == s], position), _index(gate_pairs["rejected_id"][gate_split == s], position)) for s in ("train", "val", "test")}
    chosen, rejected = gate_rows["train"]
    if chosen.size:
        val_chosen, val_rejected = gate_rows["val"]
        gating = fitting.fit_gating(
            xp[chosen], z[chosen], z[rejected], xp[val_chosen], z[val_chosen], z[val_rejected],
            hidden_size=config.gating_hidden_size, epochs=config.gating_epochs, lr=config.gating_lr, seed=seed,
        )  # fmt: skip
        gate_tensors, gating_details = gating.tensors, {"best_epoch": gating.best_epoch, "train_loss": gating.train_loss, "val_loss": gating.val_loss}
    else:
        gate_tensors = fitting.uniform_gating(xp.shape[1], k, config.gating_hidden_size)
        gating_details = {"note": "no training pair for the combined objective: uniform gate"}
    gating_details.update({"target": gating_target, "n_train_pairs": int(chosen.size), "n_val_pairs": int(gate_rows["val"][0].size)})
    gating_seconds = time.perf_counter() - started

    model = RewardModel(
        config={
            "format": MODEL_FORMAT,
            "objectives": objective_configs,
            "backbone": spec.to_dict(),
            "backbone_fingerprint": backbone.fingerprint,
            "feature_dim": int(x.shape[1]),
            "prompt_feature_dim": int(xp.shape[1]),
            "gating_hidden_size": config.gating_hidden_size,
            "gating_target": gating_target,
            "verbosity_penalty": config.verbosity_penalty,
            "feature_cache_key": features.key,
            "params_hash": params.section_hash("objectives", "reward"),
            "temperatures": {},
        },
        tensors={
            "feature_mean": feature_mean, "feature_scale": feature_scale, "head_weight": head_weight,
            "head_bias": head_bias, "head_mean": head_mean, "head_std": head_std,
            "length_coefficient": length_coefficient, "length_stats": length_stats,
            "prompt_mean": prompt_mean, "prompt_scale": prompt_scale, **gate_tensors,
        },  # fmt: skip
        root=root,
    )
    scores = model.score_features(features.pair, features.prompt, response_lengths(responses["text"].tolist()))

    # ---- calibration temperatures on val, then test report. With no val pairs τ stays 1:
    # fitted on train, in-sample separation pushes τ to the top of the grid and makes the
    # test probabilities overconfident (measured on the CPU default run: ECE 0.50 vs 0.01).
    evaluation: dict[str, dict] = {}
    pair_rows = {name: {s: pairs_of(name, s) for s in ("train", "val", "test")} for name in objective_names}
    pair_rows[OVERALL] = gate_rows
    for name in objective_names + [OVERALL]:
        fit_split = "val" if pair_rows[name]["val"][0].size else "none"
        if fit_split == "val":
            c, r = pair_rows[name]["val"]
            model.config["temperatures"][name] = fitting.fit_temperature(scores[name][c] - scores[name][r])
        else:
            model.config["temperatures"][name] = 1.0
        c, r = pair_rows[name]["test"]
        tau = model.config["temperatures"][name]
        evaluation[name] = {
            "n_test_pairs": int(c.size),
            "accuracy": pairwise_accuracy(scores[name][c], scores[name][r]),
            "ece": pairwise_calibration_error(scores[name][c], scores[name][r], tau, config.calibration_bins) if c.size else float("nan"),
            "ece_uncalibrated": pairwise_calibration_error(scores[name][c], scores[name][r], 1.0, config.calibration_bins) if c.size else float("nan"),
            "temperature": tau,
            "temperature_fit_on": fit_split,
            "n_train_pairs": int(pair_rows[name]["train"][0].size),
            "n_val_pairs": int(pair_rows[name]["val"][0].size),
        }
    # Cross-objective accuracy: how each head ranks every objective's test pairs (conflict view).
    cross_accuracy = {
        head: {target: pairwise_accuracy(scores[head][pair_rows[target]["test"][0]], scores[head][pair_rows[target]["test"][1]]) for target in objective_names + [OVERALL]}
        for head in objective_names + [OVERALL]
    }

    out_dir = root / config.out_dir
    model.save(out_dir)
    test_rows = np.flatnonzero(response_split == "test")
    timings = {"feature_seconds": feature_seconds, "heads_seconds": heads_seconds, "gating_seconds": gating_seconds}
    report = write_report(
        out_dir=out_dir,
        objective_names=objective_names,
        evaluation=evaluation,
        cross_accuracy=cross_accuracy,
        head_details=head_details,
        gating_details=gating_details,
        test_scores={name: scores[name][test_rows] for name in objective_names + [OVERALL]},
        test_ratings=rating_wide.reindex(columns=objective_names).to_numpy()[test_rows],
        test_gate_weights=model.gate(features.prompt[test_rows]) if test_rows.size else np.zeros((0, k)),
        pair_scores={name: (scores[name][pair_rows[name]["test"][0]], scores[name][pair_rows[name]["test"][1]]) for name in objective_names + [OVERALL]},
        model_config=model.config,
        data_summary={
            "files": data.files,
            "n_responses": int(len(responses)),
            "responses_per_split": {s: int((response_split == s).sum()) for s in ("train", "val", "test")},
            "features_from_cache": features.from_cache,
            "split_note": split_note,
        },
        timings=timings,
        calibration_bins=config.calibration_bins,
    )
    metrics: dict[str, float] = dict(timings)
    for name, values in evaluation.items():
        for key in ("accuracy", "ece", "ece_uncalibrated", "n_test_pairs"):
            if np.isfinite(values[key]):
                metrics[f"test_{key}_{name}"] = float(values[key])
    return RewardResult(
        out_dir=out_dir,
        model_path=out_dir / "model.safetensors",
        config_path=out_dir / "config.json",
        report_path=report["json"],
        report_md_path=report["md"],
        plots=report["plots"],
        metrics=metrics,
    )
