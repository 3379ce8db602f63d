import pytest

from paretoflow.config import check_weights, load_params


def test_params_yaml_validates_and_declares_objectives(params):
    assert params.objective_names == ["helpfulness", "conciseness", "harmlessness"]
    assert params.objective("conciseness").judges[0].name == "length_band"
    with pytest.raises(KeyError, match="unknown objective 'tone'"):
        params.objective("tone")


def test_check_weights_rejects_bad_vectors():
    names = ["a", "b"]
    assert check_weights([0.25, 0.75], names) == [0.25, 0.75]
    with pytest.raises(ValueError, match="2 objectives"):
        check_weights([1.0], names)
    with pytest.raises(ValueError, match="non-negative"):
        check_weights([1.5, -0.5], names)
    with pytest.raises(ValueError, match="sum to 1"):
        check_weights([0.5, 0.6], names)


def test_bad_split_fractions_name_the_problem(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("objectives: [{name: a}]\ncurate: {split_fractions: {train: 0.9, val: 0.2, test: 0.1}}\n")
    with pytest.raises(ValueError, match="sum to 1"):
        load_params(p)


def test_duplicate_objectives_rejected(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("objectives: [{name: a}, {name: a}]\n")
    with pytest.raises(ValueError, match="unique"):
        load_params(p)


def test_params_survive_a_yaml_round_trip_with_every_optional_left_unset(params):
    """Prefect parameters, MLflow params and `front --params` files carry dumped params:
    every section, None-valued optionals included, must load back to the same values."""
    import yaml

    from paretoflow.config import Params

    assert params.reward.independent_length_debias is not None      # params.yaml sets it
    unset = params.model_copy(update={"reward": params.reward.model_copy(update={"independent_length_debias": None})})
    for p in (params, unset):
        dumped = yaml.safe_load(yaml.safe_dump(p.model_dump(mode="json", by_alias=True)))
        assert Params.model_validate(dumped) == p
