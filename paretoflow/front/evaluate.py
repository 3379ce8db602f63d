"""Evaluating one candidate policy: generate on held-out prompts, score with every scorer.

A candidate is the base model, a merge of the LoRA experts (coefficients + method), or a
trained adapter (e.g. a MODPO policy). Every candidate runs on ONE loaded base model:
`MergeTarget` writes base + ΔW into its weights (a trained adapter is the exact merge of
itself with coefficient 1, equal to the peft model to float tolerance), so switching
candidates costs a merge (~0.2 s on the default model, measured) instead of a reload.

Answers are greedy (paretoflow.generation.generate: each sequence stops at its own
end-of-turn, batches grouped by prompt length) on the first `n` held-out prompts of the
test split ordered by prompt_id (a content hash: a fixed, topic-mixed subset). All
candidates answer the same prompts, so their scores pair up prompt by prompt
(paretoflow.metrics). Scorers are `(prompts, responses, tags) -> {objective: array}`
callables by name: "judges" (the judge mixture: the objective scores, every objective
required), and optionally "reward_model" and "independent" (reward models: the objectives
they declare).

Generations are cached as JSON under `.cache/generations/<key>.json`. The key hashes what
decides the answers: the base fingerprint, the weights actually applied (adapter file
hashes with their coefficients; for the exact merge only the non-zero ones, sorted, so a
trained adapter, the one-hot merge of the same file and a champion rebuilt from its
registered package share one entry), the merge method and its params, the prompts and the
generation settings. Re-scoring with new judges, a second run, or comparing with a
champion that was a candidate of an earlier front costs no generation.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from paretoflow.distributed import SINGLE, Processes
from paretoflow.metrics import mean_interval
from paretoflow.generation import generate_counted
from paretoflow import schema
from paretoflow.io import read_json, write_json
from paretoflow.merging import LoraExpert, MergeTarget, check_same_base, merge_deltas

Scorer = Callable[[list[str], list[str], "list[list[str]] | None"], dict[str, np.ndarray]]
JUDGES = "judges"


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap CI of the mean over prompts (one candidate)."""
    return mean_interval(values, n_resamples=n_boot, level=level, seed=seed)


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
    table = schema.read("prompts", path, required=["prompt_id", "messages", "text", "split"])
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
    source: str = ""                              # grid | weights | map-design | map-verify | modpo | base


@dataclass
class CandidateEvaluation:
    spec: CandidateSpec
    scores: dict[str, dict[str, np.ndarray]]      # scorer -> objective -> per-prompt values
    responses: list[str]
    new_tokens: list[int]
    generation_seconds: float
    cached: bool
    cache_key: str
    adapter_hashes: dict[str, str] = field(default_factory=dict)

    @property
    def objectives(self) -> dict[str, float]:
        """Mean judge-mixture score per objective."""
        return {k: float(np.mean(v)) for k, v in self.scores[JUDGES].items()}


def _checked_scores(raw: Mapping[str, np.ndarray], wanted: Sequence[str], n: int, label: str,
                    required: bool) -> dict[str, np.ndarray]:
    out = {}
    for name in wanted:
        if name not in raw:
            if required:
                raise KeyError(f"{label} returned no scores for objective {name!r} (got {sorted(raw)})")
            continue
        values = np.asarray(raw[name], dtype=float)
        if values.shape != (n,):
            raise ValueError(f"{label} returned {values.shape} scores for {name!r}, expected ({n},)")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{label} returned non-finite scores for {name!r}")
        out[name] = values
    return out


