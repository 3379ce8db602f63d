"""Drawing a front: a 2-D scatter with the non-dominated staircase, or pairwise panels.

Candidates are coloured by how they were made (merge / trained adapter / base), error bars
are the bootstrap intervals, and the non-dominated candidates (over ALL objectives) are
ringed. In 2-D the front is drawn as the attainment staircase; with 3+ objectives each
panel shows one pair of objectives (the ringed points are not, in general, a 2-D front
of that panel).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on the pipeline machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_COLOURS = {"merge": "tab:blue", "adapter": "tab:orange", "base": "tab:gray"}


def _staircase(front: np.ndarray, signs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step line through 2-D front points, in the oriented space mapped back."""
    oriented = front * signs
    order = np.argsort(-oriented[:, 0])
    xs, ys = [], []
    for x, y in oriented[order]:
        if xs:
            xs.append(x)
            ys.append(ys[-1])
        xs.append(x)
        ys.append(y)
    return np.array(xs) * signs[0], np.array(ys) * signs[1]


def plot_front(
    values: np.ndarray,
    kinds: Sequence[str],
    labels: Sequence[str],
    non_dominated: np.ndarray,
    objective_names: Sequence[str],
    path: str | Path,
    *,
    directions: Sequence[str] | None = None,
    intervals: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Write the figure to `path` (PNG). `intervals` is (n, m, 2) low/high or None."""
    values = np.asarray(values, dtype=float)
    n_objectives = values.shape[1]
    signs = np.array([1.0 if d == "maximize" else -1.0 for d in (directions or ["maximize"] * n_objectives)])
    pairs = list(itertools.combinations(range(n_objectives), 2)) or [(0, 0)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4.5), squeeze=False)
    for axis, (i, j) in zip(axes[0], pairs):
        for kind in sorted(set(kinds)):
            mask = np.array([k == kind for k in kinds])
            xerr = yerr = None
            if intervals is not None:
                xerr = np.abs(intervals[mask][:, i, :].T - values[mask][:, i])
                yerr = np.abs(intervals[mask][:, j, :].T - values[mask][:, j])
            axis.errorbar(values[mask, i], values[mask, j], xerr=xerr, yerr=yerr, fmt="o",
                          color=_COLOURS.get(kind, "tab:green"), alpha=0.8, label=kind, capsize=2)
        axis.scatter(values[non_dominated, i], values[non_dominated, j], s=160,
                     facecolors="none", edgecolors="black", label="non-dominated")
        if n_objectives == 2 and non_dominated.any():
            xs, ys = _staircase(values[non_dominated], signs)
            axis.plot(xs, ys, "k--", linewidth=1)
        for x, y, label in zip(values[:, i], values[:, j], labels):
            axis.annotate(label, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        axis.set_xlabel(objective_names[i])
        axis.set_ylabel(objective_names[j])
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = ["plot_front"]
