"""Small canonical pair tables and a tiny training budget for the align tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from paretoflow import schema
from paretoflow.config import AlignBudget

OBJECTIVES = ("helpfulness", "conciseness", "harmlessness")
# A learnable toy preference: the tiny tokenizer's corpus holds both answers, so a
# 2-layer model can separate them within a few steps.
CHOSEN = "Sure! Here are three tips for better sleep: keep a schedule, avoid screens, relax."
REJECTED = "I cannot help with that request."


def write_pair_tables(
    directory: Path,
    n_train: int = 8,
    n_val: int = 4,
    pair_objectives: tuple[str, ...] = ("helpfulness", "conciseness"),
    rated_objectives: tuple[str, ...] = OBJECTIVES,
    prompt_words: int = 0,
    source: str = "test",
    chosen: str = CHOSEN,
    rejected: str = REJECTED,
    tags: str = "[]",
) -> Path:
    """Write prompts/responses/ratings/pairs.parquet; returns the directory.

    Every prompt gets the same chosen/rejected texts (made unique per prompt by the
    response id). Ratings (rater "judges"): chosen 0.8, rejected 0.2 on every objective
    in `rated_objectives`.
    """
    directory.mkdir(parents=True, exist_ok=True)
    prompts, responses, ratings, pairs = [], [], [], []
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * 2
    for i, split in enumerate(splits):
        content = f"Question {i} ({source}): write a short poem about the sea." + " sky" * prompt_words
        messages = [{"role": "user", "content": content}]
        pid = schema.prompt_id(messages)
        prompts.append(dict(prompt_id=pid, messages=schema.messages_json(messages), text=content,
                            source=source, split=split, tags=tags))
        ids = {}
        for kind, text in (("chosen", chosen), ("rejected", rejected)):
            rid = schema.response_id(pid, text)
            ids[kind] = rid
            responses.append(dict(response_id=rid, prompt_id=pid, text=text, origin=source))
            for objective in rated_objectives:
                ratings.append(dict(response_id=rid, objective=objective,
                                    value=0.8 if kind == "chosen" else 0.2,
                                    scale_min=0.0, scale_max=1.0, rater="judges"))
        for objective in pair_objectives:
            pairs.append(dict(pair_id=schema.pair_id(pid, ids["chosen"], ids["rejected"], objective),
                              prompt_id=pid, chosen_id=ids["chosen"], rejected_id=ids["rejected"],
                              objective=objective, margin=0.6, source=source))
    for name, rows in (("prompts", prompts), ("responses", responses), ("ratings", ratings), ("pairs", pairs)):
        schema.frame(name, rows).to_parquet(directory / f"{name}.parquet", index=False)
    return directory


def tiny_profile(**overrides) -> AlignBudget:
    """A budget that trains the tiny model in about a second (selects on val_loss unless
    a test passes a Selection and early_stopping_metric="val_objective")."""
    values = dict(lora_r=4, lora_alpha=8.0, lora_dropout=0.0, batch_size=4, eval_batch_size=8,
                  max_steps=6, eval_steps=3, checkpoint_steps=3, patience=5, max_val_pairs=4,
                  max_length=48, max_prompt_tokens=24, learning_rate=1e-2,
                  early_stopping_metric="val_loss", selection_prompts=0)
    values.update(overrides)
    return AlignBudget(**values)


@pytest.fixture
def pair_tables_dir(tmp_path) -> Path:
    return write_pair_tables(tmp_path / "pairs")


@pytest.fixture(autouse=True)
def _tiny_model_threads(one_torch_thread):
    yield
