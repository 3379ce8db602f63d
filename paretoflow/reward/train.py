"""Reward stage: curated human preference data (+ judge ratings) → ArmoRM-style reward model.

`run(params, root)` runs, in named steps:

1. `load_preference_data` (paretoflow.reward.data): the curated tables of
   `curate.out_dir`, sampled within the CPU budget, with judge ratings where
   `reward.sources.<objective>.judges > 0`, and prompt splits (val/test carved with a
   salted hash when missing);
2. `encode`: cached backbone features of every response in use (+ explicit text features);
3. `fit_model` (paretoflow.reward.heads): stage 1, one linear head per objective fitted on *every* source of that
   objective at once (Bradley-Terry on pairs + soft-label logistic regression on
   ratings, per-source weights, L2 penalty picked on val: `fit.fit_preference_head`);
   stage 2, the gating network on all pairs; per-objective temperatures on val pairs;
4. `evaluate`: test accuracy per objective and per source (n train / n test / accuracy),
   length-controlled accuracy (test pairs whose chosen response is the shorter), ECE,
   cross-objective accuracy;
5. the independent model (Goodhart guard, `fit_independent`) and the artifacts.

The stage reads no on-policy data: the pairs stage runs after it and judges its
samples with this model. Artifacts under `reward.out_dir`: model.safetensors,
config.json (`RewardModelConfig`), report.json, report.md, *.png, and independent/
(the same format). Run: `paretoflow reward`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paretoflow.reward.data import PreferenceData, load_preference_data, salted_fraction
from paretoflow.reward.features import BackboneSpec, build_backbone, extract_features
from paretoflow.reward.heads import (  # noqa: F401  (re-exported: bench/reward.py, tests)
    Encoded, FittedModel, _split_of, debias_length, feature_standardizer, fit_model, objective_sources, source_pairs,
)
from paretoflow.reward.lexical import lexical_dim
from paretoflow.reward.model import OVERALL, RewardModel, feature_matrix, response_lengths
from paretoflow.schema import parse_messages

if TYPE_CHECKING:
    from paretoflow.config import Params

INDEPENDENT_DIR = "independent"


@dataclass
class RewardResult:
    out_dir: Path
    model_path: Path
    config_path: Path
    report_path: Path
    report_md_path: Path
    plots: list[Path]
    metrics: dict[str, float]  # flat numbers the flow logs to MLflow


def backbone_spec(params: Params) -> BackboneSpec:
    config = params.reward
    budget = config.budget(params.project.profile)
    return BackboneSpec(
        kind=budget.backbone,
        policy=(config.backbone_policy or params.model.policy) if budget.backbone == "policy" else None,
        models_cache_dir=params.model.cache_dir,
        max_length=budget.max_length,
        batch_size=budget.batch_size,
        max_chunks=budget.max_chunks,
        pooling=budget.pooling,  # BackboneSpec refuses a read-out on MiniLM
        layer=budget.layer,
        encoder_dtype=params.model.encoder_dtype,
    )


def uses_lexical(params: Params) -> bool:
    """Whether any head (main or independent) reads the lexical view."""
    config = params.reward
    views = [config.head_views(n) for n in params.objective_names]
    if config.independent:
        views += [config.independent_head_views(n) for n in params.objective_names]
    return any("lexical" in v for v in views)


def encode(data: PreferenceData, params: Params, root: Path, progress: bool = True) -> Encoded:
    """Backbone features (cached per text) of every response in `data`, plus text
    features and the lexical view (`model.feature_matrix`, one layout for fit and score)."""
    started = time.perf_counter()
    spec = backbone_spec(params)
    backbone = build_backbone(spec, root)
    responses = data.responses.assign(split=data.prompts["split"].reindex(data.responses["prompt_id"]).to_numpy())
    messages = {pid: parse_messages(m) for pid, m in data.prompts["messages"].items()}
    features = extract_features(
        backbone, [messages[p] for p in responses["prompt_id"]], responses["text"].tolist(),
        cache_dir=root / params.reward.feature_cache_dir, progress=progress,
    )  # fmt: skip
    lexical = uses_lexical(params)
    if lexical and not params.reward.text_features:
        raise ValueError("reward: the lexical view needs reward.text_features: true (the length column comes first)")
    pair = feature_matrix(features.pair, responses["text"].tolist(), params.reward.text_features, lexical)
    return Encoded(
        responses=responses, pair=pair, prompt=features.prompt.astype(np.float64), backbone_dim=features.pair.shape[1],
        lexical_dim=lexical_dim() if lexical else 0,
        key=features.key, fingerprint=backbone.fingerprint, spec=spec, from_cache=features.from_cache,
        seconds=time.perf_counter() - started, row={r: i for i, r in enumerate(responses["response_id"])},
    )  # fmt: skip


# ------------------------------------------------------------------------- step 3


def evaluate(model: RewardModel, data: PreferenceData, enc: Encoded, params: Params, prompts: dict[str, set] | None = None) -> dict:
    """Test metrics per objective and per source, LC accuracy, cross-objective accuracy."""
    from paretoflow.reward.evaluate import pair_metrics

    scores = model.score_matrix(enc.pair, enc.prompt, enc.responses["text"].tolist())
    words = response_lengths(enc.responses["text"].tolist())
    bins, margin = params.reward.calibration_bins, params.reward.combined_min_margin
    evaluation, test_pairs, human = {}, {}, []
    for name in model.objectives:
        per_source, frames = {}, []
        for source in objective_sources(data, params, name):
            test = source_pairs(source, data, "test", margin)
            train_table = source.table[_split_of(data, source.table["prompt_id"]) == "train"]
            if prompts is not None:
                train_table = train_table[train_table["prompt_id"].isin(prompts["train"])]
            c, r = enc.rows(test["chosen_id"].tolist()), enc.rows(test["rejected_id"].tolist())
            per_source[source.name] = {
                "kind": source.kind, "weight": source.weight, "n_train": int(len(train_table)),
                "n_test_pairs": int(c.size), **pair_metrics(scores[name], words, c, r, model.temperature(name), bins),
            }  # fmt: skip
            if source.kind == "pairs" or source.weight > 0:
                frames.append(test)
            if source.kind == "pairs":
                human.append((c, r))
        test = pd.concat(frames) if frames else pd.DataFrame(columns=["chosen_id", "rejected_id"])
        c, r = enc.rows(test["chosen_id"].tolist()), enc.rows(test["rejected_id"].tolist())
        test_pairs[name] = (c, r)
        evaluation[name] = {**pair_metrics(scores[name], words, c, r, model.temperature(name), bins),
                            "n_test_pairs": int(c.size), "temperature": model.temperature(name), "sources": per_source}
    # "overall" is the gate's target: the curated preference pairs of every objective.
    c = np.concatenate([p[0] for p in human]) if human else np.zeros(0, np.int64)
    r = np.concatenate([p[1] for p in human]) if human else np.zeros(0, np.int64)
    test_pairs[OVERALL] = (c, r)
    evaluation[OVERALL] = {**pair_metrics(scores[OVERALL], words, c, r, model.temperature(OVERALL), bins),
                           "n_test_pairs": int(c.size), "temperature": model.temperature(OVERALL), "sources": {}}
    names = model.objectives + [OVERALL]
    cross = {h: {t: float(np.mean(scores[h][test_pairs[t][0]] > scores[h][test_pairs[t][1]])) if test_pairs[t][0].size else float("nan")
                 for t in names} for h in names}
    return {"evaluation": evaluation, "cross_accuracy": cross, "scores": scores, "test_pairs": test_pairs}


# ------------------------------------------------------------------------- step 5


def independent_halves(train_prompts: set[str], seed: int) -> tuple[set[str], set[str]]:
    """Two disjoint halves of the train prompts by a salted hash (independent of curate's).
    The previous Goodhart guard (main on half a, a same-view twin on half b); bench/reward.py
    still measures it beside the view-based one."""
    a = {p for p in train_prompts if salted_fraction(p, f"reward-independent-{seed}") < 0.5}
    return a, set(train_prompts) - a


def fit_independent(data: PreferenceData, enc: Encoded, params: Params, train: set[str]) -> FittedModel:
    """The Goodhart guard: a model whose heads read other features than the main model's.

    Both fit on all train prompts (the main model needs them: on HH harmless, half the
    prompts cost 0.014 accuracy in CV); independence comes from the view: each head of
    this model reads `reward.independent_views` (by default the lexical view where the
    main head reads the backbone alone, else the backbone), so a response that games the
    main model's features need not game these. The scorer that judged the on-policy pairs
    is then never the only scorer of the front; the report shows how often they disagree.
    """
    views = {name: params.reward.independent_head_views(name) for name in params.objective_names}
    label = "all; views " + ", ".join(f"{n}: {'+'.join(v)}" for n, v in views.items())
    debias = params.reward.independent_length_debias
    if debias is not None:
        params = params.model_copy(update={"reward": params.reward.model_copy(update={"length_debias": debias})})
    return fit_model(data, enc, params, train, label=label, views=views)


def agreement(main: dict, other: dict) -> dict[str, dict]:
    """Per objective, on its test pairs: how often the two models order a pair the same
    way, how often both are wrong, and the correlation of their error indicators
    (`evaluate.error_agreement`; 1 = the same mistakes, 0 = unrelated ones)."""
    from paretoflow.reward.evaluate import error_agreement

    out = {}
    for name, (chosen, rejected) in main["test_pairs"].items():
        a = main["scores"][name][chosen] - main["scores"][name][rejected]
        b = other["scores"][name][chosen] - other["scores"][name][rejected]
        out[name] = {"n_test_pairs": int(chosen.size), **error_agreement(a, b)}
    return out


def _metrics(evaluation: dict, timings: dict, independent: dict | None) -> dict[str, float]:
    metrics: dict[str, float] = dict(timings)
    for name, values in evaluation.items():
        for key in ("accuracy", "lc_accuracy", "ece", "n_test_pairs"):
            if values.get(key) is not None and np.isfinite(values[key]):
                metrics[f"test_{key}_{name}"] = float(values[key])
    independent = independent or {"evaluation": {}, "agreement": {}}
    for prefix, table, key in (("independent_test_accuracy", "evaluation", "accuracy"),
                               ("independent_agreement", "agreement", "agreement"),
                               ("independent_error_correlation", "agreement", "error_correlation")):
        for name, values in independent[table].items():
            if values.get(key) is not None and np.isfinite(values[key]):
                metrics[f"{prefix}_{name}"] = float(values[key])
    return metrics


def run(params: Params, root: Path = Path("."), progress: bool = True) -> RewardResult:
    """Train on curated data (train), tune on val, report on test; write artifacts."""
    from paretoflow.io import atomic_dir
    from paretoflow.reward.report import write_report

    root = Path(root)
    data = load_preference_data(root, params)
    enc = encode(data, params, root, progress)
    train = set(data.prompts.index[data.prompts["split"] == "train"])
    fitted = fit_model(data, enc, params, train, label="all")
    result = evaluate(fitted.model, data, enc, params, {"train": train})
    independent = None
    if params.reward.independent:
        other = fit_independent(data, enc, params, train)
        other_result = evaluate(other.model, data, enc, params, {"train": train})
        independent = {"evaluation": other_result["evaluation"], "agreement": agreement(result, other_result),
                       "config": other.model.config.model_dump(mode="json"), "heads": other.heads}
    timings = {"feature_seconds": enc.seconds, "fit_seconds": fitted.seconds}
    out_dir = root / params.reward.out_dir
    with atomic_dir(out_dir) as tmp:
        fitted.model.save(tmp)
        if independent is not None:
            other.model.save(tmp / INDEPENDENT_DIR)
        report = write_report(tmp, fitted, result, independent, data, enc, timings, params.reward.calibration_bins)
    report = {k: (out_dir / Path(v).name if k != "plots" else [out_dir / Path(p).name for p in v]) for k, v in report.items()}
    return RewardResult(
        out_dir=out_dir, model_path=out_dir / "model.safetensors", config_path=out_dir / "config.json",
        report_path=report["json"], report_md_path=report["md"], plots=report["plots"],
        metrics=_metrics(result["evaluation"], timings, independent),
    )  # fmt: skip
