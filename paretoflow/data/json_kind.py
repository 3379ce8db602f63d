"""Which kind of JSON text a file holds, told from its first bytes (readers.iter_json_rows
reads each kind): JSON Lines, one array, one object (one of pandas' table layouts) or JSON
values one after another (jq's output, `json.dump(row, f, indent=2)` per row).

- A `.jsonl` / `.ndjson` file is JSON Lines unless its first line is a lone `[` or `{`
  (a pretty-printed document under a JSON Lines name: read as lines, all but its last
  element were malformed_json, or the file was refused).
- Another `.json` file is JSON Lines when its first line is a whole JSON value and more
  lines follow (a first line that is a list does not make an array); else an array, or an
  object: a pandas table layout, else values one after another when its first line is not
  a whole value (a single pretty-printed record, `{...}{...}`: each was refused, "no line
  parses as JSON"), else JSON Lines after all.

Values one after another are taken only when the first of them parses; else the file is
read as JSON Lines, which quarantines a broken line and goes on.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator

BOM = b"\xef\xbb\xbf"


class Kind(enum.Enum):
    LINES = "lines"
    ARRAY = "array"
    TABLE_OR_LINES = "a pandas table layout, else JSON Lines"
    TABLE_OR_VALUES = "a pandas table layout, else values one after another (else JSON Lines)"
    VALUES = "values one after another (else JSON Lines)"


def document_kind(json_lines_name: bool, chunks: Iterator[bytes]) -> Kind:
    """The kind of the text `chunks` (the file's bytes) start; reads only its first bytes
    (a first line whole, for a `.json` file)."""
    if json_lines_name:
        bracket = _lone_bracket(chunks)
        return Kind.LINES if bracket is None else Kind.ARRAY if bracket == b"[" else Kind.VALUES
    body = _body_head(chunks)
    if body[:1] not in (b"[", b"{") or _is_json_lines(body):
        return Kind.LINES
    if body.startswith(b"["):
        return Kind.ARRAY
    return Kind.TABLE_OR_LINES if _first_line_parses(body) else Kind.TABLE_OR_VALUES


def _first_line_parses(body: bytes) -> bool:
    try:
        json.loads(body.partition(b"\n")[0].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return True


def _is_json_lines(body: bytes) -> bool:
    """JSON Lines by content: the first line is a whole JSON value and more lines follow."""
    return bool(body.partition(b"\n")[2].strip()) and _first_line_parses(body)


def _body_head(chunks: Iterator[bytes]) -> bytes:
    """The start of the file's body (leading whitespace and BOM stripped), read until its
    first line is whole and a non-blank byte follows it (or the file ends): enough for
    _is_json_lines without holding a big file. Chunks are joined only when one brings a
    line break, so a long first line is not copied once per chunk."""
    pieces: list[bytes] = []
    start = b""  # the first bytes while they may be a BOM cut by the chunk's end
    for chunk in chunks:
        if not pieces:
            chunk = (start + chunk).lstrip()
            if len(chunk) < 3 and BOM.startswith(chunk):
                start = chunk
                continue
            chunk = chunk[3:].lstrip() if chunk.startswith(BOM) else chunk
            if not chunk:
                start = b""
                continue
        pieces.append(chunk)
        if not pieces[0].startswith((b"[", b"{")):
            return pieces[0]
        if b"\n" not in chunk:
            continue
        body = b"".join(pieces)
        if body[body.find(b"\n"):].strip():
            return body
        pieces = [body]
    return b"".join(pieces)


def _lone_bracket(chunks: Iterator[bytes]) -> bytes | None:
    """`[` or `{` when the file's first line (past space and a BOM) is that bracket alone.
    Holds a chunk and a few bytes, never the space read past (a 2 GiB bomb of line breaks
    was held whole until the byte cap: 640 MB peak at a 256 MB cap)."""
    head, bom_checked = b"", False
    for chunk in chunks:
        head = (head + chunk).lstrip()
        if not bom_checked:
            if len(head) < 3 and BOM.startswith(head):
                continue  # a BOM not yet whole (or nothing but space yet)
            head, bom_checked = head.removeprefix(BOM).lstrip(), True
        if not head:
            continue
        if head[:1] not in (b"[", b"{"):
            return None
        rest = head[1:].lstrip(b" \t\r")
        if rest:
            return head[:1] if rest.startswith(b"\n") else None
        head = head[:1]  # the bracket, then only spaces so far
    return None
