"""Reward stage: curated human preference data (+ judge ratings) → ArmoRM-style reward model.

`run(params, root)` runs, in named steps:

1. `load_preference_data` (paretoflow.reward.data): the curated tables of
   `curate.out_dir`, sampled within the CPU budget, with judge ratings where
   `reward.sources.<objective>.judges > 0`, and prompt splits (val/test carved with a
   salted hash when missing);
2. `encode`: cached backbone features of every response in use (+ explicit text features);
3. `fit_model`: stage 1, one linear head per objective fitted on *every* source of that
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from paretoflow.reward import fit as fitting
from paretoflow.reward.data import PreferenceData, load_preference_data, pairs_from_ratings, salted_fraction
from paretoflow.reward.features import BackboneSpec, build_backbone, extract_features
from paretoflow.reward.lexical import BAG_OF_WORDS_FEATURES, lexical_dim
from paretoflow.reward.model import (
    OVERALL, TEXT_FEATURES, ObjectiveHead, RewardModel, RewardModelConfig, feature_matrix, response_lengths,
)  # fmt: skip
from paretoflow.schema import parse_messages

if TYPE_CHECKING:
    from paretoflow.config import Params

INDEPENDENT_DIR = "independent"
# Test pairs derived from ratings: at most this many per prompt (largest gaps first), so
# a prompt with 26 rated answers does not dominate a source's accuracy (our choice).
RATING_PAIRS_PER_PROMPT = 10


@dataclass
class RewardResult:
    out_dir: Path
    model_path: Path
    config_path: Path
    report_path: Path
    report_md_path: Path
    plots: list[Path]
    metrics: dict[str, float]  # flat numbers the flow logs to MLflow


@dataclass
class Encoded:
    """Features of every response in use, row-aligned with `responses`."""

    responses: pd.DataFrame  # response_id, prompt_id, text, split
    pair: np.ndarray  # [n, d] backbone pair features ‖ text features (unstandardised)
    prompt: np.ndarray  # [n, d_prompt]
    backbone_dim: int
    key: str
    fingerprint: str
    spec: BackboneSpec
    from_cache: bool
    seconds: float
    row: dict[str, int] = field(default_factory=dict)
    lexical_dim: int = 0  # the last columns of `pair`

    def rows(self, ids) -> np.ndarray:
        return np.fromiter((self.row[i] for i in ids), dtype=np.int64, count=len(ids))

    def view_columns(self, views: list[str]) -> np.ndarray:
        """Boolean mask of the columns a head on `views` reads (text features always)."""
        d = self.pair.shape[1]
        mask = np.zeros(d, dtype=bool)
        mask[self.backbone_dim : d - self.lexical_dim] = True
        if "backbone" in views:
            mask[: self.backbone_dim] = True
        if "lexical" in views:
            if not self.lexical_dim:
                raise ValueError("a head reads the lexical view but the features were encoded without it")
            mask[d - self.lexical_dim :] = True
        return mask


@dataclass
class Source:
    """One training source of one objective: pairs (chosen, rejected ids) or ratings."""

    name: str
    kind: str  # "pairs" | "ratings"
    weight: float
    table: pd.DataFrame  # pairs: prompt_id, chosen_id, rejected_id; ratings: response_id, prompt_id, value


@dataclass
class FittedModel:
    model: RewardModel
    heads: dict[str, dict]
    gating: dict
    seconds: float


# ------------------------------------------------------------------------- step 2


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


def objective_sources(data: PreferenceData, params: Params, name: str) -> list[Source]:
    """Every source of one objective with its weight (0 = reported, not trained on)."""
    weights = params.reward.weights(name)
    sources = []
    pairs = data.pairs[data.pairs["objective"] == name]
    for source, table in pairs.groupby("source", sort=True):
        sources.append(Source(str(source), "pairs", weights.by_source.get(str(source), weights.pairs), table))
    ratings = data.ratings[data.ratings["objective"] == name]
    for source, table in ratings.groupby("source", sort=True):
        default = weights.judges if source == "judges" else weights.ratings
        sources.append(Source(str(source), "ratings", weights.by_source.get(str(source), default), table))
    return sources


def _split_of(data: PreferenceData, prompt_ids) -> np.ndarray:
    return data.prompts["split"].reindex(prompt_ids).to_numpy()


def _fit_sources(sources: list[Source], data: PreferenceData, enc: Encoded, x: np.ndarray, prompts: dict[str, set]):
    """fit.PairSource / RatingSource lists for train and val (sources of weight > 0)."""
    out = {"train": ([], []), "val": ([], [])}
    for source in sources:
        if source.weight <= 0:
            continue
        for split in ("train", "val"):
            table = source.table[source.table["prompt_id"].isin(prompts[split])]
            if table.empty:
                continue
            if source.kind == "pairs":
                diff = x[enc.rows(table["chosen_id"].tolist())] - x[enc.rows(table["rejected_id"].tolist())]
                out[split][0].append(fitting.PairSource(source.name, diff, source.weight))
            else:
                rows = enc.rows(table["response_id"].tolist())
                out[split][1].append(fitting.RatingSource(source.name, x[rows], table["value"].to_numpy(float), source.weight))
    return out


def fit_heads(data: PreferenceData, enc: Encoded, params: Params, x: np.ndarray, prompts: dict[str, set],
              views: dict[str, list[str]]):
    """Stage 1: one head per objective on all of its sources, reading the columns of its
    views (the others keep weight 0); (weights [K, d], heads, details)."""
    names = params.objective_names
    weight = np.zeros((len(names), x.shape[1]))
    heads, details = [], {}
    for k, name in enumerate(names):
        sources = objective_sources(data, params, name)
        columns = enc.view_columns(views[name])
        split_sources = _fit_sources(sources, data, enc, x[:, columns], prompts)
        train_pairs, train_ratings = split_sources["train"]
        if not train_pairs and not train_ratings:
            raise ValueError(
                f"objective {name!r} has no training data with a positive weight (sources: "
                f"{[(s.name, s.weight) for s in sources] or 'none'}); add a curate source or set reward.sources.{name}"
            )
        head = fitting.fit_preference_head(train_pairs, train_ratings, params.reward.head_alphas, *split_sources["val"])
        weight[k, columns] = head.weight
        debias = debias_length(weight[k], x, enc, prompts["train"], params.reward.length_debias.get(name, 0.0))
        used = {s.name: s.weight for s in sources if s.weight > 0}
        heads.append(ObjectiveHead(name=name, sources=used, alpha=head.alpha, views=list(views[name])))
        details[name] = {
            "alpha": head.alpha, "selected_on": head.selected_on, "train_loss": head.train_loss,
            "iterations": head.iterations, "rating_bias": head.rating_bias,
            "selection": {str(a): v for a, v in head.selection.items()},
            "sources": {s.name: {"kind": s.kind, "weight": s.weight} for s in sources}, "length_debias": debias,
            "views": list(views[name]), "n_features": int(columns.sum()),
        }  # fmt: skip
    return weight, heads, details


def debias_length(weight: np.ndarray, x: np.ndarray, enc: Encoded, train_prompts: set[str], strength: float) -> dict:
    """Remove `strength` of the head's linear length component, in place (see
    RewardConfig.length_debias). ℓ is the standardised log word count, which is the first
    text-feature column of x, so r − λℓ is the same head with λ less on that column."""
    if strength <= 0:
        return {"strength": 0.0, "lambda": 0.0}
    if enc.pair.shape[1] == enc.backbone_dim:
        raise ValueError("reward.length_debias needs reward.text_features: true (the length column)")
    rows = np.flatnonzero(enc.responses["prompt_id"].isin(train_prompts).to_numpy())
    column = x[rows, enc.backbone_dim]
    scores = x[rows] @ weight
    variance = float(column.var())
    lam = strength * float(np.mean((scores - scores.mean()) * (column - column.mean()))) / variance if variance > 1e-12 else 0.0
    weight[enc.backbone_dim] -= lam
    return {"strength": strength, "lambda": lam}


def _gate_pairs(data: PreferenceData, enc: Encoded, prompts: set) -> tuple[np.ndarray, np.ndarray]:
    table = data.pairs[data.pairs["prompt_id"].isin(prompts)].drop_duplicates(["chosen_id", "rejected_id"])
    return enc.rows(table["chosen_id"].tolist()), enc.rows(table["rejected_id"].tolist())


def fit_gate(data: PreferenceData, enc: Encoded, params: Params, xp: np.ndarray, z: np.ndarray, prompts: dict[str, set]):
    """Stage 2: the gate on every pair (any objective) as an overall preference."""
    config, k = params.reward, z.shape[1]
    chosen, rejected = _gate_pairs(data, enc, prompts["train"])
    val_chosen, val_rejected = _gate_pairs(data, enc, prompts["val"])
    if not chosen.size:
        return fitting.uniform_gating(xp.shape[1], k, config.gating_hidden_size), {"note": "no training pair: uniform gate"}
    gating = fitting.fit_gating(
        xp[chosen], z[chosen], z[rejected], xp[val_chosen], z[val_chosen], z[val_rejected],
        hidden_size=config.gating_hidden_size, epochs=config.gating_epochs, lr=config.gating_lr, seed=params.project.seed,
    )  # fmt: skip
    return gating.tensors, {
        "best_epoch": gating.best_epoch, "train_loss": gating.train_loss, "val_loss": gating.val_loss,
        "target": "all_pairs", "n_train_pairs": int(chosen.size), "n_val_pairs": int(val_chosen.size),
    }  # fmt: skip


def feature_standardizer(enc: Encoded, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and scale on `rows`; the bag-of-words columns share one scale, the
    root mean of their variances, so a word rare in training cannot blow up a score (and
    the frequent words keep their weight). Measured on HH harmless (5-fold CV, lexical
    view): 0.592 with one block scale vs 0.574 with per-column scales."""
    mean, scale = fitting.standardizer(enc.pair[rows])
    if enc.lexical_dim:
        start = enc.pair.shape[1] - enc.lexical_dim
        words = slice(start, start + BAG_OF_WORDS_FEATURES)
        scale[words] = max(float(np.sqrt(np.mean(enc.pair[rows, words].var(axis=0)))), 1e-12)
    return mean, scale


