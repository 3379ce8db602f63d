"""Conversational preference rows (TRL's format, HuggingFaceH4/ultrafeedback_binarized):
chosen / rejected as lists of turns. Every such row was quarantined before (wrong_type
"field 'chosen' is list, expected a string", or missing_field for TRL's implicit prompt)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from paretoflow.data.importers import read_file
from tests.paretoflow.data.test_bad_inputs import OBJECTIVES
from tests.paretoflow.data.test_hostile_inputs import _curate, _source

Q = "How do I water a fern?"


def U(text: str) -> dict:
    return {"role": "user", "content": text}


def A(text: str) -> dict:
    return {"role": "assistant", "content": text}


def _read(tmp_path: Path, rows: list[dict], name: str = "conv.jsonl"):
    path = tmp_path / name
    if name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    imported = read_file(path, OBJECTIVES, format="auto", objective="helpfulness")
    assert imported.rows_in == len(rows) == len(imported.records) + len(imported.quarantined)
    return imported


H4 = {"prompt": Q, "prompt_id": "p1", "chosen": [U(Q), A("Keep the soil moist.")],
      "rejected": [U(Q), A("No idea.")], "messages": [U(Q), A("Keep the soil moist.")],
      "score_chosen": 8.0, "score_rejected": 3.0}


@pytest.mark.parametrize("name", ["h4.jsonl", "h4.parquet"])
def test_h4_ultrafeedback_binarized_rows(tmp_path, name):
    [record] = _read(tmp_path, [H4], name).records
    assert record.messages == [U(Q)]
    assert record.responses == ["Keep the soil moist.", "No idea."]
    assert [(p.chosen_index, p.rejected_index, p.objective) for p in record.pairs] == [(0, 1, "helpfulness")]
    # The other columns are metadata; `messages`, the chosen conversation again, is not.
    assert record.metadata == {"prompt_id": "p1", "score_chosen": 8.0, "score_rejected": 3.0}


def test_trl_explicit_and_implicit_prompts(tmp_path):
    explicit = {"prompt": [U(Q)], "chosen": [A("Moist soil.")], "rejected": [A("Dry it.")]}
    dialogue = [{"role": "system", "content": "Be brief."}, U("Hi"), A("Hello."), U(Q)]
    implicit = {"chosen": [*dialogue, A("Moist soil.")], "rejected": [*dialogue, A("Dry it.")]}
    first, second = _read(tmp_path, [explicit, implicit]).records
    assert first.messages == [U(Q)] and first.responses == ["Moist soil.", "Dry it."]
    assert second.messages == dialogue and second.responses == ["Moist soil.", "Dry it."]


def test_a_repeated_prompt_may_be_respaced_and_continued(tmp_path):
    row = {"prompt": Q, "chosen": [U("How do I  water a fern? "), A("Mist it."), U("And cacti?"), A("Rarely.")],
           "rejected": [U(Q), A("Mist it."), U("And cacti?"), A("Daily.")]}
    [record] = _read(tmp_path, [row]).records
    assert [t["content"] for t in record.messages] == ["How do I  water a fern? ", "Mist it.", "And cacti?"]
    assert record.responses == ["Rarely.", "Daily."]


@pytest.mark.parametrize("row, reason, detail", [
    ({"chosen": [U("Q one?"), A("a")], "rejected": [U("Q two?"), A("b")]},
     "prompt_mismatch", "'chosen' and 'rejected' differ before their final assistant turn"),
    ({"prompt": "Another question?", "chosen": [U(Q), A("a")], "rejected": [U(Q), A("b")]},
     "prompt_mismatch", "do not repeat the prompt"),
    ({"prompt": Q, "chosen": [A("a"), U("more?")], "rejected": [A("b")]},
     "malformed_dialogue", "last turn of 'chosen' is 'user', expected 'assistant'"),
    ({"chosen": [A("a")], "rejected": [A("b")]}, "missing_field", "no turn before its answer"),
    ({"chosen": [U(Q), A("a"), A("again")], "rejected": [U(Q), A("a"), A("b")]},
     "malformed_dialogue", "last turn of 'chosen before its answer' is 'assistant', expected 'user'"),
    ({"prompt": Q, "chosen": [U(Q), A("a")], "rejected": "b"}, "wrong_type", "'rejected' is a string but not JSON"),
    ({"prompt": Q, "chosen": [U(Q), {"role": "assistant", "content": 3}], "rejected": [U(Q), A("b")]},
     "wrong_type", "chosen[1].content is int"),
])
def test_conversations_that_cannot_be_paired_are_quarantined(tmp_path, row, reason, detail):
    imported = _read(tmp_path, [H4, row])
    assert len(imported.records) == 1
    [bad] = imported.quarantined
    assert bad.reason == reason and detail in bad.detail, bad.detail


def test_conversational_rows_through_curate_keep_the_count(tmp_path):
    rows = [{**H4, "prompt": f"How do I water fern number {i}?",
             "chosen": [U(f"How do I water fern number {i}?"), A(f"Keep fern {i} moist.")],
             "rejected": [U(f"How do I water fern number {i}?"), A("No idea.")]} for i in range(6)]
    rows.append({"chosen": [U("Q one?"), A("a")], "rejected": [U("Q two?"), A("b")]})
    source = _source(_curate(tmp_path, "h4.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode(),
                             format="auto", objective="helpfulness"), "h4.jsonl")
    assert source["rows_in"] == 7 and source["rows_kept"] == 6 and source["reasons"] == {"prompt_mismatch": 1}


def test_sharegpt_turns_and_role_aliases(tmp_path):
    # ShareGPT {from, value} turns with human / gpt, Gemma's "model", capitalised speakers:
    # each was wrong_type ("role 'human' not one of [...]") before.
    sharegpt = {"chosen": [{"from": "human", "value": Q}, {"from": "gpt", "value": "Moist soil."}],
                "rejected": [{"from": "human", "value": Q}, {"from": "gpt", "value": "Dry it."}]}
    gemma = {"prompt": [{"role": "User", "content": Q}], "chosen": [{"role": "model", "content": "Mist it."}],
             "rejected": [{"role": "MODEL", "content": "Never."}]}
    unknown = {"prompt": [{"role": "narrator", "content": Q}], "chosen": [A("a")], "rejected": [A("b")]}
    imported = _read(tmp_path, [sharegpt, gemma, unknown])
    first, second = imported.records
    assert first.messages == [U(Q)] and first.responses == ["Moist soil.", "Dry it."]
    assert second.messages == [U(Q)] and second.responses == ["Mist it.", "Never."]
    [bad] = imported.quarantined
    assert bad.reason == "wrong_type" and "prompt[0].role 'narrator' not one of" in bad.detail


def _records(imported) -> list[tuple]:
    return [(r.messages, r.responses) for r in imported.records]


@pytest.mark.parametrize("via_parquet", [False, True])
def test_conversations_a_csv_holds_as_text_are_read_as_turns(tmp_path, via_parquet):
    # df.to_csv writes a list column as its Python repr (numpy's comma-less one for a frame
    # read from Parquet); each answer was that repr, kept as the answer's text, before.
    import pandas as pd

    rows = [{"prompt": [U(f"{Q} ({i})")], "chosen": [A("Keep the soil moist.")], "rejected": [A("No idea.")]}
            for i in range(3)] + [{"chosen": [U("Hi?"), A("Hello.")], "rejected": [U("Hi?"), A("Go away.")]},
                                  {"messages": [U("Why?"), A("Because."), U("Why so?")], "chosen": [A("It is.")],
                                   "rejected": [A("No.")]}]
    expected = _records(_read(tmp_path, rows))
    frame = pd.DataFrame(rows)
    if via_parquet:
        frame.to_parquet(tmp_path / "conv.parquet")
        frame = pd.read_parquet(tmp_path / "conv.parquet")
        assert "}\n {" in str(frame["chosen"].iloc[3])  # numpy's repr: no comma between the turns
    frame.to_csv(tmp_path / "conv.csv", index=False)
    imported = read_file(tmp_path / "conv.csv", OBJECTIVES, format="generic", objective="helpfulness")
    assert (imported.rows_in, _records(imported), len(imported.quarantined)) == (5, expected, 0)


def test_cells_that_only_look_like_turns_stay_text(tmp_path):
    answer = "[{'role': 'user', 'content': 'x'}] is how a chat is written"  # not a whole list
    listing = "[{'name': 'a'}, {'name': 'b'}]"  # a list of objects that are not turns
    numpy_like = "[{'role': 'user', 'content': 'a} {b'}\n {'role': 'assistant', 'content': 'c'}]"  # "} {" in a text
    deep = '[{"a": ' + "[" * 30_000 + "]" * 30_000 + "}]"  # deeper than json's recursion: text, not a row error
    path = tmp_path / "text.csv"
    pd_rows = [{"prompt": f"Show me {i}.", "chosen": text, "rejected": "No."}
               for i, text in enumerate([answer, listing, numpy_like, deep])]
    import pandas as pd

    pd.DataFrame(pd_rows).to_csv(path, index=False)
    imported = read_file(path, OBJECTIVES, format="generic", objective="helpfulness")
    assert [r.responses[0] for r in imported.records] == [answer, listing, numpy_like, deep]
    json_path = tmp_path / "text.jsonl"  # outside CSV a string is a string
    json_path.write_text(json.dumps({"prompt": "Q?", "chosen": "[{\"role\": \"assistant\", \"content\": \"A\"}]",
                                     "rejected": "No."}) + "\n")
    assert read_file(json_path, OBJECTIVES, format="generic", objective="helpfulness").records[0].responses[0] == (
        "[{\"role\": \"assistant\", \"content\": \"A\"}]")


def _parts(*texts: str) -> list[dict]:
    return [{"type": "text", "text": t} for t in texts]


@pytest.mark.parametrize("name", ["parts.jsonl", "parts.parquet"])
def test_content_given_as_text_parts(tmp_path, name):
    """OpenAI's chat format and transformers' multimodal templates give a turn's content as a
    list of parts; their text is the turn's text (it was wrong_type "content is list")."""
    rows = [{"prompt": [{"role": "user", "content": _parts("Describe a fern.", "Be brief.")}],
             "chosen": [{"role": "assistant", "content": _parts("Green fronds.")}],
             "rejected": [{"role": "assistant", "content": _parts("A rock.")}]}]
    [record] = _read(tmp_path, rows, name).records
    assert record.messages == [U("Describe a fern.\nBe brief.")]
    assert record.responses == ["Green fronds.", "A rock."]


@pytest.mark.parametrize("content, detail", [
    ([{"type": "image_url", "image_url": {"url": "https://x/y.png"}}], "prompt[0].content[0] is a 'image_url' part"),
    ([{"type": "text", "text": "Hi"}, "loose"], "prompt[0].content[1] is a str"),
    ([{"type": "text", "text": 3}], "prompt[0].content[0] is a text part whose 'text' is int"),
    ([], "prompt[0].content is an empty list"),
])
def test_content_parts_without_text_are_quarantined(tmp_path, content, detail):
    rows = [{"prompt": [{"role": "user", "content": content}], "chosen": [A("Yes.")], "rejected": [A("No.")]}]
    [entry] = _read(tmp_path, rows).quarantined
    assert entry.reason == "wrong_type" and detail in entry.detail
