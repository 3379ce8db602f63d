"""Bench: serving a registered candidate through MLflow pyfunc, per-request trade-offs.

Registers a candidate (an exact merge of one expert per objective at equal weights) in a
fresh sqlite MLflow store, then measures, in this process:

- cold load: `mlflow.pyfunc.load_model("models:/...")` with an empty base cache (the base
  is downloaded from the registry's `paretoflow-base`), and again with the cache filled;
- first answer: one greedy request at the registered point;
- a request with new weights (merge Σ wᵢΔWᵢ + generate) vs the same weights again (the
  merge comes from the cache), with the merge time apart.

The experts are random LoRA adapters (rank --rank on every linear layer, like the default
run's experts), so the timings are real and the answers meaningless. The default model is
dequantized under .cache/models if it is not there yet (~21 s, once).

    python bench/serve.py                      # SmolLM2-135M-Instruct (default policy)
    python bench/serve.py --tiny               # the tests' tiny llama, seconds

Timings on a shared machine are not budgets: the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROMPT = "Give me three tips for better sleep."


def write_random_expert(base_dir: str, out: Path, seed: int, rank: int, objective: str) -> None:
    """A peft LoRA adapter on every linear layer with random A and B (peft starts B at 0)."""
    import json

    import torch
    from peft import LoraConfig, get_peft_model

    from paretoflow.models import load_policy, model_fingerprint

    model, _, _ = load_policy(base_dir)
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear"))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.01)
    peft_model.save_pretrained(out)
    (out / "meta.json").write_text(json.dumps({"objective": objective,
                                               "base_model_fingerprint": model_fingerprint(base_dir)}))


def register(root: Path, policy: str, rank: int) -> tuple[str, object]:
    """(models:/ URI, params) of a freshly registered candidate under `root`."""
    from paretoflow.config import load_params
    from paretoflow.io import file_hash
    from paretoflow.models import resolve_policy_path
    from paretoflow.promote import PACKAGE, candidate_key, front_experts, package_candidate, register_package
    from paretoflow.promotion import Candidate
    from paretoflow.tracking import Tracker

    # The default model is dequantized once into the repo's cache; the run then names its folder.
    base_dir = resolve_policy_path(policy, REPO / ".cache/models")
    params = load_params(REPO / "params.yaml", overrides={
        "model": {"policy": base_dir},
        "tracking": {"tracking_uri": "sqlite:///mlflow.db", "artifact_location": "artifacts",
                     "registered_model": "bench-policy"}})
    names = params.objective_names
    for i, objective in enumerate(names):
        write_random_expert(base_dir, root / params.align.out_dir / f"expert-{objective}", i, rank, objective)
    hashes = {f"expert-{o}": file_hash(root / params.align.out_dir / f"expert-{o}/adapter_model.safetensors")
              for o in names}
    record = SimpleNamespace(kind="merge", method="exact", merge_params={},
                             coefficients={f"expert-{o}": 1 / len(names) for o in names})
    candidate = Candidate(name="merge-equal", objectives={o: 0.0 for o in names}, rm_objectives={},
                          dominated=False, info=record)
    tracker = Tracker(params.tracking, root)
    with tracker.run("bench-candidate") as run_id, tempfile.TemporaryDirectory() as tmp:
        package = package_candidate(params, root, candidate, Path(tmp) / PACKAGE, hashes, front_experts(params, hashes))
        version = register_package(tracker, "bench-policy", run_id, package, {}, candidate_key(package), base_dir)
    return f"models:/bench-policy/{version}", params


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny llama instead of the default model")
    parser.add_argument("--rank", type=int, default=16, help="expert LoRA rank (the default run's align.lora_r)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    import mlflow
    import torch

    from paretoflow.models import build_tiny_policy

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["PARETOFLOW_BASE_CACHE"] = str(root / "base-cache")
        policy = str(build_tiny_policy(root / "tiny")) if args.tiny else "default"
        seconds, (uri, params) = timed(lambda: register(root, policy, args.rank))
        print(f"model {'tiny llama' if args.tiny else 'SmolLM2-135M-Instruct'}, {len(params.objective_names)} experts "
              f"of rank {args.rank}, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
        print(f"{'register (random experts, base published once)':56s} {seconds:7.2f} s")
        cold, model = timed(lambda: mlflow.pyfunc.load_model(uri))
        warm, model = timed(lambda: mlflow.pyfunc.load_model(uri))
        policy_obj = model.unwrap_python_model().policy
        options = {"max_new_tokens": args.max_new_tokens}
        n = len(params.objective_names)
        first, answer = timed(lambda: model.predict({"prompt": [PROMPT]}, params=options))
        rows = [("cold load (base downloaded from the registry)", cold), ("load, base cache filled", warm),
                ("first answer (registered point)", first)]
        unit = [[1.0 if j == i else 0.0 for j in range(n)] for i in range(2)]
        merge, _ = timed(lambda: policy_obj.apply(policy_obj.check(unit[0])))
        policy_obj.applied = None              # time the requests' own merges below
        policy_obj.cache.clear()

        def ask(weights):
            return timed(lambda: model.predict({"prompt": [PROMPT]}, params={**options, "weights": weights}))[0]

        rows += [("merge only (Σ wᵢΔWᵢ into the weights)", merge),
                 (f"request, new weights {unit[0]}", ask(unit[0])),
                 ("request, same weights again (no merge)", ask(unit[0])),
                 (f"request, new weights {unit[1]}", ask(unit[1])),
                 (f"request, {unit[0]} again (merge from the LRU cache)", ask(unit[0]))]
        for label, value in rows:
            print(f"{label:56s} {value:7.2f} s")
        print(f"merges {policy_obj.stats['merges']}, cache hits {policy_obj.stats['cache_hits']}; "
              f"answer at the registered point: {answer[0][:60]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
