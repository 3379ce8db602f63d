"""The reward stage: an ArmoRM-style multi-objective reward model on backbone features,
trained on the curated human pairs, ratings and rule-judge ratings (`paretoflow/reward/`),
with gating, calibration and an independent twin.

Config: `RewardConfig` (params.yaml `reward`, budgets `RewardBudget`). Entry:
`run(params, root)`. CLI: `paretoflow reward` (alias `train-rm`).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from paretoflow.sections import ProjectPath, _Budgeted, _Section, check_objective_keys
from paretoflow.stages.base import CURATED_TABLES, Stage, curated

if TYPE_CHECKING:
    from paretoflow.config import Params
    from paretoflow.reward.train import RewardResult


class RewardBudget(_Section):
    """Feature backbone of the reward model for one hardware profile."""

    # MiniLM on CPU (~12x faster than the policy's states there), the policy's hidden states
    # on GPU (read-out: `pooling`, `layer`). Measurements: docs/measurements.md#reward-model.
    backbone: Literal["minilm", "policy"] = "minilm"
    # 256: MiniLM's max_seq_length (sentence-transformers config). Longer dialogues keep
    # their last tokens.
    max_length: int = Field(256, ge=8)
    batch_size: int = Field(16, ge=1)  # the batch of the measured timings
    # MiniLM: response windows of max_length tokens averaged into e_r (1 = first window
    # only). Measured in bench/reward.py; each window costs one more encoder pass.
    max_chunks: int = Field(1, ge=1)
    # Policy backbone: the pair feature is the last token's state ("last", ArmoRM) or the
    # mean over the response tokens ("mean"), read at decoder layer `layer` (0 = the last;
    # the layers above are not run).
    pooling: Literal["last", "mean"] = "last"
    layer: int = Field(0, ge=0)


FeatureView = Literal["backbone", "lexical"]


class RewardSourceWeights(_Section):
    """How much each source of one objective weighs in its head's loss (see
    paretoflow.reward.data). A weight multiplies the source's *mean* loss, so a source
    of 200 ratings and one of 2,000 pairs count alike at equal weights; 0 leaves a
    source out of training (it is still reported)."""

    pairs: float = Field(1.0, ge=0.0)  # curated preference pairs (every `source` value)
    ratings: float = Field(1.0, ge=0.0)  # curated ratings (every rater)
    # The objective's judges in params.objectives (reward_model excluded) rating the
    # curated responses; 0 = not computed (only conciseness uses them: measurements page).
    judges: float = Field(0.0, ge=0.0)
    # Per-source overrides by the curated pairs' `source` value (a file path) or
    # "ratings:<rater>"; e.g. {"data/raw/x.jsonl": 0.5}.
    by_source: dict[str, float] = Field(default_factory=dict)

    @field_validator("by_source")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: w for k, w in v.items() if not (w >= 0 and math.isfinite(w))}
        if bad:
            raise ValueError(f"source weights must be finite and >= 0, got {bad}")
        return v


class RewardConfig(_Budgeted):
    """ArmoRM-style multi-objective reward model (paretoflow.reward)."""

    out_dir: ProjectPath = "artifacts/reward"
    feature_cache_dir: ProjectPath = ".cache/features"
    backbone_policy: str | None = None  # None: the policy named in model.policy
    # Per objective: the weight of each data source (an objective not listed gets the
    # defaults of RewardSourceWeights).
    sources: dict[str, RewardSourceWeights] = Field(default_factory=dict)
    # CPU budget: at most this many pairs per (prompt, objective), then whole prompts up
    # to this many pairs per curated pair source, chosen by a seeded hash (prompt-grouped;
    # keeps split fractions). None = all. Accuracy vs size: bench/reward.py.
    max_pairs_per_source: int | None = Field(1200, ge=1)
    max_pairs_per_prompt: int | None = Field(8, ge=1)
    # L2 penalty grid of the linear heads on standardised features (our choice, half a
    # decade apart); the value with the lowest validation loss is kept.
    head_alphas: list[float] = Field(default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0])
    # Explicit response-length/format features beside the backbone's (log words, lines,
    # list items, emphasis): the head can then weigh length apart from content.
    text_features: bool = True
    # Per objective, how much of its head's linear length component to remove (0..1):
    # λ = strength · cov(r, ℓ) / var(ℓ) over the training responses (ℓ = standardised
    # log word count), subtracted from the head itself; needs text_features
    # (docs/measurements.md#reward-model: why helpfulness takes 0.8).
    length_debias: dict[str, float] = Field(default_factory=dict)
    # Gating MLP. ArmoRM used 1024 hidden units on 4096-d Llama-3 features and ~10^5
    # preference pairs; 64 suits <= 10^4 pairs on CPU (our choice).
    gating_hidden_size: int = Field(64, ge=1)
    gating_epochs: int = Field(300, ge=1)
    gating_lr: float = Field(0.005, gt=0.0)
    # Smallest rating gap (on [0, 1]) that makes a test pair from ratings: below it judge
    # noise dominates (our choice, not tuned).
    combined_min_margin: float = Field(0.05, ge=0.0)
    # ArmoRM verbosity debiasing strength in [0, 1]: 1 removes the linear length component
    # of each head from the overall score (as ArmoRM), 0 turns it off (off: measurements page).
    verbosity_penalty: float = Field(0.0, ge=0.0, le=1.0)
    # Feature views each objective's head reads (paretoflow.reward.lexical): "backbone"
    # (MiniLM / policy states) and "lexical" (hashed bag of words + harm/tone cues); the
    # text features always. An objective not listed reads both (the CV behind params.yaml's
    # choice: docs/measurements.md#reward-model).
    views: dict[str, list[FeatureView]] = Field(default_factory=dict)
    # The Goodhart guard: an independent model on the same train prompts, each head on
    # another view, written to <out_dir>/independent (paretoflow.reward.train; its error
    # correlation with the main model: measurements page). An objective not listed gets
    # "lexical" where its main head reads the backbone only, else "backbone". false = none.
    independent: bool = True
    independent_views: dict[str, list[FeatureView]] = Field(default_factory=dict)
    # The independent model's length_debias (None = the main model's).
    independent_length_debias: dict[str, float] | None = None
    # Equal-width bins for ECE (Guo et al. 2017 used 15; 10 is the common default).
    calibration_bins: int = Field(10, ge=1)
    cpu: RewardBudget = Field(default_factory=RewardBudget)
    gpu: RewardBudget = Field(default_factory=lambda: RewardBudget(backbone="policy", max_length=512, batch_size=64,
                                                                   pooling="mean", layer=20))

    @field_validator("head_alphas")
    @classmethod
    def _alphas_positive(cls, v: list[float]) -> list[float]:
        if not v or any(not (a > 0 and math.isfinite(a)) for a in v):
            raise ValueError(f"head_alphas must be a non-empty list of positive numbers, got {v}")
        return sorted(v)

    @field_validator("length_debias", "independent_length_debias")
    @classmethod
    def _strengths(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        bad = {k: s for k, s in (v or {}).items() if not 0.0 <= s <= 1.0}
        if bad:
            raise ValueError(f"length_debias strengths must be in [0, 1], got {bad}")
        return v

    @field_validator("views", "independent_views")
    @classmethod
    def _views_non_empty(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        empty = [k for k, views in v.items() if not views]
        if empty:
            raise ValueError(f"an objective's feature views must name at least one view, got none for {empty}")
        return {k: sorted(set(views)) for k, views in v.items()}

    def weights(self, objective: str) -> RewardSourceWeights:
        """The source weights of one objective (defaults when params name none)."""
        return self.sources.get(objective) or RewardSourceWeights()

    def head_views(self, objective: str) -> list[str]:
        """The views the main model's head of `objective` reads."""
        return self.views.get(objective) or ["backbone", "lexical"]

    def independent_head_views(self, objective: str) -> list[str]:
        """The views the independent model's head reads (see `independent_views`)."""
        if objective in self.independent_views:
            return self.independent_views[objective]
        return ["lexical"] if self.head_views(objective) == ["backbone"] else ["backbone"]


