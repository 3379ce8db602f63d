"""Pareto-front maths: non-dominated filter, hypervolume, sparsity, expected utility.

Pure functions of an (n_points, n_objectives) array. `directions` says per objective
whether larger ("maximize") or smaller ("minimize") is better; default all maximize.

`moocore` computes the non-dominated filter and the hypervolume. It minimizes, so we
negate every maximized column (and the reference point's entry) before calling it: a
point that maximizes f minimizes −f, and the dominated region is mirrored unchanged, so
the hypervolume is the same number. The reference point is explicit and must be fixed
per experiment (log it beside the value): hypervolumes under different references are
not comparable. Points that do not strictly beat the reference on every objective add
nothing.

Sparsity follows PGMORL (Xu et al. 2020, eq. 5): on the non-dominated set P,
S(P) = 1/(|P|−1) · Σ_j Σ_i (P̃_j(i) − P̃_j(i+1))², with P̃_j the sorted values of
objective j. Lower is denser (better spread); 0 for fewer than two points.

Expected utility over preferences: EU = mean over a simplex grid of weight vectors w of
max over candidates of w·f (the linear-utility version of Zintgraf et al. 2015's
expected utility metric), with minimized objectives negated so larger is better.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import moocore
import numpy as np

Direction = str  # "maximize" | "minimize"


def _as_points(points) -> np.ndarray:
    array = np.asarray(points, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"points must be a 2-D array (n_points, n_objectives), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("points must be finite (no NaN or inf)")
    return array


def _signs(directions: Sequence[Direction] | None, n_objectives: int) -> np.ndarray:
    """+1 for maximize, −1 for minimize; multiplying turns every objective into 'maximize'."""
    if directions is None:
        return np.ones(n_objectives)
    if len(directions) != n_objectives:
        raise ValueError(f"got {len(directions)} directions for {n_objectives} objectives")
    bad = [d for d in directions if d not in ("maximize", "minimize")]
    if bad:
        raise ValueError(f"directions must be 'maximize' or 'minimize', got {bad}")
    return np.array([1.0 if d == "maximize" else -1.0 for d in directions])


def to_minimization(points, directions: Sequence[Direction] | None = None) -> np.ndarray:
    """The points as moocore wants them: maximized columns negated."""
    array = _as_points(points)
    return -array * _signs(directions, array.shape[1])


def non_dominated_mask(points, directions: Sequence[Direction] | None = None) -> np.ndarray:
    """Boolean mask of points no other point dominates (duplicates of a front point are kept)."""
    array = _as_points(points)
    if len(array) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(to_minimization(array, directions), keep_weakly=True))


def hypervolume(points, reference: Sequence[float], directions: Sequence[Direction] | None = None) -> float:
    """Volume dominated by the points and bounded by `reference` (in the objectives' units)."""
    array = _as_points(points)
    reference = np.asarray(reference, dtype=float)
    if reference.shape != (array.shape[1],):
        raise ValueError(f"reference point has {reference.size} values for {array.shape[1]} objectives")
    if len(array) == 0:
        return 0.0
    signs = _signs(directions, array.shape[1])
    minimized = -array * signs
    ref_minimized = -reference * signs
    # Keep only points strictly better than the reference everywhere (moocore ignores the
    # rest too; filtering first makes the empty case explicit).
    inside = np.all(minimized < ref_minimized, axis=1)
    if not inside.any():
        return 0.0
    return float(moocore.hypervolume(minimized[inside], ref=ref_minimized))


def sparsity(points, directions: Sequence[Direction] | None = None, only_front: bool = True) -> float:
    """PGMORL sparsity of the non-dominated subset (or of all points with only_front=False)."""
    array = _as_points(points)
    if only_front and len(array):
        array = array[non_dominated_mask(array, directions)]
        array = np.unique(array, axis=0)
    if len(array) < 2:
        return 0.0
    total = 0.0
    for j in range(array.shape[1]):
        ordered = np.sort(array[:, j])
        total += float(np.sum(np.diff(ordered) ** 2))
    return total / (len(array) - 1)


def simplex_grid(n_dimensions: int, step: float) -> np.ndarray:
    """All vectors with entries in {0, step, 2·step, ..., 1} summing to 1 (simplex lattice).

    `step` must divide 1 (0.5, 0.25, 0.1, ...). Rows are in lexicographic order.
    """
    if n_dimensions < 1:
        raise ValueError(f"simplex grid needs at least one dimension, got {n_dimensions}")
    divisions = round(1.0 / step)
    if divisions < 1 or abs(divisions * step - 1.0) > 1e-9:
        raise ValueError(f"simplex step must divide 1 (e.g. 0.5, 0.25, 0.1), got {step}")
    rows = [
        combo
        for combo in itertools.product(range(divisions + 1), repeat=n_dimensions)
        if sum(combo) == divisions
    ]
    return np.array(rows, dtype=float) / divisions


def expected_utility(
    points,
    weight_grid=None,
    *,
    step: float = 0.1,
    directions: Sequence[Direction] | None = None,
) -> float:
    """Mean over preference vectors w of max over points of w·f (maximization convention)."""
    array = _as_points(points)
    if len(array) == 0:
        raise ValueError("expected utility of an empty set is undefined")
    oriented = array * _signs(directions, array.shape[1])
    weights = simplex_grid(array.shape[1], step) if weight_grid is None else np.asarray(weight_grid, float)
    if weights.ndim != 2 or weights.shape[1] != array.shape[1]:
        raise ValueError(f"weight grid must be (n, {array.shape[1]}), got {weights.shape}")
    utilities = weights @ oriented.T  # (n_weights, n_points)
    return float(utilities.max(axis=1).mean())


__all__ = [
    "expected_utility",
    "hypervolume",
    "non_dominated_mask",
    "simplex_grid",
    "sparsity",
    "to_minimization",
]
