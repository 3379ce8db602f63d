"""The curate stage: raw sources → deduplicated, decontaminated, split canonical tables.

    from paretoflow.data.curate import run
    result = run(params, root=Path("."))       # or: paretoflow curate

Steps, in order (each rejected row goes to the quarantine table with its reason):

1. import every file of `params.curate.sources` (importers.py; malformed rows are
   quarantined there with malformed_json, missing_field, wrong_type, ...);
2. normalise every text (normalize.py) and check rows: empty_text,
   chosen_equals_rejected, too_short / too_long (min_words / max_words on the prompt's
   turns together and on each response);
3. exact duplicates: a row whose normalised content (prompt, responses, ratings, pairs)
   equals an earlier row's → duplicate. Rows that share a prompt but bring different
   responses are not duplicates: they merge on the prompt id;
4. near duplicates: MinHash LSH over the distinct prompts (dedup.py); every row of a
   prompt that near-duplicates an earlier prompt → near_duplicate;
5. decontamination: train-role prompts whose n-gram overlap with eval-role prompts
   reaches decontam_threshold → contaminated;
6. split: eval-role prompts are always "test" (they are the held-out set the Pareto front
   is judged on); other prompts get train/val/test from their id hash (dedup.split_of),
   so adding rows never moves an existing prompt. Responses, ratings and pairs follow
   their prompt, so splits are prompt-disjoint.

"First" means: eval-role sources before train-role ones (a prompt present in both stays
held out), then sources in params order, then file order.

Outputs under `<root>/<curate.out_dir>`: prompts, responses, ratings, pairs, quarantine
(.parquet) and report.json. Same input → byte-identical files (rows sorted by id, no
timestamps, no pandas metadata), which DVC's caching relies on. After every run the
identity rows_in == rows_kept + rows_quarantined is checked per file (a row is one input
record, see importers.py) and a violation raises.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from paretoflow.config import CurateConfig, Params
from paretoflow.data.dedup import contaminated, content_key, near_duplicates, split_of
from paretoflow.data.importers import ImportedFile, Quarantined, Record, read_source
from paretoflow.data.normalize import normalize_text, word_count
from paretoflow.io import write_table, write_text
from paretoflow.schema import QUARANTINE_COLUMNS, frame, messages_json, pair_id, prompt_id, response_id

TABLE_NAMES = ("prompts", "responses", "ratings", "pairs")
# Every reason a row can be quarantined for (importers + curation).
REASONS = (
    "malformed_json", "malformed_row", "malformed_dialogue", "missing_field", "wrong_type",
    "undecodable_bytes", "nan_value", "rating_off_scale", "unknown_objective", "empty_text",
    "chosen_equals_rejected", "too_short", "too_long", "duplicate", "near_duplicate", "contaminated",
)


@dataclass
class Curated:
    """In-memory result of curation (no files written)."""

    tables: dict[str, pd.DataFrame]
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
        out = {f"rows_{k}": float(self.report[k]) for k in ("rows_in", "rows_kept", "rows_quarantined")}
        out.update({f"{name}_rows": float(n) for name, n in self.counts.items()})
        out.update({f"quarantined_{reason}": float(n) for reason, n in self.report["reasons"].items()})
        out.update({f"prompts_{split}": float(n) for split, n in self.report["prompts_per_split"].items()})
        return out


@dataclass
class _Row:
    """A record under curation: normalised texts and content ids."""

    record: Record
    role: str
    file_index: int
    messages: list[dict[str, str]]
    responses: list[str]
    prompt_id: str = ""
    response_ids: list[str] = field(default_factory=list)
    rejected: Quarantined | None = None

    def reject(self, reason: str, detail: str) -> None:
        r = self.record
        self.rejected = Quarantined(r.source, r.location, r.order, reason, detail, r.raw)


def _check(row: _Row, config: CurateConfig) -> None:
    """Row-level checks after normalisation; the first failing one is the reason."""
    for index, turn in enumerate(row.messages):
        if not turn["content"]:
            return row.reject("empty_text", f"messages[{index}] ({turn['role']}) is empty after normalisation")
    for index, text in enumerate(row.responses):
        if not text:
            return row.reject("empty_text", f"response {index} is empty after normalisation")
    for pair in row.record.pairs:
        if row.responses[pair.chosen_index] == row.responses[pair.rejected_index]:
            return row.reject("chosen_equals_rejected", f"{pair.objective}: chosen and rejected texts are identical")
    prompt_words = sum(word_count(t["content"]) for t in row.messages)
    texts = [("prompt", prompt_words)] + [(f"response {i}", word_count(t)) for i, t in enumerate(row.responses)]
    for what, words in texts:
        if words < config.min_words:
            return row.reject("too_short", f"{what} has {words} words < min_words {config.min_words}")
        if words > config.max_words:
            return row.reject("too_long", f"{what} has {words} words > max_words {config.max_words}")
    return None


def _dialogue_text(messages: list[dict[str, str]]) -> str:
    return "\n".join(t["content"] for t in messages)


def _last_user_turn(messages: list[dict[str, str]]) -> str:
    return next(t["content"] for t in reversed(messages) if t["role"] == "user")


def curate_files(
    files: Sequence[ImportedFile],
    config: CurateConfig,
    progress: tqdm | None = None,
) -> Curated:
    """Curate already-imported files (in priority order) into canonical tables.

    `progress`: a tqdm bar advanced once per row checked and once per distinct prompt
    sketched (its total is set here).
    """
    if progress is not None:
        progress.total = sum(len(f.records) for f in files)
    rows: list[_Row] = []
    prompt_ids: dict[tuple[tuple[str, str], ...], str] = {}  # rows share prompts: hash each once
    for file_index, imported in enumerate(files):
        for record in imported.records:
            row = _Row(
                record, imported.role, file_index,
                [{"role": t["role"], "content": normalize_text(t["content"])} for t in record.messages],
                [normalize_text(t) for t in record.responses],
            )
            _check(row, config)
            if row.rejected is None:
                turns = tuple((t["role"], t["content"]) for t in row.messages)
                row.prompt_id = prompt_ids.get(turns) or prompt_ids.setdefault(turns, prompt_id(row.messages))
                row.response_ids = [response_id(row.prompt_id, t) for t in row.responses]
            rows.append(row)
            if progress is not None:
                progress.update(1)

    # Exact duplicates: the whole normalised content of a row.
    first_by_key: dict[str, _Row] = {}
    for row in rows:
        if row.rejected is not None:
            continue
        record = row.record
        key = content_key(
            row.prompt_id,
            *sorted(row.response_ids),
            *sorted(f"{row.response_ids[r.response_index]}|{r.objective}|{r.value!r}|{r.rater}" for r in record.ratings),
            *sorted(f"{row.response_ids[p.chosen_index]}>{row.response_ids[p.rejected_index]}|{p.objective}|{p.margin!r}"
                    for p in record.pairs),
        )
        kept = first_by_key.setdefault(key, row)
        if kept is not row:
            row.reject("duplicate", f"same content as {kept.record.source} {kept.record.location}")

    # Near duplicates over distinct prompts, in first-occurrence order.
    first_row_of_prompt: dict[str, _Row] = {}
    for row in rows:
        if row.rejected is None:
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
    for row in rows:
        if row.rejected is None and row.prompt_id in near_dup_of:
            kept_id, similarity = near_dup_of[row.prompt_id]
            kept = first_row_of_prompt[kept_id].record
            row.reject("near_duplicate", f"Jaccard {similarity:.2f} with prompt {kept_id} ({kept.source} {kept.location})")

    # Decontamination: train-role prompts against eval-role prompts.
    eval_ids = sorted({r.prompt_id for r in rows if r.rejected is None and r.role == "eval"})
    train_ids = sorted({r.prompt_id for r in rows if r.rejected is None and r.role == "train"})
    hits = contaminated(
        [_dialogue_text(first_row_of_prompt[p].messages) for p in train_ids],
        [_dialogue_text(first_row_of_prompt[p].messages) for p in eval_ids],
        n=config.decontam_ngram, threshold=config.decontam_threshold,
    )
    contaminated_ids = {train_ids[h.index]: (eval_ids[h.held_out], h.fraction) for h in hits}
    for row in rows:
        if row.rejected is None and row.role == "train" and row.prompt_id in contaminated_ids:
            eval_id, fraction = contaminated_ids[row.prompt_id]
            row.reject("contaminated", f"{fraction:.2f} of its {config.decontam_ngram}-grams occur in eval prompt {eval_id}")

    kept_rows = [r for r in rows if r.rejected is None]
    tables = _build_tables(kept_rows, files, config)
    quarantine = _quarantine_frame(files, rows)
    report = _report(files, rows, tables, quarantine)
    return Curated(tables, quarantine, report)


def _build_tables(kept_rows: list[_Row], files: Sequence[ImportedFile], config: CurateConfig) -> dict[str, pd.DataFrame]:
    eval_prompts = {r.prompt_id for r in kept_rows if r.role == "eval"}
    prompts: dict[str, dict[str, Any]] = {}
    tags: dict[str, set[str]] = defaultdict(set)
    responses: dict[str, dict[str, Any]] = {}
    ratings: dict[tuple[str, str, str], dict[str, Any]] = {}
    pairs: dict[str, dict[str, Any]] = {}
    # (file, prompt, objective, rater) → {response_id: value}, for derived pairs.
    rating_groups: dict[tuple[int, str, str, str], dict[str, float]] = defaultdict(dict)

    for row in kept_rows:
        record, pid = row.record, row.prompt_id
        if pid not in prompts:
            prompts[pid] = {
                "prompt_id": pid,
                "messages": messages_json(row.messages),
                "text": _last_user_turn(row.messages),
                "source": record.source,
                "split": "test" if pid in eval_prompts else split_of(pid, config.split_fractions),
            }
        tags[pid].update(record.tags)
        for rid, text in zip(row.response_ids, row.responses, strict=True):
            responses.setdefault(rid, {"response_id": rid, "prompt_id": pid, "text": text, "origin": record.source})
        for rating in record.ratings:
            rid = row.response_ids[rating.response_index]
            ratings.setdefault((rid, rating.objective, rating.rater), {
                "response_id": rid, "objective": rating.objective, "value": rating.value,
                "scale_min": rating.scale_min, "scale_max": rating.scale_max, "rater": rating.rater,
            })
            if files[row.file_index].derive_pairs:
                rating_groups[(row.file_index, pid, rating.objective, rating.rater)].setdefault(rid, rating.value)
        for pair in record.pairs:
            chosen, rejected = row.response_ids[pair.chosen_index], row.response_ids[pair.rejected_index]
            xid = pair_id(pid, chosen, rejected, pair.objective)
            pairs.setdefault(xid, {
                "pair_id": xid, "prompt_id": pid, "chosen_id": chosen, "rejected_id": rejected,
                "objective": pair.objective, "margin": pair.margin, "source": record.source,
            })

    # Pairs derived from ratings of responses to the same prompt (HelpSteer2, generic):
    # every ordered pair with a strictly higher rating, margin = the rating difference.
    for (file_index, pid, objective, _rater), values in sorted(rating_groups.items()):
        ordered = sorted(values.items())
        for i, (rid_a, value_a) in enumerate(ordered):
            for rid_b, value_b in ordered[i + 1:]:
                if value_a == value_b:
                    continue
                chosen, rejected = (rid_a, rid_b) if value_a > value_b else (rid_b, rid_a)
                xid = pair_id(pid, chosen, rejected, objective)
                pairs.setdefault(xid, {
                    "pair_id": xid, "prompt_id": pid, "chosen_id": chosen, "rejected_id": rejected,
                    "objective": objective, "margin": abs(value_a - value_b), "source": files[file_index].path,
                })

    for pid, row in prompts.items():
        row["tags"] = json.dumps(sorted(tags[pid]), ensure_ascii=False)
    return {
        "prompts": frame("prompts", [prompts[k] for k in sorted(prompts)]),
        "responses": frame("responses", [responses[k] for k in sorted(responses)]),
        "ratings": frame("ratings", [ratings[k] for k in sorted(ratings)]),
        "pairs": frame("pairs", [pairs[k] for k in sorted(pairs)]),
    }


def _quarantine_frame(files: Sequence[ImportedFile], rows: list[_Row]) -> pd.DataFrame:
    entries: list[tuple[int, Quarantined]] = []
    for file_index, imported in enumerate(files):
        entries.extend((file_index, q) for q in imported.quarantined)
    entries.extend((r.file_index, r.rejected) for r in rows if r.rejected is not None)
    entries.sort(key=lambda fq: (fq[0], fq[1].order))
    return frame("quarantine", [q.row() for _, q in entries])


def _report(files: Sequence[ImportedFile], rows: list[_Row], tables: dict[str, pd.DataFrame],
            quarantine: pd.DataFrame) -> dict[str, Any]:
    kept_per_file = Counter(r.file_index for r in rows if r.rejected is None)
    sources: dict[str, Any] = {}
    for file_index, imported in enumerate(files):
        reasons = Counter(q.reason for q in imported.quarantined)
        reasons.update(r.rejected.reason for r in rows if r.file_index == file_index and r.rejected is not None)
        kept, quarantined = kept_per_file[file_index], sum(reasons.values())
        if imported.rows_in != kept + quarantined:
            raise RuntimeError(
                f"{imported.path}: row accounting broken: rows_in {imported.rows_in} != "
                f"kept {kept} + quarantined {quarantined}"
            )
        sources[imported.path] = {
            "format": imported.format, "role": imported.role, "rows_in": imported.rows_in,
            "rows_kept": kept, "rows_quarantined": quarantined, "reasons": dict(sorted(reasons.items())),
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
        "reasons": dict(sorted(Counter(quarantine["reason"]).items())),
        "tables": {name: len(tables[name]) for name in TABLE_NAMES},
        "prompts_per_split": {s: int((prompts["split"] == s).sum()) for s in ("train", "val", "test")},
        "pairs_per_objective_split": {k: pairs_per_objective[k] for k in sorted(pairs_per_objective)},
        "ratings_per_objective": dict(sorted(Counter(tables["ratings"]["objective"]).items())),
        "sources": sources,
    }


def write_curated(curated: Curated, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.parquet" for name in (*TABLE_NAMES, "quarantine")}
    for name in TABLE_NAMES:
        write_table(curated.tables[name], paths[name])
    write_table(curated.quarantine[QUARANTINE_COLUMNS], paths["quarantine"])
    paths["report"] = out_dir / "report.json"
    write_text(paths["report"], json.dumps(curated.report, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return paths


def import_sources(params: Params, root: Path) -> list[ImportedFile]:
    """Every configured file, eval-role sources first (see module docstring)."""
    sources = sorted(params.curate.sources, key=lambda s: s.role != "eval")  # stable sort
    return [f for source in sources for f in read_source(source, params.objectives, root)]


def run(params: Params, root: Path = Path("."), progress: bool = False) -> CurateResult:
    """The curate stage: read params.curate.sources under root, write <out_dir>/*."""
    root = Path(root)
    files = import_sources(params, root)
    with tqdm(desc="curate", unit="row", disable=not progress) as bar:
        curated = curate_files(files, params.curate, progress=bar)
    out_dir = root / params.curate.out_dir
    paths = write_curated(curated, out_dir)
    counts = {name: len(curated.tables[name]) for name in TABLE_NAMES}
    counts["quarantine"] = len(curated.quarantine)
    return CurateResult(out_dir, paths, counts, curated.report)


def report_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table (one line per source, then reasons and tables)."""
    lines = [f"{'source':<48} {'format':<14} {'role':<5} {'in':>8} {'kept':>8} {'quarantined':>11}"]
    for path, s in report["sources"].items():
        lines.append(f"{path[-48:]:<48} {s['format']:<14} {s['role']:<5} {s['rows_in']:>8} "
                     f"{s['rows_kept']:>8} {s['rows_quarantined']:>11}")
        if s["ignored_attributes"]:
            lines.append(f"{'':<4}ignored attributes: {s['ignored_attributes']}")
    lines.append(f"{'total':<69} {report['rows_in']:>8} {report['rows_kept']:>8} {report['rows_quarantined']:>11}")
    if report["reasons"]:
        lines.append("quarantined: " + ", ".join(f"{k} {v}" for k, v in report["reasons"].items()))
    lines.append("tables: " + ", ".join(f"{k} {v}" for k, v in report["tables"].items()))
    lines.append("prompts per split: " + ", ".join(f"{k} {v}" for k, v in report["prompts_per_split"].items()))
    for objective, per_split in report["pairs_per_objective_split"].items():
        lines.append(f"pairs {objective}: " + ", ".join(f"{k} {v}" for k, v in per_split.items()))
    return "\n".join(lines)
