"""Preference pairs for training: canonical tables → examples → token ids → batches.

Reads the four canonical tables (paretoflow/schema.py) of a pair source: the curated
human pairs (curate.out_dir, kind "human") or the judged on-policy pairs (pairs.out_dir,
kind "on_policy"); selects one objective's pairs on one split; optionally attaches the
ratings of one rater on other objectives (MODPO margin rewards from a ratings table;
live raters are in margins.py); and tokenizes. Each example keeps its kind and its
dataset (the pairs table's `source` column), so what trained an adapter is counted.

Tokenization, the same for chosen and rejected:
- prompt: the chat template applied to `prompts.messages` with the generation prompt
  (`<|im_start|>assistant\\n` for SmolLM2), tokenized without extra special tokens;
- response: the response text followed by the tokenizer's eos token (`<|im_end|>`, the
  token that ends an assistant turn in the chat template), so training also teaches
  where to stop.

Truncation rule (counted per pair and reported in meta.json):
- a prompt longer than `max_prompt_tokens` keeps its LAST `max_prompt_tokens` tokens
  (the latest turns and the generation prompt matter most);
- a response longer than `max_length − len(prompt)` keeps its FIRST tokens (its eos
  is then cut too: the sequence is scored as an unfinished answer).

Margin rewards are ratings mapped to [0, 1] on each objective's declared scale, flipped
for objectives to minimize, so a larger margin reward is always better.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from paretoflow import schema
from paretoflow.data.control import escaped_messages, special_token_escaper

if TYPE_CHECKING:
    from paretoflow.sections import Objective

TABLE_NAMES = ("prompts", "responses", "ratings", "pairs")


@dataclass
class PairTables:
    prompts: pd.DataFrame
    responses: pd.DataFrame
    ratings: pd.DataFrame
    pairs: pd.DataFrame
    directory: Path | None = None
    kind: str = "on_policy"  # human | on_policy (config.SOURCE_KINDS)


@dataclass
class PairExample:
    pair_id: str
    prompt_id: str
    messages: list[dict[str, str]]
    chosen_text: str
    rejected_text: str
    # Margin reward per declared objective (NaN where no rating is needed or available).
    chosen_margins: list[float]
    rejected_margins: list[float]
    kind: str = "on_policy"  # source kind: human | on_policy
    dataset: str = ""  # the pairs table's `source` column (e.g. the raw file it came from)
    prompt_text: str = ""  # the last user turn (what judges read)
    tags: list[str] = field(default_factory=list)


@dataclass
class SelectionReport:
    """What `select_pairs` kept and skipped (for meta.json)."""

    objective: str
    split: str
    kept: int = 0
    skipped_missing_margin: int = 0


@dataclass
class TokenizedPair:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    # What the truncation rule cut from this pair (aggregated per source in meta.json).
    prompt_truncated: bool = False
    chosen_truncated: bool = False
    rejected_truncated: bool = False


@dataclass
class TruncationCounts:
    """How many pairs had each part cut by the truncation rule."""

    pairs: int = 0
    pairs_truncated: int = 0  # pairs with any part cut
    prompts_truncated: int = 0
    chosen_truncated: int = 0
    rejected_truncated: int = 0
    tokens: int = 0  # chosen + rejected sequence tokens after truncation (prompt counted twice)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    def add(self, other: "TruncationCounts") -> "TruncationCounts":
        return TruncationCounts(**{k: getattr(self, k) + getattr(other, k) for k in self.__dict__})

    @classmethod
    def of(cls, pairs: list[TokenizedPair]) -> "TruncationCounts":
        """Counts over a subset of tokenized pairs (e.g. the pairs one source contributed)."""
        return cls(
            pairs=len(pairs),
            pairs_truncated=sum(p.prompt_truncated or p.chosen_truncated or p.rejected_truncated for p in pairs),
            prompts_truncated=sum(p.prompt_truncated for p in pairs),
            chosen_truncated=sum(p.chosen_truncated for p in pairs),
            rejected_truncated=sum(p.rejected_truncated for p in pairs),
            tokens=sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs),
        )


STAGE_OF_KIND = {"human": "curate", "on_policy": "pairs"}


def load_pair_tables(pairs_dir: str | Path, kind: str = "on_policy") -> PairTables:
    """Read <dir>/{prompts,responses,ratings,pairs}.parquet; name the missing file."""
    pairs_dir = Path(pairs_dir)
    frames = {}
    for name in TABLE_NAMES:
        path = pairs_dir / f"{name}.parquet"
        if not path.exists():
            stage = STAGE_OF_KIND.get(kind, "pairs")
            raise FileNotFoundError(
                f"{path} not found: run the {stage} stage first (paretoflow {stage}), "
                f"or point {stage}.out_dir at a folder holding {', '.join(TABLE_NAMES)}.parquet"
            )
        frames[name] = schema.read(name, path)
    return PairTables(**frames, directory=pairs_dir, kind=kind)


def tables_hash(pairs_dir: str | Path) -> str:
    """Content hash of the four table files (lineage: which pairs trained an adapter)."""
    from paretoflow.io import file_hash

    h = hashlib.sha256()
    for name in TABLE_NAMES:
        h.update(name.encode())
        h.update(file_hash(Path(pairs_dir) / f"{name}.parquet", 64).encode())
    return h.hexdigest()[:16]


def normalized_rating(value: float, scale_min: float, scale_max: float, direction: str) -> float:
    """Map a rating to [0, 1] on its scale, flipped when the objective is minimized."""
    unit = (float(value) - float(scale_min)) / (float(scale_max) - float(scale_min))
    return 1.0 - unit if direction == "minimize" else unit


def rating_lookup(tables: PairTables, rater: str, objectives: list[Objective]) -> dict[tuple[str, str], float]:
    source = tables.directory / "ratings.parquet" if tables.directory else "ratings table"
    ratings = tables.ratings[tables.ratings["rater"] == rater]
    duplicated = ratings.duplicated(["response_id", "objective"], keep=False)
    if duplicated.any():
        row = ratings[duplicated].iloc[0]
        raise ValueError(
            f"{source}: row {ratings[duplicated].index[0]}: response {row['response_id']} has "
            f"several {rater!r} ratings for objective {row['objective']!r}"
        )
    directions = {o.name: o.direction for o in objectives}
    lookup = {}
    for row in ratings.itertuples(index=True):
        if row.objective not in directions:
            continue  # ratings of objectives not declared in params are not margins here
        if not (math.isfinite(row.value) and row.scale_max > row.scale_min):
            raise ValueError(
                f"{source}: row {row.Index}: bad rating value={row.value} "
                f"scale=[{row.scale_min}, {row.scale_max}] for {row.response_id}"
            )
        lookup[(row.response_id, row.objective)] = normalized_rating(
            row.value, row.scale_min, row.scale_max, directions[row.objective]
        )
    return lookup


def select_pairs(
    tables: PairTables,
    objective: str,
    split: str,
    objectives: list[Objective],
    margin_objectives: list[str] | None = None,
    rater: str = "judges",
    limit: int | None = None,
) -> tuple[list[PairExample], SelectionReport]:
    """The `objective` pairs whose prompt is in `split`, as examples, in pair_id order.

    `margin_objectives` names the objectives whose ratings MODPO needs; pairs where
    either response lacks one of them are skipped and counted. A pair whose prompt or
    responses are missing from the tables is a data error and raises.
    """
    source = tables.directory / "pairs.parquet" if tables.directory else "pairs table"
    names = [o.name for o in objectives]
    report = SelectionReport(objective=objective, split=split)
    pairs = tables.pairs[tables.pairs["objective"] == objective]
    prompts = tables.prompts.set_index("prompt_id")
    split_of = prompts["split"]
    pairs = pairs[pairs["prompt_id"].map(split_of) == split].sort_values("pair_id")
    texts = dict(zip(tables.responses["response_id"], tables.responses["text"]))
    lookup = rating_lookup(tables, rater, objectives) if margin_objectives else {}
    datasets = pairs["source"].fillna("").astype(str)
    examples: list[PairExample] = []
    for row in pairs.itertuples(index=True):
        for column in ("chosen_id", "rejected_id"):
            if getattr(row, column) not in texts:
                raise ValueError(
                    f"{source}: row {row.Index} (pair {row.pair_id}): {column} "
                    f"{getattr(row, column)} not in responses.parquet"
                )
        chosen_margins = [math.nan] * len(names)
        rejected_margins = [math.nan] * len(names)
        complete = True
        for name in margin_objectives or []:
            i = names.index(name)
            chosen = lookup.get((row.chosen_id, name))
            rejected = lookup.get((row.rejected_id, name))
            if chosen is None or rejected is None:
                complete = False
                break
            chosen_margins[i], rejected_margins[i] = chosen, rejected
        if not complete:
            report.skipped_missing_margin += 1
            continue
        examples.append(PairExample(
            pair_id=row.pair_id,
            prompt_id=row.prompt_id,
            messages=schema.parse_messages(prompts.at[row.prompt_id, "messages"]),
            chosen_text=texts[row.chosen_id],
            rejected_text=texts[row.rejected_id],
            chosen_margins=chosen_margins,
            rejected_margins=rejected_margins,
            kind=tables.kind,
            dataset=datasets.at[row.Index],
            prompt_text=str(prompts.at[row.prompt_id, "text"]),
            tags=_tags(prompts.at[row.prompt_id, "tags"]),
        ))
        if limit is not None and len(examples) >= limit:
            break
    report.kept = len(examples)
    return examples, report


def _tags(value) -> list[str]:
    if not isinstance(value, str) or not value:
        return []
    parsed = json.loads(value)
    return [str(t) for t in parsed] if isinstance(parsed, list) else []


def tokenize_pairs(
    tokenizer,
    examples: list[PairExample],
    max_length: int,
    max_prompt_tokens: int,
) -> tuple[list[TokenizedPair], TruncationCounts]:
    """Token ids of prompt, chosen+eos and rejected+eos, truncated by the module's rule."""
    if max_prompt_tokens >= max_length:
        raise ValueError(f"max_prompt_tokens ({max_prompt_tokens}) must be < max_length ({max_length})")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token: responses need an end marker")
    out: list[TokenizedPair] = []
    escape = special_token_escaper(tokenizer)  # data never becomes this tokenizer's control
    for example in examples:
        rendered = tokenizer.apply_chat_template(escaped_messages(escape, example.messages), tokenize=False,
                                                 add_generation_prompt=True)
        full_prompt = tokenizer(rendered, add_special_tokens=False)["input_ids"]
        prompt_ids = full_prompt[-max_prompt_tokens:]
        pair = TokenizedPair(prompt_ids=list(prompt_ids), chosen_ids=[], rejected_ids=[],
                             prompt_truncated=len(prompt_ids) < len(full_prompt))
        budget = max_length - len(prompt_ids)
        for kind, text in (("chosen", example.chosen_text), ("rejected", example.rejected_text)):
            ids = tokenizer(escape(text), add_special_tokens=False)["input_ids"] + [eos]
            setattr(pair, f"{kind}_truncated", len(ids) > budget)
            setattr(pair, f"{kind}_ids", ids[:budget])
        out.append(pair)
    return out, TruncationCounts.of(out)


