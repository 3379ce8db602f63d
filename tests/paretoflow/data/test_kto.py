"""TRL's unpaired preference format (KTO): prompt, completion, label. Such a file was
auto-detected as a prompt set: every row kept as a bare prompt, completions and labels
dropped (builtin reads prompt / messages / tags only)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from paretoflow.config import Objective
from paretoflow.data.importers import read_file
from tests.paretoflow.data import curated_pair_texts

OBJECTIVES = [Objective(name="helpfulness", scale=(1.0, 5.0)), Objective(name="harmlessness")]


def _rows(n: int = 3) -> list[dict]:
    rows = []
    for i in range(n):
        rows += [{"prompt": f"How do I learn language {i}?", "completion": f"Practise {i} minutes daily.", "label": True},
                 {"prompt": f"How do I learn language {i}?", "completion": "Give up.", "label": False}]
    return rows


def _write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)  # labels written as True / False
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("name", ["kto.jsonl", "kto.csv"])
def test_labels_are_ratings_at_the_ends_of_the_scale(tmp_path, name):
    imported = read_file(_write(tmp_path / name, _rows()), OBJECTIVES, objective="helpfulness")
    assert imported.format == "kto" and imported.derive_pairs
    assert len(imported.records) == 6 and not imported.quarantined
    first, second = imported.records[:2]
    assert first.messages == [{"role": "user", "content": "How do I learn language 0?"}]
    assert first.responses == ["Practise 0 minutes daily."] and second.responses == ["Give up."]
    assert [(r.objective, r.value, r.scale_min, r.scale_max) for r in first.ratings + second.ratings] == [
        ("helpfulness", 5.0, 1.0, 5.0), ("helpfulness", 1.0, 1.0, 5.0)]


def test_pairs_are_derived_desirable_over_undesirable(tmp_path):
    rows = [*_rows(2), {"prompt": "How do I learn language 0?", "completion": "Read daily.", "label": True}]
    _write(tmp_path / "kto.jsonl", rows)
    report, got = curated_pair_texts(tmp_path, "kto.jsonl", OBJECTIVES, "helpfulness")
    assert report["rows_in"] == 5 == report["rows_kept"]
    # prompt 0: two desirable answers over one undesirable; prompt 1: one over one; margin 5 - 1
    assert got == [("Practise 0 minutes daily.", "Give up.", 4.0), ("Practise 1 minutes daily.", "Give up.", 4.0),
                   ("Read daily.", "Give up.", 4.0)]


def test_conversational_rows(tmp_path):
    row = {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
           "completion": [{"role": "assistant", "content": "Hello!"}], "label": False}
    two = {**row, "completion": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
    imported = read_file(_write(tmp_path / "kto.jsonl", [row, two]), OBJECTIVES, objective="harmlessness")
    [record] = imported.records
    assert [t["role"] for t in record.messages] == ["system", "user"] and record.responses == ["Hello!"]
    assert [r.value for r in record.ratings] == [0.0]
    [entry] = imported.quarantined
    assert entry.reason == "malformed_dialogue" and "holds 2 turns" in entry.detail


def test_bad_labels_are_quarantined_and_the_objective_is_required(tmp_path):
    rows = [*_rows(1), {"prompt": "Q?", "completion": "A.", "label": "maybe"},
            {"prompt": "Q?", "completion": "A.", "label": 1}]
    imported = read_file(_write(tmp_path / "kto.jsonl", rows), OBJECTIVES, objective="helpfulness")
    assert imported.rows_in == 4 == len(imported.records) + len(imported.quarantined)
    assert [(q.reason, q.detail) for q in imported.quarantined] == [
        ("wrong_type", "field 'label' = 'maybe', expected true or false"),
        ("wrong_type", "field 'label' = 1, expected true or false")]
    with pytest.raises(ValueError, match=r"format 'kto' needs the objective its labels judge"):
        read_file(tmp_path / "kto.jsonl", OBJECTIVES)
    undeclared = read_file(tmp_path / "kto.jsonl", OBJECTIVES, objective="conciseness")
    assert [q.reason for q in undeclared.quarantined] == ["unknown_objective"] * 4


def test_a_desirable_answer_is_the_better_end_of_an_objective_to_minimize(tmp_path):
    objectives = [Objective(name="toxicity", direction="minimize", scale=(0.0, 10.0))]
    imported = read_file(_write(tmp_path / "kto.jsonl", _rows(1)), objectives, objective="toxicity")
    assert [r.value for record in imported.records for r in record.ratings] == [0.0, 10.0]


def test_an_hh_transcript_prompt_is_read_as_its_turns(tmp_path):
    prompt = "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Name a fruit.\n\nAssistant:"
    bad = "\n\nHuman: Hi\n\nHuman: Name a fruit.\n\nAssistant:"  # two Human turns in a row
    rows = [{"prompt": prompt, "completion": "An apple.", "label": True},
            {"prompt": bad, "completion": "A pear.", "label": True}]
    imported = read_file(_write(tmp_path / "kto.jsonl", rows), OBJECTIVES, objective="helpfulness")
    [record] = imported.records
    assert record.messages == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                               {"role": "user", "content": "Name a fruit."}]
    assert [(q.location, q.reason) for q in imported.quarantined] == [("line 2", "malformed_dialogue")]
