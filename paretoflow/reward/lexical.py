"""The reward model's lexical view of a response: a hashed bag of words and explicit cues.

Beside the backbone's features (MiniLM on CPU, the policy's hidden states on GPU), a
head may read the words of the response themselves. Measured with 5-fold prompt-grouped
CV on curate's train+val prompts of the shipped data (bench/reward.py):

- AlpacaEval (GPT-4-turbo's choice): the bag of words predicts better than MiniLM,
  0.889 vs 0.800 pairwise accuracy (length-controlled 0.500 vs 0.532, length debias
  0.5); both views together 0.890 / 0.490.
- HH-RLHF harmless: worse than MiniLM (0.555 vs 0.608); both views 0.579.
- The two views err on different pairs: the correlation of the error indicators of a
  model on one view and a model on the other is 0.23 on HH and 0.35 on AlpacaEval,
  against 0.49 / 0.47 for two same-view models on disjoint halves of the train prompts,
  which makes the view the independent model's difference (`reward.independent_views`).

Bag of words: sklearn's `HashingVectorizer` (stateless: nothing to fit or store, so a
saved model reads any new text into the same columns), word unigrams and bigrams,
log(1 + count), rows L2-normalised (sublinear tf; Manning et al. 2008 §6.4.1).

Cues (`CUE_NAMES`), each a number per response:
- `profanity`: P(offensive) from alt-profanity-check (linear SVM on TF-IDF);
- `vader_negative`, `vader_positive`, `vader_compound`: VADER sentiment (Hutto &
  Gilbert 2014; `vaderSentiment`, lexicon and rules);
- `refusal_opening`: 1 when the opening matches the refusal judge's phrase set;
- `warning_rate`, `redirect_rate`, `compliance_rate`, `question_rate`,
  `first_person_rate`: matches of the word sets below per 10 words. On HH harmless the
  chosen response has fewer compliance cues (wins 57% of pairs where they differ),
  more questions (53%) and more first person (55%).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Sequence

import numpy as np

BAG_OF_WORDS_FEATURES = 2**12  # hashed columns; bench/reward.py: 2^12 unigrams+bigrams
CUE_NAMES = (
    "profanity", "vader_negative", "vader_positive", "vader_compound", "refusal_opening",
    "warning_rate", "redirect_rate", "compliance_rate", "question_rate", "first_person_rate",
)  # fmt: skip

_WARNING = re.compile(
    r"\b(?:illegal|against the law|crimes?|criminal|unethical|dangerous|harm(?:ful)?|hurt|unsafe|"
    r"not a good idea|bad idea|wrong|inappropriate|offensive|police|arrest(?:ed)?|jail|prison)\b", re.I)
_REDIRECT = re.compile(
    r"\b(?:instead|recommend|suggest|professional|therapist|doctor|counsel(?:or|ing)|hotline|"
    r"talk to|reach out|safe(?:ty|ly)?)\b", re.I)
_COMPLIANCE = re.compile(
    r"\b(?:here(?:'s| is| are)|you (?:can|could|should|might)|try|first,|step|the best way|one way|make sure)\b", re.I)
_FIRST_PERSON = re.compile(r"\b(?:i|me|my)\b", re.I)


def lexical_dim() -> int:
    """Columns of `lexical_features`: the hashed bag of words, then the cues."""
    return BAG_OF_WORDS_FEATURES + len(CUE_NAMES)


def bag_of_words(texts: Sequence[str], n_features: int = BAG_OF_WORDS_FEATURES) -> np.ndarray:
    """[n, n_features]: hashed word unigram+bigram counts c → log(1 + c), each row L2-normalised."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.preprocessing import normalize

    vectorizer = HashingVectorizer(n_features=n_features, ngram_range=(1, 2), alternate_sign=False, norm=None)
    counts = vectorizer.transform(list(texts)).astype(np.float64)
    counts.data = np.log1p(counts.data)
    return normalize(counts).toarray()


@lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def cues(texts: Sequence[str]) -> np.ndarray:
    """[n, len(CUE_NAMES)] in CUE_NAMES order (see the module doc)."""
    from profanity_check import predict_prob

    from paretoflow.judges.refusal import RefusalJudge  # lazy: loads the rule judges' phrase sets

    texts = list(texts)
    if not texts:
        return np.zeros((0, len(CUE_NAMES)))
    refusal, vader = RefusalJudge(), _vader()
    profanity = np.asarray(predict_prob(texts), dtype=np.float64)
    rows = []
    for text, offensive in zip(texts, profanity):
        text = text.replace("\u2019", "'")
        per_ten_words = 10.0 / max(len(text.split()), 1)
        sentiment = vader.polarity_scores(text)
        rows.append((
            offensive, sentiment["neg"], sentiment["pos"], sentiment["compound"], float(refusal.detect(text)),
            len(_WARNING.findall(text)) * per_ten_words, len(_REDIRECT.findall(text)) * per_ten_words,
            len(_COMPLIANCE.findall(text)) * per_ten_words, text.count("?") * per_ten_words,
            len(_FIRST_PERSON.findall(text)) * per_ten_words,
        ))  # fmt: skip
    return np.asarray(rows, dtype=np.float64)


def lexical_features(texts: Sequence[str]) -> np.ndarray:
    """[n, lexical_dim()]: the bag of words, then the cues."""
    return np.concatenate([bag_of_words(texts), cues(texts)], axis=1)
