"""The lexical view: hashed bag of words and cues, against values worked out by hand."""

import math

import numpy as np
import pytest

from paretoflow.reward.lexical import BAG_OF_WORDS_FEATURES, CUE_NAMES, bag_of_words, cues, lexical_dim, lexical_features


def test_bag_of_words_is_log_counts_normalised_and_stateless():
    # "cat cat dog": unigrams cat (2), dog (1); bigrams "cat cat" (1), "cat dog" (1).
    row = bag_of_words(["cat cat dog"])[0]
    values = np.sort(row[row > 0])
    expected = np.sort(np.array([math.log(3), math.log(2), math.log(2), math.log(2)]))
    expected /= np.linalg.norm(expected)
    assert row.shape == (BAG_OF_WORDS_FEATURES,)
    assert values == pytest.approx(expected)  # four distinct hashed columns here
    assert np.linalg.norm(row) == pytest.approx(1.0)
    # Nothing is fitted: the same text maps to the same columns in any batch.
    batch = bag_of_words(["other words entirely", "cat cat dog"])
    assert np.array_equal(batch[1], row)
    assert np.all(bag_of_words([""])[0] == 0)


def test_cues_hand_case():
    text = "I'm sorry, I can't help with that. It is illegal; talk to a lawyer instead?"
    row = dict(zip(CUE_NAMES, cues([text])[0]))
    words = len(text.split())  # 15
    assert words == 15
    assert row["refusal_opening"] == 1.0
    assert row["warning_rate"] == pytest.approx(10 / words)  # illegal
    assert row["redirect_rate"] == pytest.approx(2 * 10 / words)  # talk to, instead
    assert row["compliance_rate"] == 0.0
    assert row["question_rate"] == pytest.approx(10 / words)
    assert row["first_person_rate"] == pytest.approx(2 * 10 / words)  # I'm, I
    assert 0.0 <= row["profanity"] <= 1.0 and -1.0 <= row["vader_compound"] <= 1.0
    # Curly apostrophes read like straight ones.
    assert cues(["Here\u2019s how: you can try it."])[0][CUE_NAMES.index("compliance_rate")] == pytest.approx(3 * 10 / 6)


def test_cues_see_hostility_and_warmth():
    hostile, warm = cues(["You are a stupid worthless idiot.", "Thank you, that is a lovely and kind idea."])
    index = {n: i for i, n in enumerate(CUE_NAMES)}
    assert hostile[index["profanity"]] > warm[index["profanity"]]
    assert hostile[index["vader_negative"]] > warm[index["vader_negative"]]
    assert warm[index["vader_compound"]] > 0 > hostile[index["vader_compound"]]


def test_lexical_features_layout():
    features = lexical_features(["a short answer", ""])
    assert features.shape == (2, lexical_dim()) == (2, BAG_OF_WORDS_FEATURES + len(CUE_NAMES))
    assert np.array_equal(features[:, BAG_OF_WORDS_FEATURES:], cues(["a short answer", ""]))
    assert cues([]).shape == (0, len(CUE_NAMES))
