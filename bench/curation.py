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
"""

from __future__ import annotations

import argparse
import random
import sys
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
    args = parser.parse_args()

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


def run_timed(function, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return (time.perf_counter() - wall, time.process_time() - cpu), result


if __name__ == "__main__":
    main()
