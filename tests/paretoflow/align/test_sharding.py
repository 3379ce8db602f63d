"""Sharded scoring (reference pass, validation) runs the same number of forward passes on
every process, whatever the pair count: under FSDP each forward all-gathers the weights,
so a rank with one batch fewer would leave the others waiting forever."""

from __future__ import annotations

import contextlib

import torch

from paretoflow.align.data import TokenizedPair, even_shard
from paretoflow.align.trainer import _score_pairs


def test_even_shard_gives_every_rank_the_same_count_and_covers_each_pair_once():
    ordered = list(range(5))
    shards = [even_shard(ordered, 2, rank) for rank in range(2)]
    assert [len(s) for s, _ in shards] == [3, 3]
    assert [s[:real] for s, real in shards] == [[0, 1, 2], [3, 4]]
    assert even_shard([7], 2, 1) == ([7], 0)          # fewer pairs than ranks: a pure pad


class _Rank:
    """An accelerator of rank `index` of 2 whose gather sees every rank send the same tensor."""

    def __init__(self, index):
        self.num_processes, self.process_index, self.device = 2, index, torch.device("cpu")
        self.is_main_process = index == 0

    def autocast(self):
        return contextlib.nullcontext()

    def gather(self, tensor):
        return torch.cat([tensor, tensor])


class _CountingScorer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, input_ids, attention_mask, **_):
        self.calls += 1
        return input_ids.float().sum(dim=1)


def test_uneven_pair_counts_run_the_same_number_of_forwards_on_every_rank():
    pairs = [TokenizedPair([1, i], [2], [3]) for i in range(5)]
    calls, filled = [], []
    for rank in range(2):
        scorer = _CountingScorer()
        out = _score_pairs(scorer, pairs, list(range(5)), _Rank(rank), 2, 0, "test", progress=False)
        calls.append(scorer.calls)
        filled.append(sorted(int(i) for i in torch.nonzero(~out[:, 0].isnan()).flatten()))
    assert calls[0] == calls[1] == 2       # 3 pairs each (rank 1: 2 real + 1 repeat), batch 2
    assert filled == [[0, 1, 2], [3, 4]]   # the repeat is dropped, not written twice
