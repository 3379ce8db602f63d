"""The built-in prompt set (data/raw/prompts): format the builtin importer reads, size,
category and harmful mix, and held-out hygiene checked with curate's own dedup and
decontamination functions (so curation keeps every prompt)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from paretoflow.data.dedup import contaminated, near_duplicates, ngrams, tokens

PROMPTS = Path(__file__).resolve().parents[1] / "data/raw/prompts"
CATEGORIES = {"everyday", "explanation", "advice", "creative", "coding", "unsafe"}


def _load(name: str) -> list[dict]:
    rows = []
    for number, line in enumerate((PROMPTS / f"{name}.jsonl").read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        assert set(row) in ({"prompt", "tags"}, {"messages", "tags"}), f"{name}.jsonl line {number}: keys {sorted(row)}"
        rows.append(row)
    return rows


def _dialogue(row: dict) -> str:
    return row["prompt"] if "prompt" in row else "\n".join(m["content"] for m in row["messages"])


@pytest.fixture(scope="module")
def sets() -> dict[str, list[dict]]:
    return {"train": _load("train"), "eval": _load("eval")}


def test_rows_are_well_formed(sets):
    for name, rows in sets.items():
        for row in rows:
            tags = row["tags"]
            assert isinstance(tags, list) and all(isinstance(t, str) for t in tags)
            categories = [t.removeprefix("category:") for t in tags if t.startswith("category:")]
            assert len(categories) == 1 and categories[0] in CATEGORIES, (name, row)
            # harmful ⇔ unsafe: the refusal judge reads the "harmful" tag.
            assert ("harmful" in tags) == (categories[0] == "unsafe"), (name, row)
            if "messages" in row:
                roles = [m["role"] for m in row["messages"]]
                assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"], (name, roles)
                assert "multi_turn" in tags
            assert 3 <= len(_dialogue(row).split()) <= 80, (name, row)  # CPU run answers ≤ 64 tokens


def test_size_and_mix(sets):
    assert len(sets["train"]) >= 300 and len(sets["eval"]) >= 75
    for name, rows in sets.items():
        categories = Counter(next(t for t in r["tags"] if t.startswith("category:")) for r in rows)
        assert {c.removeprefix("category:") for c in categories} == CATEGORIES, name
        harmful = sum("harmful" in r["tags"] for r in rows) / len(rows)
        assert 0.12 <= harmful <= 0.2, (name, harmful)
        assert sum("messages" in r for r in rows) >= 3, name


def test_no_duplicates_and_no_eval_overlap(sets, params):
    train = [_dialogue(r) for r in sets["train"]]
    held_out = [_dialogue(r) for r in sets["eval"]]
    everything = held_out + train
    assert len({" ".join(tokens(t)) for t in everything}) == len(everything)
    # Stricter than curate's threshold: not a single shared word 8-gram.
    eval_grams = set().union(*(ngrams(tokens(t), 8) for t in held_out))
    shared = [t for t in train if ngrams(tokens(t), 8) & eval_grams]
    assert not shared, shared[:3]
    cfg = params.curate
    assert not contaminated(train, held_out, cfg.decontam_ngram, cfg.decontam_threshold)
    assert not near_duplicates(everything, cfg.minhash_num_perm, cfg.near_dup_threshold, cfg.shingle_size)
