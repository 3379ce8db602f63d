"""Read raw preference/rating/prompt files into `Record`s on the canonical schema.

A *row* (the unit of the rows_in == rows_kept + rows_quarantined identity) is one input
record: a non-blank line of a JSONL file, an element of a JSON array file, or a row of a
Parquet/CSV/TSV table (readers.py reads files under the size caps). Rows stream from the
reader and each becomes its record or quarantine entry as it arrives; a repeated line's
entry is two integers in the file's `QuarantineLog`. One row becomes one
`Record` (a prompt with its responses, ratings and pairs) or one quarantine entry, never
both and never neither: whatever exception one row raises, that row is quarantined with
its reason and the import goes on. HelpSteer2 and generic rating files also get pairs
derived *across* rows of the same prompt; those are built after curation
(`derive_pairs`) and are not rows.

Formats (`SourceConfig.format`, or "auto": detected from the first readable record) are a
registry, one module each (paretoflow/data/formats/: builtin, hh_rlhf, pku_saferlhf,
helpsteer2, ultrafeedback, kto, openai_dpo, generic); each module's docstring says what it reads.

Objectives. An objective named by the user (SourceConfig.objective, the `--objective`
flag, a generic file's objective column, the HH folder-name default) must be declared in
params, else the row is quarantined as unknown_objective. Dataset attributes (PKU's
better/safer ids, HelpSteer2 and UltraFeedback aspects) reach objectives through
`column_map` read as {objective: attribute}, "-attribute" meaning inverted (higher
attribute = worse); defaults below. An attribute whose objective is not declared is
ignored and counted in the report (datasets carry more axes than an experiment needs);
an attribute named exactly like a declared objective is kept under that name; a row
left with no pair and no rating at all is quarantined as unknown_objective.

Paths. A source path relative to the project root must resolve inside it (symlinks
followed); a path outside (absolute, `..`, or a symlink leaving the project) is read only
under a data root named in the environment variable PARETOFLOW_DATA_ROOTS
(os.pathsep-separated folders). The data roots are set by whoever runs the worker, not
by params, so a flow parameter cannot widen what a run may read.

Preference pairs without scores (HH, PKU, generic without margin) get margin 1.0.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paretoflow.data.normalize import has_lone_surrogate
from paretoflow.data.readers import (
    FILE_SUFFIXES,
    Limits,
    RawRow,
    RowError,
    SourceError,
    expand_source,
    iter_rows,
    read_rows,
    shown,
)
from paretoflow.data.formats import derives_pairs, detect_format, format_module
from paretoflow.data.formats.fields import FormatContext, Pair, Rating, RowParser, json_safe, minimized  # noqa: F401
from paretoflow.data.rows import no_gc

if TYPE_CHECKING:
    from paretoflow.sections import Objective
    from paretoflow.stages.curate import SourceConfig

__all__ = [
    "FILE_SUFFIXES", "ImportedFile", "Limits", "Pair", "Quarantined", "Rating", "Record", "RowError",
    "SourceError", "detect_format", "expand_source", "read_file", "read_rows", "read_source",
]

DATA_ROOTS_ENV = "PARETOFLOW_DATA_ROOTS"

# Quarantine reason of a row whose failure no parser anticipated (the exception is named).
UNEXPECTED = "unexpected_error"
MAX_UNREAD_COLUMNS = 100  # distinct columns of prompt-only rows counted as not read, per file


@dataclass(slots=True)  # one per row: a __dict__ each was ~100 bytes more
class Record:
    """One input row on the canonical schema (texts not yet normalised)."""

    source: str
    location: str
    order: int  # position in the file: sorts quarantine rows and picks first occurrences
    raw: str
    messages: list[dict[str, str]]
    tags: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    ratings: list[Rating] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)  # generic: the row's other columns


@dataclass(slots=True)  # one per quarantined row, millions for a file of repeats
class Quarantined:
    source: str
    location: str
    order: int
    reason: str
    detail: str
    raw: str

    def row(self) -> dict[str, str]:
        return {
            "source": self.source, "location": self.location, "reason": self.reason,
            "detail": self.detail, "raw": self.raw,
        }


class QuarantineLog:
    """The quarantined rows of one file, in file order, as a sequence of `Quarantined`.

    A line that repeats an earlier line's bytes (readers.py's exact-first pass) is kept
    as two 8-byte integers (its line, the first occurrence's line) in arrays, and turned
    into a `Quarantined` only when iterated: 3M repeated lines were ~500 MB as objects
    (~170 bytes each with their location strings), 48 MB as integers. `repeat_columns`
    gives them to curate as columns without making the objects at all."""

    def __init__(self, source: str, entries: Sequence[Quarantined] = ()):
        self.source = source
        self.entries: list[Quarantined] = list(entries)
        self.repeat_orders = array("q")
        self.repeat_of = array("q")
        self.first_raw: dict[int, str] = {}  # first occurrence's line → its raw text

    def append(self, entry: Quarantined) -> None:
        self.entries.append(entry)

    def add_repeat(self, order: int, first_order: int, raw: str) -> None:
        self.repeat_orders.append(order)
        self.repeat_of.append(first_order)
        self.first_raw.setdefault(first_order, raw)

    def _repeat(self, order: int, first_order: int) -> Quarantined:
        return Quarantined(self.source, f"line {order}", order, "duplicate", f"same bytes as line {first_order}",
                           self.first_raw[first_order])

    def __len__(self) -> int:
        return len(self.entries) + len(self.repeat_orders)

    def __iter__(self) -> Iterator[Quarantined]:
        repeats = (self._repeat(o, f) for o, f in zip(self.repeat_orders, self.repeat_of, strict=True))
        return heapq.merge(self.entries, repeats, key=lambda q: q.order)

    def __getitem__(self, key: int | slice) -> Quarantined | list[Quarantined]:
        return list(self)[key]

    def reasons(self) -> Counter:
        counts = Counter(q.reason for q in self.entries)
        if self.repeat_orders:
            counts["duplicate"] += len(self.repeat_orders)
        return counts


@dataclass
class ImportedFile:
    """Everything read from one file: records, quarantined rows, counters."""

    path: str
    format: str
    role: str
    rows_in: int
    records: list[Record]
    quarantined: QuarantineLog | list[Quarantined]
    derive_pairs: bool = False  # pairs from ratings across rows of one prompt (HelpSteer2, generic)
    minimized: frozenset[str] = frozenset()  # objectives whose lower rating is better: derived pairs flip
    ignored_attributes: Counter = field(default_factory=Counter)
    not_rated: int = 0  # UltraFeedback "N/A" ratings skipped
    # Columns of prompt-only rows that no field was read from (answers under other names?).
    unread_columns: Counter = field(default_factory=Counter)
    # Prompt-grouped sample of the source this file belongs to (SourceConfig.max_prompts).
    source: str = ""
    max_prompts: int | None = None
    sample_seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.quarantined, QuarantineLog):
            self.quarantined = QuarantineLog(self.path, self.quarantined)


def _require_object(value: Any) -> dict:
    if not isinstance(value, dict):
        twice = isinstance(value, str) and value.lstrip().startswith("{") and _json_object(value)
        raise RowError("wrong_type", f"record is a JSON {type(value).__name__}, expected an object" + (
            " (the string holds a JSON object: the record was encoded twice; decode it once more)" if twice else ""))
    return value


def _json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


# --------------------------------------------------------------------------- entry point


def _resolve_format(format: str, rows: Iterator[RawRow], column_map: dict[str, str]) -> tuple[str, Iterator[RawRow]]:
    """The format, detected from the first readable record when "auto", and the rows
    (those read to find it held back and put first again). A prompt-only record with a
    column_map is generic: the map names the columns of the other fields (builtin reads
    none, and the map was ignored: the answers it named were dropped)."""
    if format != "auto":
        return format, rows
    held: list[RawRow] = []
    for row in rows:
        held.append(row)
        if isinstance(row.value, dict):
            detected = detect_format(row.value)
            return ("generic" if detected == "builtin" and column_map else detected), itertools.chain(held, rows)
    return "builtin" if not column_map else "generic", iter(held)


def _row_parser(format: str, path: Path, name: str, objectives: Sequence[Objective], objective: str | None,
                column_map: dict[str, str]) -> tuple[RowParser, list[str]]:
    """The per-row parser of a registered format and the attributes it ignores (counted per
    row); configuration errors raise here, before any row."""
    try:
        module = format_module(format)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return module.parser(FormatContext(path, name, objectives, objective, column_map))


def _count_present(format: str, raw_row: RawRow, attributes: list[str], counts: Counter) -> None:
    """Count the dataset attributes one row carries (the format's `count_present`)."""
    count = getattr(format_module(format), "count_present", None)
    if count is not None and isinstance(raw_row.value, dict):
        count(raw_row.value, attributes, counts)


def _import_row(raw_row: RawRow, parse: RowParser, result: ImportedFile,
                on_record: Callable[[Record], None] | None = None) -> None:
    """One row → one record or one quarantine entry, whatever the row raises."""
    if raw_row.repeat_of >= 0:
        result.quarantined.add_repeat(raw_row.order, raw_row.repeat_of, raw_row.raw)
        return
    if raw_row.error is not None:  # not raised: a shared error (repeated lines) would grow its traceback
        result.quarantined.append(Quarantined(result.path, raw_row.location, raw_row.order, raw_row.error.reason,
                                              raw_row.error.detail, raw_row.raw))
        return
    try:
        parsed = parse(_require_object(raw_row.value))
    except RowError as error:
        reason, detail = error.reason, error.detail
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - one row's failure must not abort the file
        reason, detail = UNEXPECTED, f"{type(exc).__name__}: {str(exc)[:300]}"
    else:
        result.not_rated += parsed.not_rated
        if parsed.unread and not parsed.responses:
            unread = result.unread_columns  # bounded: rows of ever new keys must not grow the report
            unread.update(k for k in parsed.unread if k in unread or len(unread) < MAX_UNREAD_COLUMNS)
        record = Record(result.path, raw_row.location, raw_row.order, raw_row.raw, parsed.messages, parsed.tags,
                        parsed.responses, parsed.ratings, parsed.pairs, parsed.metadata)
        if on_record is None:
            result.records.append(record)
        else:
            on_record(record)
        return
    result.quarantined.append(Quarantined(result.path, raw_row.location, raw_row.order, reason, detail, raw_row.raw))


def read_file(
    path: Path,
    objectives: Sequence[Objective],
    format: str = "auto",
    objective: str | None = None,
    column_map: dict[str, str] | None = None,
    role: str = "train",
    name: str | None = None,
    limits: Limits | None = None,
    on_record: Callable[[Record], None] | None = None,
) -> ImportedFile:
    """Read one file into records + quarantined rows. `name` is how the file is named in
    the output tables (default: the path as given). A file that cannot be read at all, or
    a configuration that cannot apply to it, raises naming the file. `on_record`: called
    with each record as it is read, which then stays out of `records` (curate streams
    them: a file's records are never all held)."""
    with no_gc():
        return _read_file(Path(path), objectives, format, objective, column_map, role, name or str(path), limits,
                          on_record)


def _read_file(path: Path, objectives: Sequence[Objective], format: str, objective: str | None,
               column_map: dict[str, str] | None, role: str, name: str, limits: Limits | None,
               on_record: Callable[[Record], None] | None = None) -> ImportedFile:
    # Rows stream from the reader and each becomes a record or a quarantine entry at once:
    # the file's parsed rows are never all held (they were, beside the file's bytes).
    column_map = dict(column_map or {})
    detected, rows = _resolve_format(format, iter_rows(path, limits), column_map)
    result = ImportedFile(path=name, format=detected, role=role, rows_in=0, records=[], quarantined=[],
                          derive_pairs=derives_pairs(detected), minimized=minimized(objectives))
    try:
        parse, ignored = _row_parser(detected, path, name, objectives, objective, column_map)
    except ValueError as exc:
        if format != "auto":
            raise
        raise ValueError(f"{exc} (format {detected!r} was detected from the file's first record)") from None
    for raw_row in rows:
        result.rows_in += 1
        if ignored:
            _count_present(detected, raw_row, ignored, result.ignored_attributes)
        _import_row(raw_row, parse, result, on_record)
    return result


# --------------------------------------------------------------------------- sources


def data_roots_from_env() -> list[Path]:
    """Folders outside the project that sources may read (PARETOFLOW_DATA_ROOTS)."""
    value = os.environ.get(DATA_ROOTS_ENV, "")
    return [Path(p) for p in value.split(os.pathsep) if p.strip()]


def resolve_input(root: Path, path: str | Path, data_roots: Sequence[Path] = ()) -> Path:
    """A source path, resolved (symlinks followed): inside the project root, or inside one
    of the data roots; anything else is an error naming the path and both places."""
    project = Path(root).resolve()
    full = (project / path).resolve()  # an absolute `path` replaces the root
    if project in full.parents:
        return full
    allowed = [Path(r).resolve() for r in data_roots]
    if any(full == r or r in full.parents for r in allowed):
        return full
    where = f"the data roots {[str(r) for r in allowed]}" if allowed else f"no data root (set {DATA_ROOTS_ENV})"
    raise SourceError(f"source {str(path)!r} resolves to {full}: outside the project root {project} and {where}")


@dataclass
class SourceFiles:
    """What one configured source yielded: imported files and the files skipped by suffix."""

    files: list[ImportedFile]
    skipped: list[str]


def _with_tags(record: Record, tags: Sequence[str]) -> Record:
    record.tags = sorted({*record.tags, *tags})
    return record


def read_source(source: SourceConfig, objectives: Sequence[Objective], root: Path,
                limits: Limits | None = None, data_roots: Sequence[Path] = (),
                on_record: Callable[[Record], None] | None = None) -> SourceFiles:
    """Every file of a configured source (a file or a folder), named relative to root.
    `on_record`: as in read_file (each record gets the source's tags first)."""
    tagged = None if on_record is None else (lambda record: on_record(_with_tags(record, source.tags)))
    limits = replace(limits or Limits(), encoding=source.encoding)  # the source's text encoding
    base = resolve_input(root, source.path, data_roots)
    files, skipped = expand_source(base)
    out = []
    for file in files:
        resolve_input(root, file, data_roots)  # a symlink inside a folder may point elsewhere
        name = str(Path(source.path) / file.relative_to(base)) if base.is_dir() else source.path
        if has_lone_surrogate(name):
            imported = _undecodable_name_file(file, shown(name), source.role, limits)
        else:
            imported = read_file(file, objectives, source.format, source.objective, source.column_map,
                                 source.role, name, limits, tagged)
        imported.source, imported.max_prompts, imported.sample_seed = source.path, source.max_prompts, source.sample_seed
        for record in imported.records:
            _with_tags(record, source.tags)
        out.append(imported)
    return SourceFiles(out, [shown(str(Path(source.path) / p.relative_to(base))) for p in skipped])


def _undecodable_name_file(path: Path, name: str, role: str, limits: Limits | None) -> ImportedFile:
    """A file whose name is not UTF-8 (bytes read with surrogateescape): its rows are
    counted and quarantined as undecodable_name under the escaped name, since the name
    could not be written to the tables or the report (and would abort the whole import)."""
    detail = f"the file name {name!r} is not UTF-8; rename the file to read its rows"
    quarantined = QuarantineLog(name)
    rows_in = 0
    try:
        for r in iter_rows(path, limits):
            quarantined.append(Quarantined(name, r.location, r.order, "undecodable_name", detail, r.raw))
            rows_in += 1
    except SourceError as exc:
        raise SourceError(shown(str(exc))) from None
    return ImportedFile(path=name, format="unread", role=role, rows_in=rows_in, records=[], quarantined=quarantined)


def iter_records(files: Sequence[ImportedFile]) -> Iterator[Record]:
    for imported in files:
        yield from imported.records
