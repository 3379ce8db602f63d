"""Loads the real all-MiniLM-L6-v2 from its wheel (offline, ~3 s import + 0.2 s load)."""

import pytest

from paretoflow.config import JudgeRef
from paretoflow.judges import build_judge
from paretoflow.judges.relevance import load_encoder


@pytest.fixture(scope="module")
def judge():
    return build_judge(JudgeRef(name="relevance"))


def test_relevant_answer_beats_off_topic_and_empty_scores_zero(judge):
    prompt = "How do I bake bread at home?"
    scores = judge.score(
        [prompt] * 4,
        [
            "Mix flour, water, yeast and salt, knead the dough, let it rise, then bake it at 220 C.",
            "The stock market closed higher on Tuesday after strong tech earnings.",
            "",
            prompt.upper(),  # echo of the prompt: no answer
        ],
        [[]] * 4,
    )
    assert scores[0] > scores[1] + 0.2
    assert scores[2] == 0.0 and scores[3] == 0.0


def test_encoder_is_loaded_once_per_process(judge):
    assert load_encoder(None) is load_encoder(None)


def test_bad_mapping_params_are_rejected():
    with pytest.raises(ValueError, match="floor < ceiling"):
        build_judge(JudgeRef(name="relevance", params={"floor": 0.5, "ceiling": 0.2}))
