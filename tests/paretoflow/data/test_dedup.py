"""Exact / near-duplicate detection, decontamination and the hash split, on hand cases."""

import numpy as np
from datasketch import MinHash

from paretoflow.data.dedup import (
    HASHFUNC,
    contaminated,
    content_key,
    jaccard,
    near_duplicates,
    shingles,
    sketch_all,
    split_of,
    tokens,
)

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def test_content_key_separates_parts():
    assert content_key("ab", "c") != content_key("a", "bc")
    assert content_key("a", "b") == content_key("a", "b")


def test_shingles_by_hand():
    assert shingles("The cat, the HAT!", 2) == {b"the cat", b"cat the", b"the hat"}
    assert shingles("Hi there", 3) == {b"hi there"}  # shorter than k: one shingle
    assert shingles("  ", 3) == set()


def test_tokens_of_scripts_without_spaces_are_characters():
    # `\\w+` read each clause as one word: these two prompts shared no shingle.
    assert tokens("请问如何学习？谢谢") == ["请", "问", "如", "何", "学", "习", "谢", "谢"]
    assert tokens("ラーメン屋はどこ") == ["ラ", "ー", "メ", "ン", "屋", "は", "ど", "こ"]
    assert tokens("ต้มยำ") == ["ต้", "ม", "ย", "ำ"]  # Thai: a character with its marks
    assert tokens("Read 東京 guide") == ["read", "東", "京", "guide"]


def test_tokens_keep_combining_marks_in_spaced_scripts():
    assert tokens("नमस्ते आप कैसे हैं") == ["नमस्ते", "आप", "कैसे", "हैं"]  # `\\w+`: 6 pieces
    assert tokens("Cafe\u0301 ok") == ["cafe\u0301", "ok"]  # a decomposed accent
    assert tokens("안녕하세요 학교에서") == ["안녕하세요", "학교에서"]  # Hangul is spaced: words
    assert tokens("It's 3.5 km_h, OK?") == ["it", "s", "3", "5", "km_h", "ok"]


def test_near_duplicates_found_in_chinese_and_japanese():
    zh = "请问如何在家里用简单的材料制作一个能够测量室内温度和湿度的小型气象站？请详细说明步骤。"
    ja = "東京で一番おいしいラーメン屋はどこですか？おすすめを教えてください。"
    texts = [zh, ja, zh.replace("。", "！谢谢"), ja + "よろしく", "完全不同的另一个问题：明天会下雨吗？"]
    found = {(d.index, d.representative) for d in near_duplicates(texts, threshold=0.8)}
    assert found == {(2, 0), (3, 1)}
    # 41 characters but punctuation: 39 3-grams, all kept, and 2 more for the added 谢谢
    assert jaccard(shingles(zh, 3), shingles(texts[2], 3)) == 39 / 41
    assert jaccard(shingles(ja, 3), shingles(texts[3], 3)) == 30 / 34  # 32 characters, 4 added


def test_contamination_seen_in_chinese():
    held_out = ["请问如何在家里制作一个小型气象站"]  # 16 characters: 9 8-grams
    train = ["请问如何在家里制作一个小型气象站？谢谢", "今天天气怎么样，适合去公园散步吗"]
    found = contaminated(train, held_out, n=8, threshold=0.5)
    assert [(c.index, c.held_out, c.fraction) for c in found] == [(0, 0, 9 / 11)]  # 18 characters: 11 8-grams


def test_jaccard_by_hand():
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 2 / 4
    assert jaccard(set(), set()) == 1.0


def test_vectorised_sketches_equal_datasketch_bulk():
    sets = [shingles(t, 3) for t in ["a b c d e f", "one two three four", "x", "", "a b c d e g h"]]
    ours = sketch_all(sets, num_perm=64)
    reference = MinHash.bulk([list(s) for s in sets if s], num_perm=64, seed=1, hashfunc=HASHFUNC)
    assert ours[3] is None
    for mine, theirs in zip([m for m in ours if m is not None], reference, strict=True):
        assert np.array_equal(mine.hashvalues, theirs.hashvalues)


def test_near_duplicates_keep_first_of_cluster():
    base = "please explain how photosynthesis works in green plants for a school project today"
    texts = [
        base,
        "completely unrelated question about the history of the roman empire and its fall",
        base + " thanks",  # 13 words + 1: 11 of 12 shingles shared, Jaccard 11/12
        "please explain how photosynthesis works",  # 3 of 11 shingles: far below 0.8
    ]
    found = near_duplicates(texts, num_perm=128, threshold=0.8, shingle_size=3)
    assert [(d.index, d.representative) for d in found] == [(2, 0)]
    assert abs(found[0].similarity - 11 / 12) < 1e-9