def check(params: Params) -> None:
    """Per-objective settings name declared objectives only."""
    for key in ("sources", "views", "independent_views", "length_debias", "independent_length_debias"):
        check_objective_keys(getattr(params.reward, key), params.objective_names, f"reward.{key}")


def run(params: Params, root: Path, *, progress: bool = True) -> RewardResult:
    """Train on curated data (train), tune on val, report on test; write <reward.out_dir>."""
    from paretoflow.reward.train import run as train_reward_model

    return train_reward_model(params, Path(root), progress=progress)


def reads_policy(params: Params) -> bool:
    """Whether the reward model reads the policy: its states are the features of the
    `policy` backbone; MiniLM features (the cpu profile) and the judges never touch it, so
    there the flow starts this stage while the policy is still being prepared."""
    return params.reward.budget(params.project.profile).backbone == "policy"


STAGE = Stage(
    name="reward",
    run=run,
    command="paretoflow reward",
    sections=("project", "model", "objectives", "reward"),
    inputs=lambda p: curated(p, *CURATED_TABLES),
    outputs=lambda p: [p.reward.out_dir],
    artifacts=lambda p: [p.reward.out_dir],
    reads_policy=reads_policy,  # the policy backbone's features (gpu profile, tiny test project)
    summary="curated human pairs + ratings + rule judges → per-objective heads (every source), gating, "
            "calibration; independent twin",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reward", aliases=["train-rm"],
        help="train the multi-objective reward model on the curated data (human pairs, ratings, judge ratings)")
    parser.add_argument("--root", default=".", help="repo root (data paths are relative to it)")
    parser.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    result = run(args.load_params(), Path(args.root))
    print(f"reward model written to {result.out_dir}; report {result.report_md_path}")
    for key, value in sorted(result.metrics.items()):
        print(f"  {key}: {value:.4f}")
    return 0
