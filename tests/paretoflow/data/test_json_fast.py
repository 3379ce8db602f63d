"""The orjson fast path (data/json_fast.py) gives exactly the exact path's row, or steps aside."""

from __future__ import annotations

import json

import pytest

from paretoflow.data.json_fast import fast_value
from paretoflow.data import readers
from paretoflow.data.readers import Limits, _json_line_row, _Objects
from paretoflow.data.rows import RAW_LIMIT, shown, truncate

LONG = "w" * 700
TRICKY = [
    b'{"prompt": "hi", "chosen": "a", "rejected": "b"}',
    b'{"prompt":"hi","chosen":"a","rejected":"b"}',
    b'  {"prompt" : "hi" ,\t"chosen"\t:\t"a"}  \r',
    b'{"a": "x", "a": "y"}',                      # duplicate key
    b'{"a": "x", "a" : "y"}',                     # duplicate key, space before the colon
    b'{"a": "x", "a"\t:"y"}',
    b'{"a": "x", "b": {"c": 1, "c": 2}}',         # nested duplicate
    b'{"a": "he said \\": no", "b": "y"}',        # an escaped quote then a colon inside a text
    b'{"\\u0061": "x", "a": "y"}',                # a key named twice, once escaped
    b'{"a": "caf\\u00e9", "b": "\\u200b"}',
    b'{"a": "\\ud83d\\ude00"}',                    # a surrogate pair
    b'{"a": "\\ud800"}',                           # lone high surrogate
    b'{"a": "\\udc80x"}',                          # lone low surrogate
    b'{"\\ud800": "x"}',
    b'{"a": "\\\\ud800"}',                         # an escaped backslash, then text "ud800"
    b'{"a": "\\u0000"}',
    b'{"a": "x\x00"}',                             # raw NUL
    b'{"a": "x\x01"}', b'{"a": "x\tb"}',          # raw control characters
    b'{"a": "\xed\xa0\x80"}', b'{"a": "\xc0\xaf"}', b'{"a": "\xff"}',  # not UTF-8
    b'\xef\xbb\xbf{"a": "x"}',                     # BOM (line 1 strips it, others do not)
    b'{"a": 1}', b'{"a": -0}', b'{"a": 1.5}', b'{"a": 1e400}', b'{"a": NaN}', b'{"a": Infinity}',
    b'{"a": 123456789012345678901234567890}', b'{"a": ' + b"9" * 5000 + b"}",
    b'{"a": true, "b": false, "c": null}', b'{"a": ["x"]}', b'{"a": {"b": "c"}}', b'{}',
    b'["a", "b"]', b'"text"', b"42", b"null",
    b'{"a": "x",}', b'{"a": "x"} x', b'{"a": "x"}{"b": "y"}', b"{'a': 'x'}", b'{"a": "x"',
    b'{"a": "x"}\x0b', b'\x0c{"a": "x"}', b'{"a": "x"}\xc2\xa0',
    b'{"a": "\\x41"}', b'{"a": "\\/ \\b \\f \\n \\r \\t \\" \\\\"}',
    b'{"a": "x\xe2\x80\xa8y", "b": "\xef\xbf\xbe"}',
    json.dumps({"prompt": LONG, "chosen": "\u00e9" * 600}).encode(),
    json.dumps({"prompt": LONG}, ensure_ascii=False).encode(),
    json.dumps({"prompt": "x" * 200_001}).encode(),  # over max_field_chars
    ("[" * 5000 + "]" * 5000).encode(), ('{"a": ' * 3000 + '"x"' + "}" * 3000).encode(),
]


def _fields(row):
    value = row.value
    return (row.location, row.order, row.raw, type(value), repr(value), getattr(value, "duplicate", None),
            None if row.error is None else (row.error.reason, row.error.detail), row.unparsed, row.repeat_of)


@pytest.mark.parametrize("number", [1, 2])
@pytest.mark.parametrize("line", TRICKY, ids=lambda b: repr(b[:40]))
def test_fast_path_row_equals_exact_path_row(line, number, monkeypatch):
    limits = Limits(max_field_chars=100_000)
    fast = _json_line_row(number, line, limits, _Objects())
    monkeypatch.setattr(readers, "fast_value", lambda line: None)   # the exact path alone
    exact = _json_line_row(number, line, limits, _Objects())
    assert _fields(fast) == _fields(exact)


@pytest.mark.parametrize("line", [
    b'{"a": "x", "a": "y"}', b'{"a": "x", "a" : "y"}', b'{"\\u0061": "x", "a": "y"}',
    b'{"a": "\\ud800"}', b'{"a": "\\ud83d\\ude00"}', b'{"a": 1}', b'{"a": {"b": "c"}}', b'["a"]',
    b'{"a": "he said \\": no"}', b'\xef\xbb\xbf{"a": "x"}', b'{"a": NaN}',
])
def test_fast_path_steps_aside(line):
    assert fast_value(line) is None


@pytest.mark.parametrize("line", [
    b'{"prompt": "hi", "chosen": "a", "rejected": "b"}', b' {"a" : "x" ,\t"b"\t:\t"y"} ',
    b'{"a": "caf\\u00e9 \\" quoted", "b": true, "c": null}', b'{}',
])
def test_fast_path_takes_clean_lines(line):
    assert fast_value(line) == json.loads(line)


@pytest.mark.parametrize("text", ["", "a" * RAW_LIMIT, "a" * (RAW_LIMIT + 1), "a\udc80" * 400, "é" * 600])
def test_truncate_shortcut_equals_the_escaped_cut(text):
    escaped = shown(text)
    assert truncate(text) == (escaped if len(escaped) <= RAW_LIMIT else escaped[:RAW_LIMIT] + "…")
