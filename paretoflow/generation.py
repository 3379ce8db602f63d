"""Batched generation with the chat template: the one place prompts become answers.

Used by on-policy pair sampling (several samples per prompt) and candidate evaluation
(greedy by default). Left padding, batches sorted by length to waste less compute on
padding, a progress bar, and a seeded generator so runs repeat.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm


def render_prompts(tokenizer, messages_list: Sequence[list[dict[str, str]]]) -> list[str]:
    """Apply the chat template with the generation prompt to each conversation."""
    return [
        tokenizer.apply_chat_template(list(m), tokenize=False, add_generation_prompt=True)
        for m in messages_list
    ]


@torch.no_grad()
def generate(
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
) -> list[list[str]]:
    """Answer each conversation; returns `num_return_sequences` texts per conversation.

    Prompts longer than `max_prompt_tokens` keep their last tokens (the latest turns).
    """
    if num_return_sequences > 1 and not do_sample:
        raise ValueError("num_return_sequences > 1 needs do_sample=True (greedy repeats itself)")
    texts = render_prompts(tokenizer, messages_list)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    results: list[list[str]] = [[] for _ in texts]
    device = next(model.parameters()).device
    old_side, old_trunc = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side, tokenizer.truncation_side = "left", "left"
    torch.manual_seed(seed)
    try:
        bar = tqdm(total=len(texts), desc=desc, disable=not progress, unit="prompt")
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_prompt_tokens,
                add_special_tokens=False,
            ).to(device)
            kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample,
                          pad_token_id=tokenizer.pad_token_id,
                          num_return_sequences=num_return_sequences)
            if do_sample:
                kwargs.update(temperature=temperature, top_p=top_p)
            else:  # silence generation_config sampling defaults in greedy mode
                kwargs.update(temperature=None, top_p=None, top_k=None)
            out = model.generate(**enc, **kwargs)
            new = out[:, enc["input_ids"].shape[1]:]
            decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
            for j, i in enumerate(idx):
                chunk = decoded[j * num_return_sequences : (j + 1) * num_return_sequences]
                results[i] = [t.strip() for t in chunk]
            bar.update(len(idx))
        bar.close()
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = old_side, old_trunc
    return results
