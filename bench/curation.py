"""Curation throughput: paretoflow's curate path against a naive pandas baseline.

Generates N synthetic preference pairs (default 200k) that share prompts (4 pairs per
prompt, as UltraFeedback-style data does), with planted exact duplicates (2% of rows
copied) and near-duplicate prompts (2% of prompts with one word appended), plus unicode
noise (full-width letters, doubled spaces, zero-width spaces) for the normaliser.

Both sides do the same work in the same process: normalise prompt/chosen/rejected,
validation-style checks (empty text, chosen == rejected, word-length bounds), exact
dedup, near-duplicate prompt removal.

- ours: `paretoflow.data.curate.curate_files` (what `paretoflow curate` runs after
  reading files): NFKC + translate-table normaliser, sha256 content keys, MinHash LSH
  over the distinct prompts with vectorised sketches, exact-Jaccard confirmation; it also
  builds the canonical tables and the quarantine table.
- naive: pandas `.apply` normaliser (per-character category test), row-wise `.apply`
  checks, `drop_duplicates`, and near-dup by blocking on the first two words with a
  python-set Jaccard against every kept prompt of the block (no LSH).

Prints pairs/minute for both (wall and CPU time), their ratio, and how many planted
near-duplicate prompt pairs each resolved (one of the two removed). Blocking misses
near-dups whose first words differ; the planted ones differ by an appended word, so the
baseline is not handicapped on recall here.

    .venv/bin/python bench/curation.py            # 200k pairs
    .venv/bin/python bench/curation.py --n 20000  # quicker

End to end from a file (issue 22): `--sizes 10000,100000,1000000` writes a JSON Lines file
of N generated pairs per size (prompts ~100-600 characters, answers ~200-2,000, 4 pairs
per prompt, 2 % exact duplicates) and times, each in a fresh subprocess so peak RSS is
its own: a plain `pyarrow.json.read_json` of the file, `paretoflow import` of it
(readers + importers: rows → records) and import + curate as the stage runs it (tables
and report written, rows in = kept + quarantined checked). Prints rows/s (wall), peak
RSS (VmHWM) and each phase's time and RSS as a multiple of the pyarrow read's. `--max-rss-gb` kills a phase above that RSS
(polled from /proc) and reports it as killed, so a size that does not fit cannot take
the shared machine down.

    .venv/bin/python bench/curation.py --sizes 10000,100000 --max-rss-gb 6
    .venv/bin/python bench/curation.py --sizes 1000000 --phases import+curate   # 2.9 GB file, minutes
    .venv/bin/python bench/curation.py --sizes 100000 --file-format csv         # or json, parquet, jsonl.gz

Measured on the shared 2-core machine (2026-12-02, other jobs running):

    pairs   file     pyarrow read         import               import + curate (written)
    10k     29 MB    63k rows/s, 286 MB   20-30k rows/s, 244 MB  3.4-6.5k rows/s, 372 MB
    100k    287 MB   65k rows/s, 817 MB   23k rows/s, 693 MB     5.1-6.3k rows/s, 1.27-1.40 GB
    1M      2.9 GB   52k rows/s, 6.0 GB   21k rows/s, 5.6 GB     past 7 GB (curate holds every text)

2026-12-03, after curate streamed rows and spilled texts to disk (docs/measurements.md,
"Data"); the same machine heavily shared (times 2-4x an idle run's, compare RSS):

    10k     29 MB    44k rows/s, 259 MB   7.7k rows/s, 217 MB    1.8k rows/s, 295 MB
    100k    287 MB   29k rows/s, 752 MB   6.4k rows/s, 669 MB    3.4k rows/s, 496 MB
    1M      2.9 GB   -                    -                      finished, 2.88 GB (2,113 s on cores held by others)

2026-12-04, tables built as Arrow columns one table at a time and ~0.6 KB a row after
import (data/canonical.py, tables.ResponseIds); before (d6b54d5) and after in one session,
both under nice -n 19 beside other jobs (compare RSS; 1M with `--phases import+curate`):

    100k    287 MB   25k rows/s, 794-818 MB  41-44k rows/s, 666-672 MB  5.8k -> 7.1k rows/s, 453 -> 348 MB
    1M      2.9 GB   -                    -                      2.9k rows/s (340 s), 1,350 MB
    1M      2.9 GB   -                    -                      idle (lead, 3b19722): 6.3k rows/s (159 s), 1,345 MB

2026-12-04 (helper-12, branch data6): spill writes and the responses table's Parquet
encoding in background threads (the write syscalls and pyarrow release the GIL), the
cyclic GC off through curate, fewer per-row recounts and re-encodes (docs/measurements.md,
"Data"). Import + curate, main (946be20) vs data6 in one session, nice -n 19 beside a job
of the lead's that held 1-2 cores, so wall times say little; CPU seconds are all threads':

    100k    CPU user 7.2-7.8 s -> 6.8 s (two runs each; sys 2.3-4.0 s either way, noise)
    1M      main  118.0 s CPU (86.9 user + 31.1 sys), 518 s wall (starved), 1,361 MB
    1M      data6 (f5d657d) 107.8 s CPU (73.8 + 33.9), 125 s wall = 8.0k rows/s, 1,359 MB
    1M      data6 (7d40058) 106.7 s CPU (79.3 + 27.5), 404 s wall (starved), 1,361 MB

2026-12-07, every reader streaming (docs/measurements.md, "Data"), import + curate of 1M
pairs per `--file-format`, peak RSS: csv 1,370 MB, parquet (one row group) 1,365 MB,
json (one array) 1,347 MB, jsonl.gz 1,378 MB, jsonl 1,362 MB; 7-8.5k pairs/s each.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from paretoflow.config import CurateConfig  # noqa: E402
from paretoflow.data.curate import curate_files  # noqa: E402
from paretoflow.data.dedup import jaccard, shingles  # noqa: E402
from paretoflow.data.importers import ImportedFile, Pair, Record  # noqa: E402
from paretoflow.data.normalize import normalize_text  # noqa: E402

PAIRS_PER_PROMPT = 4
EXACT_DUP_RATE = 0.02
NEAR_DUP_RATE = 0.02
FILE_FORMATS = ("jsonl", "jsonl.gz", "csv", "json", "parquet")
PARQUET_GROUP_ROWS = 1 << 20  # pyarrow's and pandas' default row group (1Mi rows): a 1M-pair file is one group


def synthesize(n_pairs: int, seed: int = 0) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    """Rows {prompt, chosen, rejected}, and the planted (original, near-duplicate) prompts."""
    rng = random.Random(seed)
    vocab = [f"{rng.choice('bcdfghklmnprst')}{rng.choice('aeiou')}{rng.choice('bcdfghklmnprst')}{i}"
             for i in range(20000)]
    cumulative, total = [], 0.0
    for rank in range(len(vocab)):
        total += 1.0 / (rank + 1)  # Zipf-like word frequencies
        cumulative.append(total)

    def sentence(low: int, high: int) -> str:
        return " ".join(rng.choices(vocab, cum_weights=cumulative, k=rng.randint(low, high)))

    def noisy(text: str) -> str:
        roll = rng.random()
        if roll < 0.05:
            return text.replace("a", "\uff41")  # full-width a: NFKC folds it back
        if roll < 0.10:
            return text.replace(" ", "  ", 3) + "\u200b"
        return text

    n_prompts = max(1, n_pairs // PAIRS_PER_PROMPT)
    prompts = [sentence(8, 40) for _ in range(n_prompts)]
    planted = []
    for index in rng.sample(range(n_prompts), int(n_prompts * NEAR_DUP_RATE)):
        if len(prompts[index].split()) >= 20:  # long enough that one extra word stays >= 0.8 Jaccard
            prompts.append(prompts[index] + " " + rng.choice(vocab))
            planted.append((prompts[index], prompts[-1]))
    rows = []
    n_unique = n_pairs - int(n_pairs * EXACT_DUP_RATE)
    while len(rows) < n_unique:
        prompt = prompts[len(rows) % len(prompts)]
        rows.append({"prompt": noisy(prompt), "chosen": noisy(sentence(20, 80)), "rejected": sentence(20, 80)})
    rows += [dict(r) for r in rng.sample(rows, n_pairs - n_unique)]
    rng.shuffle(rows)
    return rows, planted


# --------------------------------------------------------------------------- ours


def as_imported(rows: list[dict[str, str]]) -> ImportedFile:
    records = [
        Record("synthetic", f"row {i + 1}", i, "", [{"role": "user", "content": r["prompt"]}],
               responses=[r["chosen"], r["rejected"]], pairs=[Pair(0, 1, "helpfulness", 1.0)])
        for i, r in enumerate(rows)
    ]
    return ImportedFile("synthetic", "generic", "train", len(rows), records, [])


def run_ours(rows: list[dict[str, str]], config: CurateConfig):
    return curate_files([as_imported(rows)], config)


# --------------------------------------------------------------------------- naive


def naive_normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf") or ch == "\n")
    return " ".join(text.split())


def naive_near_duplicates(texts: list[str], threshold: float, size: int) -> set[int]:
    blocks: dict[tuple[str, ...], list[set]] = defaultdict(list)
    removed = set()
    for index, text in enumerate(texts):
        words = text.lower().split()
        block = blocks[tuple(words[:2])]
        shingle_set = shingles(text, size)
        if any(jaccard(shingle_set, kept) >= threshold for kept in block):
            removed.add(index)
        else:
            block.append(shingle_set)
    return removed


def run_naive(rows: list[dict[str, str]], config: CurateConfig) -> dict:
    df = pd.DataFrame(rows)
    for column in ("prompt", "chosen", "rejected"):
        df[column] = df[column].apply(naive_normalize)

    def problem(row) -> str:
        if not row["prompt"] or not row["chosen"] or not row["rejected"]:
            return "empty_text"
        if row["chosen"] == row["rejected"]:
            return "chosen_equals_rejected"
        for column in ("prompt", "chosen", "rejected"):
            words = len(row[column].split())
            if words < config.min_words or words > config.max_words:
                return "length"
        return ""

    df["problem"] = df.apply(problem, axis=1)
    df = df[df["problem"] == ""]
    before = len(df)
    df = df.drop_duplicates(subset=["prompt", "chosen", "rejected"])
    exact = before - len(df)
    unique_prompts = df["prompt"].drop_duplicates().tolist()
    removed = naive_near_duplicates(unique_prompts, config.near_dup_threshold, config.shingle_size)
    removed_texts = {unique_prompts[i] for i in removed}
    kept = df[~df["prompt"].isin(removed_texts)]
    return {"duplicate": exact, "near_dup_prompts": len(removed), "kept": len(kept),
            "kept_prompts": kept["prompt"].drop_duplicates().tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="synthetic pairs (default 200000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", default="", help="end to end from a file: comma-separated pair counts")
    parser.add_argument("--max-rss-gb", type=float, default=6.0, help="kill a phase above this peak RSS")
    parser.add_argument("--phases", default="pyarrow,import,import+curate",
                        help="end to end: which phases (the pyarrow read alone peaks ~6 GB at 1M pairs)")
    parser.add_argument("--lengths", choices=("uniform", "log-uniform"), default="uniform",
                        help="end to end: text lengths uniform in their ranges (2.9 GB at 1M pairs) or "
                             "log-uniform in the same ranges (right-skewed like real answers; 2.1 GB)")
    parser.add_argument("--file-format", choices=FILE_FORMATS, default="jsonl",
                        help="end to end: the file the pairs are written to (csv: one header and a record a "
                             "pair; json: one array; parquet: row groups of PARQUET_GROUP_ROWS; jsonl.gz: gzip -1)")
    parser.add_argument("--phase", nargs=2, metavar=("PHASE", "FILE"), help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.phase:
        return run_phase(*args.phase)
    if args.sizes:
        return end_to_end([int(n) for n in args.sizes.split(",")], args.seed, args.max_rss_gb, args.phases.split(","),
                          args.lengths, args.file_format)

    config = CurateConfig(sources=[])  # params.yaml defaults: 128 perms, Jaccard 0.8, 3-shingles
    rows, planted = synthesize(args.n, args.seed)
    print(f"{len(rows):,} pairs over ~{len(rows) // PAIRS_PER_PROMPT:,} prompts; "
          f"{int(args.n * EXACT_DUP_RATE):,} exact-duplicate rows and {len(planted):,} near-duplicate prompts planted")

    # Wall time is what a user waits; CPU time is shown too because the bench machines are
    # shared (wall time then includes waiting for a core).
    (ours_wall, ours_cpu), curated = run_timed(run_ours, rows, config)
    (naive_wall, naive_cpu), naive = run_timed(run_naive, rows, config)
    report = curated.report

    ours_kept = set(curated.tables["prompts"]["text"])
    naive_kept = set(naive["kept_prompts"])
    ours_found = sum(1 for a, b in planted if not (normalize_text(a) in ours_kept and normalize_text(b) in ours_kept))
    naive_found = sum(1 for a, b in planted if not (naive_normalize(a) in naive_kept and naive_normalize(b) in naive_kept))
    for name, wall, cpu in (("ours", ours_wall, ours_cpu), ("naive", naive_wall, naive_cpu)):
        print(f"{name:<5}: wall {wall:7.2f} s ({len(rows) / wall * 60:>11,.0f} pairs/min)   "
              f"cpu {cpu:7.2f} s ({len(rows) / cpu * 60:>11,.0f} pairs/min)")
    print(f"ours / naive speed-up: wall {naive_wall / ours_wall:.1f}x, cpu {naive_cpu / ours_cpu:.1f}x")
    print(f"ours  kept {report['rows_kept']:,} rows, quarantined {report['reasons']}")
    print(f"naive kept {naive['kept']:,} rows, {naive['duplicate']:,} exact duplicates, "
          f"{naive['near_dup_prompts']:,} near-duplicate prompts")
    print(f"planted near-duplicate prompt pairs resolved: ours {ours_found:,}/{len(planted):,}, "
          f"naive {naive_found:,}/{len(planted):,}")


# --------------------------------------------------------------------------- end to end from a file


def write_realistic(path: Path, n_pairs: int, seed: int, lengths: str = "uniform") -> None:
    """N pairs as JSON Lines: prompts ~100-600 characters, answers ~200-2,000 (words drawn
    from a 5,000-word vocabulary), 4 pairs per prompt, 2 % exact duplicate rows.

    `lengths`: "uniform" in those ranges (mean ~2.9 KB a row), or "log-uniform" in the same
    ranges (mean ~2.1 KB): as many answers of 200-630 characters as of 630-2,000, the
    right skew real answers have (mean above median in both files of shared/data: HH-RLHF
    responses 188 vs 125 characters, AlpacaEval rejected 917 vs 691). Issue 22 states both
    the ranges and "~1.5 GB" for 1M pairs, which uniform lengths do not give."""
    rng = random.Random(seed)
    vocab = [f"{rng.choice('bcdfghklmnprst')}{rng.choice('aeiou')}{rng.choice('bcdfghklmnprst')}{i}" for i in range(5000)]

    def chars(low: int, high: int) -> int:
        if lengths == "uniform":
            return rng.randint(low, high)
        return round(math.exp(rng.uniform(math.log(low), math.log(high))))

    def text(low_chars: int, high_chars: int) -> str:
        return " ".join(rng.choices(vocab, k=chars(low_chars, high_chars) // 7))

    prompts = [text(100, 600) for _ in range(max(1, n_pairs // PAIRS_PER_PROMPT))]
    with path.open("w", encoding="utf-8") as fh:
        previous = None
        for i in range(n_pairs):
            if previous is not None and rng.random() < EXACT_DUP_RATE:
                fh.write(previous)
                continue
            row = {"prompt": prompts[i % len(prompts)], "chosen": text(200, 2000), "rejected": text(200, 2000)}
            previous = json.dumps(row) + "\n"
            fh.write(previous)


def convert(jsonl: Path, file_format: str) -> Path:
    """The pairs of `jsonl` written as `file_format` beside it (streamed, a line at a time
    or in Arrow batches); the JSON Lines file is removed."""
    import csv
    import gzip

    out = jsonl.with_suffix("." + file_format)
    if file_format == "parquet":
        import pyarrow as pa
        import pyarrow.json as paj
        import pyarrow.parquet as pq

        reader = paj.open_json(jsonl, read_options=paj.ReadOptions(block_size=1 << 24))
        with pq.ParquetWriter(out, reader.schema) as writer:
            group, rows = [], 0  # batches held until they make a row group (write_batch makes one per batch)
            for batch in reader:
                group.append(batch)
                rows += batch.num_rows
                if rows >= PARQUET_GROUP_ROWS:
                    writer.write_table(pa.Table.from_batches(group), row_group_size=PARQUET_GROUP_ROWS)
                    group, rows = [], 0
            if group:
                writer.write_table(pa.Table.from_batches(group), row_group_size=PARQUET_GROUP_ROWS)
    else:
        with jsonl.open(encoding="utf-8") as lines, (gzip.open(out, "wt", compresslevel=1, encoding="utf-8")
                                                     if file_format == "jsonl.gz" else
                                                     out.open("w", encoding="utf-8", newline="")) as fh:
            if file_format == "csv":
                writer = csv.writer(fh)
                writer.writerow(["prompt", "chosen", "rejected"])
                writer.writerows([r["prompt"], r["chosen"], r["rejected"]] for r in map(json.loads, lines))
            elif file_format == "json":
                fh.write("[")
                for i, line in enumerate(lines):
                    fh.write(("," if i else "") + "\n" + line.rstrip("\n"))
                fh.write("\n]\n")
            else:
                for line in lines:
                    fh.write(line)
    jsonl.unlink()
    return out


def _baseline_rows(path: Path) -> int:
    """Rows of a plain pyarrow (or, for a JSON array, the json module's) read of the file."""
    name = path.name
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).num_rows
    if name.endswith(".csv"):
        import pyarrow.csv as pac

        return pac.read_csv(path, read_options=pac.ReadOptions(block_size=1 << 24)).num_rows
    if name.endswith(".json"):  # pyarrow reads no JSON arrays
        with path.open("rb") as fh:
            return len(json.load(fh))
    import pyarrow.json as paj

    return paj.read_json(path, read_options=paj.ReadOptions(block_size=1 << 24)).num_rows


