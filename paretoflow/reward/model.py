"""The ArmoRM-style multi-objective reward model: inference, save and load.

ArmoRM (Wang et al. 2024, "Interpretable Preferences via Multi-Objective Reward Modeling
and Mixture-of-Experts"), on a frozen backbone's features x (pair) and x_p (prompt):

    r_k(x)   = w_k · x̃ + b_k                 one linear head per objective (stage 1)
    z_k      = (r_k − μ_k) / σ_k − λ_k · ℓ     heads z-scored on the training responses,
                                               minus an optional length component
    g(x_p)   = softmax(MLP(x̃_p))              gating over objectives (stage 2)
    overall  = β · Σ_k g_k(x_p) · z_k

x̃ are features standardised with the training mean/std. ℓ is the z-scored log word
count of the response. Departures from the paper, and why:
- heads are z-scored before gating: stage-1 heads here mix ridge regressions (on
  ratings rescaled to [0, 1]) and Bradley-Terry heads (logits), so their raw scales differ.
- verbosity debiasing uses response length itself (ArmoRM used its verbosity head) and a
  strength `verbosity_penalty` in [0, 1]: λ_k = penalty · cov(z_k, ℓ)/var(ℓ) on the
  training responses, so penalty 1 removes the linear length component entirely. It only
  enters the overall score; per-objective scores stay raw (a conciseness objective is
  about length by design).
- per-objective `temperatures` τ_k are fitted on the validation pairs so that
  σ(τ_k (r_c − r_r)) is a calibrated P(chosen ≻ rejected); they do not change rankings.

This module needs no training code: `RewardModel.load(dir).score(prompts, responses)`.
Weights are stored as safetensors (never pickle), with config.json beside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from safetensors.numpy import load_file, save_file

from paretoflow.metrics import sigmoid
from paretoflow.reward.features import Backbone, BackboneSpec, PromptLike, build_backbone, extract_features

MODEL_FORMAT = "paretoflow-armorm/1"
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


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class RewardModel:
    """Multi-objective reward model. `config` is JSON-able, `tensors` are float arrays."""

    config: dict[str, Any]
    tensors: dict[str, np.ndarray]
    root: Path = Path(".")
    _backbone: Backbone | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        missing = [n for n in TENSOR_NAMES if n not in self.tensors]
        if missing:
            raise ValueError(f"reward model lacks tensors {missing}")
        k = len(self.objectives)
        if self.tensors["head_weight"].shape != (k, self.config["feature_dim"]):
            raise ValueError(
                f"head_weight has shape {self.tensors['head_weight'].shape}, expected "
                f"({k}, {self.config['feature_dim']}) for objectives {self.objectives}"
            )
        if self.tensors["gate_w2"].shape[0] != k:
            raise ValueError(f"gate output size {self.tensors['gate_w2'].shape[0]} != {k} objectives")

    # ---------------------------------------------------------------- description

    @property
    def objectives(self) -> list[str]:
        return [o["name"] for o in self.config["objectives"]]

    @property
    def backbone_spec(self) -> BackboneSpec:
        return BackboneSpec.from_dict(self.config["backbone"])

    def check_objective(self, name: str) -> str:
        """Return `name` if this model scores it, else KeyError naming it and the declared ones."""
        if name != OVERALL and name not in self.objectives:
            raise KeyError(
                f"reward model has no objective {name!r}; declared: {self.objectives + [OVERALL]}"
            )
        return name

    def temperature(self, name: str) -> float:
        self.check_objective(name)
        return float(self.config.get("temperatures", {}).get(name, 1.0))

    # -------------------------------------------------------------------- scoring

    def gate(self, prompt_features: np.ndarray) -> np.ndarray:
        """Softmax gating weights [n, K] from prompt features (rows on the simplex)."""
        t = self.tensors
        x = (np.asarray(prompt_features, dtype=np.float64) - t["prompt_mean"]) / t["prompt_scale"]
        hidden = _relu(x @ t["gate_w1"].T + t["gate_b1"])
        return _softmax(hidden @ t["gate_w2"].T + t["gate_b2"])

    def head_scores(self, pair_features: np.ndarray) -> np.ndarray:
        """Raw per-objective head outputs [n, K]."""
        t = self.tensors
        x = (np.asarray(pair_features, dtype=np.float64) - t["feature_mean"]) / t["feature_scale"]
        return x @ t["head_weight"].T + t["head_bias"]

    def score_features(
        self,
        pair_features: np.ndarray,
        prompt_features: np.ndarray,
        lengths: np.ndarray,
        objectives: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Scores from precomputed features: {objective: [n]} plus "overall"."""
        wanted = [self.check_objective(o) for o in (objectives or self.objectives + [OVERALL])]
        pair_features = np.asarray(pair_features, dtype=np.float64)
        if pair_features.ndim != 2 or pair_features.shape[1] != self.config["feature_dim"]:
            raise ValueError(
                f"pair features have shape {pair_features.shape}, model expects (n, {self.config['feature_dim']})"
            )
        if not np.all(np.isfinite(pair_features)):
            raise ValueError("pair features contain NaN or inf")
        t = self.tensors
        raw = self.head_scores(pair_features)
        out: dict[str, np.ndarray] = {}
        for k, name in enumerate(self.objectives):
            if name in wanted:
                out[name] = raw[:, k]
        if OVERALL in wanted:
            length_mean, length_std = t["length_stats"]
            ell = (np.log1p(np.asarray(lengths, dtype=np.float64)) - length_mean) / length_std
            z = (raw - t["head_mean"]) / t["head_std"] - np.outer(ell, t["length_coefficient"])
            out[OVERALL] = float(np.exp(t["log_beta"][0])) * np.sum(self.gate(prompt_features) * z, axis=1)
        return out

    def backbone(self) -> Backbone:
        if self._backbone is None:
            backbone = build_backbone(self.backbone_spec, self.root)
            if backbone.fingerprint != self.config["backbone_fingerprint"]:
                raise ValueError(
                    f"backbone fingerprint {backbone.fingerprint} differs from the one the reward "
                    f"model was trained on ({self.config['backbone_fingerprint']}): retrain the reward model"
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
    ) -> dict[str, np.ndarray]:
        """{objective: scores [n]} (+ "overall") for prompts (strings or message lists).

        `tags` is accepted for the judge interface; the model reads only the texts.
        """
        wanted = [self.check_objective(o) for o in (objectives or self.objectives + [OVERALL])]
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        if len(responses) == 0:
            return {name: np.zeros(0) for name in wanted}
        features = extract_features(self.backbone(), prompts, responses, cache_dir=None, progress=progress)
        return self.score_features(features.pair, features.prompt, response_lengths(responses), wanted)

    def pairwise_probability(self, name: str, chosen_scores, rejected_scores) -> np.ndarray:
        """Calibrated P(chosen ≻ rejected) = σ(τ · (r_c − r_r)) for one objective or overall."""
        difference = np.asarray(chosen_scores, dtype=np.float64) - np.asarray(rejected_scores, dtype=np.float64)
        return sigmoid(self.temperature(name) * difference)

    # ---------------------------------------------------------------- persistence

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {n: np.ascontiguousarray(self.tensors[n], dtype=np.float64) for n in TENSOR_NAMES}
        save_file(arrays, str(directory / WEIGHTS_FILE), metadata={"format": MODEL_FORMAT})
        (directory / CONFIG_FILE).write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path, root: str | Path = ".") -> "RewardModel":
        """Load a saved model; `root` resolves relative model-cache paths of the backbone."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.exists():
                raise FileNotFoundError(f"reward model file missing: {path} (run `paretoflow train-rm`)")
        config = json.loads(config_path.read_text())
        if config.get("format") != MODEL_FORMAT:
            raise ValueError(f"{config_path}: format {config.get('format')!r}, expected {MODEL_FORMAT!r}")
        return cls(config=config, tensors=load_file(str(weights_path)), root=Path(root))
