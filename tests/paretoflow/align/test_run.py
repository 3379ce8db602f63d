"""Stage entry points: run / run_all / CLI, sources, and their refusals before any compute."""

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
                   max_length=48, max_prompt_tokens=24, learning_rate=1e-2,
                   selection_prompts=3, selection_max_new_tokens=6, selection_batch_size=4)
HUMAN_CHOSEN = "A sea poem: waves roll in, gulls cry, the tide turns home."
HUMAN_REJECTED = "No."


@pytest.fixture
def tiny_params(tmp_path):
    from tests.conftest import REPO_ROOT, rules_overrides

    return load_params(REPO_ROOT / "params.yaml", overrides={   # rule judges: no reward model trained here
        "project": {"profile": "cpu"}, **rules_overrides(),
        "pairs": {"out_dir": "pairs"}, "curate": {"out_dir": "curated"},
        "reward": {"out_dir": "reward"},
        "align": {"out_dir": "adapters", "cpu": TINY_BUDGET, "modpo_weights": [[0.6, 0.4, 0.0]],
                  "cache_dir": "align-cache"},
    })


def write_sources(root, human_objectives=("helpfulness", "conciseness"), on_policy_objectives=("helpfulness",
                                                                                                   "conciseness")):
    """Curated human pairs (dataset "hh.jsonl.gz", long chosen answers) + on-policy pairs."""
    write_pair_tables(root / "curated", n_train=6, n_val=4, pair_objectives=human_objectives,
                      source="hh.jsonl.gz", chosen=HUMAN_CHOSEN + " More lines follow." * 20,
                      rejected=HUMAN_REJECTED, rated_objectives=())
    write_pair_tables(root / "pairs", pair_objectives=on_policy_objectives, source="on_policy_judges")


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
    with pytest.raises(ValueError, match="unknown pair source kinds"):
        align.run(tiny_params, tmp_path, objective="helpfulness", sources={"humans": 1.0})
    # objective-keyed settings are checked when params load (stages/align.py `check`)
    bad = tiny_params.model_copy(deep=True)
    bad.align.tradeoff_max_drop = {"verbosity": 0.1}
    with pytest.raises(ValueError, match=r"align.tradeoff_max_drop names undeclared objectives \['verbosity'\]"):
        type(bad).model_validate(bad.model_dump(mode="json", by_alias=True))


def test_objective_without_pairs_is_a_clear_error(tiny_params, tmp_path, monkeypatch):
    write_sources(tmp_path, human_objectives=("helpfulness",), on_policy_objectives=("helpfulness",))
    _forbid_training(monkeypatch)
    with pytest.raises(ValueError, match=r"no train pairs for objective 'conciseness'.*human .*0 train pairs"):
        align.run(tiny_params, tmp_path, objective="conciseness")
    with pytest.raises(ValueError, match="no train pairs for objective 'conciseness'"):
        align.run_all(tiny_params, tmp_path)  # refused before the first expert trains
    with pytest.raises(ValueError, match="unknown objective"):
        align.run(tiny_params, tmp_path, objective="verbosity")
    with pytest.raises(ValueError, match=r"weight 0, not read: \['on_policy'\]"):
        align.run(tiny_params, tmp_path, objective="conciseness", sources={"human": 1.0, "on_policy": 0.0})


def test_human_pairs_alone_and_mixture_are_counted(tiny_params, tiny_policy_dir, tmp_path):
    write_sources(tmp_path)
    human = align.run(tiny_params, tmp_path, objective="helpfulness", policy_path=str(tiny_policy_dir),
                      progress=False, sources={"human": 1.0, "on_policy": 0.0})
    meta = json.loads((human.adapter_dir / "meta.json").read_text())
    assert set(meta["sources"]) == {"human"} and meta["sources"]["human"]["train"] == 6
    assert meta["sources"]["human"]["datasets"] == {"hh.jsonl.gz": 6}
    seen = meta["seen"]["train"]["human"]
    # 2 steps x 4 pairs = 8 visits over 6 pairs: every pair seen, two of them twice
    assert seen["visits"] == 8 and seen["pairs"] == 6 and set(meta["seen"]["train"]) == {"human"}
    # the long human answers do not fit max_length 48: every seen pair is truncated, and counted
    assert seen["truncation"]["chosen_truncated"] == 6 and seen["truncation"]["pairs_truncated"] == 6
    assert human.metrics["pairs_seen_human"] == 6 and human.metrics["pairs_truncated_human"] == 6

    tiny_params.align.objective_sources = {"helpfulness": {"human": 3.0, "on_policy": 1.0}}
    tiny_params.align.cpu.max_steps = 4
    mixed = align.run(tiny_params, tmp_path, objective="helpfulness", policy_path=str(tiny_policy_dir),
                      progress=False)
    meta = json.loads((mixed.adapter_dir / "meta.json").read_text())
    visits = {kind: seen["visits"] for kind, seen in meta["seen"]["train"].items()}
    assert visits == {"human": 12, "on_policy": 4}  # 16 visits in the 3:1 mix
    assert meta["seen"]["train"]["on_policy"]["datasets"]["on_policy_judges"]["visits"] == 4
    assert meta["sources"]["human"]["weight"] == 3.0 and meta["sources"]["on_policy"]["train"] == 8
    assert meta["seen"]["val"]["human"]["pairs"] + meta["seen"]["val"]["on_policy"]["pairs"] == 2


