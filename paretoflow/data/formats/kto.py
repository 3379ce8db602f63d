"""kto: TRL's unpaired preference format (its KTO trainer's): prompt, completion, label
(true: a desirable answer, false: an undesirable one). Each row is one rated answer, the
label read as the better or the worse end of the objective's scale (the top for
"maximize", the bottom for "minimize"); pairs are derived after
curation across the rows of a prompt (every desirable answer over every undesirable one,
margin the scale's width), as for HelpSteer2. The objective is the source's (the labels
say good or bad, not on which axis). TRL's conversational form is read too: the prompt a
list of turns ending with the user's, the completion one assistant turn.

Before this module such a file was auto-detected as a prompt set (builtin): every row
kept as a bare prompt, the completions and labels dropped."""

from __future__ import annotations

from paretoflow.data.formats.fields import (
    FormatContext, Parsed, Rating, RowParser, messages_of, no_column_map, present, single_answer, source_objective,
    text, user,
)
from paretoflow.data.formats.hh_rlhf import hh_prompt
from paretoflow.data.readers import RowError

DERIVE_PAIRS = True


def _label(value: object) -> bool | None:
    """A boolean, or its text (a CSV cell, a string column); None for anything else."""
    if isinstance(value, bool):
        return value
    return {"true": True, "false": False}.get(value.strip().lower()) if isinstance(value, str) else None


def detect(value: dict) -> bool:
    return {"prompt", "completion", "label"} <= value.keys() and _label(value["label"]) is not None


def _completion(row: dict) -> str:
    value = present(row, "completion")
    if not isinstance(value, list):
        return text(row, "completion")
    return single_answer(value, "completion", "the assistant's answer only (the turns before it belong in 'prompt')")


def parser(ctx: FormatContext) -> tuple[RowParser, list[str]]:
    no_column_map(ctx, "kto", "the fields prompt / completion / label")
    objective, declared = source_objective(ctx, "kto", "labels"), ctx.declared
    low, high = next((o.scale for o in ctx.objectives if o.name == objective), (0.0, 1.0))
    good, bad = (low, high) if objective in ctx.minimized else (high, low)

    def parse(row: dict) -> Parsed:
        if objective not in declared:
            raise RowError("unknown_objective", f"objective {objective!r} not declared in params ({declared})")
        prompt = present(row, "prompt")
        if isinstance(prompt, list):
            messages = messages_of(prompt, "prompt")
        else:  # an HH transcript ("Human: ...\n\nAssistant:") is its turns, as in generic files
            prompt = text(row, "prompt")
            messages = hh_prompt(prompt, "prompt") or user(prompt)
        label = _label(present(row, "label"))
        if label is None:
            raise RowError("wrong_type", f"field 'label' = {row['label']!r}, expected true or false")
        rating = Rating(0, objective, good if label else bad, low, high, "kto:label")
        return Parsed(messages, [_completion(row)], ratings=[rating])

    return parse, []
