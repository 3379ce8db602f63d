"""adapter_config.json is written canonically (issue 22): the same adapter in another
set order gives the same bytes, and peft still reads it."""

from __future__ import annotations

import json

from paretoflow.align.checkpoint import canonical_adapter_config


def _config(modules: list[str]) -> dict:
    return {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": modules, "task_type": "CAUSAL_LM",
            "modules_to_save": None, "layers_to_transform": None, "bias": "none"}


def test_set_order_does_not_change_the_bytes_and_peft_reads_it(tmp_path):
    import peft

    paths = []
    for index, modules in enumerate((["v_proj", "q_proj", "o_proj", "k_proj"], ["k_proj", "o_proj", "q_proj", "v_proj"])):
        folder = tmp_path / str(index)
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps(_config(modules)))
        canonical_adapter_config(folder / "adapter_config.json")
        paths.append(folder)
    first, second = ((p / "adapter_config.json").read_bytes() for p in paths)
    assert first == second
    assert json.loads(first)["target_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]
    loaded = peft.LoraConfig.from_pretrained(str(paths[0]))
    assert set(loaded.target_modules) == {"k_proj", "o_proj", "q_proj", "v_proj"} and loaded.r == 8


def test_a_regex_target_is_kept(tmp_path):
    path = tmp_path / "adapter_config.json"
    path.write_text(json.dumps(_config(".*(q|v)_proj")))
    canonical_adapter_config(path)
    assert json.loads(path.read_text())["target_modules"] == ".*(q|v)_proj"


def test_a_trained_adapter_is_saved_with_sorted_target_modules(tiny_policy_dir, pair_tables_dir, tmp_path):
    from paretoflow.align.data import load_pair_tables, select_pairs
    from paretoflow.align.meta import META_FILE
    from paretoflow.align.trainer import train_adapter
    from paretoflow.config import Objective

    from .conftest import tiny_profile

    objectives = [Objective(name=n) for n in ("helpfulness", "conciseness", "harmlessness")]
    tables = load_pair_tables(pair_tables_dir)
    train, _ = select_pairs(tables, "helpfulness", "train", objectives)
    val, _ = select_pairs(tables, "helpfulness", "val", objectives)
    train_adapter(tiny_profile(max_steps=1), tiny_policy_dir, train, val, tmp_path / "a", progress=False)
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["target_modules"] == sorted(config["target_modules"]) and len(config["target_modules"]) > 1
    assert (tmp_path / "a" / META_FILE).exists()  # sealed after the rewrite: its hashes cover the new bytes
