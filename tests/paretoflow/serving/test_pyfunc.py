"""A registered candidate is an MLflow pyfunc Model: it loads from the registry alone (the base
comes from `paretoflow-base`), answers with the exact merge for any weights, and refuses bad
weights with INVALID_PARAMETER_VALUE. sqlite tracking in tmp_path, no servers."""

from __future__ import annotations

import pytest

from tests.paretoflow.serving.fixtures import merge_candidate, merged_answers, register_tiny_candidate

PROMPTS = ["Explain how photosynthesis works.", "Write a short poem about the sea."]
TOKENS = 6


@pytest.fixture(scope="module")
def served(registered):
    import mlflow

    root, params, tracker, version = registered
    return root, params, tracker, version, mlflow.pyfunc.load_model(f"models:/m/{version}")


def test_registered_version_is_an_mlflow_model_with_signature_and_params(served):
    from mlflow.models import Model

    root, _, tracker, version, model = served
    meta = model.metadata
    assert [p.name for p in meta.signature.params.params] == ["weights", "max_new_tokens", "temperature"]
    assert set(meta.signature.inputs.input_names()) == {"prompt", "messages"}
    assert meta.signature.outputs.input_names() == ["answer"]
    local = tracker.client.download_artifacts(tracker.client.get_model_version("m", version).run_id, "model",
                                              str(root / "dl"))
    assert "python_function" in Model.load(local).flavors
    requirements = (root / "dl/model/requirements.txt").read_text()
    assert "peft" in requirements and "mlflow" in requirements
    # Logged as code: no pickle anywhere in the model folder.
    assert not list((root / "dl/model").rglob("*.pkl"))
    # The base came through the registry, cached by fingerprint, not from the producer's folder.
    base_version = tracker.client.get_model_version("m", version).tags["paretoflow.base_model"]
    assert base_version.startswith("models:/paretoflow-base/")
    assert list((root / "base-cache").iterdir())


def test_predict_with_weights_is_the_exact_merge_for_those_weights(served, tiny_policy_dir):
    root, _, _, _, model = served
    answers = []
    for weights in ([1.0, 0.0], [0.2, 0.8]):
        got = model.predict({"prompt": PROMPTS}, params={"weights": weights, "max_new_tokens": TOKENS})
        assert got == merged_answers(tiny_policy_dir, root, weights, PROMPTS, TOKENS), weights
        answers.append(got)
    assert answers[0] != answers[1]


def test_default_is_the_registered_point_and_merges_are_cached(served, tiny_policy_dir):
    root, _, _, _, model = served
    expected = merged_answers(tiny_policy_dir, root, [0.3, 0.7], PROMPTS, TOKENS)
    assert model.predict({"prompt": PROMPTS}, params={"max_new_tokens": TOKENS}) == expected
    policy = model.unwrap_python_model().policy
    merges = policy.stats["merges"]
    model.predict({"prompt": PROMPTS}, params={"weights": [0.3, 0.7], "max_new_tokens": TOKENS})
    model.predict({"prompt": PROMPTS}, params={"max_new_tokens": TOKENS})
    assert policy.stats["merges"] == merges   # same ΔW: served from the cache


def test_chat_messages_are_answered_like_a_prompt(served):
    _, _, _, _, model = served
    import pandas as pd

    messages = [{"role": "user", "content": PROMPTS[0]}]
    by_messages = model.predict(pd.DataFrame({"messages": [messages]}), params={"max_new_tokens": TOKENS})
    assert by_messages == model.predict({"prompt": PROMPTS[:1]}, params={"max_new_tokens": TOKENS})


@pytest.mark.parametrize("weights, message", [
    ([1.0], "got 1 weights"),
    ([1.2, -0.2], "non-negative"),
    ([0.5, 0.6], "sum to 1"),
])
def test_bad_weights_are_invalid_parameter_value(served, weights, message):
    from mlflow.exceptions import MlflowException

    _, _, _, _, model = served
    with pytest.raises(MlflowException, match=message) as caught:
        model.predict({"prompt": PROMPTS[:1]}, params={"weights": weights})
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert caught.value.get_http_status_code() == 400


def test_ties_candidate_serves_its_registered_coefficients_only(served, tiny_policy_dir):
    from mlflow.exceptions import MlflowException

    import mlflow

    root, params, tracker, _, _ = served
    candidate = merge_candidate({"expert-brevity": 0.5, "expert-verbosity": 0.5}, "ties", {"ties_density": 0.5})
    version = register_tiny_candidate(params, tracker, root, tiny_policy_dir, candidate)
    model = mlflow.pyfunc.load_model(f"models:/m/{version}")
    registered = model.predict({"prompt": PROMPTS[:1]}, params={"max_new_tokens": TOKENS})
    assert len(registered) == 1
    policy = model.unwrap_python_model().policy
    assert policy.check([0.5, 0.5]) is None   # its own weights: the TIES recipe, not an exact merge
    assert model.predict({"prompt": PROMPTS[:1]}, params={"weights": [0.5, 0.5], "max_new_tokens": TOKENS}) \
        == registered
    with pytest.raises(MlflowException, match="not linear in the experts") as caught:
        model.predict({"prompt": PROMPTS[:1]}, params={"weights": [0.2, 0.8]})
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
