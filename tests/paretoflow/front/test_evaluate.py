"""Candidate evaluation pieces: bootstrap by hand, held-out prompts, cache keys, scorers."""

import json

import numpy as np
import pytest

from paretoflow.front.evaluate import (
    CandidateEvaluator,
    CandidateSpec,
    bootstrap_ci,
    load_eval_prompts,
)
from paretoflow.merging import load_expert
from paretoflow.models import load_policy, model_fingerprint
from tests.paretoflow.front.front_fixtures import tiny_scorer, write_prompts
from tests.paretoflow.front.lora_fixtures import write_random_expert


def test_bootstrap_by_hand():
    # Sample [0, 1]: resampled means are 0, .5, 1 with probabilities 1/4, 1/2, 1/4.
    mean, low, high = bootstrap_ci([0.0, 1.0], n_boot=4000, level=0.95, seed=0)
    assert (mean, low, high) == (0.5, 0.0, 1.0)
    # A 40% interval sits in the middle half: both ends at 0.5.
    assert bootstrap_ci([0.0, 1.0], n_boot=4000, level=0.4, seed=0)[1:] == (0.5, 0.5)
    assert bootstrap_ci([3.0, 3.0, 3.0], n_boot=10) == (3.0, 3.0, 3.0)
    assert bootstrap_ci(np.arange(10.0), 200, seed=5) == bootstrap_ci(np.arange(10.0), 200, seed=5)
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([], 10)


def test_load_eval_prompts_orders_caps_and_names_bad_rows(tmp_path):
    path = write_prompts(tmp_path / "prompts.parquet")
    prompts = load_eval_prompts(path, "test", 3)
    assert len(prompts.texts) == 3 and prompts.prompt_ids == sorted(prompts.prompt_ids)
    assert all(m[-1]["role"] == "user" for m in prompts.messages)
    with pytest.raises(ValueError, match="no prompts in split 'val'"):
        load_eval_prompts(path, "val", 3)
    with pytest.raises(FileNotFoundError, match="held-out prompts not found"):
        load_eval_prompts(tmp_path / "nope.parquet", "test", 3)
    import pandas as pd

    table = pd.read_parquet(path)
    table.loc[2, "messages"] = "{not json"
    table.to_parquet(path)
    with pytest.raises(ValueError, match=r"row 2 \(prompt p_\w+\): bad JSON"):
        load_eval_prompts(path, "test", 10)


