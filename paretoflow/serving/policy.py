"""A loaded candidate that answers with any trade-off: base + experts + recipe, merged per request.

No MLflow here (the pyfunc wrapper in paretoflow/serving/pyfunc_model.py adds it): a
`ServedPolicy` holds the base model, every expert adapter of the package and the
registered recipe. `answer(messages, weights=...)` rewrites the base weights as the exact
Σ wᵢ ΔWᵢ for those objective weights (paretoflow.merging, never peft's 'linear') and
generates; no weights means the registered recipe (the front's chosen point). Recent
merges are kept in a small LRU cache of ΔW tensors: merging costs a matmul per module,
generation reuses the model in place.

TIES and DARE are not linear in the experts (trim/sign election, random drops): a merge
for other weights would not be the model the front evaluated, so such a candidate serves
its registered coefficients only and says so.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

from paretoflow.sections import check_weights
from paretoflow.io import file_hash

ADAPTER_WEIGHTS = "adapter_model.safetensors"
LINEAR_METHODS = ("exact", "task_arithmetic")
# Each cached merge holds one ΔW per adapted module: ~425 MB for SmolLM2-135M with LoRA on
# every linear layer (30 layers × 3.5M entries, fp32), so two by default.
DEFAULT_CACHE_SIZE = 2


class InvalidRequest(ValueError):
    """A request this model cannot answer as asked: a client error (HTTP 400), not a crash."""


class InvalidWeights(InvalidRequest):
    """A request's weights do not fit this model (wrong length, negative, not summing to 1,
    an objective without an expert, or a non-linear candidate asked for other weights)."""


class PackageChanged(ValueError):
    """A package file is not the one its recipe recorded (hash mismatch or missing)."""


def read_package(package_dir: Path) -> tuple[dict, dict[str, Path]]:
    """(recipe, adapter name → folder) of a candidate package, every adapter hash-checked."""
    package_dir = Path(package_dir)
    recipe = json.loads((package_dir / "recipe.json").read_text())
    folders = {}
    for name, expected in (recipe.get("adapters") or {}).items():
        weights = package_dir / "adapters" / name / ADAPTER_WEIGHTS
        if not weights.is_file() or file_hash(weights) != expected:
            raise PackageChanged(f"package {package_dir}: adapter {name} is missing or does not match its recipe hash")
        folders[name] = weights.parent
    return recipe, folders


def load_base(base_dir: Path, fingerprint: str):
    """(model, tokenizer) from a local HF folder: safetensors only, no remote code, fingerprint checked."""
    from transformers import AutoModelForCausalLM

    from paretoflow.models import load_tokenizer, model_fingerprint

    actual = model_fingerprint(base_dir)
    if actual != fingerprint:
        raise PackageChanged(f"base model at {base_dir} has fingerprint {actual}, the candidate needs {fingerprint}")
    model = AutoModelForCausalLM.from_pretrained(base_dir, trust_remote_code=False, use_safetensors=True)
    model.eval()
    return model, load_tokenizer(str(base_dir))


class ServedPolicy:
    """One registered candidate on its base, answering with per-request objective weights."""

    def __init__(self, model, tokenizer, recipe: dict, adapter_dirs: dict[str, Path],
                 cache_size: int = DEFAULT_CACHE_SIZE):
        from paretoflow.merging import MergeTarget, load_expert

        self.model, self.tokenizer, self.recipe = model, tokenizer, recipe
        self.objective_names: list[str] = list(recipe.get("objective_names") or recipe["objectives"])
        self.experts_by_objective: dict[str, str] = dict(recipe.get("experts") or {})
        self.adapters = {name: load_expert(path) for name, path in adapter_dirs.items()}
        self.method = recipe.get("method") or "exact"
        self.target = MergeTarget(model)
        self.cache: OrderedDict[tuple, list] = OrderedDict()
        self.cache_size = cache_size
        self.applied: tuple | None = None
        self.stats = {"merges": 0, "cache_hits": 0}
        # Merging rewrites the model's weights in place: one request at a time per model.
        self.lock = threading.Lock()

    # ------------------------------------------------------------- what to merge

    @property
    def registered_weights(self) -> list[float] | None:
        """The recipe's coefficients as objective weights, when the recipe is a merge of experts."""
        coefficients = self.recipe.get("coefficients") or {}
        by_adapter = {a: o for o, a in self.experts_by_objective.items()}
        if not coefficients or any(a not in by_adapter for a in coefficients):
            return None
        return [float(coefficients.get(self.experts_by_objective.get(o, ""), 0.0)) for o in self.objective_names]

    def check(self, weights) -> list[float] | None:
        """Validate request weights against the declared objectives and this candidate's method.
        For a TIES/DARE candidate, its own registered weights come back as None (the recipe)."""
        try:
            w = check_weights(list(weights), self.objective_names)
        except (TypeError, ValueError) as exc:
            raise InvalidWeights(f"weights: {exc}") from None
        if self.method not in LINEAR_METHODS:
            registered = self.registered_weights
            if registered is None or any(abs(a - b) > 1e-9 for a, b in zip(w, registered)):
                raise InvalidWeights(
                    f"candidate {self.recipe.get('candidate')} was merged with {self.method!r}, which is not linear "
                    f"in the experts: it serves its registered coefficients only "
                    f"({self.recipe.get('coefficients')}); omit `weights`")
            return None   # the registered recipe, merged with its own method
        missing = [o for o, x in zip(self.objective_names, w) if x > 0 and o not in self.experts_by_objective]
        if missing:
            raise InvalidWeights(f"weights put mass on objectives {missing}, which have no expert in this model "
                                 f"(experts: {sorted(self.experts_by_objective)})")
        return w

    def _plan(self, weights: list[float] | None) -> tuple[tuple, list[str], list[float], str]:
        """(cache key, adapter names, coefficients, method) for a request."""
        if weights is None:
            coefficients = self.recipe.get("coefficients") or {}
            names = list(coefficients)
            values = [float(coefficients[n]) for n in names]
        else:
            names = [self.experts_by_objective[o] for o, x in zip(self.objective_names, weights) if x > 0]
            values = [x for x in weights if x > 0]
        method = self.method   # weights reach here only for linear methods (check)
        key = (method, tuple(sorted(zip(names, (round(v, 12) for v in values)))))
        return key, names, values, method

    def _deltas(self, names: list[str], values: list[float], method: str) -> list:
        from paretoflow.merging import merge_deltas

        if not names:
            return []
        mp = self.recipe.get("merge_params") or {}
        return list(merge_deltas(
            [self.adapters[n] for n in names], values, method,
            ties_density=mp.get("ties_density", 0.2), dare_drop_rate=mp.get("dare_drop_rate", 0.9),
            task_arithmetic_lambda=mp.get("task_arithmetic_lambda", 1.0), seed=self.recipe.get("seed", 0)))

    def apply(self, weights: list[float] | None) -> None:
        """Put the model at the merge for `weights` (None: the registered recipe)."""
        key, names, values, method = self._plan(weights)
        if key == self.applied:
            self.stats["cache_hits"] += 1
            return
        if key in self.cache:
            self.cache.move_to_end(key)
            self.stats["cache_hits"] += 1
        else:
            self.cache[key] = self._deltas(names, values, method)
            self.stats["merges"] += 1
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        self.target.apply(self.cache[key])
        self.applied = key

    # ------------------------------------------------------------- answering

    def answer(self, conversations: list[list[dict[str, str]]], weights=None, *, max_new_tokens: int = 64,
               temperature: float = 0.0, seed: int | None = None) -> list[str]:
        """One answer per conversation; greedy at temperature 0."""
        from paretoflow.generation import generate

        checked = None if weights is None else self.check(weights)
        if temperature < 0 or max_new_tokens < 1:
            raise InvalidRequest(f"need temperature ≥ 0 and max_new_tokens ≥ 1, got {temperature}, {max_new_tokens}")
        with self.lock:
            self.apply(checked)
            texts = generate(self.model, self.tokenizer, conversations, max_new_tokens=int(max_new_tokens),
                             do_sample=temperature > 0, temperature=float(temperature) or 1.0,
                             seed=self.recipe.get("seed", 0) if seed is None else seed, progress=False)
        return [t[0] for t in texts]


__all__ = ["DEFAULT_CACHE_SIZE", "InvalidRequest", "InvalidWeights", "PackageChanged", "ServedPolicy", "load_base", "read_package"]
