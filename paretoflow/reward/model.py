"""The ArmoRM-style multi-objective reward model: inference, save and load.

ArmoRM (Wang et al. 2024, "Interpretable Preferences via Multi-Objective Reward Modeling
and Mixture-of-Experts"), on a frozen backbone's features x (pair) and x_p (prompt):

    r_k(x)   = w_k · x̃ + b_k                 one linear head per objective (stage 1)
    z_k      = (r_k − μ_k) / σ_k − λ_k · ℓ     heads z-scored on the training responses,
                                               minus an optional length component
    g(x_p)   = softmax(MLP(x̃_p))              gating over objectives (stage 2)
    overall  = β · Σ_k g_k(x_p) · z_k

x̃ are features standardised with the training mean/std: the backbone's pair features
followed by a few explicit text features of the response (`TEXT_FEATURES`: log word,
line, list-item and emphasis counts), so a head can weigh length apart from content,
then, when any head reads it, the lexical view (`paretoflow.reward.lexical`: a hashed
bag of words and harm/tone cues; its word columns share one scale). Each head reads the
columns of its views (`ObjectiveHead.views`); the others have weight 0.
ℓ is the z-scored log word count of the response. Departures from the paper, and why:
- stage 1 fits each head on every source of its objective at once (Bradley-Terry on
  pairs, soft-label logistic regression on ratings: `fit.fit_preference_head`), where
  ArmoRM regresses absolute ratings only; every head is a logit on one scale.
- heads are z-scored before gating (their spreads differ per objective).
- verbosity debiasing uses response length itself (ArmoRM used its verbosity head) and a
  strength `verbosity_penalty` in [0, 1]: λ_k = penalty · cov(z_k, ℓ)/var(ℓ) on the
  training responses, so penalty 1 removes the linear length component entirely. It only
  enters the overall score; per-objective scores stay raw (a conciseness objective is
  about length by design).
- per-objective `temperatures` τ_k are fitted on the validation pairs so that
  σ(τ_k (r_c − r_r)) is a calibrated P(chosen ≻ rejected); they do not change rankings.

This module needs no training code: `RewardModel.load(dir).score(prompts, responses)`.
Weights are stored as safetensors (never pickle), with config.json beside them; the
config is the pydantic `RewardModelConfig`, written and read back through it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from safetensors.numpy import load_file, save_file

from paretoflow.io import atomic_write, read_json, write_json
from paretoflow.metrics import sigmoid
from paretoflow.reward.features import Backbone, BackboneSpec, PromptLike, build_backbone, extract_features
from paretoflow.reward.lexical import lexical_dim, lexical_features

MODEL_FORMAT = "paretoflow-armorm/2"
OVERALL = "overall"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

TENSOR_NAMES = (
    "feature_mean", "feature_scale", "head_weight", "head_bias", "head_mean", "head_std",
    "length_coefficient", "length_stats", "prompt_mean", "prompt_scale",
    "gate_w1", "gate_b1", "gate_w2", "gate_b2", "log_beta",
)  # fmt: skip


def response_lengths(responses: Sequence[str]) -> np.ndarray:
    """Whitespace word counts (backbone-independent, so debiasing needs no tokenizer)."""
    return np.array([len(r.split()) for r in responses], dtype=np.float64)


TEXT_FEATURES = ("log_words", "log_lines", "log_list_items", "log_emphasis")
_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s")
_HEADER = re.compile(r"^\s*#{1,6}\s")
_BOLD = re.compile(r"\*\*[^*\n]+\*\*")


def text_features(responses: Sequence[str]) -> np.ndarray:
    """[n, len(TEXT_FEATURES)]: log(1 + count) of words, non-empty lines, list items
    (-, *, •, "1." / "1)" openers) and emphasis (markdown headers + **bold** spans)."""
    rows = []
    for text in responses:
        lines = [line for line in text.split("\n") if line.strip()]
        items = sum(1 for line in lines if _LIST_ITEM.match(line))
        emphasis = sum(1 for line in lines if _HEADER.match(line)) + len(_BOLD.findall(text))
        rows.append((len(text.split()), len(lines), items, emphasis))
    return np.log1p(np.asarray(rows, dtype=np.float64).reshape(len(rows), len(TEXT_FEATURES)))


def feature_matrix(backbone_features: np.ndarray, responses: Sequence[str], text: bool, lexical: bool) -> np.ndarray:
    """[backbone ‖ text_features (if text) ‖ lexical_features (if lexical)]: one layout
    for training and scoring; the first text column (log words) is the length column."""
    parts = [np.asarray(backbone_features, dtype=np.float64)]
    if text:
        parts.append(text_features(responses))
    if lexical:
        parts.append(lexical_features(responses))
    return np.concatenate(parts, axis=1)


class ObjectiveHead(BaseModel):
    """One stage-1 head: which sources trained it, with what weight, and its penalty."""

    model_config = ConfigDict(extra="forbid")
    name: str
    sources: dict[str, float] = Field(default_factory=dict)  # source -> weight in the loss
    alpha: float | None = None  # L2 penalty chosen on val
    # Feature views the head reads ("backbone", "lexical"; text features always); the
    # columns of a view it does not read have weight 0.
    views: list[str] = Field(default_factory=lambda: ["backbone"])


class RewardModelConfig(BaseModel):
    """config.json of a saved reward model (the artifact contract, read back through it)."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["paretoflow-armorm/2"] = MODEL_FORMAT
    objectives: list[ObjectiveHead]
    backbone: dict[str, Any]  # BackboneSpec.to_dict()
    backbone_fingerprint: str
    backbone_feature_dim: int
    text_features: list[str] = Field(default_factory=list)  # appended after the backbone's
    lexical_dim: int = 0  # paretoflow.reward.lexical columns after the text features (0 = none)
    feature_dim: int  # backbone_feature_dim + len(text_features) + lexical_dim
    prompt_feature_dim: int
    gating_hidden_size: int
    verbosity_penalty: float = 0.0
    feature_key: str = ""  # names the (backbone, texts) the model was fitted on
    params_hash: str = ""
    train_prompts: str = "all"  # which train prompts fitted it ("all", "half a", ...)
    temperatures: dict[str, float] = Field(default_factory=dict)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class RewardModel:
    """Multi-objective reward model: a `RewardModelConfig` and float arrays."""

    config: RewardModelConfig
    tensors: dict[str, np.ndarray]
    root: Path = Path(".")
    _backbone: Backbone | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.config, dict):
            self.config = RewardModelConfig.model_validate(self.config)
        missing = [n for n in TENSOR_NAMES if n not in self.tensors]
        if missing:
            raise ValueError(f"reward model lacks tensors {missing}")
        k, d = len(self.objectives), self.config.feature_dim
        if self.config.lexical_dim not in (0, lexical_dim()):
            raise ValueError(f"lexical_dim {self.config.lexical_dim} differs from this version's lexical view ({lexical_dim()}): retrain")
        if self.config.backbone_feature_dim + len(self.config.text_features) + self.config.lexical_dim != d:
            raise ValueError(
                f"feature_dim {d} != backbone {self.config.backbone_feature_dim} + text features "
                f"{self.config.text_features} + lexical {self.config.lexical_dim}"
            )
        if self.tensors["head_weight"].shape != (k, d):
            raise ValueError(
                f"head_weight has shape {self.tensors['head_weight'].shape}, expected "
                f"({k}, {d}) for objectives {self.objectives}"
            )
        if self.tensors["gate_w2"].shape[0] != k:
            raise ValueError(f"gate output size {self.tensors['gate_w2'].shape[0]} != {k} objectives")

    # ---------------------------------------------------------------- description

    @property
    def objectives(self) -> list[str]:
        return [o.name for o in self.config.objectives]

    @property
    def backbone_spec(self) -> BackboneSpec:
        return BackboneSpec.from_dict(self.config.backbone)

    def check_objective(self, name: str) -> str:
        """Return `name` if this model scores it, else KeyError naming it and the declared ones."""
        if name != OVERALL and name not in self.objectives:
            raise KeyError(
                f"reward model has no objective {name!r}; declared: {self.objectives + [OVERALL]}"
            )
        return name

    def temperature(self, name: str) -> float:
        self.check_objective(name)
        return float(self.config.temperatures.get(name, 1.0))

    def center(self, name: str) -> float:
        """Mean score of the training responses (0 for "overall", whose inputs are z-scored)."""
        self.check_objective(name)
        return 0.0 if name == OVERALL else float(self.tensors["head_mean"][self.objectives.index(name)])

    # -------------------------------------------------------------------- scoring

    def gate(self, prompt_features: np.ndarray) -> np.ndarray:
        """Softmax gating weights [n, K] from prompt features (rows on the simplex)."""
        t = self.tensors
        x = (np.asarray(prompt_features, dtype=np.float64) - t["prompt_mean"]) / t["prompt_scale"]
        hidden = _relu(x @ t["gate_w1"].T + t["gate_b1"])
        return _softmax(hidden @ t["gate_w2"].T + t["gate_b2"])

    def pair_matrix(self, backbone_features: np.ndarray, responses: Sequence[str]) -> np.ndarray:
        """[backbone pair features ‖ text features ‖ lexical view], the heads' input before standardising."""
        backbone_features = np.asarray(backbone_features, dtype=np.float64)
        if backbone_features.ndim != 2 or backbone_features.shape[1] != self.config.backbone_feature_dim:
            raise ValueError(
                f"pair features have shape {backbone_features.shape}, model expects (n, {self.config.backbone_feature_dim})"
            )
        if len(responses) != backbone_features.shape[0]:
            raise ValueError(f"{backbone_features.shape[0]} feature rows but {len(responses)} responses")
        return feature_matrix(backbone_features, responses, bool(self.config.text_features), self.config.lexical_dim > 0)

    def head_scores(self, pair_matrix: np.ndarray) -> np.ndarray:
        """Raw per-objective head outputs [n, K] from `pair_matrix` rows."""
        t = self.tensors
        x = (np.asarray(pair_matrix, dtype=np.float64) - t["feature_mean"]) / t["feature_scale"]
        return x @ t["head_weight"].T + t["head_bias"]

    def score_features(
        self,
        pair_features: np.ndarray,
        prompt_features: np.ndarray,
        responses: Sequence[str],
        objectives: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Scores from precomputed backbone features: {objective: [n]} plus "overall"."""
        return self.score_matrix(self.pair_matrix(pair_features, responses), prompt_features, responses, objectives)

    def score_matrix(
        self,
        matrix: np.ndarray,
        prompt_features: np.ndarray,
        responses: Sequence[str],
        objectives: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """`score_features` from a precomputed `pair_matrix` (training scores it many times)."""
        wanted = [self.check_objective(o) for o in (objectives or self.objectives + [OVERALL])]
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != self.config.feature_dim:
            raise ValueError(f"pair matrix has shape {matrix.shape}, model expects (n, {self.config.feature_dim})")
        if not np.all(np.isfinite(matrix)):
            raise ValueError("pair features contain NaN or inf")
        t = self.tensors
        raw = self.head_scores(matrix)
        out: dict[str, np.ndarray] = {}
        for k, name in enumerate(self.objectives):
            if name in wanted:
                out[name] = raw[:, k]
        if OVERALL in wanted:
            length_mean, length_std = t["length_stats"]
            ell = (np.log1p(response_lengths(responses)) - length_mean) / length_std
            z = (raw - t["head_mean"]) / t["head_std"] - np.outer(ell, t["length_coefficient"])
            out[OVERALL] = float(np.exp(t["log_beta"][0])) * np.sum(self.gate(prompt_features) * z, axis=1)
        return out

    def backbone(self) -> Backbone:
        if self._backbone is None:
            backbone = build_backbone(self.backbone_spec, self.root)
            if backbone.fingerprint != self.config.backbone_fingerprint:
                raise ValueError(
                    f"backbone fingerprint {backbone.fingerprint} differs from the one the reward "
                    f"model was trained on ({self.config.backbone_fingerprint}): retrain the reward model"
                )
            self._backbone = backbone
        return self._backbone

    def score(
        self,
        prompts: Sequence[PromptLike],
        responses: Sequence[str],
        tags: Sequence[Any] | None = None,
        objectives: Sequence[str] | None = None,
        progress: bool = False,
        cache_dir: str | Path | None = None,
    ) -> dict[str, np.ndarray]:
        """{objective: scores [n]} (+ "overall") for prompts (strings or message lists).

        `tags` is accepted for the judge interface; the model reads only the texts.
        `cache_dir` (e.g. reward.feature_cache_dir) reuses and stores text embeddings.
        """
        wanted = [self.check_objective(o) for o in (objectives or self.objectives + [OVERALL])]
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        if len(responses) == 0:
            return {name: np.zeros(0) for name in wanted}
        features = extract_features(self.backbone(), prompts, responses, cache_dir=cache_dir, progress=progress)
        return self.score_features(features.pair, features.prompt, responses, wanted)

    def probability(self, name: str, scores) -> np.ndarray:
        """Calibrated [0, 1] value of scores: σ(τ (r − μ)), the probability that a response
        beats a typical training response (μ = their mean score) under the fitted τ."""
        return sigmoid(self.temperature(name) * (np.asarray(scores, dtype=np.float64) - self.center(name)))

    def pairwise_probability(self, name: str, chosen_scores, rejected_scores) -> np.ndarray:
        """Calibrated P(chosen ≻ rejected) = σ(τ · (r_c − r_r)) for one objective or overall."""
        difference = np.asarray(chosen_scores, dtype=np.float64) - np.asarray(rejected_scores, dtype=np.float64)
        return sigmoid(self.temperature(name) * difference)

    # ---------------------------------------------------------------- persistence

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        arrays = {n: np.ascontiguousarray(self.tensors[n], dtype=np.float64) for n in TENSOR_NAMES}
        atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(arrays, tmp, metadata={"format": MODEL_FORMAT}))
        write_json(directory / CONFIG_FILE, self.config.model_dump(mode="json"), sort_keys=True)
        return directory

    @classmethod
    def load(cls, directory: str | Path, root: str | Path = ".") -> "RewardModel":
        """Load a saved model; `root` resolves relative model-cache paths of the backbone."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.exists():
                raise FileNotFoundError(f"reward model file missing: {path} (run `paretoflow reward`)")
        document = read_json(config_path)
        if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
            found = document.get("format") if isinstance(document, dict) else type(document).__name__
            raise ValueError(f"{config_path}: format {found!r}, expected {MODEL_FORMAT!r} (retrain: paretoflow reward)")
        try:
            config = RewardModelConfig.model_validate(document)
        except Exception as exc:
            raise ValueError(f"{config_path}: invalid reward model config:\n{exc}") from exc
        return cls(config=config, tensors=load_file(str(weights_path)), root=Path(root))
