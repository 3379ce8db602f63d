"""Batched generation with the chat template: the one place prompts become answers.

Used by on-policy pair sampling (several samples per prompt) and candidate evaluation
(greedy). Left padding, batches grouped by prompt length so padding wastes little
(`plan_batches`), a progress bar, and a seed per batch (`batch_seed`) so runs repeat.

Across processes (`accelerate launch`, `paretoflow.distributed`): every process plans the
same batches, answers every N-th one (`generate_part`) and the answers are gathered to all
(`generate_counted`). A batch is the same batch with the same seed whichever process runs
it, so N processes give the answers one process gives (tests/test_generation_split.py runs
the pairs and front stages both ways). Batches used to share one seeded stream in turn, so
a batch's samples depended on every batch before it; since the per-batch seeds, sampled
answers differ from those of that scheme (greedy answers do not).

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

import numpy as np
import torch
from tqdm.auto import tqdm

from paretoflow.data.control import escaped_messages, special_token_escaper
from paretoflow.distributed import SINGLE, Processes


def render_prompts(tokenizer, messages_list: Sequence[list[dict[str, str]]]) -> list[str]:
    """Apply the chat template with the generation prompt to each conversation, its turns'
    text escaped against the tokenizer's special tokens (data/control.py)."""
    escape = special_token_escaper(tokenizer)
    return [
        tokenizer.apply_chat_template(escaped_messages(escape, list(m)), tokenize=False, add_generation_prompt=True)
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


class SeededDraw:
    """A logits processor of a sampled `generate` that draws each row's next token itself,
    from its own `torch.Generator`, and hands back scores that put all the probability on
    that token, so transformers' own draw (`torch.multinomial` on the global generator) can
    only pick it. transformers takes no generator; with this one, two batches sampled at
    once in two threads (paretoflow/lanes.py) cannot interleave their draws.

    transformers puts a caller's processors before its sampling warpers, so this one applies
    the warpers `generate` would apply (`sampling_warpers`: temperature, top-k, top-p, in
    transformers' order) before it draws; the warpers after it leave a one-token
    distribution as it is. It then draws what `generate` draws after `torch.manual_seed(s)`
    with a generator seeded `s`: the same softmax of the same scores, one `multinomial` per
    step (tests/paretoflow/test_generation.py checks the tokens are equal)."""

    def __init__(self, generator: torch.Generator, warpers=None):
        self.generator = generator
        self.warpers = warpers

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.warpers is not None:
            scores = self.warpers(input_ids, scores)
        probs = torch.nn.functional.softmax(scores, dim=-1)
        tokens = torch.multinomial(probs, num_samples=1, generator=self.generator)
        return torch.full_like(scores, -float("inf")).scatter_(1, tokens, 0.0)


def effective_top_k(model) -> int | None:
    """The top-k `generate` samples with: the model's generation config, else transformers'
    default for unset fields (50 in transformers 5; the equality test catches a change)."""
    from transformers import GenerationConfig

    top_k = getattr(getattr(model, "generation_config", None), "top_k", None)
    return top_k if top_k is not None else GenerationConfig._get_default_generation_params().get("top_k")


def sampling_warpers(model, temperature: float, top_p: float):
    """The sampling warpers transformers' `generate` builds for these settings and the model's
    generation config (transformers 5 `_get_logits_processor`, same order). A config that
    asks for a warper this list does not build is refused rather than silently ignored."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    config = getattr(model, "generation_config", None)
    unsupported = [k for k in ("top_h", "min_p", "epsilon_cutoff", "eta_cutoff", "watermarking_config")
                   if getattr(config, k, None) not in (None, 0.0)]
    if getattr(config, "typical_p", None) not in (None, 1.0):
        unsupported.append("typical_p")
    if unsupported:
        raise ValueError(f"the policy's generation config sets {unsupported}: not supported by seeded sampling")
    warpers = LogitsProcessorList()
    if temperature is not None and temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    top_k = effective_top_k(model)
    if top_k:
        warpers.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    return warpers


def _sample_batch(model, tokenizer, enc, *, max_new_tokens, do_sample, temperature, top_p,
                  num_return_sequences, generator: torch.Generator | None = None) -> list[list[int]]:
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=tokenizer.pad_token_id,
                  num_return_sequences=num_return_sequences)
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p, top_k=effective_top_k(model))  # explicit: what it was
        if generator is not None:
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList(
                [SeededDraw(generator, sampling_warpers(model, temperature, top_p))])
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


def plan_batches(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """Prompt indices per batch: sorted by rendered length (stable), then cut every
    `batch_size`. The batches depend on the prompts alone, never on how many processes
    share them: padding, and with it a greedy answer, depends on a prompt's batch."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def batch_seed(seed: int, batch_number: int) -> int:
    """The sampling seed of batch `batch_number`: one stream per batch (numpy SeedSequence
    of [seed, batch]), so a batch draws the same samples whichever process runs it."""
    return int(np.random.SeedSequence([seed, batch_number]).generate_state(1)[0])


@torch.no_grad()
def generate_part(
    model,
    tokenizer,
    messages_list: Sequence[list[dict[str, str]]],
    *,
    processes: Processes = SINGLE,
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
    lanes: int = 1,
) -> list[tuple[int, list[str], list[int]]]:
    """This process's share of `generate_counted`: (prompt index, answers, new-token counts)
    for the batches `processes.shard` gives it (arguments as `generate_counted`)."""
    if num_return_sequences > 1 and not do_sample:
        raise ValueError("num_return_sequences > 1 needs do_sample=True (greedy repeats itself)")
    if lanes < 1:
        raise ValueError(f"lanes must be >= 1, got {lanes}")
    texts = render_prompts(tokenizer, messages_list)
    mine = processes.shard(list(enumerate(plan_batches(texts, batch_size))))
    device = next(model.parameters()).device
    torch.manual_seed(seed)  # as before the per-batch generators: later draws of this process start here
    bar = tqdm(total=sum(len(idx) for _, idx in mine), desc=desc, unit="prompt",
               disable=not (progress and processes.is_main))

    def answer(lane_tokenizer, batch: tuple[int, list[int]]) -> list[tuple[int, list[str], list[int]]]:
        number, idx = batch
        enc = lane_tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                             max_length=max_prompt_tokens, add_special_tokens=False).to(device)
        if do_sample:
            # One generator per batch, seeded as the batch's seed: the batch draws the same
            # samples in any process and any lane (SeededDraw).
            generator = torch.Generator(device=device).manual_seed(batch_seed(seed, number))
            rows = _sample_batch(model, lane_tokenizer, enc, max_new_tokens=max_new_tokens, do_sample=True,
                                 temperature=temperature, top_p=top_p, num_return_sequences=num_return_sequences,
                                 generator=generator)
        else:
            rows = _greedy_until_eos(model, enc["input_ids"], enc["attention_mask"], max_new_tokens,
                                     _eos_ids(model, lane_tokenizer))
        decoded = lane_tokenizer.batch_decode(rows, skip_special_tokens=True)
        bar.update(len(idx))
        return [(i, [t.strip() for t in decoded[j * num_return_sequences:(j + 1) * num_return_sequences]],
                 [len(r) for r in rows[j * num_return_sequences:(j + 1) * num_return_sequences]])
                for j, i in enumerate(idx)]

    # A lane per batch at a time (paretoflow/lanes.py), each with its own tokenizer (its
    # padding side is set here); the model is only read. A launch splits batches instead.
    count = min(lanes if processes.count == 1 else 1, max(1, len(mine)))
    import copy

    tokenizers = [tokenizer] + [copy.deepcopy(tokenizer) for _ in range(count - 1)]
    old_side, old_trunc = tokenizer.padding_side, tokenizer.truncation_side
    for t in tokenizers:
        t.padding_side, t.truncation_side = "left", "left"
    try:
        from paretoflow.lanes import in_lanes

        out = [row for rows in in_lanes(mine, answer, tokenizers) for row in rows]
        bar.close()
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = old_side, old_trunc
    return out


