"""The expectation suites of the validation gate: for each stored table and derived frame
(checks.py), its id column (for offending ids) and its Great Expectations expectations.
`gxe` is `great_expectations.expectations`, passed in so that importing paretoflow stays
fast (GE costs ~4 s to import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from paretoflow import schema
from paretoflow.data.checks import (
    pair_count_frame, pair_link_frame, prompt_content_frame, prompt_split_frame, rating_link_frame,
    response_link_frame, split_count_frame,
)

if TYPE_CHECKING:
    from paretoflow.config import Params

FLOAT_COLUMNS = ("value", "scale_min", "scale_max", "margin")
# ---------------------------------------------------------------------------------------
# Suites: for each frame, its id column (for offending ids) and its expectations.


@dataclass
class _Frame:
    name: str
    data: pd.DataFrame
    id_column: str
    expectations: list[tuple[Any, str]]  # (GE expectation, why)


def _columns_ok(tables: dict[str, pd.DataFrame], name: str) -> bool:
    return set(schema.TABLES.get(name, schema.QUARANTINE_COLUMNS)) <= set(tables[name].columns)


def _not_null(gxe: Any, *columns: str) -> list[tuple[Any, str]]:
    return [(gxe.ExpectColumnValuesToNotBeNull(column=c), "required") for c in columns]


def _all_true(gxe: Any, why: dict[str, str]) -> list[tuple[Any, str]]:
    return [(gxe.ExpectColumnValuesToBeInSet(column=c, value_set=[True]), text) for c, text in why.items()]


def _stored_frame(gxe: Any, tables: dict[str, pd.DataFrame], name: str, id_column: str,
                  extra: list[tuple[Any, str]]) -> _Frame:
    """A stored table: exact canonical columns and dtypes, then `extra` if the columns hold."""
    columns = schema.TABLES.get(name, schema.QUARANTINE_COLUMNS)
    exps: list[tuple[Any, str]] = [
        (gxe.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=True), "canonical columns")
    ]
    if _columns_ok(tables, name):
        for c in columns:
            type_ = "float64" if c in FLOAT_COLUMNS else "str"
            exps.append((gxe.ExpectColumnValuesToBeOfType(column=c, type_=type_), "canonical dtype"))
        exps += extra
    return _Frame(name, tables[name], id_column, exps)


def _rating_checks(gxe: Any, params: "Params") -> list[tuple[Any, str]]:
    from great_expectations.expectations.row_conditions import Column

    checks: list[tuple[Any, str]] = [
        *_not_null(gxe, "response_id", "objective", "value", "scale_min", "scale_max", "rater"),
        (gxe.ExpectCompoundColumnsToBeUnique(column_list=["response_id", "objective", "rater"]),
         "one rating per response, objective and rater"),
        (gxe.ExpectColumnValuesToBeInSet(column="objective", value_set=params.objective_names), "declared objectives"),
        (gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="scale_max", column_B="scale_min"),
         "scale_min < scale_max"),
        (gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="value", column_B="scale_min", or_equal=True),
         "value >= scale_min"),
        (gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="scale_max", column_B="value", or_equal=True),
         "value <= scale_max"),
    ]
    for objective in params.objectives:
        low, high = objective.scale
        # Ratings on the objective's own scale must lie inside the declared scale; ratings on
        # a rater's native scale (e.g. 0-4 Likert) are normalised by later stages.
        condition = (Column("objective") == objective.name) & (Column("scale_min") == low) & (Column("scale_max") == high)
        checks.append((
            gxe.ExpectColumnValuesToBeBetween(column="value", min_value=low, max_value=high, row_condition=condition),
            f"{objective.name} ratings on its declared scale [{low}, {high}]",
        ))
    return checks


def _stored_frames(gxe: Any, tables: dict[str, pd.DataFrame], params: "Params") -> list[_Frame]:
    objectives = params.objective_names
    return [
        _stored_frame(gxe, tables, "prompts", "prompt_id", [
            *_not_null(gxe, "prompt_id", "messages", "text", "split", "tags"),
            (gxe.ExpectColumnValuesToBeUnique(column="prompt_id"), "content-hash id"),
            (gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(schema.SPLITS)), "declared splits"),
        ]),
        _stored_frame(gxe, tables, "responses", "response_id", [
            *_not_null(gxe, "response_id", "prompt_id", "text", "origin"),
            (gxe.ExpectColumnValuesToBeUnique(column="response_id"), "content-hash id"),
        ]),
        _stored_frame(gxe, tables, "ratings", "response_id", _rating_checks(gxe, params)),
        _stored_frame(gxe, tables, "pairs", "pair_id", [
            *_not_null(gxe, "pair_id", "prompt_id", "chosen_id", "rejected_id", "objective", "source"),
            (gxe.ExpectColumnValuesToBeUnique(column="pair_id"), "content-hash id"),
            (gxe.ExpectColumnValuesToBeInSet(column="objective", value_set=objectives), "declared objectives"),
            (gxe.ExpectSelectColumnValuesToBeUniqueWithinRecord(column_list=["chosen_id", "rejected_id"]),
             "chosen_id != rejected_id"),
            (gxe.ExpectColumnValuesToBeBetween(column="margin", min_value=0.0), "chosen is not rated below rejected"),
        ]),
        _stored_frame(gxe, tables, "quarantine", "location", [*_not_null(gxe, "source", "reason")]),
    ]


def _prompt_frames(gxe: Any, prompts: pd.DataFrame, cfg: Any) -> list[_Frame]:
    return [
        _Frame("prompts_content", prompt_content_frame(prompts), "prompt_id", [
            *_all_true(gxe, {
                "messages_well_formed": "JSON list of {role, content}, last turn from the user",
                "text_is_last_user_turn": "text equals the last user turn",
                "id_matches_content": "prompt_id == schema.prompt_id(messages)",
                "tags_well_formed": "JSON list of strings",
            }),
            (gxe.ExpectColumnValuesToBeBetween(column="word_count", min_value=1, max_value=cfg.max_words),
             f"1..{cfg.max_words} words"),
        ]),
        _Frame("prompt_splits", prompt_split_frame(prompts), "prompt_id", [
            (gxe.ExpectColumnValuesToBeUnique(column="prompt_id"), "no prompt_id shared across splits"),
        ]),
        _Frame("split_counts", split_count_frame(prompts), "split", [
            (gxe.ExpectColumnValuesToBeBetween(column="prompt_count", min_value=cfg.min_prompts_per_split),
             f"at least {cfg.min_prompts_per_split} prompts per split"),
        ]),
    ]


def _pair_frames(gxe: Any, tables: dict[str, pd.DataFrame], params: "Params") -> list[_Frame]:
    return [
        _Frame("pairs_links", pair_link_frame(tables["pairs"], tables["responses"], tables["prompts"]), "pair_id",
               _all_true(gxe, {
                   "prompt_known": "prompt_id exists in prompts",
                   "chosen_known": "chosen_id exists in responses",
                   "rejected_known": "rejected_id exists in responses",
                   "chosen_answers_prompt": "chosen response belongs to the pair's prompt",
                   "rejected_answers_prompt": "rejected response belongs to the pair's prompt",
                   "id_matches_content": "pair_id == schema.pair_id(prompt, chosen, rejected, objective)",
                   "metadata_well_formed": "metadata is a JSON object",
               })),
        _Frame("pair_counts", pair_count_frame(tables["pairs"], tables["prompts"], params.objective_names,
                                               {o: params.validate_.min_pairs(o) for o in params.objective_names}),
               "objective_split", [
            (gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="pair_count", column_B="min_pairs", or_equal=True),
             "at least validate.min_pairs_per_objective_split pairs per objective and split"),
        ]),
    ]


def _derived_frames(gxe: Any, tables: dict[str, pd.DataFrame], params: "Params") -> tuple[list[_Frame], list[str]]:
    """Cross-row and cross-table frames, each only when the columns it reads exist."""
    cfg = params.validate_
    frames: list[_Frame] = []
    skipped: list[str] = []
    prompts_ok, responses_ok = _columns_ok(tables, "prompts"), _columns_ok(tables, "responses")
    if prompts_ok:
        frames += _prompt_frames(gxe, tables["prompts"], cfg)
    else:
        skipped += ["prompts_content", "prompt_splits", "split_counts"]
    if prompts_ok and responses_ok:
        frames.append(_Frame("responses_links", response_link_frame(tables["responses"], tables["prompts"]),
                             "response_id", [
            *_all_true(gxe, {"prompt_known": "prompt_id exists in prompts",
                             "id_matches_content": "response_id == schema.response_id(prompt_id, text)"}),
            (gxe.ExpectColumnValuesToBeBetween(column="word_count", max_value=cfg.max_words),
             f"at most {cfg.max_words} words"),
        ]))
    else:
        skipped.append("responses_links")
    if responses_ok and _columns_ok(tables, "ratings"):
        frames.append(_Frame("ratings_links", rating_link_frame(tables["ratings"], tables["responses"]), "rating",
                             _all_true(gxe, {"response_known": "response_id exists in responses",
                                             "metadata_well_formed": "metadata is a JSON object"})))
    else:
        skipped.append("ratings_links")
    if prompts_ok and responses_ok and _columns_ok(tables, "pairs"):
        frames += _pair_frames(gxe, tables, params)
    else:
        skipped += ["pairs_links", "pair_counts"]
    return frames, skipped


def _build_frames(tables: dict[str, pd.DataFrame], params: "Params") -> tuple[list[_Frame], list[str]]:
    import great_expectations.expectations as gxe

    unknown = set(_min_pairs_map(params)) - set(params.objective_names)
    if unknown:
        raise ValueError(f"validate.min_pairs_per_objective_split names undeclared objectives {sorted(unknown)} "
                         f"(declared: {params.objective_names})")
    derived, skipped = _derived_frames(gxe, tables, params)
    return _stored_frames(gxe, tables, params) + derived, skipped


def _min_pairs_map(params: "Params") -> dict[str, int]:
    v = params.validate_.min_pairs_per_objective_split
    return dict(v) if isinstance(v, dict) else {}


