"""Reward-stage data: salted held-out splits on real content-hash ids, seeded sampling."""

import pandas as pd
import pytest

from paretoflow.data.dedup import split_of
from paretoflow.reward.data import held_out_splits, pairs_from_ratings, salted_fraction, sample_pairs
from paretoflow.schema import prompt_id


def _real_ids(n: int) -> list[str]:
    return [prompt_id([{"role": "user", "content": f"Question number {i}: how do I bake bread?"}]) for i in range(n)]


def test_val_and_test_both_keep_prompts_on_curate_split_ids():
    # Issue 9: curate splits by sha256(prompt id); the old carve-out reused that hash, so
    # every val prompt (draw in [0.8, 0.9)) moved to test. Real ids, curate's own split:
    ids = _real_ids(600)
    splits = pd.Series([split_of(p, {"train": 0.8, "val": 0.2}) for p in ids], index=ids)
    n_val = int((splits == "val").sum())
    assert n_val > 60  # sanity: the data has a val split and no test split
    out, note = held_out_splits(splits, set(ids))
    n_test, n_val_left = int((out == "test").sum()), int((out == "val").sum())
    assert n_test + n_val_left == n_val and (out[splits == "train"] == "train").all()
    assert 0.35 * n_val < n_test < 0.65 * n_val  # about half each, not all on one side
    assert "salted" in note
    again, _ = held_out_splits(splits, set(ids))
    assert again.equals(out)


def test_train_only_data_gets_val_and_test_carved_out():
    ids = _real_ids(400)
    splits = pd.Series([split_of(p, {"train": 1.0}) for p in ids], index=ids)
    out, note = held_out_splits(splits, set(ids))
    counts = out.value_counts()
    assert 20 < counts["val"] < 60 and 20 < counts["test"] < 60 and "10%" in note


def test_salted_fraction_is_independent_of_curates_draw():
    ids = _real_ids(2000)
    val = [p for p in ids if split_of(p, {"train": 0.8, "val": 0.1, "test": 0.1}) == "val"]
    draws = [salted_fraction(p, "reward-holdout") for p in val]
    assert 0.3 < sum(d < 0.5 for d in draws) / len(draws) < 0.7


def _pairs(n_prompts: int, per_prompt: int, source: str) -> pd.DataFrame:
    rows = []
    for i in range(n_prompts):
        for j in range(per_prompt):
            rows.append({"prompt_id": f"{source}_p{i}", "chosen_id": f"{source}_c{i}_{j}", "rejected_id": f"{source}_r{i}",
                         "objective": "helpfulness", "source": source})
    return pd.DataFrame(rows)


def test_sampling_caps_prompts_per_source_and_pairs_per_prompt():
    pairs = pd.concat([_pairs(50, 6, "a"), _pairs(10, 2, "b")], ignore_index=True)
    kept, summary = sample_pairs(pairs, max_pairs_per_source=82, max_pairs_per_prompt=4, seed=0)
    assert summary["a"] == {"prompts_in": 50, "prompts_kept": 20, "pairs_in": 300, "pairs_kept": 80}
    assert summary["b"] == {"prompts_in": 10, "prompts_kept": 10, "pairs_in": 20, "pairs_kept": 20}
    assert kept.groupby("prompt_id").size().max() == 4
    again, _ = sample_pairs(pairs.sample(frac=1.0, random_state=1), 82, 4, seed=0)
    assert again.reset_index(drop=True).equals(kept)  # row order does not matter
    other, _ = sample_pairs(pairs, 82, 4, seed=1)
    assert set(other["prompt_id"]) != set(kept["prompt_id"])  # the seed does
    everything, _ = sample_pairs(pairs, None, None, seed=0)
    assert len(everything) == len(pairs)


def test_pairs_from_ratings_orders_by_rating_and_caps_by_gap():
    values = pd.Series({"a": 0.9, "b": 0.5, "c": 0.1, "d": 0.52})
    prompt_of = pd.Series({"a": "p", "b": "p", "c": "p", "d": "p"})
    pairs = pairs_from_ratings(values, prompt_of, min_margin=0.05)
    assert set(zip(pairs["chosen_id"], pairs["rejected_id"])) == {("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("d", "c")}
    top = pairs_from_ratings(values, prompt_of, min_margin=0.05, max_pairs_per_prompt=2)
    assert list(zip(top["chosen_id"], top["rejected_id"])) == [("a", "c"), ("d", "c")]
    assert top["margin"].tolist() == pytest.approx([0.8, 0.42])
