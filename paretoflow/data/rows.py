"""What every reader shares: the row type, its errors, the size caps and row checks.

A `RawRow` is one physical record of a file (see readers.py for what that is per
format): parsed, or carrying the `RowError` it will be quarantined with.
"""

from __future__ import annotations

import codecs
import contextlib
import gc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paretoflow.data.normalize import has_lone_surrogate, lone_surrogate

RAW_LIMIT = 500  # characters of the raw record kept in the quarantine table


class SourceError(ValueError):
    """A whole file cannot be read; the message names the file and why."""


class RowError(Exception):
    """A row that cannot become a record: quarantined with `reason` and `detail`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# Said where text is not UTF-8: the usual cause is a file written in another encoding.
OTHER_ENCODING = " (a file in another encoding? set its source's encoding, e.g. cp1252)"


def not_utf8(what: str, text: str) -> RowError:
    """undecodable_bytes for `what` (e.g. "field 'prompt'"), whose text holds a lone
    surrogate: U+DC80-U+DCFF is an undecodable byte read with surrogateescape; any other
    came from a JSON escape such as "\\ud800" with no pair, which no encoding setting fixes."""
    code = lone_surrogate(text)
    if 0xDC80 <= code <= 0xDCFF:
        return RowError("undecodable_bytes", f"{what} holds bytes that are not UTF-8{OTHER_ENCODING}")
    return RowError("undecodable_bytes", f"{what} holds a lone surrogate U+{code:04X} (a \\u{code:04x} escape "
                                         "without its pair): not a character, so it cannot be written as UTF-8")


@dataclass(frozen=True)
class Limits:
    """Size caps of one import (see readers.py's docstring), and the text encoding its
    files are read in (a source's `encoding`; not UTF-8, the content is transcoded)."""

    max_file_bytes: int = 1 << 30
    max_field_chars: int = 100_000
    max_file_rows: int = 2_000_000
    encoding: str = "utf-8"


# What a file of another kind is, and how to make it one paretoflow reads.
_OTHER_KINDS = {
    (".zip", ".tar", ".tgz", ".tar.gz", ".7z", ".rar"): "an archive: unpack it and import the folder",
    (".xlsx", ".xlsm", ".xls", ".ods"): "a spreadsheet workbook: save its sheet as CSV",
    (".arrow", ".feather", ".ipc"): "an Arrow IPC file (e.g. datasets' save_to_disk): write it as Parquet "
                                    "(Dataset.to_parquet, or pyarrow.parquet.write_table)",
    (".pkl", ".pickle"): "a pickle, never loaded here (loading one runs its code): write it as Parquet or JSON Lines",
    (".txt", ".text", ".dat"): "plain text: if it holds CSV, TSV or JSON Lines, name it .csv, .tsv or .jsonl",
}


def other_kind(path: Any) -> str | None:
    """What a file no reader takes is and what to do with it, for the usual kinds."""
    name = str(path).lower()
    return next((kind for suffixes, kind in _OTHER_KINDS.items() if name.endswith(suffixes)), None)


def unsupported_file(path: Any) -> SourceError:
    """The error for a file of a type no reader takes, saying what to do with the usual ones."""
    kind = other_kind(path)
    return SourceError(f"{shown(str(path))}: unsupported file type{f' ({kind})' if kind else ''}; paretoflow reads "
                       "JSON Lines (.jsonl, .ndjson), JSON (.json), Parquet, CSV and TSV files, the text ones also "
                       "compressed (.gz, .bz2, .xz, .zst)")


def over_row_cap(path: Any, cap: int) -> SourceError:
    return SourceError(f"{shown(str(path))}: more than {cap:,} rows (curate.max_file_rows); "
                       "raise the cap or split the file")


@dataclass(slots=True)  # slots: millions of rows (a repeated line is one of these, ~100 bytes)
class RawRow:
    location: str
    order: int
    raw: str
    value: Any = None
    error: RowError | None = None
    unparsed: bool = False  # the record could not be decoded or parsed at all (vs. parsed, then refused)
    repeat_of: int = -1  # the order of the earlier line whose bytes this one repeats (-1: none)


class LongNumber(str):
    """A JSON integer literal longer than Python converts to int
    (sys.get_int_max_str_digits): kept as text so the row is quarantined, not the file."""


def parse_int(text: str) -> int | LongNumber:
    try:
        return int(text)
    except ValueError:
        return LongNumber(text)


class DuplicateKeys(dict):
    """A JSON object that named one key twice (json.loads would silently keep the last
    value); `duplicate` is the first such key. Its row is quarantined as ambiguous_key."""

    duplicate: str = ""


def object_pairs(pairs: list[tuple[str, Any]]) -> dict:
    """json.loads object_pairs_hook: a plain dict, or a DuplicateKeys marking the row."""
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = DuplicateKeys(obj)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            marked.duplicate = key
            break
        seen.add(key)
    return marked


def shown(text: str) -> str:
    """Text safe to print or write as UTF-8: undecodable bytes / lone surrogates escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def truncate(text: str) -> str:
    if not text.isascii():  # shown() is the identity on ASCII: no copy of a long line to cut it
        text = shown(text)
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + "…"


def check_fields(value: Any, max_chars: int) -> None:
    """Raise RowError for the first string over `max_chars` characters, or integer literal
    too long to convert, anywhere in a parsed row (iterative: no recursion limit)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, LongNumber):
            raise RowError("number_too_long", f"field {where or 'record'!r} is an integer of {len(item):,} digits")
        if isinstance(item, str):
            if len(item) > max_chars:
                raise RowError("field_too_long", f"field {where or 'record'!r} has {len(item):,} characters "
                                                 f"> curate.max_field_chars {max_chars:,}")
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and len(key) > max_chars:
                    raise RowError("field_too_long", f"a key of {len(key):,} characters in {where or 'record'!r}")
                stack.append((name[:80], child))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))


