"""Batched generation with the chat template: the one place prompts become answers.

Used by on-policy pair sampling (several samples per prompt) and candidate evaluation
(greedy). Left padding, batches grouped by prompt length so padding wastes little, a
progress bar, and a seeded generator so runs repeat.

Greedy decoding stops each sequence at its own end of turn: `transformers`' `generate`
keeps a finished row in the batch (padding it) until the longest row ends, so one long
answer makes every short one pay for its tokens. `_greedy_until_eos` decodes with the
model's KV cache and drops finished rows from the batch and the cache
(`DynamicCache.batch_select_indices`), so a step costs only the rows still answering.
It is plain greedy argmax with the same position ids and masks as `generate`; a test
checks it returns exactly what `generate` returns. Sampling (pairs) uses `generate`,
with several samples per prompt continuing from one prefill of the prompt
(`_generate_shared_prefill`: same samples, a test checks token equality).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


def render_prompts(tokenizer, messages_list: Sequence[list[dict[str, str]]]) -> list[str]:
    """Apply the chat template with the generation prompt to each conversation."""
    return [
        tokenizer.apply_chat_template(list(m), tokenize=False, add_generation_prompt=True)
        for m in messages_list
    ]


@dataclass
class Generations:
    texts: list[list[str]]          # per conversation, num_return_sequences answers
    token_counts: list[list[int]]   # new tokens of each answer (end-of-turn not counted)


def _eos_ids(model, tokenizer) -> set[int]:
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, (list, tuple)) else [configured])
    ids.add(tokenizer.eos_token_id)
    return {int(i) for i in ids if i is not None}


@torch.no_grad()
def _greedy_until_eos(model, input_ids, attention_mask, max_new_tokens: int, eos_ids: set[int]) -> list[list[int]]:
    """Greedy tokens per row (end-of-turn excluded); finished rows leave the batch."""
    from transformers import DynamicCache

    outputs: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    active = torch.arange(input_ids.shape[0])
    eos = torch.tensor(sorted(eos_ids), device=input_ids.device)
    cache = DynamicCache(config=model.config)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                   cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    next_position = positions[:, -1] + 1
    for step in range(max_new_tokens):
        tokens = logits.argmax(-1)
        finished = torch.isin(tokens, eos)
        for row, token, done in zip(active.tolist(), tokens.tolist(), finished.tolist()):
            if not done:
                outputs[row].append(token)
        if step == max_new_tokens - 1 or bool(finished.all()):
            break
        if bool(finished.any()):
            keep = (~finished).nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            active, tokens = active[keep.cpu()], tokens[keep]
            attention_mask, next_position = attention_mask[keep], next_position[keep]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(tokens), 1))], dim=1)
        logits = model(input_ids=tokens[:, None], attention_mask=attention_mask,
                       position_ids=next_position[:, None], cache=cache, use_cache=True).logits[:, -1]
        next_position = next_position + 1
    return outputs


def _sample_batch(model, tokenizer, enc, *, max_new_tokens, do_sample, temperature, top_p,
                  num_return_sequences) -> list[list[int]]:
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=tokenizer.pad_token_id,
                  num_return_sequences=num_return_sequences)
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p)
    else:  # silence generation_config sampling defaults in greedy mode
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if num_return_sequences > 1 and enc["input_ids"].shape[1] > 1:
        out = _generate_shared_prefill(model, enc, num_return_sequences, kwargs)
    else:
        out = model.generate(**enc, **kwargs)
    new = out[:, enc["input_ids"].shape[1]:]
    eos = _eos_ids(model, tokenizer) | ({tokenizer.pad_token_id} if tokenizer.pad_token_id is not None else set())
    rows = []
    for sequence in new.tolist():
        end = next((i for i, t in enumerate(sequence) if t in eos), len(sequence))
        rows.append(sequence[:end])
    return rows


def _generate_shared_prefill(model, enc, repeats: int, kwargs: dict):
    """`generate` with num_return_sequences, the prompt prefilled once per prompt.

    `generate` repeats every prompt `repeats` times before its first forward, so the
    prompt's tokens are computed `repeats` times (4x the prefill of the pairs stage). Here
    the prompt but its last token runs once, the KV cache is repeated per sample
    (`DynamicCache.batch_repeat_interleave`) and `generate` continues from it with the
    rows repeated as it would repeat them itself: same rows, same positions, same sampling
    calls, so the same samples (a test checks token equality on the tiny model)."""
    from transformers import DynamicCache

    ids, mask = enc["input_ids"], enc["attention_mask"]
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
          cache=cache, use_cache=True, logits_to_keep=1)
    cache.batch_repeat_interleave(repeats)
    kwargs = {**kwargs, "num_return_sequences": 1}
    return model.generate(input_ids=ids.repeat_interleave(repeats, 0),
                          attention_mask=mask.repeat_interleave(repeats, 0), cache=cache, **kwargs)


@torch.no_grad()
def generate_counted(
    model,
    tokenizer,
    messages_list: Sequence[list[dict[str, str]]],
    *,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    num_return_sequences: int = 1,
    batch_size: int = 16,
    seed: int = 0,
    max_prompt_tokens: int = 512,
    progress: bool = True,
    desc: str = "generate",
) -> Generations:
    """Answer each conversation: `num_return_sequences` texts per conversation, with counts.

    Prompts longer than `max_prompt_tokens` keep their last tokens (the latest turns).
    """
    if num_return_sequences > 1 and not do_sample:
        raise ValueError("num_return_sequences > 1 needs do_sample=True (greedy repeats itself)")
    texts = render_prompts(tokenizer, messages_list)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    results: list[list[str]] = [[] for _ in texts]
    counts: list[list[int]] = [[] for _ in texts]
    device = next(model.parameters()).device
    old_side, old_trunc = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side, tokenizer.truncation_side = "left", "left"
    torch.manual_seed(seed)
    try:
        bar = tqdm(total=len(texts), desc=desc, disable=not progress, unit="prompt")
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                            max_length=max_prompt_tokens, add_special_tokens=False).to(device)
            if do_sample:
                rows = _sample_batch(model, tokenizer, enc, max_new_tokens=max_new_tokens, do_sample=True,
                                     temperature=temperature, top_p=top_p, num_return_sequences=num_return_sequences)
            else:
                rows = _greedy_until_eos(model, enc["input_ids"], enc["attention_mask"], max_new_tokens,
                                         _eos_ids(model, tokenizer))
            decoded = tokenizer.batch_decode(rows, skip_special_tokens=True)
            for j, i in enumerate(idx):
                chunk = slice(j * num_return_sequences, (j + 1) * num_return_sequences)
                results[i] = [t.strip() for t in decoded[chunk]]
                counts[i] = [len(r) for r in rows[chunk]]
            bar.update(len(idx))
        bar.close()
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = old_side, old_trunc
    return Generations(results, counts)


def generate(model, tokenizer, messages_list: Sequence[list[dict[str, str]]], **kwargs) -> list[list[str]]:
    """`generate_counted(...)` texts only: `num_return_sequences` answers per conversation."""
    return generate_counted(model, tokenizer, messages_list, **kwargs).texts


__all__ = ["Generations", "generate", "generate_counted", "render_prompts"]
