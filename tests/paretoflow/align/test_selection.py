"""Selection on the objective, and atomic adapter folders (meta.json last) with resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from paretoflow.align import is_complete, read_meta
from paretoflow.align.data import load_pair_tables, select_pairs
from paretoflow.align.selection import Selection, SelectionPrompt
from paretoflow.align.trainer import train_adapter
from paretoflow.config import Objective

from .conftest import tiny_profile

OBJECTIVES = [Objective(name=n) for n in ("helpfulness", "conciseness", "harmlessness")]
PROMPTS = [SelectionPrompt(f"p_{i}", [{"role": "user", "content": f"Question {i}: a poem?"}], f"Question {i}")
           for i in range(3)]


class ScriptedScorer:
    """A deterministic scorer: the k-th call scores every answer `scores[k]`; records answers.
    `fail_at` raises on that call (a run killed in the middle of training)."""

    def __init__(self, scores, fail_at=None):
        self.scores, self.fail_at, self.calls = list(scores), fail_at, []

    def __call__(self, texts, responses, tags):
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise RuntimeError("killed")
        value = self.scores[len(self.calls)]
        self.calls.append(list(responses))
        return {"conciseness": np.full(len(responses), value)}


def _selection(scorer):
    return Selection(PROMPTS, scorer, {"conciseness": 1.0}, max_new_tokens=4, batch_size=3, scorer_name="scripted")


def _examples(directory):
    tables = load_pair_tables(directory)
    train, _ = select_pairs(tables, "conciseness", "train", OBJECTIVES)
    val, _ = select_pairs(tables, "conciseness", "val", OBJECTIVES)
    return train, val


CONFIG = dict(max_steps=9, eval_steps=3, checkpoint_steps=3, patience=5, early_stopping_metric="val_objective",
              selection_prompts=3)


def test_keeps_the_adapter_that_scored_best(tiny_policy_dir, pair_tables_dir, tmp_path):
    train, val = _examples(pair_tables_dir)
    scorer = ScriptedScorer([0.2, 0.6, 0.4, 0.5])  # base, step 3, 6, 9: step 3 is best
    result = train_adapter(tiny_profile(**CONFIG), tiny_policy_dir, train, val, tmp_path / "sel",
                           progress=False, selection=_selection(scorer))
    log = json.loads((tmp_path / "sel" / "train_log.json").read_text())
    assert [e["step"] for e in log["validation"]] == [0, 3, 6, 9]
    assert [e["val_objective"] for e in log["validation"]] == pytest.approx([0.2, 0.6, 0.4, 0.5])
    assert "val_loss" in log["validation"][1] and "val_loss" not in log["validation"][0]
    assert result.best_step == 3 and result.metrics["base_val_objective"] == pytest.approx(0.2)
    # the shipped adapter is the step-3 adapter: same weights as a run that stopped at step 3
    plain = train_adapter(tiny_profile(**{**CONFIG, "max_steps": 3, "early_stopping_metric": "val_loss"}),
                          tiny_policy_dir, train, val, tmp_path / "three", progress=False)
    assert plain.steps == 3
    shipped, three = load_file(tmp_path / "sel" / "adapter_model.safetensors"), \
        load_file(tmp_path / "three" / "adapter_model.safetensors")
    assert shipped.keys() == three.keys()
    for key in shipped:
        torch.testing.assert_close(shipped[key], three[key], rtol=0, atol=1e-6)


def test_base_wins_when_no_checkpoint_beats_it(tiny_policy_dir, pair_tables_dir, tmp_path):
    train, val = _examples(pair_tables_dir)
    scorer = ScriptedScorer([0.9, 0.5, 0.4, 0.3])
    result = train_adapter(tiny_profile(**{**CONFIG, "patience": 2}), tiny_policy_dir, train, val,
                           tmp_path / "base", progress=False, selection=_selection(scorer))
    assert result.best_step == 0 and result.stopped_early and result.steps == 6  # patience 2 after step 0
    result.model.cpu()
    base = AutoModelForCausalLM.from_pretrained(tiny_policy_dir, use_safetensors=True)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():  # the shipped adapter is the zero update: the base model's logits
        torch.testing.assert_close(result.model(input_ids=ids).logits, base(input_ids=ids).logits)
    assert read_meta(tmp_path / "base").best_step == 0


def test_killed_run_leaves_no_complete_adapter_and_resumes(tiny_policy_dir, pair_tables_dir, tmp_path):
    train, val = _examples(pair_tables_dir)
    folder = tmp_path / "adapter"
    # an earlier complete adapter in the same folder (other config): a new run must not pass it off
    train_adapter(tiny_profile(max_steps=2, eval_steps=2), tiny_policy_dir, train, val, folder, progress=False)
    assert is_complete(folder)

    scores = [0.2, 0.6, 0.4, 0.5]
    with pytest.raises(RuntimeError, match="killed"):  # dies at the step-6 evaluation
        train_adapter(tiny_profile(**CONFIG), tiny_policy_dir, train, val, folder, progress=False,
                      selection=_selection(ScriptedScorer(scores, fail_at=2)))
    assert not (folder / "meta.json").exists() and not (folder / "adapter_model.safetensors").exists()
    assert not is_complete(folder)
    assert (folder / "checkpoints" / "step-000003" / "trainer_state.json").exists()

    resumed = train_adapter(tiny_profile(**CONFIG), tiny_policy_dir, train, val, folder, progress=False,
                            selection=_selection(ScriptedScorer(scores[2:])))  # steps 6 and 9 only
    once = train_adapter(tiny_profile(**CONFIG), tiny_policy_dir, train, val, tmp_path / "once", progress=False,
                         selection=_selection(ScriptedScorer(scores)))
    assert resumed.completed and is_complete(folder) and not (folder / "checkpoints").exists()
    a, b = (json.loads((d / "train_log.json").read_text()) for d in (folder, tmp_path / "once"))
    assert [s["loss"] for s in a["steps"]] == pytest.approx([s["loss"] for s in b["steps"]], abs=1e-6)
    assert [e["val_objective"] for e in a["validation"]] == [e["val_objective"] for e in b["validation"]]
    assert resumed.best_step == once.best_step == 3


def test_is_complete_checks_the_recorded_hashes(tiny_policy_dir, pair_tables_dir, tmp_path):
    train, val = _examples(pair_tables_dir)
    train_adapter(tiny_profile(max_steps=2, eval_steps=2), tiny_policy_dir, train, val, tmp_path / "a",
                  progress=False)
    meta = read_meta(tmp_path / "a")
    assert meta.files.keys() >= {"adapter_model.safetensors", "adapter_config.json", "train_log.json"}
    assert is_complete(tmp_path / "a")
    with (tmp_path / "a" / "train_log.json").open("a") as fh:
        fh.write(" ")  # any change to a described file
    assert not is_complete(tmp_path / "a") and is_complete(tmp_path / "a", verify=False)
    (tmp_path / "a" / "adapter_config.json").unlink()
    assert not is_complete(tmp_path / "a", verify=False)
    assert not is_complete(tmp_path / "missing")


def test_val_objective_without_a_selection_is_refused(tiny_policy_dir, pair_tables_dir, tmp_path):
    train, val = _examples(pair_tables_dir)
    with pytest.raises(ValueError, match="needs a selection"):
        train_adapter(tiny_profile(early_stopping_metric="val_objective"), tiny_policy_dir, train, val,
                      tmp_path / "x", progress=False)


def test_selection_prompts_cover_every_stratum_of_source_and_tags(tmp_path):
    from paretoflow import schema
    from paretoflow.align.selection import load_selection_prompts

    rows = []
    for source, tags, n in (("big.jsonl", "[]", 20), ("builtin", '["harmful"]', 2), ("builtin", "[]", 3)):
        for i in range(n):
            messages = [{"role": "user", "content": f"{source} {tags} {i}"}]
            rows.append(dict(prompt_id=schema.prompt_id(messages), messages=schema.messages_json(messages),
                             text=messages[0]["content"], source=source, split="val", tags=tags))
    rows.append({**rows[0], "prompt_id": "p_test", "split": "test"})  # other splits never used
    path = tmp_path / "prompts.parquet"
    schema.frame("prompts", rows).to_parquet(path)
    picked = load_selection_prompts(path, 6)
    assert len(picked) == 6 and "p_test" not in {p.prompt_id for p in picked}
    # round-robin over 3 strata: 2 prompts each, the big source does not crowd out the others
    assert sum(p.tags == ["harmful"] for p in picked) == 2
    assert sum(p.text.startswith("big") for p in picked) == 2
    assert load_selection_prompts(path, 6) == picked  # deterministic


def test_guard_skips_checkpoints_that_wreck_another_objective(tiny_policy_dir, pair_tables_dir, tmp_path):
    train, val = _examples(pair_tables_dir)
    concise, helpful = [0.2, 0.5, 0.9, 0.4], [0.8, 0.75, 0.3, 0.8]  # step 6: best score, helpfulness -0.5

    def scorer(texts, responses, tags, calls=[]):  # noqa: B006 - the call counter
        k = len(calls)
        calls.append(k)
        return {"conciseness": np.full(len(responses), concise[k]), "helpfulness": np.full(len(responses), helpful[k])}

    selection = Selection(PROMPTS, scorer, {"conciseness": 1.0}, max_new_tokens=4, batch_size=3,
                          guard={"helpfulness": 0.1})
    result = train_adapter(tiny_profile(**CONFIG), tiny_policy_dir, train, val, tmp_path / "g", progress=False,
                           selection=selection)
    log = json.loads((tmp_path / "g" / "train_log.json").read_text())
    assert [e.get("eligible", True) for e in log["validation"]] == [True, True, False, True]
    assert result.best_step == 3  # 0.5 at step 3; step 6 (0.9) dropped helpfulness by 0.5 > 0.1
    assert log["validation"][2]["val_helpfulness"] == pytest.approx(0.3)


def test_selection_answers_seed_the_global_generator_only_under_the_session_lock(monkeypatch):
    """Greedy answers seed and restore torch's global generator; an align lane doing so while
    another lane seeded its LoRA initialisation (build_session, under GLOBAL_RNG) gave that
    adapter other weights now and then. They must hold the same lock."""
    from types import SimpleNamespace

    from paretoflow import generation
    from paretoflow.align.selection import generate_answers
    from paretoflow.align.session import GLOBAL_RNG

    held = []

    def fake_generate(model, tokenizer, messages, **kwargs):
        held.append(GLOBAL_RNG.locked())
        return [["an answer"] for _ in messages]

    monkeypatch.setattr(generation, "generate", fake_generate)
    model = SimpleNamespace(training=True, eval=lambda: None, train=lambda mode=True: None)
    selection = SimpleNamespace(prompts=[SimpleNamespace(messages=[{"role": "user", "content": "Hi"}])],
                                max_new_tokens=4, batch_size=1, max_prompt_tokens=32)
    assert generate_answers(model, None, selection) == ["an answer"]
    assert held == [True] and not GLOBAL_RNG.locked()
