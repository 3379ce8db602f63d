"""The curate stage: raw sources → deduplicated, decontaminated, split canonical tables.

    from paretoflow.data.curate import run
    result = run(params, root=Path("."))       # or: paretoflow curate

Steps, in order (each rejected row goes to the quarantine table with its reason):

1. import every file of `params.curate.sources` (importers.py / readers.py; malformed
   rows are quarantined there with malformed_json, missing_field, wrong_type,
   field_too_long, ...; files of a folder source with other suffixes are listed in the
   report as skipped_files);
2. as each record is read: normalise every text (normalize.py), hash prompts and
   responses, and move the response texts to a temporary file (curate_rows.py,
   spill.py; the responses table reads them back), so memory holds ids, not texts; a source with
   `max_prompts` keeps the rows of its sampled prompts (`sample_key`, a hash independent
   of the split's); its other rows are *sampled out*: counted, not quarantined;
3. row checks: empty_text, chosen_equals_rejected, too_short / too_long (min_words /
   max_words on the prompt's turns together and on each response);
4. exact duplicates: a row whose normalised content (prompt, responses, ratings, pairs)
   equals an earlier row's → duplicate. Rows that share a prompt but bring different
   responses are not duplicates: they merge on the prompt id;
5. disagreements: rows that order one pair both ways → contradictory_pair; give it other
   margins → conflicting_duplicate; rate one response differently for one objective and
   rater → conflicting_rating (every row of a disagreement goes);
6. near duplicates: MinHash LSH over the distinct prompts (dedup.py); every row of a
   prompt that near-duplicates an earlier prompt → near_duplicate;
7. decontamination: train-role prompts whose n-gram overlap with eval-role prompts
   reaches decontam_threshold → contaminated;
8. split: eval-role prompts are always "test" (they are the held-out set the Pareto front
   is judged on); other prompts get train/val/test from their id hash (dedup.split_of),
   so adding rows never moves an existing prompt. Responses, ratings and pairs follow
   their prompt, so splits are prompt-disjoint.

"First" means: eval-role sources before train-role ones (a prompt present in both stays
held out), then sources in params order, then file order.

Outputs under `<root>/<curate.out_dir>`: prompts, responses, ratings, pairs, quarantine
(.parquet) and report.json. Same input → byte-identical files (rows sorted by id, no
timestamps, no pandas metadata), which DVC's caching relies on; report.json is written
last. After every run the identity rows_in == rows_kept + rows_quarantined +
rows_sampled_out is checked per file (a row is one input record, see readers.py; without
a sample the last term is 0) and a violation raises.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from paretoflow.data.canonical import as_frame
from paretoflow.data.dedup import contaminated, content_key, near_duplicates
from paretoflow.data.importers import UNEXPECTED, ImportedFile, Limits, Record, data_roots_from_env, read_source
from paretoflow.data.curate_rows import RowMaker
from paretoflow.data.rows import no_gc
from paretoflow.data.spill import TextSpill
from paretoflow.io import inside

if TYPE_CHECKING:
    from paretoflow.config import Params
    from paretoflow.stages.curate import CurateConfig

from paretoflow.data.tables import (  # noqa: F401  (re-exported: the stage, the import command, tests)
    TABLE_NAMES, PendingTables, _build_tables, _dialogue_text, _quarantine_frame, _report, _Row,
    _table_counts, report_table, write_curated,
)

# Every reason a row can be quarantined for (importers + curation).
REASONS = (
    "malformed_json", "malformed_row", "repeated_header", "malformed_dialogue", "prompt_mismatch", "missing_field", "wrong_type",
    "undecodable_bytes", "nan_value", "number_too_long", "field_too_long", "rating_off_scale", "negative_margin",
    "unknown_objective", "ambiguous_key", "binary_data", "undecodable_name", UNEXPECTED, "control_token", "empty_text", "chosen_equals_rejected", "too_short", "too_long", "duplicate",
    "tied_pair", "contradictory_pair", "conflicting_duplicate", "conflicting_rating", "near_duplicate", "contaminated",
)


@dataclass
class Curated:
    """In-memory result of curation (no files written): the tables as pandas frames, or,
    for the stage (curate_into), the tables to build as they are written."""

    tables: dict[str, pd.DataFrame] | PendingTables
    quarantine: pd.DataFrame
    report: dict[str, Any]


@dataclass
class CurateResult:
    out_dir: Path
    paths: dict[str, Path]
    counts: dict[str, int]
    report: dict[str, Any]

    def metrics(self) -> dict[str, float]:
        """Flat numbers for experiment tracking (names avoid MLflow's forbidden characters)."""
        out = {k: float(self.report[k]) for k in ("rows_in", "rows_kept", "rows_quarantined", "rows_sampled_out")}
        out.update({f"{name}_rows": float(n) for name, n in self.counts.items()})
        out.update({f"quarantined_{reason}": float(n) for reason, n in self.report["reasons"].items()})
        out.update({f"prompts_{split}": float(n) for split, n in self.report["prompts_per_split"].items()})
        return out


def sample_key(seed: int, pid: str) -> str:
    """The sample's order of a prompt: a hash independent of the split's (dedup.split_of)."""
    return hashlib.sha256(f"sample\x1f{seed}\x1f{pid}".encode()).hexdigest()


def _sample(rows: list[_Row], files: Sequence[ImportedFile]) -> dict[str, dict[str, int]]:
    """Step 2: per source with max_prompts, keep the rows of its max_prompts prompts of
    smallest sample_key; the others are sampled out (counted, not quarantined)."""
    by_source: dict[str, list[_Row]] = defaultdict(list)
    for row in rows:
        imported = files[row.file_index]
        if imported.max_prompts is not None and row.rejected is None:  # a quarantined row is not also sampled out
            by_source[imported.source or imported.path].append(row)
    summary = {}
    for source, source_rows in by_source.items():
        imported = files[source_rows[0].file_index]
        prompts = sorted({r.prompt_id for r in source_rows}, key=lambda p: sample_key(imported.sample_seed, p))
        keep = set(prompts[: imported.max_prompts])
        for row in source_rows:
            row.sampled_out = row.prompt_id not in keep
        summary[source] = {"max_prompts": imported.max_prompts, "seed": imported.sample_seed,
                           "prompts_available": len(prompts), "prompts_sampled": len(keep)}
    return summary


def _active(rows: list[_Row]) -> Iterator[_Row]:
    return (r for r in rows if r.rejected is None and not r.sampled_out)


def _repeated(hashes: Iterator[int]) -> np.ndarray:
    """Which keys, by their hashes, may occur more than once: the keys of a step's first
    pass. Its second pass compares the exact keys of these only (a hash collision just
    adds one), so memory holds 8 bytes a key, not the keys and their dict slots."""
    values = np.fromiter(hashes, dtype=np.int64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return counts[inverse] > 1


def _content_key(row: _Row) -> str:
    record, ids = row.record, row.response_ids
    return content_key(
        row.prompt_id,
        *sorted(ids),
        *sorted(f"{ids[r.response_index]}|{r.objective}|{r.value!r}|{r.rater}" for r in record.ratings),
        *sorted(f"{ids[p.chosen_index]}>{ids[p.rejected_index]}|{p.objective}|{p.margin!r}" for p in record.pairs),
    )


def _mark_exact_duplicates(rows: list[_Row]) -> None:
    """Step 4: a row whose whole normalised content equals an earlier row's. Keys are
    hashed first (_repeated): a key and its dict slot were ~150 bytes a row."""
    active = list(_active(rows))
    first_by_key: dict[str, _Row] = {}
    for row, again in zip(active, _repeated(hash(_content_key(r)) for r in active), strict=True):
        if not again:
            continue
        kept = first_by_key.setdefault(_content_key(row), row)
        if kept is not row:
            row.reject("duplicate", f"same content as {kept.record.source} {kept.location}")


def _where(rows: list[_Row]) -> str:
    named = [f"{r.record.source} {r.location}" for r in rows[:3]]
    return ", ".join(named) + (f" and {len(rows) - 3} more" if len(rows) > 3 else "")


def _mark_conflicts(rows: list[_Row]) -> None:
    """Step 5: rows that disagree about one pair (A>B vs B>A: contradictory_pair; same
    order, other margin: conflicting_duplicate) or one rating (same response, objective
    and rater, other value: conflicting_rating). Every row of the disagreement goes:
    which one is right cannot be told, and keeping the first would depend on file order."""
    # Claims are keyed twice (_repeated): a key tuple, claim list and dict slot were ~270
    # bytes a pair, for the few keys that more than one claim shares. The second pass
    # visits only the rows holding such a key (most rows have none: their response ids
    # are not made again).
    active = list(_active(rows))

    def pairs(of: Iterable[_Row]) -> Iterator[tuple[tuple[str, str, str, str], tuple[_Row, str, float]]]:
        for row in of:
            ids = row.response_ids if row.record.pairs else ()
            for p in row.record.pairs:
                chosen, rejected = ids[p.chosen_index], ids[p.rejected_index]
                low, high = sorted((chosen, rejected))
                yield (row.prompt_id, low, high, p.objective), (row, chosen, p.margin)

    def ratings(of: Iterable[_Row]) -> Iterator[tuple[tuple[str, str, str], tuple[_Row, float]]]:
        for row in of:
            ids = row.response_ids if row.record.ratings else ()
            for r in row.record.ratings:
                yield (ids[r.response_index], r.objective, r.rater), (row, r.value)

    pair_claims: dict[tuple[str, str, str, str], list[tuple[_Row, str, float]]] = defaultdict(list)
    rating_claims: dict[tuple[str, str, str], list[tuple[_Row, float]]] = defaultdict(list)
    for claimed, each, field in ((pair_claims, pairs, "pairs"), (rating_claims, ratings, "ratings")):
        again = _repeated(hash(k) for k, _ in each(active))
        counts = np.fromiter((len(getattr(r.record, field)) for r in active), dtype=np.int64, count=len(active))
        firsts = np.cumsum(counts) - counts  # each row's first claim
        for at in np.unique(np.repeat(np.arange(len(active)), counts)[again]):
            for offset, (key, claim) in enumerate(each([active[at]])):
                if again[firsts[at] + offset]:
                    claimed[key].append(claim)
    verdicts: list[tuple[list[_Row], str, str]] = []
    for (_, _, _, objective), claims in pair_claims.items():
        group = list({id(r): r for r, _, _ in claims}.values())
        if len({c for _, c, _ in claims}) > 1:
            verdicts.append((group, "contradictory_pair", f"{objective}: opposite preferences for one pair in {_where(group)}"))
        elif len({m for _, _, m in claims}) > 1:
            margins = sorted({m for _, _, m in claims})
            verdicts.append((group, "conflicting_duplicate", f"{objective}: margins {margins} for one pair in {_where(group)}"))
    for (_, objective, rater), claims in rating_claims.items():
        if len({v for _, v in claims}) > 1:
            group = list({id(r): r for r, _ in claims}.values())
            values = sorted({v for _, v in claims})
            verdicts.append((group, "conflicting_rating", f"{objective} by {rater}: values {values} for one response "
                                                          f"in {_where(group)}"))
    for group, reason, detail in verdicts:
        for row in group:
            if row.rejected is None:
                row.reject(reason, detail)


def _mark_near_duplicates(rows: list[_Row], config: CurateConfig, progress: tqdm | None) -> dict[str, _Row]:
    """Step 6: MinHash LSH over the distinct prompts, in first-occurrence order; returns
    the first row of every prompt still active."""
    first_row_of_prompt: dict[str, _Row] = {}
    for row in _active(rows):
        first_row_of_prompt.setdefault(row.prompt_id, row)
    distinct_ids = list(first_row_of_prompt)
    if progress is not None:
        progress.total += len(distinct_ids)
        progress.refresh()
    found = near_duplicates(
        [_dialogue_text(first_row_of_prompt[p].messages) for p in distinct_ids],
        num_perm=config.minhash_num_perm, threshold=config.near_dup_threshold,
        shingle_size=config.shingle_size, progress=None if progress is None else progress.update,
    )
    near_dup_of = {distinct_ids[d.index]: (distinct_ids[d.representative], d.similarity) for d in found}
    for row in _active(rows):
        if row.prompt_id in near_dup_of:
            kept_id, similarity = near_dup_of[row.prompt_id]
            kept = first_row_of_prompt[kept_id]
            row.reject("near_duplicate", f"Jaccard {similarity:.2f} with prompt {kept_id} ({kept.record.source} {kept.location})")
    return first_row_of_prompt


def _mark_contaminated(rows: list[_Row], config: CurateConfig, first_row_of_prompt: dict[str, _Row]) -> None:
    """Step 7: train-role prompts against eval-role prompts (n-gram overlap)."""
    eval_ids = sorted({r.prompt_id for r in _active(rows) if r.role == "eval"})
    train_ids = sorted({r.prompt_id for r in _active(rows) if r.role == "train"})
    hits = contaminated(
        [_dialogue_text(first_row_of_prompt[p].messages) for p in train_ids],
        [_dialogue_text(first_row_of_prompt[p].messages) for p in eval_ids],
        n=config.decontam_ngram, threshold=config.decontam_threshold,
    )
    contaminated_ids = {train_ids[h.index]: (eval_ids[h.held_out], h.fraction) for h in hits}
    for row in _active(rows):
        if row.role == "train" and row.prompt_id in contaminated_ids:
            eval_id, fraction = contaminated_ids[row.prompt_id]
            row.reject("contaminated", f"{fraction:.2f} of its {config.decontam_ngram}-grams occur in eval prompt {eval_id}")


def curate_files(
    files: Sequence[ImportedFile],
    config: CurateConfig,
    progress: tqdm | None = None,
    skipped: dict[str, list[str]] | None = None,
) -> Curated:
    """Curate already-imported files (in priority order) into canonical tables; the files'
    records are read, not changed.

    `progress`: a tqdm bar advanced once per row checked and once per distinct prompt
    sketched (its total is set here). `skipped`: files of folder sources not read for
    their suffix, per source, for the report.
    """
    if progress is not None:
        progress.total = sum(len(f.records) for f in files)
    with no_gc(), TextSpill() as texts:  # as in curate_into
        make_row = RowMaker(config, texts, compact=False)
        rows = []
        for file_index, imported in enumerate(files):
            for record in imported.records:
                rows.append(make_row(record, imported.role, file_index))
                if progress is not None:
                    progress.update(1)
        return _curate_rows(files, rows, config, texts, progress, skipped)


def _curate_rows(files: Sequence[ImportedFile], rows: list[_Row], config: CurateConfig, texts: TextSpill,
                 progress: tqdm | None, skipped: dict[str, list[str]] | None, read_texts: bool = True) -> Curated:
    """Steps 2-8 over the rows step 1 made, and the tables, quarantine and report.
    `read_texts` False: the responses table's text column holds spill indices (the stage
    writes it from the spill batch by batch, tables.write_spilled_responses)."""
    samples = _sample(rows, files)
    for row in _active(rows):
        if row.failed_check is not None:
            row.reject(*row.failed_check)
    _mark_exact_duplicates(rows)
    _mark_conflicts(rows)
    first_row_of_prompt = _mark_near_duplicates(rows, config, progress)
    _mark_contaminated(rows, config, first_row_of_prompt)
    kept = list(_active(rows))
    quarantine = _quarantine_frame(files, rows)
    report = _report(files, rows, quarantine)
    report["samples"] = samples
    report["skipped_files"] = dict(skipped or {})
    report["limits"] = {"max_file_bytes": config.max_file_bytes, "max_field_chars": config.max_field_chars}
    if not read_texts:  # the stage: tables built one at a time as they are written (write_curated)
        return Curated(PendingTables(kept, files, config), quarantine, report)
    tables = _build_tables(kept, files, config, texts)
    report.update(_table_counts(tables))
    # in memory: pandas frames, as callers read them
    return Curated({name: as_frame(name, table) for name, table in tables.items()}, quarantine, report)


def import_sources(params: Params, root: Path, data_roots: Sequence[Path] | None = None,
                   on_record: Callable[[Record], None] | None = None,
                   ) -> tuple[list[ImportedFile], dict[str, list[str]]]:
    """Every configured file, eval-role sources first (see module docstring), and the
    files each folder source skipped for their suffix. `data_roots`: folders outside the
    project that sources may read (default: PARETOFLOW_DATA_ROOTS). `on_record`: takes
    each record as it is read, instead of the files' record lists (importers.read_file)."""
    config = params.curate
    limits = Limits(max_file_bytes=config.max_file_bytes, max_field_chars=config.max_field_chars,
                    max_file_rows=config.max_file_rows)
    roots = data_roots_from_env() if data_roots is None else list(data_roots)
    files: list[ImportedFile] = []
    skipped: dict[str, list[str]] = {}
    for source in sorted(config.sources, key=lambda s: s.role != "eval"):  # stable sort
        found = read_source(source, params.objectives, root, limits, roots, on_record)
        files += found.files
        if found.skipped:
            skipped[source.path] = found.skipped
    return files, skipped


def curate(params: Params, root: Path = Path("."), progress: bool = False,
           data_roots: Sequence[Path] | None = None) -> Curated:
    """Import and curate params.curate.sources under root, in memory (nothing written)."""
    with no_gc(), TextSpill() as texts:  # as in curate_into
        return _curate_streamed(params, Path(root), progress, data_roots, texts, read_texts=True)


def _curate_streamed(params: Params, root: Path, progress: bool, data_roots: Sequence[Path] | None,
                     texts: TextSpill, read_texts: bool) -> Curated:
    # Records stream from the importer into rows as they are read, so the file's texts are
    # never all in memory: each row's responses go to the spill on arrival.
    with tqdm(desc="curate", unit="row", disable=not progress) as bar:
        make_row = RowMaker(params.curate, texts, compact=True)
        rows: list[_Row] = []

        def take(record: Record) -> None:
            rows.append(make_row(record))
            bar.update(1)

        files, skipped = import_sources(params, root, data_roots, on_record=take)
        make_row.prompts.clear()  # every row has its prompt: the turns → id map is done (~0.3 KB a prompt)
        _place(rows, files)
        bar.total = len(rows)
        bar.refresh()
        return _curate_rows(files, rows, params.curate, texts, bar, skipped, read_texts)


def _place(rows: list[_Row], files: Sequence[ImportedFile]) -> None:
    """File index and role of streamed rows: they came in file order, and every row of a
    file that is not in its quarantine became a record, hence a row."""
    position = 0
    for file_index, imported in enumerate(files):
        end = position + imported.rows_in - len(imported.quarantined)
        for index in range(position, end):
            rows[index].role, rows[index].file_index = imported.role, file_index
        position = end
    if position != len(rows):
        raise RuntimeError(f"row accounting broken: {len(rows)} streamed records, files account for {position}")


def write_result(curated: Curated, out_dir: Path, texts: TextSpill | None = None) -> CurateResult:
    """Write the curated folder; `texts`: the spill a stage run's responses table reads."""
    paths = write_curated(curated, out_dir, texts)  # puts the table counts in the report when it builds them
    counts = dict(curated.report["tables"])
    counts["quarantine"] = len(curated.quarantine)
    return CurateResult(out_dir, paths, counts, curated.report)


def run(params: Params, root: Path = Path("."), progress: bool = False,
        data_roots: Sequence[Path] | None = None) -> CurateResult:
    """The curate stage: read params.curate.sources under root, write <out_dir>/* (inside
    root, checked on the resolved path)."""
    out_dir = inside(root, params.curate.out_dir, what="curate.out_dir")
    return curate_into(params, out_dir, root, progress, data_roots)


def curate_into(params: Params, out_dir: Path, root: Path = Path("."), progress: bool = False,
                data_roots: Sequence[Path] | None = None) -> CurateResult:
    """Import, curate and write into out_dir as the stage does (`paretoflow import` names
    its own out_dir): records stream into rows and the response texts go from the spill
    to the file batch by batch, never all in memory at once (they are most of a
    dataset's bytes)."""
    # The cyclic collector stays off throughout (rows.no_gc): the steps and the table build
    # allocate while ~1M long-lived rows are held, and each full collection walked them all
    # (~3 % of a 100k run's samples in perf, more at 1M); the rows hold no cycles.
    with no_gc(), TextSpill() as texts:
        curated = _curate_streamed(params, Path(root), progress, data_roots, texts, read_texts=False)
        return write_result(curated, out_dir, texts)


