"""builtin: {"prompt" | "messages", "tags"} → a prompt only (the shipped prompt sets)."""

from __future__ import annotations

from paretoflow.data.formats.fields import FormatContext, Parsed, RowParser, messages_of, tags_of, text, user


def detect(value: dict) -> bool:
    keys = set(value)
    return bool(keys & {"prompt", "messages"}) and not keys & {"chosen", "rejected", "response", "rating", "completions"}


def _row(row: dict) -> Parsed:
    if row.get("messages") is not None:
        return Parsed(messages_of(row["messages"], "messages"), tags=tags_of(row))
    return Parsed(user(text(row, "prompt")), tags=tags_of(row))




def parser(ctx: FormatContext) -> tuple[RowParser, list[str]]:
    return _row, []
