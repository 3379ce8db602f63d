"""Importers on hand-written fixture files in each dataset's real format (broken rows
included): what each row becomes, and the quarantine reason of each bad row."""

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from paretoflow.config import Objective
from paretoflow.data.importers import detect_format, read_file

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "data"
OBJECTIVES = [Objective(name=n) for n in ("helpfulness", "conciseness", "harmlessness")]
GENERIC_MAP = {"prompt": "question", "chosen": "good", "rejected": "bad", "objective": "axis"}


def reasons(imported):
    return {q.location: q.reason for q in imported.quarantined}


def test_builtin_prompts_and_bad_rows():
    imported = read_file(FIXTURES / "builtin_train.jsonl", OBJECTIVES)
    assert imported.format == "builtin"
    # 13 lines, one blank: 12 rows, each a record or a quarantine entry.
    assert imported.rows_in == 12 == len(imported.records) + len(imported.quarantined)
    first, multi_turn = imported.records[0], imported.records[1]
    assert first.messages == [{"role": "user", "content": "How do I keep basil alive on a windowsill?"}]
    assert first.tags == ["category:advice"] and first.responses == []
    assert [t["role"] for t in multi_turn.messages] == ["user", "assistant", "user"]
    assert imported.records[2].tags == ["category:safety", "harmful"]
    assert reasons(imported) == {
        "line 6": "wrong_type",  # tags is a string
        "line 7": "malformed_json",
        "line 8": "missing_field",  # no prompt or messages
        "line 10": "wrong_type",  # prompt is a number
        "line 11": "malformed_dialogue",  # last turn is the assistant's
        "line 12": "wrong_type",  # a JSON list, not an object
        "line 13": "undecodable_bytes",  # Latin-1 byte in a UTF-8 file
    }


def test_hh_rlhf_dialogues_split_into_prompt_and_pair():
    imported = read_file(FIXTURES / "helpful-base" / "train.jsonl", OBJECTIVES)
    assert imported.format == "hh_rlhf"
    first, picnic = imported.records[0], imported.records[1]
    assert first.messages == [{"role": "user", "content": "What is a good name for a goldfish?"}]
    assert first.responses == ["Bubbles is a classic choice, or Goldie if you like simple names.", "I don't know."]
    assert [(p.chosen_index, p.rejected_index, p.objective, p.margin) for p in first.pairs] == [(0, 1, "helpfulness", 1.0)]
    assert picnic.messages == [
        {"role": "user", "content": "Can you help me plan a picnic?"},
        {"role": "assistant", "content": "Sure, where will it be?"},
        {"role": "user", "content": "At the park near the river."},
    ]
    assert picnic.responses[1] == "Parks are nice."
    assert reasons(imported) == {
        "line 4": "prompt_mismatch",  # chosen and rejected prompts differ
        "line 5": "malformed_dialogue",  # not a Human/Assistant dialogue
        "line 6": "missing_field",  # no rejected
    }
    # Empty final turn and chosen == rejected pass import; curation rejects them.
    assert imported.records[3].responses[0] == ""


def test_hh_dialogues_whose_leading_line_breaks_were_stripped_are_read(tmp_path):
    # An export that strips each text (e.g. a CSV round trip): every row was malformed_dialogue.
    rows = [{"chosen": "Human: How do I bake bread?\n\nAssistant: Knead, proof, bake.",
             "rejected": "  Human: How do I bake bread?\n\nAssistant: Buy it."},
            {"chosen": "Assistant: Hi\n\nHuman: Bread?\n\nAssistant: Bake.", "rejected": "Assistant: Hi\n\nHuman: Bread?\n\nAssistant: No."}]
    imported = read_file(_jsonl(tmp_path / "harmless.jsonl", rows), OBJECTIVES, format="hh_rlhf")
    [record] = imported.records
    assert record.messages == [{"role": "user", "content": "How do I bake bread?"}]
    assert record.responses == ["Knead, proof, bake.", "Buy it."]
    assert [(q.location, q.reason) for q in imported.quarantined] == [("line 2", "malformed_dialogue")]


def test_hh_objective_from_flag_and_unknown_objective(tmp_path):
    imported = read_file(FIXTURES / "helpful-base" / "train.jsonl", OBJECTIVES, objective="harmlessness")
    assert {p.objective for r in imported.records for p in r.pairs} == {"harmlessness"}
    unknown = read_file(FIXTURES / "helpful-base" / "train.jsonl", OBJECTIVES, objective="honesty")
    assert not unknown.records and {q.reason for q in unknown.quarantined} >= {"unknown_objective"}
    nameless = tmp_path / "dialogues.jsonl"
    nameless.write_text((FIXTURES / "helpful-base" / "train.jsonl").read_text())
    with pytest.raises(ValueError, match="dialogues.jsonl: cannot tell the HH-RLHF objective"):
        read_file(nameless, OBJECTIVES)


