import numpy as np
import pytest

from paretoflow.config import JudgeRef
from paretoflow.judges import (
    MAX_TEXT_CHARS,
    Judge,
    JudgeContext,
    build_judge,
    check_inputs,
    check_scores,
    is_degenerate,
    register_judge,
    registered_judges,
    word_tokens,
)


def test_word_tokens_split_words_and_punctuation():
    assert word_tokens("Hi, it's 3pm!") == ["Hi", ",", "it", "'", "s", "3pm", "!"]


@pytest.mark.parametrize(
    "text",
    ["", "   \n\t", "?!... --", "the the the", "ha " * 20, "I am sorry. " * 5],
)
def test_degenerate_texts(text):
    assert is_degenerate(text)


@pytest.mark.parametrize(
    "text",
    ["Yes.", "Paris", "no no", "Mix flour, water and yeast, then knead the dough for ten minutes."],
)
def test_normal_texts_are_not_degenerate(text):
    assert not is_degenerate(text)


def test_non_text_inputs_raise_type_error_naming_the_index():
    with pytest.raises(TypeError, match="response 1 is NoneType"):
        check_inputs(["a", "b"], ["ok", None])
    with pytest.raises(TypeError, match="prompt 0 is int"):
        check_inputs([3], ["ok"])
    with pytest.raises(TypeError, match="single str"):
        check_inputs("abc", "abc")
    with pytest.raises(TypeError, match="tags 0 is a str"):
        check_inputs(["a"], ["b"], ["harmful"])
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        check_inputs(["a", "b"], ["c"])


def test_huge_texts_are_truncated_to_the_documented_limit():
    _, responses, tags = check_inputs(["p"], ["x" * (MAX_TEXT_CHARS + 500)], [None])
    assert len(responses[0]) == MAX_TEXT_CHARS and tags == [()]


def test_check_scores_rejects_nan_out_of_range_and_wrong_shape():
    assert check_scores("j", [0.0, 1.0], 2).dtype == np.float64
    with pytest.raises(ValueError, match="index 1"):
        check_scores("j", [0.5, float("nan")], 2)
    with pytest.raises(ValueError, match="1.5"):
        check_scores("j", [1.5], 1)
    with pytest.raises(ValueError, match="shape"):
        check_scores("j", [0.5, 0.5], 3)


def test_registry_builds_registered_judges_and_rejects_unknown_ones():
    assert {"length_band", "relevance", "tone", "profanity", "refusal", "llm"} <= set(registered_judges())

    class Constant:
        name = "constant_test"

        def __init__(self, value, root):
            self.value, self.root = value, root

        def score(self, prompts, responses, tags):
            return np.full(len(responses), self.value)

    @register_judge("constant_test")
    def make(params, context):
        return Constant(params["value"], context.root)

    judge = build_judge(JudgeRef(name="constant_test", params={"value": 0.25}), JudgeContext(root="/x"))
    assert isinstance(judge, Judge) and judge.root == "/x"
    assert judge.score(["p"], ["r"], [[]]).tolist() == [0.25]
    with pytest.raises(KeyError, match="unknown judge 'nope'"):
        build_judge(JudgeRef(name="nope"))
    with pytest.raises(ValueError, match="unknown params"):
        build_judge(JudgeRef(name="length_band", params={"lwo": 3}))