def check_keys_and_text(value: Any) -> None:
    """Raise RowError for a key named twice (ambiguous_key) or a key or string that is
    not UTF-8 (undecodable_bytes: it could not be written later), at any depth."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                raise not_utf8(f"field {shown(where) or 'record'!r}", item)
        elif isinstance(item, dict):
            if isinstance(item, DuplicateKeys):
                raise RowError("ambiguous_key", f"key {shown(item.duplicate)!r} appears twice in "
                                                f"{shown(where) or 'the record'}: which value is meant cannot be told")
            for key, child in item.items():
                if isinstance(key, str) and has_lone_surrogate(key):
                    raise RowError("undecodable_bytes", f"key {shown(key)!r} in {shown(where) or 'the record'} is not UTF-8")
                stack.append(((f"{where}.{key}" if where else str(key))[:80], child))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of acyclic rows are built: each
    full collection walks every live object, which doubled the time of importing 300k
    rows (9.8 s vs 4.1 s, measured). Reference counting still frees everything; cycles
    made meanwhile are collected once it is back on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# Byte-order marks of the wide encodings, longest first (UTF-32 LE starts with UTF-16 LE's).
_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"),
              (b"\xff\xfe", "UTF-16LE"), (b"\xfe\xff", "UTF-16BE"))


def _wide_text(head: bytes) -> tuple[str, str] | None:
    """(encoding as iconv names it, always ending LE or BE; the evidence) of the wide
    encoding `head` (a file's first bytes) is in, by its byte-order mark or, for
    ASCII-range text without one, by the NUL byte beside every character; else None. Such a file was refused as "binary data
    (NUL bytes)", which sent its owner the wrong way."""
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            return name, f"byte-order mark {bom.hex(' ').upper()}"
    sample = head[:64] if len(head) >= 8 else b""
    odd, even = sample[1::2], sample[0::2]
    if sample and not odd.strip(b"\x00") and b"\x00" not in even:
        return "UTF-16LE", "a NUL byte after every character"
    if sample and not even.strip(b"\x00") and b"\x00" not in odd:
        return "UTF-16BE", "a NUL byte before every character"
    return None


def refuse_wide_text(path: Path, head: bytes) -> None:
    wide = _wide_text(head)
    if wide is not None:
        encoding, evidence = wide
        raise SourceError(f"{shown(str(path))}: {encoding[:-2]} {encoding[-2:]} text ({evidence}); "
                          f"paretoflow reads UTF-8: re-encode the file, e.g. iconv -f {encoding} -t UTF-8, "
                          f"or set the source's encoding: {encoding.lower()}")


def transcoded(path: Path, chunks: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    """`chunks` of text in `encoding`, as UTF-8 chunks (decoded incrementally: a character
    split across chunks is whole). A byte the encoding does not define (cp1252 has five)
    passes through as itself, so its row is undecodable_bytes as in a UTF-8 file."""
    decoder = codecs.getincrementaldecoder(encoding)("surrogateescape")
    try:
        for chunk in chunks:
            if text := decoder.decode(chunk):
                yield text.encode("utf-8", "surrogateescape")
        if text := decoder.decode(b"", final=True):  # the end: a character cut there is an error
            yield text.encode("utf-8", "surrogateescape")
    except UnicodeError as exc:
        raise SourceError(f"{shown(str(path))}: not readable as {encoding} ({exc})") from None
