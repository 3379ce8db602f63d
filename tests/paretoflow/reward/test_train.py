"""The reward stage end to end on small canonical tables, with the tiny policy as backbone."""

import json

import numpy as np
import pandas as pd
import pytest

from paretoflow.config import load_params
from paretoflow.reward.model import OVERALL, RewardModel
from paretoflow.reward.train import load_preference_data, run
from paretoflow.schema import frame, messages_json, pair_id, prompt_id, response_id
from tests.conftest import REPO_ROOT

TOPICS = ["bread", "sleep", "rain", "chess", "tea", "music", "trees", "stars", "boats", "maps", "clocks", "bees"]
ANSWERS = ["Yes.", "Here is a clear answer about {t}.", "A long answer about {t}, with details " + "and more " * 6]


def _write_tables(root, with_curated=True, corrupt_rating=False):
    prompts, responses, ratings, pairs = [], [], [], []
    splits = ["train"] * 8 + ["val"] * 2 + ["test"] * 2
    for topic, split in zip(TOPICS, splits):
        messages = [{"role": "user", "content": f"Tell me about {topic}."}]
        pid = prompt_id(messages)
        prompts.append({"prompt_id": pid, "messages": messages_json(messages), "text": messages[0]["content"], "source": "t", "split": split, "tags": "[]"})
        ids = []
        for answer in ANSWERS:
            text = answer.format(t=topic)
            rid = response_id(pid, text)
            ids.append(rid)
            responses.append({"response_id": rid, "prompt_id": pid, "text": text, "origin": "tiny"})
            words = len(text.split())
            ratings.append({"response_id": rid, "objective": "helpfulness", "value": float(topic in text), "scale_min": 0.0, "scale_max": 1.0, "rater": "judges"})
            ratings.append({"response_id": rid, "objective": "conciseness", "value": 1.0 / words, "scale_min": 0.0, "scale_max": 1.0, "rater": "judges"})
        # harmlessness only as pairs (a BT head): the mid answer beats the others
        for rejected in (ids[0], ids[2]):
            pairs.append({"pair_id": pair_id(pid, ids[1], rejected, "harmlessness"), "prompt_id": pid, "chosen_id": ids[1], "rejected_id": rejected, "objective": "harmlessness", "margin": 1.0, "source": "human"})
    if corrupt_rating:
        ratings[3]["value"] = float("nan")
    pairs_dir = root / "data" / "pairs"
    pairs_dir.mkdir(parents=True)
    for name, rows in (("prompts", prompts), ("responses", responses), ("ratings", ratings)):
        frame(name, rows).to_parquet(pairs_dir / f"{name}.parquet")
    if with_curated:
        curated = root / "data" / "curated"
        curated.mkdir(parents=True)
        for name, rows in (("prompts", prompts), ("responses", responses), ("pairs", pairs)):
            frame(name, rows).to_parquet(curated / f"{name}.parquet")
    return prompts, responses


def _params(tiny_policy_dir):
    return load_params(
        REPO_ROOT / "params.yaml",
        overrides={
            "model": {"policy": str(tiny_policy_dir)},
            "reward": {"bt_epochs": 50, "gating_epochs": 50, "cpu": {"backbone": "policy", "max_length": 64}},
        },
    )