def test_near_duplicates_threshold_is_exact_jaccard():
    # 10 words → 8 shingles; changing the last word shares 7 of 9 distinct shingles (0.78).
    a = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10"
    b = "w1 w2 w3 w4 w5 w6 w7 w8 w9 changed"
    assert near_duplicates([a, b], threshold=0.8, shingle_size=3) == []
    found = near_duplicates([a, b], threshold=0.7, shingle_size=3)
    assert [(d.index, d.representative) for d in found] == [(1, 0)]
    assert abs(found[0].similarity - 7 / 9) < 1e-9


def test_contamination_fraction_by_hand():
    held_out = ["the quick brown fox jumps over the lazy dog"]
    train = [
        "the quick brown fox jumps over the lazy cat",  # 3-grams: 6 of 7 shared (not "the lazy cat")
        "the quick brown fox sat down",  # 2 of 4 → 0.5
        "nothing in common at all here",
        "Quick brown",  # shorter than n: no exact match
        "the quick",  # shorter than n but not a whole held-out text
    ]
    found = contaminated(train, held_out, n=3, threshold=0.5)
    assert [(c.index, c.held_out) for c in found] == [(0, 0), (1, 0)]
    assert abs(found[0].fraction - 6 / 7) < 1e-9 and found[1].fraction == 0.5
    assert contaminated(train, held_out, n=3, threshold=0.6)[0].index == 0
    assert len(contaminated(train, held_out, n=3, threshold=0.6)) == 1


def test_short_texts_contaminated_only_on_exact_match():
    found = contaminated(["Hello, World!", "hello"], ["hello world"], n=8, threshold=0.5)
    assert [(c.index, c.fraction) for c in found] == [(0, 1.0)]


def test_split_depends_only_on_the_id_and_follows_fractions():
    ids = [f"p_{i:05d}" for i in range(4000)]
    splits = [split_of(i, FRACTIONS) for i in ids]
    # Adding rows never moves a prompt: the split is recomputed from the id alone.
    assert splits[:100] == [split_of(i, FRACTIONS) for i in ids[:100]]
    counts = {s: splits.count(s) for s in ("train", "val", "test")}
    assert 0.77 < counts["train"] / 4000 < 0.83 and 0.08 < counts["val"] / 4000 < 0.12
    assert {split_of(i, {"train": 1.0, "val": 0.0, "test": 0.0}) for i in ids} == {"train"}


def _datasketch_near_duplicates(texts, num_perm=128, threshold=0.8, shingle_size=3):
    """The sequential datasketch MinHashLSH insert/query loop near_duplicates replaced."""
    from datasketch import MinHashLSH

    from paretoflow.data.dedup import jaccard

    sets = [shingles(t, shingle_size) for t in texts]
    lsh = MinHashLSH(threshold=min(threshold, 0.95), num_perm=num_perm, weights=(0.1, 0.9))
    found = []
    for index, (sketch, own) in enumerate(zip(sketch_all(sets, num_perm), sets, strict=True)):
        if sketch is None:
            continue
        best = next(((c, s) for c in sorted(lsh.query(sketch)) if (s := jaccard(own, sets[c])) >= threshold), None)
        if best is None:
            lsh.insert(index, sketch, check_duplication=False)
        else:
            found.append((index, *best))
    return found


def test_banded_lsh_finds_what_datasketch_lsh_finds():
    import random

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(300)]
    texts = []
    for _ in range(1500):
        roll = rng.random()
        if texts and roll < 0.3:  # a near copy of an earlier text: a word or two changed or added
            words = rng.choice(texts).split() or ["w0"]
            for _ in range(rng.randint(0, 3)):
                words[rng.randrange(len(words))] = rng.choice(vocab)
            texts.append(" ".join(words + rng.choices(vocab, k=rng.randint(0, 2))))
        elif roll < 0.33:
            texts.append("" if roll < 0.31 else rng.choice(vocab))
        else:
            texts.append(" ".join(rng.choices(vocab, k=rng.randint(5, 40))))
    for threshold in (0.5, 0.8, 1.0):
        ours = [(d.index, d.representative, d.similarity) for d in near_duplicates(texts, threshold=threshold)]
        assert ours == _datasketch_near_duplicates(texts, threshold=threshold)
        assert len(ours) > 20
