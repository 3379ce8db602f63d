"""generic: JSONL/JSON/Parquet/CSV/TSV with `column_map` {canonical field: column}: fields
prompt | messages, chosen + rejected (a pair), response (+ rating), objective, margin,
tags, scale_min, scale_max, system, context, history. Unmapped fields default to columns of the
same name (or the one column of the file's first row named so but for case and spaces:
"Prompt"). Every other column of a row is kept as metadata (a JSON object on the row's
pairs and ratings, e.g. AlpacaEval's chosen_model / rejected_model / preference / judge),
as is a field's column that the row's kind does not read (a rating beside a pair); NaN/inf
there become null. A row of a prompt only has neither, so its other columns are counted
as not read. Rated files get pairs derived across the rows of a prompt after curation.

An objective column's value names a declared objective (but for case and surrounding
space; an unknown name is unknown_objective, with the closest declared name if one is
close). A rating outside its objective's scale says where that scale is set. A pair
whose own score columns (score_chosen / score_rejected and the like: _SCORE_PAIRS) rank
the rejected answer higher is negative_margin, one they tie is tied_pair.

chosen / rejected (and prompt) may also be conversations (lists of {role, content}, or
one such turn, as TRL's conversational preference format and
HuggingFaceH4/ultrafeedback_binarized write them): the answer is the last turn, which must
be the assistant's, and the turns before it must be the same in both. Those turns are the
prompt when the row has none (TRL's implicit prompt); with a prompt (text or messages)
they are either absent (TRL's explicit prompt) or repeat it, possibly continuing it (H4:
[user prompt, assistant answer]; H4's `messages` column, the chosen conversation again, is
then not read). Anything else is prompt_mismatch: which prompt the answers reply to cannot
be told.

Three columns are part of the prompt, not metadata (as metadata the model never saw them):
`system` (Orca-style files: system, question, chosen, rejected) becomes a system turn before
the prompt's turns (a prompt that opens with another system turn is prompt_mismatch);
`context`, the text an instruction works on (a list of texts is joined), is added to the
prompt's last turn after a blank line; and beside an instruction, `history` (LLaMA-Factory's
alpaca format: earlier rounds as [[user, assistant], ...]) becomes the turns before it.
context reads the column `context` (Dolly's), else `input` where the prompt is read from
`instruction`: Alpaca's and AlpacaFarm's convention (instruction "Summarize this text.",
input the text). Mapped as prompt alone, the instruction lost its input: four prompts
"Summarize the following text." of four texts became one prompt. None of the three reads a
column another field reads."""

from __future__ import annotations

import ast
import difflib
import json
import re
from collections.abc import Sequence

from paretoflow.data.formats.fields import (
    FormatContext, MissingField, Pair, Parsed, Rating, RowParser, is_turn, json_safe, messages_of, number, on_scale,
    present, tags_cell, tags_of, text, user, winner_hint, with_system,
)
from paretoflow.data.formats.hh_rlhf import hh_prompt
from paretoflow.data.normalize import normalize_text
from paretoflow.data.readers import CSV_SUFFIXES, TSV_SUFFIXES, RowError