def test_run_expert_and_modpo_write_artifacts(tiny_params, tiny_policy_dir, tmp_path):
    write_sources(tmp_path)
    expert = align.run(tiny_params, tmp_path, objective="conciseness", policy_path=str(tiny_policy_dir),
                       progress=False)
    assert expert.name == "expert-conciseness" and expert.adapter_dir == tmp_path / "adapters" / expert.name
    assert align.is_complete(expert.adapter_dir)
    meta = align.read_meta(expert.adapter_dir)
    assert meta.objective == "conciseness" and meta.objective_weights is None
    assert meta.base_model_path == str(tiny_policy_dir) and len(meta.sources["on_policy"]["data_hash"]) == 16
    assert set(meta.files) >= {"adapter_model.safetensors", "adapter_config.json", "train_log.json"}
    assert meta.selection["weights"] == {"conciseness": 1.0} and meta.selection["prompts"] == 3
    assert expert.metrics["steps"] == 2 and expert.val_pairs == 2 and "base_val_objective" in expert.metrics
    assert len(list((tmp_path / "align-cache").glob("base-*.json"))) == 1  # base answers cached
    assert len(list((tmp_path / "align-cache").glob("reference-*.safetensors"))) == 1

    modpo = align.run(tiny_params, tmp_path, weights=[0.4, 0.6, 0.0], policy_path=str(tiny_policy_dir),
                      progress=False)
    assert modpo.name == "modpo-0.4-0.6-0" and modpo.objective == "conciseness"  # largest weight
    meta = align.read_meta(modpo.adapter_dir)
    assert meta.loss == "modpo" and meta.margin_objectives == ["helpfulness"]
    assert meta.margin_raters == {"helpfulness": "judges"}  # no reward model under reward/: judges
    assert meta.objective_index == 1 and meta.selection["weights"] == {"helpfulness": 0.4, "conciseness": 0.6}
    # MODPO trained on the conciseness expert's pairs: its reference pass came from the cache
    assert len(list((tmp_path / "align-cache").glob("reference-*.safetensors"))) == 1


def test_cli_align(tiny_params, tiny_policy_dir, tmp_path, capsys):
    write_sources(tmp_path)
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(tiny_params.model_dump(mode="json", by_alias=True)))
    code = main(["--params", str(params_path), "align", "--weights", "0.5,0.6,0", "--root", str(tmp_path)])
    assert code == 2 and "sum to 1" in capsys.readouterr().err
    code = main(["--params", str(params_path), "align", "--objective", "helpfulness", "--root", str(tmp_path),
                 "--sources", "human=1,on_policy=0", "--policy", str(tiny_policy_dir)])
    assert code == 0 and "expert-helpfulness:" in capsys.readouterr().out
    meta = align.read_meta(tmp_path / "adapters" / "expert-helpfulness")
    assert set(meta.seen["train"]) == {"human"}
    code = main(["--params", str(params_path), "align", "--objective", "helpfulness", "--root", str(tmp_path),
                 "--sources", "human"])
    assert code == 2 and "kind=weight" in capsys.readouterr().err


def test_run_all_in_lanes_trains_the_adapters_it_trains_one_after_the_other(tiny_params, tiny_policy_dir, tmp_path):
    """align.cpu.lanes: two adapters at once in threads, with dropout on (each session draws
    from its own generator): the same bytes as one after the other."""
    import hashlib

    trained = {}
    for lanes in (1, 2):
        root = tmp_path / f"lanes-{lanes}"
        every = ("helpfulness", "conciseness", "harmlessness")
        write_sources(root, human_objectives=every, on_policy_objectives=every)
        params = tiny_params.model_copy(deep=True)
        params.align.cpu.lora_dropout, params.align.cpu.lanes = 0.1, lanes
        results = align.run_all(params, root, policy_path=str(tiny_policy_dir), progress=False)
        assert [r.name for r in results] == ["expert-helpfulness", "expert-conciseness", "expert-harmlessness",
                                             "modpo-0.6-0.4-0"]
        trained[lanes] = {r.name: (hashlib.sha256((r.adapter_dir / "adapter_model.safetensors").read_bytes()).digest(),
                                   [s["loss"] for s in json.loads((r.adapter_dir / "train_log.json").read_text())["steps"]])
                          for r in results}
    assert trained[2] == trained[1]


def test_align_lanes_refuse_gradient_accumulation():
    from paretoflow.config import AlignBudget

    with pytest.raises(ValueError, match="align lanes 2 need gradient_accumulation_steps 1"):
        AlignBudget(lanes=2, gradient_accumulation_steps=2)
    assert AlignBudget(lanes=1, gradient_accumulation_steps=2).lanes == 1


def test_run_all_trains_one_at_a_time_under_a_launch(tiny_params, tmp_path, monkeypatch):
    """Under `accelerate launch` (several processes) two jobs' collectives must not interleave."""
    from paretoflow import distributed, lanes

    every = ("helpfulness", "conciseness", "harmlessness")
    write_sources(tmp_path, human_objectives=every, on_policy_objectives=every)
    tiny_params.align.cpu.lanes = 2
    seen = []
    monkeypatch.setattr(align, "run", lambda *a, **k: k.get("objective") or k.get("weights"))
    real = lanes.in_lanes
    monkeypatch.setattr(lanes, "in_lanes", lambda items, work, resources: seen.append(len(resources))
                        or real(items, work, resources))
    assert len(align.run_all(tiny_params, tmp_path)) == 4
    monkeypatch.setattr(distributed, "current", lambda: distributed.Processes(0, 2))
    assert len(align.run_all(tiny_params, tmp_path)) == 4
    assert seen == [2, 1]
