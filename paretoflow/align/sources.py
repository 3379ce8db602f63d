"""Where an adapter's pairs come from, and how the sources are mixed in each batch.

Two source kinds (config.SOURCE_KINDS), each a folder of canonical tables:
- `human`: the curated pairs of `curate.out_dir` (HH-RLHF, AlpacaEval, a user's own
  data; the pairs table's `source` column names the dataset);
- `on_policy`: the pairs stage's judged samples of the policy (`pairs.out_dir`).

`align.sources` (or `align.objective_sources[objective]`) gives each kind a sampling
weight. A kind with weight 0 is not read; a kind with no pairs for the objective drops
out and the others share its weight (counted in the report, never silent).

Mixing is deterministic and resumable: `MixtureStream` maps a stream position to a pair
as a pure function of (seed, position). The kind at each position follows smooth
weighted round-robin (the nginx upstream scheduler: every kind gains its weight, the
largest credit is picked and pays the total), so any window of positions holds the
kinds in proportion to their weights; inside a kind, pairs follow that kind's own
seeded epoch permutations (`PairStream`). With one kind it is exactly `PairStream`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass, field
from pathlib import Path

import torch

from paretoflow.align.data import (
    PairExample,
    PairTables,
    rating_lookup,
    load_pair_tables,
    select_pairs,
    tables_hash,
)
from paretoflow.stages.align import SOURCE_KINDS

if TYPE_CHECKING:
    from paretoflow.config import Params


def _epoch_permutation(n: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


class PairStream:
    """Endless seeded stream of pair indices: epoch e is a fixed permutation of 0..n-1.

    Position p maps to (epoch p // n, offset p % n), so any step's batch is a pure
    function of (seed, step): resuming needs no sampler state.
    """

    def __init__(self, n: int, seed: int):
        if n < 1:
            raise ValueError("a pair stream needs at least one pair")
        self.n, self.seed = n, seed
        self._cache: dict[int, list[int]] = {}

    def at(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        if epoch not in self._cache:
            self._cache[epoch] = _epoch_permutation(self.n, self.seed, epoch)
        return self._cache[epoch][offset]

    def take(self, start: int, count: int) -> list[int]:
        return [self.at(p) for p in range(start, start + count)]


class MixtureStream:
    """Pairs of several sources laid end to end (`sizes`), drawn in `weights` proportion.

    Global index of pair j of source s = sum(sizes[:s]) + j. Sources with size 0 or
    weight 0 never appear.
    """

    def __init__(self, sizes: list[int], weights: list[float], seed: int):
        if len(sizes) != len(weights):
            raise ValueError(f"{len(sizes)} sources but {len(weights)} weights")
        self.active = [i for i, (n, w) in enumerate(zip(sizes, weights)) if n > 0 and w > 0]
        if not self.active:
            raise ValueError(f"no source has both pairs and weight > 0 (sizes {sizes}, weights {weights})")
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self.weights = [float(weights[i]) for i in self.active]
        # Source 0 keeps the plain seed: a single source is exactly PairStream(n, seed).
        self.streams = [PairStream(sizes[i], seed + i) for i in self.active]
        self._picks: list[tuple[int, int]] = []  # position -> (active source, index in it)
        self._credit = [0.0] * len(self.active)
        self._used = [0] * len(self.active)

    def _extend(self, position: int) -> None:
        total = sum(self.weights)
        while len(self._picks) <= position:
            for a, w in enumerate(self.weights):
                self._credit[a] += w
            pick = max(range(len(self.active)), key=lambda a: (self._credit[a], -a))
            self._credit[pick] -= total
            self._picks.append((pick, self._used[pick]))
            self._used[pick] += 1

    def at(self, position: int) -> int:
        self._extend(position)
        active, k = self._picks[position]
        return self.offsets[self.active[active]] + self.streams[active].at(k)

    def take(self, start: int, count: int) -> list[int]:
        return [self.at(p) for p in range(start, start + count)]


@dataclass
class SourceSelection:
    """One kind's contribution to one adapter (meta.json `sources.<kind>`)."""

    kind: str
    directory: str
    weight: float
    data_hash: str | None = None
    available_train: int = 0  # the objective's train pairs in the tables
    train: int = 0  # kept after max_pairs_per_source
    val: int = 0
    skipped_missing_margin: int = 0
    dropped_tradeoff: int = 0  # train pairs whose chosen side lost > tradeoff_max_drop elsewhere
    datasets: dict[str, int] = field(default_factory=dict)  # train pairs per `source` value


@dataclass
class SourcedPairs:
    train: list[PairExample]  # grouped by kind, in SOURCE_KINDS order
    val: list[PairExample]
    sizes: list[int]  # train pairs per kind (SOURCE_KINDS order), for MixtureStream
    weights: list[float]
    report: dict[str, SourceSelection]

    @property
    def available(self) -> dict[str, int]:
        return {k: s.available_train for k, s in self.report.items()}


def source_dirs(params: Params, root: Path) -> dict[str, Path]:
    """Each kind's folder: the producing stage's out_dir (one path per artifact)."""
    return {"human": Path(root) / params.curate.out_dir, "on_policy": Path(root) / params.pairs.out_dir}


def load_sources(params: Params, root: Path, weights: dict[str, float]) -> dict[str, PairTables]:
    """The tables of every kind with weight > 0 (a missing folder is a clear error)."""
    dirs = source_dirs(params, root)
    return {kind: load_pair_tables(dirs[kind], kind=kind) for kind in SOURCE_KINDS if weights.get(kind, 0) > 0}


def tradeoff_filter(tables: PairTables, examples: list[PairExample], objective: str, objectives,
                    max_drop: float | None, rater: str = "judges") -> tuple[list[PairExample], int]:
    """Drop pairs whose chosen response is > max_drop worse (goodness on [0, 1], `rater`'s
    ratings) than the rejected one on another objective; pairs without those ratings stay."""
    if max_drop is None or not examples:
        return examples, 0
    lookup = rating_lookup(tables, rater, objectives)
    ids = tables.pairs.set_index("pair_id")[["chosen_id", "rejected_id"]]
    others = [o.name for o in objectives if o.name != objective]
    kept = []
    for e in examples:
        chosen_id, rejected_id = ids.at[e.pair_id, "chosen_id"], ids.at[e.pair_id, "rejected_id"]
        drops = [lookup[(rejected_id, o)] - lookup[(chosen_id, o)] for o in others
                 if (chosen_id, o) in lookup and (rejected_id, o) in lookup]
        if all(d <= max_drop + 1e-12 for d in drops):
            kept.append(e)
    return kept, len(examples) - len(kept)


def _val_quota(max_val_pairs: int, kinds: list[str]) -> dict[str, int]:
    """Validation pairs split evenly across the kinds that have train pairs (remainder first)."""
    if not kinds:
        return {}
    base, extra = divmod(max_val_pairs, len(kinds))
    return {k: base + (1 if i < extra else 0) for i, k in enumerate(kinds)}


def select_sourced_pairs(tables: dict[str, PairTables], weights: dict[str, float], objective: str,
                         objectives, *, max_pairs_per_source: int, max_val_pairs: int,
                         margin_objectives: list[str] | None = None,
                         rater: str | None = None, tradeoff_max_drop: float | None = None,
                         tradeoff_rater: str = "judges") -> SourcedPairs:
    """Train and val pairs of `objective` from every loaded kind, counted per kind and dataset.

    `rater` set: margins are read from that rater's ratings rows (pairs lacking one are
    skipped and counted); None: margins are left for a live rater (margins.py).
    """
    table_margins = dict(margin_objectives=margin_objectives, rater=rater) if rater else {}
    report: dict[str, SourceSelection] = {}
    train_by_kind: dict[str, list[PairExample]] = {}
    for kind, t in tables.items():
        selection = SourceSelection(kind=kind, directory=str(t.directory), weight=weights[kind],
                                    data_hash=tables_hash(t.directory) if t.directory else None)
        available = int(((t.pairs["objective"] == objective)
                         & (t.pairs["prompt_id"].map(dict(zip(t.prompts["prompt_id"], t.prompts["split"])))
                            == "train")).sum())
        selection.available_train = available
        train, train_report = select_pairs(t, objective, "train", objectives, **table_margins)
        train, selection.dropped_tradeoff = tradeoff_filter(t, train, objective, objectives, tradeoff_max_drop,
                                                            tradeoff_rater)
        train = train[:max_pairs_per_source] if max_pairs_per_source else train
        selection.skipped_missing_margin = train_report.skipped_missing_margin
        selection.train = len(train)
        for e in train:
            selection.datasets[e.dataset] = selection.datasets.get(e.dataset, 0) + 1
        train_by_kind[kind] = train
        report[kind] = selection
    kinds_with_pairs = [k for k in SOURCE_KINDS if train_by_kind.get(k)]
    val: list[PairExample] = []
    for kind, quota in _val_quota(max_val_pairs, kinds_with_pairs).items():
        if quota > 0:
            kind_val, _ = select_pairs(tables[kind], objective, "val", objectives, **table_margins)
            kind_val = tradeoff_filter(tables[kind], kind_val, objective, objectives, tradeoff_max_drop,
                                       tradeoff_rater)[0][:quota]
            report[kind].val = len(kind_val)
            val += kind_val
    train = [e for k in SOURCE_KINDS for e in train_by_kind.get(k, [])]
    sizes = [len(train_by_kind.get(k, [])) for k in SOURCE_KINDS]
    return SourcedPairs(train, val, sizes, [float(weights.get(k, 0.0)) for k in SOURCE_KINDS], report)


def visited_counts(examples: list[PairExample], visits: list[int]) -> dict[str, dict[str, dict[str, int]]]:
    """{kind: {dataset: {"pairs": distinct pairs visited, "visits": pair-visits}}}."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    seen: set[int] = set()
    for i in visits:
        e = examples[i]
        entry = out.setdefault(e.kind, {}).setdefault(e.dataset, {"pairs": 0, "visits": 0})
        entry["visits"] += 1
        if i not in seen:
            seen.add(i)
            entry["pairs"] += 1
    return out


__all__ = [
    "MixtureStream",
    "PairStream",
    "SourceSelection",
    "SourcedPairs",
    "load_sources",
    "select_sourced_pairs",
    "source_dirs",
    "visited_counts",
]