def run_phase(phase: str, file: str) -> None:
    """One phase in this (child) process; prints {"rows", "seconds", "peak_rss_mb"}."""
    from paretoflow.config import Objective, Params, SourceConfig
    from paretoflow.data.curate import run
    from paretoflow.data.importers import Limits, read_file

    path = Path(file)
    start = time.perf_counter()
    if phase == "pyarrow":
        rows = _baseline_rows(path)
    elif phase == "import":
        rows = read_file(path, [Objective(name="helpfulness")], format="generic", objective="helpfulness",
                         limits=Limits(max_file_bytes=4 << 30)).rows_in  # 1M pairs are ~2.9 GB
    else:
        params = Params(objectives=[Objective(name="helpfulness")], curate={
            "max_file_bytes": 4 << 30, "sources": [SourceConfig(path=path.name, format="generic", objective="helpfulness")]})
        result = run(params, path.parent)  # the stage as `paretoflow curate` runs it: tables written
        rows = result.report["rows_in"]
        assert rows == result.report["rows_kept"] + result.report["rows_quarantined"], result.report
    seconds = time.perf_counter() - start
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mb": _hwm_mb()}))


def _hwm_mb() -> float:
    """This process image's peak RSS: VmHWM starts anew at exec, unlike ru_maxrss, which
    keeps the forking parent's peak (a bench run that had generated a big file)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024
    except (OSError, StopIteration):
        return 0.0


def _watched(command: list[str], max_rss_mb: float) -> dict:
    """Run a phase; kill it once its RSS passes max_rss_mb (polled every 0.2 s)."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    start, peak = time.perf_counter(), 0.0
    while child.poll() is None:
        peak = max(peak, _rss_mb(child.pid))
        if peak > max_rss_mb:
            child.kill()
            child.wait()
            return {"killed": True, "seconds": time.perf_counter() - start, "peak_rss_mb": peak}
        time.sleep(0.2)
    out = child.stdout.read().strip().splitlines()
    return json.loads(out[-1]) if child.returncode == 0 and out else {"failed": child.returncode}