def generate_counted(
    model,
    tokenizer,
    messages_list: Sequence[list[dict[str, str]]],
    *,
    processes: Processes = SINGLE,
    **kwargs,
) -> Generations:
    """Answer each conversation: `num_return_sequences` texts per conversation, with counts.

    Keywords (defaults): max_new_tokens (64), do_sample (False), temperature (1.0), top_p
    (1.0), num_return_sequences (1), batch_size (16), seed (0), max_prompt_tokens (512;
    a longer prompt keeps its last tokens, the latest turns), progress, desc, lanes (1:
    batches one after the other; N: N batches at once, one thread each, paretoflow/lanes.py;
    the same answers either way).
    With `processes` of a launch (paretoflow.distributed.current()), each process answers
    its share of the batches and every process gets all answers; the batches and their
    seeds are those of one process, so the answers are the same.
    """
    results: list[list[str]] = [[] for _ in messages_list]
    counts: list[list[int]] = [[] for _ in messages_list]
    for i, texts, token_counts in processes.gather(generate_part(model, tokenizer, messages_list,
                                                                 processes=processes, **kwargs)):
        results[i], counts[i] = texts, token_counts
    return Generations(results, counts)


def generate(model, tokenizer, messages_list: Sequence[list[dict[str, str]]], **kwargs) -> list[list[str]]:
    """`generate_counted(...)` texts only: `num_return_sequences` answers per conversation."""
    return generate_counted(model, tokenizer, messages_list, **kwargs).texts


__all__ = ["Generations", "batch_seed", "generate", "generate_counted", "generate_part", "plan_batches", "render_prompts"]
