"""Checkpoint selection on the objective itself: greedy answers to val prompts, judged.

Every `eval_steps` the trainer answers a small fixed set of val-split prompts greedily
(batched, each answer stops at the end-of-turn token or `max_new_tokens`) and scores
the answers with a `Scorer`:

    scorer(prompt_texts, responses, tags) -> {objective: (n,) goodness in [0, 1]}

The selection score is Σ_o w_o · mean(goodness_o): w is one-hot on the expert's
objective, or the MODPO weight vector. With a guard (`align.selection_max_drop`), a
checkpoint is eligible only while every other objective's mean stays within that much
of the base policy's: one objective alone is gamed within minutes (docs/measurements.md), and
measured here, the conciseness expert that scored best on its own objective answered
with short off-topic and profane text. The adapter with the best score is kept; the
base policy (step 0, the LoRA update is zero there) is the first candidate, so an
adapter that never beats the base on its own objective is reported as such
(`best_step` 0) instead of shipping a worse checkpoint. This replaces selection on the
DPO validation loss, which rose from the first evaluation on a few dozen pairs while
the judged objective still moved (issue 10), and it guards the collapse docs/measurements.md
measured (empty answers score 0 with every judge).

The prompts are `n` val-split prompts of the curated prompts, taken round-robin over
strata (source, tags), each stratum in prompt_id order (a content hash: a fixed
pseudo-random pick). Judges read tags (refusal is scored on `harmful` prompts), so every
kind of prompt they treat differently is represented, and a small built-in set is not
drowned by a large imported dataset. The base policy's answers are cached by content key (policy
fingerprint, prompts, generation settings) under `align.cache_dir`, shared by
every adapter of a run. `judge_scorer` builds the default scorer from the objectives'
judge mixtures; tests pass a small deterministic callable instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from paretoflow import schema

if TYPE_CHECKING:
    from paretoflow.config import Params

Scorer = Callable[[list[str], list[str], list[list[str]]], dict[str, np.ndarray]]


@dataclass
class SelectionPrompt:
    prompt_id: str
    messages: list[dict[str, str]]
    text: str
    tags: list[str] = field(default_factory=list)


@dataclass
class Selection:
    """What the trainer needs to select checkpoints on the objective."""

    prompts: list[SelectionPrompt]
    scorer: Scorer
    weights: dict[str, float]  # objective -> weight of its mean goodness in the score
    max_new_tokens: int = 48
    batch_size: int = 16
    max_prompt_tokens: int = 256
    cache_dir: Path | None = None  # base answers, content-keyed; None = no cache
    scorer_name: str = "custom"
    # Guard: objective -> largest drop of its mean goodness below the base policy's that
    # keeps a checkpoint eligible (objectives outside `weights`; the scorer scores them too).
    guard: dict[str, float] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        payload = json.dumps([[p.prompt_id, p.messages] for p in self.prompts], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def describe(self) -> dict:
        return {"prompts": len(self.prompts), "prompts_digest": self.digest, "weights": self.weights,
                "guard": self.guard, "max_new_tokens": self.max_new_tokens, "scorer": self.scorer_name}

    def eligible(self, metrics: dict[str, float], base: dict[str, float] | None) -> bool:
        """The guard: no objective outside the score fell more than allowed below the base."""
        if base is None:
            return True
        return all(metrics[f"val_{o}"] >= base[f"val_{o}"] - drop - 1e-12 for o, drop in self.guard.items())


def load_selection_prompts(prompts_path: Path, n: int, split: str = "val") -> list[SelectionPrompt]:
    """`n` prompts of `split`, round-robin over strata (source, tags), each in prompt_id order."""
    table = schema.read("prompts", prompts_path)
    table = table[table["split"] == split].assign(_stratum=lambda t: t["source"].astype(str) + "|" + t["tags"])
    table = table.sort_values(["_stratum", "prompt_id"], kind="stable")
    rank = table.groupby("_stratum", sort=True).cumcount()
    rows = table.assign(_rank=rank).sort_values(["_rank", "_stratum"], kind="stable").head(n)
    out = []
    for row in rows.itertuples(index=False):
        tags = json.loads(row.tags) if isinstance(row.tags, str) and row.tags else []
        out.append(SelectionPrompt(row.prompt_id, schema.parse_messages(row.messages), str(row.text),
                                   [str(t) for t in tags]))
    return out


def judge_scorer(params: Params, root: Path, objectives: Sequence[str]) -> Scorer:
    """Goodness in [0, 1] of `objectives` under their judge mixtures (params.objectives)."""
    from paretoflow.judges import JudgeMixture, goodness
    from paretoflow.judges.base import JudgeContext

    chosen = [params.objective(o) for o in objectives]
    mixture = JudgeMixture(chosen, JudgeContext(root=Path(root), params=params))

    def score(texts: list[str], responses: list[str], tags: list[list[str]]) -> dict[str, np.ndarray]:
        values = mixture.score(texts, responses, tags)
        return {o.name: goodness(o, values[o.name]) for o in chosen}

    return score


def _cache_path(selection: Selection, policy_fingerprint: str) -> Path | None:
    if selection.cache_dir is None:
        return None
    key = hashlib.sha256(json.dumps([policy_fingerprint, selection.digest, selection.max_new_tokens,
                                     selection.max_prompt_tokens]).encode()).hexdigest()[:20]
    return Path(selection.cache_dir) / f"base-{key}.json"


def generate_answers(model, tokenizer, selection: Selection, progress: bool = False) -> list[str]:
    """Greedy answers, model in eval mode, without touching the caller's RNG stream. The
    global generator is seeded and restored around them under the session lock: an align
    lane doing so while another lane seeded its adapter's initialisation gave that adapter
    other weights now and then (tests/paretoflow/align/test_run.py, lanes)."""
    from paretoflow.align.session import GLOBAL_RNG
    from paretoflow.generation import generate

    was_training = model.training
    model.eval()
    try:
        with GLOBAL_RNG, torch.random.fork_rng(devices=[]):
            answers = generate(model, tokenizer, [p.messages for p in selection.prompts],
                               max_new_tokens=selection.max_new_tokens, batch_size=selection.batch_size,
                               max_prompt_tokens=selection.max_prompt_tokens, progress=progress,
                               desc="select: generate")
    finally:
        model.train(was_training)
    return [a[0] for a in answers]


def base_answers(model, tokenizer, selection: Selection, policy_fingerprint: str,
                 progress: bool = False) -> list[str]:
    """The base policy's answers (call with the adapter off or zero), cached by content key."""
    from paretoflow.io import read_json, write_json

    path = _cache_path(selection, policy_fingerprint)
    if path is not None and path.exists():
        cached = read_json(path)
        if cached.get("prompt_ids") == [p.prompt_id for p in selection.prompts]:
            return list(cached["answers"])
    answers = generate_answers(model, tokenizer, selection, progress)
    if path is not None:
        write_json(path, {"prompt_ids": [p.prompt_id for p in selection.prompts], "answers": answers})
    return answers


def score_answers(selection: Selection, answers: list[str]) -> dict[str, float]:
    """{"val_objective": weighted score, "val_<objective>": mean goodness, "val_answer_words": ...}."""
    prompts = selection.prompts
    values = selection.scorer([p.text for p in prompts], answers, [list(p.tags) for p in prompts])
    out = {f"val_{o}": float(np.mean(values[o])) for o in [*selection.weights, *selection.guard]}
    out["val_objective"] = float(sum(w * out[f"val_{o}"] for o, w in selection.weights.items()))
    out["val_answer_words"] = float(np.mean([len(a.split()) for a in answers])) if answers else 0.0
    out["val_empty_answers"] = float(sum(not a.strip() for a in answers))
    return out


__all__ = [
    "Scorer",
    "Selection",
    "SelectionPrompt",
    "base_answers",
    "generate_answers",
    "judge_scorer",
    "load_selection_prompts",
    "score_answers",
]
