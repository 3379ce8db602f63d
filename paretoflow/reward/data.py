"""Reward-stage data: the curated tables → per-objective training sources and splits.

The reward stage runs before the pairs stage (which judges its samples with this model),
so it reads only `curate.out_dir`: prompts, responses, ratings and pairs. Its sources,
per objective, each with a weight in `reward.sources.<objective>`:

- curated pairs, one source per value of the pairs' `source` column (the file they came
  from: HH-RLHF, AlpacaEval, ...), weight `pairs` or `by_source[<source>]`;
- curated ratings, one source per `rater`, weight `ratings` (or `by_source["ratings:<rater>"]`);
- judge ratings: the objective's judges from `params.objectives` (the `reward_model`
  judge excluded: it is what is being trained) rate every curated response in use,
  weight `judges` (0 = not computed). This is how conciseness gets data at all.

A source with weight 0 is left out of training and still reported. Sampling keeps the
stage inside the CPU budget: `max_pairs_per_prompt` pairs per (prompt, objective), then
whole prompts up to `max_pairs_per_source` pairs per pair source, both chosen by a
seeded hash of the ids, so a sample is prompt-grouped, reproducible and keeps curate's
split fractions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from paretoflow import schema

if TYPE_CHECKING:
    from paretoflow.config import Params

JUDGES_SOURCE = "judges"
RATINGS_PREFIX = "ratings:"
# Judges that are not rules: the learned model itself.
EXCLUDED_JUDGES = ("reward_model",)


@dataclass
class PreferenceData:
    """Joined curated tables, restricted to what the reward model trains and tests on."""

    prompts: pd.DataFrame  # prompt_id (index), messages, text, tags, split
    responses: pd.DataFrame  # response_id, prompt_id, text
    pairs: pd.DataFrame  # prompt_id, chosen_id, rejected_id, objective, source
    ratings: pd.DataFrame  # response_id, prompt_id, objective, value in [0, 1] (higher better), source
    files: list[str] = field(default_factory=list)
    split_note: str = ""
    sampling: dict = field(default_factory=dict)  # per source: prompts/pairs before and after caps


def salted_fraction(key: str, salt: str) -> float:
    """A uniform draw in [0, 1) from sha256(salt ‖ key): independent of `dedup.split_of`
    (which hashes the bare id), so it can cut a split without following its boundaries."""
    digest = hashlib.sha256(f"{salt}\x1f{key}".encode("utf-8")).hexdigest()
    return int(digest[:15], 16) / 16**15


def held_out_splits(splits: pd.Series, used_prompts: set[str]) -> tuple[pd.Series, str]:
    """Prompt → split, making sure val and test both hold prompts when possible.

    Curate assigns train/val/test by a hash of the prompt id; when the data has no test
    prompts, half of the val prompts become test, decided by a *salted* hash (the bare
    one would put every val prompt on the same side: issue 9). With no val prompts
    either, 10% + 10% of train are carved out the same way. The note goes into the report.
    """
    splits = splits.copy()
    used = splits[splits.index.isin(used_prompts)]
    counts = used.value_counts()
    draw = {pid: salted_fraction(pid, "reward-holdout") for pid in used.index}
    if counts.get("test", 0) > 0 and counts.get("val", 0) > 0:
        return splits, "prompt splits as given"
    if counts.get("test", 0) == 0 and counts.get("val", 0) >= 2:
        moved = [pid for pid in used.index[used == "val"] if draw[pid] >= 0.5]
        splits[moved] = "test"
        return splits, f"no test prompts in the data: {len(moved)} of {counts['val']} val prompts (salted prompt-id hash) held out as test"
    if counts.get("test", 0) == 0 and counts.get("val", 0) == 0:
        train = used.index[used == "train"]
        splits[[p for p in train if draw[p] < 0.1]] = "val"
        splits[[p for p in train if 0.1 <= draw[p] < 0.2]] = "test"
        return splits, "no val/test prompts in the data: 10% + 10% of train prompts (salted prompt-id hash) held out as val/test"
    return splits, "prompt splits as given (no val prompts: hyperparameters chosen on the training loss)"


def normalize_ratings(ratings: pd.DataFrame, params: Params, path: Path) -> pd.DataFrame:
    """Ratings of declared objectives → [0, 1], higher better; source = ratings:<rater>."""
    objectives = {o.name: o for o in params.objectives}
    ratings = ratings[ratings["objective"].isin(objectives)]
    columns = ["response_id", "objective", "value", "source"]
    if ratings.empty:
        return pd.DataFrame(columns=columns)
    for column in ("value", "scale_min", "scale_max"):
        values = pd.to_numeric(ratings[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            row = ratings.index[bad[0]]
            raise ValueError(f"{path}: row {int(row)}: {column} is not a finite number ({ratings.loc[row, column]!r})")
    low, high = ratings["scale_min"].to_numpy(float), ratings["scale_max"].to_numpy(float)
    if np.any(high <= low):
        row = ratings.index[np.flatnonzero(high <= low)[0]]
        raise ValueError(f"{path}: row {int(row)}: scale_max must exceed scale_min")
    value = (ratings["value"].to_numpy(float) - low) / (high - low)
    minimize = ratings["objective"].map(lambda o: objectives[o].direction == "minimize").to_numpy(bool)
    out = pd.DataFrame({
        "response_id": ratings["response_id"].to_numpy(), "objective": ratings["objective"].to_numpy(),
        "value": np.clip(np.where(minimize, 1.0 - value, value), 0.0, 1.0),
        "source": RATINGS_PREFIX + ratings["rater"].astype(str).to_numpy(),
    })  # fmt: skip
    return out.groupby(["response_id", "objective", "source"], as_index=False)["value"].mean()[columns]


def _read_curated(root: Path, params: Params) -> tuple[dict[str, pd.DataFrame], list[str]]:
    directory = root / params.curate.out_dir
    tables, files = {}, []
    for name in ("prompts", "responses", "ratings", "pairs"):
        path = directory / f"{name}.parquet"
        if name in ("ratings", "pairs") and not path.exists():
            tables[name] = schema.empty_table(name)
            continue
        tables[name] = schema.read(name, path)
        files.append(str(path))
    if tables["ratings"].empty and tables["pairs"].empty:
        raise FileNotFoundError(
            f"no preference data in {directory}: neither ratings.parquet nor pairs.parquet has rows "
            "(add a preference source to curate.sources and run curate)"
        )
    return tables, files


def sample_pairs(pairs: pd.DataFrame, max_pairs_per_source: int | None, max_pairs_per_prompt: int | None,
                 seed: int) -> tuple[pd.DataFrame, dict]:
    """Seeded, prompt-grouped caps (see module doc); returns the kept pairs and counts.

    Each prompt first keeps at most `max_pairs_per_prompt` pairs (per objective); then
    whole prompts are taken in a seeded hash order while the source's pair count stays
    within `max_pairs_per_source`. A cap in pairs, not prompts, suits sources of one
    pair per prompt (HH-RLHF) and of ~25 (AlpacaEval) alike.
    """
    summary: dict[str, dict[str, int]] = {}
    kept = []
    for source, group in pairs.groupby("source", sort=True):
        sample = group
        if max_pairs_per_prompt:
            order = (sample["chosen_id"] + sample["rejected_id"]).map(lambda k: salted_fraction(k, f"reward-pairs-{seed}"))
            sample = sample.assign(_order=order).sort_values("_order")
            sample = sample.groupby(["prompt_id", "objective"], sort=False).head(max_pairs_per_prompt).drop(columns="_order")
        counts = sample.groupby("prompt_id").size()
        prompts = sorted(counts.index, key=lambda p: salted_fraction(p, f"reward-sample-{seed}"))
        if max_pairs_per_source:
            total = np.cumsum(counts.reindex(prompts).to_numpy())
            prompts = prompts[: int(np.searchsorted(total, max_pairs_per_source, side="right"))]
        sample = sample[sample["prompt_id"].isin(set(prompts))]
        summary[str(source)] = {"prompts_in": int(group["prompt_id"].nunique()), "prompts_kept": len(prompts),
                                "pairs_in": int(len(group)), "pairs_kept": int(len(sample))}
        kept.append(sample)
    frame = pd.concat(kept) if kept else pairs.iloc[:0]
    return frame.sort_values(["prompt_id", "chosen_id", "rejected_id", "objective"]).reset_index(drop=True), summary


def judge_ratings(params: Params, root: Path, prompts: pd.DataFrame, responses: pd.DataFrame,
                  objectives: list[str]) -> pd.DataFrame:
    """Ratings of `responses` by each objective's judges (reward_model excluded), in [0, 1]."""
    from paretoflow.judges import JudgeContext, JudgeMixture, goodness  # lazy: reward → judges, one way

    declared = []
    for name in objectives:
        objective = params.objective(name)
        judges = [j for j in objective.judges if j.name not in EXCLUDED_JUDGES]
        if not judges:
            raise ValueError(f"reward.sources.{name}.judges > 0 but objective {name!r} has no judge besides {EXCLUDED_JUDGES}")
        declared.append(objective.model_copy(update={"judges": judges}))
    if not declared or responses.empty:
        return pd.DataFrame(columns=["response_id", "objective", "value", "source"])
    mixture = JudgeMixture(declared, JudgeContext(root=root, params=params))
    texts = prompts["text"].reindex(responses["prompt_id"]).tolist()
    tags = [json.loads(t) if isinstance(t, str) else [] for t in prompts["tags"].reindex(responses["prompt_id"])]
    values = mixture.score(texts, responses["text"].tolist(), tags)
    rows = [pd.DataFrame({"response_id": responses["response_id"].to_numpy(), "objective": o.name,
                          "value": goodness(o, values[o.name]), "source": JUDGES_SOURCE}) for o in declared]
    return pd.concat(rows, ignore_index=True)


