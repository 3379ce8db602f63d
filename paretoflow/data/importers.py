"""Read raw preference/rating/prompt files into `Record`s on the canonical schema.

A *row* (the unit of the rows_in == rows_kept + rows_quarantined identity) is one input
record: a non-blank line of a JSONL file, an element of a JSON array file, or a row of a
Parquet/CSV table. One row becomes one `Record` (a prompt with its responses, ratings and
pairs) or one quarantine entry, never both and never neither. HelpSteer2 and generic
rating files also get pairs derived *across* rows of the same prompt; those are built
after curation (`derive_pairs`) and are not rows.

Formats (`SourceConfig.format`, or "auto": detected from the first readable record):

- builtin: {"prompt" | "messages", "tags"} → a prompt only.
- hh_rlhf (Anthropic HH-RLHF): {"chosen", "rejected"} full dialogues
  "\\n\\nHuman: ...\\n\\nAssistant: ..."; the shared turns are the prompt, the two final
  assistant turns the responses, one pair. Objective: `objective`, else from the path
  ("helpful*" → helpfulness, "harmless*" → harmlessness, as in the HH folder names).
- pku_saferlhf: prompt, response_0, response_1, better_response_id, safer_response_id →
  two pairs on the same responses.
- helpsteer2: prompt, response and 0–4 attribute ratings; multi-turn prompts use the
  dataset's "<extra_id_1>User / Assistant" markers.
- ultrafeedback: instruction, completions [{response, annotations: {aspect: {Rating}},
  fine-grained_score}] → 1–5 ratings per aspect, one best-vs-worst pair per aspect.
- generic: JSONL/JSON/Parquet/CSV with `column_map` {canonical field: column}: fields
  prompt | messages, chosen + rejected (a pair), response (+ rating), objective, margin,
  tags, scale_min, scale_max. Unmapped fields default to columns of the same name.

Objectives. An objective named by the user (SourceConfig.objective, the `--objective`
flag, a generic file's objective column, the HH folder-name default) must be declared in
params, else the row is quarantined as unknown_objective. Dataset attributes (PKU's
better/safer ids, HelpSteer2 and UltraFeedback aspects) reach objectives through
`column_map` read as {objective: attribute}, "-attribute" meaning inverted (higher
attribute = worse); defaults below. An attribute whose objective is not declared is
ignored and counted in the report (datasets carry more axes than an experiment needs);
an attribute named exactly like a declared objective is kept under that name; a row
left with no pair and no rating at all is quarantined as unknown_objective.

Preference pairs without scores (HH, PKU, generic without margin) get margin 1.0.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paretoflow.config import Objective, SourceConfig
from paretoflow.data.normalize import has_lone_surrogate
from paretoflow.schema import ROLES

RAW_LIMIT = 500  # characters of the raw record kept in the quarantine table
FILE_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".parquet", ".csv")

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


class RowError(Exception):
    """A row that cannot become a record: quarantined with `reason` and `detail`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Rating:
    response_index: int
    objective: str
    value: float
    scale_min: float
    scale_max: float
    rater: str


@dataclass
class Pair:
    chosen_index: int
    rejected_index: int
    objective: str
    margin: float


@dataclass
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


@dataclass
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


@dataclass
class ImportedFile:
    """Everything read from one file: records, quarantined rows, counters."""

    path: str
    format: str
    role: str
    rows_in: int
    records: list[Record]
    quarantined: list[Quarantined]
    derive_pairs: bool = False  # pairs from ratings across rows of one prompt (HelpSteer2, generic)
    ignored_attributes: Counter = field(default_factory=Counter)
    not_rated: int = 0  # UltraFeedback "N/A" ratings skipped


# --------------------------------------------------------------------------- reading files


@dataclass
class _RawRow:
    location: str
    order: int
    raw: str
    value: Any = None
    error: RowError | None = None


def _truncate(text: str) -> str:
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + "…"


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise FileNotFoundError(f"{path}: source file not found")
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: not a readable gzip file ({exc})") from exc
    return data


def _looks_binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]