def end_to_end(sizes: list[int], seed: int, max_rss_gb: float,
               phases: list[str] = ("pyarrow", "import", "import+curate"), lengths: str = "uniform",
               file_format: str = "jsonl") -> None:
    with tempfile.TemporaryDirectory(prefix="pf-bench-") as tmp:
        for n in sizes:
            path = Path(tmp) / f"pairs_{n}.jsonl"
            write_realistic(path, n, seed, lengths)
            if file_format != "jsonl":
                path = convert(path, file_format)
            print(f"{n:,} pairs, {path.stat().st_size / 1e6:,.0f} MB as {file_format} ({lengths} lengths)")
            baseline = None
            for phase in [p for p in ("pyarrow", "import", "import+curate") if p in phases]:
                result = _watched([sys.executable, __file__, "--phase", phase, str(path)], max_rss_gb * 1024)
                if "rows" in result:
                    baseline = baseline or result
                    ratio = (f"  {result['seconds'] / baseline['seconds']:5.1f}x the time, "
                             f"{result['peak_rss_mb'] / baseline['peak_rss_mb']:4.1f}x the RSS of pyarrow")
                    print(f"  {phase:<14} {result['rows'] / result['seconds']:>9,.0f} rows/s  "
                          f"{result['seconds']:7.1f} s  peak RSS {result['peak_rss_mb']:7,.0f} MB"
                          + (ratio if result is not baseline else ""))
                elif result.get("killed"):
                    print(f"  {phase:<14} killed at {result['peak_rss_mb']:,.0f} MB RSS after {result['seconds']:.1f} s "
                          f"(--max-rss-gb {max_rss_gb:g})")
                else:
                    print(f"  {phase:<14} failed (exit {result['failed']})")
            path.unlink()


def run_timed(function, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return (time.perf_counter() - wall, time.process_time() - cpu), result


if __name__ == "__main__":
    main()
