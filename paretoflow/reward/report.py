"""The reward model's report: report.json, report.md and plots under artifacts/reward/.

Contents: per objective, held-out pairwise accuracy, length-controlled accuracy (test
pairs whose chosen answer is the shorter) and ECE (val-fitted temperature); per source
of each objective (every curated pair source, rater and the judges): weight, n train,
n test pairs, test accuracy and LC accuracy, so no source is dropped unseen; the
independent model's test accuracies beside the main model's; the cross-objective
accuracy table (each head on every objective's test pairs); the conflict matrix
(Spearman correlation of the predicted rewards); head and gating details; sampling,
data summary and timings. Plots: reward histograms and reliability diagrams (PNG).
NaN (no test pairs) is written as null in JSON and "n/a" in Markdown: no number is
invented where there was nothing to measure.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from paretoflow.io import write_json, write_text
from paretoflow.metrics import calibration_bins, correlation_matrix, symmetric_pairwise_outcomes
from paretoflow.reward.model import OVERALL


def _clean(value):
    """JSON-safe: NaN/inf → None, numpy → python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{value:.{digits}f}"


def _matrix_md(names: list[str], matrix: np.ndarray) -> list[str]:
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for i, name in enumerate(names):
        lines.append(f"| {name} | " + " | ".join(_fmt(matrix[i, j], 2) for j in range(len(names))) + " |")
    return lines


def _plots(out_dir: Path, test_scores: dict, pair_scores: dict, temperatures: dict, bins: int) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # headless: CI and workers have no display
    import matplotlib.pyplot as plt

    names = list(test_scores)
    paths = []
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        values = test_scores[name]
        if values.size:
            ax.hist(values, bins=30, color="tab:blue", alpha=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("reward (test responses)", fontsize=8)
    # Fixed margins: tight_layout costs ~1 s per figure on 2 cores.
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.2, top=0.88, wspace=0.3)
    paths.append(out_dir / "reward_histograms.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names):
        chosen, rejected = pair_scores[name]
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        if len(chosen):
            probs, labels = symmetric_pairwise_outcomes(chosen, rejected, temperatures.get(name, 1.0))
            table = calibration_bins(probs, labels, bins)
            filled = table["count"] > 0
            centers = (table["edges"][:-1] + table["edges"][1:]) / 2
            ax.bar(centers[filled], table["accuracy"][filled], width=1.0 / bins, alpha=0.6, edgecolor="black")
        else:
            ax.text(0.5, 0.5, "no test pairs", ha="center", va="center")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("P(chosen ≻ rejected)", fontsize=8)
        ax.set_ylabel("observed frequency", fontsize=8)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.18, top=0.9, wspace=0.35)
    paths.append(out_dir / "calibration.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def _source_lines(evaluation: dict) -> list[str]:
    lines = ["| objective | source | kind | weight | n train | n test pairs | accuracy | LC accuracy (n) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, values in evaluation.items():
        for source, v in values.get("sources", {}).items():
            lines.append(f"| {name} | {source} | {v['kind']} | {_fmt(v['weight'], 2)} | {v['n_train']} | {v['n_test_pairs']} | "
                         f"{_fmt(v['accuracy'])} | {_fmt(v['lc_accuracy'])} ({v['n_lc_pairs']}) |")
    return lines


def write_report(out_dir: Path, fitted, result: dict, independent: dict | None, data, enc, timings: dict, bins: int) -> dict:
    """Write report.json, report.md and PNGs into out_dir; return their paths."""
    out_dir = Path(out_dir)
    model, evaluation, cross = fitted.model, result["evaluation"], result["cross_accuracy"]
    names = model.objectives
    split = data.prompts["split"].reindex(enc.responses["prompt_id"]).to_numpy()
    test_rows = np.flatnonzero(split == "test")
    scores = result["scores"]
    reward_matrix = np.column_stack([scores[n][test_rows] for n in names]) if test_rows.size else np.zeros((0, len(names)))
    reward_correlation = correlation_matrix(reward_matrix) if test_rows.size > 1 else np.full((len(names),) * 2, np.nan)
    gate = model.gate(enc.prompt[test_rows]) if test_rows.size else np.full((1, len(names)), np.nan)
    report = {
        "objectives": names,
        "evaluation": evaluation,
        "independent_evaluation": independent,
        "cross_accuracy": cross,
        "conflict": {"method": "spearman over test responses", "reward_correlation": reward_correlation},
        "mean_gate_weights_test": dict(zip(names, gate.mean(axis=0))),
        "heads": fitted.heads,
        "gating": fitted.gating,
        "model": model.config.model_dump(mode="json"),
        "data": {
            "files": data.files, "n_responses": int(len(enc.responses)),
            "responses_per_split": {s: int((split == s).sum()) for s in ("train", "val", "test")},
            "features_from_cache": enc.from_cache, "split_note": data.split_note, "sampling": data.sampling,
        },
        "timings_seconds": timings,
    }
    json_path = write_json(out_dir / "report.json", _clean(report))
    pair_scores = {n: (scores[n][c], scores[n][r]) for n, (c, r) in result["test_pairs"].items()}
    test_scores = {n: scores[n][test_rows] for n in names + [OVERALL]}
    plots = _plots(out_dir, test_scores, pair_scores, model.config.temperatures, bins)
    lines = [
        "# Reward model report", "",
        f"Backbone `{model.config.backbone['kind']}` (fingerprint `{model.config.backbone_fingerprint}`), "
        f"feature dim {model.config.feature_dim} (text features: {', '.join(model.config.text_features) or 'none'}), "
        f"verbosity penalty {model.config.verbosity_penalty}, trained on train prompts: {model.config.train_prompts}.",
        f"Responses per split: {report['data']['responses_per_split']} ({data.split_note}). Inputs: {', '.join(data.files)}.",
        "", "## Held-out (test) accuracy per objective", "",
        "LC = length-controlled: test pairs whose chosen response has fewer words. ECE over σ(τ·Δr), τ fitted on val pairs.", "",
        "| objective | test pairs | accuracy | LC accuracy (n) | ECE | τ | independent model accuracy |", "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for name, v in evaluation.items():
        other = (independent or {}).get(name, {}).get("accuracy")
        lines.append(f"| {name} | {v['n_test_pairs']} | {_fmt(v['accuracy'])} | {_fmt(v['lc_accuracy'])} ({v['n_lc_pairs']}) | "
                     f"{_fmt(v['ece'])} | {_fmt(v['temperature'], 2)} | {_fmt(other)} |")
    lines += ["", "## Every source of every objective", ""] + _source_lines(evaluation)
    lines += ["", "## Cross-objective accuracy (row: score used, column: whose test pairs)", ""]
    heads = list(cross)
    lines += ["| score \\ pairs | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    lines += [f"| {h} | " + " | ".join(_fmt(cross[h][t]) for t in heads) + " |" for h in heads]
    lines += ["", "## Objective conflict (Spearman of predicted rewards, test responses)", ""] + _matrix_md(names, reward_correlation)
    lines += ["", "## Heads", ""]
    for name, d in fitted.heads.items():
        lines.append(f"- {name}: alpha={_fmt(d['alpha'], 3)} (on {d['selected_on']}), sources {d['sources']}")
    lines.append("- gating: " + ", ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in fitted.gating.items()))
    lines += ["", f"Sampling: {data.sampling}", "", "Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()), ""]
    lines += [f"![reward histograms]({plots[0].name})", "", f"![calibration]({plots[1].name})", ""]
    md_path = write_text(out_dir / "report.md", "\n".join(lines))
    return {"json": json_path, "md": md_path, "plots": plots}