def load_preference_data(root: Path, params: Params) -> PreferenceData:
    """Curated tables → the sampled pairs and ratings of every declared objective."""
    config = params.reward
    tables, files = _read_curated(root, params)
    names = params.objective_names
    prompts = tables["prompts"].set_index("prompt_id")
    pairs = tables["pairs"][tables["pairs"]["objective"].isin(names)]
    pairs, sampling = sample_pairs(pairs[["prompt_id", "chosen_id", "rejected_id", "objective", "source"]],
                                   config.max_pairs_per_source, config.max_pairs_per_prompt, params.project.seed)
    ratings = normalize_ratings(tables["ratings"], params, root / params.curate.out_dir / "ratings.parquet")
    responses = tables["responses"][["response_id", "prompt_id", "text"]]
    _check_references(responses, prompts, pairs, ratings)
    used = set(pairs["chosen_id"]) | set(pairs["rejected_id"]) | set(ratings["response_id"])
    responses = responses[responses["response_id"].isin(used)].sort_values("response_id").reset_index(drop=True)
    wanted = [n for n in names if config.weights(n).judges > 0]
    ratings = pd.concat([ratings, judge_ratings(params, root, prompts, responses, wanted)], ignore_index=True)
    ratings["prompt_id"] = responses.set_index("response_id")["prompt_id"].reindex(ratings["response_id"]).to_numpy()
    splits, note = held_out_splits(prompts["split"], set(responses["prompt_id"]))
    prompts = prompts.assign(split=splits)
    return PreferenceData(prompts, responses, pairs.reset_index(drop=True), ratings, files, note, sampling)


