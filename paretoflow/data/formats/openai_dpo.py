"""openai_dpo: the preference fine-tuning format of OpenAI's DPO API (Azure OpenAI and
Fireworks take it too): one JSON object a line,

    {"input": {"messages": [turns], "tools": [...], "parallel_tool_calls": true},
     "preferred_output": [{"role": "assistant", "content": "..."}],
     "non_preferred_output": [{"role": "assistant", "content": "..."}]}

The prompt is input.messages (system and user turns, possibly earlier assistant turns,
ending with the user's), each output one assistant turn with text: a pair, chosen the
preferred output, margin 1, for the source's objective (the file says which answer is
preferred, not on which axis). An output of another shape has no answer text to train
on: a tool call is wrong_type, several messages malformed_dialogue. Tool definitions and the
input's other settings, when given, are kept as the pair's metadata.

Before this module such a file was generic, and no column_map could read it: every row
was missing_field (its prompt is a level down, in input.messages)."""

from __future__ import annotations

from paretoflow.data.formats.fields import (
    FormatContext, Pair, Parsed, RowParser, json_safe, messages_of, no_column_map, present, single_answer,
    source_objective,
)
from paretoflow.data.readers import RowError

FIELDS = frozenset({"input", "preferred_output", "non_preferred_output"})


def detect(value: dict) -> bool:
    return FIELDS <= value.keys() and isinstance(value["input"], dict)


def _output(row: dict, key: str) -> str:
    value = present(row, key)
    calls = [i for i, t in enumerate(value) if isinstance(t, dict) and "tool_calls" in t and t.get("content") is None
             ] if isinstance(value, list) else []
    if calls:
        raise RowError("wrong_type", f"{key}[{calls[0]}] is a tool call, not an answer's text (tool calls cannot be "
                                     "imported)")
    return single_answer(value, key, "one assistant message with the answer's text")


def parser(ctx: FormatContext) -> tuple[RowParser, list[str]]:
    no_column_map(ctx, "openai_dpo", "the fields input.messages / preferred_output / non_preferred_output")
    objective, declared = source_objective(ctx, "openai_dpo", "preferences"), ctx.declared

    def parse(row: dict) -> Parsed:
        if objective not in declared:
            raise RowError("unknown_objective", f"objective {objective!r} not declared in params ({declared})")
        request = present(row, "input")
        if not isinstance(request, dict):
            raise RowError("wrong_type", f"field 'input' is {type(request).__name__}, expected an object with messages")
        messages = messages_of(present(request, "messages"), "input.messages")
        parsed = Parsed(messages, [_output(row, "preferred_output"), _output(row, "non_preferred_output")],
                        pairs=[Pair(0, 1, objective, 1.0)])
        settings = {f"input.{k}": json_safe(v) for k, v in sorted(request.items()) if k != "messages" and v not in ([], None)}
        parsed.metadata = {**{k: json_safe(v) for k, v in sorted(row.items()) if k not in FIELDS}, **settings}
        return parsed

    return parse, []
