"""Which read-out of the policy's hidden states carries an objective's preferences.

For every curated pair of one objective (default: harmlessness, the HH-RLHF pairs), one
forward pass of the policy backbone (`PolicyBackbone.tokenize`: the templated dialogue,
last `--max-length` tokens) gives, at each probed layer, the last token's state (ArmoRM's
read-out) and the mean of the response tokens' states (`pooling: mean`). A logistic
probe (sklearn, no intercept, on standardised chosen − rejected differences) is scored
by K-fold prompt-grouped CV for each (layer, read-out, C), and a MiniLM probe on the
same pairs (the CPU backbone, from the feature store) is the baseline of the same run.

    OMP_NUM_THREADS=2 .venv/bin/python bench/reward_readout.py --root <project with curated data>

Costs one policy pass per response, one text at a time (~2.8 texts/s on 2 busy CPU
cores: ~13 min for the 2,236 HH responses at 128 tokens; `--limit 40` is a 1-minute
smoke run). Results of 2026-11-27 (a batched run of the same read-outs) are in
params.yaml (reward.gpu).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def policy_states(params, root: Path, messages, responses, layers, max_length: int):
    """{(layer, 'last' | 'mean'): [n, hidden]} for each (messages, response)."""
    from dataclasses import replace

    import torch
    from tqdm.auto import tqdm

    from paretoflow.reward.features import BackboneSpec, PolicyBackbone

    spec = BackboneSpec(kind="policy", policy=params.reward.backbone_policy or params.model.policy,
                        models_cache_dir=params.model.cache_dir, max_length=max_length)
    backbone = PolicyBackbone(spec, root)
    # The stage's own read-outs (PolicyBackbone._pool) on each layer's states.
    readers = {kind: PolicyBackbone(replace(spec, pooling=kind), root) for kind in ("last", "mean")}
    model, _ = backbone._load()
    out = {(layer, kind): np.zeros((len(responses), model.config.hidden_size), np.float32)
           for layer in layers for kind in ("last", "mean")}
    with torch.inference_mode():
        for i, (m, r) in enumerate(tqdm(list(zip(messages, responses)), desc="policy states", unit="text")):
            ids, prompt_end = backbone.tokenize(m, r)
            states = model.base_model(input_ids=torch.tensor([ids]), output_hidden_states=True, use_cache=False).hidden_states
            for layer in layers:
                # The stage's read-out passes a layer's output through the final norm.
                h = (states[layer] if layer == len(states) - 1 else model.base_model.norm(states[layer])).float()
                for kind, reader in readers.items():
                    out[(layer, kind)][i] = reader._pool(h, torch.tensor([prompt_end]), torch.tensor([len(ids) - 1]))[0].numpy()
    return out


def cv_accuracy(x: np.ndarray, n_pairs: int, folds, c: float) -> np.ndarray:
    """Per-pair out-of-fold correctness of a logistic probe on chosen − rejected rows."""
    from sklearn.linear_model import LogisticRegression

    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    d = x[:n_pairs] - x[n_pairs:]
    score = np.zeros(n_pairs)
    for train, test in folds:
        probe = LogisticRegression(C=c, fit_intercept=False, max_iter=5000).fit(
            np.vstack([d[train], -d[train]]), np.r_[np.ones(len(train)), np.zeros(len(train))])
        score[test] = d[test] @ probe.coef_[0]
    return (score > 0) + 0.5 * (score == 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(REPO))
    ap.add_argument("--objective", default="harmlessness")
    ap.add_argument("--layers", default="8,12,16,20,24,30")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--limit", type=int, default=0, help="first N pairs only (0 = all; a smoke run)")
    args = ap.parse_args()

    from sklearn.model_selection import GroupKFold

    from paretoflow.config import load_params
    from paretoflow.reward.data import load_preference_data
    from paretoflow.reward.train import backbone_spec
    from paretoflow.embeddings import EmbeddingStore
    from paretoflow.reward.features import build_backbone

    root = Path(args.root)
    params = load_params(root / "params.yaml")
    params = params.model_copy(update={"reward": params.reward.model_copy(update={"max_pairs_per_source": None, "max_pairs_per_prompt": None})})
    data = load_preference_data(root, params)
    pairs = data.pairs[data.pairs["objective"] == args.objective].reset_index(drop=True)
    if args.limit:
        pairs = pairs.iloc[: args.limit]
    texts = data.responses.set_index("response_id")["text"]
    ids = pairs["chosen_id"].tolist() + pairs["rejected_id"].tolist()
    messages = [json.loads(data.prompts.loc[p, "messages"]) if isinstance(data.prompts.loc[p, "messages"], str)
                else list(data.prompts.loc[p, "messages"]) for p in list(pairs["prompt_id"]) * 2]
    responses = [texts[i] for i in ids]
    n, folds = len(pairs), list(GroupKFold(args.folds).split(np.zeros(len(pairs)), groups=pairs["prompt_id"]))
    print(f"{args.objective}: {n} pairs, {pairs['prompt_id'].nunique()} prompts, {args.folds}-fold prompt-grouped CV")

    started = time.perf_counter()
    minilm = build_backbone(backbone_spec(params.model_copy(update={"project": params.project.model_copy(update={"profile": "cpu"})})), root)
    store = EmbeddingStore(root / params.reward.feature_cache_dir / minilm.namespace) if minilm.spec.kind == "minilm" else None
    pair, _ = minilm.encode(messages, responses, store=store, progress=True)
    views = {("minilm", "response"): pair[:, pair.shape[1] // 3 : 2 * pair.shape[1] // 3]}  # e_r of [e_p, e_r, e_p*e_r]
    print(f"minilm features: {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    views.update(policy_states(params, root, messages, responses, [int(v) for v in args.layers.split(",")], args.max_length))
    print(f"policy states: {time.perf_counter() - started:.0f} s")
    cs = (0.0003, 0.001, 0.003, 0.01)
    print(f"{'layer':>6} {'read-out':<9} " + " ".join(f"C={c:<7g}" for c in cs))
    for (layer, kind), x in views.items():
        accuracy = [cv_accuracy(x, n, folds, c).mean() for c in cs]
        print(f"{layer!s:>6} {kind:<9} " + " ".join(f"{a:<9.3f}" for a in accuracy), flush=True)


if __name__ == "__main__":
    main()