class CandidateEvaluator:
    """Generates (cached) and scores candidates on one loaded base model (module docstring)."""

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
        extra_scorers: Mapping[str, Scorer] | None = None,
        max_new_tokens: int = 64,
        batch_size: int = 8,
        max_prompt_tokens: int = 512,
        seed: int = 0,
        cache_dir: str | Path | None = ".cache/generations",
        progress: bool = True,
        processes: Processes = SINGLE,
        lanes: int = 1,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.base_fingerprint = base_fingerprint
        self.prompts = prompts
        self.scorers: dict[str, Scorer] = {JUDGES: scorer, **dict(extra_scorers or {})}
        self.objective_names = list(objective_names)
        self.experts = list(experts)
        self.adapters = dict(adapters or {})
        for expert in [*self.experts, *self.adapters.values()]:
            check_base(expert, base_fingerprint)
        if self.experts:
            check_same_base(self.experts)
        # Greedy only: a candidate's score must not depend on a sampling draw.
        self.generation = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, do_sample=False, seed=seed,
                               max_prompt_tokens=max_prompt_tokens)
        self.seed = seed
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.progress = progress
        self.processes = processes
        self.target = MergeTarget(model)
        if int(lanes) < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        self.lanes = int(lanes) if processes.count == 1 else 1  # a launch splits batches instead
        # One (model, tokenizer) per lane: generation sets the tokenizer's padding side.
        self._lanes: list[tuple[MergeTarget, object]] = [(self.target, tokenizer)]
        self._prefetched: dict[str, tuple[list[str], list[int], float]] = {}

    # -- what a candidate is made of -----------------------------------------------
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

    def _coefficients(self, spec: CandidateSpec) -> list[float]:
        if spec.kind == "merge":
            if spec.coefficients is None:
                raise ValueError(f"candidate {spec.name}: a merge needs coefficients")
            return [float(c) for c in spec.coefficients]
        return [1.0] if spec.kind == "adapter" else []

    def _method(self, spec: CandidateSpec) -> str:
        return spec.method if spec.kind == "merge" else "exact"

    def adapter_hashes(self, spec: CandidateSpec) -> dict[str, str]:
        """Adapter folder -> weights hash of every adapter the candidate applies (non-zero)."""
        pairs = zip(self._involved(spec), self._coefficients(spec))
        return {e.name: e.file_hash for e, c in pairs if c != 0.0 or self._method(spec) != "exact"}

    def cache_key(self, spec: CandidateSpec) -> str:
        method = self._method(spec)
        pairs = [[e.file_hash, c] for e, c in zip(self._involved(spec), self._coefficients(spec))]
        if method == "exact":  # Σ cᵢ ΔWᵢ: order-free, zero terms add nothing
            pairs = sorted(p for p in pairs if p[1] != 0.0)
        payload = {
            "base": self.base_fingerprint,
            "weights": pairs,
            "method": method,
            "merge_params": spec.merge_params if spec.kind == "merge" else {},
            "prompts": self.prompts.digest,
            "generation": self.generation,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]

    def _apply(self, spec: CandidateSpec, target: MergeTarget | None = None) -> None:
        target = target or self.target
        involved, coefficients = self._involved(spec), self._coefficients(spec)
        if not involved:
            target.restore()
            return
        target.apply(merge_deltas(involved, coefficients, self._method(spec), seed=self.seed,
                                  **(spec.merge_params if spec.kind == "merge" else {})))

    # -- generation ------------------------------------------------------------------
    def responses(self, spec: CandidateSpec) -> tuple[list[str], list[int], float, bool, str]:
        """(responses, new tokens per response, generation seconds, from cache?, cache key)."""
        key = self.cache_key(spec)
        if key in self._prefetched:
            texts, counts, seconds = self._prefetched.pop(key)
            return texts, counts, seconds, False, key
        path = self._cache_path(key)
        # The main process decides cache hits for all: a file it writes after one candidate
        # must not look present to one process and absent to another.
        cached = self.processes.broadcast(self._cached(path) if self.processes.is_main else None)
        if cached is not None:
            return cached["responses"], cached["new_tokens"], 0.0, True, key
        texts, counts, seconds = self._generate(spec, self.target, self.tokenizer, self.progress)
        return texts, counts, seconds, False, key

    def prefetch(self, specs: Sequence[CandidateSpec]) -> None:
        """Generate now, `lanes` candidates at a time (paretoflow/lanes.py), the answers of
        every spec the cache does not hold; `evaluate` then scores them in order. Each lane
        rewrites its own copy of the model, so a candidate's answers do not depend on its
        lane. With one lane (or a launch of several processes) this does nothing: `evaluate`
        generates each candidate in turn, as before."""
        if self.lanes == 1:
            return
        from tqdm.auto import tqdm

        from paretoflow.lanes import in_lanes

        todo, seen = [], set()
        for spec in specs:
            key = self.cache_key(spec)
            if key not in seen and key not in self._prefetched and self._cached(self._cache_path(key)) is None:
                seen.add(key)
                todo.append(spec)
        if len(todo) < 2:
            return
        while len(self._lanes) < min(self.lanes, len(todo)):
            import copy

            self._lanes.append((MergeTarget(copy.deepcopy(self.model)), copy.deepcopy(self.tokenizer)))
        bar = tqdm(total=len(todo), desc=f"generate {len(todo)} candidates in {len(self._lanes)} lanes",
                   unit="candidate", disable=not self.progress)

        def work(lane: tuple[MergeTarget, object], spec: CandidateSpec) -> tuple[list[str], list[int], float]:
            out = self._generate(spec, *lane, progress=False)
            bar.update(1)
            return out

        for spec, out in zip(todo, in_lanes(todo, work, self._lanes)):
            self._prefetched[self.cache_key(spec)] = out
        bar.close()

    def _cache_path(self, key: str) -> Path | None:
        return self.cache_dir / f"{key}.json" if self.cache_dir else None

    def _generate(self, spec: CandidateSpec, target: MergeTarget, tokenizer,
                  progress: bool) -> tuple[list[str], list[int], float]:
        """Answers of `spec` on `target`'s model (written to the cache by the main process)."""
        start = time.perf_counter()
        self._apply(spec, target)
        try:
            outputs = generate_counted(
                target.model, tokenizer, self.prompts.messages, progress=progress,
                desc=f"generate {spec.name}", processes=self.processes, **self.generation,
            )
        finally:
            target.restore()
        seconds = time.perf_counter() - start
        texts = [o[0] for o in outputs.texts]
        counts = [int(c[0]) for c in outputs.token_counts]
        path = self._cache_path(self.cache_key(spec))
        if path is not None and self.processes.is_main:
            write_json(path, {"prompt_ids": self.prompts.prompt_ids, "responses": texts, "new_tokens": counts,
                              "candidate": spec.name, "seconds": seconds}, indent=None)
        return texts, counts, seconds

    def _cached(self, path: Path | None) -> dict | None:
        if path is None or not path.exists():
            return None
        cached = read_json(path)
        if cached.get("prompt_ids") == self.prompts.prompt_ids and "new_tokens" in cached:
            return cached
        return None

    # -- scoring ---------------------------------------------------------------------
    def score(self, texts: list[str]) -> dict[str, dict[str, np.ndarray]]:
        """scorer -> objective -> per-prompt values for these responses to the prompts."""
        n = len(self.prompts.texts)
        out = {}
        for name, scorer in self.scorers.items():
            raw = scorer(self.prompts.texts, texts, self.prompts.tags)
            out[name] = _checked_scores(raw, self.objective_names, n, f"scorer {name!r}", required=name == JUDGES)
        return out

    def evaluate(self, spec: CandidateSpec) -> CandidateEvaluation:
        """Answers (shared across processes) and scores. Only the main process scores; every
        process gets its scores, so a search that picks the next candidate from them (MAP)
        picks the same one everywhere."""
        texts, counts, seconds, cached, key = self.responses(spec)
        scores = self.processes.broadcast(self.processes.on_main(lambda: self.score(texts)))
        return CandidateEvaluation(spec, scores, texts, counts, seconds, cached, key, self.adapter_hashes(spec))


def check_base(expert: LoraExpert, base_fingerprint: str) -> None:
    """Refuse an adapter whose recorded base fingerprint is not the loaded base's."""
    recorded = expert.base_fingerprint
    if recorded and recorded != base_fingerprint:
        raise ValueError(
            f"adapter {expert.name} was trained on base fingerprint {recorded}, "
            f"but the loaded base has fingerprint {base_fingerprint}"
        )


__all__ = [
    "JUDGES",
    "CandidateEvaluation",
    "CandidateEvaluator",
    "CandidateSpec",
    "EvalPrompts",
    "Scorer",
    "bootstrap_ci",
    "check_base",
    "load_eval_prompts",
]
