"""On-policy preference pairs: sample the policy, score every sample with the judge
mixture, pair the samples per objective.

    prompts (data/curated/prompts.parquet, train + val splits, capped)
      → N sampled responses per prompt (chat template, temperature/top-p, seeded)
      → ratings: one row per response × objective (rater "judges"), on the objective scale
      → pairs per objective: best vs worst sample per prompt (`best_worst`), or every pair
        of samples at least `min_margin` apart (`all_above_margin`)
      → data/pairs/{prompts,responses,ratings,pairs}.parquet + report.json

Pairs are on-policy (the policy's own samples, as in online/iterative DPO: Xiong et al.
2024, SimPO's on-policy UltraFeedback) and judged per objective, so each objective gets
its own preference data for its own expert. `margin` is the chosen-minus-rejected score
difference in the objective's better direction (always > 0); differences below
`min_margin` are ties, skipped and counted in the report. Identical samples of one prompt
share a content-hash id and are kept once (counted as duplicates).

The test split is never sampled here (front evaluation holds it out). Run:
`paretoflow pairs [--policy PATH]` or `paretoflow.pairs.run(params, root)`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from paretoflow import schema
from paretoflow.distributed import SINGLE, Processes
from paretoflow.io import atomic_dir, write_json, write_table
from paretoflow.judges import build_mixture, is_degenerate, word_tokens

if TYPE_CHECKING:
    from paretoflow.config import Params

PAIR_SOURCE = "on_policy_judges"
REFUSAL_ORIGIN = "reference:refusal"
# Written for paretoflow. A small policy almost never refuses (SmolLM2-135M refused 0 of
# 24 harmful samples in the CPU default run), so every harmful prompt's samples tie on
# harmlessness and that objective gets no pairs. One reference refusal per prompt
# (off-policy, marked by its origin) gives the contrast in both directions: it wins on
# harmful prompts and loses on benign ones (the refusal judge penalises over-refusal).
# Trained only on harmful prompts, the harmlessness expert learned to refuse everything.
# Reference refusals take part only in pairs of objectives judged by `refusal`.
REFUSALS = (
    "I can't help with that. It could hurt people. If you're dealing with something difficult, "
    "I'm glad to talk about safer options or point you to someone who can help.",
    "Sorry, but I won't assist with this request because it could cause real harm. "
    "I'm happy to help with something else.",
    "I'm not able to provide that. If you tell me more about what you need, I can suggest "
    "a safe and legal alternative.",
)
RATER = "judges"
SAMPLED_SPLITS = ("train", "val")


@dataclass
class PairsResult:
    out_dir: Path
    paths: dict[str, Path]
    n_prompts: int
    n_responses: int
    n_pairs: int
    metrics: dict[str, float] = field(default_factory=dict)


def make_pairs(
    values: np.ndarray, higher_is_better: bool, strategy: str, min_margin: float
) -> tuple[list[tuple[int, int, float]], int]:
    """Pairs among one prompt's samples for one objective: ([(chosen, rejected, margin)], ties).

    margin = v[chosen] - v[rejected] (maximize) or v[rejected] - v[chosen] (minimize);
    a pair is kept when margin > 0 and margin >= min_margin, otherwise counted as a tie.
    best_worst takes the best and the worst sample (first index on equal scores).
    """
    v = np.asarray(values, dtype=np.float64)
    sign = 1.0 if higher_is_better else -1.0
    if len(v) < 2:
        return [], 0
    if strategy == "best_worst":
        utility = sign * v
        best, worst = int(np.argmax(utility)), int(np.argmin(utility))
        candidates = [(best, worst)]
    elif strategy == "all_above_margin":
        candidates = []
        for i, j in combinations(range(len(v)), 2):
            candidates.append((i, j) if sign * (v[i] - v[j]) >= 0 else (j, i))
    else:
        raise ValueError(f"unknown pair_strategy {strategy!r}; use best_worst or all_above_margin")
    pairs, ties = [], 0
    for chosen, rejected in candidates:
        margin = float(sign * (v[chosen] - v[rejected]))
        if margin > 0 and margin >= min_margin:
            pairs.append((chosen, rejected, margin))
        else:
            ties += 1
    return pairs, ties


def _parse_json_list(path: Path, row: int, column: str, value: Any) -> list:
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: row {row}: column {column} is not valid JSON ({exc})") from None
    if not isinstance(parsed, list):
        raise ValueError(f"{path}: row {row}: column {column} must be a JSON list, got {type(parsed).__name__}")
    return parsed


def load_prompts(path: Path) -> pd.DataFrame:
    """The curated prompts table, checked, with `messages_list` and `tags_list` parsed."""
    if not path.exists():
        raise FileNotFoundError(f"curated prompts not found: {path} (run the curate stage first)")
    df = schema.read("prompts", path, required=["prompt_id", "messages", "text", "split", "tags"])
    df = df.reset_index(drop=True)
    messages, tags = [], []
    for row, (m, t, text) in enumerate(zip(df["messages"], df["tags"], df["text"])):
        conv = _parse_json_list(path, row, "messages", m)
        if not conv or not all(isinstance(x, dict) and {"role", "content"} <= set(x) for x in conv):
            raise ValueError(f"{path}: row {row}: messages must be a non-empty list of {{role, content}}")
        if conv[-1]["role"] != "user":
            raise ValueError(f"{path}: row {row}: the last turn must be the user's, got {conv[-1]['role']!r}")
        tag_list = _parse_json_list(path, row, "tags", t)
        if not all(isinstance(x, str) for x in tag_list):
            raise ValueError(f"{path}: row {row}: tags must be strings, got {tag_list!r}")
        if not isinstance(text, str):
            raise ValueError(f"{path}: row {row}: text must be a string, got {text!r}")
        messages.append(conv)
        tags.append(tag_list)
    df["messages_list"], df["tags_list"] = messages, tags
    if df["prompt_id"].duplicated().any():
        dup = df.loc[df["prompt_id"].duplicated(), "prompt_id"].iloc[0]
        raise ValueError(f"{path}: duplicate prompt_id {dup}")
    return df


def select_prompts(df: pd.DataFrame, n_train: int, n_val: int) -> pd.DataFrame:
    """The first n_train train and n_val val prompts in prompt_id order.

    prompt_id is a content hash, so this is a fixed pseudo-random subset that stays put
    when prompts are added (only newcomers that sort earlier displace earlier picks).
    """
    parts = []
    for split, cap in (("train", n_train), ("val", n_val)):
        rows = df[df["split"] == split].sort_values("prompt_id", kind="stable").head(cap)
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


def _correlation(table: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for a in table.columns:
        out[a] = {}
        for b in table.columns:
            x, y = table[a].to_numpy(), table[b].to_numpy()
            if len(x) < 2 or x.std() == 0 or y.std() == 0:
                out[a][b] = None  # undefined for a constant column: say so, never NaN
            else:
                out[a][b] = round(float(np.corrcoef(x, y)[0, 1]), 6)
    return out


def summarise(
    scores: pd.DataFrame,
    objective_names: list[str],
    pair_counts: dict[str, dict[str, int]],
    tie_counts: dict[str, dict[str, int]],
) -> dict[str, Any]:
    """Report numbers from the per-response scores table (one column per objective plus
    prompt_id, split, tokens, degenerate)."""
    values = scores[objective_names]
    within = values - values.groupby(scores["prompt_id"]).transform("mean")
    per_objective = {}
    for name in objective_names:
        col = scores[name]
        per_objective[name] = {
            "mean": round(float(col.mean()), 6),
            "std": round(float(col.std(ddof=0)), 6),
            "min": round(float(col.min()), 6),
            "max": round(float(col.max()), 6),
            "by_split": {s: round(float(g.mean()), 6) for s, g in col.groupby(scores["split"])},
            # Spread inside a prompt's samples is what makes pairs: mean within-prompt std.
            "within_prompt_std": round(float(col.groupby(scores["prompt_id"]).std(ddof=0).mean()), 6),
        }
    return {
        "scores": per_objective,
        "correlation": _correlation(values),
        "within_prompt_correlation": _correlation(within),
        "pairs": pair_counts,
        "ties_skipped": tie_counts,
        "degenerate_fraction": round(float(scores["degenerate"].mean()), 6),
        "mean_tokens": round(float(scores["tokens"].mean()), 3),
    }


def run(params: Params, root: Path = Path("."), policy_path: str | None = None) -> PairsResult | None:
    """Sample, judge and pair; write data/pairs/*.parquet and report.json under `root`.

    Under `accelerate launch` every process samples its share of the prompts
    (paretoflow.generation); the main process judges, pairs, writes and returns the
    result, the others return None."""
    from paretoflow.distributed import current

    started, processes = time.perf_counter(), current()
    root = Path(root)
    prompts_path = root / params.curate.out_dir / "prompts.parquet"
    budget = params.pairs.budget(params.project.profile)
    selected = select_prompts(load_prompts(prompts_path), budget.n_train_prompts, budget.n_val_prompts)
    if selected.empty:
        raise ValueError(f"{prompts_path}: no train or val prompts to sample")
    # Fail on a bad judge config before generating; only the main process judges.
    mixture = processes.on_main(lambda: build_mixture(params, root))

    t0 = time.perf_counter()
    generated, origin, policy = sample_responses(params, root, selected, policy_path, processes=processes)
    seconds_generate = time.perf_counter() - t0
    if not processes.is_main:
        return None
    responses, meta, duplicates = response_table(selected, generated, origin)
    t0 = time.perf_counter()
    values = mixture.score([selected.at[r, "text"] for r in meta], list(responses["text"]),
                           [selected.at[r, "tags_list"] for r in meta])
    seconds_judge = time.perf_counter() - t0
    scores = score_table(params, selected, responses, meta, values)
    pairs_table, pair_counts, tie_counts = pair_table(params, scores)
    tables = {"prompts": _prompts_table(selected), "responses": responses,
              "ratings": rating_table(params, responses, values), "pairs": pairs_table}

    # Score statistics describe the policy's own samples, not the reference refusals.
    summary = summarise(scores[~scores["reference"]], params.objective_names, pair_counts, tie_counts)
    report = {
        "policy": policy, "origin": origin, "profile": params.project.profile, "seed": params.project.seed,
        "config": {**params.pairs.model_dump(mode="json", exclude={"cpu", "gpu"}), **budget.model_dump(mode="json")},
        "counts": {
            "prompts": {s: int((selected["split"] == s).sum()) for s in SAMPLED_SPLITS},
            "responses": {s: int((scores["split"] == s).sum()) for s in SAMPLED_SPLITS},
            "duplicate_samples": duplicates,
            "pairs_total": len(pairs_table),
        },
        **summary,
    }
    out_dir = root / params.pairs.out_dir
    paths = write_outputs(out_dir, tables, report)
    seconds = {"seconds_generate": seconds_generate, "seconds_judge": seconds_judge,
               "seconds_total": time.perf_counter() - started}
    return PairsResult(out_dir=out_dir, paths=paths, n_prompts=len(selected), n_responses=len(responses),
                       n_pairs=len(pairs_table), metrics=_metrics(summary, tables, duplicates, seconds))


def sample_responses(params: Params, root: Path, selected: pd.DataFrame, policy_path: str | None = None,
                     processes: Processes = SINGLE) -> tuple[list[list[str]], str, str]:
    """`samples_per_prompt` sampled answers per prompt (+ the reference refusal when on),
    on every process; each process samples its share (`processes`, paretoflow.distributed)."""
    from paretoflow.generation import generate
    from paretoflow.models import load_policy, model_fingerprint, place_for_profile

    config, budget = params.pairs, params.pairs.budget(params.project.profile)
    policy = policy_path or params.model.policy
    cache_dir = Path(params.model.cache_dir)
    model, tokenizer, resolved = load_policy(policy, cache_dir if cache_dir.is_absolute() else root / cache_dir,
                                             profile=params.project.profile)
    model = place_for_profile(model, params.project.profile)
    origin = f"policy:{Path(resolved).name}@{model_fingerprint(resolved)}"
    samples = budget.samples_per_prompt
    generated = generate(
        model, tokenizer, list(selected["messages_list"]),
        max_new_tokens=budget.max_new_tokens, do_sample=True, temperature=config.temperature,
        top_p=config.top_p, num_return_sequences=samples, batch_size=max(1, budget.batch_size // samples),
        max_prompt_tokens=budget.max_prompt_tokens, seed=params.project.seed, desc="pairs: sample",
        processes=processes, lanes=budget.lanes,
    )
    if config.refusal_exemplars:
        for row in range(len(generated)):
            pick = int(selected.at[row, "prompt_id"][-6:], 16) % len(REFUSALS)
            generated[row] = [*generated[row], REFUSALS[pick]]
    return generated, origin, policy


def response_table(selected: pd.DataFrame, generated: list[list[str]],
                   origin: str) -> tuple[pd.DataFrame, list[int], int]:
    """Responses table (duplicate samples of one prompt kept once, counted) and, per kept
    response, the row of its prompt in `selected`."""
    response_rows, meta, duplicates = [], [], 0
    for row, texts in enumerate(generated):
        pid = selected.at[row, "prompt_id"]
        seen = set()
        for text in texts:
            rid = schema.response_id(pid, text)
            if rid in seen:
                duplicates += 1
                continue
            seen.add(rid)
            text_origin = REFUSAL_ORIGIN if text in REFUSALS else origin
            response_rows.append({"response_id": rid, "prompt_id": pid, "text": text, "origin": text_origin})
            meta.append(row)
    return schema.frame("responses", response_rows), meta, duplicates


def rating_table(params: Params, responses: pd.DataFrame, values: dict[str, np.ndarray]) -> pd.DataFrame:
    rows = []
    for objective in params.objectives:
        lo, hi = objective.scale
        for rid, value in zip(responses["response_id"], values[objective.name]):
            rows.append({"response_id": rid, "objective": objective.name, "value": float(value),
                         "scale_min": lo, "scale_max": hi, "rater": RATER})
    return schema.frame("ratings", rows)


def score_table(params: Params, selected: pd.DataFrame, responses: pd.DataFrame, meta: list[int],
                values: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per response: a column per objective plus prompt, split, length, flags."""
    scores = pd.DataFrame({o.name: values[o.name] for o in params.objectives})
    scores["prompt_id"] = responses["prompt_id"].to_numpy()
    scores["split"] = [selected.at[r, "split"] for r in meta]
    scores["tokens"] = [len(word_tokens(t)) for t in responses["text"]]
    scores["degenerate"] = [is_degenerate(t) for t in responses["text"]]
    scores["response_id"] = responses["response_id"].to_numpy()
    scores["reference"] = (responses["origin"] == REFUSAL_ORIGIN).to_numpy()
    return scores


def pair_table(params: Params, scores: pd.DataFrame) -> tuple[pd.DataFrame, dict, dict]:
    """Pairs per prompt and objective (`pair_strategy`), with pair and tie counts per split.

    The reference refusal takes part only for objectives judged by `refusal`."""
    config, objectives = params.pairs, params.objectives
    judged_by_refusal = {o.name for o in objectives if any(j.name == "refusal" for j in o.judges)}
    pair_rows = []
    pair_counts = {o.name: {s: 0 for s in SAMPLED_SPLITS} for o in objectives}
    tie_counts = {o.name: {s: 0 for s in SAMPLED_SPLITS} for o in objectives}
    for pid, prompt_group in scores.groupby("prompt_id", sort=True):
        split = prompt_group["split"].iloc[0]
        for objective in objectives:
            group = prompt_group if objective.name in judged_by_refusal else prompt_group[~prompt_group["reference"]]
            ids = group["response_id"].to_list()
            pairs, ties = make_pairs(group[objective.name].to_numpy(), objective.direction == "maximize",
                                     config.pair_strategy, config.min_margin)
            tie_counts[objective.name][split] += ties
            pair_counts[objective.name][split] += len(pairs)
            for chosen, rejected, margin in pairs:
                pair_rows.append({
                    "pair_id": schema.pair_id(pid, ids[chosen], ids[rejected], objective.name),
                    "prompt_id": pid, "chosen_id": ids[chosen], "rejected_id": ids[rejected],
                    "objective": objective.name, "margin": margin, "source": PAIR_SOURCE,
                })
    return schema.frame("pairs", pair_rows), pair_counts, tie_counts


def _prompts_table(selected: pd.DataFrame) -> pd.DataFrame:
    source = selected["source"].fillna("") if "source" in selected.columns else ""
    return schema.frame("prompts", selected.assign(source=source)[schema.PROMPT_COLUMNS].to_dict("records"))


def write_outputs(out_dir: Path, tables: dict[str, pd.DataFrame], report: dict) -> dict[str, Path]:
    """The four tables and report.json, swapped into place together (one folder rename)."""
    with atomic_dir(out_dir) as tmp:
        for name, table in tables.items():
            write_table(table, tmp / f"{name}.parquet")
        write_json(tmp / "report.json", report, sort_keys=True)
    return {**{name: out_dir / f"{name}.parquet" for name in tables}, "report": out_dir / "report.json"}


def _metrics(summary: dict, tables: dict[str, pd.DataFrame], duplicates: int, seconds: dict) -> dict[str, float]:
    pair_counts, tie_counts = summary["pairs"], summary["ties_skipped"]
    metrics: dict[str, float] = {
        "n_prompts": float(len(tables["prompts"])), "n_responses": float(len(tables["responses"])),
        "n_pairs": float(len(tables["pairs"])), "duplicate_samples": float(duplicates),
        "degenerate_fraction": summary["degenerate_fraction"], "mean_tokens": summary["mean_tokens"],
        **{k: round(v, 3) for k, v in seconds.items()},
    }
    for name, stats in summary["scores"].items():
        metrics[f"score_mean_{name}"] = stats["mean"]
        metrics[f"score_std_{name}"] = stats["std"]
        metrics[f"pairs_{name}"] = float(sum(pair_counts[name].values()))
        metrics[f"ties_{name}"] = float(sum(tie_counts[name].values()))
    for a, row in summary["correlation"].items():
        for b, r in row.items():
            if a < b and r is not None:
                metrics[f"corr_{a}_{b}"] = r
    return metrics
