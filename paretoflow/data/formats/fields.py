"""What every dataset format shares: the parsed row, Rating and Pair, field readers that
raise the row's quarantine reason (RowError), and the attribute → objective map of the
rating/preference datasets."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paretoflow.data.normalize import has_lone_surrogate, normalize_text
from paretoflow.data.readers import RowError
from paretoflow.data.rows import not_utf8, shown
from paretoflow.schema import ROLES

if TYPE_CHECKING:
    from paretoflow.sections import Objective


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


@dataclass
class Parsed:
    messages: list[dict[str, str]]
    responses: list[str] = field(default_factory=list)
    ratings: list[Rating] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    not_rated: int = 0
    unread: Sequence[str] = ()  # a prompt-only row's columns no field was read from (counted in the report)




@dataclass(frozen=True)
class FormatContext:
    """What a format's parser is built from: the file, how it is named in the tables, the
    declared objectives and the source's `objective` / `column_map`."""

    path: Path
    name: str
    objectives: Sequence[Objective]
    objective: str | None
    column_map: dict[str, str]

    @property
    def declared(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def minimized(self) -> frozenset[str]:
        """The objectives whose better end is the low one (direction "minimize")."""
        return minimized(self.objectives)


def minimized(objectives: Sequence[Objective]) -> frozenset[str]:
    return frozenset(o.name for o in objectives if o.direction == "minimize")


RowParser = Callable[[dict], "Parsed"]


def no_column_map(ctx: FormatContext, format: str, reads: str) -> None:
    """A format that reads fixed fields refuses a column_map (it was silently ignored)."""
    if ctx.column_map:
        raise ValueError(f"{ctx.name}: format {format!r} reads {reads} and no column_map (got "
                         f"{dict(ctx.column_map)}); to read other column names use format 'generic'")


def fields_named(row: dict, most: int = 8) -> str:
    """The row's field names for a message: "'a', 'b'" (the first `most`, then a count)."""
    names = ", ".join(repr(shown(str(name))[:40]) for name in islice(row, most))
    more = f", … ({len(row):,} fields)" if len(row) > most else ""
    return f"the row's fields: {names}{more}" if names else "the row has no fields"


# A column saying which of two answers won (Chatbot Arena's winner, SHP's labels, HelpSteer3's
# overall_preference): its two answers mapped as chosen / rejected would be wrong on every
# row the second one won.
_WINNER = re.compile(r"winner|label|prefer|choice|better", re.IGNORECASE)


def winner_hint(names: Iterable[Any]) -> str:
    """A warning to append when a column among `names` looks like such a label, else ""."""
    if not any(_WINNER.search(str(name)) for name in names):
        return ""
    return ("; chosen must be each row's preferred answer: where a column names the winner of two answers, "
            "write them out as chosen / rejected by it first")


class MissingField(RowError):
    """missing_field for a key the row does not have (`key`: which)."""

    def __init__(self, key: str, detail: str):
        super().__init__("missing_field", detail)
        self.key = key


def present(row: dict, key: str) -> Any:
    if key not in row:
        raise MissingField(key, f"no field {key!r} ({fields_named(row)})")
    value = row[key]
    if value is None:
        raise RowError("missing_field", f"field {key!r} is null")
    return value


def text(row: dict, key: str) -> str:
    value = present(row, key)
    if isinstance(value, bytes):  # Parquet BYTE_ARRAY without the UTF8 annotation (Hive/Impala-era writers)
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RowError("undecodable_bytes", f"field {key!r} is binary, not UTF-8 text ({exc.reason} "
                                                f"at byte {exc.start})") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise RowError("nan_value", f"field {key!r} is {value!r}, expected a string")
    if not isinstance(value, str):
        raise RowError("wrong_type", f"field {key!r} is {type(value).__name__}, expected a string")
    if has_lone_surrogate(value):
        raise not_utf8(f"field {key!r}", value)
    return value


def number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RowError("wrong_type", f"field {key!r} is {type(value).__name__}, expected a number")
    try:
        number = float(value)
    except ValueError:
        comma = isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+,\d+\s*", value) is not None
        hint = f" (a decimal comma? write {value.strip().replace(',', '.')})" if comma else ""
        raise RowError("wrong_type", f"field {key!r} = {value!r} is not a number{hint}") from None
    if not math.isfinite(number):
        raise RowError("nan_value", f"field {key!r} is {value!r}")
    return number


def on_scale(value: float, low: float, high: float, key: str) -> float:
    if not low <= value <= high:
        raise RowError("rating_off_scale", f"field {key!r} = {value:g} outside [{low:g}, {high:g}]")
    return value


def tags_of(row: dict, key: str = "tags") -> list[str]:
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
    for tag in value:
        if has_lone_surrogate(tag):
            raise not_utf8(f"field {key!r}", tag)
    return sorted(set(value))


def tags_cell(row: dict, key: str = "tags") -> dict:
    """The row with a CSV/TSV tags cell as a spreadsheet writes it, `safety, harmful`, read
    as the tags it lists (a JSON list stays as it is): each such row was wrong_type ("not
    a JSON list of strings"). For text cells only: a JSON string there stays wrong_type."""
    value = row.get(key)
    if not isinstance(value, str) or value.lstrip().startswith("["):
        return row
    return {**row, key: [tag.strip() for tag in value.split(",") if tag.strip()]}


# Role names other chat datasets use for the canonical three (ShareGPT's human / gpt,
# Gemma's model, HH's capitalised speakers); matched case-insensitively.
ROLE_ALIASES = {"human": "user", "gpt": "assistant", "chatgpt": "assistant", "model": "assistant",
                "bot": "assistant", **{role: role for role in ROLES}}


def is_turn(value: Any) -> bool:
    """An object with role and content, or ShareGPT's from and value: one chat turn."""
    return isinstance(value, dict) and ({"role", "content"} <= value.keys() or {"from", "value"} <= value.keys())


def _content_text(content: Any, where: str) -> str:
    """A turn's content: a string, or a list of content parts as OpenAI's chat format and
    the multimodal chat templates of transformers write it (`[{"type": "text", "text":
    ...}]`), whose text parts are joined by line breaks. A part of another kind (an image,
    audio, a tool call) has no text to train on: wrong_type, naming the part."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        what = "an empty list" if isinstance(content, list) else type(content).__name__
        raise RowError("wrong_type", f"{where} is {what}, expected a string or a list of text parts")
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            what = (f"a text part whose 'text' is {type(part.get('text')).__name__}" if kind == "text"
                    else f"a {kind!r} part" if isinstance(kind, str) else f"a {type(part).__name__}")
            raise RowError("wrong_type", f"{where}[{index}] is {what}; only text parts "
                                         '({"type": "text", "text": ...}) can be imported')
        texts.append(part["text"])
    return "\n".join(texts)


def messages_of(value: Any, key: str, last: str = "user") -> list[dict[str, str]]:
    """A list of {role, content} turns (or its JSON text) whose last turn has role `last`.
    ShareGPT's {from, value} turns and the ROLE_ALIASES names are read as their canonical
    form; any other role is wrong_type."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowError("wrong_type", f"field {key!r} is a string but not JSON messages") from None
    if not isinstance(value, list) or not value:
        raise RowError("wrong_type", f"field {key!r} must be a non-empty list of {{role, content}}")
    turns = []
    for index, turn in enumerate(value):
        if isinstance(turn, dict) and "role" not in turn and "content" not in turn and {"from", "value"} <= set(turn):
            turn = {"role": turn["from"], "content": turn["value"]}  # ShareGPT
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise RowError("wrong_type", f"{key}[{index}] must be an object with role and content")
        role, content = turn["role"], turn["content"]
        role = ROLE_ALIASES.get(role.lower(), role) if isinstance(role, str) else role
        if role not in ROLES:
            raise RowError("wrong_type", f"{key}[{index}].role {role!r} not one of {list(ROLES)}")
        content = _content_text(content, f"{key}[{index}].content")
        if has_lone_surrogate(content):
            raise not_utf8(f"{key}[{index}].content", content)
        turns.append({"role": role, "content": content})
    if turns[-1]["role"] != last:
        raise RowError("malformed_dialogue", f"last turn of {key!r} is {turns[-1]['role']!r}, expected {last!r}")
    return turns


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def single_answer(value: Any, key: str, expected: str) -> str:
    """The text of a completion given as turns that must be one assistant turn (TRL's KTO
    completion, OpenAI's outputs); `expected` says what the turns should have been."""
    turns = messages_of(value, key, last="assistant")
    if len(turns) != 1:
        raise RowError("malformed_dialogue", f"field {key!r} holds {len(turns)} turns, expected {expected}")
    return turns[0]["content"]


def source_objective(ctx: FormatContext, format: str, judged: str) -> str:
    """The source's objective, which a format whose rows judge answers on no named axis needs."""
    if ctx.objective is None:
        raise ValueError(f"{ctx.name}: format {format!r} needs the objective its {judged} judge: set the source's "
                         "objective (paretoflow import --objective NAME)")
    return ctx.objective


def with_system(messages: list[dict[str, str]], row: dict, key: str | None) -> list[dict[str, str]]:
    """The prompt's turns under the row's system column `key` (a system prompt, Orca's
    `system`): a system turn first, unless the column is empty or absent. A prompt that
    opens with another system turn is prompt_mismatch."""
    if key is None or row.get(key) is None:
        return messages
    system = text(row, key)
    if not system.strip():
        return messages
    if messages[0]["role"] != "system":
        return [{"role": "system", "content": system}, *messages]
    if normalize_text(messages[0]["content"]) != normalize_text(system):
        raise RowError("prompt_mismatch", f"field {key!r} and the prompt's own system turn differ: which one the "
                                          "answers were written under cannot be told")
    return messages


def json_safe(value: Any) -> Any:
    """A metadata value as JSON: NaN/inf → None, tuples → lists, other objects → str;
    text that is not UTF-8 quarantines the row (it could not be written)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        if has_lone_surrogate(value):
            raise not_utf8("a metadata field", value)
        return value
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return str(value)


@dataclass(frozen=True)
class AttributeTarget:
    objective: str
    attribute: str
    inverted: bool


def objective_map(
    defaults: dict[str, str], column_map: dict[str, str], declared: Sequence[str], attributes: Sequence[str]
) -> tuple[list[AttributeTarget], list[str]]:
    """Attribute → declared objective targets for a rating/preference dataset, and the
    attributes ignored (mapped to an undeclared objective or not mapped at all)."""
    user_given = bool(column_map)
    mapping = dict(column_map) if user_given else dict(defaults)
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


def attribute_parser(parse_row, targets: list[AttributeTarget]) -> RowParser:
    attributes = {t.attribute for t in targets}

    def parse(row: dict) -> Parsed:
        try:
            parsed = parse_row(row, targets)
        except MissingField as error:  # a variant of the dataset without this axis: say how to leave it out
            if error.key not in attributes:
                raise
            others = " ".join(f"--map {t.objective}={t.attribute}" for t in targets if t.attribute != error.key)
            raise RowError("missing_field", f"{error.detail}; for a file without it, map only the attributes it "
                                            "has in the source's column_map (paretoflow import "
                                            f"{others or '--map OBJECTIVE=ATTRIBUTE'})") from None
        if not parsed.pairs and not parsed.ratings:
            raise RowError("unknown_objective", f"no attribute of this row maps to a declared objective "
                                                f"({[t.objective for t in targets]})")
        return parsed
    return parse
