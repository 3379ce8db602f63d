"""On-policy pairs on the tiny policy: tables written, pairs consistent with ratings,
margins equal score differences, deterministic with a seed."""

import json
from math import comb

import numpy as np
import pandas as pd
import pytest

from paretoflow import schema
from paretoflow.config import load_params
from paretoflow.pairs import load_prompts, make_pairs, run
from tests.conftest import REPO_ROOT, rules_overrides

PROMPTS = [
    ("How do I bake bread?", "train", []),
    ("Explain photosynthesis in simple terms.", "train", []),
    ("How can I hurt someone without leaving marks?", "train", ["harmful"]),
    ("Write a short poem about the sea.", "train", []),
    ("Give me three tips for better sleep.", "val", []),
    ("What is the capital of France?", "val", []),
    ("Name a primary colour.", "test", []),
]


def write_prompts(root, rows=PROMPTS):
    records = []
    for text, split, tags in rows:
        messages = [{"role": "user", "content": text}]
        records.append({"prompt_id": schema.prompt_id(messages), "messages": schema.messages_json(messages),
                        "text": text, "source": "test", "split": split, "tags": json.dumps(tags)})
    out = root / "data" / "curated"
    out.mkdir(parents=True)
    path = out / "prompts.parquet"
    schema.frame("prompts", records).to_parquet(path, index=False)
    return path


BUDGET_KEYS = {"n_train_prompts", "n_val_prompts", "samples_per_prompt", "max_new_tokens", "batch_size"}


def tiny_params(**pairs):
    section = {"min_margin": 0.0, "pair_strategy": "best_worst",
               **{k: v for k, v in pairs.items() if k not in BUDGET_KEYS}}
    section["cpu"] = {"n_train_prompts": 3, "n_val_prompts": 2, "samples_per_prompt": 3, "max_new_tokens": 8,
                      "batch_size": 6, **{k: v for k, v in pairs.items() if k in BUDGET_KEYS}}
    # rule judges: these tests train no reward model
    return load_params(REPO_ROOT / "params.yaml", overrides={**rules_overrides(), "pairs": section})


def test_make_pairs_by_hand():
    v = np.array([0.2, 0.9, 0.5, 0.9])
    assert make_pairs(v, True, "best_worst", 0.1) == ([(1, 0, pytest.approx(0.7))], 0)
    assert make_pairs(v, False, "best_worst", 0.1) == ([(0, 1, pytest.approx(0.7))], 0)
    pairs, ties = make_pairs(v, True, "all_above_margin", 0.35)
    # differences: (1,0) .7, (2,0) .3 tie, (3,0) .7, (1,2) .4, (1,3) 0 tie, (3,2) .4
    assert sorted((c, r) for c, r, _ in pairs) == [(1, 0), (1, 2), (3, 0), (3, 2)] and ties == 2
    assert make_pairs(np.array([0.4, 0.4]), True, "best_worst", 0.0) == ([], 1)
    assert make_pairs(np.array([0.4]), True, "best_worst", 0.0) == ([], 0)
    with pytest.raises(ValueError, match="unknown pair_strategy"):
        make_pairs(v, True, "random", 0.0)


def _check_outputs(params, result, n_train=3, n_val=2):
    tables = {n: pd.read_parquet(result.paths[n]) for n in ("prompts", "responses", "ratings", "pairs")}
    prompts, responses, ratings, pairs = (tables[n] for n in ("prompts", "responses", "ratings", "pairs"))
    for name, table in tables.items():
        assert list(table.columns) == schema.TABLES[name]
    assert sorted(prompts["split"]) == ["train"] * n_train + ["val"] * n_val  # capped; no test split
    assert responses["response_id"].is_unique and set(responses["prompt_id"]) <= set(prompts["prompt_id"])
    assert len(ratings) == len(responses) * len(params.objectives) and set(ratings["rater"]) == {"judges"}
    assert np.isfinite(ratings["value"]).all()
    value = ratings.set_index(["response_id", "objective"])["value"]
    assert len(pairs) > 0 and len(pairs) == result.n_pairs
    for row in pairs.itertuples():
        chosen, rejected = value[(row.chosen_id, row.objective)], value[(row.rejected_id, row.objective)]
        assert chosen > rejected
        assert row.margin == chosen - rejected  # exact: same float64 arithmetic
    report = json.loads(result.paths["report"].read_text())
    assert report["counts"]["pairs_total"] == len(pairs)
    for objective in params.objective_names:
        assert sum(report["pairs"][objective].values()) == (pairs["objective"] == objective).sum()
    return tables, report


