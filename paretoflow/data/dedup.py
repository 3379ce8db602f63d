"""Duplicate, near-duplicate and contamination detection, and the hash-based split.

- Exact duplicates, first: identical lines are dropped by a 16-byte digest before they
  are parsed (readers.py), then rows of identical normalised content by `content_key`
  (curate step 4: 8 bytes of hash a row, then the exact keys of the rows whose hash
  repeats; a 64-character hex key and its dict slot were ~150 bytes a row, measured);
  MinHash sees distinct prompts only.
- Near duplicates: MinHash LSH (datasketch's sketches and banding, applied in numpy
  blocks: `near_duplicates`) over word k-shingles, then the exact
  Jaccard of the two shingle sets confirms each LSH candidate, so the LSH only prunes
  comparisons and never decides on its own (at 128 permutations its Jaccard estimate
  has a standard error of sqrt(J(1-J)/128) = 0.035 at J = 0.8). Texts are visited in
  the caller's order and each is compared with the texts kept so far: the first of a
  cluster is its representative, later members are duplicates of it. Unlike
  connected-component clustering (Lee et al. 2022), a chain A~B~C where A and C differ
  keeps C: only texts close to a kept text go.
- Contamination: the fraction of a training text's word n-grams that occur in any held-
  out text (GPT-3 appendix C / Tulu 3 style). Texts shorter than n words have no n-gram;
  they count as contaminated only when their whole token sequence equals a held-out
  text's (otherwise a one-word prompt would match any held-out prompt using that word).
- Split: a prompt's split is a pure function of its id hash, so adding rows never moves
  an existing prompt, and every response/rating/pair follows its prompt.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import regex
from datasketch import LeanMinHash, MinHash, MinHashLSH
from datasketch.minhash import _fmix  # the affine32 pre-mix; equality with MinHash.bulk is tested

_WORD = re.compile(r"\w+")
# Scripts written without spaces between words (Chinese, Japanese, Thai, Lao, Khmer,
# Burmese): `\w+` read a whole clause as one word, so two prompts one character apart
# shared no shingle and near-dup and contamination never saw them. There each character
# (with its combining marks) is a token, as in BERT's basic tokenizer for CJK; elsewhere a
# word keeps its combining marks (Devanagari vowel signs, decomposed accents), which `\w`
# leaves out. The `regex` module (already installed with transformers) has the Unicode
# script and mark classes `re` lacks; it is ~7x slower than `re` on English, so ASCII
# texts keep `re` (the same tokens: neither class can occur in ASCII).
_UNSPACED = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
_TOKEN = regex.compile(rf"[{_UNSPACED}]\p{{M}}*|(?:[^\W{_UNSPACED}]|\p{{M}})+")


def content_key(*parts: str) -> str:
    """Exact-duplicate key: sha256 over the parts with a separator (order matters)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x1f")
    return digest.hexdigest()


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens: punctuation and case do not make two prompts differ; in
    scripts without spaces between words, one token a character."""
    text = text.lower()
    return _WORD.findall(text) if text.isascii() else _TOKEN.findall(text)


def shingles(text: str, size: int) -> set[bytes]:
    """Word `size`-shingles as UTF-8 bytes; a text shorter than `size` words is one shingle."""
    words = tokens(text)
    if len(words) <= size:
        return {" ".join(words).encode("utf-8")} if words else set()
    return {" ".join(words[i : i + size]).encode("utf-8") for i in range(len(words) - size + 1)}


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True)
class NearDuplicate:
    index: int  # the later text, removed
    representative: int  # the earlier, kept text it duplicates
    similarity: float  # exact Jaccard of the two shingle sets


# crc32 instead of datasketch's default sha1: C-speed and deterministic across processes;
# datasketch's affine32 scheme mixes every input hash with the MurmurHash3 finalizer before
# permuting, so a uniform 32-bit input hash is enough.
HASHFUNC: Callable[[bytes], int] = zlib.crc32
_SEED = 1  # datasketch's default seed
_CHUNK_ROWS = 1 << 16  # shingles per numpy block: 64k x 128 perms x 4 B = 32 MiB


def _minima(shingle_hashes: list[list[int]], a_params: np.ndarray, b_params: np.ndarray) -> np.ndarray:
    """(sets, num_perm) uint32 MinHash values of non-empty sets of 32-bit shingle hashes,
    all permuted and min-reduced per set in one numpy block."""
    lengths = [len(h) for h in shingle_hashes]
    flat = np.fromiter((v for h in shingle_hashes for v in h), dtype=np.uint32, count=sum(lengths))
    hashed = _fmix(flat, 32).reshape(1, -1)
    # (num_perm, shingles), permutation-major so the per-set min runs over contiguous
    # memory; uint32 arithmetic wraps mod 2^32 exactly as datasketch's does.
    permuted = a_params.reshape(-1, 1) * hashed + b_params.reshape(-1, 1)
    starts = np.concatenate([[0], np.cumsum(lengths[:-1])]).astype(np.int64)
    return np.minimum.reduceat(permuted, starts, axis=1).T


def _sketch_blocks(shingle_sets: Iterable[Iterable[bytes]], num_perm: int
                   ) -> Iterator[tuple[list[int], np.ndarray]]:
    """(row numbers, their MinHash values) per block of about _CHUNK_ROWS shingles; empty
    sets are skipped (they have no sketch). Sets are consumed as they come: a caller that
    makes them lazily never holds more than one block of them."""
    template = MinHash(num_perm=num_perm, seed=_SEED, hashfunc=HASHFUNC)
    a_params, b_params = template.permutations  # uint32 arrays under the affine32 scheme
    rows: list[int] = []
    hashes: list[list[int]] = []
    pending = 0
    for row, shingle_set in enumerate(shingle_sets):
        values = list(map(HASHFUNC, shingle_set))
        if not values:
            continue
        rows.append(row)
        hashes.append(values)
        pending += len(values)
        if pending >= _CHUNK_ROWS:
            yield rows, _minima(hashes, a_params, b_params)
            rows, hashes, pending = [], [], 0
    if rows:
        yield rows, _minima(hashes, a_params, b_params)


def sketch_all(shingle_sets: Sequence[Iterable[bytes]], num_perm: int = 128) -> list[LeanMinHash | None]:
    """MinHash sketches of many sets at once, equal to `MinHash.bulk(..., seed=1,
    hashfunc=HASHFUNC)` (tested) but vectorised: all shingles of many sets are hashed,
    permuted and min-reduced per set in one numpy block instead of one numpy call per set.
    Empty sets get None (they have no sketch)."""
    out: list[LeanMinHash | None] = [None] * len(shingle_sets)
    for rows, minima in _sketch_blocks(shingle_sets, num_perm):
        for row, values in zip(rows, minima, strict=True):
            out[row] = LeanMinHash(seed=_SEED, hashvalues=values, scheme="affine32")
    return out


def _band_keys(texts: Sequence[str], shingle_size: int, num_perm: int, bands: int, rows_per_band: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per text a 64-bit key of each LSH band of its sketch ((n, bands) uint64) and whether
    it has a sketch. The sketches themselves are dropped block by block: memory per
    distinct text is the keys (8 bytes a band), not 128 values or a shingle set."""
    rng = np.random.default_rng(0)
    mix = rng.integers(1, 2**63, size=(bands, rows_per_band), dtype=np.uint64) | np.uint64(1)  # odd multipliers
    keys = np.zeros((len(texts), bands), dtype=np.uint64)
    present = np.zeros(len(texts), dtype=bool)
    lazily = (shingles(t, shingle_size) for t in texts)
    for rows, minima in _sketch_blocks(lazily, num_perm):
        banded = minima[:, : bands * rows_per_band].astype(np.uint64).reshape(len(rows), bands, rows_per_band)
        with np.errstate(over="ignore"):  # multiplication mod 2^64 is the point
            keys[rows] = (banded * mix).sum(axis=2, dtype=np.uint64)
        present[rows] = True
    return keys, present


