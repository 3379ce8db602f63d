"""The elements of one JSON array, parsed as the file's bytes stream in (issue 22).

A JSON array file used to be read whole, decoded and handed to `json.loads`: 287 MB of
array (100k pairs) peaked at 1,021 MB RSS through import + curate, against 403 MB for
the same pairs as JSON Lines. Here the array is taken apart element by element:

- bytes → text through an incremental strict UTF-8 decoder (what `data.decode("utf-8")`
  was, a multi-byte character split across chunks included), into a text window;
- each element is parsed by the stdlib C scanner (`JSONDecoder.raw_decode` at an index,
  the function `json.loads` runs on the whole document), so values, long integers,
  duplicate-key objects and error messages are its own; between elements this module
  skips JSON whitespace (not `str.isspace`'s) and requires `,` or `]`, then only
  whitespace after the `]`, as the scanner's array rule does;
- an element cut by the window's end is parsed again once more text is in: either it
  parsed up to the very end (a number or literal may go on), or its error is the cut's
  ("Unterminated string", or within _CUT_MARGIN characters of the end, the farthest the
  scanner looks past the character it blames). The window then grows by at least what
  it holds of the element (geometric: a 100 MB element is parsed ~log2(100) times over
  sizes that sum to twice it, not once per chunk);
- consumed text is dropped whenever the window is refilled.

Written here rather than taken from ijson (the streaming JSON library): every other reader
parses with the stdlib scanner, whose values (parse_int's long-integer rows, the
duplicate-key hook, surrogate escapes) and messages the rows and tests depend on; ijson
would bring a second parser that differs on each, and a new dependency.

Memory bound: the window holds the unparsed rest of a chunk, or the element being parsed
(up to twice it plus a chunk, while it grows), plus the chunk of text being appended;
never the file. The 100k-pair array above now peaks at 405 MB, as its JSON Lines twin
does (docs/measurements.md, 2026-12-07).

Errors name a place in the file: characters (the BOM counts as one) with json's own
"line L column C (char N)" for JSON, the byte offset for undecodable bytes. They arise
where they are met, possibly after earlier elements were yielded; the reader turns them
into the file's SourceError.

Used by readers.iter_json_rows; on its own: `array_values(chunks, JSONDecoder().raw_decode)`
over any iterable of bytes. Tests: tests/paretoflow/data/test_json_array.py.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["ArrayError", "array_values", "sequence_values"]

_JSON_SPACE = re.compile(r"[ \t\n\r]*").match  # json.decoder.WHITESPACE: between tokens
# What bytes.lstrip() removed before the whole-file parse, around one UTF-8 BOM: kept so
# the same files are accepted ("\f[...]" was).
_LEADING_SPACE = re.compile(r"[ \t\n\r\x0b\x0c]*").match
# A lone surrogate can enter strictly decoded JSON text only through a \uD800-\uDFFF escape.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# The scanner blames a character at most this far before the farthest one it looked at:
# "-Infinity" is tested 9 characters ahead of its '-', a \u escape 5 after its 'u'.
_CUT_MARGIN = 16

Scan = Callable[[str, int], tuple[Any, int]]


class ArrayError(ValueError):
    """The text is not one JSON array; the message says what and where in the file."""


class _Window:
    """Decoded text of the file, text[0] being its character number `base`; filled from
    the chunks on demand, dropping what was consumed."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = iter(chunks)
        self.decoder = codecs.getincrementaldecoder("utf-8")()  # strict
        self.text = ""
        self.base = 0
        self.breaks = 0  # line breaks before text[0]
        self.line_start = 0  # file index of the first character of the line text[0] is on
        self.bytes_in = 0
        self.eof = False

    def more(self, keep: int, at_least: int) -> int:
        """Drop text[:keep] and add at least `at_least` characters (fewer only at the end
        of the file); text[0] is the old text[keep]."""
        pieces, added = [], 0
        while added < at_least and not self.eof:
            chunk = next(self.chunks, None)
            pending = len(self.decoder.getstate()[0])  # bytes of a character cut by the last chunk
            try:
                piece = self.decoder.decode(chunk or b"", final=chunk is None)
            except UnicodeDecodeError as exc:
                raise ArrayError(f"UnicodeDecodeError: not UTF-8 ({exc.reason}) at byte "
                                 f"{self.bytes_in - pending + exc.start:,} of the file") from None
            if chunk is None:
                self.eof = True
            else:
                self.bytes_in += len(chunk)
            pieces.append(piece)
            added += len(piece)
        breaks = self.text.count("\n", 0, keep)
        if breaks:
            self.breaks += breaks
            self.line_start = self.base + self.text.rfind("\n", 0, keep) + 1
        self.base += keep
        self.text = self.text[keep:] + "".join(pieces)
        return 0

    def grow(self, keep: int) -> int:
        """more() for a value cut by the window's end, from text[keep]: at least as much
        again as the window holds of it (geometric growth); returns its new index, 0."""
        return self.more(keep, max(1, len(self.text) - keep))

    def skip(self, index: int, space: Callable = _JSON_SPACE) -> int:
        """The first index at or after `index` that is not space, reading on while the
        space reaches the window's end (dropping it); len(text) only at the file's end."""
        index = space(self.text, index).end()
        while index == len(self.text) and not self.eof:
            self.more(index, 1)
            index = space(self.text, 0).end()
        return index

    def where(self, index: int) -> str:
        """json's "line L column C (char N)" of text[index], counted in the whole file."""
        breaks = self.text.count("\n", 0, index)
        start = self.base + self.text.rfind("\n", 0, index) + 1 if breaks else self.line_start
        char = self.base + index
        return f"line {self.breaks + breaks + 1} column {char - start + 1} (char {char})"

    def error(self, message: str, index: int) -> ArrayError:
        return ArrayError(f"{message}: {self.where(index)}")


