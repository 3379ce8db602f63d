"""The reward stage end to end on small canonical tables, with the tiny policy as backbone."""

import json

import numpy as np
import pandas as pd
import pytest

from paretoflow.config import load_params
from paretoflow.reward.data import load_preference_data
from paretoflow.reward.model import OVERALL, RewardModel, RewardModelConfig
from paretoflow.reward.train import INDEPENDENT_DIR, run
from paretoflow.schema import frame, messages_json, pair_id, prompt_id, response_id
from tests.conftest import REPO_ROOT

TOPICS = ["bread", "sleep", "rain", "chess", "tea", "music", "trees", "stars", "boats", "maps", "clocks", "bees"]
ANSWERS = ["Yes.", "Here is a clear answer about {t}.", "A long answer about {t}, with details " + "and more " * 6]


def _write_tables(root, with_pairs=True, corrupt_rating=False):
    """Curated tables: helpfulness has human pairs AND ratings, harmlessness pairs only,
    conciseness nothing (its judges rate the curated responses)."""
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
            ratings.append({"response_id": rid, "objective": "helpfulness", "value": float(topic in text), "scale_min": 0.0, "scale_max": 1.0, "rater": "people"})
        for rejected in (ids[0], ids[2]):  # harmlessness: the mid answer beats the others
            pairs.append({"pair_id": pair_id(pid, ids[1], rejected, "harmlessness"), "prompt_id": pid, "chosen_id": ids[1], "rejected_id": rejected, "objective": "harmlessness", "margin": 1.0, "source": "data/raw/hh.jsonl"})
        pairs.append({"pair_id": pair_id(pid, ids[2], ids[0], "helpfulness"), "prompt_id": pid, "chosen_id": ids[2], "rejected_id": ids[0], "objective": "helpfulness", "margin": 1.0, "source": "data/raw/alpaca.jsonl"})
    if corrupt_rating:
        ratings[3]["value"] = float("nan")
    curated = root / "data" / "curated"
    curated.mkdir(parents=True)
    tables = {"prompts": prompts, "responses": responses, "ratings": ratings, "pairs": pairs if with_pairs else []}
    for name, rows in tables.items():
        frame(name, rows).to_parquet(curated / f"{name}.parquet")
    return prompts, responses


