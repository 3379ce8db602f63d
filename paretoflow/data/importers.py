"""Read raw preference/rating/prompt files into `Record`s on the canonical schema.

A *row* (the unit of the rows_in == rows_kept + rows_quarantined identity) is one input
record: a non-blank line of a JSONL file, an element of a JSON array file, or a row of a
Parquet/CSV/TSV table (readers.py reads files under the size caps). Rows stream from the
reader and each becomes its record or quarantine entry as it arrives; a repeated line's
entry is two integers in the file's `QuarantineLog`. One row becomes one
`Record` (a prompt with its responses, ratings and pairs) or one quarantine entry, never
both and never neither: whatever exception one row raises, that row is quarantined with
its reason and the import goes on. HelpSteer2 and generic rating files also get pairs
derived *across* rows of the same prompt; those are built after curation
(`derive_pairs`) and are not rows.

Formats (`SourceConfig.format`, or "auto": detected from the first readable record):

- builtin: {"prompt" | "messages", "tags"} → a prompt only.
- hh_rlhf (Anthropic HH-RLHF): {"chosen", "rejected"} full dialogues
  "\\n\\nHuman: ...\\n\\nAssistant: ..."; the shared turns are the prompt, the two final
  assistant turns the responses, one pair. Objective: `objective`, else from the path
  ("helpful*" → helpfulness, "harmless*" → harmlessness, as in the HH folder names).
  Dialogues that differ before the final Assistant turn → prompt_mismatch; dialogues
  that do not open with a Human turn and alternate Human/Assistant → malformed_dialogue.
- pku_saferlhf: prompt, response_0, response_1, better_response_id, safer_response_id →
  two pairs on the same responses.
- helpsteer2: prompt, response and 0–4 attribute ratings; multi-turn prompts use the
  dataset's "<extra_id_1>User / Assistant" markers.
- ultrafeedback: instruction, completions [{response, annotations: {aspect: {Rating}},
  fine-grained_score}] → 1–5 ratings per aspect, one best-vs-worst pair per aspect.
- generic: JSONL/JSON/Parquet/CSV/TSV with `column_map` {canonical field: column}: fields
  prompt | messages, chosen + rejected (a pair), response (+ rating), objective, margin,
  tags, scale_min, scale_max. Unmapped fields default to columns of the same name. Every
  other column of a row is kept as metadata (a JSON object on the row's pairs and
  ratings, e.g. AlpacaEval's chosen_model / rejected_model / preference / judge);
  NaN/inf there become null.

Objectives. An objective named by the user (SourceConfig.objective, the `--objective`
flag, a generic file's objective column, the HH folder-name default) must be declared in
params, else the row is quarantined as unknown_objective. Dataset attributes (PKU's
better/safer ids, HelpSteer2 and UltraFeedback aspects) reach objectives through
`column_map` read as {objective: attribute}, "-attribute" meaning inverted (higher
attribute = worse); defaults below. An attribute whose objective is not declared is
ignored and counted in the report (datasets carry more axes than an experiment needs);
an attribute named exactly like a declared objective is kept under that name; a row
left with no pair and no rating at all is quarantined as unknown_objective.

Paths. A source path relative to the project root must resolve inside it (symlinks
followed); a path outside (absolute, `..`, or a symlink leaving the project) is read only
under a data root named in the environment variable PARETOFLOW_DATA_ROOTS
(os.pathsep-separated folders). The data roots are set by whoever runs the worker, not
by params, so a flow parameter cannot widen what a run may read.

Preference pairs without scores (HH, PKU, generic without margin) get margin 1.0.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import os
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paretoflow.config import Objective, SourceConfig
from paretoflow.data.normalize import has_lone_surrogate
from paretoflow.data.readers import (
    FILE_SUFFIXES,
    Limits,
    RawRow,
    RowError,
    SourceError,
    expand_source,
    iter_rows,
    read_rows,
    shown,
)
from paretoflow.data.rows import no_gc
from paretoflow.schema import ROLES

__all__ = [
    "FILE_SUFFIXES", "ImportedFile", "Limits", "Pair", "Quarantined", "Rating", "Record", "RowError",
    "SourceError", "detect_format", "expand_source", "read_file", "read_rows", "read_source",
]

DATA_ROOTS_ENV = "PARETOFLOW_DATA_ROOTS"

# Dataset attribute → objective defaults (column_map read as {objective: attribute}).
DEFAULT_OBJECTIVE_MAPS: dict[str, dict[str, str]] = {
    "pku_saferlhf": {"helpfulness": "better_response_id", "harmlessness": "safer_response_id"},
    # HelpSteer2 verbosity 4 = very long: inverted it is the conciseness axis.
    "helpsteer2": {"helpfulness": "helpfulness", "conciseness": "-verbosity"},
    "ultrafeedback": {"helpfulness": "helpfulness"},
}
# HH-RLHF folder/file name prefixes (helpful-base, harmless-base, ...) → objective.
HH_NAME_OBJECTIVES = {"helpful": "helpfulness", "harmless": "harmlessness"}
HELPSTEER_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
HELPSTEER_SCALE = (0.0, 4.0)  # HelpSteer2 paper: Likert 0-4 per attribute
ULTRAFEEDBACK_ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
ULTRAFEEDBACK_SCALE = (1.0, 5.0)  # UltraFeedback paper: ratings 1-5 per aspect
GENERIC_FIELDS = (
    "prompt", "messages", "chosen", "rejected", "response", "rating", "objective", "margin",
    "tags", "scale_min", "scale_max",
)
# Quarantine reason of a row whose failure no parser anticipated (the exception is named).
UNEXPECTED = "unexpected_error"


@dataclass(slots=True)
class Rating:
    response_index: int
    objective: str
    value: float
    scale_min: float
    scale_max: float
    rater: str


@dataclass(slots=True)
class Pair:
    chosen_index: int
    rejected_index: int
    objective: str
    margin: float


@dataclass(slots=True)  # one per row: a __dict__ each was ~100 bytes more
class Record:
    """One input row on the canonical schema (texts not yet normalised)."""

    source: str
    location: str
    order: int  # position in the file: sorts quarantine rows and picks first occurrences
    raw: str
    messages: list[dict[str, str]]
    tags: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    ratings: list[Rating] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)  # generic: the row's other columns


@dataclass(slots=True)  # one per quarantined row, millions for a file of repeats
class Quarantined:
    source: str
    location: str
    order: int
    reason: str
    detail: str
    raw: str

    def row(self) -> dict[str, str]:
        return {
            "source": self.source, "location": self.location, "reason": self.reason,
            "detail": self.detail, "raw": self.raw,
        }


class QuarantineLog:
    """The quarantined rows of one file, in file order, as a sequence of `Quarantined`.

    A line that repeats an earlier line's bytes (readers.py's exact-first pass) is kept
    as two 8-byte integers (its line, the first occurrence's line) in arrays, and turned
    into a `Quarantined` only when iterated: 3M repeated lines were ~500 MB as objects
    (~170 bytes each with their location strings), 48 MB as integers. `repeat_columns`
    gives them to curate as columns without making the objects at all."""

    def __init__(self, source: str, entries: Sequence[Quarantined] = ()):
        self.source = source
        self.entries: list[Quarantined] = list(entries)
        self.repeat_orders = array("q")
        self.repeat_of = array("q")
        self.first_raw: dict[int, str] = {}  # first occurrence's line → its raw text

    def append(self, entry: Quarantined) -> None:
        self.entries.append(entry)

    def add_repeat(self, order: int, first_order: int, raw: str) -> None:
        self.repeat_orders.append(order)
        self.repeat_of.append(first_order)
        self.first_raw.setdefault(first_order, raw)

    def _repeat(self, order: int, first_order: int) -> Quarantined:
        return Quarantined(self.source, f"line {order}", order, "duplicate", f"same bytes as line {first_order}",
                           self.first_raw[first_order])

    def __len__(self) -> int:
        return len(self.entries) + len(self.repeat_orders)

    def __iter__(self) -> Iterator[Quarantined]:
        repeats = (self._repeat(o, f) for o, f in zip(self.repeat_orders, self.repeat_of, strict=True))
        return heapq.merge(self.entries, repeats, key=lambda q: q.order)

    def __getitem__(self, key: int | slice) -> Quarantined | list[Quarantined]:
        return list(self)[key]

    def reasons(self) -> Counter:
        counts = Counter(q.reason for q in self.entries)
        if self.repeat_orders:
            counts["duplicate"] += len(self.repeat_orders)
        return counts


@dataclass
class ImportedFile:
    """Everything read from one file: records, quarantined rows, counters."""

    path: str
    format: str
    role: str
    rows_in: int
    records: list[Record]
    quarantined: QuarantineLog | list[Quarantined]
    derive_pairs: bool = False  # pairs from ratings across rows of one prompt (HelpSteer2, generic)
    ignored_attributes: Counter = field(default_factory=Counter)
    not_rated: int = 0  # UltraFeedback "N/A" ratings skipped
    # Prompt-grouped sample of the source this file belongs to (SourceConfig.max_prompts).
    source: str = ""
    max_prompts: int | None = None
    sample_seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.quarantined, QuarantineLog):
            self.quarantined = QuarantineLog(self.path, self.quarantined)


@dataclass
class _Parsed:
    messages: list[dict[str, str]]
    responses: list[str] = field(default_factory=list)
    ratings: list[Rating] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    not_rated: int = 0


# --------------------------------------------------------------------------- field helpers


def _present(row: dict, key: str) -> Any:
    if key not in row:
        raise RowError("missing_field", f"no field {key!r}")
    value = row[key]
    if value is None:
        raise RowError("missing_field", f"field {key!r} is null")
    return value


def _text(row: dict, key: str) -> str:
    value = _present(row, key)
    if isinstance(value, float) and not math.isfinite(value):
        raise RowError("nan_value", f"field {key!r} is {value!r}, expected a string")
    if not isinstance(value, str):
        raise RowError("wrong_type", f"field {key!r} is {type(value).__name__}, expected a string")
    if has_lone_surrogate(value):
        raise RowError("undecodable_bytes", f"field {key!r} holds bytes that are not UTF-8")
    return value


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RowError("wrong_type", f"field {key!r} is {type(value).__name__}, expected a number")
    try:
        number = float(value)
    except ValueError:
        raise RowError("wrong_type", f"field {key!r} = {value!r} is not a number") from None
    if not math.isfinite(number):
        raise RowError("nan_value", f"field {key!r} is {value!r}")
    return number


def _on_scale(value: float, low: float, high: float, key: str) -> float:
    if not low <= value <= high:
        raise RowError("rating_off_scale", f"field {key!r} = {value:g} outside [{low:g}, {high:g}]")
    return value


def _tags(row: dict, key: str = "tags") -> list[str]:
    value = row.get(key)
    if value is None:
        return []
    if isinstance(value, str):  # CSV cells / parquet strings: a JSON list
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowError("wrong_type", f"field {key!r} is not a JSON list of strings") from None
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise RowError("wrong_type", f"field {key!r} must be a list of strings")
    if any(has_lone_surrogate(t) for t in value):
        raise RowError("undecodable_bytes", f"field {key!r} holds bytes that are not UTF-8")
    return sorted(set(value))


def _messages(value: Any, key: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowError("wrong_type", f"field {key!r} is a string but not JSON messages") from None
    if not isinstance(value, list) or not value:
        raise RowError("wrong_type", f"field {key!r} must be a non-empty list of {{role, content}}")
    turns = []
    for index, turn in enumerate(value):
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise RowError("wrong_type", f"{key}[{index}] must be an object with role and content")
        role, content = turn["role"], turn["content"]
        if role not in ROLES:
            raise RowError("wrong_type", f"{key}[{index}].role {role!r} not one of {list(ROLES)}")
        if not isinstance(content, str):
            raise RowError("wrong_type", f"{key}[{index}].content is {type(content).__name__}, expected a string")
        if has_lone_surrogate(content):
            raise RowError("undecodable_bytes", f"{key}[{index}].content holds bytes that are not UTF-8")
        turns.append({"role": role, "content": content})
    if turns[-1]["role"] != "user":
        raise RowError("malformed_dialogue", f"last turn of {key!r} is {turns[-1]['role']!r}, expected 'user'")
    return turns


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _require_object(value: Any) -> dict:
    if not isinstance(value, dict):
        raise RowError("wrong_type", f"record is a JSON {type(value).__name__}, expected an object")
    return value


# --------------------------------------------------------------------------- objective maps


@dataclass(frozen=True)
class AttributeTarget:
    objective: str
    attribute: str
    inverted: bool


def objective_map(
    format_name: str, column_map: dict[str, str], declared: Sequence[str], attributes: Sequence[str]
) -> tuple[list[AttributeTarget], list[str]]:
    """Attribute → declared objective targets for a rating/preference dataset, and the
    attributes ignored (mapped to an undeclared objective or not mapped at all)."""
    user_given = bool(column_map)
    mapping = dict(column_map) if user_given else dict(DEFAULT_OBJECTIVE_MAPS.get(format_name, {}))
    targets: list[AttributeTarget] = []
    used: set[str] = set()
    for objective, attribute in mapping.items():
        inverted = attribute.startswith("-")
        attribute = attribute.lstrip("-")
        if objective not in declared:
            if user_given:
                raise ValueError(f"column_map names objective {objective!r}, not declared in params ({list(declared)})")
            continue
        targets.append(AttributeTarget(objective, attribute, inverted))
        used.add(attribute)
    mapped_objectives = {t.objective for t in targets}
    for attribute in attributes:
        # An attribute named like a declared objective, not mapped elsewhere, keeps its name.
        if attribute not in used and attribute in declared and attribute not in mapped_objectives:
            targets.append(AttributeTarget(attribute, attribute, False))
            used.add(attribute)
    ignored = [a for a in attributes if a not in used]
    return targets, ignored


# --------------------------------------------------------------------------- format parsers


_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


def _hh_turns(text: str, key: str) -> list[dict[str, str]]:
    parts = _HH_TURN.split(text)
    if parts[0].strip() or len(parts) < 3 or parts[1] != "Human":
        raise RowError("malformed_dialogue", f"{key!r} does not start with '\\n\\nHuman: '")
    return [
        {"role": "user" if speaker == "Human" else "assistant", "content": content}
        for speaker, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


def _check_alternates(turns: list[dict[str, str]], key: str) -> None:
    """HH turns must alternate Human/Assistant from the first (Human) turn: two turns of
    one speaker in a row would put words in the wrong mouth once a chat template renders
    them, and an Assistant turn first would make the data open the conversation."""
    for index, turn in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if turn["role"] != expected:
            speaker = "Human" if turn["role"] == "user" else "Assistant"
            raise RowError("malformed_dialogue", f"{key!r} turn {index + 1} is another {speaker} turn: "
                                                 "the dialogue must alternate from a Human turn")


def hh_objective(path: Path, objective: str | None) -> str:
    if objective:
        return objective
    for part in reversed(path.parts):
        for prefix, name in HH_NAME_OBJECTIVES.items():
            if part.lower().startswith(prefix):
                return name
    raise ValueError(
        f"{path}: cannot tell the HH-RLHF objective: name the file or folder helpful-*/harmless-*, "
        "or set the source's objective (--objective)"
    )


def parse_hh(row: dict, objective: str) -> tuple[list[dict[str, str]], list[str], list[Pair]]:
    chosen = _hh_turns(_text(row, "chosen"), "chosen")
    rejected = _hh_turns(_text(row, "rejected"), "rejected")
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if turns[-1]["role"] != "assistant":
            raise RowError("malformed_dialogue", f"{name!r} does not end with an Assistant turn")
    if [t for t in chosen[:-1]] != [t for t in rejected[:-1]]:
        raise RowError("prompt_mismatch", "chosen and rejected differ before their final Assistant turn")
    _check_alternates(chosen, "chosen")
    _check_alternates(rejected, "rejected")
    prompt = chosen[:-1]
    if not prompt or prompt[-1]["role"] != "user":
        raise RowError("malformed_dialogue", "the turn before the final Assistant turn is not a Human turn")
    return prompt, [chosen[-1]["content"], rejected[-1]["content"]], [Pair(0, 1, objective, 1.0)]


def parse_pku(row: dict, targets: list[AttributeTarget]) -> tuple[list[dict[str, str]], list[str], list[Pair]]:
    prompt = _text(row, "prompt")
    responses = [_text(row, "response_0"), _text(row, "response_1")]
    pairs = []
    for target in targets:
        value = _present(row, target.attribute)
        if isinstance(value, bool) or value not in (0, 1, "0", "1"):
            raise RowError("wrong_type", f"field {target.attribute!r} = {value!r}, expected 0 or 1")
        better = int(value)
        pairs.append(Pair(better, 1 - better, target.objective, 1.0))
    return _user(prompt), responses, pairs


_HELPSTEER_TURN = re.compile(r"\n?<extra_id_1>(User|Assistant)\n")


def _helpsteer_messages(prompt: str) -> list[dict[str, str]]:
    parts = _HELPSTEER_TURN.split(prompt)
    turns = [{"role": "user", "content": parts[0]}]
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        turns.append({"role": "user" if speaker == "User" else "assistant", "content": content})
    if turns[-1]["role"] != "user":
        raise RowError("malformed_dialogue", "multi-turn prompt does not end with a User turn")
    return turns


def parse_helpsteer(row: dict, targets: list[AttributeTarget]) -> tuple[list[dict[str, str]], list[str], list[Rating]]:
    messages = _helpsteer_messages(_text(row, "prompt"))
    response = _text(row, "response")
    low, high = HELPSTEER_SCALE
    ratings = []
    for target in targets:
        value = _on_scale(_number(_present(row, target.attribute), target.attribute), low, high, target.attribute)
        if target.inverted:
            value = low + high - value
        ratings.append(Rating(0, target.objective, value, low, high, f"helpsteer2:{'-' if target.inverted else ''}{target.attribute}"))
    return messages, [response], ratings


def parse_ultrafeedback(row: dict, targets: list[AttributeTarget]) -> tuple[list[dict[str, str]], list[str], list[Rating], list[Pair], int]:
    instruction = _text(row, "instruction")
    completions = _present(row, "completions")
    if isinstance(completions, str):
        try:
            completions = json.loads(completions)
        except json.JSONDecodeError:
            raise RowError("wrong_type", "field 'completions' is a string but not JSON") from None
    if not isinstance(completions, list):
        raise RowError("wrong_type", f"field 'completions' is {type(completions).__name__}, expected a list")
    if not completions:
        raise RowError("missing_field", "field 'completions' is empty")
    low, high = ULTRAFEEDBACK_SCALE
    responses: list[str] = []
    ratings: list[Rating] = []
    not_rated = 0
    for index, completion in enumerate(completions):
        if not isinstance(completion, dict):
            raise RowError("wrong_type", f"completions[{index}] is not an object")
        responses.append(_text(completion, "response"))
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
            value = _on_scale(_number(raw_value, key), low, high, key)
            if target.inverted:
                value = low + high - value
            ratings.append(Rating(index, target.objective, value, low, high, f"ultrafeedback:{target.attribute}"))
    pairs = []
    for target in targets:
        rated = [(r.value, r.response_index) for r in ratings if r.objective == target.objective]
        if len(rated) < 2:
            continue
        best = max(rated, key=lambda vr: (vr[0], -vr[1]))  # ties: first completion
        worst = min(rated, key=lambda vr: (vr[0], vr[1]))
        if best[0] > worst[0]:
            pairs.append(Pair(best[1], worst[1], target.objective, best[0] - worst[0]))
    return _user(instruction), responses, ratings, pairs, not_rated


# --------------------------------------------------------------------------- detection


def detect_format(value: dict) -> str:
    keys = set(value)
    if {"chosen", "rejected"} <= keys and isinstance(value.get("chosen"), str) and "Human:" in value["chosen"]:
        return "hh_rlhf"
    if {"response_0", "response_1"} <= keys and ("better_response_id" in keys or "safer_response_id" in keys):
        return "pku_saferlhf"
    if {"instruction", "completions"} <= keys:
        return "ultrafeedback"
    if {"prompt", "response"} <= keys and keys & set(HELPSTEER_ATTRIBUTES):
        return "helpsteer2"
    if keys & {"prompt", "messages"} and not keys & {"chosen", "rejected", "response", "rating", "completions"}:
        return "builtin"
    return "generic"



def _generic_objective(row: dict, columns: dict[str, str], objective: str | None, declared: Sequence[str]) -> str:
    if columns["objective"] in row:
        name = _text(row, columns["objective"])
    elif objective:
        name = objective
    else:
        raise RowError("missing_field", f"no objective column {columns['objective']!r} and no source objective")
    if name not in declared:
        raise RowError("unknown_objective", f"objective {name!r} not declared in params ({list(declared)})")
    return name


def _generic_rating(row: dict, columns: dict[str, str], name: str, scales: dict[str, tuple[float, float]]) -> Rating:
    value = _number(_present(row, columns["rating"]), columns["rating"])
    low, high = scales[name]
    if row.get(columns["scale_min"]) is not None:
        low = _number(row[columns["scale_min"]], columns["scale_min"])
    if row.get(columns["scale_max"]) is not None:
        high = _number(row[columns["scale_max"]], columns["scale_max"])
    if not low < high:
        raise RowError("rating_off_scale", f"scale [{low:g}, {high:g}] is empty (scale_min must be < scale_max)")
    return Rating(0, name, _on_scale(value, low, high, columns["rating"]), low, high, "generic")


def json_safe(value: Any) -> Any:
    """A metadata value as JSON: NaN/inf → None, tuples → lists, other objects → str;
    text that is not UTF-8 quarantines the row (it could not be written)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        if has_lone_surrogate(value):
            raise RowError("undecodable_bytes", "a metadata field holds bytes that are not UTF-8")
        return value
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return str(value)


def _parse_generic(row: dict, columns: dict[str, str], objective: str | None,
                   declared: Sequence[str], scales: dict[str, tuple[float, float]]) -> _Parsed:
    if columns["messages"] in row and row[columns["messages"]] is not None:
        parsed = _Parsed(_messages(row[columns["messages"]], columns["messages"]))
    else:
        parsed = _Parsed(_user(_text(row, columns["prompt"])))
    parsed.tags = _tags(row, columns["tags"])
    used = set(columns.values())
    parsed.metadata = {k: json_safe(v) for k, v in sorted(row.items()) if k not in used}
    if columns["chosen"] in row or columns["rejected"] in row:
        parsed.responses = [_text(row, columns["chosen"]), _text(row, columns["rejected"])]
        margin = _number(row[columns["margin"]], columns["margin"]) if row.get(columns["margin"]) is not None else 1.0
        if margin < 0:
            raise RowError("negative_margin", f"field {columns['margin']!r} = {margin:g}: the chosen answer is "
                                              "rated below the rejected one (swap them, or give |margin|)")
        parsed.pairs = [Pair(0, 1, _generic_objective(row, columns, objective, declared), margin)]
    elif columns["response"] in row:
        parsed.responses = [_text(row, columns["response"])]
        if columns["rating"] in row:
            name = _generic_objective(row, columns, objective, declared)
            parsed.ratings = [_generic_rating(row, columns, name, scales)]
    return parsed


# --------------------------------------------------------------------------- entry point


RowParser = Callable[[dict], _Parsed]


def _resolve_format(format: str, rows: Iterator[RawRow]) -> tuple[str, Iterator[RawRow]]:
    """The format, detected from the first readable record when "auto", and the rows
    (those read to find it held back and put first again)."""
    if format != "auto":
        return format, rows
    held: list[RawRow] = []
    for row in rows:
        held.append(row)
        if isinstance(row.value, dict):
            return detect_format(row.value), itertools.chain(held, rows)
    return "builtin", iter(held)


def _builtin_row(row: dict) -> _Parsed:
    if row.get("messages") is not None:
        return _Parsed(_messages(row["messages"], "messages"), tags=_tags(row))
    return _Parsed(_user(_text(row, "prompt")), tags=_tags(row))


def _hh_parser(path: Path, objective: str | None, declared: list[str]) -> RowParser:
    target = hh_objective(path, objective)

    def parse(row: dict) -> _Parsed:
        if target not in declared:
            raise RowError("unknown_objective", f"objective {target!r} not declared in params ({declared})")
        messages, responses, pairs = parse_hh(row, target)
        return _Parsed(messages, responses, pairs=pairs)
    return parse


def _attribute_parser(format: str, targets: list[AttributeTarget]) -> RowParser:
    """PKU-SafeRLHF / HelpSteer2 / UltraFeedback rows through their objective targets."""
    if format == "pku_saferlhf" and any(t.inverted for t in targets):
        inverted = next(t.attribute for t in targets if t.inverted)
        raise ValueError(f"pku_saferlhf: column_map value -{inverted} cannot be inverted")

    def parse(row: dict) -> _Parsed:
        if format == "pku_saferlhf":
            messages, responses, pairs = parse_pku(row, targets)
            parsed = _Parsed(messages, responses, pairs=pairs)
        elif format == "helpsteer2":
            messages, responses, ratings = parse_helpsteer(row, targets)
            parsed = _Parsed(messages, responses, ratings=ratings)
        else:
            messages, responses, ratings, pairs, skipped = parse_ultrafeedback(row, targets)
            parsed = _Parsed(messages, responses, ratings, pairs, not_rated=skipped)
        if not parsed.pairs and not parsed.ratings:
            raise RowError("unknown_objective", f"no attribute of this row maps to a declared objective "
                                                f"({[t.objective for t in targets]})")
        return parsed
    return parse


def _generic_parser(name: str, objective: str | None, column_map: dict[str, str],
                    objectives: Sequence[Objective]) -> RowParser:
    columns = {f: column_map.get(f, f) for f in GENERIC_FIELDS}
    unknown_fields = set(column_map) - set(GENERIC_FIELDS)
    if unknown_fields:
        raise ValueError(f"{name}: column_map fields {sorted(unknown_fields)} not among {list(GENERIC_FIELDS)}")
    declared = [o.name for o in objectives]
    scales = {o.name: o.scale for o in objectives}
    return lambda row: _parse_generic(row, columns, objective, declared, scales)


def _row_parser(format: str, path: Path, name: str, objectives: Sequence[Objective], objective: str | None,
                column_map: dict[str, str]) -> tuple[RowParser, list[str]]:
    """The per-row parser of a format and the attributes it ignores (counted per row);
    configuration errors raise here, before any row."""
    declared = [o.name for o in objectives]
    if format == "builtin":
        return _builtin_row, []
    if format == "hh_rlhf":
        return _hh_parser(path, objective, declared), []
    if format in DEFAULT_OBJECTIVE_MAPS:
        targets, ignored = objective_map(format, column_map, declared, _attributes_of(format))
        return _attribute_parser(format, targets), ignored
    if format == "generic":
        return _generic_parser(name, objective, column_map, objectives), []
    raise ValueError(f"{name}: unknown format {format!r}")


def _import_row(raw_row: RawRow, parse: RowParser, result: ImportedFile) -> None:
    """One row → one record or one quarantine entry, whatever the row raises."""
    if raw_row.repeat_of >= 0:
        result.quarantined.add_repeat(raw_row.order, raw_row.repeat_of, raw_row.raw)
        return
    if raw_row.error is not None:  # not raised: a shared error (repeated lines) would grow its traceback
        result.quarantined.append(Quarantined(result.path, raw_row.location, raw_row.order, raw_row.error.reason,
                                              raw_row.error.detail, raw_row.raw))
        return
    try:
        parsed = parse(_require_object(raw_row.value))
    except RowError as error:
        reason, detail = error.reason, error.detail
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - one row's failure must not abort the file
        reason, detail = UNEXPECTED, f"{type(exc).__name__}: {str(exc)[:300]}"
    else:
        result.not_rated += parsed.not_rated
        result.records.append(Record(
            result.path, raw_row.location, raw_row.order, raw_row.raw, parsed.messages, parsed.tags,
            parsed.responses, parsed.ratings, parsed.pairs, parsed.metadata,
        ))
        return
    result.quarantined.append(Quarantined(result.path, raw_row.location, raw_row.order, reason, detail, raw_row.raw))


def read_file(
    path: Path,
    objectives: Sequence[Objective],
    format: str = "auto",
    objective: str | None = None,
    column_map: dict[str, str] | None = None,
    role: str = "train",
    name: str | None = None,
    limits: Limits | None = None,
) -> ImportedFile:
    """Read one file into records + quarantined rows. `name` is how the file is named in
    the output tables (default: the path as given). A file that cannot be read at all, or
    a configuration that cannot apply to it, raises naming the file."""
    with no_gc():
        return _read_file(Path(path), objectives, format, objective, column_map, role, name or str(path), limits)


def _read_file(path: Path, objectives: Sequence[Objective], format: str, objective: str | None,
               column_map: dict[str, str] | None, role: str, name: str, limits: Limits | None) -> ImportedFile:
    # Rows stream from the reader and each becomes a record or a quarantine entry at once:
    # the file's parsed rows are never all held (they were, beside the file's bytes).
    format, rows = _resolve_format(format, iter_rows(path, limits))
    result = ImportedFile(path=name, format=format, role=role, rows_in=0, records=[], quarantined=[],
                          derive_pairs=format in ("helpsteer2", "generic"))
    parse, ignored = _row_parser(format, path, name, objectives, objective, dict(column_map or {}))
    for raw_row in rows:
        result.rows_in += 1
        if ignored:
            _count_present(format, raw_row, ignored, result.ignored_attributes)
        _import_row(raw_row, parse, result)
    return result


def _attributes_of(format: str) -> list[str]:
    if format == "pku_saferlhf":
        return ["better_response_id", "safer_response_id"]
    if format == "helpsteer2":
        return list(HELPSTEER_ATTRIBUTES)
    return [*ULTRAFEEDBACK_ASPECTS, "fine-grained_score"]


def _count_present(format: str, raw_row: RawRow, attributes: list[str], counts: Counter) -> None:
    """Count the attributes one row (HelpSteer2, PKU) or its completions (UltraFeedback) carry."""
    if not isinstance(raw_row.value, dict):
        return
    if format == "ultrafeedback":
        completions = raw_row.value.get("completions")
        for completion in completions if isinstance(completions, list) else []:
            if not isinstance(completion, dict):
                continue
            annotations = completion.get("annotations")
            present = set(annotations) if isinstance(annotations, dict) else set()
            present |= {"fine-grained_score"} if completion.get("fine-grained_score") is not None else set()
            counts.update(a for a in attributes if a in present)
    else:
        counts.update(a for a in attributes if raw_row.value.get(a) is not None)


# --------------------------------------------------------------------------- sources


def data_roots_from_env() -> list[Path]:
    """Folders outside the project that sources may read (PARETOFLOW_DATA_ROOTS)."""
    value = os.environ.get(DATA_ROOTS_ENV, "")
    return [Path(p) for p in value.split(os.pathsep) if p.strip()]


def resolve_input(root: Path, path: str | Path, data_roots: Sequence[Path] = ()) -> Path:
    """A source path, resolved (symlinks followed): inside the project root, or inside one
    of the data roots; anything else is an error naming the path and both places."""
    project = Path(root).resolve()
    full = (project / path).resolve()  # an absolute `path` replaces the root
    if project in full.parents:
        return full
    allowed = [Path(r).resolve() for r in data_roots]
    if any(full == r or r in full.parents for r in allowed):
        return full
    where = f"the data roots {[str(r) for r in allowed]}" if allowed else f"no data root (set {DATA_ROOTS_ENV})"
    raise SourceError(f"source {str(path)!r} resolves to {full}: outside the project root {project} and {where}")


@dataclass
class SourceFiles:
    """What one configured source yielded: imported files and the files skipped by suffix."""

    files: list[ImportedFile]
    skipped: list[str]


def read_source(source: SourceConfig, objectives: Sequence[Objective], root: Path,
                limits: Limits | None = None, data_roots: Sequence[Path] = ()) -> SourceFiles:
    """Every file of a configured source (a file or a folder), named relative to root."""
    base = resolve_input(root, source.path, data_roots)
    files, skipped = expand_source(base)
    out = []
    for file in files:
        resolve_input(root, file, data_roots)  # a symlink inside a folder may point elsewhere
        name = str(Path(source.path) / file.relative_to(base)) if base.is_dir() else source.path
        if has_lone_surrogate(name):
            imported = _undecodable_name_file(file, shown(name), source.role, limits)
        else:
            imported = read_file(file, objectives, source.format, source.objective, source.column_map,
                                 source.role, name, limits)
        imported.source, imported.max_prompts, imported.sample_seed = source.path, source.max_prompts, source.sample_seed
        for record in imported.records:
            record.tags = sorted({*record.tags, *source.tags})
        out.append(imported)
    return SourceFiles(out, [shown(str(Path(source.path) / p.relative_to(base))) for p in skipped])


def _undecodable_name_file(path: Path, name: str, role: str, limits: Limits | None) -> ImportedFile:
    """A file whose name is not UTF-8 (bytes read with surrogateescape): its rows are
    counted and quarantined as undecodable_name under the escaped name, since the name
    could not be written to the tables or the report (and would abort the whole import)."""
    detail = f"the file name {name!r} is not UTF-8; rename the file to read its rows"
    quarantined = QuarantineLog(name)
    rows_in = 0
    try:
        for r in iter_rows(path, limits):
            quarantined.append(Quarantined(name, r.location, r.order, "undecodable_name", detail, r.raw))
            rows_in += 1
    except SourceError as exc:
        raise SourceError(shown(str(exc))) from None
    return ImportedFile(path=name, format="unread", role=role, rows_in=rows_in, records=[], quarantined=quarantined)


def iter_records(files: Sequence[ImportedFile]) -> Iterator[Record]:
    for imported in files:
        yield from imported.records
