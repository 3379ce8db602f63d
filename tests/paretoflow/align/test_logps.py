"""Summed response log-probs: the fast path equals the plain full-logits computation."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from paretoflow.align.data import TokenizedPair, collate_pairs
from paretoflow.align.logps import ResponseLogps, summed_response_logps


def test_fast_path_matches_full_forward_and_by_hand(tiny_policy_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_policy_dir, use_safetensors=True).eval()
    pairs = [TokenizedPair([5, 6, 7], [8, 9, 10, 11], [12]), TokenizedPair([13], [14, 15], [16, 17, 18])]
    batch = collate_pairs(pairs, pad_token_id=0)
    fast = ResponseLogps(model)
    assert fast.fast  # llama takes the fast path
    with torch.no_grad():
        got = fast(**batch)
        plain = ResponseLogps(model, fast=False)(**batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, plain, rtol=1e-5, atol=1e-5)
    # by hand for row 0: log p(8|5,6,7) + log p(9|..8) + log p(10|..9) + log p(11|..10)
    row = torch.log_softmax(logits[0], -1)
    expected = row[2, 8] + row[3, 9] + row[4, 10] + row[5, 11]
    torch.testing.assert_close(got[0], expected, rtol=1e-5, atol=1e-5)
    # padding does not leak: row 1 alone gives the same value
    alone = collate_pairs(pairs[1:], pad_token_id=0)
    with torch.no_grad():
        single = fast(**alone)
    torch.testing.assert_close(single[0], got[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(summed_response_logps(logits, batch["input_ids"], batch["response_mask"]),
                               plain, rtol=1e-5, atol=1e-5)
