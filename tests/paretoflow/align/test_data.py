"""Pair selection, truncation rule and batch layout."""

from __future__ import annotations

import pandas as pd
import pytest

from paretoflow.align.data import (
    collate_pairs,
    load_pair_tables,
    normalized_rating,
    select_pairs,
    tokenize_pairs,
)
from paretoflow.config import Objective
from paretoflow.models import load_tokenizer

from .conftest import CHOSEN, REJECTED, write_pair_tables

OBJECTIVES = [Objective(name="helpfulness"), Objective(name="conciseness", direction="minimize"),
              Objective(name="harmlessness")]


def test_select_pairs_split_objective_and_margins(pair_tables_dir):
    tables = load_pair_tables(pair_tables_dir)
    train, report = select_pairs(tables, "helpfulness", "train", OBJECTIVES,
                                 margin_objectives=["conciseness", "harmlessness"])
    assert report.kept == len(train) == 8
    val, _ = select_pairs(tables, "helpfulness", "val", OBJECTIVES, limit=3)
    assert len(val) == 3
    assert not {e.prompt_id for e in train} & {e.prompt_id for e in val}
    example = train[0]
    assert example.chosen_text == CHOSEN and example.rejected_text == REJECTED
    assert example.messages[0]["role"] == "user"
    # conciseness is minimized: 0.8 → 0.2; harmlessness maximized: kept; helpfulness unused (NaN)
    assert example.chosen_margins[1:] == pytest.approx([0.2, 0.8])
    assert example.rejected_margins[1:] == pytest.approx([0.8, 0.2])
    assert example.chosen_margins[0] != example.chosen_margins[0]  # NaN


def test_normalized_rating_by_hand():
    assert normalized_rating(7.0, 0.0, 10.0, "maximize") == pytest.approx(0.7)
    assert normalized_rating(7.0, 0.0, 10.0, "minimize") == pytest.approx(0.3)
    assert normalized_rating(-1.0, -2.0, 2.0, "maximize") == pytest.approx(0.25)


def test_pairs_missing_margin_ratings_are_skipped_and_counted(tmp_path):
    directory = write_pair_tables(tmp_path / "p", rated_objectives=("helpfulness",))
    tables = load_pair_tables(directory)
    train, report = select_pairs(tables, "helpfulness", "train", OBJECTIVES, margin_objectives=["conciseness"])
    assert train == [] and report.skipped_missing_margin == 8


def test_dangling_response_id_names_file_and_row(pair_tables_dir):
    pairs = pd.read_parquet(pair_tables_dir / "pairs.parquet")
    pairs.loc[2, "chosen_id"] = "r_missing"
    pairs.to_parquet(pair_tables_dir / "pairs.parquet", index=False)
    tables = load_pair_tables(pair_tables_dir)
    with pytest.raises(ValueError, match=r"pairs.parquet: row 2 .*r_missing"):
        select_pairs(tables, "helpfulness", "train", OBJECTIVES)


def test_missing_table_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="prompts.parquet"):
        load_pair_tables(tmp_path)


def test_truncation_rule_and_counts(tiny_policy_dir, tmp_path):
    tokenizer = load_tokenizer(str(tiny_policy_dir))
    directory = write_pair_tables(tmp_path / "p", n_train=2, n_val=0, prompt_words=40)
    examples, _ = select_pairs(load_pair_tables(directory), "helpfulness", "train", OBJECTIVES)
    full = tokenizer(tokenizer.apply_chat_template(examples[0].messages, tokenize=False,
                                                   add_generation_prompt=True),
                     add_special_tokens=False)["input_ids"]
    chosen_full = tokenizer(CHOSEN, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    rejected_full = tokenizer(REJECTED, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    max_prompt, max_length = 20, 20 + len(rejected_full) + 1
    assert len(full) > max_prompt and len(chosen_full) > max_length - max_prompt >= len(rejected_full)

    tokenized, counts = tokenize_pairs(tokenizer, examples, max_length=max_length, max_prompt_tokens=max_prompt)
    pair = tokenized[0]
    assert pair.prompt_ids == full[-max_prompt:]  # left truncation keeps the generation prompt
    assert pair.chosen_ids == chosen_full[: max_length - max_prompt]  # right truncation, eos cut
    assert pair.rejected_ids == rejected_full  # fits: untouched, ends with eos
    assert (pair.prompt_truncated, pair.chosen_truncated, pair.rejected_truncated) == (True, True, False)
    assert counts.as_dict() == {"pairs": 2, "pairs_truncated": 2, "prompts_truncated": 2, "chosen_truncated": 2,
                                "rejected_truncated": 0,
                                "tokens": 2 * (2 * max_prompt + (max_length - max_prompt) + len(rejected_full))}
    with pytest.raises(ValueError, match="must be <"):
        tokenize_pairs(tokenizer, examples, max_length=10, max_prompt_tokens=10)


def test_collate_layout():
    from paretoflow.align.data import TokenizedPair

    pairs = [TokenizedPair([1, 2], [3, 4, 5], [6]), TokenizedPair([7], [8], [9, 10])]
    batch = collate_pairs(pairs, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5], [7, 8, 0, 0, 0], [1, 2, 6, 0, 0], [7, 9, 10, 0, 0]]
    assert batch["attention_mask"].sum(1).tolist() == [5, 2, 3, 3]
    assert batch["response_mask"].int().tolist() == [[0, 0, 1, 1, 1], [0, 1, 0, 0, 0],
                                                     [0, 0, 1, 0, 0], [0, 1, 1, 0, 0]]


def test_tradeoff_filter_drops_pairs_that_buy_the_objective_with_another(tmp_path):
    from paretoflow.align.sources import tradeoff_filter

    directory = write_pair_tables(tmp_path / "p", n_train=4, n_val=0, rated_objectives=("harmlessness",))
    tables = load_pair_tables(directory)
    # chosen 0.8 vs rejected 0.2 on harmlessness (maximized): make two pairs' chosen worse instead
    ratings = tables.ratings.copy()
    flipped = set(tables.pairs[tables.pairs["objective"] == "helpfulness"]["chosen_id"].iloc[:2])
    ratings.loc[ratings["response_id"].isin(flipped), "value"] = 0.05
    tables.ratings = ratings
    examples, _ = select_pairs(tables, "helpfulness", "train", OBJECTIVES)
    kept, dropped = tradeoff_filter(tables, examples, "helpfulness", OBJECTIVES, max_drop=0.1)
    assert (len(kept), dropped) == (2, 2)  # chosen 0.05 vs rejected 0.2: a 0.15 drop > 0.1
    assert tradeoff_filter(tables, examples, "helpfulness", OBJECTIVES, max_drop=0.2)[1] == 0
    assert tradeoff_filter(tables, examples, "helpfulness", OBJECTIVES, max_drop=None) == (examples, 0)
    # the conciseness pairs share those responses: the same two go; unrated sides never count
    concise, _ = select_pairs(tables, "conciseness", "train", OBJECTIVES)
    assert tradeoff_filter(tables, concise, "conciseness", OBJECTIVES, max_drop=0.0)[1] == 2
    tables.ratings = tables.ratings.iloc[0:0]
    assert tradeoff_filter(tables, concise, "conciseness", OBJECTIVES, max_drop=0.0)[1] == 0
