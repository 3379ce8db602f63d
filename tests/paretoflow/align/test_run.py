"""Stage entry points: run / run_all / CLI, and their refusals before any compute."""

from __future__ import annotations

import json

import pytest
import yaml

from paretoflow import align
from paretoflow.cli import main
from paretoflow.config import load_params

from .conftest import write_pair_tables

TINY_BUDGET = dict(lora_r=4, lora_alpha=8.0, lora_dropout=0.0, batch_size=4, eval_batch_size=8,
                   max_steps=2, eval_steps=2, checkpoint_steps=2, patience=5, max_val_pairs=2,
                   max_length=48, max_prompt_tokens=24, learning_rate=1e-2)


@pytest.fixture
def tiny_params(tmp_path):
    from tests.conftest import REPO_ROOT

    return load_params(REPO_ROOT / "params.yaml", overrides={
        "project": {"profile": "cpu"},
        "pairs": {"out_dir": "pairs"}, "align": {"out_dir": "adapters", "cpu": TINY_BUDGET,
                  "modpo_weights": [[0.6, 0.4, 0.0]]},
    })


def _forbid_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training started before validation")

    monkeypatch.setattr("paretoflow.align.train_adapter", refuse)


def test_bad_weights_rejected_before_any_compute(tiny_params, tmp_path, monkeypatch):
    _forbid_training(monkeypatch)
    # no pairs folder exists: a weights error proves the check ran before any file I/O
    for weights, message in (([0.5, 0.6, 0.0], "sum to 1"), ([0.5, 0.5], "3 objectives"),
                             ([1.2, -0.2, 0.0], "non-negative")):
        with pytest.raises(ValueError, match=message):
            align.run(tiny_params, tmp_path, weights=weights)
    bad = tiny_params.model_copy(deep=True)
    bad.align.modpo_weights = [[0.6, 0.4, 0.0], [0.9, 0.9, 0.0]]
    with pytest.raises(ValueError, match="sum to 1"):
        align.run_all(bad, tmp_path)


def test_objective_without_pairs_is_a_clear_error(tiny_params, tmp_path, monkeypatch):
    write_pair_tables(tmp_path / "pairs", pair_objectives=("helpfulness",))
    _forbid_training(monkeypatch)
    with pytest.raises(ValueError, match=r"no train pairs for objective 'conciseness'.*helpfulness': 8"):
        align.run(tiny_params, tmp_path, objective="conciseness")
    with pytest.raises(ValueError, match="no train pairs for objective 'conciseness'"):
        align.run_all(tiny_params, tmp_path)  # refused before the first expert trains
    with pytest.raises(ValueError, match="unknown objective"):
        align.run(tiny_params, tmp_path, objective="verbosity")


def test_run_expert_and_modpo_write_artifacts(tiny_params, tiny_policy_dir, tmp_path):
    write_pair_tables(tmp_path / "pairs")
    expert = align.run(tiny_params, tmp_path, objective="conciseness", policy_path=str(tiny_policy_dir),
                       progress=False)
    assert expert.name == "expert-conciseness" and expert.adapter_dir == tmp_path / "adapters" / expert.name
    for name in ("adapter_model.safetensors", "adapter_config.json", "train_log.json", "meta.json"):
        assert (expert.adapter_dir / name).exists(), name
    meta = json.loads((expert.adapter_dir / "meta.json").read_text())
    assert meta["objective"] == "conciseness" and meta["objective_weights"] is None
    assert len(meta["pairs_data_hash"]) == 16 and meta["base_model_path"] == str(tiny_policy_dir)
    assert expert.metrics["steps"] == 2 and expert.val_pairs == 2

    modpo = align.run(tiny_params, tmp_path, weights=[0.4, 0.6, 0.0], policy_path=str(tiny_policy_dir),
                      progress=False)
    assert modpo.name == "modpo-0.4-0.6-0" and modpo.objective == "conciseness"  # largest weight
    meta = json.loads((modpo.adapter_dir / "meta.json").read_text())
    assert meta["loss"] == "modpo" and meta["margin_objectives"] == ["helpfulness"]
    assert meta["objective_index"] == 1


def test_cli_align(tiny_params, tiny_policy_dir, tmp_path, capsys):
    write_pair_tables(tmp_path / "pairs")
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(tiny_params.model_dump(mode="json", by_alias=True)))
    code = main(["--params", str(params_path), "align", "--weights", "0.5,0.6,0", "--root", str(tmp_path)])
    assert code == 2 and "sum to 1" in capsys.readouterr().err
    code = main(["--params", str(params_path), "align", "--weights", "0.6,0.4,0", "--root", str(tmp_path),
                 "--policy", str(tiny_policy_dir)])
    assert code == 0
    assert "modpo-0.6-0.4-0:" in capsys.readouterr().out
    assert (tmp_path / "adapters" / "modpo-0.6-0.4-0" / "adapter_model.safetensors").exists()
