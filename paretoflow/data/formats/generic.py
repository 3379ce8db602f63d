"""generic: JSONL/JSON/Parquet/CSV/TSV with `column_map` {canonical field: column}: fields
prompt | messages, chosen + rejected (a pair), response (+ rating), objective, margin,
tags, scale_min, scale_max. Unmapped fields default to columns of the same name. Every
other column of a row is kept as metadata (a JSON object on the row's pairs and ratings,
e.g. AlpacaEval's chosen_model / rejected_model / preference / judge); NaN/inf there become
null. Rated files get pairs derived across the rows of a prompt after curation."""

from __future__ import annotations

from collections.abc import Sequence

from paretoflow.data.formats.fields import (
    FormatContext, Pair, Parsed, Rating, RowParser, json_safe, messages_of, number, on_scale, present, tags_of, text, user,
)
from paretoflow.data.readers import RowError


GENERIC_FIELDS = (
    "prompt", "messages", "chosen", "rejected", "response", "rating", "objective", "margin",
    "tags", "scale_min", "scale_max",
)
DERIVE_PAIRS = True


def detect(value: dict) -> bool:
    return True   # the fallback: the registry asks it last


def _generic_objective(row: dict, columns: dict[str, str], objective: str | None, declared: Sequence[str]) -> str:
    if columns["objective"] in row:
        name = text(row, columns["objective"])
    elif objective:
        name = objective
    else:
        raise RowError("missing_field", f"no objective column {columns['objective']!r} and no source objective")
    if name not in declared:
        raise RowError("unknown_objective", f"objective {name!r} not declared in params ({list(declared)})")
    return name


def _generic_rating(row: dict, columns: dict[str, str], name: str, scales: dict[str, tuple[float, float]]) -> Rating:
    value = number(present(row, columns["rating"]), columns["rating"])
    low, high = scales[name]
    if row.get(columns["scale_min"]) is not None:
        low = number(row[columns["scale_min"]], columns["scale_min"])
    if row.get(columns["scale_max"]) is not None:
        high = number(row[columns["scale_max"]], columns["scale_max"])
    if not low < high:
        raise RowError("rating_off_scale", f"scale [{low:g}, {high:g}] is empty (scale_min must be < scale_max)")
    return Rating(0, name, on_scale(value, low, high, columns["rating"]), low, high, "generic")


def _parse_generic(row: dict, columns: dict[str, str], objective: str | None,
                   declared: Sequence[str], scales: dict[str, tuple[float, float]], used: frozenset[str]) -> Parsed:
    """One row; `used`: the keys the fields map to (the others are metadata), one set per file."""
    if columns["messages"] in row and row[columns["messages"]] is not None:
        parsed = Parsed(messages_of(row[columns["messages"]], columns["messages"]))
    else:
        parsed = Parsed(user(text(row, columns["prompt"])))
    parsed.tags = tags_of(row, columns["tags"])
    parsed.metadata = {k: json_safe(v) for k, v in sorted(row.items()) if k not in used}
    if columns["chosen"] in row or columns["rejected"] in row:
        parsed.responses = [text(row, columns["chosen"]), text(row, columns["rejected"])]
        margin = number(row[columns["margin"]], columns["margin"]) if row.get(columns["margin"]) is not None else 1.0
        if margin < 0:
            raise RowError("negative_margin", f"field {columns['margin']!r} = {margin:g}: the chosen answer is "
                                              "rated below the rejected one (swap them, or give |margin|)")
        parsed.pairs = [Pair(0, 1, _generic_objective(row, columns, objective, declared), margin)]
    elif columns["response"] in row:
        parsed.responses = [text(row, columns["response"])]
        if columns["rating"] in row:
            name = _generic_objective(row, columns, objective, declared)
            parsed.ratings = [_generic_rating(row, columns, name, scales)]
    return parsed


def parser(ctx: FormatContext) -> tuple[RowParser, list[str]]:
    name, objective, column_map, objectives = ctx.name, ctx.objective, ctx.column_map, ctx.objectives
    columns = {f: column_map.get(f, f) for f in GENERIC_FIELDS}
    unknown_fields = set(column_map) - set(GENERIC_FIELDS)
    if unknown_fields:
        raise ValueError(f"{name}: column_map fields {sorted(unknown_fields)} not among {list(GENERIC_FIELDS)}")
    declared = [o.name for o in objectives]
    scales = {o.name: o.scale for o in objectives}
    used = frozenset(columns.values())
    return (lambda row: _parse_generic(row, columns, objective, declared, scales, used)), []


