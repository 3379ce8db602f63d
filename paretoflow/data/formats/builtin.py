"""builtin: {"prompt" | "messages", "tags", "system"} → a prompt only (the shipped prompt
sets; `system`, a system prompt, becomes the first turn as in generic files). Other
columns are not read; they are counted in the report (answers under another name would
otherwise vanish without a word). It reads no column_map: with one, "auto" takes such a
file as generic."""

from __future__ import annotations

from paretoflow.data.formats.hh_rlhf import hh_prompt
from paretoflow.data.formats.fields import (
    FormatContext, Parsed, RowParser, messages_of, no_column_map, tags_cell, tags_of, text, user, with_system,
)
from paretoflow.data.readers import CSV_SUFFIXES, TSV_SUFFIXES


def detect(value: dict) -> bool:
    keys = set(value)
    return bool(keys & {"prompt", "messages"}) and not keys & {"chosen", "rejected", "response", "rating", "completions"}


FIELDS = frozenset({"prompt", "messages", "tags", "system"})


def _row(row: dict, cells: bool = False) -> Parsed:
    if cells:  # a CSV/TSV row: text cells
        row = tags_cell(row)
    if row.get("messages") is not None:
        messages = messages_of(row["messages"], "messages")
    else:
        prompt = text(row, "prompt")
        messages = hh_prompt(prompt, "prompt") or user(prompt)
    return Parsed(with_system(messages, row, "system"), tags=tags_of(row), unread=[k for k in row if k not in FIELDS])


def parser(ctx: FormatContext) -> tuple[RowParser, list[str]]:
    no_column_map(ctx, "builtin", "the fields prompt / messages / tags / system")
    if str(ctx.path).lower().endswith((*CSV_SUFFIXES, *TSV_SUFFIXES)):
        return (lambda row: _row(row, cells=True)), []
    return _row, []
