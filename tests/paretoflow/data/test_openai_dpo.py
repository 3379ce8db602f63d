"""openai_dpo: OpenAI's preference fine-tuning rows (input.messages, preferred_output,
non_preferred_output) as pairs; before the format every row was missing_field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paretoflow.config import Objective
from paretoflow.data.importers import read_file
from tests.paretoflow.data import curated_pair_texts

OBJECTIVES = [Objective(name="helpfulness"), Objective(name="harmlessness")]


def _turn(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def _row(question: str, good: str, bad: str, **request) -> dict:
    return {"input": {"messages": [_turn("user", question)], **request},
            "preferred_output": [_turn("assistant", good)], "non_preferred_output": [_turn("assistant", bad)]}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rows_are_pairs_of_the_preferred_over_the_other(tmp_path):
    system = {"input": {"messages": [_turn("system", "Be brief."), _turn("user", "2+2?")]},
              "preferred_output": [_turn("assistant", "4")], "non_preferred_output": [_turn("assistant", "5")], "id": 7}
    rows = [_row("How cold is it?", "About 14 °C.", "Cold.", tools=[], parallel_tool_calls=True), system]
    imported = read_file(_write(tmp_path / "dpo.jsonl", rows), OBJECTIVES, objective="harmlessness")  # auto-detected
    assert imported.format == "openai_dpo" and not imported.quarantined
    first, second = imported.records
    assert first.messages == [_turn("user", "How cold is it?")] and first.responses == ["About 14 °C.", "Cold."]
    assert [(p.chosen_index, p.rejected_index, p.objective, p.margin) for p in first.pairs] == [(0, 1, "harmlessness", 1.0)]
    assert first.metadata == {"input.parallel_tool_calls": True}  # empty tools are not kept
    assert second.messages == [_turn("system", "Be brief."), _turn("user", "2+2?")] and second.metadata == {"id": 7}


def test_outputs_that_are_no_answer_text_are_quarantined_and_the_objective_is_required(tmp_path):
    call = {**_row("Weather?", "x", "No."), "preferred_output": [{"role": "assistant", "tool_calls": [{"id": "1"}]}]}
    two = {**_row("Hi", "x", "y"), "preferred_output": [_turn("assistant", "Hello."), _turn("assistant", "Again.")]}
    user_last = {**_row("Hi", "x", "y"), "non_preferred_output": [_turn("user", "Hi")]}
    flat = {**_row("Hi", "x", "y"), "input": "Hi"}
    imported = read_file(_write(tmp_path / "dpo.jsonl", [_row("Q?", "A", "B"), call, two, user_last, flat]),
                         OBJECTIVES, format="openai_dpo", objective="helpfulness")
    assert len(imported.records) == 1
    assert [(q.location, q.reason, q.detail) for q in imported.quarantined] == [
        ("line 2", "wrong_type", "preferred_output[0] is a tool call, not an answer's text (tool calls cannot be imported)"),
        ("line 3", "malformed_dialogue", "field 'preferred_output' holds 2 turns, expected one assistant message "
                                         "with the answer's text"),
        ("line 4", "malformed_dialogue", "last turn of 'non_preferred_output' is 'user', expected 'assistant'"),
        ("line 5", "wrong_type", "field 'input' is str, expected an object with messages")]
    with pytest.raises(ValueError, match="format 'openai_dpo' needs the objective"):
        read_file(tmp_path / "dpo.jsonl", OBJECTIVES)
    with pytest.raises(ValueError, match="format 'openai_dpo' reads the fields input.messages"):
        read_file(tmp_path / "dpo.jsonl", OBJECTIVES, objective="helpfulness", column_map={"prompt": "input"})


def test_curated_pairs_hold_the_preferred_answer_as_chosen(tmp_path):
    _write(tmp_path / "dpo.jsonl", [_row(f"Question {i}?", f"Answer {i}.", "No.") for i in range(3)])
    report, pairs = curated_pair_texts(tmp_path, "dpo.jsonl", OBJECTIVES, "helpfulness")
    assert report["rows_in"] == 3 == report["rows_kept"]
    assert pairs == [("Answer 0.", "No.", 1.0), ("Answer 1.", "No.", 1.0), ("Answer 2.", "No.", 1.0)]