def test_pku_two_pairs_on_the_same_responses():
    imported = read_file(FIXTURES / "pku_saferlhf.jsonl", OBJECTIVES)
    assert imported.format == "pku_saferlhf"
    insult = imported.records[1]
    assert [(p.chosen_index, p.rejected_index, p.objective) for p in insult.pairs] == [
        (1, 0, "helpfulness"),  # better_response_id 1
        (0, 1, "harmlessness"),  # safer_response_id 0
    ]
    assert reasons(imported) == {"line 4": "wrong_type", "line 5": "missing_field"}


def test_pku_objective_mapping_via_column_map():
    imported = read_file(FIXTURES / "pku_saferlhf.jsonl", OBJECTIVES, column_map={"harmlessness": "safer_response_id"})
    assert {p.objective for r in imported.records for p in r.pairs} == {"harmlessness"}
    with pytest.raises(ValueError, match="objective 'safety', not declared"):
        read_file(FIXTURES / "pku_saferlhf.jsonl", OBJECTIVES, column_map={"safety": "safer_response_id"})


def test_helpsteer2_ratings_mapping_and_ignored_attributes():
    imported = read_file(FIXTURES / "helpsteer2.jsonl", OBJECTIVES)
    assert imported.format == "helpsteer2" and imported.derive_pairs
    first = imported.records[0]
    ratings = {(r.objective, r.rater): (r.value, r.scale_min, r.scale_max) for r in first.ratings}
    # verbosity 1 on 0-4 inverted → conciseness 3.
    assert ratings == {
        ("helpfulness", "helpsteer2:helpfulness"): (3.0, 0.0, 4.0),
        ("conciseness", "helpsteer2:-verbosity"): (3.0, 0.0, 4.0),
    }
    multi_turn = imported.records[2]
    assert [t["role"] for t in multi_turn.messages] == ["user", "assistant", "user"]
    assert multi_turn.messages[-1]["content"] == "And that times 3?"
    # Undeclared attributes are counted, not errors.
    assert dict(imported.ignored_attributes) == {"correctness": 6, "coherence": 6, "complexity": 6}
    assert reasons(imported) == {"line 4": "rating_off_scale", "line 5": "nan_value", "line 6": "wrong_type"}


def test_helpsteer2_declared_attribute_kept_under_its_name():
    objectives = OBJECTIVES + [Objective(name="correctness", scale=(0.0, 4.0))]
    imported = read_file(FIXTURES / "helpsteer2.jsonl", objectives)
    assert "correctness" in {r.objective for r in imported.records[0].ratings}
    assert "correctness" not in imported.ignored_attributes


def test_ultrafeedback_ratings_and_best_vs_worst_pair():
    imported = read_file(FIXTURES / "ultrafeedback.jsonl", OBJECTIVES)
    assert imported.format == "ultrafeedback"
    (record,) = imported.records
    assert len(record.responses) == 3
    assert [(r.response_index, r.value, r.scale_min, r.scale_max) for r in record.ratings] == [
        (0, 2.0, 1.0, 5.0), (1, 5.0, 1.0, 5.0), (2, 4.0, 1.0, 5.0)
    ]
    assert [(p.chosen_index, p.rejected_index, p.margin) for p in record.pairs] == [(1, 0, 3.0)]
    assert reasons(imported) == {"line 2": "rating_off_scale", "line 3": "missing_field", "line 4": "missing_field"}


def test_ultrafeedback_na_rating_skipped_and_counted():
    objectives = OBJECTIVES + [Objective(name="honesty", scale=(1.0, 5.0))]
    imported = read_file(FIXTURES / "ultrafeedback.jsonl", objectives)
    assert imported.not_rated == 1  # completion 0 has honesty "N/A"
    honesty = [r for r in imported.records[0].ratings if r.objective == "honesty"]
    assert [(r.response_index, r.value) for r in honesty] == [(1, 5.0), (2, 4.0)]


def test_generic_csv_with_column_map():
    imported = read_file(FIXTURES / "generic_pairs.csv", OBJECTIVES, column_map=GENERIC_MAP)
    assert imported.format == "generic"
    first = imported.records[0]
    assert first.messages[0]["content"] == "How do I boil an egg?"
    assert first.responses[1] == "Just microwave it."
    assert [p.objective for p in imported.records[1].pairs] == ["conciseness"]
    assert reasons(imported) == {
        "row 3": "unknown_objective",  # creativity is not declared
        "row 4": "missing_field",  # empty chosen cell
        "row 5": "malformed_row",  # five cells under four columns
        "row 6": "undecodable_bytes",
    }