@pytest.fixture(scope="module")
def trained(tiny_policy_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("reward_root")
    prompts, responses = _write_tables(root)
    params = _params(tiny_policy_dir)
    return root, params, run(params, root, progress=False), prompts, responses


def test_run_writes_model_and_report(trained):
    root, params, result, _, _ = trained
    for path in [result.model_path, result.config_path, result.report_path, result.report_md_path, *result.plots]:
        assert path.exists() and path.stat().st_size > 0
    report = json.loads(result.report_path.read_text())
    assert set(report["evaluation"]) == {"helpfulness", "conciseness", "harmlessness", OVERALL}
    assert report["heads"]["harmlessness"]["head"] == "bradley_terry"
    assert report["heads"]["helpfulness"]["head"] == "ridge"
    assert report["evaluation"]["harmlessness"]["n_test_pairs"] == 4  # 2 test prompts x 2 pairs
    assert report["data"]["responses_per_split"] == {"train": 24, "val": 6, "test": 6}
    assert "test_accuracy_harmlessness" in result.metrics
    # Temperatures come from val pairs only; without them τ stays 1 (never fitted in-sample).
    for name, ev in report["evaluation"].items():
        assert ev["temperature_fit_on"] == ("val" if ev["n_val_pairs"] else "none"), name
        if not ev["n_val_pairs"]:
            assert ev["temperature"] == 1.0
    assert all(np.isfinite(v) for v in result.metrics.values())
    # Features went to the cache under the key the model records.
    key = json.loads(result.config_path.read_text())["feature_cache_key"]
    assert (root / params.reward.feature_cache_dir / f"policy-{key}.safetensors").exists()


def test_saved_model_round_trips_through_the_backbone(trained):
    root, _, result, prompts, responses = trained
    texts = [r["text"] for r in responses[:5]]
    prompt_messages = [json.loads(p["messages"]) for p in prompts for _ in range(3)][:5]
    model = RewardModel.load(result.out_dir, root=root)
    first = model.score(prompt_messages, texts)
    second = RewardModel.load(result.out_dir, root=root).score(prompt_messages, texts)
    assert set(first) == {"helpfulness", "conciseness", "harmlessness", OVERALL}
    for name in first:
        assert first[name].shape == (5,) and np.array_equal(first[name], second[name])
    with pytest.raises(KeyError, match="'honesty'"):
        model.score(prompt_messages, texts, objectives=["honesty"])


def test_reward_model_judge_scores_in_unit_interval(trained):
    from paretoflow.config import JudgeRef
    from paretoflow.judges import JudgeContext, build_judge

    root, params, _, _, _ = trained
    context = JudgeContext(root=root, params=params)
    for objective in ("helpfulness", "harmlessness", OVERALL):
        judge = build_judge(JudgeRef(name="reward_model", params={"objective": objective}), context)
        values = judge.score(["Tell me about tea.", "Hi"], ["Tea is a drink.", ""], [[], []])
        assert values.shape == (2,) and np.all((values >= 0) & (values <= 1))
        assert values[1] == 0.0  # empty answer: anti-gaming rule of every judge
    with pytest.raises(KeyError, match="'honesty'"):
        build_judge(JudgeRef(name="reward_model", params={"objective": "honesty"}), context)


def test_objective_without_data_is_named(tiny_policy_dir, tmp_path):
    _write_tables(tmp_path, with_curated=False)  # no harmlessness pairs anywhere
    with pytest.raises(ValueError, match=r"\['harmlessness'\]"):
        run(_params(tiny_policy_dir), tmp_path, progress=False)


def test_nan_rating_names_file_and_row(tiny_policy_dir, tmp_path):
    _write_tables(tmp_path, corrupt_rating=True)
    with pytest.raises(ValueError, match=r"ratings.parquet: row 3: value"):
        load_preference_data(tmp_path, _params(tiny_policy_dir))


def test_no_data_is_a_clear_error(tiny_policy_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no preference data"):
        run(_params(tiny_policy_dir), tmp_path, progress=False)


def test_eval_rm_on_an_imported_hh_file(trained, tmp_path, capsys):
    import yaml

    from paretoflow.cli import main
    from paretoflow.reward.evaluate import evaluate_file

    root, params, result, _, _ = trained
    rows = [
        {"chosen": f"\n\nHuman: Tell me about {t}.\n\nAssistant: Here is a clear answer about {t}.",
         "rejected": f"\n\nHuman: Tell me about {t}.\n\nAssistant: Yes."}
        for t in TOPICS[:5]
    ]
    data = tmp_path / "harmless-test.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    model = RewardModel.load(result.out_dir, root=root)
    evaluation = evaluate_file(model, data, params, format="hh_rlhf", progress=False)
    assert evaluation["objectives"]["harmlessness"]["n_pairs"] == 5
    assert evaluation["objectives"][OVERALL]["n_pairs"] == 5
    assert 0.0 <= evaluation["objectives"]["harmlessness"]["accuracy"] <= 1.0

    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    out = tmp_path / "eval.json"
    code = main(["--params", str(params_file), "eval-rm", "--data", str(data), "--root", str(root), "--out", str(out)])
    assert code == 0 and json.loads(out.read_text())["objectives"]["harmlessness"]["n_pairs"] == 5
    assert "harmlessness" in capsys.readouterr().out
    assert main(["--params", str(params_file), "eval-rm", "--data", str(tmp_path / "missing.jsonl"), "--root", str(root)]) == 2


def test_held_out_splits_carve_test_from_val_when_missing():
    from paretoflow.reward.train import held_out_splits

    ids = [f"p_{i}" for i in range(40)]
    splits = pd.Series(["train"] * 20 + ["val"] * 20, index=ids)
    out, note = held_out_splits(splits, set(ids))
    assert (out[:20] == "train").all()  # train prompts never move
    assert 0 < (out == "test").sum() < 20 and (out == "val").sum() + (out == "test").sum() == 20
    assert "held out as test" in note
    again, _ = held_out_splits(splits, set(ids))
    assert again.equals(out)  # deterministic
    only_train, note = held_out_splits(pd.Series(["train"] * 40, index=ids), set(ids))
    assert {"train", "val", "test"} <= set(only_train) and "10%" in note
