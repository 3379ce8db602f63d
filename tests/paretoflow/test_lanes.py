"""Lanes (paretoflow/lanes.py): results in item order, one user per resource at a time,
torch's thread count restored; candidates generated in lanes answer exactly as in turn."""

import threading
import time

import pytest
import torch

from paretoflow.front.evaluate import CandidateEvaluator, CandidateSpec, load_eval_prompts
from paretoflow.lanes import in_lanes
from paretoflow.merging import load_expert
from paretoflow.models import load_policy, model_fingerprint
from tests.paretoflow.front.front_fixtures import tiny_scorer, write_prompts
from tests.paretoflow.front.lora_fixtures import write_random_expert


def test_in_lanes_keeps_order_and_never_shares_a_resource():
    holders: dict[str, int] = {"a": 0, "b": 0}
    peak = {"a": 0, "b": 0}
    lock = threading.Lock()
    seen_threads = []

    def work(resource: str, item: int) -> tuple[int, str]:
        with lock:
            holders[resource] += 1
            peak[resource] = max(peak[resource], holders[resource])
            seen_threads.append(torch.get_num_threads())
        time.sleep(0.01 * (item % 3))   # uneven items: lanes take the next one when free
        with lock:
            holders[resource] -= 1
        return item * item, resource

    before = torch.get_num_threads()
    out = in_lanes(list(range(12)), work, ["a", "b"])
    assert [v for v, _ in out] == [i * i for i in range(12)]
    assert peak == {"a": 1, "b": 1}                       # a resource is held by one lane at a time
    assert {r for _, r in out} == {"a", "b"}              # both lanes worked
    assert torch.get_num_threads() == before
    assert set(seen_threads) == {max(1, before // 2)}     # each lane on its share of the threads
    # One resource: a plain loop here, thread count untouched.
    assert in_lanes([1, 2], lambda r, x: (r, x, threading.current_thread() is threading.main_thread()), ["only"]) == [
        ("only", 1, True), ("only", 2, True)]
    with pytest.raises(ValueError, match="at least one resource"):
        in_lanes([1], lambda r, x: x, [])


def test_in_lanes_raises_the_work_error_and_restores_threads():
    before = torch.get_num_threads()

    def work(resource, item):
        if item == 2:
            raise RuntimeError("item 2 is bad")
        return item

    with pytest.raises(RuntimeError, match="item 2 is bad"):
        in_lanes([0, 1, 2, 3], work, ["a", "b"])
    assert torch.get_num_threads() == before


def test_candidates_in_lanes_answer_as_one_after_the_other(tiny_policy_dir, tmp_path):
    model, tok, path = load_policy(str(tiny_policy_dir))
    experts = [load_expert(write_random_expert(tiny_policy_dir, tmp_path / f"expert-{o}", seed=s, objective=o))
               for o, s in (("a", 1), ("b", 2))]
    prompts = load_eval_prompts(write_prompts(tmp_path / "p.parquet"), "test", 5)
    specs = [CandidateSpec("base", "base"), CandidateSpec("m1", "merge", [1.0, 0.0]),
             CandidateSpec("m2", "merge", [0.0, 1.0]), CandidateSpec("mid", "merge", [0.5, 0.5]),
             CandidateSpec("mid-again", "merge", [0.5, 0.5])]   # same weights: generated once

    def evaluator(lanes: int, cache: str) -> CandidateEvaluator:
        return CandidateEvaluator(model, tok, model_fingerprint(path), prompts, tiny_scorer, ["brevity", "verbosity"],
                                  experts=experts, max_new_tokens=6, batch_size=2, cache_dir=tmp_path / cache,
                                  progress=False, lanes=lanes)

    in_turn = [evaluator(1, "one").evaluate(s) for s in specs]
    laned = evaluator(2, "two")
    laned.prefetch(specs)
    assert len(laned._lanes) == 2 and len(laned._prefetched) == 4
    # The lane's model copy is back at the base weights after its candidates.
    for (target, _), name in zip(laned._lanes, ["lane 0", "lane 1"]):
        for key, value in model.state_dict().items():
            assert torch.equal(target.model.state_dict()[key], value), f"{name}: {key} not restored"
    results = [laned.evaluate(s) for s in specs]
    for a, b in zip(in_turn, results):
        assert a.responses == b.responses and a.new_tokens == b.new_tokens, a.spec.name
        assert a.objectives == b.objectives
    assert in_turn[1].responses != in_turn[0].responses    # the merges do change the answers
    # The lanes wrote the same cache files as the one-at-a-time evaluator.
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == sorted(p.name for p in (tmp_path / "two").iterdir())
    assert not laned._prefetched                            # evaluate consumed them
    # Everything cached now: nothing left to generate.
    again = evaluator(2, "two")
    again.prefetch(specs)
    assert not again._prefetched and len(again._lanes) == 1