def collate_pairs(pairs: list[TokenizedPair], pad_token_id: int) -> dict[str, torch.Tensor]:
    """One right-padded batch: rows [0, B) are prompt+chosen, rows [B, 2B) prompt+rejected.

    `response_mask` marks the response tokens whose log-probs are summed.
    """
    sequences, response_masks = [], []
    for side in ("chosen_ids", "rejected_ids"):
        for pair in pairs:
            response = getattr(pair, side)
            sequences.append(pair.prompt_ids + response)
            response_masks.append([0] * len(pair.prompt_ids) + [1] * len(response))
    length = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    response_mask = torch.zeros((len(sequences), length), dtype=torch.bool)
    for i, (seq, mask) in enumerate(zip(sequences, response_masks)):
        input_ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[i, : len(seq)] = 1
        response_mask[i, : len(seq)] = torch.tensor(mask, dtype=torch.bool)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "response_mask": response_mask}


def margin_tensors(examples: list[PairExample]) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, n_objectives) chosen and rejected margin rewards; NaN (unused) becomes 0."""
    chosen = torch.tensor([e.chosen_margins for e in examples], dtype=torch.float32)
    rejected = torch.tensor([e.rejected_margins for e in examples], dtype=torch.float32)
    return torch.nan_to_num(chosen, nan=0.0), torch.nan_to_num(rejected, nan=0.0)


def examples_digest(examples: list[PairExample]) -> str:
    """Hash of the selected examples (checks that a resumed run trains on the same data)."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.pair_id, e.chosen_margins, e.rejected_margins]).encode())
    return h.hexdigest()[:16]



def even_shard(ordered: list[int], world: int, rank: int) -> tuple[list[int], int]:
    """(this rank's indices, how many are real): every rank gets ceil(n / world) indices,
    the short ones padded by repeating the last pair, so all ranks run the same number of
    forward passes (FSDP all-gathers in each one: an uneven count would hang)."""
    per_process = math.ceil(len(ordered) / world)
    mine = ordered[rank * per_process: (rank + 1) * per_process]
    real = len(mine)
    return mine + [ordered[-1]] * (per_process - real), real


__all__ = [
    "PairExample",
    "PairTables",
    "SelectionReport",
    "TokenizedPair",
    "TruncationCounts",
    "collate_pairs",
    "even_shard",
    "examples_digest",
    "load_pair_tables",
    "margin_tensors",
    "normalized_rating",
    "select_pairs",
    "tables_hash",
    "tokenize_pairs",
]