def test_generic_parquet_ratings(tmp_path):
    path = tmp_path / "ratings.parquet"
    pq.write_table(pa.table({
        "prompt": ["Name a colour.", "Name a colour.", "Name a shape.", "Name a shape."],
        "response": ["Blue.", "Red.", "Circle.", "Square."],
        "rating": [0.9, float("nan"), 0.2, 1.5],
        "objective": ["helpfulness"] * 4,
    }), path)
    imported = read_file(path, OBJECTIVES)
    assert imported.format == "generic" and imported.derive_pairs
    assert [(r.objective, r.value, r.scale_min, r.scale_max) for r in imported.records[0].ratings] == [
        ("helpfulness", 0.9, 0.0, 1.0)  # the objective's declared scale
    ]
    assert reasons(imported) == {"row 2": "nan_value", "row 4": "rating_off_scale"}


def test_wrong_type_rating():
    imported = read_file(FIXTURES / "helpsteer2.jsonl", OBJECTIVES)
    assert reasons(imported)["line 6"] == "wrong_type"


@pytest.mark.parametrize(
    "keys, expected",
    [
        ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "x"}, "hh_rlhf"),
        ({"prompt": 1, "response_0": 1, "response_1": 1, "better_response_id": 0}, "pku_saferlhf"),
        ({"instruction": 1, "completions": []}, "ultrafeedback"),
        ({"prompt": 1, "response": 1, "verbosity": 1}, "helpsteer2"),
        ({"messages": [], "tags": []}, "builtin"),
        ({"prompt": 1, "chosen": "a", "rejected": "b"}, "generic"),
    ],
)
def test_detect_format(keys, expected):
    assert detect_format(keys) == expected


# Wholly unreadable files: one clear error naming the file, nothing quarantined.


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_file(tmp_path / "nope.jsonl", OBJECTIVES)


def test_binary_garbage(tmp_path):
    path = tmp_path / "garbage.jsonl"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match="garbage.jsonl: binary data"):
        read_file(path, OBJECTIVES)


def test_not_jsonl_at_all(tmp_path):
    path = tmp_path / "table.jsonl"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="table.jsonl: no line parses as JSON"):
        read_file(path, OBJECTIVES)


def test_bad_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(ValueError, match="broken.parquet: not a readable Parquet file"):
        read_file(path, OBJECTIVES)


def test_unsupported_extension(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"data.xlsx: unsupported file type \(a spreadsheet workbook: save its sheet "
                                         r"as CSV\); paretoflow reads JSON Lines"):
        read_file(path, OBJECTIVES)


@pytest.mark.parametrize("name, kind", [
    ("data.zip", "an archive"), ("train.tar.gz", "an archive"), ("data-00000-of-00001.arrow", "an Arrow IPC file"),
    ("prefs.feather", "an Arrow IPC file"), ("frame.pkl", "a pickle, never loaded"), ("export.TXT", "plain text"),
])
def test_unsupported_files_of_a_usual_kind_say_what_to_do(tmp_path, name, kind):
    from paretoflow.data.tables import report_table

    path = tmp_path / name
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match=rf"{name}: unsupported file type \({kind}"):
        read_file(path, OBJECTIVES)
    report = {"sources": {}, "rows_in": 0, "rows_sampled_out": 0, "rows_kept": 0, "rows_quarantined": 0,
              "skipped_files": {"raw": [f"raw/{name}", "raw/b.odt"]}, "reasons": {}, "tables": {},
              "prompts_per_split": {}, "pairs_per_objective_split": {}}
    lines = report_table(report).splitlines()
    at = lines.index(f"skipped in raw (unsupported suffix): raw/{name}, raw/b.odt")
    assert lines[at + 1].startswith(f"  {kind}") and not lines[at + 2].startswith("  ")


