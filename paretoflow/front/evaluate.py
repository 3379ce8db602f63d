"""Evaluating one candidate policy: generate on held-out prompts, score, bootstrap.

A candidate is the base model, a merge of the LoRA experts (coefficients + method), or a
trained adapter (e.g. a MODPO policy). Every candidate runs on ONE loaded base model:
`MergeTarget` writes base + ΔW into its weights (a trained adapter is the exact merge of
itself with coefficient 1, equal to the peft model to float tolerance), so switching
candidates costs a merge (~0.2 s on the default model, measured) instead of a reload.

Answers are greedy by default (paretoflow.generation.generate), batched and seeded, on
the first `n` held-out prompts of the test split ordered by prompt_id (a content hash:
a fixed, topic-mixed subset). Each objective is scored per prompt by the scorer (the
judge mixture by default, any `(prompts, responses, tags) -> {objective: array}` callable
otherwise); when a reward model is given its scores are recorded beside, as
`rm_<objective>`. Means get percentile bootstrap CIs (seeded resampling of prompts).

Generations are cached as JSON under `.cache/generations/<key>.json`, the key hashing the
base fingerprint, the adapters' file hashes, coefficients, merge method and its params,
the prompts and the generation settings, so re-scoring with new judges is free.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from paretoflow.generation import generate
from paretoflow.merging import LoraExpert, MergeTarget, check_same_base, merge_deltas

Scorer = Callable[[list[str], list[str], "list[list[str]] | None"], dict[str, np.ndarray]]


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap CI of the mean, resampling with a seeded RNG."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        raise ValueError("bootstrap of an empty sample")
    if not 0.0 < level < 1.0:
        raise ValueError(f"CI level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, array.size, size=(n_boot, array.size))
    means = array[draws].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(array.mean()), float(low), float(high)


@dataclass
class EvalPrompts:
    prompt_ids: list[str]
    messages: list[list[dict[str, str]]]
    texts: list[str]
    tags: list[list[str]]

    @property
    def digest(self) -> str:
        payload = json.dumps([self.prompt_ids, self.messages, self.tags], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_eval_prompts(path: str | Path, split: str, n: int) -> EvalPrompts:
    """The first `n` prompts of `split` ordered by prompt_id (canonical prompts table)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"held-out prompts not found: {path} (run `paretoflow curate` first)")
    table = pd.read_parquet(path)
    missing = {"prompt_id", "messages", "text", "split"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: prompts table lacks columns {sorted(missing)}")
    table = table[table["split"] == split].sort_values("prompt_id").head(n)
    if table.empty:
        raise ValueError(f"{path}: no prompts in split {split!r}")
    messages, tags = [], []
    for row_number, row in table.iterrows():
        try:
            conversation = json.loads(row["messages"])
            row_tags = json.loads(row["tags"]) if "tags" in table.columns and row["tags"] else []
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: row {row_number} (prompt {row['prompt_id']}): bad JSON: {exc}") from exc
        # The answer is generated for the conversation up to its last user turn.
        while conversation and conversation[-1].get("role") == "assistant":
            conversation = conversation[:-1]
        if not conversation:
            raise ValueError(f"{path}: row {row_number} (prompt {row['prompt_id']}): no user turn")
        messages.append(conversation)
        tags.append(list(row_tags))
    return EvalPrompts(list(table["prompt_id"]), messages, [str(t) for t in table["text"]], tags)


@dataclass
class CandidateSpec:
    """How a candidate is made. kind: base | merge | adapter."""

    name: str
    kind: str
    coefficients: list[float] | None = None      # merge: one per expert
    expert_names: list[str] = field(default_factory=list)
    method: str = "exact"
    merge_params: dict = field(default_factory=dict)
    adapter: str | None = None                    # adapter: its folder name
    weights: list[float] | None = None            # objective weights it was trained/merged for
    source: str = ""                              # grid | map-design | map-verify | modpo | base


@dataclass
class CandidateEvaluation:
    spec: CandidateSpec
    objectives: dict[str, float]                  # mean per objective (judges)
    intervals: dict[str, tuple[float, float]]     # bootstrap CI per objective
    reward_model: dict[str, float]                # mean RM score per objective (may be empty)
    reward_model_intervals: dict[str, tuple[float, float]]
    per_prompt: dict[str, list[float]]
    responses: list[str]
    generation_seconds: float
    cached: bool
    cache_key: str


class CandidateEvaluator:
    """Evaluates candidates on one loaded base model (see module docstring)."""

    def __init__(
        self,
        model,
        tokenizer,
        base_fingerprint: str,
        prompts: EvalPrompts,
        scorer: Scorer,
        objective_names: Sequence[str],
        *,
        experts: Sequence[LoraExpert] = (),
        adapters: dict[str, LoraExpert] | None = None,
        reward_scorer: Scorer | None = None,
        max_new_tokens: int = 64,
        batch_size: int = 8,
        do_sample: bool = False,
        seed: int = 0,
        n_boot: int = 1000,
        ci_level: float = 0.95,
        cache_dir: str | Path | None = ".cache/generations",
        progress: bool = True,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.base_fingerprint = base_fingerprint
        self.prompts = prompts
        self.scorer = scorer
        self.objective_names = list(objective_names)
        self.experts = list(experts)
        self.adapters = dict(adapters or {})
        for expert in [*self.experts, *self.adapters.values()]:
            check_base(expert, base_fingerprint)
        if self.experts:
            check_same_base(self.experts)
        self.reward_scorer = reward_scorer
        self.generation = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, do_sample=do_sample, seed=seed)
        self.n_boot, self.ci_level, self.seed = n_boot, ci_level, seed
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.progress = progress
        self.target = MergeTarget(model)

    # -- generation ------------------------------------------------------------------
    def _involved(self, spec: CandidateSpec) -> list[LoraExpert]:
        if spec.kind == "merge":
            return self.experts
        if spec.kind == "adapter":
            if spec.adapter not in self.adapters:
                raise KeyError(f"candidate {spec.name}: adapter {spec.adapter!r} not loaded")
            return [self.adapters[spec.adapter]]
        if spec.kind == "base":
            return []
        raise ValueError(f"candidate {spec.name}: unknown kind {spec.kind!r}")

    def cache_key(self, spec: CandidateSpec) -> str:
        payload = {
            "base": self.base_fingerprint,
            "adapters": [e.file_hash for e in self._involved(spec)],
            "coefficients": spec.coefficients if spec.kind == "merge" else ([1.0] if spec.kind == "adapter" else []),
            "method": spec.method if spec.kind == "merge" else ("exact" if spec.kind == "adapter" else "none"),
            "merge_params": spec.merge_params if spec.kind == "merge" else {},
            "prompts": self.prompts.digest,
            "generation": self.generation,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]

    def _apply(self, spec: CandidateSpec) -> None:
        if spec.kind == "base":
            self.target.restore()
        elif spec.kind == "adapter":
            self.target.apply(merge_deltas(self._involved(spec), [1.0], "exact"))
        else:
            if spec.coefficients is None:
                raise ValueError(f"candidate {spec.name}: a merge needs coefficients")
            self.target.apply(
                merge_deltas(self.experts, spec.coefficients, spec.method, seed=self.seed, **spec.merge_params)
            )

    def responses(self, spec: CandidateSpec) -> tuple[list[str], float, bool, str]:
        """(responses, generation seconds, from cache?, cache key)."""
        key = self.cache_key(spec)
        path = self.cache_dir / f"{key}.json" if self.cache_dir else None
        if path is not None and path.exists():
            cached = json.loads(path.read_text())
            if cached.get("prompt_ids") == self.prompts.prompt_ids:
                return cached["responses"], 0.0, True, key
        start = time.perf_counter()
        self._apply(spec)
        try:
            outputs = generate(
                self.model, self.tokenizer, self.prompts.messages, progress=self.progress,
                desc=f"generate {spec.name}", **self.generation,
            )
        finally:
            self.target.restore()
        seconds = time.perf_counter() - start
        texts = [o[0] for o in outputs]
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"prompt_ids": self.prompts.prompt_ids, "responses": texts,
                                       "candidate": spec.name}))
            tmp.replace(path)
        return texts, seconds, False, key

    # -- scoring ---------------------------------------------------------------------
    def _summarise(self, scores: dict[str, np.ndarray], label: str) -> tuple[dict, dict, dict]:
        means, intervals, per_prompt = {}, {}, {}
        for index, name in enumerate(self.objective_names):
            if name not in scores:
                raise KeyError(f"{label} returned no scores for objective {name!r} (got {sorted(scores)})")
            values = np.asarray(scores[name], dtype=float)
            if values.shape != (len(self.prompts.texts),):
                raise ValueError(f"{label} returned {values.shape} scores for {name!r}, expected {len(self.prompts.texts)}")
            mean, low, high = bootstrap_ci(values, self.n_boot, self.ci_level, self.seed + index)
            means[name], intervals[name], per_prompt[name] = mean, (low, high), values.tolist()
        return means, intervals, per_prompt

    def evaluate(self, spec: CandidateSpec) -> CandidateEvaluation:
        texts, seconds, cached, key = self.responses(spec)
        scores = self.scorer(self.prompts.texts, texts, self.prompts.tags)
        means, intervals, per_prompt = self._summarise(scores, "scorer")
        rm_means, rm_intervals = {}, {}
        if self.reward_scorer is not None:
            rm_means, rm_intervals, rm_per_prompt = self._summarise(
                self.reward_scorer(self.prompts.texts, texts, self.prompts.tags), "reward model"
            )
            per_prompt.update({f"rm_{k}": v for k, v in rm_per_prompt.items()})
        return CandidateEvaluation(spec, means, intervals, rm_means, rm_intervals, per_prompt,
                                   texts, seconds, cached, key)


def check_base(expert: LoraExpert, base_fingerprint: str) -> None:
    """Refuse an adapter whose recorded base fingerprint is not the loaded base's."""
    recorded = expert.base_fingerprint
    if recorded and recorded != base_fingerprint:
        raise ValueError(
            f"adapter {expert.name} was trained on base fingerprint {recorded}, "
            f"but the loaded base has fingerprint {base_fingerprint}"
        )


__all__ = [
    "CandidateEvaluation",
    "CandidateEvaluator",
    "CandidateSpec",
    "EvalPrompts",
    "Scorer",
    "bootstrap_ci",
    "check_base",
    "load_eval_prompts",
]
