"""The non-answer battery: construction, the Wilson interval, the rates, and the project's
scorers (rule judges + answer gates) on real AlpacaEval answers shipped in data/raw."""

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from paretoflow.judges import build_mixture
from paretoflow.judges.battery import KINDS, build_battery, preference_rates, truncate_words, wilson_interval
from tests.conftest import REPO_ROOT


def test_battery_has_every_kind_and_never_gives_a_prompt_its_own_answer():
    prompts = [f"question {i}?" for i in range(5)]
    answers = [f"Answer {i}. It is long enough to count. Second sentence {i}." for i in range(5)]
    battery = build_battery(prompts, answers, seed=3)
    assert len(battery) == 5 * len(KINDS) and set(battery["kind"]) == set(KINDS)
    assert (battery["chosen"] == [a for a in answers for _ in KINDS]).all()
    other = battery[battery["kind"] == "other_answer"]
    assert all(rej != cho for rej, cho in zip(other["rejected"], other["chosen"]))
    assert sorted(other["rejected"]) == sorted(answers)          # a derangement: each answer once
    assert battery[battery["kind"] == "echo"]["rejected"].tolist() == prompts
    assert battery[battery["kind"] == "truncated"]["rejected"].iloc[0] == "Answer 0. It is"
    assert battery[battery["kind"] == "repetition"]["rejected"].iloc[0] == " ".join(["Answer 0."] * 4)
    assert truncate_words("a b c d e f") == "a b c d"
    with pytest.raises(ValueError, match="at least 2"):
        build_battery(["p"], ["a"])


def test_wilson_interval_matches_the_formula_by_hand():
    # 8 of 10, z = 1.96: centre (0.8 + 0.19208) / 1.38416 = 0.71678, half 0.24190 / 1.38416 ... = 0.2136
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 0) != wilson_interval(0, 0)        # nan for no data


def test_rates_count_strict_wins_ties_as_losses():
    battery = pd.DataFrame({"prompt": ["p"] * 4, "chosen": ["long answer", "aa", "bb", "cc"],
                            "rejected": ["x", "aa", "longer text", "c"], "kind": ["k1", "k1", "k2", "k2"]})

    def by_length(prompts, responses, tags):
        return {"len": np.array([len(r) for r in responses], float)}

    rates = preference_rates(by_length, battery)["len"]
    assert (rates["k1"].wins, rates["k1"].ties, rates["k1"].n) == (1, 1, 2)
    assert (rates["k2"].wins, rates["k2"].ties) == (1, 0) and rates["all"].rate == 0.5


def _shipped_answers(n=24):
    """The first `n` AlpacaEval instructions of the shipped file with a chosen answer of 20-250 words."""
    rows = {}
    with gzip.open(REPO_ROOT / "data/raw/alpaca_eval_helpfulness.jsonl.gz", "rt") as f:
        for line in f:
            row = json.loads(line)
            if row["prompt"] not in rows and 20 <= len(row["chosen"].split()) <= 250:
                rows[row["prompt"]] = row["chosen"]
            if len(rows) == n:
                break
    return list(rows), list(rows.values())


def test_project_rule_scorers_prefer_real_answers_on_every_kind(params, tmp_path):
    """params.yaml's objectives with the reward-model judge left out (no model trained here)
    but with their answer gates: every objective prefers the real answer >= 0.9 per kind."""
    from tests.conftest import REPO_ROOT as root
    import yaml

    raw = yaml.safe_load((root / "params.yaml").read_text())["objectives"]
    objectives = []
    for o in raw:
        judges = [j for j in o["judges"] if j["name"] != "reward_model"] or [{"name": "relevance"}]
        objectives.append({**o, "judges": judges})
    mixture = build_mixture(params.model_copy(update={"objectives": [type(params.objectives[0])(**o) for o in objectives]}),
                            tmp_path)
    prompts, answers = _shipped_answers()
    rates = preference_rates(mixture.score, build_battery(prompts, answers, seed=0))
    low = {(o, k): r.rate for o, by_kind in rates.items() for k, r in by_kind.items() if r.rate < 0.9}
    assert not low, low
