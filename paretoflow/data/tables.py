"""The curated tables from the rows curation kept: prompts, responses, ratings, pairs (pairs
derived across rated rows where the format asks; built as Arrow tables in canonical.py),
the quarantine table (repeated lines built column by column in Arrow), report.json and its
text rendering, and the write of the whole folder as one unit (`write_curated`)."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from paretoflow.data.canonical import COUNTED, TABLE_NAMES, TEXT, build_table, build_tables, dense, table_counts
from paretoflow.data.canonical import spilled_column
from paretoflow.data.importers import ImportedFile, Quarantined, QuarantineLog, Record
from paretoflow.data.formats.fields import winner_hint
from paretoflow.data.rows import no_gc, other_kind
from paretoflow.data.spill import TextSpill
from paretoflow.io import atomic_dir, atomic_write, write_table, write_text
from paretoflow.schema import QUARANTINE_COLUMNS, TABLES, empty_table, frame

if TYPE_CHECKING:
    from paretoflow.stages.curate import CurateConfig


def _dialogue_text(messages: list[dict[str, str]]) -> str:
    return "\n".join(t["content"] for t in messages)


class ResponseIds:
    """The response ids of a curation ("r_" + 20 hex digits, schema.response_id) as their
    10 bytes in one bytearray, at the spill index of each response's text (a raw excerpt's
    slot stays zero): 10 bytes a response instead of a 71-byte str and its list slot, 190
    bytes less a row of two responses. `get` makes the strs when a step reads them."""

    WIDTH = 10

    def __init__(self) -> None:
        self.data = bytearray()

    def put(self, first: int, ids: Sequence[str]) -> None:
        self.data.extend(bytes(first * self.WIDTH - len(self.data)))  # the slots between (raw excerpts)
        for rid in ids:
            self.data.extend(bytes.fromhex(rid[2:]))

    def get(self, first: int, n: int) -> list[str]:
        digits = self.data[first * self.WIDTH:(first + n) * self.WIDTH].hex()
        return ["r_" + digits[i:i + 2 * self.WIDTH] for i in range(0, 2 * self.WIDTH * n, 2 * self.WIDTH)]


@dataclass(slots=True)
class _Row:
    """A record under curation: normalised texts and content ids."""

    record: Record
    role: str
    file_index: int
    messages: list[dict[str, str]]
    responses: Sequence[str]  # () once spilled
    prompt_id: str = ""
    ids: ResponseIds | None = None  # holds the response ids (`response_ids`) once spilled
    n_responses: int = 0
    rejected: Quarantined | None = None
    sampled_out: bool = False  # outside its source's prompt sample: neither kept nor quarantined
    failed_check: tuple[str, str] | None = None  # the row checks' (reason, detail), applied if still active
    text_start: int = -1  # the spill index of responses[0] (the others follow), once spilled
    raw_from: TextSpill | None = None  # the spill holding record.raw, after the responses

    @property
    def response_ids(self) -> list[str]:
        return [] if self.ids is None else self.ids.get(self.text_start, self.n_responses)

    @property
    def location(self) -> str:
        """The record's location; a JSON Lines row streamed into curate keeps none, its
        "line N" is made from its order (a str a row less: 64 bytes, curate_rows.py)."""
        where = self.record.location
        return f"line {self.record.order}" if where is None else where

    def reject(self, reason: str, detail: str) -> None:
        r = self.record
        raw = r.raw if self.raw_from is None else self.raw_from.get(self.text_start + self.n_responses)
        self.rejected = Quarantined(r.source, self.location, r.order, reason, detail, raw)


def _build_tables(kept_rows: list[_Row], files: Sequence[ImportedFile], config: CurateConfig,
                  texts: TextSpill | None) -> dict[str, pa.Table]:
    """The canonical tables of the kept rows as Arrow tables (canonical.py), in memory."""
    return build_tables(kept_rows, files, config, texts)


def _table_counts(tables: dict[str, pa.Table]) -> dict[str, Any]:
    return table_counts({n: t.num_rows for n, t in tables.items()}, tables["prompts"], tables["pairs"],
                        tables["ratings"])


@dataclass
class PendingTables:
    """The stage's canonical tables, not built yet: write_curated builds, writes and drops
    them one at a time, so memory holds one table beside the rows, not four (each is
    ~0.2 GB at 1M pairs); the report's table counts are taken as each is written. The
    responses table's text column holds spill indices (write_spilled_responses)."""

    rows: list[_Row]
    files: Sequence[ImportedFile]
    config: CurateConfig


