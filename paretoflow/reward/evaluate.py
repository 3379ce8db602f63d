"""Evaluate a saved reward model on any importable preference file (`paretoflow eval-rm`).

The file is read by the importers of `paretoflow.data.importers` (HH-RLHF, PKU-SafeRLHF,
HelpSteer2, UltraFeedback, generic JSONL/Parquet/CSV; format detected or given). Pairs
come from the file's own pairs; for objectives it only rates (HelpSteer2, generic
ratings), pairs are built from ratings of responses to the same prompt whose rescaled
ratings differ by at least `min_margin`. Each model objective is scored on its pairs:
pairwise accuracy and ECE of σ(τ·Δr) with the model's fitted τ; "overall" is scored on
every pair. Objectives in the file but not in the model are listed, not silently dropped.
Every accuracy comes with its length-controlled twin (`pair_metrics`): the accuracy on
the pairs whose chosen response has fewer words than the rejected one, where a
"longer wins" rule scores 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from paretoflow.metrics import pairwise_accuracy, pairwise_calibration_error
from paretoflow.reward.data import pairs_from_ratings
from paretoflow.reward.model import OVERALL, RewardModel, response_lengths

if TYPE_CHECKING:
    from paretoflow.config import Params


def pair_metrics(scores: np.ndarray, words: np.ndarray, chosen: np.ndarray, rejected: np.ndarray,
                 temperature: float, bins: int) -> dict:
    """Accuracy, length-controlled accuracy (chosen strictly shorter, in words) and ECE of
    σ(τ·Δr) over the pairs (chosen[i], rejected[i]) of row indices; NaN where no pair."""
    chosen, rejected = np.asarray(chosen, dtype=np.int64), np.asarray(rejected, dtype=np.int64)
    shorter = words[chosen] < words[rejected]
    if chosen.size == 0:
        nan = float("nan")
        return {"accuracy": nan, "lc_accuracy": nan, "n_lc_pairs": 0, "ece": nan}
    return {
        "accuracy": pairwise_accuracy(scores[chosen], scores[rejected]),
        "lc_accuracy": pairwise_accuracy(scores[chosen[shorter]], scores[rejected[shorter]]),
        "n_lc_pairs": int(shorter.sum()),
        "ece": pairwise_calibration_error(scores[chosen], scores[rejected], temperature, bins),
    }


def error_agreement(differences_a, differences_b) -> dict:
    """Two scorers on the same pairs, from their score differences r_c − r_r (a pair is
    an error when its difference is ≤ 0, ties counted wrong): the fraction of pairs both
    order the same way, the fraction both get wrong, and the correlation (φ) of the two
    error indicators, NaN when either never or always errs. φ near 1: the second scorer
    repeats the first one's mistakes and cannot catch them; near 0: unrelated mistakes."""
    a = np.asarray(differences_a, dtype=np.float64) <= 0
    b = np.asarray(differences_b, dtype=np.float64) <= 0
    if a.shape != b.shape:
        raise ValueError(f"need score differences of the same pairs, got shapes {a.shape} and {b.shape}")
    if a.size == 0:
        nan = float("nan")
        return {"agreement": nan, "both_wrong": nan, "error_correlation": nan}
    pa, pb, both = a.mean(), b.mean(), (a & b).mean()
    spread = pa * (1 - pa) * pb * (1 - pb)
    return {
        "agreement": float(np.mean(a == b)),
        "both_wrong": float(both),
        "error_correlation": float((both - pa * pb) / np.sqrt(spread)) if spread > 0 else float("nan"),
    }


def collect_pairs(path: Path, params: Params, format: str = "auto", objective: str | None = None):
    """(prompts, responses, pairs DataFrame[objective, chosen, rejected], quarantined count)."""
    from paretoflow.data.importers import read_file

    imported = read_file(Path(path), params.objectives, format=format, objective=objective)
    key_of: dict[tuple[str, str], int] = {}
    prompts, responses = [], []
    rows, rated = [], defaultdict(dict)  # rated[objective][response index] = value in [0, 1]
    prompt_of_response = {}
    directions = {o.name: o.direction for o in params.objectives}
    for record in imported.records:
        prompt_key = json.dumps(record.messages, sort_keys=True)
        index = []
        for text in record.responses:
            key = (prompt_key, text)
            if key not in key_of:
                key_of[key] = len(responses)
                prompts.append(record.messages)
                responses.append(text)
                prompt_of_response[key_of[key]] = prompt_key
            index.append(key_of[key])
        for pair in record.pairs:
            rows.append((pair.objective, index[pair.chosen_index], index[pair.rejected_index]))
        for rating in record.ratings:
            value = (rating.value - rating.scale_min) / (rating.scale_max - rating.scale_min)
            if directions.get(rating.objective) == "minimize":
                value = 1.0 - value
            rated[rating.objective][index[rating.response_index]] = value
    explicit = {objective for objective, _, _ in rows}
    for name, values in rated.items():
        if name in explicit:
            continue
        series = pd.Series(values)
        derived = pairs_from_ratings(series, pd.Series(prompt_of_response), params.reward.combined_min_margin)
        rows += [(name, c, r) for c, r in zip(derived["chosen_id"], derived["rejected_id"])]
    pairs = pd.DataFrame(rows, columns=["objective", "chosen", "rejected"])
    return prompts, responses, pairs, len(imported.quarantined)


def evaluate_file(
    model: RewardModel, path: Path, params: Params, format: str = "auto", objective: str | None = None,
    progress: bool = True, cache_dir: Path | None = None,
) -> dict:
    """Per-objective accuracy/ECE of `model` on the pairs of one importable file."""
    prompts, responses, pairs, quarantined = collect_pairs(path, params, format, objective)
    if pairs.empty:
        raise ValueError(f"{path}: no preference pairs or comparable ratings found ({quarantined} rows quarantined)")
    scores = model.score(prompts, responses, progress=progress, cache_dir=cache_dir)
    words = response_lengths(responses)
    bins = params.reward.calibration_bins
    results: dict[str, dict] = {}
    file_objectives = sorted(set(pairs["objective"]))
    for name in [o for o in file_objectives if o in model.objectives] + [OVERALL]:
        subset = pairs if name == OVERALL else pairs[pairs["objective"] == name]
        chosen, rejected = subset["chosen"].to_numpy(), subset["rejected"].to_numpy()
        results[name] = {"n_pairs": int(len(subset)), **pair_metrics(scores[name], words, chosen, rejected, model.temperature(name), bins)}
    return {
        "file": str(path),
        "n_responses": len(responses),
        "n_quarantined_rows": quarantined,
        "objectives": results,
        "not_in_model": [o for o in file_objectives if o not in model.objectives],
    }