def _params(tiny_policy_dir, **reward):
    return load_params(
        REPO_ROOT / "params.yaml",
        overrides={
            "model": {"policy": str(tiny_policy_dir)},
            "reward": {"gating_epochs": 50, "cpu": {"backbone": "policy", "max_length": 64}, **reward},
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
    evaluation = report["evaluation"]
    assert set(evaluation) == {"helpfulness", "conciseness", "harmlessness", OVERALL}
    # Every source of every objective is reported, with its weight and counts.
    helpful = evaluation["helpfulness"]["sources"]
    assert set(helpful) == {"data/raw/alpaca.jsonl", "ratings:people"}
    assert helpful["data/raw/alpaca.jsonl"]["n_test_pairs"] == 2 and helpful["ratings:people"]["n_test_pairs"] == 4
    assert evaluation["conciseness"]["sources"]["judges"]["weight"] == 1.0
    assert evaluation["harmlessness"]["n_test_pairs"] == 4  # 2 test prompts x 2 pairs
    for name in ("helpfulness", "harmlessness"):
        assert "lc_accuracy" in evaluation[name] and evaluation[name]["n_lc_pairs"] >= 0
    assert report["heads"]["helpfulness"]["sources"].keys() == {"data/raw/alpaca.jsonl", "ratings:people"}
    assert report["data"]["responses_per_split"] == {"train": 24, "val": 6, "test": 6}
    assert "test_accuracy_harmlessness" in result.metrics and "test_lc_accuracy_harmlessness" in result.metrics, sorted(result.metrics)
    assert all(np.isfinite(v) for v in result.metrics.values())
    # The config is the pydantic contract, read back through it.
    model = RewardModel.load(result.out_dir, root=root)
    assert isinstance(model.config, RewardModelConfig)
    assert model.config.objectives[0].sources == {"data/raw/alpaca.jsonl": 1.0, "ratings:people": 1.0}
    assert model.config.train_prompts == "half a"


def test_independent_model_saw_other_train_prompts(trained):
    root, params, result, _, _ = trained
    main = RewardModel.load(result.out_dir, root=root)
    independent = RewardModel.load(result.out_dir / INDEPENDENT_DIR, root=root)
    assert independent.config.train_prompts == "half b" and independent.objectives == main.objectives
    report = json.loads(result.report_path.read_text())
    assert set(report["independent_evaluation"]) == set(report["evaluation"])
    from paretoflow.reward.train import independent_halves

    train = {p["prompt_id"] for p in trained[3] if p["split"] == "train"}
    a, b = independent_halves(train, params.project.seed)
    assert a and b and not (a & b) and a | b == train


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
        # The calibrated mapping: σ(τ (r − μ)) of the model's own score.
        raw = judge.model.score(["Tell me about tea."], ["Tea is a drink."], objectives=[objective])[objective]
        assert values[0] == pytest.approx(judge.model.probability(objective, raw)[0])
    independent = build_judge(JudgeRef(name="reward_model", params={"objective": "harmlessness", "model_dir": "artifacts/reward/independent"}), context)
    assert independent.model.config.train_prompts == "half b"
    with pytest.raises(KeyError, match="'honesty'"):
        build_judge(JudgeRef(name="reward_model", params={"objective": "honesty"}), context)


def test_objective_without_data_is_named(tiny_policy_dir, tmp_path):
    _write_tables(tmp_path, with_pairs=False)  # no harmlessness pairs anywhere
    with pytest.raises(ValueError, match="objective 'harmlessness' has no training data"):
        run(_params(tiny_policy_dir), tmp_path, progress=False)


def test_zero_weight_leaves_a_source_out_but_reports_it(tiny_policy_dir, tmp_path):
    _write_tables(tmp_path)
    params = _params(tiny_policy_dir, independent=False, sources={"helpfulness": {"ratings": 0.0}, "conciseness": {"judges": 1.0}})
    result = run(params, tmp_path, progress=False)
    report = json.loads(result.report_path.read_text())
    assert report["evaluation"]["helpfulness"]["sources"]["ratings:people"]["weight"] == 0.0
    assert RewardModel.load(result.out_dir, root=tmp_path).config.objectives[0].sources == {"data/raw/alpaca.jsonl": 1.0}
    assert not (result.out_dir / INDEPENDENT_DIR).exists()


def test_undeclared_objective_in_sources_is_an_error(tiny_policy_dir, tmp_path):
    _write_tables(tmp_path)
    with pytest.raises(ValueError, match=r"undeclared objectives \['honesty'\]"):
        run(_params(tiny_policy_dir, sources={"honesty": {"pairs": 1.0}}), tmp_path, progress=False)


def test_nan_rating_names_file_and_row(tiny_policy_dir, tmp_path):
    _write_tables(tmp_path, corrupt_rating=True)
    with pytest.raises(ValueError, match=r"ratings.parquet: row 3: value"):
        load_preference_data(tmp_path, _params(tiny_policy_dir))


def test_no_data_is_a_clear_error(tiny_policy_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="prompts table not found"):
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
    # Every chosen answer here is the longer one: no length-controlled pair, reported as such.
    assert evaluation["objectives"]["harmlessness"]["n_lc_pairs"] == 0
    assert evaluation["objectives"][OVERALL]["n_pairs"] == 5
    assert 0.0 <= evaluation["objectives"]["harmlessness"]["accuracy"] <= 1.0

    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    out = tmp_path / "eval.json"
    code = main(["--params", str(params_file), "eval-rm", "--data", str(data), "--root", str(root), "--out", str(out)])
    assert code == 0 and json.loads(out.read_text())["objectives"]["harmlessness"]["n_pairs"] == 5
    assert "harmlessness" in capsys.readouterr().out
    assert main(["--params", str(params_file), "eval-rm", "--data", str(tmp_path / "missing.jsonl"), "--root", str(root)]) == 2


def test_length_debias_removes_the_heads_length_component():
    from paretoflow.reward.train import Encoded, debias_length

    rng = np.random.default_rng(0)
    n, d = 200, 3
    texts = [" ".join(["w"] * int(k)) for k in rng.integers(1, 60, n)]
    ell = np.log1p([len(t.split()) for t in texts])
    x = np.column_stack([rng.normal(size=(n, d)), (ell - ell.mean()) / ell.std()])
    enc = Encoded(responses=pd.DataFrame({"prompt_id": ["p"] * n, "text": texts}), pair=x, prompt=np.zeros((n, 1)),
                  backbone_dim=d, key="", fingerprint="", spec=None, from_cache=True, seconds=0.0)
    weight = np.array([0.5, -0.2, 0.1, 2.0])
    full = weight.copy()
    details = debias_length(full, x, enc, {"p"}, 1.0)
    scores = x @ full
    assert abs(np.mean((scores - scores.mean()) * (x[:, d] - x[:, d].mean()))) < 1e-10  # no linear length part left
    half = weight.copy()
    debias_length(half, x, enc, {"p"}, 0.5)
    assert half[d] == pytest.approx(weight[d] - details["lambda"] / 2)
    assert np.array_equal(half[:d], weight[:d])  # content weights untouched
