"""GPU twin of the front tests (runs only where CUDA is present; checked on an H200):
the gpu profile places the policy in bf16 on CUDA, an exact merge with weight 1 matches
the peft adapter there, and front.run completes on that profile."""

import pytest
import torch

from tests.paretoflow.front.front_fixtures import make_project, tiny_params, tiny_scorer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_gpu_profile_merge_and_front(tiny_policy_dir, tmp_path):
    from peft import PeftModel

    from paretoflow import front
    from paretoflow.merging import MergeTarget, load_expert, merge_deltas
    from paretoflow.models import load_policy, place_for_profile

    root = make_project(tmp_path, tiny_policy_dir)
    model = place_for_profile(load_policy(str(tiny_policy_dir))[0], "gpu")
    assert next(model.parameters()).device.type == "cuda"
    assert next(model.parameters()).dtype == torch.bfloat16
    _, tok, _ = load_policy(str(tiny_policy_dir))
    enc = tok(["explain the sea at dawn"], return_tensors="pt").to("cuda")
    expert = root / "artifacts/adapters/expert-brevity"
    MergeTarget(model).apply(merge_deltas([load_expert(expert)], [1.0], "exact"))
    peft = PeftModel.from_pretrained(place_for_profile(load_policy(str(tiny_policy_dir))[0], "gpu"), str(expert))
    with torch.no_grad():
        diff = (model(**enc).logits.float() - peft(**enc).logits.float()).abs().max().item()
    assert diff < 0.05   # bf16: measured 0.0039 on an H200
    params = tiny_params(tiny_policy_dir)
    params.project.profile = "gpu"
    params.front.gpu = params.front.cpu
    result = front.run(params, root, scorer=tiny_scorer, progress=False)
    assert result.n_candidates == 5
