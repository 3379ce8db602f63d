import numpy as np
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


# ------------------------------------------------------------------ paired gates

from paretoflow.promotion import (  # noqa: E402
    compare_paired,
    gate_paired_improvement,
    gate_scorer_agreement,
    select_by_paired_preference,
)

PAIRED_OBJ = [Objective(name="help"), Objective(name="short")]


def _noisy_pair(gain, noise, n=60, seed=0):
    """Reference scores and a candidate that adds `gain` plus per-prompt noise on 'help'."""
    rng = np.random.default_rng(seed)
    reference = {"help": rng.uniform(0.3, 0.7, n), "short": rng.uniform(0.3, 0.7, n)}
    candidate = {"help": reference["help"] + gain + rng.normal(0, noise, n), "short": reference["short"].copy()}
    return candidate, reference


def test_promotion_refuses_a_gain_within_noise():
    # Same mean gain (+0.02 on help, weighted 0.01), two noise levels.
    candidate, reference = _noisy_pair(0.02, noise=0.3)
    noisy = compare_paired(candidate, reference, PAIRED_OBJ, [0.5, 0.5], "champion v1", seed=1)
    assert noisy.weighted.diff > 0 and noisy.weighted.ci_low < -0.02        # gain, but inside noise
    gate = gate_paired_improvement(noisy, tolerance=0.02)
    assert not gate.passed and "within noise" in gate.reason and "champion v1" in gate.reason
    candidate, reference = _noisy_pair(0.02, noise=0.01)
    clean = compare_paired(candidate, reference, PAIRED_OBJ, [0.5, 0.5], "champion v1", seed=1)
    assert clean.weighted.ci_low > 0
    assert gate_paired_improvement(clean, tolerance=0.02).passed


def test_paired_gate_needs_a_gain_and_no_objective_wholly_below_tolerance():
    rng = np.random.default_rng(5)
    n = 80
    reference = {"help": rng.uniform(0.2, 0.6, n), "short": rng.uniform(0.2, 0.6, n)}
    same = compare_paired(reference, reference, PAIRED_OBJ, [0.5, 0.5], "base")
    gate = gate_paired_improvement(same, 0.02)
    assert not gate.passed and "does not improve" in gate.reason            # identical: no gain
    # help +0.3, short −0.1 on every prompt: weighted (0.8, 0.2) gain 0.22, but short's
    # interval lies wholly below −0.02.
    traded = {"help": reference["help"] + 0.3, "short": reference["short"] - 0.1}
    comparison = compare_paired(traded, reference, PAIRED_OBJ, [0.8, 0.2], "base")
    assert comparison.weighted.diff == pytest.approx(0.22)
    gate = gate_paired_improvement(comparison, 0.02)
    assert not gate.passed and "short worse than base beyond 0.02" in gate.reason
    # A drop of 0.01 (within tolerance) on short is allowed.
    mild = {"help": reference["help"] + 0.3, "short": reference["short"] - 0.01}
    assert gate_paired_improvement(compare_paired(mild, reference, PAIRED_OBJ, [0.8, 0.2], "base"), 0.02).passed


def test_paired_comparison_normalises_scale_and_direction():
    objectives = [Objective(name="help", scale=(0, 10)), Objective(name="length", scale=(0, 100), direction="minimize")]
    reference = {"help": np.array([5.0, 5.0]), "length": np.array([50.0, 50.0])}
    candidate = {"help": np.array([6.0, 6.0]), "length": np.array([40.0, 40.0])}
    comparison = compare_paired(candidate, reference, objectives, [0.5, 0.5], "base")
    assert comparison.objectives["help"].diff == pytest.approx(0.1)
    assert comparison.objectives["length"].diff == pytest.approx(0.1)        # shorter is better
    assert comparison.weighted.diff == pytest.approx(0.1)


def test_gate_fails_closed_without_a_comparison():
    gate = gate_paired_improvement(None, 0.02, "champion v3: held-out prompts changed")
    assert not gate.passed and "cannot compare on the same prompts: champion v3" in gate.reason
    d = decide(Candidate("x", {"help": 0.9}), objectives=OBJ, validation_passed=True, champion_objectives=None,
               reference=None, tolerance=0.02, comparison_error="champion v3: no package")
    assert not d.passed and d.reasons == ["no_regression: cannot compare on the same prompts: champion v3: no package"]


def test_choice_ranks_by_the_lower_bound_not_the_mean():
    rng = np.random.default_rng(7)
    n = 50
    base = {"help": rng.uniform(0.3, 0.6, n), "short": rng.uniform(0.3, 0.6, n)}
    steady = {"help": base["help"] + 0.05, "short": base["short"]}
    lucky = {"help": base["help"] + 0.07 + rng.normal(0, 0.4, n), "short": base["short"]}
    comparisons = {name: compare_paired(s, base, PAIRED_OBJ, [0.5, 0.5], "base")
                   for name, s in (("steady", steady), ("lucky", lucky))}
    assert comparisons["lucky"].weighted.diff != comparisons["steady"].weighted.diff
    pool = [Candidate("lucky", {"help": 0.6, "short": 0.5}), Candidate("steady", {"help": 0.55, "short": 0.5})]
    assert select_by_paired_preference(pool, comparisons).name == "steady"


def test_scorer_agreement_uses_intervals():
    judges = {"help": (0.02, 0.08), "short": (-0.01, 0.03)}
    agree = gate_scorer_agreement(judges, {"reward model": {"help": (0.1, 0.4), "short": (-0.5, -0.1)}}, PAIRED_OBJ)
    assert agree.passed   # short: judges see no change, so the RM's drop is not a disagreement
    disagree = gate_scorer_agreement(judges, {"independent reward model": {"help": (-0.3, -0.05)}}, PAIRED_OBJ)
    assert not disagree.passed and "help" in disagree.reason and "independent" in disagree.reason
    assert gate_scorer_agreement(judges, {"reward model": {"help": (-0.3, 0.2)}}, PAIRED_OBJ).passed


def test_scorer_agreement_respects_minimised_objectives():
    length = [Objective(name="length", direction="minimize")]
    # judges: length went down (better); reward model (higher = better) says better: agree
    assert gate_scorer_agreement({"length": (-0.2, -0.1)}, {"reward model": {"length": (0.1, 0.3)}}, length).passed
    assert not gate_scorer_agreement({"length": (-0.2, -0.1)}, {"reward model": {"length": (-0.3, -0.1)}},
                                     length).passed