def test_cache_key_tracks_what_changes_the_answers(tiny_policy_dir, tmp_path):
    model, tok, path = load_policy(str(tiny_policy_dir))
    expert = load_expert(write_random_expert(tiny_policy_dir, tmp_path / "expert-a", seed=1, objective="a"))
    other = load_expert(write_random_expert(tiny_policy_dir, tmp_path / "expert-b", seed=2, objective="b"))
    prompts = load_eval_prompts(write_prompts(tmp_path / "p.parquet"), "test", 2)
    fingerprint = model_fingerprint(path)

    def evaluator(**kwargs):
        settings = {"prompts": prompts, "max_new_tokens": 4, **kwargs}
        return CandidateEvaluator(model, tok, fingerprint, settings.pop("prompts"), tiny_scorer,
                                  ["brevity", "verbosity"], experts=[expert, other], cache_dir=tmp_path / "cache",
                                  progress=False, adapters={"modpo-a": expert}, **settings)

    spec = CandidateSpec("m", "merge", [0.5, 0.5])
    key = evaluator().cache_key(spec)
    assert evaluator().cache_key(CandidateSpec("renamed", "merge", [0.5, 0.5])) == key  # name is not content
    assert evaluator().cache_key(CandidateSpec("m", "merge", [0.4, 0.6])) != key
    assert evaluator().cache_key(CandidateSpec("m", "merge", [0.5, 0.5], method="ties",
                                               merge_params={"ties_density": 0.2})) != key
    assert evaluator(max_new_tokens=5).cache_key(spec) != key
    assert evaluator(max_prompt_tokens=16).cache_key(spec) != key     # a shorter conversation view
    assert evaluator(prompts=load_eval_prompts(tmp_path / "p.parquet", "test", 3)).cache_key(spec) != key

    # The exact merge is keyed by the weights it applies: expert order and zero terms do not
    # matter, and a trained adapter equals the one-hot merge of the same file.
    one_hot = evaluator().cache_key(CandidateSpec("m", "merge", [1.0, 0.0]))
    assert evaluator().cache_key(CandidateSpec("a", "adapter", adapter="modpo-a")) == one_hot
    assert evaluator().cache_key(CandidateSpec("m", "merge", [0.0, 1.0])) != one_hot
    reordered = CandidateEvaluator(model, tok, fingerprint, prompts, tiny_scorer, ["brevity", "verbosity"],
                                   experts=[other, expert], max_new_tokens=4, cache_dir=None, progress=False)
    assert reordered.cache_key(CandidateSpec("m", "merge", [0.0, 1.0])) == one_hot
    assert reordered.cache_key(CandidateSpec("m", "merge", [0.5, 0.5])) == key

    first = evaluator().evaluate(spec)
    assert not first.cached and (tmp_path / "cache" / f"{key}.json").exists()
    assert len(first.new_tokens) == 2 and all(0 <= n <= 4 for n in first.new_tokens)
    again = evaluator().evaluate(spec)
    assert again.cached and again.responses == first.responses and again.objectives == first.objectives
    assert again.new_tokens == first.new_tokens
    stored = json.loads((tmp_path / "cache" / f"{key}.json").read_text())
    assert stored["prompt_ids"] == prompts.prompt_ids


def test_evaluator_refuses_adapter_from_another_base(tiny_policy_dir, tmp_path):
    model, tok, path = load_policy(str(tiny_policy_dir))
    foreign = load_expert(write_random_expert(tiny_policy_dir, tmp_path / "modpo-x", seed=3,
                                              weights=[1, 0], base_fingerprint="0123456789abcdef"))
    prompts = load_eval_prompts(write_prompts(tmp_path / "p.parquet"), "test", 2)
    with pytest.raises(ValueError, match=r"modpo-x was trained on base fingerprint 0123456789abcdef, but the loaded base has fingerprint \w+"):
        CandidateEvaluator(model, tok, model_fingerprint(path), prompts, tiny_scorer, ["brevity", "verbosity"],
                           adapters={"modpo-x": foreign})


def test_scorers_judges_required_reward_models_partial(tiny_policy_dir, tmp_path):
    """The judge mixture must score every objective; a reward model scores what it declares."""
    model, tok, path = load_policy(str(tiny_policy_dir))
    prompts = load_eval_prompts(write_prompts(tmp_path / "p.parquet"), "test", 2)

    def partial(prompts_, responses, tags):
        return {"brevity": np.ones(len(responses)), "other": np.zeros(len(responses))}

    evaluator = CandidateEvaluator(model, tok, model_fingerprint(path), prompts, tiny_scorer, ["brevity", "verbosity"],
                                   extra_scorers={"independent": partial}, max_new_tokens=3, cache_dir=None,
                                   progress=False)
    result = evaluator.evaluate(CandidateSpec("base", "base"))
    assert set(result.scores) == {"judges", "independent"}
    assert set(result.scores["judges"]) == {"brevity", "verbosity"}
    assert set(result.scores["independent"]) == {"brevity"}          # undeclared objectives dropped
    broken = CandidateEvaluator(model, tok, model_fingerprint(path), prompts, partial, ["brevity", "verbosity"],
                                max_new_tokens=3, cache_dir=None, progress=False)
    with pytest.raises(KeyError, match="scorer 'judges' returned no scores for objective 'verbosity'"):
        broken.evaluate(CandidateSpec("base", "base"))
