import pytest
import torch

from paretoflow.models import load_policy, model_fingerprint, resolve_policy_path


def test_tiny_policy_loads_from_safetensors_and_generates(tiny_policy_dir):
    model, tok, path = load_policy(str(tiny_policy_dir))
    assert any(p.name.endswith(".safetensors") for p in tiny_policy_dir.iterdir())
    assert not any(p.suffix == ".bin" for p in tiny_policy_dir.iterdir())
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    enc = tok([text], return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[1] <= enc["input_ids"].shape[1] + 4
    # deterministic load: same weights twice
    model2, _, _ = load_policy(str(tiny_policy_dir))
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, model2(**enc).logits)


def test_missing_local_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model path not found"):
        resolve_policy_path(str(tmp_path / "nope"))


def test_fingerprint_changes_with_weights(tiny_policy_dir, tmp_path):
    from paretoflow.models import build_tiny_policy

    other = build_tiny_policy(tmp_path / "other", seed=1)
    assert model_fingerprint(tiny_policy_dir) != model_fingerprint(other)
    assert model_fingerprint(tiny_policy_dir) == model_fingerprint(tiny_policy_dir)