def fit_model(data: PreferenceData, enc: Encoded, params: Params, train_prompts: set[str], label: str = "all",
              views: dict[str, list[str]] | None = None) -> FittedModel:
    """Stages 1 and 2 and the val temperatures, fitted on `train_prompts` only; each
    head reads `views[objective]` (default: `reward.views`)."""
    started = time.perf_counter()
    config = params.reward
    views = views or {name: config.head_views(name) for name in params.objective_names}
    split = _split_of(data, enc.responses["prompt_id"])
    prompts = {"train": set(train_prompts), "val": set(data.prompts.index[data.prompts["split"] == "val"])}
    train_rows = np.flatnonzero(enc.responses["prompt_id"].isin(prompts["train"]).to_numpy() & (split == "train"))
    if train_rows.size == 0:
        raise ValueError("no training responses: no prompt in use has split 'train'")
    feature_mean, feature_scale = feature_standardizer(enc, train_rows)
    x = (enc.pair - feature_mean) / feature_scale
    prompt_mean, prompt_scale = fitting.standardizer(enc.prompt[train_rows])
    xp = (enc.prompt - prompt_mean) / prompt_scale
    head_weight, heads, details = fit_heads(data, enc, params, x, prompts, views)
    raw = x @ head_weight.T
    head_mean, head_std = raw[train_rows].mean(axis=0), raw[train_rows].std(axis=0)
    head_std[head_std < 1e-12] = 1.0
    log_lengths = np.log1p(response_lengths(enc.responses["text"].tolist()))
    length_stats = np.array([log_lengths[train_rows].mean(), max(log_lengths[train_rows].std(), 1e-6)])
    ell = (log_lengths - length_stats[0]) / length_stats[1]
    z_raw = (raw - head_mean) / head_std
    length_coefficient = fitting.length_coefficients(z_raw[train_rows], ell[train_rows], config.verbosity_penalty)
    gate_tensors, gating = fit_gate(data, enc, params, xp, z_raw - np.outer(ell, length_coefficient), prompts)
    model = RewardModel(
        config=RewardModelConfig(
            objectives=heads, backbone=enc.spec.to_dict(), backbone_fingerprint=enc.fingerprint,
            backbone_feature_dim=enc.backbone_dim, text_features=list(TEXT_FEATURES) if config.text_features else [],
            lexical_dim=enc.lexical_dim, feature_dim=x.shape[1], prompt_feature_dim=xp.shape[1], gating_hidden_size=config.gating_hidden_size,
            verbosity_penalty=config.verbosity_penalty, feature_key=enc.key,
            params_hash=params.section_hash("objectives", "reward"), train_prompts=label,
        ),
        tensors={
            "feature_mean": feature_mean, "feature_scale": feature_scale, "head_weight": head_weight,
            "head_bias": np.zeros(len(heads)), "head_mean": head_mean, "head_std": head_std,
            "length_coefficient": length_coefficient, "length_stats": length_stats,
            "prompt_mean": prompt_mean, "prompt_scale": prompt_scale, **gate_tensors,
        },
    )  # fmt: skip
    calibrate(model, data, enc, params)
    return FittedModel(model, details, gating, time.perf_counter() - started)


