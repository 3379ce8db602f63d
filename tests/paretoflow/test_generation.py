from paretoflow.generation import generate
from paretoflow.models import load_policy


def test_batched_greedy_equals_one_at_a_time(tiny_policy_dir):
    model, tok, _ = load_policy(str(tiny_policy_dir))
    convs = [[{"role": "user", "content": t}] for t in ["hi", "explain the sea at dawn please", "a poem"]]
    batched = generate(model, tok, convs, max_new_tokens=6, batch_size=3, progress=False)
    single = [generate(model, tok, [c], max_new_tokens=6, batch_size=1, progress=False)[0] for c in convs]
    assert batched == single
    assert all(len(r) == 1 for r in batched)


def test_sampling_returns_n_per_prompt_and_repeats_with_seed(tiny_policy_dir):
    model, tok, _ = load_policy(str(tiny_policy_dir))
    convs = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "sea"}]]
    a = generate(model, tok, convs, max_new_tokens=5, do_sample=True, num_return_sequences=3, seed=7, progress=False)
    b = generate(model, tok, convs, max_new_tokens=5, do_sample=True, num_return_sequences=3, seed=7, progress=False)
    assert a == b and [len(x) for x in a] == [3, 3]
