"""The front's artifact contract: `front.json` and `scores.parquet`, written and read here.

`FrontDocument` (pydantic) is front.json; `CandidateRecord` is one evaluated candidate in
it. Readers (promote, the flow's MLflow/Prefect logging, benches) go through
`read_front`, which validates the file and checks the per-prompt scores table against
the hash the document recorded, so a score table from another run is refused.

Records are pydantic dataclasses: validated like models, and `dataclasses.asdict` still
turns a `FrontResult` into plain JSON for Prefect results.

Score scales: `objectives`/`vs_base` are the judge mixture's values on each objective's
declared scale; `reward_model` and `independent` are raw reward-model head outputs (ridge
heads on [0, 1], Bradley-Terry heads in logits), so compare them only with each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass

from paretoflow.io import file_hash, read_table, write_json, write_table

FORMAT = "paretoflow-front/2"
FRONT_JSON = "front.json"
SCORES_FILE = "scores.parquet"
SCORE_COLUMNS = ("candidate", "scorer", "objective", "prompt_id", "value")
# The scorers a candidate is measured with (front.evaluate): the judge mixture (objective
# scores), the main reward model (reward.out_dir) and the independent one (its
# `independent/` folder), when present.
SCORERS = ("judges", "reward_model", "independent")

_STRICT = ConfigDict(extra="forbid")


@dataclass(config=_STRICT)
class PairedDiff:
    """Candidate − reference, mean over the same prompts, paired bootstrap interval."""

    diff: float
    ci_low: float
    ci_high: float
    sd: float = 0.0            # per-prompt SD of the paired differences
    mde: float = 0.0           # minimum detectable difference at this SD and prompt count

    @property
    def distinguishable(self) -> bool:
        return self.ci_low > 0.0 or self.ci_high < 0.0


@dataclass(config=_STRICT)
class CandidateRecord:
    """One evaluated candidate, flat enough to log as a nested MLflow run."""

    name: str
    kind: Literal["base", "merge", "adapter"]
    source: str                                  # grid | weights | map-design | map-verify | modpo | adapter | base
    method: str
    coefficients: dict[str, float]               # expert name -> coefficient (merges)
    weights: dict[str, float]                    # objective -> weight (merges, MODPO)
    merge_params: dict[str, Any]
    objectives: dict[str, float]                 # judge mixture means
    intervals: dict[str, list[float]]            # per-candidate bootstrap CI of each mean
    vs_base: dict[str, PairedDiff]               # judge mixture, paired against the base
    distinguishable: bool                        # some objective's vs_base interval excludes 0
    non_dominated: bool
    reward_model: dict[str, float] = Field(default_factory=dict)
    reward_model_intervals: dict[str, list[float]] = Field(default_factory=dict)
    reward_model_vs_base: dict[str, PairedDiff] = Field(default_factory=dict)
    independent: dict[str, float] = Field(default_factory=dict)
    independent_vs_base: dict[str, PairedDiff] = Field(default_factory=dict)
    adapter_hashes: dict[str, str] = Field(default_factory=dict)   # adapter folder -> weights file hash
    mean_new_tokens: float = 0.0
    generation_seconds: float = 0.0
    cached: bool = False
    cache_key: str = ""
    # front/answers.py: share of benign prompts answered on topic, paired vs the base, and
    # whether the candidate may become champion (not when its answer rate falls).
    answer_rate: float = float("nan")
    answer_rate_vs_base: PairedDiff | None = None
    n_benign_prompts: int = 0
    eligible: bool = True
    ineligible_reason: str = ""

    @property
    def distinguishable_objectives(self) -> list[str]:
        return [k for k, v in self.vs_base.items() if v.distinguishable]

    def mlflow_params(self) -> dict[str, str]:
        out = {"kind": self.kind, "source": self.source, "method": self.method}
        out.update({f"coef_{k}": f"{v:g}" for k, v in self.coefficients.items()})
        out.update({f"weight_{k}": f"{v:g}" for k, v in self.weights.items()})
        return out

    def mlflow_metrics(self) -> dict[str, float]:
        """Every number of the record under MLflow-safe names (the table and plot show the same)."""
        out: dict[str, float] = {"non_dominated": float(self.non_dominated),
                                 "distinguishable": float(self.distinguishable),
                                 "mean_new_tokens": self.mean_new_tokens}
        for name, value in self.objectives.items():
            out[name] = value
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = self.intervals[name]
        for prefix, block in (("", self.vs_base), ("rm_", self.reward_model_vs_base),
                              ("independent_", self.independent_vs_base)):
            for name, paired in block.items():
                out[f"{prefix}{name}_vs_base"] = paired.diff
                out[f"{prefix}{name}_vs_base_ci_low"] = paired.ci_low
                out[f"{prefix}{name}_vs_base_ci_high"] = paired.ci_high
        out.update({f"rm_{k}": v for k, v in self.reward_model.items()})
        out.update({f"independent_{k}": v for k, v in self.independent.items()})
        out["answer_rate"], out["eligible"] = self.answer_rate, float(self.eligible)
        if self.answer_rate_vs_base is not None:
            paired = self.answer_rate_vs_base
            out["answer_rate_vs_base"], out["answer_rate_vs_base_ci_low"] = paired.diff, paired.ci_low
            out["answer_rate_vs_base_ci_high"] = paired.ci_high
        return out

    def table_row(self, digits: int = 4) -> dict[str, Any]:
        """One row of the Prefect artifact table: absolute means and paired differences."""
        row: dict[str, Any] = {"candidate": self.name, "kind": self.kind, "non_dominated": self.non_dominated,
                               "distinguishable": self.distinguishable}
        for name, value in self.objectives.items():
            paired = self.vs_base[name]
            row[name] = round(value, digits)
            row[f"{name} vs base"] = (f"{paired.diff:+.{digits}f} "
                                      f"[{paired.ci_low:+.{digits}f}, {paired.ci_high:+.{digits}f}]")
        row["answer rate"] = round(self.answer_rate, digits)
        if self.answer_rate_vs_base is not None:
            p = self.answer_rate_vs_base
            row["answer rate vs base"] = f"{p.diff:+.{digits}f} [{p.ci_low:+.{digits}f}, {p.ci_high:+.{digits}f}]"
        row["eligible"] = self.eligible if self.eligible else f"no: {self.ineligible_reason}"
        return row


class ObjectiveInfo(BaseModel):
    model_config = _STRICT
    name: str
    direction: Literal["maximize", "minimize"]
    scale: tuple[float, float]


class AdapterInfo(BaseModel):
    model_config = _STRICT
    name: str
    file_hash: str
    objective: str | None = None          # experts
    weights: list[float] | None = None    # MODPO policies


class SkippedAdapter(BaseModel):
    model_config = _STRICT
    name: str
    reason: str


class EvaluationInfo(BaseModel):
    """How candidates were measured: prompts, generation settings, statistics, scorers."""

    model_config = _STRICT
    prompts: int
    split: str
    prompts_hash: str
    prompt_ids: list[str]
    max_new_tokens: int
    batch_size: int
    max_prompt_tokens: int = 512
    do_sample: bool
    seed: int
    n_boot: int
    ci_level: float
    mde_alpha: float
    mde_power: float
    scorers: dict[str, str]               # scorer -> content hash (judges config, reward model files)
    base_fingerprint: str


class FrontDocument(BaseModel):
    """front.json."""

    model_config = _STRICT
    format: Literal["paretoflow-front/2"] = FORMAT
    objectives: list[ObjectiveInfo]
    hypervolume: float
    hypervolume_ci: tuple[float, float]
    reference_point: dict[str, float]
    sparsity: float
    expected_utility: float
    expected_utility_step: float
    # Per scorer and objective: the MDE at this run's prompt count, from the root mean
    # square of the candidates' per-prompt SDs of paired differences vs the base.
    mde: dict[str, dict[str, float]]
    metrics: dict[str, float]
    method: str
    merge_method: str
    experts: list[AdapterInfo]
    adapters: list[AdapterInfo]
    skipped_adapters: list[SkippedAdapter] = Field(default_factory=list)
    evaluation: EvaluationInfo
    map: dict[str, Any] | None = None
    scores_file: str = SCORES_FILE
    scores_hash: str
    candidates: list[CandidateRecord]

    def candidate(self, name: str) -> CandidateRecord:
        for record in self.candidates:
            if record.name == name:
                return record
        raise KeyError(f"front has no candidate {name!r}; candidates: {[r.name for r in self.candidates]}")

    @property
    def base(self) -> CandidateRecord | None:
        return next((r for r in self.candidates if r.kind == "base"), None)


class PromptScores:
    """Per-prompt scores of every candidate (scores.parquet), indexed for paired statistics."""

    def __init__(self, table: pd.DataFrame, prompt_ids: list[str]):
        self.table = table
        self.prompt_ids = list(prompt_ids)
        self._index = {pid: i for i, pid in enumerate(self.prompt_ids)}

    @classmethod
    def from_arrays(cls, prompt_ids: list[str],
                    scores: dict[str, dict[str, dict[str, np.ndarray]]]) -> "PromptScores":
        """scores[candidate][scorer][objective] = values in prompt order."""
        rows = [
            {"candidate": c, "scorer": s, "objective": o, "prompt_id": pid, "value": float(v)}
            for c, by_scorer in scores.items() for s, by_objective in by_scorer.items()
            for o, values in by_objective.items() for pid, v in zip(prompt_ids, values)
        ]
        return cls(pd.DataFrame(rows, columns=list(SCORE_COLUMNS)), prompt_ids)

    def get(self, candidate: str, scorer: str = "judges") -> dict[str, np.ndarray]:
        """{objective: values in prompt order} of one candidate under one scorer ({} if none)."""
        part = self.table[(self.table["candidate"] == candidate) & (self.table["scorer"] == scorer)]
        out = {}
        for objective, group in part.groupby("objective", sort=False):
            values = np.full(len(self.prompt_ids), np.nan)
            values[[self._index[p] for p in group["prompt_id"]]] = group["value"].to_numpy(dtype=float)
            if np.isnan(values).any():
                raise ValueError(f"scores of {candidate}/{scorer}/{objective} miss some of the front's prompts")
            out[str(objective)] = values
        return out


def write_front(out_dir: Path, document_fields: dict[str, Any], scores: PromptScores) -> FrontDocument:
    """Write scores.parquet, then front.json (which records the scores' hash), atomically."""
    scores_path = write_table(scores.table, Path(out_dir) / SCORES_FILE)
    document = FrontDocument(**document_fields, scores_hash=file_hash(scores_path))
    write_json(Path(out_dir) / FRONT_JSON, document.model_dump(mode="json"))
    return document


def read_front(out_dir: str | Path) -> tuple[FrontDocument, PromptScores]:
    """front.json through the model, and its scores table checked against the recorded hash."""
    from paretoflow.io import read_json

    out_dir = Path(out_dir)
    path = out_dir / FRONT_JSON
    if not path.exists():
        raise FileNotFoundError(f"front not found: {path} (run `paretoflow front` first)")
    try:
        document = FrontDocument.model_validate(read_json(path))
    except ValueError as exc:
        raise ValueError(f"{path}: not a {FORMAT} document: {exc}") from exc
    scores_path = out_dir / document.scores_file
    table = read_table(scores_path, SCORE_COLUMNS, what="front scores")
    if file_hash(scores_path) != document.scores_hash:
        raise ValueError(f"{scores_path} does not match the hash {document.scores_hash} recorded in {path}: "
                         "the scores belong to another front run")
    return document, PromptScores(table, document.evaluation.prompt_ids)


__all__ = [
    "FORMAT",
    "AdapterInfo",
    "CandidateRecord",
    "EvaluationInfo",
    "FrontDocument",
    "PairedDiff",
    "PromptScores",
    "read_front",
    "write_front",
]
