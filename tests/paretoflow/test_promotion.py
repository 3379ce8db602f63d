import pytest

from paretoflow.config import Objective
from paretoflow.promotion import (
    Candidate,
    decide,
    gate_judge_rm_agreement,
    gate_no_regression,
    normalized,
    select_by_constraint,
    select_by_preference,
)

OBJ = [Objective(name="help", scale=(0, 1)), Objective(name="short", scale=(0, 10), direction="minimize")]


def cands():
    return [
        Candidate("a", {"help": 0.9, "short": 8.0}),   # norm (0.9, 0.2)
        Candidate("b", {"help": 0.5, "short": 2.0}),   # norm (0.5, 0.8)
        Candidate("c", {"help": 0.4, "short": 9.0}, dominated=True),
    ]


def test_normalized_respects_scale_and_direction():
    assert normalized(0.25, OBJ[0]) == 0.25
    assert normalized(2.0, OBJ[1]) == pytest.approx(0.8)


def test_preference_picks_hand_computed_argmax():
    # w=(0.7,0.3): a → 0.63+0.06=0.69, b → 0.35+0.24=0.59 → a ; w=(0.3,0.7): a 0.41, b 0.71 → b
    assert select_by_preference(cands(), OBJ, [0.7, 0.3]).name == "a"
    assert select_by_preference(cands(), OBJ, [0.3, 0.7]).name == "b"
    with pytest.raises(ValueError, match="sum to 1"):
        select_by_preference(cands(), OBJ, [0.5, 0.6])


def test_constraint_selection_and_infeasible_message():
    # minimise "short": bound is an upper bound; only b has short <= 5
    assert select_by_constraint(cands(), OBJ, "help", {"short": 5.0}).name == "b"
    assert select_by_constraint(cands(), OBJ, "help", {"short": 9.5}).name == "a"
    with pytest.raises(ValueError, match="no candidate satisfies"):
        select_by_constraint(cands(), OBJ, "help", {"help": 0.95})
    with pytest.raises(KeyError, match="unknown objective 'x'"):
        select_by_constraint(cands(), OBJ, "x", {})


def test_no_regression_gate_uses_tolerance():
    cand = Candidate("n", {"help": 0.88, "short": 8.0})
    assert gate_no_regression(cand, {"help": 0.9, "short": 8.0}, OBJ, 0.05).passed
    g = gate_no_regression(cand, {"help": 0.95, "short": 8.0}, OBJ, 0.05)
    assert not g.passed and "help" in g.reason
    # short 8 vs champion 7 (minimised): normalised drop 0.1 > 0.05
    assert not gate_no_regression(cand, {"help": 0.88, "short": 7.0}, OBJ, 0.05).passed
    assert gate_no_regression(cand, None, OBJ, 0.0).passed


def test_judge_rm_agreement_gate():
    ref = Candidate("base", {"help": 0.5, "short": 5.0}, rm_objectives={"help": 0.0})
    agree = Candidate("x", {"help": 0.7, "short": 5.0}, rm_objectives={"help": 1.2})
    disagree = Candidate("y", {"help": 0.7, "short": 5.0}, rm_objectives={"help": -0.4})
    assert gate_judge_rm_agreement(agree, ref, OBJ, 0.01).passed
    # an RM change inside the RM dead-band is "no change", not a disagreement
    tiny = Candidate("z", {"help": 0.7, "short": 5.0}, rm_objectives={"help": -0.004})
    assert not gate_judge_rm_agreement(tiny, ref, OBJ, 0.01).passed
    assert gate_judge_rm_agreement(tiny, ref, OBJ, 0.01, rm_tolerance=0.005).passed
    g = gate_judge_rm_agreement(disagree, ref, OBJ, 0.01)
    assert not g.passed and "help" in g.reason
    d = decide(disagree, objectives=OBJ, validation_passed=False, champion_objectives=None, reference=ref, tolerance=0.01)
    assert not d.passed and len(d.reasons) == 2
