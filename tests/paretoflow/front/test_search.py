"""Grid and MAP-style surrogate search on objectives given analytically."""

import numpy as np
import pytest

from paretoflow.front.search import (
    QuadraticSurrogate,
    grid_coefficients,
    map_search,
    scheffe_features,
    simplex_lattice_design,
)
from paretoflow.pareto import non_dominated_mask, simplex_grid


def test_scheffe_features_by_hand():
    assert scheffe_features([[0.2, 0.3, 0.5]]).round(6).tolist() == [[0.2, 0.3, 0.5, 0.06, 0.1, 0.15]]


def test_design_has_one_point_per_surrogate_term():
    assert len(simplex_lattice_design(3)) == scheffe_features(np.ones((1, 3))).shape[1] == 6
    assert len(simplex_lattice_design(2)) == 3
    assert len(grid_coefficients(3, 0.25)) == 15


def test_surrogate_fits_quadratic_exactly():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(6, 2))
    points = simplex_grid(3, 0.25)
    values = scheffe_features(points) @ true
    fitted = QuadraticSurrogate.fit(points, values)
    np.testing.assert_allclose(fitted.coefficients_, true, atol=1e-10)


def _synthetic(c):
    """A known conflicting 3-expert problem (quadratic in the coefficients), 2 objectives.

    f1 rewards expert 0 with synergy between 0 and 2; f2 rewards expert 1, penalises mixing 0 and 1.
    """
    c = np.asarray(c, float)
    f1 = 1.0 * c[0] + 0.1 * c[1] + 0.4 * c[2] + 0.8 * c[0] * c[2]
    f2 = 0.1 * c[0] + 1.0 * c[1] + 0.5 * c[2] - 0.6 * c[0] * c[1]
    return [f1, f2]


def test_map_recovers_known_quadratic_front():
    calls = []

    def evaluate(c):
        calls.append(np.asarray(c))
        return _synthetic(c)

    result = map_search(evaluate, 3, dense_step=0.05, n_verify=3)
    assert len(calls) == 6 + 3  # design + verification, nothing more
    # The surrogate is exact on a quadratic problem: verification error ~ 0.
    assert result.max_abs_error.max() < 1e-9
    # Its predicted Pareto set over the dense grid is the true one.
    dense = simplex_grid(3, 0.05)
    true_values = np.array([_synthetic(c) for c in dense])
    true_front = set(np.flatnonzero(non_dominated_mask(np.round(true_values, 10))))
    assert set(result.predicted_front.tolist()) == true_front
    # Verified points lie on the true front and are new (not design points).
    for c in result.verified:
        index = int(np.argmin(np.abs(dense - c).sum(axis=1)))
        assert index in true_front
        assert not any(np.allclose(c, d) for d in result.design)


def test_map_reports_error_when_objective_is_not_quadratic():
    def evaluate(c):
        f1, f2 = _synthetic(c)
        return [f1 + 0.5 * c[0] * c[1] * c[2] * 27, f2]  # cubic term the surrogate cannot fit

    result = map_search(evaluate, 3, dense_step=0.1, n_verify=3)
    assert result.max_abs_error[0] > 1e-3 and result.max_abs_error[1] < 1e-9


def test_map_respects_minimize_direction():
    result = map_search(lambda c: [-v for v in _synthetic(c)], 3, directions=["minimize", "minimize"],
                        dense_step=0.05, n_verify=2)
    maximized = map_search(lambda c: _synthetic(c), 3, dense_step=0.05, n_verify=2)
    assert set(result.predicted_front.tolist()) == set(maximized.predicted_front.tolist())
    np.testing.assert_allclose(result.verified, maximized.verified)


def test_surrogate_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="3 coefficient vectors but 2 objective vectors"):
        QuadraticSurrogate.fit(simplex_grid(2, 0.5), [[1.0], [2.0]])