def _read_json_rows(path: Path) -> list[_RawRow]:
    data = _read_bytes(path)
    if _looks_binary(data):
        raise ValueError(f"{path}: binary data (NUL bytes), not JSON Lines")
    stripped = data.lstrip()
    if stripped.startswith(b"\xef\xbb\xbf"):
        stripped = stripped[3:].lstrip()
    if stripped.startswith(b"["):
        # A JSON array file (how some datasets ship): each element is a row.
        try:
            items = json.loads(stripped.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: starts with '[' but is not a valid JSON array ({exc})") from exc
        return [
            _RawRow(f"item {i + 1}", i, _truncate(json.dumps(v, ensure_ascii=False)), v)
            for i, v in enumerate(items)
        ]
    rows: list[_RawRow] = []
    parsed = 0
    for number, line_bytes in enumerate(data.split(b"\n"), start=1):
        if not line_bytes.strip():
            continue  # blank lines are not rows
        location = f"line {number}"
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            raw = line_bytes.decode("utf-8", "backslashreplace")
            rows.append(_RawRow(location, number, _truncate(raw),
                                error=RowError("undecodable_bytes", f"not UTF-8: {exc.reason} at byte {exc.start}")))
            continue
        if number == 1:
            line = line.removeprefix("\ufeff")
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append(_RawRow(location, number, _truncate(line),
                                error=RowError("malformed_json", f"{exc.msg} at column {exc.colno}")))
            continue
        parsed += 1
        rows.append(_RawRow(location, number, _truncate(line), value))
    if rows and parsed == 0:
        raise ValueError(f"{path}: no line parses as JSON; not a JSON Lines file")
    return rows


def _read_parquet_rows(path: Path) -> list[_RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise FileNotFoundError(f"{path}: source file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from exc
    rows = []
    for index, value in enumerate(table.to_pylist()):
        raw = json.dumps(value, ensure_ascii=False, default=str)
        rows.append(_RawRow(f"row {index + 1}", index, _truncate(raw), value))
    return rows


def _read_csv_rows(path: Path) -> list[_RawRow]:
    data = _read_bytes(path)
    if _looks_binary(data):
        raise ValueError(f"{path}: binary data (NUL bytes), not CSV")
    # surrogateescape: undecodable bytes become lone surrogates, caught per cell below.
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None:
            return []
        rows = []
        for index, cells in enumerate(reader):
            if not any(c.strip() for c in cells):
                continue
            raw = _truncate(",".join(cells))
            location = f"row {index + 1}"
            if len(cells) != len(header):
                rows.append(_RawRow(location, index, raw, error=RowError(
                    "malformed_row", f"{len(cells)} cells for {len(header)} columns")))
                continue
            # An empty cell is a missing value, as pandas reads it.
            rows.append(_RawRow(location, index, raw, {h: (c if c != "" else None) for h, c in zip(header, cells)}))
    except csv.Error as exc:
        raise ValueError(f"{path}: not a readable CSV file ({exc})") from exc
    return rows


def read_rows(path: Path) -> list[_RawRow]:
    """Rows of a file by its extension; a wholly unreadable file raises naming the file."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return _read_parquet_rows(path)
    if name.endswith(".csv"):
        return _read_csv_rows(path)
    if name.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
        return _read_json_rows(path)
    raise ValueError(f"{path}: unsupported file type (expected one of {', '.join(FILE_SUFFIXES)})")


def expand_source(path: Path) -> list[Path]:
    """A file, or the supported files of a folder (sorted, recursive)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: source path not found")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(FILE_SUFFIXES))
    if not files:
        raise ValueError(f"{path}: folder holds no {'/'.join(FILE_SUFFIXES)} files")
    return files


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
    if parts[0].strip() or len(parts) < 3:
        raise RowError("malformed_dialogue", f"{key!r} does not start with '\\n\\nHuman: '")
    return [
        {"role": "user" if speaker == "Human" else "assistant", "content": content}
        for speaker, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


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
        raise RowError("malformed_dialogue", "chosen and rejected differ before their final Assistant turn")
    prompt = chosen[:-1]
    if not prompt or prompt[-1]["role"] != "user":
        raise RowError("malformed_dialogue", "the turn before the final Assistant turn is not a Human turn")
    return prompt, [chosen[-1]["content"], rejected[-1]["content"]], [Pair(0, 1, objective, 1.0)]


def parse_pku(row: dict, targets: list[AttributeTarget]) -> tuple[list[dict[str, str]], list[str], list[Pair]]:
    prompt = _text(row, "prompt")
    responses = [_text(row, "response_0"), _text(row, "response_1")]
    pairs = []
    for target in targets:
        if target.inverted:
            raise ValueError(f"pku_saferlhf: column_map value -{target.attribute} cannot be inverted")
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


# --------------------------------------------------------------------------- entry point


def read_file(
    path: Path,
    objectives: Sequence[Objective],
    format: str = "auto",
    objective: str | None = None,
    column_map: dict[str, str] | None = None,
    role: str = "train",
    name: str | None = None,
) -> ImportedFile:
    """Read one file into records + quarantined rows. `name` is how the file is named in
    the output tables (default: the path as given)."""
    name = name or str(path)
    column_map = dict(column_map or {})
    declared = [o.name for o in objectives]
    scales = {o.name: o.scale for o in objectives}
    rows = read_rows(path)
    if format == "auto":
        first = next((r.value for r in rows if isinstance(r.value, dict)), None)
        format = detect_format(first) if first is not None else "builtin"
    result = ImportedFile(path=name, format=format, role=role, rows_in=len(rows), records=[], quarantined=[])

    targets: list[AttributeTarget] = []
    if format in DEFAULT_OBJECTIVE_MAPS:
        attributes = _attributes_of(format, rows)
        targets, ignored = objective_map(format, column_map, declared, attributes)
        result.ignored_attributes.update(_count_present(format, rows, ignored))
    if format == "hh_rlhf":
        hh_target = hh_objective(path, objective)
    if format == "generic":
        generic_columns = {f: column_map.get(f, f) for f in GENERIC_FIELDS}
        unknown_fields = set(column_map) - set(GENERIC_FIELDS)
        if unknown_fields:
            raise ValueError(f"{name}: column_map fields {sorted(unknown_fields)} not among {list(GENERIC_FIELDS)}")
    result.derive_pairs = format in ("helpsteer2", "generic")

    for raw_row in rows:
        try:
            if raw_row.error is not None:
                raise raw_row.error
            row = _require_object(raw_row.value)
            tags: list[str] = []
            ratings: list[Rating] = []
            pairs: list[Pair] = []
            responses: list[str] = []
            if format == "builtin":
                messages = _messages(row["messages"], "messages") if row.get("messages") is not None else _user(_text(row, "prompt"))
                tags = _tags(row)
            elif format == "hh_rlhf":
                if hh_target not in declared:
                    raise RowError("unknown_objective", f"objective {hh_target!r} not declared in params ({declared})")
                messages, responses, pairs = parse_hh(row, hh_target)
            elif format == "pku_saferlhf":
                messages, responses, pairs = parse_pku(row, targets)
            elif format == "helpsteer2":
                messages, responses, ratings = parse_helpsteer(row, targets)
            elif format == "ultrafeedback":
                messages, responses, ratings, pairs, skipped = parse_ultrafeedback(row, targets)
                result.not_rated += skipped
            elif format == "generic":
                messages, tags, responses, ratings, pairs = _parse_generic(row, generic_columns, objective, declared, scales)
            else:
                raise ValueError(f"{name}: unknown format {format!r}")
            if format != "builtin" and format != "generic" and not pairs and not ratings:
                raise RowError("unknown_objective", f"no attribute of this row maps to a declared objective ({declared})")
            result.records.append(Record(name, raw_row.location, raw_row.order, raw_row.raw, messages, tags, responses, ratings, pairs))
        except RowError as error:
            result.quarantined.append(Quarantined(name, raw_row.location, raw_row.order, error.reason, error.detail, raw_row.raw))
    return result


def _attributes_of(format: str, rows: list[_RawRow]) -> list[str]:
    if format == "pku_saferlhf":
        return ["better_response_id", "safer_response_id"]
    if format == "helpsteer2":
        return list(HELPSTEER_ATTRIBUTES)
    return [*ULTRAFEEDBACK_ASPECTS, "fine-grained_score"]


def _count_present(format: str, rows: list[_RawRow], attributes: list[str]) -> Counter:
    """How many rows (HelpSteer2, PKU) or completions (UltraFeedback) carry each attribute."""
    counts: Counter = Counter()
    for raw_row in rows:
        if not isinstance(raw_row.value, dict):
            continue
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
    return counts


def _parse_generic(row: dict, columns: dict[str, str], objective: str | None,
                   declared: Sequence[str], scales: dict[str, tuple[float, float]]):
    if columns["messages"] in row and row[columns["messages"]] is not None:
        messages = _messages(row[columns["messages"]], columns["messages"])
    else:
        messages = _user(_text(row, columns["prompt"]))
    tags = _tags(row, columns["tags"])
    has_pair = columns["chosen"] in row or columns["rejected"] in row
    has_response = columns["response"] in row

    def objective_of() -> str:
        if columns["objective"] in row:
            name = _text(row, columns["objective"])
        elif objective:
            name = objective
        else:
            raise RowError("missing_field", f"no objective column {columns['objective']!r} and no source objective")
        if name not in declared:
            raise RowError("unknown_objective", f"objective {name!r} not declared in params ({list(declared)})")
        return name

    if has_pair:
        responses = [_text(row, columns["chosen"]), _text(row, columns["rejected"])]
        margin = _number(row[columns["margin"]], columns["margin"]) if row.get(columns["margin"]) is not None else 1.0
        return messages, tags, responses, [], [Pair(0, 1, objective_of(), margin)]
    if has_response:
        responses = [_text(row, columns["response"])]
        ratings = []
        if columns["rating"] in row:
            name = objective_of()
            value = _number(_present(row, columns["rating"]), columns["rating"])
            low, high = scales[name]
            if row.get(columns["scale_min"]) is not None:
                low = _number(row[columns["scale_min"]], columns["scale_min"])
            if row.get(columns["scale_max"]) is not None:
                high = _number(row[columns["scale_max"]], columns["scale_max"])
            ratings.append(Rating(0, name, _on_scale(value, low, high, columns["rating"]), low, high, "generic"))
        return messages, tags, responses, ratings, []
    return messages, tags, [], [], []


def read_source(source: SourceConfig, objectives: Sequence[Objective], root: Path) -> list[ImportedFile]:
    """Every file of a configured source (a file or a folder), paths named relative to root."""
    base = root / source.path
    files = expand_source(base)
    out = []
    for file in files:
        name = str(Path(source.path) / file.relative_to(base)) if base.is_dir() else source.path
        out.append(read_file(file, objectives, source.format, source.objective, source.column_map, source.role, name))
    return out


def iter_records(files: Sequence[ImportedFile]) -> Iterator[Record]:
    for imported in files:
        yield from imported.records