RESPONSE_BATCH_ROWS = 1 << 14  # rows of the responses table written at a time: ~18 MB of texts of ~1,100 chars


def write_spilled_responses(responses: pa.Table | pd.DataFrame, texts: TextSpill, path: Path) -> None:
    """The responses table whose text column holds spill indices, written with the texts
    read back RESPONSE_BATCH_ROWS at a time (one row group each): memory holds two batches
    of texts (one being written), not the column. A table of at most one batch is the file
    write_table makes."""
    import pyarrow.parquet as pq

    if isinstance(responses, pd.DataFrame):
        responses = pa.Table.from_pandas(responses, preserve_index=False)
    if not len(responses):
        return write_table(empty_table("responses"), path)
    schema = pa.schema([(c, TEXT) for c in TABLES["responses"]])

    def batches() -> Iterator[pa.Table]:
        for start in range(0, len(responses), RESPONSE_BATCH_ROWS):
            batch = responses.slice(start, RESPONSE_BATCH_ROWS)
            indices = batch["text"].to_numpy()
            columns = dict(zip(batch.column_names, dense(batch).columns, strict=True))
            columns["text"] = spilled_column(texts, indices)
            yield pa.table({c: columns[c] for c in TABLES["responses"]}, schema=schema)

    def write(tmp: str) -> None:
        # One batch is encoded and written by a worker thread (pyarrow releases the GIL
        # there) while the next batch's texts are read back and gathered here: two batches
        # in memory, the same row groups in the same order as a write in this thread.
        with pq.ParquetWriter(tmp, schema) as writer, ThreadPoolExecutor(max_workers=1) as pool:
            writing: Future | None = None
            for table in batches():
                if writing is not None:
                    writing.result()
                writing = pool.submit(writer.write_table, table)
                del table
            if writing is not None:
                writing.result()

    atomic_write(path, write)


def _write(table: pa.Table | pd.DataFrame, path: Path) -> None:
    """A canonical table as io.write_table writes its frame (no pandas metadata)."""
    if isinstance(table, pd.DataFrame):
        write_table(table, path)
        return
    import pyarrow.parquet as pq

    atomic_write(path, lambda tmp: pq.write_table(table.replace_schema_metadata(None), tmp))


def _quarantine_frame(files: Sequence[ImportedFile], rows: list[_Row]) -> pd.DataFrame:
    """Quarantined rows in file order, then row order within a file."""
    rejected: dict[int, list[Quarantined]] = defaultdict(list)
    for r in rows:
        if r.rejected is not None:
            rejected[r.file_index].append(r.rejected)
    # Column lists, not a dict per row: per-row dicts cost ~4x the memory of the columns.
    columns: dict[str, list[Any]] = {c: [] for c in (*QUARANTINE_COLUMNS, "_file", "_order")}
    with no_gc():
        for file_index, imported in enumerate(files):
            entries = sorted([*imported.quarantined.entries, *rejected.get(file_index, [])], key=lambda q: q.order)
            for column in QUARANTINE_COLUMNS:
                columns[column].extend(getattr(q, column) for q in entries)
            columns["_file"].extend([file_index] * len(entries))
            columns["_order"].extend(q.order for q in entries)
    repeats = [(i, f.quarantined) for i, f in enumerate(files) if f.quarantined.repeat_orders]
    if not columns["source"] and not repeats:
        return frame("quarantine", [])
    dtypes = empty_table("quarantine").dtypes.to_dict()
    if not repeats:
        return pd.DataFrame({c: columns[c] for c in QUARANTINE_COLUMNS}).astype(dtypes)
    return _merged_quarantine(columns, repeats).astype(dtypes)


