"""Drawing a front people can read: differences against the base first, absolute points beside.

Top row, one panel per objective (the plot to read): every candidate's paired
difference against the base (mean over the same prompts) with its paired bootstrap
interval; a vertical line at 0. Green: the interval lies above 0 (better than the base,
distinguishable), red: below 0 (worse, distinguishable), grey: the interval holds 0 (no
difference this run can tell). The dotted band is ± the run's minimum detectable
difference for that objective.

Bottom row: the absolute means, one panel per pair of objectives, coloured by how the
candidate was made (merge / trained adapter / base), with per-candidate intervals; filled
markers are distinguishable from the base on some objective, hollow ones are not;
non-dominated candidates (over ALL objectives) are ringed. In 2-D the front is drawn as
the attainment staircase; with 3+ objectives the ringed points of a panel are not, in
general, that panel's 2-D front. A red cross marks a candidate that is not eligible for
champion (its answer rate fell below the base's, front/answers.py); the top row's labels
say "(not eligible)" and give each candidate's answer rate.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on the pipeline machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from paretoflow.io import atomic_write  # noqa: E402

_COLOURS = {"merge": "tab:blue", "adapter": "tab:orange", "base": "tab:gray"}
_BETTER, _WORSE, _SAME = "tab:green", "tab:red", "0.6"


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


def _absolute_panel(axis, records, i: int, j: int, names: Sequence[str], signs: np.ndarray) -> None:
    values = np.array([[r.objectives[n] for n in names] for r in records])
    for kind in sorted({r.kind for r in records}):
        for filled in (True, False):
            chosen = [k for k, r in enumerate(records) if r.kind == kind and r.distinguishable == filled]
            if not chosen:
                continue
            xerr = np.abs(np.array([records[k].intervals[names[i]] for k in chosen]).T - values[chosen, i])
            yerr = np.abs(np.array([records[k].intervals[names[j]] for k in chosen]).T - values[chosen, j])
            colour = _COLOURS.get(kind, "tab:purple")
            axis.errorbar(values[chosen, i], values[chosen, j], xerr=xerr, yerr=yerr, fmt="o", color=colour,
                          markerfacecolor=colour if filled else "white", alpha=0.85, capsize=2,
                          label=f"{kind}{' (distinguishable)' if filled else ''}")
    front = np.array([r.non_dominated for r in records])
    axis.scatter(values[front, i], values[front, j], s=170, facecolors="none", edgecolors="black",
                 label="non-dominated")
    if len(names) == 2 and front.any():
        xs, ys = _staircase(values[front], signs)
        axis.plot(xs, ys, "k--", linewidth=1)
    blocked = np.array([not getattr(r, "eligible", True) for r in records])
    if blocked.any():
        axis.scatter(values[blocked, i], values[blocked, j], s=120, marker="x", color="tab:red",
                     label="not eligible (answer rate)")
    for (x, y), record in zip(values[:, [i, j]], records):
        axis.annotate(record.name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    axis.set_xlabel(f"{names[i]} (mean)")
    axis.set_ylabel(f"{names[j]} (mean)")
    axis.grid(alpha=0.3)


def _label(record) -> str:
    rate = getattr(record, "answer_rate", float("nan"))
    label = record.name + (f" (answers {rate:.0%})" if np.isfinite(rate) else "")
    return label + ("" if getattr(record, "eligible", True) else " (not eligible)")


def _difference_panel(axis, records, name: str, direction: str, mde: float | None) -> None:
    shown = [r for r in records if r.kind != "base"]
    ys = np.arange(len(shown))[::-1]
    better_sign = 1.0 if direction == "maximize" else -1.0
    for y, record in zip(ys, shown):
        paired = record.vs_base[name]
        if paired.ci_low > 0 or paired.ci_high < 0:
            colour = _BETTER if paired.diff * better_sign > 0 else _WORSE
        else:
            colour = _SAME
        axis.errorbar(paired.diff, y, xerr=[[paired.diff - paired.ci_low], [paired.ci_high - paired.diff]],
                      fmt="o", color=colour, capsize=3)
    axis.axvline(0.0, color="black", linewidth=1)
    if mde:
        axis.axvspan(-mde, mde, color="0.92", zorder=0)
    n_better = sum(r.vs_base[name].distinguishable and r.vs_base[name].diff * better_sign > 0 for r in shown)
    n_worse = sum(r.vs_base[name].distinguishable and r.vs_base[name].diff * better_sign < 0 for r in shown)
    axis.set_title(f"{name}: {n_better} better, {n_worse} worse than the base"
                   + (f" (band: ± MDE {mde:.3f})" if mde else ""), fontsize=8)
    axis.set_yticks(ys)
    axis.set_yticklabels([_label(r) for r in shown], fontsize=6)
    axis.set_xlabel(f"{name}: candidate − base, paired CI" + ("" if direction == "maximize" else " (lower is better)"))
    axis.grid(alpha=0.3, axis="x")


def plot_front(records, objectives, path: str | Path, *, title: str = "", mde: dict[str, float] | None = None) -> Path:
    """Write the figure (PNG) for front records; `objectives` carry name and direction."""
    names = [o.name for o in objectives]
    directions = [o.direction for o in objectives]
    signs = np.array([1.0 if d == "maximize" else -1.0 for d in directions])
    pairs = list(itertools.combinations(range(len(names)), 2)) or [(0, 0)]
    columns = max(len(pairs), len(names))
    height = max(4.0, 0.22 * len(records) + 1.5)
    fig, axes = plt.subplots(2, columns, figsize=(5 * columns, 4.5 + height), squeeze=False,
                             gridspec_kw={"height_ratios": [height, 4.5]})
    for axis, name, direction in zip(axes[0], names, directions):
        _difference_panel(axis, records, name, direction, (mde or {}).get(name))
    for axis, (i, j) in zip(axes[1], pairs):
        _absolute_panel(axis, records, i, j, names, signs)
    axes[1][0].legend(fontsize=6)
    for axis in [*axes[0][len(names):], *axes[1][len(pairs):]]:
        axis.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return path


__all__ = ["plot_front"]
