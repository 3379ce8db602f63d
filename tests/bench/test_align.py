"""bench/align.py's yardsticks: rows fill the requested length, FLOP counts by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import align
    finally:
        sys.path.remove(str(REPO / "bench"))
    return align


@pytest.mark.parametrize("max_length", [128, 300])
def test_rows_reach_the_requested_length_untruncated(bench, tiny_policy_dir, max_length):
    from paretoflow.align.data import tokenize_pairs
    from paretoflow.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_policy_dir))
    pairs, truncated = tokenize_pairs(tokenizer, bench.make_examples(5, tokenizer, max_length),
                                      max_length, max_length // 2)
    assert truncated.pairs_truncated == 0
    for pair in pairs:
        for answer in (pair.chosen_ids, pair.rejected_ids):
            row = len(pair.prompt_ids) + len(answer)
            assert max_length - 1 <= row <= max_length


def test_matmul_weights_and_flops_per_token_by_hand(bench, tiny_policy_dir):
    config = json.loads((tiny_policy_dir / "config.json").read_text())
    h, i, v, layers = config["hidden_size"], config["intermediate_size"], config["vocab_size"], config["num_hidden_layers"]
    kv = config["num_key_value_heads"] * (h // config["num_attention_heads"])
    per_layer = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]    # q k v o gate up down: (in, out)
    counts = bench.matmul_counts(str(tiny_policy_dir), r=4)
    assert counts["n_frozen"] == layers * sum(a * b for a, b in per_layer) + v * h   # + lm_head
    assert counts["n_lora"] == layers * sum(4 * (a + b) for a, b in per_layer)      # lm_head not targeted
    assert bench.flops_per_token(counts, 10.0) == (4 * counts["n_frozen"] + 6 * counts["n_lora"]
                                                   + 12 * layers * h * 10.0)
