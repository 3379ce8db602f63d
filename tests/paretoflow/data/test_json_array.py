"""JSON array files stream (issue 22, json_array.py): elements parsed as chunks arrive
give the rows a whole-file json.loads gives, at any chunk size; a malformed array is one
SourceError naming the file and the place in it; caps bind while streaming."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from paretoflow.config import Objective
from paretoflow.data import readers
from paretoflow.data.importers import Limits, SourceError, read_file
from paretoflow.data.json_array import array_values
from paretoflow.data.rows import truncate

NOT_AN_ARRAY = "starts with '\\[' but is not a readable JSON array"

TRICKY = ('[{"prompt": "How do I water plant 1?", "chosen": "Sparingly, \\"really\\".", "rejected": "No."},\n'
          ' {"prompt": "é漢😀 \\ud83d\\ude00 \\u00e9", "chosen": ["a", {"b": [1, 2.5e-3, -0, 1E+2]}], "n": null},\n'
          '\t"text" ,\r\n 123456789012345678901234567890 , true,false ,null,[] ,{}, -7, 0.5,\n'
          ' "x\\\\ud800 is an escaped backslash", NaN, -Infinity, [[[1]], {"a": {"b": "c"}}]\n]\n')


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("text", [
    TRICKY,
    "\ufeff" + TRICKY,  # a UTF-8 BOM
    " \n\t\r\f" + TRICKY + " \n\t\r ",  # leading space (what bytes.lstrip() took), trailing JSON space
    "[" + ", ".join(json.dumps({"prompt": f"question {i} " + "é" * i * 7}) for i in range(40)) + "]",
    "[]", " [ \n ] \n", '["only"]', "[1,2,3]",
])
def test_rows_equal_what_json_loads_gives_at_any_chunk_size(tmp_path, monkeypatch, chunk, text):
    monkeypatch.setattr(readers, "STREAM_CHUNK_BYTES", chunk)
    path = _write(tmp_path, "a.json", text.encode())
    rows = readers.read_rows(path)
    expected = json.loads(text.lstrip(" \n\t\r\f").removeprefix("\ufeff"))
    assert [json.dumps(r.value) for r in rows] == [json.dumps(v) for v in expected]  # NaN != NaN: compare text
    assert [r.location for r in rows] == [f"item {i + 1}" for i in range(len(expected))]
    assert [r.order for r in rows] == list(range(len(expected)))
    assert [r.raw for r in rows] == [truncate(json.dumps(v, ensure_ascii=False)) for v in expected]
    assert not any(r.error or r.unparsed for r in rows)


def test_gzip_array_reads_the_same_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "STREAM_CHUNK_BYTES", 5)
    plain = readers.read_rows(_write(tmp_path, "a.json", TRICKY.encode()))
    zipped = readers.read_rows(_write(tmp_path, "a.json.gz", TRICKY.encode()))
    assert [(r.location, r.raw) for r in zipped] == [(r.location, r.raw) for r in plain] and len(plain) == 15


def test_per_element_checks_stay_per_element(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "STREAM_CHUNK_BYTES", 3)  # a \ud800 escape cut across chunks is still seen
    data = (b'[{"prompt": "a", "chosen": "b", "chosen": "c"}, {"prompt": "lone \\ud800"}, {"prompt": "fine"},'
            b' {"prompt": "' + b"x" * 300 + b'"}, {"n": ' + b"9" * 5000 + b"}]")
    rows = readers.read_rows(_write(tmp_path, "a.json", data), Limits(max_field_chars=200))
    assert [r.error and r.error.reason for r in rows] == [
        "ambiguous_key", "undecodable_bytes", None, "field_too_long", "number_too_long"]
    assert rows[2].value == {"prompt": "fine"}


def test_a_huge_element_is_parsed_a_logarithmic_number_of_times():
    element = json.dumps({"prompt": "x" * 1_000_000, "n": list(range(1000))})
    data = f"[1, {element}, 2]".encode()
    calls = []

    def scan(text: str, index: int):
        calls.append(len(text) - index)
        return json.JSONDecoder().raw_decode(text, index)

    chunks = (data[i:i + 1024] for i in range(0, len(data), 1024))  # ~1,000 chunks
    values = [value for value, _ in array_values(chunks, scan)]
    assert values == [1, json.loads(element), 2]
    assert len(calls) < 20  # once per chunk would be ~1,000 parses of up to 1 MB: quadratic


def test_chunks_are_read_as_elements_are_needed_not_all_first():
    pulled = []

    def chunks():
        for i in range(1000):
            pulled.append(i)
            yield b"[" if i == 0 else b'{"prompt": "p"},'
        yield b"1]"

    values = array_values(chunks(), json.JSONDecoder().raw_decode)
    assert next(values) == ({"prompt": "p"}, False) and len(pulled) <= 3
    assert sum(1 for _ in values) == 999 and len(pulled) == 1000


@pytest.mark.parametrize("data, detail", [
    (b'[{"prompt": "a"}, {"prompt": "b"}', "Expecting ',' delimiter: line 1 column 34 (char 33)"),  # missing ]
    (b'[1, 2] [3]', "Extra data: line 1 column 8 (char 7)"),
    (b'[1, 2]\f', "Extra data"),  # only JSON whitespace may follow
    (b'[1, 2,]', "Expecting value: line 1 column 7 (char 6)"),
    (b'[1 2]', "Expecting ',' delimiter"),
    (b'[1, {"a": }]', "Expecting value: line 1 column 11 (char 10)"),
    (b'[\n"ok",\n"raw\nnewline"]', "Invalid control character at: line 3 column 5 (char 12)"),
    (b'[1, 2', "Expecting ',' delimiter"),
    (b'[', "Expecting value"),
    (b'[1.5e]', "Expecting ',' delimiter"),
    (b'[1    x7]', "Expecting ',' delimiter: line 1 column 7 (char 6)"),  # at 4-byte chunks: 'x' where '1' ended
    (b'[{"a": 1}, "\xff"]', "not UTF-8 (invalid start byte) at byte 12 of the file"),
    (b'["\xe6\xbc"]', "not UTF-8"),
    (b'["\xe6\xbc', "not UTF-8 (unexpected end of data) at byte 2"),
    (b'["a", ' + b"[" * 100_000 + b"]" * 100_000 + b"]", "line 1 column 7 (char 6)"),
])
@pytest.mark.parametrize("chunk", [1, 4, 1 << 20])
def test_malformed_array_is_one_error_naming_file_and_place(tmp_path, monkeypatch, data, detail, chunk):
    if chunk == 1 and len(data) > 1000:
        chunk = 64  # 200 KB a byte at a time is slow to tell from JSON Lines (json_kind._body_head)
    monkeypatch.setattr(readers, "STREAM_CHUNK_BYTES", chunk)
    path = _write(tmp_path, "bad.json", data)
    kinds = "(JSONDecodeError|UnicodeDecodeError|RecursionError)"
    with pytest.raises(SourceError, match=f"bad.json: {NOT_AN_ARRAY} \\({kinds}: .*{re.escape(detail)}"):
        readers.read_rows(path)


def test_error_place_is_in_the_file_not_in_the_window(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "STREAM_CHUNK_BYTES", 64)
    text = "\ufeff [\n" + '"element",\n' * 5000 + ' "a" "b"]'
    char = text.index('"b"')
    line = text.count("\n", 0, char) + 1
    with pytest.raises(SourceError, match=f"Expecting ',' delimiter: line {line} column 6 \\(char {char}\\)"):
        readers.read_rows(_write(tmp_path, "bad.json", text.encode()))


def test_error_after_rows_were_yielded_fails_the_file(tmp_path):
    path = _write(tmp_path, "late.json", (json.dumps([{"prompt": f"q {i}", "chosen": "a b", "rejected": "c d"}
                                                      for i in range(50)])[:-1] + ", oops]").encode())
    rows = readers.iter_rows(path)
    assert next(rows).location == "item 1"  # streamed: the error is met later ...
    with pytest.raises(SourceError, match=f"late.json: {NOT_AN_ARRAY}"):
        list(rows)
    with pytest.raises(SourceError, match=f"late.json: {NOT_AN_ARRAY}"):  # ... and nothing of the file is kept
        read_file(path, [Objective(name="helpfulness")], format="generic", objective="helpfulness")


def test_row_cap_binds_while_streaming(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "STREAM_CHUNK_BYTES", 16)
    # Malformed after the cap: a cap checked once the array is whole would say "not readable".
    path = _write(tmp_path, "rows.json", ("[" + "1, " * 30 + "oops").encode())
    with pytest.raises(SourceError, match=r"rows.json: more than 20 rows \(curate.max_file_rows\)"):
        readers.read_rows(path, Limits(max_file_rows=20))
    at_cap = _write(tmp_path, "ok.json", b"[" + b"1, " * 29 + b"1]")
    assert len(readers.read_rows(at_cap, Limits(max_file_rows=30))) == 30


def test_gzip_bomb_of_an_array_stops_at_the_byte_cap(tmp_path):
    bomb = _write(tmp_path, "bomb.json.gz", b"[" + b"0," * (4 << 20) + b"0]")  # 8 MiB inflated
    assert bomb.stat().st_size < 100_000
    with pytest.raises(SourceError, match=r"bomb.json.gz: more than 1,048,576 bytes .*curate.max_file_bytes"):
        readers.read_rows(bomb, Limits(max_file_bytes=1 << 20))


# --------------------------------------------------------------------------- values one after another

PAIRS = [{"prompt": f"How do I water plant {i}?", "chosen": f"Water plant {i} weekly, 2.5 {i}.", "rejected": "No.",
          "n": 12345678901234567890 + i, "x": -1.5e-3} for i in range(4)]


@pytest.mark.parametrize("chunk", [1, 2, 5, 64, 1 << 20])
@pytest.mark.parametrize("name, text", [
    # jq's default output, `json.dump(row, f, indent=2)` per row: each refused ("no line parses as JSON")
    ("jq.jsonl", "".join(json.dumps(p, indent=2) + "\n" for p in PAIRS)),
    ("jq.json", "".join(json.dumps(p, indent=2) + "\n" for p in PAIRS)),
    ("joined.json", "".join(json.dumps(p) for p in PAIRS)),  # {...}{...}
    ("one.json", "\ufeff" + json.dumps(PAIRS[0], indent=4)),  # a single pretty-printed record
    ("numbers.json", "{\n}" + " 1.5  2 " + json.dumps(PAIRS[1])),  # a number cut by a chunk must not split
    # A pretty-printed array under a JSON Lines name: every element but the last was malformed_json.
    ("array.jsonl", "[\n" + ",\n".join(json.dumps(p) for p in PAIRS) + "\n]\n"),
    ("array_bom.ndjson", "\ufeff[\n" + ",\n".join(json.dumps(p, indent=2) for p in PAIRS) + "\n]"),
])
def test_json_values_one_after_another_are_rows(tmp_path, monkeypatch, chunk, name, text):
    monkeypatch.setattr(readers, "STREAM_CHUNK_BYTES", chunk)
    rows = readers.read_rows(_write(tmp_path, name, text.encode()))
    decoder, body, expected = json.JSONDecoder(), text.removeprefix("\ufeff").lstrip(), []
    if body.startswith("["):
        expected = json.loads(body)
    while body and not body.startswith("["):
        value, end = decoder.raw_decode(body)
        expected.append(value)
        body = body[end:].lstrip()
    assert [r.value for r in rows] == expected and len(rows) >= 1
    assert [r.location for r in rows] == [f"item {i + 1}" for i in range(len(expected))]
    assert not any(r.error or r.unparsed for r in rows)


def test_a_broken_first_record_still_quarantines_one_line_not_the_file(tmp_path):
    # Values one after another are tried only when the first one parses: a JSON Lines file
    # whose first line is broken keeps its per-line quarantine.
    text = '{"prompt": "a", "chosen": "b"\n' + "".join(json.dumps(p) + "\n" for p in PAIRS)
    rows = readers.read_rows(_write(tmp_path, "broken.json", text.encode()))
    assert [r.location for r in rows] == [f"line {i}" for i in range(1, 6)]
    assert rows[0].error.reason == "malformed_json" and not any(r.error for r in rows[1:])


def test_values_that_stop_being_json_fail_the_file_naming_the_place(tmp_path):
    text = json.dumps(PAIRS[0], indent=2) + "\n" + json.dumps(PAIRS[1], indent=2)[:-2] + "\n oops"
    line = text.count("\n", 0, text.index("oops")) + 1
    with pytest.raises(SourceError, match=r"jq.json: starts with '\{' but is not JSON values one after another "
                                          rf"\(JSONDecodeError: Expecting ',' delimiter: line {line} column 2 "):
        readers.read_rows(_write(tmp_path, "jq.json", text.encode()))


def test_jsonl_habits_that_are_not_json_lines_say_so(tmp_path):
    objectives = [Objective(name="helpfulness")]
    commas = "".join(json.dumps(p) + ",\n" for p in PAIRS)
    with pytest.raises(SourceError, match=r"no line parses as JSON \(line 1: Extra data at column \d+: a ',' after "
                                          r"the record \(JSON Lines separates records by line breaks alone\)\)"):
        readers.read_rows(_write(tmp_path, "commas.jsonl", commas.encode()))
    joined = json.dumps(PAIRS[0]) + "\n" + json.dumps(PAIRS[1]) + json.dumps(PAIRS[0]) + "\n"  # cat, no final break
    [entry] = read_file(_write(tmp_path, "joined.jsonl", joined.encode()), objectives, format="generic",
                        objective="helpfulness").quarantined
    assert entry.location == "line 2" and entry.detail == (
        f"Extra data at column {len(json.dumps(PAIRS[1])) + 1}: a second JSON value starts there, on the same line "
        "(a file joined after one whose last line had no line break?); each record needs a line of its own")
    twice = "".join(json.dumps(json.dumps(p)) + "\n" for p in PAIRS)
    imported = read_file(_write(tmp_path, "twice.jsonl", twice.encode()), objectives, format="generic",
                         objective="helpfulness")
    assert {q.detail for q in imported.quarantined} == {
        "record is a JSON str, expected an object (the string holds a JSON object: the record was encoded twice; "
        "decode it once more)"}