GENERIC_FIELDS = (
    "prompt", "messages", "chosen", "rejected", "response", "rating", "objective", "margin",
    "tags", "scale_min", "scale_max", "system", "context", "history",
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
    if name in declared:
        return name
    alike = [d for d in declared if d.lower() == name.strip().lower()]
    if len(alike) == 1:  # "Harmlessness" of a spreadsheet: the declared name, as for column names
        return alike[0]
    close = difflib.get_close_matches(name.strip().lower(), list(declared), n=1)
    guess = f"; did you mean {close[0]!r}? (the objective column must hold declared names)" if close else ""
    raise RowError("unknown_objective", f"objective {name!r} not declared in params ({list(declared)}){guess}")


def _generic_rating(row: dict, columns: dict[str, str], name: str, scales: dict[str, tuple[float, float]]) -> Rating:
    value = number(present(row, columns["rating"]), columns["rating"])
    low, high = scales[name]
    per_row = False
    if row.get(columns["scale_min"]) is not None:
        low, per_row = number(row[columns["scale_min"]], columns["scale_min"]), True
    if row.get(columns["scale_max"]) is not None:
        high, per_row = number(row[columns["scale_max"]], columns["scale_max"]), True
    if not low < high:
        raise RowError("rating_off_scale", f"scale [{low:g}, {high:g}] is empty (scale_min must be < scale_max)")
    if not low <= value <= high and not per_row:  # most often a file on another scale: say where it is set
        raise RowError("rating_off_scale", f"field {columns['rating']!r} = {value:g} outside [{low:g}, {high:g}], the "
                                           f"scale of objective {name!r} (its scale in params' objectives); a file "
                                           "rated on another scale declares it there, or per row in scale_min / "
                                           "scale_max columns")
    return Rating(0, name, on_scale(value, low, high, columns["rating"]), low, high, "generic")


def _answer(row: dict, key: str) -> tuple[list[dict[str, str]], str]:
    """A conversational completion: (the turns before the answer, the answer's text)."""
    turns = messages_of(present(row, key), key, last="assistant")
    return turns[:-1], turns[-1]["content"]


def _same_turns(a: list[dict[str, str]], b: list[dict[str, str]]) -> bool:
    """Equal turn by turn once normalised (an export may re-space the prompt it repeats)."""
    return len(a) == len(b) and all(
        x["role"] == y["role"] and normalize_text(x["content"]) == normalize_text(y["content"]) for x, y in zip(a, b))


def _conversational(row: dict, columns: dict[str, str], prompt: list[dict[str, str]] | None
                    ) -> tuple[list[dict[str, str]], list[str]]:
    """(messages, [chosen, rejected]) of a row whose answers are conversations (docstring)."""
    chosen_key, rejected_key = columns["chosen"], columns["rejected"]
    chosen_before, chosen = _answer(row, chosen_key)
    rejected_before, rejected = _answer(row, rejected_key)
    if not _same_turns(chosen_before, rejected_before):
        raise RowError("prompt_mismatch", f"{chosen_key!r} and {rejected_key!r} differ before their final assistant turn")
    if prompt is None:
        if not chosen_before:
            raise RowError("missing_field", f"no field {columns['prompt']!r}, and {chosen_key!r} holds no turn "
                                            "before its answer to take the prompt from")
        return messages_of(chosen_before, chosen_key + " before its answer"), [chosen, rejected]
    if not chosen_before:
        return prompt, [chosen, rejected]
    if not _same_turns(chosen_before[: len(prompt)], prompt):
        raise RowError("prompt_mismatch", f"the turns of {chosen_key!r} before its answer do not repeat the prompt")
    return messages_of(chosen_before, chosen_key + " before its answer"), [chosen, rejected]


def _prompt(row: dict, columns: dict[str, str], conversations: bool) -> list[dict[str, str]] | None:
    """messages, else prompt; with conversational answers prompt first (H4's `messages`
    column is the chosen conversation, not a prompt) and None when neither is given."""
    value = row.get(columns["prompt"])
    if row.get(columns["messages"]) is not None and not (conversations and value is not None):
        return messages_of(row[columns["messages"]], columns["messages"])
    if isinstance(value, list):  # TRL's conversational prompt
        return messages_of(value, columns["prompt"])
    if is_turn(value):  # one {role, content} turn
        return messages_of([value], columns["prompt"])
    if value is None and conversations:
        return None
    prompt = text(row, columns["prompt"])
    return hh_prompt(prompt, columns["prompt"]) or user(prompt)


def _parse_generic(row: dict, columns: dict[str, str], objective: str | None,
                   declared: Sequence[str], scales: dict[str, tuple[float, float]],
                   used: tuple[frozenset[str], frozenset[str]]) -> Parsed:
    """One row; `used`: the keys a pair's fields and a rated answer's fields read (the others
    are metadata), one pair of sets per file."""
    chosen, rejected = row.get(columns["chosen"]), row.get(columns["rejected"])
    if type(chosen) is not str or type(rejected) is not str:  # (most rows: two strings, nothing to look at)
        for key in (columns["chosen"], columns["rejected"]):
            if is_turn(row.get(key)):  # one {role, content} turn, not a list of them: the answer alone
                row = {**row, key: [row[key]]}
    conversations = isinstance(row.get(columns["chosen"]), list) or isinstance(row.get(columns["rejected"]), list)
    parsed = Parsed(_prompt(row, columns, conversations))
    parsed.tags = tags_of(row, columns["tags"])
    is_pair = columns["chosen"] in row or columns["rejected"] in row  # always so for conversations
    read = used[0] if is_pair else used[1]
    parsed.metadata = {k: json_safe(v) for k, v in sorted(row.items()) if k not in read}
    if is_pair:
        if conversations:
            parsed.messages, parsed.responses = _conversational(row, columns, parsed.messages)
        else:
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
    else:  # a prompt only: metadata goes with answers, so its other columns are not read
        parsed.unread, parsed.metadata = list(parsed.metadata), {}
    if columns["system"] in row or columns["context"] in row or columns["history"] in row:
        parsed.messages = _with_prompt_columns(parsed.messages, row, columns)
    return parsed


def _with_prompt_columns(messages: list[dict[str, str]], row: dict, columns: dict[str, str]) -> list[dict[str, str]]:
    """The prompt's turns with the row's system, context and history columns (module docstring)."""
    context = _context(row, columns["context"]) if row.get(columns["context"]) is not None else ""
    if context.strip():
        last = messages[-1]
        messages = [*messages[:-1], {**last, "content": f"{last['content']}\n\n{context}"}]
    if row.get(columns["history"]):
        messages = [*_history_turns(row[columns["history"]], columns["history"]), *messages]
    return with_system(messages, row, columns["system"])


def _context(row: dict, key: str) -> str:
    """A context text, or a list of texts (passages) joined by blank lines."""
    value = row[key]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return "\n\n".join(value)
    if isinstance(value, list) and value and all(is_turn(v) for v in value):
        raise RowError("wrong_type", f"field {key!r} holds turns, not a text: if they are the prompt, map them as "
                                     f"its messages (paretoflow import --map messages={key})")
    return text(row, key)


def _history_turns(value: object, key: str) -> list[dict[str, str]]:
    """LLaMA-Factory's history, [[user, assistant], ...], as turns."""
    if isinstance(value, str):  # a CSV cell: the list as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    rounds = value if isinstance(value, list) else []
    if not rounds or not all(isinstance(r, list) and len(r) == 2 and all(isinstance(t, str) for t in r) for r in rounds):
        raise RowError("wrong_type", f"field {key!r} must be a list of [user, assistant] text pairs (earlier rounds)")
    return [{"role": role, "content": t} for r in rounds for role, t in zip(("user", "assistant"), r)]


# numpy's repr of an object array (a list column read from Parquet by pandas): elements
# apart by spaces or line breaks, no commas.
_NUMPY_GAP = re.compile(r"\}\s+\{")


def _literal(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _is_turns(value: object) -> bool:
    return isinstance(value, list) and all(map(is_turn, value))


def _turns_in_cell(cell: str) -> list | None:
    """A CSV cell holding a list of turns as text, else None: JSON, or the Python repr that
    pandas' `to_csv` writes for a list column (`[{'role': 'user', 'content': ...}]`, and
    numpy's comma-less `[{...}\n {...}]` for one read from Parquet). Read as text, each
    answer was that repr, kept and trained on. `ast.literal_eval` builds literals only
    (no names, calls or attributes), so a cell cannot run code."""
    if not (cell.startswith("[{") and cell.endswith("}]")):
        return None
    try:
        value = json.loads(cell)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        value = _literal(cell)
        if value is None:
            # Commas put between the elements; taken only if every text is the cell's own
            # (a "} {" inside a text, changed by the substitution, would not be).
            value = _literal(_NUMPY_GAP.sub("}, {", cell))
            if _is_turns(value) and not all(repr(t.get("content", t.get("value"))) in cell for t in value):
                return None
    return value if _is_turns(value) else None


def _cells_as_turns(row: dict, keys: tuple[str, ...]) -> dict:
    """The row with the cells of `keys` that hold turns (_turns_in_cell) as lists."""
    found = {k: turns for k in keys if isinstance(row.get(k), str) and (turns := _turns_in_cell(row[k].strip()))}
    return {**row, **found} if found else row


# Per-answer scores beside a pair (H4's ultrafeedback_binarized, Argilla's, reward-model
# outputs): metadata, but a pair whose own scores rank the rejected answer higher, or tie
# them, holds no preference for chosen. Higher is better in every one of these.
_SCORE_PAIRS = (("score_chosen", "score_rejected"), ("chosen_score", "rejected_score"),
                ("chosen_rating", "rejected_rating"), ("chosen-rating", "rejected-rating"),
                ("chosen_reward", "rejected_reward"), ("chosen_avg_rating", "rejected_avg_rating"))


def _score_columns(keys: list[str]) -> tuple[str, str] | None:
    for pair in _SCORE_PAIRS:
        found = tuple(_column(c, keys) for c in pair)
        if all(c in keys for c in found):
            return found  # type: ignore[return-value]
    return None


def _check_scores(row: dict, keys: tuple[str, str], parsed: Parsed, minimized: frozenset[str]) -> None:
    """negative_margin / tied_pair for a pair its score columns contradict (see _SCORE_PAIRS);
    scores that are not numbers, and objectives to minimize, are not judged."""
    if not parsed.pairs or parsed.pairs[0].objective in minimized:
        return
    try:
        chosen, rejected = (number(row[k], k) for k in keys if row.get(k) is not None)
    except (RowError, ValueError):  # a score missing or not a number: nothing to judge by
        return
    if chosen < rejected:
        raise RowError("negative_margin", f"fields {keys[0]!r} = {chosen:g} < {keys[1]!r} = {rejected:g}: the chosen "
                                          "answer is scored below the rejected one (swap them)")
    if chosen == rejected:
        raise RowError("tied_pair", f"fields {keys[0]!r} and {keys[1]!r} are both {chosen:g}: the pair holds no "
                                    "preference for the chosen answer")


# Columns that usually hold a field under another name (Alpaca, Orca, SHP, ShareGPT, ...).
_PROMPT_NAMES = ("instruction", "question", "query", "input", "history", "problem")
_NOT_TEXT = ("model", "score", "rating", "reward", "rank", "id", "source", "length")


def _likely(field: str, row: dict) -> str:
    """The row's column a missing field's --map most likely names, else "COLUMN": the first
    of _PROMPT_NAMES for the prompt, a column whose name holds the field's (chosen_response)
    for the others. Only named in the hint, never read without the map."""
    names = {k.strip().lower(): k for k in row if isinstance(k, str)}
    if field == "prompt":
        found = next((names[n] for n in _PROMPT_NAMES if n in names), None)
    else:  # chosen_response, not chosen_model or chosen_score
        found = next((k for n, k in names.items() if field in n and not any(w in n for w in _NOT_TEXT)), None)
    return found if found is not None and found.isprintable() and " " not in found else "COLUMN"


def _jq_path(key: str) -> str:
    return f".{key}" if key.isidentifier() else f".[{json.dumps(key)}]"


def _missing_detail(error: MissingField, field: str, row: dict) -> str:
    """A missing field's detail with the way to read it: a row whose columns are one object
    a level down ({"fields": {...}}, Argilla's records) or that holds the rows ({"data":
    [rows]}) is told how to write them out (no column_map reaches there); else the --map."""
    inner = next((k for k, v in row.items() if isinstance(v, dict) and error.key in v and isinstance(k, str)), None)
    if inner is not None:
        path = _jq_path(inner)
        return (f"{error.detail}; field {inner!r} is an object with a {error.key!r} field: the row's columns are a "
                f"level down; write them out flat (e.g. jq -c '{path} + del({path})' FILE > rows.jsonl) and import that")
    nested = next((k for k, v in row.items() if isinstance(v, list) and v and isinstance(v[0], dict) and error.key in v[0]),
                  None)
    if nested is not None:
        return (f"{error.detail}; field {nested!r} holds a list of {len(row[nested]):,} objects with a {error.key!r} "
                f"field: if they are the rows, write them one per line (e.g. jq -c '{_jq_path(nested)}[]' FILE > "
                "rows.jsonl) and import that")
    return (f"{error.detail}; name the column that holds it with the source's column_map (paretoflow import --map "
            f"{field}={_likely(field, row)})" + winner_hint(row))


def _column(field: str, keys: list[str]) -> str:
    """The column an unmapped field reads: its own name, else the one key equal to it but
    for case and surrounding space ("Prompt" of a spreadsheet header; every row was
    missing_field before), else its own name (missing)."""
    if field in keys:
        return field
    alike = [k for k in keys if isinstance(k, str) and k.strip().lower() == field]
    return alike[0] if len(alike) == 1 else field


def parser(ctx: FormatContext) -> tuple[RowParser, list[str]]:
    name, objective, column_map, objectives = ctx.name, ctx.objective, ctx.column_map, ctx.objectives
    unknown_fields = set(column_map) - set(GENERIC_FIELDS)
    if unknown_fields:
        raise ValueError(f"{name}: column_map fields {sorted(unknown_fields)} not among {list(GENERIC_FIELDS)}")
    declared = [o.name for o in objectives]
    scales = {o.name: o.scale for o in objectives}
    minimized = ctx.minimized
    # CSV/TSV cells are text: a conversation there is a list written as text.
    cells = str(ctx.path).lower().endswith((*CSV_SUFFIXES, *TSV_SUFFIXES))
    setup: tuple | None = None  # the columns, told from the file's first row (its header, for a table)

    def columns_of(keys: list[str]) -> tuple:
        columns = {f: column_map[f] if f in column_map else _column(f, keys) for f in GENERIC_FIELDS}
        instruction = columns["prompt"].lower() == "instruction"
        if "context" not in column_map and columns["context"] not in keys and instruction:
            columns["context"] = _column("input", keys)  # Alpaca's instruction / input
        if "history" not in column_map and not instruction:
            columns["history"] = None  # read beside an instruction (LLaMA-Factory), else only where mapped
        for field in ("system", "context", "history"):  # by default, a column another field reads is not read again
            if field not in column_map and columns[field] in {c for f, c in columns.items() if f != field}:
                columns[field] = None  # (HelpSteer3's `context`, its turns, mapped as messages)
        conversation_keys = (columns["prompt"], columns["messages"], columns["chosen"], columns["rejected"])
        # A pair does not read the rated-answer fields, nor a rated answer the pair's: such a
        # column (Argilla's `rating` beside chosen / rejected) is metadata, not dropped.
        of_pairs = frozenset(c for f, c in columns.items() if f not in ("response", "rating", "scale_min", "scale_max"))
        of_ratings = frozenset(c for f, c in columns.items() if f not in ("chosen", "rejected", "margin"))
        return (columns, (of_pairs, of_ratings), {c: f for f, c in columns.items()}, conversation_keys,
                _score_columns(keys))

    def parse(row: dict) -> Parsed:
        nonlocal setup
        if setup is None:
            setup = columns_of(list(row))
        columns, used, field_of, conversation_keys, scores = setup
        if cells:
            row = tags_cell(_cells_as_turns(row, conversation_keys), columns["tags"])
        try:
            parsed = _parse_generic(row, columns, objective, declared, scales, used)
            if scores is not None:
                _check_scores(row, scores, parsed, minimized)
            return parsed
        except MissingField as error:  # a file of other column names: say how to map them
            if error.key not in field_of:
                raise
            raise RowError("missing_field", _missing_detail(error, field_of[error.key], row)) from None

    return parse, []


