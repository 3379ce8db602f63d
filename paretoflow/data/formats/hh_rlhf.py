"""hh_rlhf (Anthropic HH-RLHF): {"chosen", "rejected"} full dialogues
"\\n\\nHuman: ...\\n\\nAssistant: ..." (an export may have stripped the leading line
breaks); the shared turns are the prompt, the two final assistant turns the responses,
one pair. Objective: the source's `objective`, else from the path
("helpful*" → helpfulness, "harmless*" → harmlessness, as in the HH folder names).
Dialogues that differ before the final Assistant turn → prompt_mismatch; dialogues that do
not open with a Human turn and alternate Human/Assistant → malformed_dialogue."""

from __future__ import annotations

import re
from pathlib import Path

from paretoflow.data.formats.fields import FormatContext, Pair, Parsed, RowParser, no_column_map, text
from paretoflow.data.readers import RowError


# HH-RLHF folder/file name prefixes (helpful-base, harmless-base, ...) → objective.
HH_NAME_OBJECTIVES = {"helpful": "helpfulness", "harmless": "harmlessness"}


def detect(value: dict) -> bool:
    return {"chosen", "rejected"} <= set(value) and isinstance(value.get("chosen"), str) and "Human:" in value["chosen"]


_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_HH_START = re.compile(r"\s*Human:")


def _hh_turns(text: str, key: str) -> list[dict[str, str]]:
    parts = _HH_TURN.split(text)
    if parts[0].strip() and _HH_START.match(parts[0]):  # "Human: ..." with its leading line breaks stripped
        parts = _HH_TURN.split("\n\n" + text.lstrip())
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


def hh_prompt(value: str, key: str) -> list[dict[str, str]] | None:
    """The turns of a prompt text written as an HH transcript ending in an open Assistant
    turn ("Human: ...\\n\\nAssistant:", as Dahoas/rm-static, full-hh-rlhf and Nectar hold
    their prompts), else None. Read as one user turn, the speaker labels became words of
    the prompt and its earlier turns one block; turns that do not alternate from a Human
    turn are malformed_dialogue, as in this format."""
    if not _HH_START.match(value):  # most prompts stop here, at their first character
        return None
    body = value.strip()
    if not body.endswith("Assistant:"):
        return None
    turns = _hh_turns("\n\n" + body, key)
    if turns[-1]["role"] != "assistant" or turns[-1]["content"]:
        return None  # "Assistant:" not on its own turn: text that merely ends so
    _check_alternates(turns, key)
    return turns[:-1]


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
    chosen = _hh_turns(text(row, "chosen"), "chosen")
    rejected = _hh_turns(text(row, "rejected"), "rejected")
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


def parser(ctx: FormatContext) -> tuple[RowParser, list[str]]:
    no_column_map(ctx, "hh_rlhf", "the fields chosen / rejected")
    target, declared = hh_objective(ctx.path, ctx.objective), ctx.declared

    def parse(row: dict) -> Parsed:
        if target not in declared:
            raise RowError("unknown_objective", f"objective {target!r} not declared in params ({declared})")
        messages, responses, pairs = parse_hh(row, target)
        return Parsed(messages, responses, pairs=pairs)
    return parse, []