def test_run_writes_consistent_pairs_and_is_deterministic(tmp_path, tiny_policy_dir):
    params = tiny_params()
    results = []
    for name in ("a", "b"):
        root = tmp_path / name
        write_prompts(root)
        results.append(run(params, root, policy_path=str(tiny_policy_dir)))
    first, report = _check_outputs(params, results[0])
    second, _ = _check_outputs(params, results[1])
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name])
    assert report["counts"]["prompts"] == {"train": 3, "val": 2}
    assert results[0].metrics["n_responses"] == len(first["responses"])


def test_all_above_margin_counts_every_sample_pair_once(tmp_path, tiny_policy_dir):
    params = tiny_params(pair_strategy="all_above_margin", min_margin=0.05, n_train_prompts=2, n_val_prompts=1)
    write_prompts(tmp_path)
    result = run(params, tmp_path, policy_path=str(tiny_policy_dir))
    tables, report = _check_outputs(params, result, n_train=2, n_val=1)
    from paretoflow.pairs import REFUSAL_ORIGIN

    responses = tables["responses"]
    every = responses.groupby("prompt_id").size()
    sampled = responses[responses["origin"] != REFUSAL_ORIGIN].groupby("prompt_id").size()
    for objective in params.objectives:
        # reference refusals are paired only for objectives judged by `refusal`
        per_prompt = every if any(j.name == "refusal" for j in objective.judges) else sampled
        kept = sum(report["pairs"][objective.name].values())
        ties = sum(report["ties_skipped"][objective.name].values())
        assert kept + ties == sum(comb(int(k), 2) for k in per_prompt)
    assert (tables["pairs"]["margin"] >= 0.05).all()


def test_bad_prompts_table_errors_name_file_and_row(tmp_path, tiny_policy_dir):
    with pytest.raises(FileNotFoundError, match="curate stage"):
        run(tiny_params(), tmp_path, policy_path=str(tiny_policy_dir))
    path = write_prompts(tmp_path)
    df = pd.read_parquet(path)
    df.loc[1, "tags"] = "[harmful"
    df.to_parquet(path, index=False)
    with pytest.raises(ValueError, match=r"prompts.parquet: row 1: column tags is not valid JSON"):
        load_prompts(path)


def test_reference_refusal_wins_on_harmful_loses_on_benign_and_only_for_harmlessness(tmp_path, tiny_policy_dir):
    from paretoflow.pairs import REFUSAL_ORIGIN

    write_prompts(tmp_path)
    params = tiny_params(n_train_prompts=4)   # every train prompt, the harmful one included
    result = run(params, tmp_path, policy_path=str(tiny_policy_dir))
    responses = pd.read_parquet(result.paths["responses"])
    pairs = pd.read_parquet(result.paths["pairs"])
    prompts = pd.read_parquet(result.paths["prompts"])
    refusals = responses[responses["origin"] == REFUSAL_ORIGIN]
    assert sorted(refusals["prompt_id"]) == sorted(prompts["prompt_id"])   # one per prompt
    refusal_ids = set(refusals["response_id"])
    harmful = set(prompts.loc[prompts["tags"].str.contains("harmful"), "prompt_id"])
    harm = pairs[pairs["objective"] == "harmlessness"]
    # the tiny policy never refuses: the refusal wins on the harmful prompt and never wins
    # elsewhere (a sample the profanity judge flags may lose to it, so it is not always last)
    for row in harm.itertuples():
        if row.prompt_id in harmful:
            assert row.chosen_id in refusal_ids
        else:
            assert row.chosen_id not in refusal_ids
    assert any(r.rejected_id in refusal_ids for r in harm.itertuples() if r.prompt_id not in harmful)
    assert set(harm["prompt_id"]) & harmful and set(harm["prompt_id"]) - harmful
    others = pairs[pairs["objective"] != "harmlessness"]
    assert not (set(others["chosen_id"]) | set(others["rejected_id"])) & refusal_ids
    # switched off: no reference rows at all
    off = run(tiny_params(n_train_prompts=4, refusal_exemplars=False), tmp_path,
              policy_path=str(tiny_policy_dir))
    assert REFUSAL_ORIGIN not in set(pd.read_parquet(off.paths["responses"])["origin"])
