import pytest
import torch

from paretoflow.generation import _greedy_until_eos, generate, generate_counted, render_prompts
from paretoflow.models import load_policy

CONVERSATIONS = [[{"role": "user", "content": t}] for t in
                 ["hi", "explain the sea at dawn please", "a poem", "tips for sleep", "why is the sky blue?"]]


def test_batched_greedy_equals_one_at_a_time(tiny_policy_dir):
    model, tok, _ = load_policy(str(tiny_policy_dir))
    convs = CONVERSATIONS[:3]
    batched = generate(model, tok, convs, max_new_tokens=6, batch_size=3, progress=False)
    single = [generate(model, tok, [c], max_new_tokens=6, batch_size=1, progress=False)[0] for c in convs]
    assert batched == single
    assert all(len(r) == 1 for r in batched)


def _hf_greedy(model, tok, conversation, max_new_tokens, eos):
    enc = tok(render_prompts(tok, [conversation]), return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=sorted(eos),
                         pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None)
    tokens = out[0, enc["input_ids"].shape[1]:].tolist()
    return tokens[: next((i for i, t in enumerate(tokens) if t in eos), len(tokens))]


def test_greedy_until_eos_matches_transformers_generate(tiny_policy_dir):
    """Rows that finish leave the batch; the others continue exactly as transformers' greedy."""
    model, tok, _ = load_policy(str(tiny_policy_dir))
    with torch.no_grad():  # the tiny model's random init repeats one token; scaled, answers differ
        for parameter in model.parameters():
            parameter.mul_(3.0)
    # A token that some greedy answers reach at different steps and others never emit acts
    # as an extra end of turn: those rows finish early, the rest carry on to the cap.
    free = [_hf_greedy(model, tok, c, 12, {tok.eos_token_id}) for c in CONVERSATIONS]
    counts = {t: sum(t in f for f in free) for f in free for t in f[1:]}
    stop = next(t for t, n in sorted(counts.items()) if 0 < n < len(free))
    eos = {tok.eos_token_id, stop}
    expected = [_hf_greedy(model, tok, c, 12, eos) for c in CONVERSATIONS]
    tok.padding_side = "left"
    enc = tok(render_prompts(tok, CONVERSATIONS), return_tensors="pt", padding=True, add_special_tokens=False)
    got = _greedy_until_eos(model, enc["input_ids"], enc["attention_mask"], 12, eos)
    assert got == expected
    lengths = sorted(len(g) for g in got)
    assert lengths[0] < 12 and lengths[-1] == 12   # some rows stopped early, some ran to the cap


def test_counts_are_new_tokens_without_end_of_turn(tiny_policy_dir):
    model, tok, _ = load_policy(str(tiny_policy_dir))
    out = generate_counted(model, tok, CONVERSATIONS[:2], max_new_tokens=5, progress=False)
    for texts, counts in zip(out.texts, out.token_counts):
        assert 0 <= counts[0] <= 5
        assert len(tok(texts[0], add_special_tokens=False)["input_ids"]) <= counts[0] + 1


def test_sampling_returns_n_per_prompt_and_repeats_with_seed(tiny_policy_dir):
    model, tok, _ = load_policy(str(tiny_policy_dir))
    convs = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "sea"}]]
    a = generate(model, tok, convs, max_new_tokens=5, do_sample=True, num_return_sequences=3, seed=7, progress=False)
    b = generate(model, tok, convs, max_new_tokens=5, do_sample=True, num_return_sequences=3, seed=7, progress=False)
    assert a == b and [len(x) for x in a] == [3, 3]
    with pytest.raises(ValueError, match="needs do_sample"):
        generate(model, tok, convs, num_return_sequences=2, progress=False)
    torch.manual_seed(0)


def test_shared_prefill_samples_the_same_tokens_as_generate(tiny_policy_dir):
    """Prefilling each prompt once and repeating its cache gives the samples `generate`
    gives when it repeats the prompt itself (same seed, left-padded prompts of unequal
    length, so positions and masks are exercised)."""
    from paretoflow.generation import _generate_shared_prefill

    model, tok, _ = load_policy(str(tiny_policy_dir))
    with torch.no_grad():  # a flatter random init samples varied tokens
        for parameter in model.parameters():
            parameter.mul_(3.0)
    tok.padding_side = "left"
    enc = tok(render_prompts(tok, CONVERSATIONS), return_tensors="pt", padding=True, add_special_tokens=False)
    assert len(set(enc["attention_mask"].sum(-1).tolist())) > 1
    kwargs = dict(max_new_tokens=8, do_sample=True, temperature=1.0, top_p=0.9, pad_token_id=tok.pad_token_id)
    torch.manual_seed(3)
    expected = model.generate(**enc, num_return_sequences=4, **kwargs)
    torch.manual_seed(3)
    got = _generate_shared_prefill(model, enc, 4, {**kwargs, "num_return_sequences": 4})
    assert got.shape == expected.shape
    assert torch.equal(got, expected)
    assert len({tuple(r) for r in got[:4, enc["input_ids"].shape[1]:].tolist()}) > 1  # samples differ