def _cut(window: _Window, exc: json.JSONDecodeError) -> bool:
    """Whether the scanner's error may be the window's end, not the file's content."""
    return not window.eof and (exc.pos >= len(window.text) - _CUT_MARGIN
                               or exc.msg.startswith("Unterminated string"))


def _start(window: _Window) -> int:
    """The index of the document's first character past leading space and one BOM."""
    start = window.skip(0, _LEADING_SPACE)
    if window.text.startswith("\ufeff", start):
        start = window.skip(start + 1, _LEADING_SPACE)
    if window.text.startswith("\ufeff", start):  # json.loads refuses a BOM, so a second one stays refused
        raise window.error("JSONDecodeError: Unexpected UTF-8 BOM (decode using utf-8-sig)", start)
    return start


def _has_escape(text: str, start: int, end: int) -> bool:
    return text.find("\\u", start, end) >= 0 and _SURROGATE_ESCAPE.search(text, start, end) is not None


def sequence_values(chunks: Iterable[bytes], scan: Scan) -> Iterator[tuple[Any, bool]]:
    """(value, escape) as array_values gives them, of JSON values written one after another
    with optional whitespace between (jq's output, pretty-printed objects one after another,
    `{...}{...}`); raises ArrayError where the text stops being such values."""
    window = _Window(chunks)
    pos = _start(window)
    while pos < len(window.text):
        try:
            value, end = scan(window.text, pos)
        except json.JSONDecodeError as exc:
            if not _cut(window, exc):
                raise window.error(f"JSONDecodeError: {exc.msg}", exc.pos) from None
            pos = window.grow(pos)
            continue
        except (ValueError, RecursionError) as exc:
            raise window.error(f"{type(exc).__name__}: {str(exc)[:200]}", pos) from None
        if end >= len(window.text) - _CUT_MARGIN and not window.eof:  # a number may go on past the cut
            pos = window.grow(pos)
            continue
        yield value, _has_escape(window.text, pos, end)
        pos = window.skip(end)


def array_values(chunks: Iterable[bytes], scan: Scan) -> Iterator[tuple[Any, bool]]:
    """(value, whether its text holds a \\uD800-\\uDFFF escape) of each element of the JSON
    array that `chunks` (the file's bytes) hold, parsed with `scan` (a JSONDecoder's
    raw_decode); raises ArrayError where the content stops being one JSON array."""
    window = _Window(chunks)
    start = _start(window)
    if not window.text.startswith("[", start):
        raise window.error("JSONDecodeError: Expecting '['", start)
    pos = window.skip(start + 1)
    if window.text.startswith("]", pos):
        pos += 1
    else:
        pos = yield from _elements(window, pos, scan)
    end = window.skip(pos)
    if end < len(window.text):
        raise window.error("JSONDecodeError: Extra data", end)


def _elements(window: _Window, pos: int, scan: Scan) -> Iterator[tuple[Any, bool]]:
    """The elements from text[pos] (the first one's first character) through the closing
    `]`; returns the index after it."""
    text = window.text
    while True:
        try:
            value, end = scan(text, pos)
        except json.JSONDecodeError as exc:
            if not _cut(window, exc):
                raise window.error(f"JSONDecodeError: {exc.msg}", exc.pos) from None
            pos = window.grow(pos)
            text = window.text
            continue
        except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the scanner goes
            raise window.error(f"{type(exc).__name__}: {str(exc)[:200]}", pos) from None
        if end == len(text) and not window.eof:  # a number or literal may go on past the cut
            pos = window.grow(pos)
            text = window.text
            continue
        escape = _has_escape(text, pos, end)
        after = _JSON_SPACE(text, end).end()
        touching = after == end  # no space after the element: a number may go on past a cut ("1." of "1.5")
        if after == len(text):  # the element ended before whitespace: it is whole; read on
            after = window.skip(after)
            text = window.text
        if after == len(text):
            raise window.error("JSONDecodeError: Expecting ',' delimiter", after)
        delimiter = text[after]
        if delimiter == "]":
            yield value, escape
            return after + 1
        if delimiter != ",":
            if touching and end >= len(text) - _CUT_MARGIN and not window.eof:
                pos = window.grow(pos)
                text = window.text
                continue
            raise window.error("JSONDecodeError: Expecting ',' delimiter", after)
        yield value, escape
        pos = _JSON_SPACE(text, after + 1).end()
        if pos == len(text):
            pos = window.skip(pos)
            text = window.text
