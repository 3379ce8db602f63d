"""Choosing which merge coefficients to evaluate: a simplex grid sweep, or MAP-style search.

Grid: every point of the simplex lattice with the given step (`pareto.simplex_grid`).

MAP-style surrogate search. Li et al. 2024 ("MAP: Multi-Human-Value Alignment Palette")
pick the mixing vector by solving a small optimisation over cheap estimates of each value
instead of sweeping; we follow that idea with the surrogate named in issue 5, not MAP's
primal-dual solver (MAP reweights a policy by rewards; we mix trained LoRA experts):

1. evaluate a small design: the {k, 2} simplex-lattice (the k vertices and the k(k−1)/2
   edge midpoints: exactly as many points as the surrogate has terms);
2. fit, per objective, Scheffé's quadratic mixture polynomial (Scheffé 1958)
   f(c) = Σᵢ βᵢ cᵢ + Σᵢ<ⱼ βᵢⱼ cᵢ cⱼ by least squares on the coefficient simplex (the
   intercept and squares are absorbed because Σ cᵢ = 1, so this is the full quadratic);
3. predict every objective on a dense simplex grid and keep the predicted Pareto set;
4. evaluate `n_verify` predicted-front points spread along it (farthest-point order in
   objective space, starting from the best predicted equal-weight utility);
5. report the surrogate's error on those points (predicted vs measured).

The search is a pure function of an `evaluate(coefficients) -> objective vector`
callable, so it is tested on analytic objectives and run on real merged models alike.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from paretoflow.pareto import non_dominated_mask, simplex_grid


def grid_coefficients(n_experts: int, step: float) -> np.ndarray:
    """The simplex lattice: every coefficient vector with entries k·step summing to 1."""
    return simplex_grid(n_experts, step)


def scheffe_features(coefficients) -> np.ndarray:
    """[c₁..c_k, c₁c₂, c₁c₃, ..., c_{k−1}c_k]: Scheffé quadratic mixture terms."""
    c = np.atleast_2d(np.asarray(coefficients, dtype=float))
    pairs = [c[:, i] * c[:, j] for i, j in itertools.combinations(range(c.shape[1]), 2)]
    return np.column_stack([c, *pairs]) if pairs else c


@dataclass
class QuadraticSurrogate:
    """Scheffé quadratic per objective; `coefficients_` is (n_terms, n_objectives)."""

    coefficients_: np.ndarray

    @classmethod
    def fit(cls, coefficients, values) -> "QuadraticSurrogate":
        """Least squares (minimum-norm when under-determined) of each objective column."""
        features = scheffe_features(coefficients)
        targets = np.asarray(values, dtype=float)
        if targets.ndim == 1:
            targets = targets[:, None]
        if len(features) != len(targets):
            raise ValueError(f"{len(features)} coefficient vectors but {len(targets)} objective vectors")
        solution, *_ = np.linalg.lstsq(features, targets, rcond=None)
        return cls(solution)

    def predict(self, coefficients) -> np.ndarray:
        return scheffe_features(coefficients) @ self.coefficients_


def simplex_lattice_design(n_experts: int) -> np.ndarray:
    """{k, 2} simplex-lattice: vertices and edge midpoints (as many points as Scheffé terms)."""
    if n_experts == 1:
        return np.ones((1, 1))
    return simplex_grid(n_experts, 0.5)


def _spread_order(points: np.ndarray, start: int) -> list[int]:
    """Farthest-point order: each next index is the farthest from those already chosen."""
    chosen = [start]
    distance = np.linalg.norm(points - points[start], axis=1)
    while len(chosen) < len(points):
        nxt = int(np.argmax(distance))
        if distance[nxt] <= 0:
            break
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(points - points[nxt], axis=1))
    return chosen


@dataclass
class MapSearchResult:
    """Everything the surrogate search did: design, fit, prediction, verification, errors."""

    design: np.ndarray              # (n_design, k) coefficients evaluated to fit
    design_values: np.ndarray       # (n_design, m) measured objective vectors
    surrogate: QuadraticSurrogate
    dense: np.ndarray               # (n_dense, k) prediction grid
    dense_predicted: np.ndarray     # (n_dense, m)
    predicted_front: np.ndarray     # indices into `dense` predicted non-dominated
    verified: np.ndarray            # (n_verify, k) coefficients evaluated to check
    verified_predicted: np.ndarray  # (n_verify, m) surrogate prediction there
    verified_values: np.ndarray     # (n_verify, m) measured
    mean_abs_error: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per objective
    max_abs_error: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def evaluated(self) -> tuple[np.ndarray, np.ndarray]:
        """All evaluated (coefficients, objective vectors): design then verification."""
        coefficients = np.vstack([self.design, self.verified]) if len(self.verified) else self.design
        values = np.vstack([self.design_values, self.verified_values]) if len(self.verified) else self.design_values
        return coefficients, values


def map_search(
    evaluate: Callable[[np.ndarray], Sequence[float]],
    n_experts: int,
    *,
    directions: Sequence[str] | None = None,
    dense_step: float = 0.05,
    n_verify: int = 3,
) -> MapSearchResult:
    """Surrogate search over merge coefficients (see module docstring).

    `evaluate(coefficients)` returns one objective vector; it is called
    len(design) + n_verify times (6 + 3 for three experts by default).
    """
    design = simplex_lattice_design(n_experts)
    design_values = np.array([np.asarray(evaluate(c), dtype=float) for c in design])
    surrogate = QuadraticSurrogate.fit(design, design_values)
    dense = simplex_grid(n_experts, dense_step)
    dense_predicted = surrogate.predict(dense)
    # Rounded: least-squares noise (~1e-12) must not decide dominance between predicted ties.
    front = np.flatnonzero(non_dominated_mask(np.round(dense_predicted, 10), directions))
    # Skip predicted-front points already in the design: they were measured already.
    seen = {tuple(np.round(c, 9)) for c in design}
    candidates = [i for i in front if tuple(np.round(dense[i], 9)) not in seen]
    verified_idx: list[int] = []
    if candidates and n_verify > 0:
        oriented = dense_predicted[candidates]
        if directions is not None:
            oriented = oriented * np.array([1.0 if d == "maximize" else -1.0 for d in directions])
        span = oriented.max(axis=0) - oriented.min(axis=0)
        scaled = (oriented - oriented.min(axis=0)) / np.where(span > 0, span, 1.0)
        start = int(np.argmax(scaled.mean(axis=1)))
        verified_idx = [candidates[i] for i in _spread_order(scaled, start)[:n_verify]]
    verified = dense[verified_idx] if verified_idx else np.zeros((0, n_experts))
    verified_predicted = dense_predicted[verified_idx] if verified_idx else np.zeros((0, design_values.shape[1]))
    verified_values = (
        np.array([np.asarray(evaluate(c), dtype=float) for c in verified])
        if verified_idx else np.zeros((0, design_values.shape[1]))
    )
    errors = np.abs(verified_predicted - verified_values)
    return MapSearchResult(
        design=design,
        design_values=design_values,
        surrogate=surrogate,
        dense=dense,
        dense_predicted=dense_predicted,
        predicted_front=front,
        verified=verified,
        verified_predicted=verified_predicted,
        verified_values=verified_values,
        mean_abs_error=errors.mean(axis=0) if len(errors) else np.full(design_values.shape[1], np.nan),
        max_abs_error=errors.max(axis=0) if len(errors) else np.full(design_values.shape[1], np.nan),
    )


__all__ = [
    "MapSearchResult",
    "QuadraticSurrogate",
    "grid_coefficients",
    "map_search",
    "scheffe_features",
    "simplex_lattice_design",
]