@pytest.mark.parametrize("split", ["", "train"])  # a Dataset, or one split of a DatasetDict
def test_a_folder_datasets_save_to_disk_wrote_is_refused_as_one(tmp_path, split):
    from paretoflow.data.readers import SourceError, expand_source

    saved = tmp_path / "ds" / split
    saved.mkdir(parents=True)
    table = pa.table({"prompt": ["Hi?"], "chosen": ["Hello."], "rejected": ["No."]})
    with pa.OSFile(str(saved / "data-00000-of-00001.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as out:
        out.write_table(table)
    (saved / "state.json").write_text('{"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}')
    (saved / "dataset_info.json").write_text('{"features": {}}')  # was read as a data row: missing_field
    where = "it" if not split else str(saved)
    with pytest.raises(SourceError, match=rf"ds: {re.escape(where)} is a folder datasets' save_to_disk wrote .*to_parquet"):
        expand_source(tmp_path / "ds")
    (saved / "state.json").unlink()  # Arrow files alone are skipped and reported, as other unread files
    assert expand_source(tmp_path / "ds") == ([saved / "dataset_info.json"], [saved / "data-00000-of-00001.arrow"])


def test_every_registered_format_is_its_own_module_and_params_refuse_others():
    import pytest as _pytest

    from paretoflow.config import load_params
    from paretoflow.data.formats import FORMATS, detect_format, format_module
    from tests.conftest import REPO_ROOT

    for name in FORMATS:
        module = format_module(name)
        assert module.__name__ == f"paretoflow.data.formats.{name}"
        assert callable(module.detect) and callable(module.parser)
    assert FORMATS[-1] == "generic" and detect_format({"anything": 1}) == "generic"
    assert detect_format({"prompt": "Hi?"}) == "builtin"
    bad = {"curate": {"sources": [{"path": "x.jsonl", "format": "sharegpt"}]}}
    with _pytest.raises(ValueError, match="unknown format 'sharegpt'"):
        load_params(REPO_ROOT / "params.yaml", bad)


PREFERENCE_ROWS = [{"prompt": f"Explain tides {i}.", "response_1": "The moon pulls the water.",
                    "response_2": "Tides are magic.", "preference_strength": -2} for i in range(3)]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_column_map_on_an_auto_file_of_prompts_makes_it_generic(tmp_path):
    """A first record with a prompt and no chosen/rejected column looks like a prompt set
    (builtin, which reads no column_map): the map naming the answers was ignored and every
    row kept as a prompt without them."""
    path = _jsonl(tmp_path / "pref.jsonl", PREFERENCE_ROWS)
    imported = read_file(path, OBJECTIVES, objective="helpfulness",
                         column_map={"chosen": "response_1", "rejected": "response_2"})
    assert imported.format == "generic" and len(imported.records) == 3
    assert imported.records[0].responses == ["The moon pulls the water.", "Tides are magic."]
    assert [(p.chosen_index, p.rejected_index) for p in imported.records[0].pairs] == [(0, 1)]
    assert imported.records[0].metadata == {"preference_strength": -2}


@pytest.mark.parametrize("format", ["builtin", "hh_rlhf"])
def test_formats_of_fixed_fields_refuse_a_column_map(tmp_path, format):
    path = _jsonl(tmp_path / "pref.jsonl", PREFERENCE_ROWS)
    with pytest.raises(ValueError, match=rf"format '{format}' reads .* no column_map .* use format 'generic'"):
        read_file(path, OBJECTIVES, format=format, column_map={"prompt": "question"})


def test_an_auto_detected_format_is_named_when_it_refuses_the_source(tmp_path):
    hh = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.", "rejected": "\n\nHuman: Hi\n\nAssistant: Go."}
    path = _jsonl(tmp_path / "hh.jsonl", [hh])
    with pytest.raises(ValueError, match=r"format 'hh_rlhf' was detected from the file's first record"):
        read_file(path, OBJECTIVES, column_map={"prompt": "question"})


@pytest.mark.parametrize("format", ["auto", "generic"])
def test_prompt_only_rows_count_the_columns_they_leave_unread(tmp_path, format):
    """Answers under other column names (HelpSteer2's preference file, Nectar's `answers`)
    were dropped without a word: every row kept as a prompt. The report counts those columns
    and says how to read them; a prompt set's own fields are not counted."""
    rows = [*PREFERENCE_ROWS, {"prompt": "Name a fern.", "tags": ["plants"]}]
    imported = read_file(_jsonl(tmp_path / "pref.jsonl", rows), OBJECTIVES, format=format, objective="helpfulness")
    assert [r.responses for r in imported.records] == [[]] * 4
    assert dict(imported.unread_columns) == {"response_1": 3, "response_2": 3, "preference_strength": 3}
    assert all(r.metadata == {} for r in imported.records)


def test_the_report_names_the_unread_columns_and_the_map(tmp_path):
    from paretoflow.config import Params
    from paretoflow.data.curate import run
    from paretoflow.data.tables import report_table
    from paretoflow.stages.curate import CurateConfig, SourceConfig

    _jsonl(tmp_path / "pref.jsonl", PREFERENCE_ROWS)
    _jsonl(tmp_path / "prompts.jsonl", [{"prompt": "Name a fern.", "tags": ["plants"]}])
    params = Params(objectives=OBJECTIVES, curate=CurateConfig(
        sources=[SourceConfig(path="pref.jsonl"), SourceConfig(path="prompts.jsonl")], out_dir="curated"))
    report = run(params, tmp_path).report
    assert report["sources"]["pref.jsonl"]["prompt_only_columns_not_read"] == {
        "preference_strength": 3, "response_1": 3, "response_2": 3}
    assert report["sources"]["prompts.jsonl"]["prompt_only_columns_not_read"] == {}
    table = report_table(report)
    assert ("rows read as prompts only; their columns not read (rows): 'preference_strength' 3, 'response_1' 3, "
            "'response_2' 3; answers there are read once the source's column_map names them") in table
    assert table.count("prompts only") == 1


def test_a_pku_variant_without_one_axis_is_told_how_to_map_the_other(tmp_path):
    """PKU-SafeRLHF-single-dimension has better_response_id only: each row was missing_field
    with nothing on how to read the axis it has."""
    row = {"prompt": "How do I cook rice?", "response_0": "Rinse and boil.", "response_1": "Burn it.",
           "better_response_id": 0}
    path = _jsonl(tmp_path / "pku.jsonl", [row])
    [entry] = read_file(path, OBJECTIVES).quarantined
    assert entry.reason == "missing_field" and entry.detail.startswith("no field 'safer_response_id'")
    assert entry.detail.endswith("map only the attributes it has in the source's column_map "
                                 "(paretoflow import --map helpfulness=better_response_id)")
    [record] = read_file(path, OBJECTIVES, column_map={"helpfulness": "better_response_id"}).records
    assert [(p.chosen_index, p.rejected_index, p.objective) for p in record.pairs] == [(0, 1, "helpfulness")]


def test_pairs_from_ratings_of_an_objective_to_minimize_prefer_the_lower_rating(tmp_path):
    """Ratings live on the objective's scale and its direction says which end is better
    (align reads them so); the best-vs-worst and derived pairs took the higher rating as
    chosen whatever the direction, training the expert toward the worse answer."""
    from paretoflow.config import Params
    from paretoflow.data.curate import run
    from paretoflow.stages.curate import CurateConfig, SourceConfig

    objectives = [Objective(name="verbosity", direction="minimize", scale=(1.0, 5.0)),
                  Objective(name="helpfulness", scale=(1.0, 5.0))]
    uf = read_file(FIXTURES / "ultrafeedback.jsonl", objectives, column_map={"verbosity": "helpfulness"})
    ratings = {r.response_index: r.value for r in uf.records[0].ratings}
    [pair] = uf.records[0].pairs
    assert ratings == {0: 2.0, 1: 5.0, 2: 4.0} and (pair.chosen_index, pair.rejected_index, pair.margin) == (0, 1, 3.0)

    rows = [{"prompt": "Describe a cat.", "response": text, "rating": value, "objective": objective}
            for text, value in (("Cat.", 1), ("A small furry pet.", 3)) for objective in ("verbosity", "helpfulness")]
    _jsonl(tmp_path / "rated.jsonl", rows)
    params = Params(objectives=objectives, curate=CurateConfig(sources=[SourceConfig(path="rated.jsonl")],
                                                               out_dir="curated"))
    run(params, tmp_path)
    import pandas as pd

    texts = pd.read_parquet(tmp_path / "curated/responses.parquet").set_index("response_id")["text"]
    pairs = pd.read_parquet(tmp_path / "curated/pairs.parquet")
    assert sorted((o, texts[c], texts[r], m) for o, c, r, m in
                  zip(pairs.objective, pairs.chosen_id, pairs.rejected_id, pairs.margin)) == [
        ("helpfulness", "A small furry pet.", "Cat.", 2.0), ("verbosity", "Cat.", "A small furry pet.", 2.0)]


def test_rows_nested_in_a_wrapping_object_are_pointed_at(tmp_path):
    """{"version": ..., "data": [rows]}: one row with no prompt, whose hint was to map a
    column (none holds the prompts: they are a level down)."""
    rows = [{"prompt": "Hi?", "chosen": "Hello.", "rejected": "No."}] * 3
    for name, key, path in [("wrapped.json", "data", ".data"), ("split.json", "train rows", '.["train rows"]')]:
        (tmp_path / name).write_text(json.dumps({"version": "1.0", key: rows}))
        imported = read_file(tmp_path / name, OBJECTIVES, format="generic", objective="helpfulness")
        [entry] = imported.quarantined
        assert entry.reason == "missing_field" and not imported.records
        assert entry.detail == (f"no field 'prompt' (the row's fields: 'version', {key!r}); field {key!r} holds a list "
                                f"of 3 objects with a 'prompt' field: if they are the rows, write them one per line "
                                f"(e.g. jq -c '{path}[]' FILE > rows.jsonl) and import that")
    record = {"id": 1, "fields": {"prompt": "Hi?", "chosen": "A", "rejected": "B"}}  # Argilla's records
    [entry] = read_file(_jsonl(tmp_path / "argilla.jsonl", [record]), OBJECTIVES, format="generic",
                        objective="helpfulness").quarantined
    assert entry.detail == ("no field 'prompt' (the row's fields: 'id', 'fields'); field 'fields' is an object with a "
                            "'prompt' field: the row's columns are a level down; write them out flat (e.g. jq -c "
                            "'.fields + del(.fields)' FILE > rows.jsonl) and import that")
    turns = {"conversations": [{"role": "user", "content": "Hi"}]}  # turns are not rows: the usual hint
    alpaca = {"Instruction": "Hi", "chosen_response": "Yo", "rejected_response": "No"}
    half = {"prompt": "Hi", "chosen": "Yo", "rejected_model": "m", "rejected_response": "No"}
    for row, named in [(alpaca, "--map prompt=Instruction"), (half, "--map rejected=rejected_response")]:
        [entry] = read_file(_jsonl(tmp_path / "named.jsonl", [row]), OBJECTIVES, format="generic",
                            objective="helpfulness").quarantined
        assert entry.detail.endswith(f"(paretoflow import {named})")
    [entry] = read_file(_jsonl(tmp_path / "turns.jsonl", [turns]), OBJECTIVES, format="generic",
                        objective="helpfulness").quarantined
    assert entry.detail.endswith("(paretoflow import --map prompt=COLUMN)")


def test_system_and_context_columns_are_part_of_the_prompt(tmp_path):
    """As metadata the model never saw them: AlpacaFarm's four prompts "Summarize the text."
    of four texts became one prompt, and an Orca system prompt was dropped."""
    pair = {"chosen": "Good.", "rejected": "Bad."}

    def messages(rows: list[dict], **map_) -> list:
        imported = read_file(_jsonl(tmp_path / "f.jsonl", rows), OBJECTIVES, format="generic",
                             objective="helpfulness", column_map=map_)
        return [r.messages for r in imported.records] + [(q.reason, q.detail) for q in imported.quarantined]

    alpaca = [{"instruction": "Summarize.", "input": "Text one.", **pair}, {"instruction": "Name a colour.", "input": "", **pair}]
    assert messages(alpaca, prompt="instruction") == [
        [{"role": "user", "content": "Summarize.\n\nText one."}], [{"role": "user", "content": "Name a colour."}]]
    dolly = [{"Instruction": "Summarize.", "context": "Text two.", "input": "not this", **pair}]  # context first
    assert messages(dolly, prompt="Instruction") == [[{"role": "user", "content": "Summarize.\n\nText two."}]]
    assert messages([{"prompt": "Hi", "input": "x", **pair}]) == [[{"role": "user", "content": "Hi"}]]  # input: only Alpaca's
    factory = [{"instruction": "And in French?", "input": "", "history": [["Say hi.", "Hi!"]], "system": "Be brief.", **pair},
               {"instruction": "Hi", "history": "not rounds", **pair}]
    assert messages(factory, prompt="instruction") == [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi."},
         {"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "And in French?"}],
        ("wrong_type", "field 'history' must be a list of [user, assistant] text pairs (earlier rounds)")]
    assert messages([{"prompt": "Hi", "history": [["a", "b"]], **pair}]) == [[{"role": "user", "content": "Hi"}]]
    helpsteer3 = [{"context": [{"role": "user", "content": "Hi"}], "response1": "Hello.", "response2": "No."}]
    assert messages(helpsteer3, messages="context", chosen="response1", rejected="response2") == [
        [{"role": "user", "content": "Hi"}]]  # its turns are the prompt, not a context to add to it
    assert messages([{"q": "Hi", "notes": "Be formal.", **pair}], prompt="q", context="notes") == [
        [{"role": "user", "content": "Hi\n\nBe formal."}]]
    rag = [{"prompt": "Who won?", "context": ["Doc one.", "Doc two."], **pair},
           {"prompt": "Hi", "context": [{"role": "user", "content": "Hi"}], **pair}]
    assert messages(rag) == [[{"role": "user", "content": "Who won?\n\nDoc one.\n\nDoc two."}], (
        "wrong_type", "field 'context' holds turns, not a text: if they are the prompt, map them as its messages "
                      "(paretoflow import --map messages=context)")]
    orca = [{"system": "You are terse.", "question": "2+2?", **pair}, {"system": " ", "question": "3+3?", **pair}]
    assert messages(orca, prompt="question") == [
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"}],
        [{"role": "user", "content": "3+3?"}]]
    prompt_set = read_file(_jsonl(tmp_path / "set.jsonl", [{"prompt": "Hi", "system": "You are terse."}]), OBJECTIVES)
    assert prompt_set.format == "builtin" and not prompt_set.unread_columns
    assert [r.messages for r in prompt_set.records] == [[{"role": "system", "content": "You are terse."},
                                                          {"role": "user", "content": "Hi"}]]
    turns = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}]
    both = [{"messages": turns, "system": "You are terse.", "context": "Ctx.", **pair},
            {"messages": turns, "system": "You are verbose.", **pair}]
    assert messages(both) == [[turns[0], {"role": "user", "content": "Hi\n\nCtx."}], (
        "prompt_mismatch", "field 'system' and the prompt's own system turn differ: which one the answers were "
                           "written under cannot be told")]


def test_objective_names_scales_and_single_turn_answers_of_generic_rows(tmp_path):
    rows = [{"prompt": "Q1?", "chosen": "A", "rejected": "B", "objective": " Harmlessness"},  # case and space
            {"prompt": "Q2?", "chosen": "A", "rejected": "B", "objective": "helpful"},
            {"prompt": "Q3?", "chosen": "A", "rejected": "B", "objective": "fluency"},
            {"prompt": "Q4?", "chosen": {"role": "assistant", "content": "A"}, "rejected": {"role": "assistant", "content": "B"}},
            {"prompt": "Q5?", "chosen": {"role": "user", "content": "A"}, "rejected": "B"},
            {"prompt": {"role": "user", "content": "Q6?"}, "chosen": "A", "rejected": "B"}]
    imported = read_file(_jsonl(tmp_path / "f.jsonl", rows), OBJECTIVES, format="generic", objective="helpfulness")
    assert [(r.messages[0]["content"], r.responses, [p.objective for p in r.pairs]) for r in imported.records] == [
        ("Q1?", ["A", "B"], ["harmlessness"]), ("Q4?", ["A", "B"], ["helpfulness"]), ("Q6?", ["A", "B"], ["helpfulness"])]
    declared = "['helpfulness', 'conciseness', 'harmlessness']"
    assert [(q.location, q.reason, q.detail) for q in imported.quarantined] == [
        ("line 2", "unknown_objective", f"objective 'helpful' not declared in params ({declared}); did you mean "
                                        "'helpfulness'? (the objective column must hold declared names)"),
        ("line 3", "unknown_objective", f"objective 'fluency' not declared in params ({declared})"),
        ("line 5", "malformed_dialogue", "last turn of 'chosen' is 'user', expected 'assistant'")]
    rated = [{"prompt": "Q?", "response": "A", "rating": 8}, {"prompt": "Q?", "response": "B", "rating": 8, "scale_max": 5}]
    off = read_file(_jsonl(tmp_path / "r.jsonl", rated), OBJECTIVES, format="generic", objective="helpfulness").quarantined
    assert [q.detail for q in off] == [
        "field 'rating' = 8 outside [0, 1], the scale of objective 'helpfulness' (its scale in params' objectives); "
        "a file rated on another scale declares it there, or per row in scale_min / scale_max columns",
        "field 'rating' = 8 outside [0, 5]"]


def test_a_pair_its_own_scores_contradict_is_quarantined(tmp_path):
    """score_chosen / score_rejected were metadata only: a pair scored 2 vs 7, or 5 vs 5,
    trained chosen over rejected all the same."""
    def pair(q: str, chosen, rejected, **extra) -> dict:
        return {"prompt": q, "chosen": "A", "rejected": "B", "Chosen-Rating": chosen, "rejected-rating": rejected, **extra}

    rows = [pair("Q1?", 8, 3), pair("Q2?", 5, 5.0), pair("Q3?", "2", "7"), pair("Q4?", None, 1), pair("Q5?", "n/a", 1),
            pair("Q6?", 2, 7, objective="conciseness")]  # to minimize: not judged
    objectives = [Objective(name="helpfulness"), Objective(name="conciseness", direction="minimize")]
    imported = read_file(_jsonl(tmp_path / "f.jsonl", rows), objectives, format="generic", objective="helpfulness")
    assert [r.messages[0]["content"] for r in imported.records] == ["Q1?", "Q4?", "Q5?", "Q6?"]
    assert [(q.location, q.reason, q.detail) for q in imported.quarantined] == [
        ("line 2", "tied_pair", "fields 'Chosen-Rating' and 'rejected-rating' are both 5: the pair holds no preference "
                                "for the chosen answer"),
        ("line 3", "negative_margin", "fields 'Chosen-Rating' = 2 < 'rejected-rating' = 7: the chosen answer is scored "
                                      "below the rejected one (swap them)")]


def test_columns_a_row_kind_does_not_read_are_metadata_not_dropped(tmp_path):
    """A generic field's column that the row's kind does not read (Argilla's `rating` list
    beside chosen / rejected, a `margin` beside a rated answer) was neither read nor kept."""
    rows = [{"prompt": "Q1?", "chosen": "A", "rejected": "B", "rating": [7.0, 7.0], "status": "tie"},
            {"prompt": "Q2?", "response": "A", "rating": 0.5, "margin": 2, "judge": "gpt"}]
    records = read_file(_jsonl(tmp_path / "f.jsonl", rows), OBJECTIVES, format="generic", objective="helpfulness").records
    assert [r.metadata for r in records] == [{"rating": [7.0, 7.0], "status": "tie"}, {"judge": "gpt", "margin": 2}]
    assert [len(r.pairs) for r in records] == [1, 0] and [len(r.ratings) for r in records] == [0, 1]


def test_a_file_that_names_the_winner_of_two_answers_is_warned_about_chosen(tmp_path):
    """Chatbot Arena / SHP / HelpSteer3 rows hold two answers and a label saying which won:
    mapping the two as chosen / rejected (what the missing-field hint suggested) would be
    wrong on every row the second one won."""
    from paretoflow.data.tables import report_table

    arena = {"question_id": "q1", "winner": "model_b", "conversation_a": [{"role": "user", "content": "Hi"}],
             "conversation_b": [{"role": "user", "content": "Hi"}], "prompt": "Hi"}
    warning = ("; chosen must be each row's preferred answer: where a column names the winner of two answers, "
               "write them out as chosen / rejected by it first")
    imported = read_file(_jsonl(tmp_path / "arena.jsonl", [arena]), OBJECTIVES, format="generic",
                         objective="helpfulness", column_map={"chosen": "answer_a", "rejected": "conversation_b"})
    [entry] = imported.quarantined
    assert entry.detail.startswith("no field 'answer_a'") and entry.detail.endswith(warning)
    shp = {"history": "Why is the sky blue?", "human_ref_A": "Scattering.", "human_ref_B": "Paint.", "labels": 0}
    source = {"format": "generic", "role": "train", "rows_in": 1, "rows_kept": 1, "rows_quarantined": 0,
              "rows_sampled_out": 0, "ignored_attributes": {}, "prompt_only_columns_not_read":
              dict.fromkeys((k for k in shp if k != "history"), 1)}
    report = {"sources": {"shp.jsonl": source}, "rows_in": 1, "rows_kept": 1, "rows_quarantined": 0,
              "rows_sampled_out": 0, "reasons": {}, "tables": {}, "prompts_per_split": {},
              "pairs_per_objective_split": {}}
    assert warning in report_table(report)
    source["prompt_only_columns_not_read"] = {"human_ref_A": 1, "human_ref_B": 1}
    assert "prompts only" in report_table(report) and warning not in report_table(report)
    [plain] = read_file(_jsonl(tmp_path / "plain.jsonl", [{"prompt": "Hi", "chosen": "Yo"}]), OBJECTIVES,
                        format="generic", objective="helpfulness").quarantined
    assert plain.detail.endswith("(paretoflow import --map rejected=COLUMN)")


def test_the_unread_columns_counted_are_bounded(tmp_path):
    from paretoflow.data.importers import MAX_UNREAD_COLUMNS

    rows = [{"prompt": f"Question {i}?", f"key_{i}": 1, "every_row": 2} for i in range(MAX_UNREAD_COLUMNS + 50)]
    imported = read_file(_jsonl(tmp_path / "keys.jsonl", rows), OBJECTIVES)
    assert len(imported.unread_columns) == MAX_UNREAD_COLUMNS
    assert imported.unread_columns["every_row"] == len(rows)  # a column already counted goes on counting


def test_prompts_written_as_hh_transcripts_are_read_as_turns(tmp_path):
    """Dahoas/rm-static and full-hh-rlhf (prompt, response, chosen, rejected) and Nectar give
    the prompt as "\\n\\nHuman: ...\\n\\nAssistant:": it was one user turn holding the speaker
    labels as words and the earlier turns as one block."""
    rm_static = {"prompt": "\n\nHuman: Name a fern.\n\nAssistant: Boston fern.\n\nHuman: Another?\n\nAssistant:",
                 "response": " Maidenhair.", "chosen": " Maidenhair.", "rejected": " A rose."}
    nectar = {"prompt": "Human: How do I boil an egg?\n\nAssistant:", "answers": [{"answer": "8 minutes.", "rank": 1}]}
    text_only = {"prompt": "Human: rights are a topic. Write about them.", "chosen": "Sure.", "rejected": "No."}
    two_humans = {"prompt": "\n\nHuman: Hi\n\nHuman: Hi again\n\nAssistant:", "chosen": "Hello.", "rejected": "Go."}
    pairs = read_file(_jsonl(tmp_path / "rm.jsonl", [rm_static, text_only, two_humans]), OBJECTIVES,
                      objective="helpfulness")
    first, second = pairs.records
    assert first.messages == [{"role": "user", "content": "Name a fern."},
                              {"role": "assistant", "content": "Boston fern."},
                              {"role": "user", "content": "Another?"}]
    assert first.responses == [" Maidenhair.", " A rose."]
    assert second.messages == [{"role": "user", "content": "Human: rights are a topic. Write about them."}]
    [entry] = pairs.quarantined
    assert entry.reason == "malformed_dialogue" and "turn 2 is another Human turn" in entry.detail
    [prompt] = read_file(_jsonl(tmp_path / "nectar.jsonl", [nectar]), OBJECTIVES).records
    assert prompt.messages == [{"role": "user", "content": "How do I boil an egg?"}]
