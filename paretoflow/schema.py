"""The canonical multi-objective schema: four Parquet tables every stage speaks.

- prompts:   prompt_id, messages (JSON list of {role, content}; multi-turn kept as turns,
             the last turn is the user's), text (the last user turn, for dedup/judging),
             source, split, tags (JSON list of strings)
- responses: response_id, prompt_id, text, origin (dataset name, or the policy that
             sampled it)
- ratings:   response_id, objective, value, scale_min, scale_max, rater, metadata
- pairs:     pair_id, prompt_id, chosen_id, rejected_id, objective, margin, source, metadata
             (chosen_id / rejected_id are response ids)

`metadata` (ratings, pairs) is a JSON object of what the source row carried beyond the
canonical fields (e.g. AlpacaEval's chosen_model / rejected_model / preference / judge),
"{}" when nothing. It is an *optional* column: `frame` fills it for writers that do not
set it and `read` adds it to tables written before it existed, so every reader sees the
same columns. `required_columns(name)` are the ones a table must have on disk.

Ids are content hashes, so the same prompt or response imported twice gets one id and a
split assignment that never changes when rows are added.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pandas as pd

PROMPT_COLUMNS = ["prompt_id", "messages", "text", "source", "split", "tags"]
RESPONSE_COLUMNS = ["response_id", "prompt_id", "text", "origin"]
RATING_COLUMNS = ["response_id", "objective", "value", "scale_min", "scale_max", "rater", "metadata"]
PAIR_COLUMNS = ["pair_id", "prompt_id", "chosen_id", "rejected_id", "objective", "margin", "source", "metadata"]
# Optional columns and the value of a row that does not set them.
OPTIONAL_COLUMNS = {"metadata": "{}"}
QUARANTINE_COLUMNS = ["source", "location", "reason", "detail", "raw"]

TABLES = {
    "prompts": PROMPT_COLUMNS,
    "responses": RESPONSE_COLUMNS,
    "ratings": RATING_COLUMNS,
    "pairs": PAIR_COLUMNS,
}

SPLITS = ("train", "val", "test")
ROLES = ("system", "user", "assistant")


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()[:20]


def required_columns(name: str) -> list[str]:
    """The columns a stored table must have (its canonical columns minus optional ones)."""
    return [c for c in TABLES.get(name, QUARANTINE_COLUMNS) if c not in OPTIONAL_COLUMNS]


def metadata_json(metadata: dict[str, Any] | None) -> str:
    """The metadata column's text: a JSON object with sorted keys ("{}" when empty)."""
    return json.dumps(metadata or {}, ensure_ascii=False, sort_keys=True, allow_nan=False)


def messages_json(messages: list[dict[str, str]]) -> str:
    return json.dumps([{"role": m["role"], "content": m["content"]} for m in messages], ensure_ascii=False)


def parse_messages(value: str) -> list[dict[str, str]]:
    return json.loads(value)


def prompt_id(messages: list[dict[str, str]]) -> str:
    return "p_" + _digest(messages_json(messages))


def response_id(prompt_id_: str, text: str) -> str:
    return "r_" + _digest(prompt_id_, text)


def pair_id(prompt_id_: str, chosen_id: str, rejected_id: str, objective: str) -> str:
    return "x_" + _digest(prompt_id_, chosen_id, rejected_id, objective)


def empty_table(name: str) -> pd.DataFrame:
    cols = TABLES[name] if name in TABLES else QUARANTINE_COLUMNS
    return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in cols})


def _dtype(column: str) -> Any:
    if column in ("value", "scale_min", "scale_max", "margin"):
        return "float64"
    return "str"


def frame(name: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Build a table with the canonical columns and dtypes (missing table → empty)."""
    if not rows:
        return empty_table(name)
    cols = TABLES.get(name, QUARANTINE_COLUMNS)
    df = _with_optional(pd.DataFrame(rows), cols)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: rows lack columns {missing}")
    return df[cols].astype({c: _dtype(c) for c in cols})


def _with_optional(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Fill the optional columns of `cols` that `df` lacks, or holds nulls in, with defaults."""
    for column, default in OPTIONAL_COLUMNS.items():
        if column in cols:
            df[column] = df[column].fillna(default) if column in df.columns else default
    return df


def read(name: str, path: Any, *, required: list[str] | None = None) -> pd.DataFrame:
    """The one reader of a canonical table: a missing file or column is one clear error.

    `required` defaults to the table's required columns (`required_columns`); a reader
    that needs fewer passes its own list. Optional columns a table lacks (written before
    they existed) are added with their defaults, so readers see the canonical columns.
    """
    from paretoflow.io import read_table

    columns = required_columns(name) if required is None else required
    df = read_table(path, columns, what=f"{name} table")
    return _with_optional(df, TABLES.get(name, QUARANTINE_COLUMNS)) if name in TABLES else df
