"""Front maths on fronts small enough to draw by hand."""

import numpy as np
import pytest

from paretoflow.pareto import (
    expected_utility,
    hypervolume,
    non_dominated_mask,
    simplex_grid,
    sparsity,
    to_minimization,
)

# A 2-D staircase (maximize both):     f2
#   (1,3) ■──┐                          3 ■
#   (2,2)    ■──┐                       2 │ ■
#   (3,1)       ■   plus (1,1) inside   1 │ □ ■
# Area under the staircase from (0,0): 1·3 + 1·2 + 1·1 = 6.
STAIRCASE = [[1, 3], [2, 2], [3, 1], [1, 1]]


def test_non_dominated_staircase():
    assert non_dominated_mask(STAIRCASE).tolist() == [True, True, True, False]


def test_non_dominated_minimize_direction_flips():
    # Minimizing both, (1,1) dominates everything else.
    assert non_dominated_mask(STAIRCASE, ["minimize", "minimize"]).tolist() == [False, False, False, True]
    # Mixed: maximize f1, minimize f2 -> (3,1) dominates all.
    assert non_dominated_mask(STAIRCASE, ["maximize", "minimize"]).tolist() == [False, False, True, False]


def test_non_dominated_keeps_duplicates_of_front_points():
    assert non_dominated_mask([[1, 2], [1, 2], [0, 0]]).tolist() == [True, True, False]


def test_hypervolume_staircase_by_hand():
    assert hypervolume(STAIRCASE, [0, 0]) == pytest.approx(6.0)
    # Moving the reference to (1,0): strips x in [0,1] -> 2 + 1 = 3; (1,3) and (1,1) no longer count.
    assert hypervolume(STAIRCASE, [1, 0]) == pytest.approx(3.0)
    # Reference beyond every point: nothing dominated.
    assert hypervolume(STAIRCASE, [5, 5]) == 0.0


def test_hypervolume_minimize_matches_mirrored_maximize():
    points = np.array(STAIRCASE, float)
    # Minimizing -f with reference -ref is the same geometry.
    assert hypervolume(-points, [0, 0], ["minimize", "minimize"]) == pytest.approx(6.0)
    assert to_minimization([[1, 2]], ["maximize", "minimize"]).tolist() == [[-1, 2]]


def test_hypervolume_3d_by_hand():
    # One box 2x3x4 = 24.
    assert hypervolume([[2, 3, 4]], [0, 0, 0]) == pytest.approx(24.0)
    # Boxes 2x2x1 (=4) and 1x1x3 (=3) overlap in 1x1x1 -> 6.
    assert hypervolume([[2, 2, 1], [1, 1, 3]], [0, 0, 0]) == pytest.approx(6.0)


def test_hypervolume_rejects_bad_reference():
    with pytest.raises(ValueError, match="reference point has 3 values for 2 objectives"):
        hypervolume(STAIRCASE, [0, 0, 0])


def test_sparsity_pgmorl_by_hand():
    # Front (1,3),(2,2),(3,1): per objective gaps 1,1 -> 2 each; (2+2)/(3-1) = 2. (1,1) is off-front.
    assert sparsity(STAIRCASE) == pytest.approx(2.0)
    # Uneven spacing is sparser: (0,4),(1,3),(4,0): f1 gaps 1,3 -> 10; f2 gaps 3,1 -> 10; 20/2.
    assert sparsity([[0, 4], [1, 3], [4, 0]]) == pytest.approx(10.0)
    assert sparsity([[1, 1]]) == 0.0


def test_simplex_grid():
    grid = simplex_grid(3, 0.5)
    assert grid.tolist() == [
        [0, 0, 1], [0, 0.5, 0.5], [0, 1, 0], [0.5, 0, 0.5], [0.5, 0.5, 0], [1, 0, 0]
    ]
    assert len(simplex_grid(3, 0.1)) == 66  # C(12, 2)
    np.testing.assert_allclose(simplex_grid(4, 0.25).sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="must divide 1"):
        simplex_grid(2, 0.3)


def test_expected_utility_by_hand():
    # w=(1,0): best f1=3; w=(.5,.5): best 2; w=(0,1): best f2=3 -> (3+2+3)/3.
    assert expected_utility(STAIRCASE, step=0.5) == pytest.approx(8 / 3)
    # Explicit grid, minimized second objective negated: w=(0,1) picks -1 from (3,1)... and (1,1).
    assert expected_utility(STAIRCASE, [[0, 1]], directions=["maximize", "minimize"]) == pytest.approx(-1.0)
