"""helpsteer2: prompt, response and 0–4 attribute ratings; multi-turn prompts use the
dataset's "<extra_id_1>User / Assistant" markers. Pairs are derived across the rows of a
prompt after curation (DERIVE_PAIRS)."""

from __future__ import annotations

import re

from paretoflow.data.formats.fields import (
    AttributeTarget, FormatContext, Parsed, Rating, RowParser, attribute_parser, number, objective_map, on_scale,
    present, text,
)
from paretoflow.data.readers import RowError


# HelpSteer2 verbosity 4 = very long: inverted it is the conciseness axis.
DEFAULT_MAP = {"helpfulness": "helpfulness", "conciseness": "-verbosity"}
ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
SCALE = (0.0, 4.0)  # HelpSteer2 paper: Likert 0-4 per attribute
DERIVE_PAIRS = True


def detect(value: dict) -> bool:
    keys = set(value)
    return {"prompt", "response"} <= keys and bool(keys & set(ATTRIBUTES))


_HELPSTEER_TURN = re.compile(r"\n?<extra_id_1>(User|Assistant)\n")


def _helpsteermessages_of(prompt: str) -> list[dict[str, str]]:
    parts = _HELPSTEER_TURN.split(prompt)
    turns = [{"role": "user", "content": parts[0]}]
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        turns.append({"role": "user" if speaker == "User" else "assistant", "content": content})
    if turns[-1]["role"] != "user":
        raise RowError("malformed_dialogue", "multi-turn prompt does not end with a User turn")
    return turns


def parse_helpsteer(row: dict, targets: list[AttributeTarget]) -> tuple[list[dict[str, str]], list[str], list[Rating]]:
    messages = _helpsteermessages_of(text(row, "prompt"))
    response = text(row, "response")
    low, high = SCALE
    ratings = []
    for target in targets:
        value = on_scale(number(present(row, target.attribute), target.attribute), low, high, target.attribute)
        if target.inverted:
            value = low + high - value
        ratings.append(Rating(0, target.objective, value, low, high, f"helpsteer2:{'-' if target.inverted else ''}{target.attribute}"))
    return messages, [response], ratings




def _row(row: dict, targets: list[AttributeTarget]) -> Parsed:
    messages, responses, ratings = parse_helpsteer(row, targets)
    return Parsed(messages, responses, ratings=ratings)


def parser(ctx: FormatContext) -> tuple[RowParser, list[str]]:
    targets, ignored = objective_map(DEFAULT_MAP, ctx.column_map, ctx.declared, ATTRIBUTES)
    return attribute_parser(_row, targets), ignored


def count_present(value: dict, attributes: list[str], counts) -> None:
    counts.update(a for a in attributes if value.get(a) is not None)