# ------------------------------------------------------------------------- step 4


def source_pairs(source: Source, data: PreferenceData, split: str, min_margin: float) -> pd.DataFrame:
    """The (chosen_id, rejected_id) pairs of one source on one split (ratings → within-prompt pairs)."""
    table = source.table[_split_of(data, source.table["prompt_id"]) == split]
    if source.kind == "pairs":
        return table[["prompt_id", "chosen_id", "rejected_id"]]
    ratings = table.set_index("response_id")
    return pairs_from_ratings(ratings["value"], ratings["prompt_id"], min_margin, RATING_PAIRS_PER_PROMPT)


def calibrate(model: RewardModel, data: PreferenceData, enc: Encoded, params: Params) -> None:
    """Per-objective τ on its val pairs (all sources); τ = 1 without val pairs. "overall"
    is calibrated on the val pairs of curated pair sources only (the gate's target)."""
    scores = model.score_matrix(enc.pair, enc.prompt, enc.responses["text"].tolist())
    temperatures, overall = {}, []
    for name in model.objectives:
        sources = objective_sources(data, params, name)
        frames = [source_pairs(s, data, "val", params.reward.combined_min_margin) for s in sources]
        overall += [f for s, f in zip(sources, frames) if s.kind == "pairs"]
        temperatures[name] = _temperature(scores[name], enc, frames)
    temperatures[OVERALL] = _temperature(scores[OVERALL], enc, overall)
    model.config.temperatures = temperatures


def _temperature(scores: np.ndarray, enc: Encoded, frames: list[pd.DataFrame]) -> float:
    val = pd.concat(frames) if frames else pd.DataFrame(columns=["chosen_id", "rejected_id"])
    chosen, rejected = enc.rows(val["chosen_id"].tolist()), enc.rows(val["rejected_id"].tolist())
    return fitting.fit_temperature(scores[chosen] - scores[rejected]) if chosen.size else 1.0


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
