"""Backbone features: cache key isolation, batch invariance, prompt-end position."""

import numpy as np
import pytest

from paretoflow.reward.features import BackboneSpec, PolicyBackbone, extract_features

PROMPTS = ["Explain how photosynthesis works.", [{"role": "user", "content": "Write a poem."}], "Hi"]
RESPONSES = ["Plants turn light into sugar.", "The sea at dawn, the sky.", "Hello! How can I help?"]


def _backbone(path, max_length=64, batch_size=2):
    return PolicyBackbone(BackboneSpec(kind="policy", policy=str(path), max_length=max_length, batch_size=batch_size))


def test_store_is_per_text_and_per_model_and_length(tiny_policy_dir, tmp_path):
    from paretoflow.models import build_tiny_policy

    cache = tmp_path / "features"
    first = extract_features(_backbone(tiny_policy_dir), PROMPTS, RESPONSES, cache, progress=False)
    again = extract_features(_backbone(tiny_policy_dir), PROMPTS, RESPONSES, cache, progress=False)
    assert not first.from_cache and again.from_cache
    assert again.key == first.key and np.array_equal(again.pair, first.pair)
    # A subset and a reordering reuse the stored vectors (content keys, not file keys).
    subset = extract_features(_backbone(tiny_policy_dir), PROMPTS[::-1][:2], RESPONSES[::-1][:2], cache, progress=False)
    assert subset.from_cache and np.array_equal(subset.pair, first.pair[::-1][:2])

    other_model = build_tiny_policy(tmp_path / "other", seed=1)
    from_other = extract_features(_backbone(other_model), PROMPTS, RESPONSES, cache, progress=False)
    assert not from_other.from_cache and from_other.key != first.key
    assert not np.allclose(from_other.pair, first.pair)

    edited = extract_features(_backbone(tiny_policy_dir), PROMPTS, RESPONSES[:2] + ["Hello!"], cache, progress=False)
    assert not edited.from_cache and edited.key != first.key
    assert np.array_equal(edited.pair[:2], first.pair[:2])  # the unchanged rows came from the store

    shorter = extract_features(_backbone(tiny_policy_dir, max_length=16), PROMPTS, RESPONSES, cache, progress=False)
    assert not shorter.from_cache and shorter.key != first.key
    assert len([d for d in cache.iterdir() if d.is_dir()]) == 3  # tiny@64, other@64, tiny@16


def test_store_survives_reload_and_skips_known_texts(tmp_path):
    from paretoflow.embeddings import EmbeddingStore, embed_cached

    calls = []

    def encode(texts):
        calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts])

    first = embed_cached(["a", "bb", "a"], encode, EmbeddingStore(tmp_path))
    assert calls == [["a", "bb"]] and first.tolist() == [[1, 1], [2, 1], [1, 1]]
    second = embed_cached(["bb", "ccc"], encode, EmbeddingStore(tmp_path))  # a fresh reader
    assert calls[-1] == ["ccc"] and second.tolist() == [[2, 1], [3, 1]]


def test_features_do_not_depend_on_batching(tiny_policy_dir):
    messages = [[{"role": "user", "content": p}] if isinstance(p, str) else p for p in PROMPTS]
    one = _backbone(tiny_policy_dir, batch_size=1).encode(messages, RESPONSES, progress=False)
    three = _backbone(tiny_policy_dir, batch_size=3).encode(messages, RESPONSES, progress=False)
    assert np.allclose(one[0], three[0], atol=1e-5) and np.allclose(one[1], three[1], atol=1e-5)


def test_prompt_feature_sits_at_the_end_of_the_prompt(tiny_policy_dir):
    backbone = _backbone(tiny_policy_dir, max_length=512)
    messages = [{"role": "user", "content": "Write a poem."}]
    ids, prompt_end = backbone.tokenize(messages, "The sea.")
    _, tokenizer = backbone._load()
    prompt_text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert tokenizer.decode(ids[: prompt_end + 1]) == prompt_text
    # Same prompt, different answers: the prompt feature is identical (causal attention).
    _, prompts = backbone.encode([messages, messages], ["The sea.", "A long and different answer."], progress=False)
    assert np.allclose(prompts[0], prompts[1], atol=1e-5)


def test_mean_pooling_reads_the_response_tokens_of_the_chosen_layer(tiny_policy_dir):
    """pooling 'mean', layer 1 of 2: the pair feature is the mean over the response's
    tokens of layer 1's output through the final norm, computed here from the full
    model's hidden states; the prompt feature is the same layer's state at the prompt end."""
    import torch

    spec = BackboneSpec(kind="policy", policy=str(tiny_policy_dir), max_length=64, batch_size=2, pooling="mean", layer=1)
    backbone = PolicyBackbone(spec)
    messages = [[{"role": "user", "content": "Write a poem."}], [{"role": "user", "content": "Hi"}]]
    responses = ["The sea at dawn, the sky.", "Hello!"]
    pair, prompt = backbone.encode(messages, responses, progress=False)
    full = _backbone(tiny_policy_dir)
    model, _ = full._load()
    assert len(backbone._load()[0].base_model.layers) == 1 and len(model.base_model.layers) == 2
    for i, (m, r) in enumerate(zip(messages, responses)):
        ids, prompt_end = full.tokenize(m, r)
        with torch.inference_mode():
            states = model.base_model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
            layer_one = model.base_model.norm(states[1])[0]
        assert len(ids) - 1 > prompt_end + 1  # a response of several tokens
        expected = layer_one[prompt_end + 1 :].mean(dim=0).numpy()
        assert np.allclose(pair[i], expected, atol=1e-4)
        assert np.allclose(prompt[i], layer_one[prompt_end].numpy(), atol=1e-4)
        assert not np.allclose(pair[i], layer_one[-1].numpy(), atol=1e-3)  # not the last token alone
    # Another read-out is another feature store; a layer the model lacks is a clear error.
    assert backbone.namespace != full.namespace and backbone.namespace.endswith("-mean-l1")
    with pytest.raises(ValueError, match="layer 3: .* has 2 layers"):
        PolicyBackbone(BackboneSpec(kind="policy", policy=str(tiny_policy_dir), layer=3))._load()
    with pytest.raises(ValueError, match="policy' backbone only"):
        BackboneSpec(kind="minilm", pooling="mean")


