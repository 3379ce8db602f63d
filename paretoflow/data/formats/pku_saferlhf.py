"""pku_saferlhf: prompt, response_0, response_1, better_response_id, safer_response_id → two
pairs on the same responses (better → helpfulness, safer → harmlessness by default)."""

from __future__ import annotations

from paretoflow.data.formats.fields import (
    AttributeTarget, FormatContext, Pair, Parsed, RowParser, attribute_parser, objective_map, present, text, user,
)
from paretoflow.data.readers import RowError


# Dataset attribute → objective defaults (column_map read as {objective: attribute}).
DEFAULT_MAP = {"helpfulness": "better_response_id", "harmlessness": "safer_response_id"}
ATTRIBUTES = ("better_response_id", "safer_response_id")


def detect(value: dict) -> bool:
    keys = set(value)
    return {"response_0", "response_1"} <= keys and bool(keys & set(ATTRIBUTES))


def parse_pku(row: dict, targets: list[AttributeTarget]) -> tuple[list[dict[str, str]], list[str], list[Pair]]:
    prompt = text(row, "prompt")
    responses = [text(row, "response_0"), text(row, "response_1")]
    pairs = []
    for target in targets:
        value = present(row, target.attribute)
        if isinstance(value, bool) or value not in (0, 1, "0", "1"):
            raise RowError("wrong_type", f"field {target.attribute!r} = {value!r}, expected 0 or 1")
        better = int(value)
        pairs.append(Pair(better, 1 - better, target.objective, 1.0))
    return user(prompt), responses, pairs




def _row(row: dict, targets: list[AttributeTarget]) -> Parsed:
    messages, responses, pairs = parse_pku(row, targets)
    return Parsed(messages, responses, pairs=pairs)


def parser(ctx: FormatContext) -> tuple[RowParser, list[str]]:
    targets, ignored = objective_map(DEFAULT_MAP, ctx.column_map, ctx.declared, ATTRIBUTES)
    if any(t.inverted for t in targets):
        inverted = next(t.attribute for t in targets if t.inverted)
        raise ValueError(f"pku_saferlhf: column_map value -{inverted} cannot be inverted")
    return attribute_parser(_row, targets), ignored


def count_present(value: dict, attributes: list[str], counts) -> None:
    counts.update(a for a in attributes if value.get(a) is not None)
