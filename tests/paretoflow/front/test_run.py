"""front.run end to end on the tiny model with two tiny experts (plus a MODPO adapter)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from paretoflow import front
from paretoflow.align.meta import seal
from paretoflow.front.document import read_front
from paretoflow.metrics import paired_difference
from paretoflow.pareto import hypervolume, non_dominated_mask
from tests.paretoflow.front.front_fixtures import make_project, tiny_params, tiny_scorer, write_tiny_reward_model
from tests.paretoflow.front.lora_fixtures import write_random_expert


@pytest.fixture(scope="module")
def project(tiny_policy_dir, tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("front_project"), tiny_policy_dir)


def _copy_project(project, root, adapters=("expert-brevity", "expert-verbosity")):
    shutil.copytree(project / "data", root / "data")
    for name in adapters:
        shutil.copytree(project / "artifacts/adapters" / name, root / "artifacts/adapters" / name)
    return root


def test_grid_front_end_to_end(project, tiny_policy_dir):
    params = tiny_params(tiny_policy_dir)
    result = front.run(params, project, scorer=tiny_scorer, progress=False)
    # base + modpo + grid step 0.5 over 2 experts (3 points)
    assert [r.name for r in result.records] == [
        "base", "modpo-0.5-0.5", "merge-0.00-1.00", "merge-0.50-0.50", "merge-1.00-0.00"]
    document = json.loads(result.front_json.read_text())
    values = np.array([[c["objectives"]["brevity"], c["objectives"]["verbosity"]] for c in document["candidates"]])
    # The flags are the non-dominated filter, the HV is taken at the logged reference.
    assert [c["non_dominated"] for c in document["candidates"]] == non_dominated_mask(values).tolist()
    assert document["reference_point"] == {"brevity": 0.0, "verbosity": 0.0}
    assert document["hypervolume"] == pytest.approx(hypervolume(values, [0.0, 0.0]))
    low, high = document["hypervolume_ci"]
    assert low <= high and result.metrics["hypervolume_ci_low"] == low
    assert result.n_non_dominated >= 1 and result.metrics["hypervolume"] == document["hypervolume"]
    for candidate in document["candidates"]:
        for name, (low, high) in candidate["intervals"].items():
            assert low <= candidate["objectives"][name] <= high
    merge = next(r for r in result.records if r.name == "merge-1.00-0.00")
    assert merge.coefficients == {"expert-brevity": 1.0, "expert-verbosity": 0.0}
    assert merge.weights == {"brevity": 1.0, "verbosity": 0.0}
    assert next(r for r in result.records if r.kind == "adapter").weights == {"brevity": 0.5, "verbosity": 0.5}
    table = pd.read_parquet(result.candidates_parquet)
    assert len(table) == 5 and {"brevity_vs_base", "brevity_vs_base_ci_low"} <= set(table.columns)
    assert result.front_png.stat().st_size > 1000
    metrics = merge.mlflow_metrics()
    assert "coef_expert-brevity" in merge.mlflow_params() and "brevity_ci_low" in metrics
    assert {"brevity_vs_base", "brevity_vs_base_ci_low", "brevity_vs_base_ci_high", "distinguishable"} <= set(metrics)
    assert set(document["mde"]["judges"]) == {"brevity", "verbosity"} and "mde_brevity" in result.metrics
    # Answer rates (front/answers.py): every candidate has one, paired vs the base; the base
    # is eligible; the answers table shows every candidate on the same showcase prompts.
    base = next(c for c in document["candidates"] if c["kind"] == "base")
    assert base["eligible"] and base["answer_rate_vs_base"]["diff"] == 0.0
    assert all(0.0 <= c["answer_rate"] <= 1.0 for c in document["candidates"])
    answers = pd.read_parquet(result.front_json.parent / "answers.parquet")
    shown = answers["prompt_id"].nunique()
    assert shown == min(params.front.showcase_prompts, document["evaluation"]["prompts"])
    assert len(answers) == shown * len(result.records)
    assert (answers.groupby("prompt_id")["candidate"].nunique() == len(result.records)).all()
    assert "# Answers of every candidate" in (result.front_json.parent / "answers.md").read_text()

    # Second run: every generation comes from the cache, same numbers.
    again = front.run(params, project, scorer=tiny_scorer, progress=False)
    assert all(r.cached for r in again.records)
    assert [r.objectives for r in again.records] == [r.objectives for r in result.records]
    assert [r.vs_base for r in again.records] == [r.vs_base for r in result.records]


def test_vs_base_is_the_paired_bootstrap_of_the_stored_scores(project, tiny_policy_dir):
    params = tiny_params(tiny_policy_dir)
    front.run(params, project, scorer=tiny_scorer, progress=False)
    document, scores = read_front(project / params.front.out_dir)
    base = scores.get("base")
    assert document.base.name == "base" and document.evaluation.prompt_ids == scores.prompt_ids
    for record in document.candidates:
        mine = scores.get(record.name)
        for index, name in enumerate(["brevity", "verbosity"]):
            expected = paired_difference(mine[name], base[name], n_resamples=params.front.n_boot,
                                         level=params.front.ci_level, seed=params.project.seed + index)
            paired = record.vs_base[name]
            assert (paired.diff, paired.ci_low, paired.ci_high) == (expected.diff, expected.ci_low, expected.ci_high)
            assert paired.diff == pytest.approx(record.objectives[name] - document.base.objectives[name])
        assert record.distinguishable == any(p.ci_low > 0 or p.ci_high < 0 for p in record.vs_base.values())
    assert all(p.diff == p.ci_low == p.ci_high == 0.0 for p in document.base.vs_base.values())


def test_read_front_refuses_scores_of_another_run(project, tiny_policy_dir, tmp_path):
    params = tiny_params(tiny_policy_dir)
    front.run(params, project, scorer=tiny_scorer, progress=False)
    copy = tmp_path / "front"
    shutil.copytree(project / params.front.out_dir, copy)
    table = pd.read_parquet(copy / "scores.parquet")
    table.loc[0, "value"] += 0.5
    table.to_parquet(copy / "scores.parquet", index=False)
    with pytest.raises(ValueError, match="does not match the hash"):
        read_front(copy)


def test_half_written_adapter_never_reaches_the_front(project, tiny_policy_dir, tmp_path):
    """An adapter killed before meta.json (align's completion marker) is skipped and listed."""
    root = _copy_project(project, tmp_path / "half")
    shutil.copytree(project / "artifacts/adapters/modpo-0.5-0.5", root / "artifacts/adapters/modpo-0.3-0.7")
    (root / "artifacts/adapters/modpo-0.3-0.7/meta.json").unlink()
    result = front.run(tiny_params(tiny_policy_dir), root, scorer=tiny_scorer, progress=False)
    assert "modpo-0.3-0.7" not in {r.name for r in result.records}
    assert not any("modpo-0.3-0.7" in r.adapter_hashes for r in result.records)
    document, _ = read_front(root / "artifacts/front")
    assert [(s.name, s.reason.split(":")[0]) for s in document.skipped_adapters] == [("modpo-0.3-0.7", "incomplete")]
    # An expert without its marker leaves its objective without an expert: merges use the other.
    (root / "artifacts/adapters/expert-verbosity/meta.json").unlink()
    # Weights changed after meta.json sealed them: the hashes no longer match, skipped too.
    shutil.copytree(project / "artifacts/adapters/modpo-0.5-0.5", root / "artifacts/adapters/modpo-0.9-0.1")
    with open(root / "artifacts/adapters/modpo-0.9-0.1/adapter_model.safetensors", "ab") as weights:
        weights.write(b"\0")
    inventory = front.discover_adapters(root / "artifacts/adapters", ["brevity", "verbosity"])
    assert inventory.expert_objectives == ["brevity"]
    assert {name for name, _ in inventory.skipped} == {"expert-verbosity", "modpo-0.3-0.7", "modpo-0.9-0.1"}


def test_adapter_candidate_equals_merge_with_weight_one(project, tiny_policy_dir, tmp_path):
    """A trained adapter evaluated alone answers exactly like the merge putting weight 1 on it,
    and shares its generation cache entry (same weights applied)."""
    root = _copy_project(project, tmp_path / "copy")
    shutil.copytree(project / "artifacts" / "adapters" / "expert-brevity", root / "artifacts/adapters/modpo-1-0")
    meta = json.loads((root / "artifacts/adapters/modpo-1-0/meta.json").read_text())
    meta["objective_weights"] = [1.0, 0.0]
    seal(root / "artifacts/adapters/modpo-1-0", meta)
    result = front.run(tiny_params(tiny_policy_dir), root, scorer=tiny_scorer, progress=False)
    by_name = {r.name: r for r in result.records}
    assert by_name["modpo-1-0"].objectives == by_name["merge-1.00-0.00"].objectives
    assert by_name["modpo-1-0"].objectives != by_name["merge-0.00-1.00"].objectives
    assert by_name["merge-1.00-0.00"].cached and by_name["merge-1.00-0.00"].cache_key == by_name["modpo-1-0"].cache_key


def test_weight_vectors_without_grid(project, tiny_policy_dir, tmp_path):
    root = _copy_project(project, tmp_path / "vectors")
    params = tiny_params(tiny_policy_dir)
    params.front.cpu.weight_vectors = [[1.0, 0.0], [0.0, 1.0], [0.25, 0.75]]
    params.front.cpu.grid_step = None
    result = front.run(params, root, scorer=tiny_scorer, progress=False)
    assert [(r.name, r.source) for r in result.records] == [
        ("base", "base"), ("merge-1.00-0.00", "weights"), ("merge-0.00-1.00", "weights"),
        ("merge-0.25-0.75", "weights")]
    params.front.cpu.weight_vectors = [[0.5, 0.6]]
    with pytest.raises(ValueError, match=r"front.cpu.weight_vectors\[0\]: weights must sum to 1"):
        front.run(params, root, scorer=tiny_scorer, progress=False)
    shutil.rmtree(root / "artifacts/adapters/expert-verbosity")
    params.front.cpu.weight_vectors = [[0.5, 0.5]]
    with pytest.raises(ValueError, match=r"needs experts for \['verbosity'\]"):
        front.run(params, root, scorer=tiny_scorer, progress=False)


def test_main_and_independent_reward_models_score_the_front(project, tiny_policy_dir, tmp_path):
    """<reward.out_dir> is the main reward model, <reward.out_dir>/independent/ the independent
    one; each scores the objectives it declares and gets its own paired comparison."""
    root = _copy_project(project, tmp_path / "rm")
    write_tiny_reward_model(root / "artifacts/reward", tiny_policy_dir, ["brevity", "verbosity"], seed=1)
    write_tiny_reward_model(root / "artifacts/reward/independent", tiny_policy_dir, ["verbosity"], seed=2)
    result = front.run(tiny_params(tiny_policy_dir), root, scorer=tiny_scorer, progress=False)
    document, scores = read_front(root / "artifacts/front")
    assert set(document.evaluation.scorers) == {"judges", "reward_model", "independent"}
    for record in document.candidates:
        assert set(record.reward_model) == set(record.reward_model_vs_base) == {"brevity", "verbosity"}
        assert set(record.independent) == set(record.independent_vs_base) == {"verbosity"}
        independent = scores.get(record.name, "independent")["verbosity"]
        assert record.independent["verbosity"] == pytest.approx(independent.mean())
    assert set(document.mde) == {"judges", "reward_model", "independent"}
    assert "rm_brevity_vs_base" in result.records[1].mlflow_metrics()


def test_map_front_reports_surrogate_error(project, tiny_policy_dir):
    params = tiny_params(tiny_policy_dir, method="map", map_n_verify=1, map_dense_step=0.1,
                         include_adapters=False)
    result = front.run(params, project, scorer=tiny_scorer, progress=False)
    sources = [r.source for r in result.records]
    assert sources[0] == "base" and sources.count("map-design") == 3  # {2,2} lattice: vertices + midpoint
    assert sources.count("map-verify") == result.map_report["n_verified"] <= 1
    document = json.loads(result.front_json.read_text())
    assert set(document["map"]["mean_abs_error"]) == {"brevity", "verbosity"}
    if result.map_report["n_verified"]:
        assert "map_surrogate_mae_brevity" in result.metrics


def test_run_refuses_expert_from_another_base(project, tiny_policy_dir, tmp_path):
    root = tmp_path / "mixed"
    shutil.copytree(project / "data", root / "data")
    write_random_expert(tiny_policy_dir, root / "artifacts/adapters/expert-brevity", seed=1, objective="brevity")
    write_random_expert(tiny_policy_dir, root / "artifacts/adapters/expert-verbosity", seed=2,
                        objective="verbosity", base_fingerprint="aaaaaaaaaaaaaaaa")
    with pytest.raises(ValueError, match="expert-verbosity was trained on base fingerprint aaaaaaaaaaaaaaaa"):
        front.run(tiny_params(tiny_policy_dir), root, scorer=tiny_scorer, progress=False)


def test_generate_with_weights(project, tiny_policy_dir):
    params = tiny_params(tiny_policy_dir)
    answer = front.generate_with_weights(params, [1.0, 0.0], "Write a short poem about the sea.", project,
                                         max_new_tokens=5)
    assert isinstance(answer, str)
    again = front.generate_with_weights(params, [1.0, 0.0], "Write a short poem about the sea.", project,
                                        max_new_tokens=5)
    assert answer == again  # greedy, seeded
    with pytest.raises(ValueError, match="weights must sum to 1"):
        front.generate_with_weights(params, [0.7, 0.7], "hi", project)
    with pytest.raises(ValueError, match="got 3 weights"):
        front.generate_with_weights(params, [0.5, 0.25, 0.25], "hi", project)


def test_cli_front_and_generate_with_real_judges(project, tiny_policy_dir, tmp_path, capsys):
    pytest.importorskip("paretoflow.judges")
    import yaml

    from paretoflow.cli import main

    params = tiny_params(tiny_policy_dir, include_adapters=False)
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    assert main(["--params", str(params_path), "front", "--root", str(project), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "hypervolume" in out and "merge-0.50-0.50" in out and "vs base" in out
    assert main(["--params", str(params_path), "generate", "--weights", "0.5,0.5", "--root", str(project),
                 "--max-new-tokens", "4", "Give me three tips"]) == 0
    assert main(["--params", str(params_path), "generate", "--weights", "2,-1", "--root", str(project), "x"]) == 2
    assert "non-negative" in capsys.readouterr().err