def test_mean_pooling_falls_back_to_the_last_token_without_response_tokens():
    spec = BackboneSpec(kind="policy", policy="x", pooling="mean")
    backbone = PolicyBackbone.__new__(PolicyBackbone)
    backbone.spec = spec
    import torch

    states = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    # Row 0: prompt ends at 1, last token 3 -> mean of positions 2, 3; row 1: prompt end = last = 2.
    pooled = backbone._pool(states, torch.tensor([1, 2]), torch.tensor([3, 2]))
    assert pooled[:, 0].tolist() == [2.5, 6.0]


def test_truncation_keeps_the_tail(tiny_policy_dir):
    backbone = _backbone(tiny_policy_dir, max_length=8)
    ids, prompt_end = backbone.tokenize([{"role": "user", "content": "word " * 50}], "end")
    full, _ = _backbone(tiny_policy_dir, max_length=4096).tokenize([{"role": "user", "content": "word " * 50}], "end")
    assert ids == full[-8:] and 0 <= prompt_end < 8


def test_bad_inputs_are_clear_errors(tiny_policy_dir, tmp_path):
    with pytest.raises(ValueError, match="2 prompts but 1"):
        extract_features(_backbone(tiny_policy_dir), PROMPTS[:2], RESPONSES[:1], tmp_path)
    with pytest.raises(ValueError, match="response 0 is NoneType"):
        extract_features(_backbone(tiny_policy_dir), PROMPTS[:1], [None], tmp_path)
    with pytest.raises(ValueError, match="no \\(prompt, response\\) rows"):
        extract_features(_backbone(tiny_policy_dir), [], [], tmp_path)
    with pytest.raises(ValueError, match="max_chunks"):
        BackboneSpec(kind="minilm", max_chunks=0)
    with pytest.raises(ValueError, match="backbone kind"):
        BackboneSpec(kind="bert")


@pytest.mark.slow
def test_minilm_backbone_composes_prompt_and_response(tmp_path):
    from paretoflow.reward.features import MiniLMBackbone

    backbone = MiniLMBackbone(BackboneSpec(kind="minilm"))
    pair, prompt = backbone.encode([[{"role": "user", "content": p}] for p in ["a", "b"]], ["x", "y"], progress=False)
    assert pair.shape == (2, 3 * 384) and prompt.shape == (2, 384)
    assert np.allclose(pair[:, 768:], pair[:, :384] * pair[:, 384:768])
    assert backbone.fingerprint.startswith("minilm-")


@pytest.mark.slow
def test_minilm_windows_cover_long_responses_and_the_dialogue_tail():
    from paretoflow.reward.features import MiniLMBackbone

    backbone = MiniLMBackbone(BackboneSpec(kind="minilm", max_length=32, max_chunks=3))
    text = " ".join(f"word{i}" for i in range(200))
    windows = backbone.windows(text, 3)
    assert len(windows) == 3 and windows[0].startswith("word0") and text.startswith(windows[0])
    assert all(len(backbone.tokenizer(w, add_special_tokens=False)["input_ids"]) <= 30 for w in windows)
    assert backbone.windows("short text", 3) == ["short text"]
    dialogue = [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "final ask"}]
    assert backbone.prompt_text(dialogue).endswith("user: final ask")
    pair, _ = backbone.encode([dialogue], [text], progress=False)
    single = MiniLMBackbone(BackboneSpec(kind="minilm", max_length=32, max_chunks=1)).encode([dialogue], [text], progress=False)[0]
    assert not np.allclose(pair[0, 384:768], single[0, 384:768])  # later windows change e_r


def test_the_profiles_choose_the_read_out():
    """params.yaml: MiniLM on CPU; on GPU the policy read as the mean of the response's
    tokens at layer 20 (a MiniLM spec never carries the policy's read-out)."""
    from pathlib import Path

    from paretoflow.config import load_params
    from paretoflow.reward.train import backbone_spec

    params = load_params(Path(__file__).resolve().parents[3] / "params.yaml")
    cpu = backbone_spec(params)
    params.project.profile = "gpu"
    gpu = backbone_spec(params)
    assert (cpu.kind, cpu.pooling, cpu.layer) == ("minilm", "last", 0)
    assert (gpu.kind, gpu.pooling, gpu.layer, gpu.max_length) == ("policy", "mean", 20, 512)
    assert BackboneSpec.from_dict(gpu.to_dict()) == gpu
    # A read-out set on a MiniLM profile is refused, not ignored.
    params.project.profile = "cpu"
    params.reward.cpu.pooling = "mean"
    with pytest.raises(ValueError, match="policy' backbone only"):
        backbone_spec(params)