@pytest.mark.parametrize("shared_prefill", [False, True], ids=["generate", "shared-prefill"])
def test_seeded_draw_samples_what_the_global_seed_samples(tiny_policy_dir, shared_prefill):
    """A batch's own generator (SeededDraw, the last logits processor) draws the tokens
    `generate` draws from the global generator seeded alike: same warpers before it
    (temperature, top-k, top-p), same softmax, one multinomial per step."""
    from transformers import LogitsProcessorList

    from paretoflow.generation import SeededDraw, _generate_shared_prefill, sampling_warpers

    model, tok, _ = load_policy(str(tiny_policy_dir))
    with torch.no_grad():  # a flatter random init samples varied tokens
        for parameter in model.parameters():
            parameter.mul_(3.0)
    tok.padding_side = "left"
    enc = tok(render_prompts(tok, CONVERSATIONS), return_tensors="pt", padding=True, add_special_tokens=False)
    kwargs = dict(max_new_tokens=8, do_sample=True, temperature=0.8, top_p=0.9, pad_token_id=tok.pad_token_id,
                  num_return_sequences=3)   # top_k: transformers' default (50), as the pairs stage samples
    run = (lambda **kw: _generate_shared_prefill(model, enc, 3, {**kwargs, **kw})) if shared_prefill else \
        (lambda **kw: model.generate(**enc, **kwargs, **kw))
    torch.manual_seed(11)
    expected = run()
    torch.manual_seed(999)   # the global stream no longer matters
    warpers = sampling_warpers(model, 0.8, 0.9)
    assert [type(w).__name__ for w in warpers] == ["TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper"]
    got = run(logits_processor=LogitsProcessorList([SeededDraw(torch.Generator().manual_seed(11), warpers)]))
    assert torch.equal(got, expected)
    torch.manual_seed(999)
    other = run(logits_processor=LogitsProcessorList([SeededDraw(torch.Generator().manual_seed(12), warpers)]))
    assert not torch.equal(other, expected)
    torch.manual_seed(0)


@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "sampled"])
def test_batches_in_lanes_answer_what_one_lane_answers(tiny_policy_dir, sampled):
    """Two batches at once in two threads (lanes) give the answers of one after the other:
    each batch draws from its own generator, each lane tokenises with its own tokenizer."""
    model, tok, _ = load_policy(str(tiny_policy_dir))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3.0)
    settings = dict(max_new_tokens=6, batch_size=2, progress=False, seed=5,
                    **({"do_sample": True, "num_return_sequences": 3, "top_p": 0.9} if sampled else {}))
    one = generate_counted(model, tok, CONVERSATIONS, **settings)
    for _ in range(3):   # thread timing differs run to run; the answers may not
        laned = generate_counted(model, tok, CONVERSATIONS, lanes=2, **settings)
        assert laned.texts == one.texts and laned.token_counts == one.token_counts
    assert tok.padding_side == "right"   # the caller's tokenizer is left as it was
    if sampled:
        assert len({t for texts in one.texts for t in texts}) > len(CONVERSATIONS)   # samples vary
    torch.manual_seed(0)


@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "sampled"])
def test_shares_of_two_processes_answer_what_one_process_answers(tiny_policy_dir, sampled):
    """Each of two processes answers every other batch (`generate_part`); together they give
    one process's answers, token counts included: same batches, same per-batch seeds. The
    collective itself (gather over gloo) runs in tests/test_generation_split.py."""
    from paretoflow.distributed import Processes
    from paretoflow.generation import generate_part, plan_batches

    model, tok, _ = load_policy(str(tiny_policy_dir))
    with torch.no_grad():  # a flatter random init samples varied tokens
        for parameter in model.parameters():
            parameter.mul_(3.0)
    settings = dict(max_new_tokens=6, batch_size=2, progress=False, seed=5,
                    **({"do_sample": True, "num_return_sequences": 3, "top_p": 0.9} if sampled else {}))
    assert len(plan_batches(render_prompts(tok, CONVERSATIONS), 2)) == 3
    one = sorted(generate_part(model, tok, CONVERSATIONS, **settings))
    shares = [generate_part(model, tok, CONVERSATIONS, processes=Processes(i, 2), **settings) for i in (0, 1)]
    assert [len(s) for s in shares] == [3, 2]                 # batches 0 and 2, batch 1
    assert sorted(shares[0] + shares[1]) == one
    assert generate_counted(model, tok, CONVERSATIONS, **settings).texts == [texts for _, texts, _ in one]
    if sampled:  # the seed decides the samples, so equal shares are not an accident
        other = sorted(generate_part(model, tok, CONVERSATIONS, **{**settings, "seed": 6}))
        assert [t for _, t, _ in other] != [t for _, t, _ in one]
    torch.manual_seed(0)


def test_processes_refuse_an_index_outside_the_world():
    from paretoflow.distributed import Processes

    with pytest.raises(ValueError, match="not in"):
        Processes(2, 2)
    assert Processes(1, 3).shard(list(range(7))) == [1, 4]
