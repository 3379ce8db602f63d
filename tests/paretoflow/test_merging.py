"""Merging invariants: weight 1 reproduces the expert, exact = base + Σ w ΔW, TIES/DARE by hand."""

import json

import pytest
import torch
from peft import PeftModel

from paretoflow.merging import (
    MergeTarget,
    check_coefficients,
    dare_drop,
    load_expert,
    merge_deltas,
    ties_merge,
)
from paretoflow.models import load_policy
from tests.paretoflow.front.lora_fixtures import write_random_expert


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def experts_dir(tiny_policy_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("experts")
    a = write_random_expert(tiny_policy_dir, root / "expert-a", seed=1, objective="a")
    # Different rank, alpha, targets and rsLoRA scaling: the merge must handle each.
    b = write_random_expert(
        tiny_policy_dir, root / "expert-b", seed=2, objective="b", rank=2, alpha=4,
        targets=["q_proj", "o_proj"], use_rslora=True,
    )
    return a, b


def _logits(model, tok):
    enc = tok(["The quick brown fox", "a poem about the sea"], return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**enc).logits


def test_weight_one_reproduces_expert_logits(tiny_policy_dir, experts_dir):
    model, tok, _ = load_policy(str(tiny_policy_dir))
    base_logits = _logits(model, tok)
    experts = [load_expert(p) for p in experts_dir]
    target = MergeTarget(model)
    for index, adapter_dir in enumerate(experts_dir):
        reference_model, _, _ = load_policy(str(tiny_policy_dir))
        peft_model = PeftModel.from_pretrained(reference_model, adapter_dir).eval()
        expected = _logits(peft_model, tok)
        coefficients = [0.0, 0.0]
        coefficients[index] = 1.0
        target.apply(merge_deltas(experts, coefficients))
        merged = _logits(model, tok)
        assert not torch.allclose(expected, base_logits, atol=1e-3)  # the expert does something
        torch.testing.assert_close(merged, expected, atol=1e-5, rtol=1e-5)
    target.restore()
    torch.testing.assert_close(_logits(model, tok), base_logits, atol=0, rtol=0)


def test_exact_merge_equals_base_plus_weighted_deltas(tiny_policy_dir, experts_dir):
    model, _, _ = load_policy(str(tiny_policy_dir))
    base = {k: v.clone() for k, v in model.state_dict().items()}
    a, b = [load_expert(p) for p in experts_dir]
    target = MergeTarget(model)
    # Apply another candidate first: the next one must not accumulate on top of it.
    target.apply(merge_deltas([a, b], [0.9, 0.1]))
    target.apply(merge_deltas([a, b], [0.3, 0.7]))
    state = model.state_dict()
    for module in sorted(set(a.modules) | set(b.modules)):
        expected = base[f"{module}.weight"].clone()
        # ΔW written out independently: scaling · B @ A (rsLoRA: alpha/sqrt(r)).
        if module in a.lora_a:
            expected += 0.3 * (8 / 4) * a.lora_b[module] @ a.lora_a[module]
        if module in b.lora_a:
            expected += 0.7 * (4 / 2**0.5) * b.lora_b[module] @ b.lora_a[module]
        torch.testing.assert_close(state[f"{module}.weight"], expected, atol=1e-6, rtol=1e-6)
    untouched = [k for k in base if not any(k.startswith(m) for m in set(a.modules) | set(b.modules))]
    assert untouched and all(torch.equal(state[k], base[k]) for k in untouched)


def test_peft_linear_combination_is_not_exact(tiny_policy_dir, experts_dir):
    """Why we do not use add_weighted_adapter('linear'): it mixes A and B apart (cross terms)."""
    model, _, _ = load_policy(str(tiny_policy_dir))
    a_dir, _ = experts_dir
    # Two same-shape adapters so 'linear' applies.
    other = write_random_expert(tiny_policy_dir, a_dir.parent / "expert-c", seed=3, objective="c")
    peft_model = PeftModel.from_pretrained(model, a_dir, adapter_name="a")
    peft_model.load_adapter(other, adapter_name="c")
    peft_model.add_weighted_adapter(["a", "c"], [0.5, 0.5], "lin", combination_type="linear")
    layer = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    linear_delta = layer.get_delta_weight("lin")
    exact = dict(merge_deltas([load_expert(a_dir), load_expert(other)], [0.5, 0.5]))
    exact_delta = exact["model.layers.0.self_attn.q_proj"]
    assert (linear_delta - exact_delta).abs().max() > 1e-3 * exact_delta.abs().max()


def test_ties_by_hand():
    d1 = torch.tensor([3.0, -1.0, 0.5, -2.0])
    d2 = torch.tensor([-1.0, 2.0, 0.2, -4.0])
    # density 0.5 keeps 2 of 4 per expert: d1 -> [3,0,0,-2], d2 -> [0,2,0,-4].
    # Equal weights: sums [3,2,0,-6] -> signs [+,+,0,-];
    # disjoint means: [3, 2, 0, (-2-4)/2=-3].
    merged = ties_merge([d1, d2], [1.0, 1.0], density=0.5)
    assert merged.tolist() == [3.0, 2.0, 0.0, -3.0]
    # Weights (0.25, 0.75): weighted [0.75,0,0,-0.5], [0,1.5,0,-3] -> signs [+,+,0,-];
    # entry 3: (0.25*-2 + 0.75*-4)/(0.25+0.75) = -3.5.
    merged = ties_merge([d1, d2], [0.25, 0.75], density=0.5)
    torch.testing.assert_close(merged, torch.tensor([3.0, 2.0, 0.0, -3.5]))
    # Conflicting sign: only the agreeing expert counts. d1=[+4], d2=[-1] -> sign +, mean of 4.
    assert ties_merge([torch.tensor([4.0]), torch.tensor([-1.0])], [1, 1], density=1.0).tolist() == [4.0]
    # Weight 1 on one expert returns its trimmed update.
    assert ties_merge([d1, d2], [1.0, 0.0], density=0.5).tolist() == [3.0, 0.0, 0.0, -2.0]


def test_dare_by_hand_and_seeded():
    delta = torch.ones(10_000)
    generator = torch.Generator().manual_seed(0)
    dropped = dare_drop(delta, 0.75, generator)
    kept = dropped != 0
    # Survivors rescaled by 1/(1-p) = 4; about a quarter survive; the mean is preserved.
    assert set(dropped[kept].tolist()) == {4.0}
    assert 0.22 < kept.float().mean() < 0.28
    assert abs(dropped.mean().item() - 1.0) < 0.1
    again = dare_drop(delta, 0.75, torch.Generator().manual_seed(0))
    assert torch.equal(dropped, again)
    assert torch.equal(dare_drop(delta, 0.0, generator), delta)


def test_dare_and_ties_merges_repeat(experts_dir):
    experts = [load_expert(p) for p in experts_dir]
    first = dict(merge_deltas(experts, [0.5, 0.5], "dare", dare_drop_rate=0.5, seed=3))
    second = dict(merge_deltas(experts, [0.5, 0.5], "dare", dare_drop_rate=0.5, seed=3))
    other_seed = dict(merge_deltas(experts, [0.5, 0.5], "dare", dare_drop_rate=0.5, seed=4))
    module = "model.layers.0.self_attn.q_proj"
    assert torch.equal(first[module], second[module])
    assert not torch.equal(first[module], other_seed[module])
    ties = dict(merge_deltas(experts, [0.5, 0.5], "ties", ties_density=0.2))
    assert (ties[module] != 0).float().mean() <= 0.4 + 1e-6  # at most the union of two top-20%


def test_task_arithmetic_scales_and_allows_negation(experts_dir):
    experts = [load_expert(p) for p in experts_dir]
    exact = dict(merge_deltas(experts, [1.0, -0.5], "task_arithmetic", task_arithmetic_lambda=1.0))
    scaled = dict(merge_deltas(experts, [1.0, -0.5], "task_arithmetic", task_arithmetic_lambda=0.4))
    for module in exact:
        torch.testing.assert_close(scaled[module], 0.4 * exact[module])


def test_bad_coefficients_are_named():
    with pytest.raises(ValueError, match="got 3 coefficients .* for 2 experts"):
        check_coefficients([0.2, 0.3, 0.5], 2, "exact")
    with pytest.raises(ValueError, match="'ties' needs non-negative coefficients"):
        check_coefficients([1.2, -0.2], 2, "ties")
    with pytest.raises(ValueError, match="finite"):
        check_coefficients([float("nan"), 1.0], 2, "exact")
    with pytest.raises(ValueError, match="unknown merge method 'soup'"):
        check_coefficients([1.0], 1, "soup")
    assert check_coefficients([1.5, -0.5], 2, "task_arithmetic") == [1.5, -0.5]


def test_different_bases_refuse_naming_both(tiny_policy_dir, experts_dir, tmp_path):
    foreign = write_random_expert(tiny_policy_dir, tmp_path / "expert-x", seed=5, base_fingerprint="feedbeef00000000")
    a = load_expert(experts_dir[0])
    with pytest.raises(ValueError, match=r"different base models.*expert-a on fingerprint \w+.*expert-x on fingerprint feedbeef"):
        list(merge_deltas([a, load_expert(foreign)], [0.5, 0.5]))


def test_missing_adapter_files_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing adapter_model.safetensors"):
        load_expert(tmp_path)
    meta_only = tmp_path / "dora"
    meta_only.mkdir()
    (meta_only / "adapter_model.safetensors").write_bytes(b"")
    (meta_only / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "use_dora": True}))
    with pytest.raises(ValueError, match="DoRA"):
        load_expert(meta_only)


def test_every_registered_method_is_its_own_module_and_params_refuse_others():
    import sys

    from paretoflow.config import load_params
    from paretoflow.merging.methods import METHODS, method_module
    from tests.conftest import REPO_ROOT

    for name in METHODS:
        module = method_module(name)
        assert module.__name__ == f"paretoflow.merging.{name}" and callable(module.merge)
        assert isinstance(module.NON_NEGATIVE, bool)
    with pytest.raises(ValueError, match="front.merge_method: unknown merge method 'slerp'"):
        load_params(REPO_ROOT / "params.yaml", {"front": {"merge_method": "slerp"}})
    assert "paretoflow.merging.methods" in sys.modules