def _check_references(responses: pd.DataFrame, prompts: pd.DataFrame, pairs: pd.DataFrame, ratings: pd.DataFrame) -> None:
    known = set(responses["response_id"])
    for column in ("chosen_id", "rejected_id"):
        unknown = ~pairs[column].isin(known)
        if unknown.any():
            row = pairs[unknown].iloc[0]
            raise ValueError(f"pairs: {column} {row[column]!r} (objective {row['objective']}) has no response row")
    unknown = ~ratings["response_id"].isin(known)
    if unknown.any():
        raise ValueError(f"ratings: response_id {ratings[unknown].iloc[0]['response_id']!r} has no response row")
    unknown = ~responses["prompt_id"].isin(set(prompts.index))
    if unknown.any():
        raise ValueError(f"responses: prompt_id {responses[unknown].iloc[0]['prompt_id']!r} has no prompt row")


def pairs_from_ratings(ratings: pd.Series, prompt_of: pd.Series, min_margin: float,
                       max_pairs_per_prompt: int | None = None) -> pd.DataFrame:
    """Within-prompt pairs whose rating gap is ≥ min_margin (and > 0): chosen = higher.

    With `max_pairs_per_prompt`, each prompt keeps its pairs of largest gap first.
    """
    frame = pd.DataFrame({"value": ratings, "prompt_id": prompt_of.reindex(ratings.index)}).dropna()
    rows = []
    for prompt, group in frame.groupby("prompt_id"):
        ids, values = group.index.to_numpy(), group["value"].to_numpy()
        found = []
        for i in range(len(ids)):
            for j in range(i + 1, len(ids)):
                gap = values[i] - values[j]
                if abs(gap) >= max(min_margin, 1e-12):
                    chosen, rejected = (ids[i], ids[j]) if gap > 0 else (ids[j], ids[i])
                    found.append((prompt, chosen, rejected, abs(gap)))
        if max_pairs_per_prompt:
            found = sorted(found, key=lambda r: (-r[3], r[1], r[2]))[:max_pairs_per_prompt]
        rows += found
    return pd.DataFrame(rows, columns=["prompt_id", "chosen_id", "rejected_id", "margin"])
