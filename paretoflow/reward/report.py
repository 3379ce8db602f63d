"""The reward model's report: report.json, report.md and plots under artifacts/reward/.

Contents: per-objective held-out pairwise accuracy and ECE (calibrated with the
val-fitted temperature, and uncalibrated τ = 1), the cross-objective accuracy table (each
head scored on every objective's test pairs), the objective conflict matrices (Spearman
correlation of the test ratings and of the predicted rewards), head and gating details,
data summary and timings. Plots: reward histograms and reliability diagrams (PNG).
NaN (no test pairs) is written as null in JSON and "n/a" in Markdown: no number is
invented where there was nothing to measure.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from paretoflow.metrics import calibration_bins, correlation_matrix, symmetric_pairwise_outcomes


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


def write_report(
    out_dir: Path,
    objective_names: list[str],
    evaluation: dict,
    cross_accuracy: dict,
    head_details: dict,
    gating_details: dict,
    test_scores: dict[str, np.ndarray],
    test_ratings: np.ndarray,
    test_gate_weights: np.ndarray,
    pair_scores: dict,
    model_config: dict,
    data_summary: dict,
    timings: dict,
    calibration_bins: int,
) -> dict:
    """Write report.json, report.md and PNGs; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reward_matrix = np.column_stack([test_scores[n] for n in objective_names]) if len(objective_names) else np.zeros((0, 0))
    rating_correlation = correlation_matrix(test_ratings) if test_ratings.size else np.full((len(objective_names),) * 2, np.nan)
    reward_correlation = correlation_matrix(reward_matrix) if reward_matrix.size else np.full((len(objective_names),) * 2, np.nan)
    mean_gate = test_gate_weights.mean(axis=0) if len(test_gate_weights) else np.full(len(objective_names), np.nan)
    report = {
        "objectives": objective_names,
        "evaluation": evaluation,
        "cross_accuracy": cross_accuracy,
        "conflict": {
            "method": "spearman over test responses",
            "rating_correlation": rating_correlation,
            "reward_correlation": reward_correlation,
        },
        "mean_gate_weights_test": dict(zip(objective_names, mean_gate)),
        "heads": head_details,
        "gating": gating_details,
        "backbone": model_config["backbone"],
        "backbone_fingerprint": model_config["backbone_fingerprint"],
        "data": data_summary,
        "timings_seconds": timings,
    }
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(_clean(report), indent=2, sort_keys=False) + "\n")
    plots = _plots(out_dir, test_scores, pair_scores, model_config.get("temperatures", {}), calibration_bins)

    lines = [
        "# Reward model report",
        "",
        f"Backbone: `{model_config['backbone']['kind']}` (fingerprint `{model_config['backbone_fingerprint']}`), "
        f"feature dim {model_config['feature_dim']}, gating target `{model_config['gating_target']}`, "
        f"verbosity penalty {model_config['verbosity_penalty']}.",
        f"Responses per split: {data_summary['responses_per_split']} ({data_summary.get('split_note', '')}). "
        f"Inputs: {', '.join(data_summary['files'])}.",
        "",
        "## Held-out (test) pairwise accuracy and calibration",
        "",
        "ECE: equal-width bins over P(chosen ≻ rejected) = σ(τ·Δr), each pair in both orders; "
        "τ fitted on val pairs (or train when val has none).",
        "",
        "| objective | head | test pairs | accuracy | ECE (τ) | ECE (τ=1) | τ |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, values in evaluation.items():
        head = head_details.get(name, {}).get("head", "gate")
        lines.append(
            f"| {name} | {head} | {values['n_test_pairs']} | {_fmt(values['accuracy'])} | {_fmt(values['ece'])} | "
            f"{_fmt(values['ece_uncalibrated'])} | {_fmt(values['temperature'], 2)} |"
        )
    heads = list(cross_accuracy)
    lines += ["", "## Cross-objective accuracy (row: score used, column: whose test pairs)", ""]
    lines += ["| score \\ pairs | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for head in heads:
        lines.append(f"| {head} | " + " | ".join(_fmt(cross_accuracy[head][t]) for t in heads) + " |")
    lines += ["", "## Objective conflict (Spearman, test responses)", "", "Ratings:", ""]
    lines += _matrix_md(objective_names, rating_correlation)
    lines += ["", "Predicted rewards:", ""]
    lines += _matrix_md(objective_names, reward_correlation)
    lines += ["", "Mean gate weight on test prompts: " + ", ".join(f"{n} {_fmt(w)}" for n, w in zip(objective_names, mean_gate))]
    lines += ["", "## Heads", ""]
    for name, details in head_details.items():
        shown = {k: v for k, v in details.items() if k != "selection_mse"}
        lines.append(f"- {name}: " + ", ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in shown.items()))
    lines.append(f"- gating: " + ", ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in gating_details.items()))
    lines += ["", "Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()), ""]
    lines += [f"![reward histograms]({plots[0].name})", "", f"![calibration]({plots[1].name})", ""]
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(lines))
    return {"json": json_path, "md": md_path, "plots": plots}