def _repeat_column(column: str, log: QuarantineLog) -> Any:
    """One quarantine column of a file's repeated lines, made by Arrow compute from the
    log's integer arrays (no Python object per row)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pa.large_string()
    if column in ("source", "reason"):
        return pa.repeat(pa.scalar(log.source if column == "source" else "duplicate", text), len(log.repeat_orders))
    if column in ("location", "detail"):
        prefix, numbers = ("line ", log.repeat_orders) if column == "location" else ("same bytes as line ", log.repeat_of)
        digits = pc.cast(pa.array(np.frombuffer(numbers, dtype=np.int64)), text)
        return pc.binary_join_element_wise(pa.scalar(prefix, text), digits, pa.scalar("", text))
    first_lines = np.array(sorted(log.first_raw), dtype=np.int64)
    raws = pa.array([log.first_raw[int(k)] for k in first_lines], text)
    return pc.take(raws, pa.array(np.searchsorted(first_lines, np.frombuffer(log.repeat_of, dtype=np.int64))))


def _merged_quarantine(columns: dict[str, list[Any]], repeats: list[tuple[int, QuarantineLog]]) -> pd.DataFrame:
    """The listed entries and the files' repeated lines in (file, row) order. The order is
    found on the integers first; each column is then built and, only if the two
    interleave, put in order before the next is built (3M repeats peaked at 1.1 GB when
    whole tables were concatenated and sorted)."""
    import numpy as np
    import pyarrow as pa

    file_keys = np.concatenate([np.asarray(columns["_file"], np.int64)]
                               + [np.full(len(log.repeat_orders), i, np.int64) for i, log in repeats])
    order_keys = np.concatenate([np.asarray(columns["_order"], np.int64)]
                                + [np.frombuffer(log.repeat_orders, dtype=np.int64) for _, log in repeats])
    permutation = np.lexsort((order_keys, file_keys))
    in_order = bool((permutation == np.arange(len(permutation))).all())
    del file_keys, order_keys
    out = {}
    for column in QUARANTINE_COLUMNS:
        merged = pa.chunked_array([pa.array(columns[column], pa.large_string()),
                                   *(_repeat_column(column, log) for _, log in repeats)], pa.large_string())
        out[column] = merged if in_order else merged.take(pa.array(permutation))
    return pa.table(out).to_pandas()


def _report(files: Sequence[ImportedFile], rows: list[_Row], quarantine: pd.DataFrame) -> dict[str, Any]:
    """report.json but the table counts (_table_counts, or write_curated's as it writes)."""
    kept_per_file = Counter(r.file_index for r in rows if r.rejected is None and not r.sampled_out)
    sampled_per_file = Counter(r.file_index for r in rows if r.sampled_out)
    sources: dict[str, Any] = {}
    for file_index, imported in enumerate(files):
        reasons = imported.quarantined.reasons()
        reasons.update(r.rejected.reason for r in rows if r.file_index == file_index and r.rejected is not None)
        kept, quarantined, sampled_out = kept_per_file[file_index], sum(reasons.values()), sampled_per_file[file_index]
        if imported.rows_in != kept + quarantined + sampled_out:
            raise RuntimeError(
                f"{imported.path}: row accounting broken: rows_in {imported.rows_in} != "
                f"kept {kept} + quarantined {quarantined} + sampled out {sampled_out}"
            )
        sources[imported.path] = {
            "format": imported.format, "role": imported.role, "rows_in": imported.rows_in,
            "rows_kept": kept, "rows_quarantined": quarantined, "rows_sampled_out": sampled_out,
            "reasons": dict(sorted(reasons.items())),
            "ignored_attributes": dict(sorted(imported.ignored_attributes.items())),
            "not_rated": imported.not_rated,
            "prompt_only_columns_not_read": dict(sorted(imported.unread_columns.items())),
        }
    if len(quarantine) != sum(s["rows_quarantined"] for s in sources.values()):
        raise RuntimeError("quarantine table size differs from the per-file quarantine counts")
    return {
        "rows_in": sum(s["rows_in"] for s in sources.values()),
        "rows_kept": sum(s["rows_kept"] for s in sources.values()),
        "rows_quarantined": sum(s["rows_quarantined"] for s in sources.values()),
        "rows_sampled_out": sum(s["rows_sampled_out"] for s in sources.values()),
        "reasons": dict(sorted(Counter(quarantine["reason"]).items())),
        "sources": sources,
    }


def _carry_over(out_dir: Path, staging: Path, own: set[str]) -> None:
    """Hard-link what other stages keep in out_dir (validate's Data Docs and verdict) into
    the staging folder, so replacing the folder as one unit does not delete them. The old
    folder stays whole until the rename; a carried verdict names the data hash it judged,
    so it cannot pass the new tables (validate.verdict raises StaleVerdict)."""
    if not out_dir.is_dir():
        return
    for entry in sorted(out_dir.iterdir()):
        if entry.name in own:
            continue
        target = staging / entry.name
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
        elif entry.is_symlink():
            os.symlink(os.readlink(entry), target)
        else:
            _link_or_copy(entry, target)


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target)  # same folder's parent: one filesystem, so a link is the rule
    except OSError:
        shutil.copy2(source, target)  # a mount point inside out_dir, or links not supported


