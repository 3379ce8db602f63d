"""The derived frames the validation gate checks: computed with pandas from the curated
tables (message structure, content-hash ids, word counts, foreign keys, split
disjointness, counts per split and per objective), then validated by Great Expectations
in `validate.py` so every check shows in Data Docs with its offending ids (GE 1.24 has no
cross-table expectation on pandas: UnexpectedRowsExpectation is SQL only)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from paretoflow import schema

# ---------------------------------------------------------------------------------------
# Derived frames: cross-row and cross-table facts computed with pandas, validated by GE.


def _words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def _parse_json(value: Any) -> Any:
    if not isinstance(value, str):
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def _messages_well_formed(messages: Any) -> bool:
    if not isinstance(messages, list) or not messages:
        return False
    for turn in messages:
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            return False
        if turn["role"] not in schema.ROLES or not isinstance(turn["content"], str):
            return False
    return messages[-1]["role"] == "user"


def _tags_well_formed(tags: Any) -> bool:
    return isinstance(tags, list) and all(isinstance(t, str) for t in tags)


def prompt_content_frame(prompts: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for prompt_id, messages_text, text, tags_text in zip(
        prompts["prompt_id"], prompts["messages"], prompts["text"], prompts["tags"]
    ):
        messages = _parse_json(messages_text)
        well_formed = _messages_well_formed(messages)
        rows.append(
            {
                "prompt_id": prompt_id,
                "messages_well_formed": well_formed,
                "text_is_last_user_turn": well_formed and messages[-1]["content"] == text,
                "id_matches_content": well_formed and schema.prompt_id(messages) == prompt_id,
                "tags_well_formed": _tags_well_formed(_parse_json(tags_text)),
                "word_count": _words(text),
            }
        )
    return _typed(rows, ["prompt_id", "messages_well_formed", "text_is_last_user_turn",
                         "id_matches_content", "tags_well_formed", "word_count"])


def prompt_split_frame(prompts: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct (prompt_id, split): a prompt_id seen twice here is in two splits."""
    return prompts[["prompt_id", "split"]].drop_duplicates().reset_index(drop=True)


def split_count_frame(prompts: pd.DataFrame) -> pd.DataFrame:
    counts = prompts["split"].value_counts()
    splits = list(schema.SPLITS)  # unknown split names fail on prompts.split already
    return _typed([{"split": s, "prompt_count": int(counts.get(s, 0))} for s in splits],
                  ["split", "prompt_count"])


def response_link_frame(responses: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    known = set(prompts["prompt_id"])
    rows = [
        {
            "response_id": response_id,
            "prompt_known": prompt_id in known,
            "id_matches_content": isinstance(prompt_id, str) and isinstance(text, str)
            and schema.response_id(prompt_id, text) == response_id,
            "word_count": _words(text),
        }
        for response_id, prompt_id, text in zip(responses["response_id"], responses["prompt_id"], responses["text"])
    ]
    return _typed(rows, ["response_id", "prompt_known", "id_matches_content", "word_count"])


def _metadata_well_formed(value: Any) -> bool:
    return isinstance(_parse_json(value), dict)


def rating_link_frame(ratings: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    known = set(responses["response_id"])
    rows = [
        {"rating": f"{r}|{o}|{w}", "response_known": r in known, "metadata_well_formed": _metadata_well_formed(m)}
        for r, o, w, m in zip(ratings["response_id"], ratings["objective"], ratings["rater"], ratings["metadata"])
    ]
    return _typed(rows, ["rating", "response_known", "metadata_well_formed"])


def pair_link_frame(pairs: pd.DataFrame, responses: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    prompt_of = dict(zip(responses["response_id"], responses["prompt_id"]))
    known_prompts = set(prompts["prompt_id"])
    rows = []
    for pid, prompt, chosen, rejected, objective, metadata in zip(
        pairs["pair_id"], pairs["prompt_id"], pairs["chosen_id"], pairs["rejected_id"], pairs["objective"],
        pairs["metadata"],
    ):
        rows.append(
            {
                "pair_id": pid,
                "prompt_known": prompt in known_prompts,
                "chosen_known": chosen in prompt_of,
                "rejected_known": rejected in prompt_of,
                "chosen_answers_prompt": prompt_of.get(chosen) == prompt,
                "rejected_answers_prompt": prompt_of.get(rejected) == prompt,
                "id_matches_content": all(isinstance(x, str) for x in (prompt, chosen, rejected, objective))
                and schema.pair_id(prompt, chosen, rejected, objective) == pid,
                "metadata_well_formed": _metadata_well_formed(metadata),
            }
        )
    return _typed(rows, ["pair_id", "prompt_known", "chosen_known", "rejected_known",
                         "chosen_answers_prompt", "rejected_answers_prompt", "id_matches_content",
                         "metadata_well_formed"])


def pair_count_frame(pairs: pd.DataFrame, prompts: pd.DataFrame, objective_names: list[str],
                     min_pairs: dict[str, int] | None = None) -> pd.DataFrame:
    """Pairs per (objective, split), every declared objective × split present (zero-filled),
    beside the minimum asked for that objective (`min_pairs`, 0 where absent)."""
    split_of = dict(zip(prompts["prompt_id"], prompts["split"]))
    splits = pairs["prompt_id"].map(split_of)
    counts = pd.DataFrame({"objective": pairs["objective"], "split": splits}).value_counts()
    minimum = min_pairs or {}
    rows = [
        {"objective_split": f"{o}/{s}", "pair_count": int(counts.get((o, s), 0)), "min_pairs": int(minimum.get(o, 0))}
        for o in objective_names
        for s in schema.SPLITS
    ]
    df = _typed(rows, ["objective_split", "pair_count", "min_pairs"])
    df["min_pairs"] = df["min_pairs"].astype("int64")
    return df


def _typed(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=columns)
    for c in columns:
        if c.endswith("_count"):
            df[c] = df[c].astype("int64")
        elif df[c].dtype == object and all(isinstance(v, bool) for v in df[c]):
            df[c] = df[c].astype("bool")
    return df


