"""ultrafeedback: instruction, completions [{response, annotations: {aspect: {Rating}},
fine-grained_score}] → 1–5 ratings per aspect, one best-vs-worst pair per aspect."""

from __future__ import annotations

import json

from paretoflow.data.formats.fields import (
    AttributeTarget, FormatContext, Pair, Parsed, Rating, RowParser, attribute_parser, number, objective_map, on_scale, present, text, user,
)
from paretoflow.data.readers import RowError


DEFAULT_MAP = {"helpfulness": "helpfulness"}
ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
ATTRIBUTES = (*ASPECTS, "fine-grained_score")
SCALE = (1.0, 5.0)  # UltraFeedback paper: ratings 1-5 per aspect


def detect(value: dict) -> bool:
    return {"instruction", "completions"} <= set(value)


def parse_ultrafeedback(row: dict, targets: list[AttributeTarget], minimized: frozenset[str] = frozenset()
                        ) -> tuple[list[dict[str, str]], list[str], list[Rating], list[Pair], int]:
    instruction = text(row, "instruction")
    completions = present(row, "completions")
    if isinstance(completions, str):
        try:
            completions = json.loads(completions)
        except json.JSONDecodeError:
            raise RowError("wrong_type", "field 'completions' is a string but not JSON") from None
    if not isinstance(completions, list):
        raise RowError("wrong_type", f"field 'completions' is {type(completions).__name__}, expected a list")
    if not completions:
        raise RowError("missing_field", "field 'completions' is empty")
    low, high = SCALE
    responses: list[str] = []
    ratings: list[Rating] = []
    not_rated = 0
    for index, completion in enumerate(completions):
        if not isinstance(completion, dict):
            raise RowError("wrong_type", f"completions[{index}] is not an object")
        responses.append(text(completion, "response"))
        annotations = completion.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise RowError("wrong_type", f"completions[{index}].annotations is not an object")
        for target in targets:
            key = f"completions[{index}].{target.attribute}"
            if target.attribute == "fine-grained_score":
                raw_value = completion.get("fine-grained_score")
            else:
                aspect = annotations.get(target.attribute)
                if aspect is not None and not isinstance(aspect, dict):
                    raise RowError("wrong_type", f"{key} is not an object with a Rating")
                raw_value = None if aspect is None else aspect.get("Rating")
            if raw_value is None or raw_value == "N/A":
                not_rated += 1  # the dataset leaves some aspects unrated ("N/A")
                continue
            value = on_scale(number(raw_value, key), low, high, key)
            if target.inverted:
                value = low + high - value
            ratings.append(Rating(index, target.objective, value, low, high, f"ultrafeedback:{target.attribute}"))
    pairs = []
    for target in targets:
        sign = -1.0 if target.objective in minimized else 1.0  # a "minimize" objective's best is its lowest
        rated = [(sign * r.value, r.response_index) for r in ratings if r.objective == target.objective]
        if len(rated) < 2:
            continue
        best = max(rated, key=lambda vr: (vr[0], -vr[1]))  # ties: first completion
        worst = min(rated, key=lambda vr: (vr[0], vr[1]))
        if best[0] > worst[0]:
            pairs.append(Pair(best[1], worst[1], target.objective, best[0] - worst[0]))
    return user(instruction), responses, ratings, pairs, not_rated


def parser(ctx: FormatContext) -> tuple[RowParser, list[str]]:
    targets, ignored = objective_map(DEFAULT_MAP, ctx.column_map, ctx.declared, ATTRIBUTES)
    minimized = ctx.minimized

    def row_parser(row: dict, targets: list[AttributeTarget]) -> Parsed:
        messages, responses, ratings, pairs, skipped = parse_ultrafeedback(row, targets, minimized)
        return Parsed(messages, responses, ratings, pairs, not_rated=skipped)
    return attribute_parser(row_parser, targets), ignored


def count_present(value: dict, attributes: list[str], counts) -> None:
    """Count the attributes the row's completions carry."""
    completions = value.get("completions")
    for completion in completions if isinstance(completions, list) else []:
        if not isinstance(completion, dict):
            continue
        annotations = completion.get("annotations")
        carried = set(annotations) if isinstance(annotations, dict) else set()
        carried |= {"fine-grained_score"} if completion.get("fine-grained_score") is not None else set()
        counts.update(a for a in attributes if a in carried)