def _write_pending(pending: PendingTables, staging: Path, texts: TextSpill | None) -> dict[str, Any]:
    """Build, write and drop each table in turn; the report's table counts."""
    sizes, counted = {}, {}
    for name in TABLE_NAMES:
        table = build_table(name, pending.rows, pending.files, pending.config, None)
        sizes[name] = table.num_rows
        if name == "responses":
            if texts is None:
                raise ValueError("pending responses hold spill indices: write_curated needs the spill")
            write_spilled_responses(table, texts, staging / f"{name}.parquet")
        else:
            _write(table, staging / f"{name}.parquet")
        counted[name] = table.select(COUNTED[name]) if name in COUNTED else None
        del table
    return table_counts(sizes, counted["prompts"], counted["pairs"], counted["ratings"])


def write_curated(curated: Curated, out_dir: Path, texts: TextSpill | None = None) -> dict[str, Path]:
    """Write the tables and report.json into a temporary sibling folder that replaces
    out_dir in one rename (io.atomic_dir): a run killed mid-write leaves the previous
    folder as it was, never tables of two runs beside one report. `texts`: the responses
    table's texts are in this spill (its text column holds their indices)."""
    out_dir = Path(out_dir).resolve()  # "." or a relative --out: rename the folder it names
    names = {name: f"{name}.parquet" for name in (*TABLE_NAMES, "quarantine")}
    names["report"] = "report.json"
    with atomic_dir(out_dir) as staging:
        if isinstance(curated.tables, PendingTables):
            curated.report.update(_write_pending(curated.tables, staging, texts))
        else:
            for name in TABLE_NAMES:
                if name == "responses" and texts is not None:
                    write_spilled_responses(curated.tables[name], texts, staging / names[name])
                else:
                    _write(curated.tables[name], staging / names[name])
        write_table(curated.quarantine[QUARANTINE_COLUMNS], staging / names["quarantine"])
        write_text(staging / names["report"],
                   json.dumps(curated.report, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        _carry_over(out_dir, staging, set(names.values()))
    return {name: out_dir / file for name, file in names.items()}


def quarantine_examples(path: Path) -> list[str]:
    """The first quarantined row of each reason in a quarantine.parquet, one line each
    ("missing_field, e.g. prefs.jsonl line 1: no field 'prompt' (...)"): the counts alone
    do not say what to fix. Read batch by batch (3M duplicates are one reason, 3M rows)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    first: dict[str, str] = {}
    with pq.ParquetFile(path) as file:
        for batch in file.iter_batches(columns=["source", "location", "reason", "detail"], batch_size=65_536):
            for reason in pc.unique(batch["reason"]).to_pylist():
                if reason not in first:
                    row = batch.slice(pc.index(batch["reason"], reason).as_py(), 1).to_pylist()[0]
                    first[reason] = f"{reason}, e.g. {row['source']} {row['location']}: {row['detail']}"
    return list(first.values())


def _most(counts: dict[str, int], most: int = 8) -> str:
    """"'a' 5, 'b' 5": the first `most` of counts, then how many more."""
    shown_counts = ", ".join(f"{k!r} {v:,}" for k, v in list(counts.items())[:most])
    return shown_counts + (f", … ({len(counts):,} columns)" if len(counts) > most else "")


def report_table(report: dict[str, Any], quarantine: Path | None = None) -> str:
    """The report as a plain-text table (one line per source, then reasons and tables);
    with the written quarantine table, the first quarantined row of each reason too."""
    lines = [f"{'source':<48} {'format':<14} {'role':<5} {'in':>8} {'sampled out':>11} {'kept':>8} {'quarantined':>11}"]
    for path, s in report["sources"].items():
        lines.append(f"{path[-48:]:<48} {s['format']:<14} {s['role']:<5} {s['rows_in']:>8} "
                     f"{s['rows_sampled_out']:>11} {s['rows_kept']:>8} {s['rows_quarantined']:>11}")
        if s["ignored_attributes"]:
            lines.append(f"{'':<4}ignored attributes: {s['ignored_attributes']}")
        if s.get("prompt_only_columns_not_read"):
            lines.append(f"{'':<4}rows read as prompts only; their columns not read (rows): "
                         f"{_most(s['prompt_only_columns_not_read'])}; answers there are read once the source's "
                         "column_map names them (paretoflow import --map chosen=COLUMN --map rejected=COLUMN for pairs, "
                         "--map response=COLUMN --map rating=COLUMN for rated answers)"
                         + winner_hint(s["prompt_only_columns_not_read"]))
    lines.append(f"{'total':<69} {report['rows_in']:>8} {report['rows_sampled_out']:>11} "
                 f"{report['rows_kept']:>8} {report['rows_quarantined']:>11}")
    for source, sample in report.get("samples", {}).items():
        lines.append(f"sample of {source}: {sample['prompts_sampled']} of {sample['prompts_available']} prompts "
                     f"(max_prompts {sample['max_prompts']}, seed {sample['seed']})")
    for source, names in report.get("skipped_files", {}).items():
        lines.append(f"skipped in {source} (unsupported suffix): {', '.join(names)}")
        lines.extend(f"  {kind}" for kind in dict.fromkeys(filter(None, map(other_kind, names))))
    if report["reasons"]:
        lines.append("quarantined: " + ", ".join(f"{k} {v}" for k, v in report["reasons"].items()))
        if quarantine is not None:
            lines.extend(f"  {example}" for example in quarantine_examples(quarantine))
    lines.append("tables: " + ", ".join(f"{k} {v}" for k, v in report["tables"].items()))
    lines.append("prompts per split: " + ", ".join(f"{k} {v}" for k, v in report["prompts_per_split"].items()))
    for objective, per_split in report["pairs_per_objective_split"].items():
        lines.append(f"pairs {objective}: " + ", ".join(f"{k} {v}" for k, v in per_split.items()))
    return "\n".join(lines)