def _band_groups(keys: np.ndarray, present: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per band: texts sorted by key (stable, so by index within a key), and for each
    text the start and end of its key's run in that order. Texts without a sketch are
    left out (they are never candidates)."""
    ids = np.flatnonzero(present)
    groups = []
    for band in range(keys.shape[1]):
        band_keys = keys[ids, band]
        order = np.argsort(band_keys, kind="stable")
        sorted_keys = band_keys[order]
        starts = np.searchsorted(sorted_keys, band_keys, side="left")
        ends = np.searchsorted(sorted_keys, band_keys, side="right")
        groups.append((ids[order], starts, ends))
    return groups


def near_duplicates(
    texts: Sequence[str],
    num_perm: int = 128,
    threshold: float = 0.8,
    shingle_size: int = 3,
    progress: Callable[[int], None] | None = None,
) -> list[NearDuplicate]:
    """Near-duplicates among `texts` (visited in order), each pointing at the kept text it
    duplicates. Exact duplicates should be removed beforehand (they are found too, with
    similarity 1.0).

    The LSH is datasketch's banding (its MinHashLSH picks the bands and rows), applied to
    all sketches at once in numpy: datasketch inserts and queries one key at a time
    through Python storage layers (130 µs an insert, 70 µs a query, measured: 50 s for
    250k prompts) and keeps each band of every kept text as a bytes key in a dict
    (~1 KB per text). Here a text is a candidate of an earlier kept text when one of
    their bands is equal, as in datasketch; a band is compared by a 64-bit key, so an
    equal band always proposes the pair, and a key collision (about 2^-64 per pair and
    band) can only add a candidate, which the exact Jaccard then judges.

    Memory per distinct text: 14 bands x (8-byte key + 8-byte order + two 8-byte run
    bounds) = 448 bytes, plus the caller's text, and one sketch block of ~70 MB at most
    (measured with tracemalloc: 71 MiB peak for 25k prompts, 79 MiB for 100k); shingle
    sets are rebuilt for the few candidate pairs instead of being held for every text."""
    # The LSH only proposes candidates (exact Jaccard decides), so its banding is tuned for
    # recall: weights (0.1 false positive, 0.9 false negative) give 14 bands x 9 rows at 128
    # permutations, proposing a pair at Jaccard 0.85 with probability 0.975 (datasketch's
    # equal weights: 9 x 13 bands, 0.69) at the price of 2.7% candidates at Jaccard 0.5.
    # datasketch cannot band for 1.0: cap the threshold so identical sets are still proposed.
    lsh = MinHashLSH(threshold=min(threshold, 0.95), num_perm=num_perm, weights=(0.1, 0.9))
    keys, present = _band_keys(texts, shingle_size, num_perm, lsh.b, lsh.r)
    groups = _band_groups(keys, present)
    del keys
    # Only texts sharing a band key with another text can have a candidate.
    ids = np.flatnonzero(present)
    position = np.full(len(texts), -1, dtype=np.int64)
    position[ids] = np.arange(len(ids))
    shared = np.zeros(len(texts), dtype=bool)
    for _, starts, ends in groups:
        shared[ids[(ends - starts) > 1]] = True
    removed = np.zeros(len(texts), dtype=bool)
    found: list[NearDuplicate] = []
    for index in range(len(texts)):
        if progress is not None:
            progress(1)
        if not shared[index]:
            continue
        candidates: set[int] = set()
        at = position[index]
        for ordered, starts, ends in groups:
            run = ordered[starts[at]:ends[at]]
            candidates.update(int(c) for c in run[(run < index)] if not removed[c])
        best = _first_similar(texts, index, sorted(candidates), shingle_size, threshold)
        if best is not None:
            removed[index] = True
            found.append(NearDuplicate(index, best[0], best[1]))
    return found


def _first_similar(texts: Sequence[str], index: int, candidates: list[int], shingle_size: int,
                   threshold: float) -> tuple[int, float] | None:
    """The lowest kept candidate whose exact Jaccard with text `index` reaches the
    threshold (lowest index wins: deterministic), and that Jaccard."""
    if not candidates:
        return None
    own = shingles(texts[index], shingle_size)
    for candidate in candidates:
        similarity = jaccard(own, shingles(texts[candidate], shingle_size))
        if similarity >= threshold:
            return candidate, similarity
    return None


def ngrams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass(frozen=True)
class Contamination:
    index: int  # the training text
    held_out: int  # index of a held-out text it overlaps
    fraction: float  # share of the training text's n-grams found among held-out texts


def contaminated(
    train_texts: Sequence[str], held_out_texts: Sequence[str], n: int = 8, threshold: float = 0.5
) -> list[Contamination]:
    """Training texts whose word n-gram overlap with the held-out texts is >= threshold."""
    gram_owner: dict[tuple[str, ...], int] = {}
    short_owner: dict[tuple[str, ...], int] = {}
    for held_index, text in enumerate(held_out_texts):
        words = tokens(text)
        if len(words) < n:
            short_owner.setdefault(tuple(words), held_index)
        for gram in ngrams(words, n):
            gram_owner.setdefault(gram, held_index)
    if not gram_owner and not short_owner:
        return []
    found: list[Contamination] = []
    for index, text in enumerate(train_texts):
        words = tokens(text)
        if not words:
            continue
        if len(words) < n:
            owner = short_owner.get(tuple(words))
            if owner is not None:
                found.append(Contamination(index, owner, 1.0))
            continue
        grams = ngrams(words, n)
        hits = [gram_owner[g] for g in grams if g in gram_owner]
        fraction = len(hits) / len(grams)
        if hits and fraction >= threshold:
            found.append(Contamination(index, min(hits), fraction))
    return found


def split_of(prompt_id: str, fractions: dict[str, float]) -> str:
    """train/val/test from the prompt id's hash: a uniform draw in [0, 1) cut at the
    cumulative fractions in train, val, test order. Depends on nothing but the id."""
    draw = int(hashlib.sha256(prompt_id.encode("utf-8")).hexdigest()[:15], 16) / 16**15
    cumulative = 0.0
    for name in ("train", "val", "test"):
        cumulative += fractions.get(name, 0.0)
        if draw < cumulative:
            return name
    return "test"  # float rounding at the top end


def first_occurrences(keys: Iterable[str]) -> dict[str, int]:
    """key → index of its first occurrence."""
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    return first
