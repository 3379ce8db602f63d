"""The curated tables from the rows curation kept: prompts, responses, ratings, pairs (pairs
derived across rated rows where the format asks), the quarantine table (repeated lines
built column by column in Arrow), report.json and its text rendering, and the write of
the whole folder as one unit (`write_curated`)."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from paretoflow.data.dedup import split_of
from paretoflow.data.importers import ImportedFile, Quarantined, QuarantineLog, Record
from paretoflow.data.rows import no_gc
from paretoflow.data.spill import TextSpill
from paretoflow.io import atomic_dir, atomic_write, write_table, write_text
from paretoflow.schema import (
    OPTIONAL_COLUMNS,
    QUARANTINE_COLUMNS,
    TABLES,
    empty_table,
    frame,
    messages_json,
    metadata_json,
    pair_id,
)

if TYPE_CHECKING:
    from paretoflow.stages.curate import CurateConfig

TABLE_NAMES = ("prompts", "responses", "ratings", "pairs")
_NO_METADATA = metadata_json({})
_NO_TAGS = json.dumps([])


def _dialogue_text(messages: list[dict[str, str]]) -> str:
    return "\n".join(t["content"] for t in messages)


def _last_user_turn(messages: list[dict[str, str]]) -> str:
    return next(t["content"] for t in reversed(messages) if t["role"] == "user")


@dataclass(slots=True)
class _Row:
    """A record under curation: normalised texts and content ids."""

    record: Record
    role: str
    file_index: int
    messages: list[dict[str, str]]
    responses: Sequence[str]  # () once spilled
    prompt_id: str = ""
    response_ids: list[str] = field(default_factory=list)
    rejected: Quarantined | None = None
    sampled_out: bool = False  # outside its source's prompt sample: neither kept nor quarantined
    failed_check: tuple[str, str] | None = None  # the row checks' (reason, detail), applied if still active
    text_start: int = -1  # the spill index of responses[0] (the others follow), once spilled
    raw_from: TextSpill | None = None  # the spill holding record.raw, after the responses

    def reject(self, reason: str, detail: str) -> None:
        r = self.record
        raw = r.raw if self.raw_from is None else self.raw_from.get(self.text_start + len(self.response_ids))
        self.rejected = Quarantined(r.source, r.location, r.order, reason, detail, raw)


def _build_tables(kept_rows: list[_Row], files: Sequence[ImportedFile], config: CurateConfig,
                  texts: TextSpill | None) -> dict[str, pd.DataFrame]:
    """The canonical tables of the kept rows; `texts` None: the responses table's text
    column holds the spill index of each text (write_spilled_responses reads them)."""
    # Table rows are tuples in PROMPT/RESPONSE/RATING/PAIR_COLUMNS order, not dicts: a dict
    # per response and pair was ~1.3 KB a pair at curate's peak (measured at 100k pairs).
    eval_prompts = {r.prompt_id for r in kept_rows if r.role == "eval"}
    prompts: dict[str, tuple] = {}
    tags: dict[str, set[str]] = defaultdict(set)
    responses: dict[str, tuple] = {}
    ratings: dict[tuple[str, str, str], tuple] = {}
    pairs: dict[str, tuple] = {}
    # (file, prompt, objective, rater) → {response_id: value}, for derived pairs.
    rating_groups: dict[tuple[int, str, str, str], dict[str, float]] = defaultdict(dict)

    for row in kept_rows:
        record, pid = row.record, row.prompt_id
        metadata = metadata_json(record.metadata) if record.metadata else _NO_METADATA  # one string, not one a row
        if pid not in prompts:
            split = "test" if pid in eval_prompts else split_of(pid, config.split_fractions)
            prompts[pid] = (pid, messages_json(row.messages), _last_user_turn(row.messages), record.source, split)
        if record.tags:  # most rows have none: no set per prompt then
            tags[pid].update(record.tags)
        for index, rid in enumerate(row.response_ids, start=row.text_start):
            responses.setdefault(rid, (rid, pid, index, record.source))  # the text is read back in id order
        for rating in record.ratings:
            rid = row.response_ids[rating.response_index]
            ratings.setdefault((rid, rating.objective, rating.rater), (
                rid, rating.objective, rating.value, rating.scale_min, rating.scale_max, rating.rater, metadata))
            if files[row.file_index].derive_pairs:
                rating_groups[(row.file_index, pid, rating.objective, rating.rater)].setdefault(rid, rating.value)
        for pair in record.pairs:
            chosen, rejected = row.response_ids[pair.chosen_index], row.response_ids[pair.rejected_index]
            xid = pair_id(pid, chosen, rejected, pair.objective)
            pairs.setdefault(xid, (xid, pid, chosen, rejected, pair.objective, pair.margin, record.source, metadata))

    _add_derived_pairs(pairs, rating_groups, files)
    prompts = {pid: (*row, json.dumps(sorted(tags[pid]), ensure_ascii=False) if pid in tags else _NO_TAGS)
               for pid, row in prompts.items()}
    return {name: _table(name, table, texts, spilled=name == "responses") for name, table in
            (("prompts", prompts), ("responses", responses), ("ratings", ratings), ("pairs", pairs))}


def _table(name: str, rows: dict[Any, tuple], texts: TextSpill | None = None, spilled: bool = False) -> pd.DataFrame:
    """A canonical table from tuples keyed by id, in id order (as schema.frame builds it
    from dicts: same columns, dtypes and the optional metadata filled). `spilled`: the
    "text" column holds spill indices, read back here from `texts` (left as int64 if None).
    `rows` is emptied once its columns are made: its tuples go before pandas copies the
    columns (at 1M pairs they are ~0.3 GB of the table build's peak)."""
    if not rows:
        return empty_table(name)
    columns = TABLES[name]
    values = zip(*(rows[k] for k in sorted(rows)), strict=True)
    lists = dict(zip(columns, map(list, values), strict=True))
    rows.clear()
    dtypes = empty_table(name).dtypes.to_dict()
    if spilled and texts is not None:
        lists["text"] = [texts.get(index) for index in lists["text"]]
    elif spilled:
        dtypes["text"] = "int64"
    df = pd.DataFrame(lists)
    if "metadata" in columns:
        df["metadata"] = df["metadata"].fillna(OPTIONAL_COLUMNS["metadata"])
    return df.astype(dtypes)


RESPONSE_BATCH_ROWS = 1 << 14  # rows of the responses table written at a time: ~18 MB of texts of ~1,100 chars


def write_spilled_responses(responses: pd.DataFrame, texts: TextSpill, path: Path) -> None:
    """The responses table whose text column holds spill indices, written with the texts
    read back RESPONSE_BATCH_ROWS at a time (one row group each): memory holds one batch
    of texts, not the column. A table of at most one batch is the file write_table makes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if responses.empty:
        return write_table(empty_table("responses"), path)
    text_type = pa.large_string()  # what pandas' str columns become (the other tables' files)
    schema = pa.schema([(c, text_type) for c in TABLES["responses"]])

    def write(tmp: str) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            for start in range(0, len(responses), RESPONSE_BATCH_ROWS):
                batch = responses.iloc[start:start + RESPONSE_BATCH_ROWS]
                columns = {c: pa.array(batch[c].tolist(), text_type) for c in ("response_id", "prompt_id", "origin")}
                columns["text"] = pa.array([texts.get(int(i)) for i in batch["text"]], text_type)
                writer.write_table(pa.table({c: columns[c] for c in TABLES["responses"]}, schema=schema))

    atomic_write(path, write)


def _add_derived_pairs(pairs: dict[str, tuple], rating_groups: dict[tuple[int, str, str, str], dict[str, float]],
                       files: Sequence[ImportedFile]) -> None:
    """Pairs derived from ratings of responses to the same prompt (HelpSteer2, generic):
    every ordered pair with a strictly higher rating, margin = the rating difference. A
    pair given explicitly by a row stays as given."""
    for (file_index, pid, objective, _rater), values in sorted(rating_groups.items()):
        ordered = sorted(values.items())
        for i, (rid_a, value_a) in enumerate(ordered):
            for rid_b, value_b in ordered[i + 1:]:
                if value_a == value_b:
                    continue
                chosen, rejected = (rid_a, rid_b) if value_a > value_b else (rid_b, rid_a)
                xid = pair_id(pid, chosen, rejected, objective)
                pairs.setdefault(xid, (xid, pid, chosen, rejected, objective, abs(value_a - value_b),
                                       files[file_index].path, None))


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


def _report(files: Sequence[ImportedFile], rows: list[_Row], tables: dict[str, pd.DataFrame],
            quarantine: pd.DataFrame) -> dict[str, Any]:
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
        }
    if len(quarantine) != sum(s["rows_quarantined"] for s in sources.values()):
        raise RuntimeError("quarantine table size differs from the per-file quarantine counts")
    prompts, pairs = tables["prompts"], tables["pairs"]
    split_of_prompt = dict(zip(prompts["prompt_id"], prompts["split"], strict=True))
    pairs_per_objective: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(("train", "val", "test"), 0))
    for pid, objective in zip(pairs["prompt_id"], pairs["objective"], strict=True):
        pairs_per_objective[objective][split_of_prompt[pid]] += 1
    return {
        "rows_in": sum(s["rows_in"] for s in sources.values()),
        "rows_kept": sum(s["rows_kept"] for s in sources.values()),
        "rows_quarantined": sum(s["rows_quarantined"] for s in sources.values()),
        "rows_sampled_out": sum(s["rows_sampled_out"] for s in sources.values()),
        "reasons": dict(sorted(Counter(quarantine["reason"]).items())),
        "tables": {name: len(tables[name]) for name in TABLE_NAMES},
        "prompts_per_split": {s: int((prompts["split"] == s).sum()) for s in ("train", "val", "test")},
        "pairs_per_objective_split": {k: pairs_per_objective[k] for k in sorted(pairs_per_objective)},
        "ratings_per_objective": dict(sorted(Counter(tables["ratings"]["objective"]).items())),
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


def write_curated(curated: Curated, out_dir: Path, texts: TextSpill | None = None) -> dict[str, Path]:
    """Write the tables and report.json into a temporary sibling folder that replaces
    out_dir in one rename (io.atomic_dir): a run killed mid-write leaves the previous
    folder as it was, never tables of two runs beside one report. `texts`: the responses
    table's texts are in this spill (its text column holds their indices)."""
    out_dir = Path(out_dir).resolve()  # "." or a relative --out: rename the folder it names
    names = {name: f"{name}.parquet" for name in (*TABLE_NAMES, "quarantine")}
    names["report"] = "report.json"
    with atomic_dir(out_dir) as staging:
        for name in TABLE_NAMES:
            if name == "responses" and texts is not None:
                write_spilled_responses(curated.tables[name], texts, staging / names[name])
            else:
                write_table(curated.tables[name], staging / names[name])
        write_table(curated.quarantine[QUARANTINE_COLUMNS], staging / names["quarantine"])
        write_text(staging / names["report"],
                   json.dumps(curated.report, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        _carry_over(out_dir, staging, set(names.values()))
    return {name: out_dir / file for name, file in names.items()}


def report_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table (one line per source, then reasons and tables)."""
    lines = [f"{'source':<48} {'format':<14} {'role':<5} {'in':>8} {'sampled out':>11} {'kept':>8} {'quarantined':>11}"]
    for path, s in report["sources"].items():
        lines.append(f"{path[-48:]:<48} {s['format']:<14} {s['role']:<5} {s['rows_in']:>8} "
                     f"{s['rows_sampled_out']:>11} {s['rows_kept']:>8} {s['rows_quarantined']:>11}")
        if s["ignored_attributes"]:
            lines.append(f"{'':<4}ignored attributes: {s['ignored_attributes']}")
    lines.append(f"{'total':<69} {report['rows_in']:>8} {report['rows_sampled_out']:>11} "
                 f"{report['rows_kept']:>8} {report['rows_quarantined']:>11}")
    for source, sample in report.get("samples", {}).items():
        lines.append(f"sample of {source}: {sample['prompts_sampled']} of {sample['prompts_available']} prompts "
                     f"(max_prompts {sample['max_prompts']}, seed {sample['seed']})")
    for source, names in report.get("skipped_files", {}).items():
        lines.append(f"skipped in {source} (unsupported suffix): {', '.join(names)}")
    if report["reasons"]:
        lines.append("quarantined: " + ", ".join(f"{k} {v}" for k, v in report["reasons"].items()))
    lines.append("tables: " + ", ".join(f"{k} {v}" for k, v in report["tables"].items()))
    lines.append("prompts per split: " + ", ".join(f"{k} {v}" for k, v in report["prompts_per_split"].items()))
    for objective, per_split in report["pairs_per_objective_split"].items():
        lines.append(f"pairs {objective}: " + ", ".join(f"{k} {v}" for k, v in per_split.items()))
    return "\n".join(lines)
