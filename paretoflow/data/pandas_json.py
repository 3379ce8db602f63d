"""pandas' table-shaped JSON layouts → rows: `DataFrame.to_json(path)` as pandas writes it
by default, not only as JSON Lines.

`df.to_json("prefs.json")` writes orient="columns": one object of columns, each an object
from index label to value (`{"prompt": {"0": "...", "1": "..."}, "chosen": {...}}`). Read
as JSON Lines that is one row with a dict for a prompt, so a file of 10,000 pairs came in
as 1 row quarantined (wrong_type). The other orients fared the same (index, split,
table: one row, missing_field). Each is told by its shape, strictly, and read as the
table it is, one row per index label, in file order:

- columns: every value an object, all with the same keys, and those keys are the decimal
  labels of a default RangeIndex ("0", "1", ...);
- index: every key such a label, every value an object, all with the same keys;
- split: exactly {"columns", "data"} (+ "index"), data a list of lists as long as columns;
- table: exactly {"schema", "data"}, schema holding "fields", data a list of objects; the
  schema's primaryKey columns (the written index) are dropped, as pandas drops them;
- wrapped (not pandas', but the same shape of file): exactly one key whose value is a list
  of objects that are not chat turns (`{"data": [{...}, ...]}`, as exports and API dumps
  write records); read as JSON Lines it was one row, missing_field. A one-key record of
  turns (`{"messages": [{"role", "content"}, ...]}`) stays a record.

Anything else (one record whose fields happen to be objects, a key named twice at a level
that decides the layout, an index of other labels) is not guessed at: the file is read
as JSON Lines, as before. The document is one JSON value, so it is parsed whole under the
byte cap (memory ~ the file, as a JSON array was before it streamed); a row's raw excerpt
is that row as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paretoflow.data.rows import Limits, RawRow, over_row_cap

__all__ = ["pandas_table", "table_rows"]


def _labels(keys: list[str]) -> bool:
    return bool(keys) and all(k.isdecimal() and k.isascii() for k in keys)


def _same_keyed(values: list[Any]) -> list[str] | None:
    """The keys every value shares, if every value is a plain object with the same keys."""
    if not values or not all(type(v) is dict for v in values):
        return None
    keys = list(values[0])
    return keys if all(list(v) == keys for v in values) else None


def _records(value: Any) -> bool:
    """A non-empty list of objects, not all of them chat turns."""
    from paretoflow.data.formats.fields import is_turn

    return (type(value) is list and bool(value) and all(type(v) is dict for v in value)
            and not all(map(is_turn, value)))


def table_rows(document: Any) -> tuple[str, list[dict]] | None:
    """(orient, rows) if `document` is one of pandas' table layouts (module docstring)."""
    if type(document) is not dict or not document:
        return None
    names = set(document)
    if names in ({"columns", "data"}, {"columns", "index", "data"}):
        columns, data = document["columns"], document["data"]
        if (type(columns) is list and all(type(c) is str for c in columns) and type(data) is list
                and all(type(r) is list and len(r) == len(columns) for r in data)):
            return "split", [dict(zip(columns, r, strict=True)) for r in data]
        return None
    if names == {"schema", "data"}:
        schema, data = document["schema"], document["data"]
        if type(schema) is dict and "fields" in schema and type(data) is list and all(type(r) is dict for r in data):
            index = set(schema.get("primaryKey") or [])
            return "table", [{k: v for k, v in r.items() if k not in index} for r in data]
        return None
    values = list(document.values())
    if len(values) == 1 and _records(values[0]):
        return "wrapped", values[0]
    inner = _same_keyed(values)
    if inner is None:
        return None
    if _labels(inner) and not _labels(list(document)):
        return "columns", [{name: document[name][label] for name in document} for label in inner]
    if _labels(list(document)) and not _labels(inner):
        return "index", values
    return None


def pandas_table(path: Path, limits: Limits) -> Iterator[RawRow] | None:
    """Rows of the file if its content is a pandas table layout, else None."""
    from paretoflow.data.readers import _checked, _Objects, _parse_json, _row, stream_chunks

    content = bytearray()  # one buffer, not chunks and their join: the file is held once
    for chunk in stream_chunks(path, limits):
        content += chunk
    try:
        document = _parse_json(content.decode("utf-8-sig"), _Objects())
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    del content
    found = table_rows(document)
    if found is None:
        return None
    _, rows = found
    if len(rows) > limits.max_file_rows:
        raise over_row_cap(path, limits.max_file_rows)

    def read() -> Iterator[RawRow]:
        for index, value in enumerate(rows):
            text = json.dumps(value, ensure_ascii=False, default=str)
            # A key named twice or an undecodable escape inside a row: checked per row.
            yield _checked(_row(f"row {index + 1}", index, text, value, limits), True)

    return read()
