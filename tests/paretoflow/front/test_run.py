"""front.run end to end on the tiny model with two tiny experts (plus a MODPO adapter)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from paretoflow import front
from paretoflow.pareto import hypervolume, non_dominated_mask
from tests.paretoflow.front.front_fixtures import make_project, tiny_params, tiny_scorer
from tests.paretoflow.front.lora_fixtures import write_random_expert


@pytest.fixture(scope="module")
def project(tiny_policy_dir, tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("front_project"), tiny_policy_dir)


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
    assert result.n_non_dominated >= 1 and result.metrics["hypervolume"] == document["hypervolume"]
    for candidate in document["candidates"]:
        for name, (low, high) in candidate["intervals"].items():
            assert low <= candidate["objectives"][name] <= high
    merge = next(r for r in result.records if r.name == "merge-1.00-0.00")
    assert merge.coefficients == {"expert-brevity": 1.0, "expert-verbosity": 0.0}
    assert merge.weights == {"brevity": 1.0, "verbosity": 0.0}
    assert next(r for r in result.records if r.kind == "adapter").weights == {"brevity": 0.5, "verbosity": 0.5}
    table = pd.read_parquet(result.candidates_parquet)
    assert len(table) == 5 and set(table["non_dominated"]) <= {True, False}
    assert result.front_png.stat().st_size > 1000
    assert "coef_expert-brevity" in merge.mlflow_params() and "brevity_ci_low" in merge.mlflow_metrics()

    # Second run: every generation comes from the cache, same numbers.
    again = front.run(params, project, scorer=tiny_scorer, progress=False)
    assert all(r.cached for r in again.records)
    assert [r.objectives for r in again.records] == [r.objectives for r in result.records]


def test_adapter_candidate_equals_merge_with_weight_one(project, tiny_policy_dir, tmp_path):
    """A trained adapter evaluated alone answers exactly like the merge putting weight 1 on it."""
    root = tmp_path / "copy"
    shutil.copytree(project / "data", root / "data")
    shutil.copytree(project / "artifacts" / "adapters" / "expert-brevity", root / "artifacts/adapters/expert-brevity")
    shutil.copytree(project / "artifacts" / "adapters" / "expert-verbosity", root / "artifacts/adapters/expert-verbosity")
    shutil.copytree(project / "artifacts" / "adapters" / "expert-brevity", root / "artifacts/adapters/modpo-1-0")
    meta = json.loads((root / "artifacts/adapters/modpo-1-0/meta.json").read_text())
    meta["objective_weights"] = [1.0, 0.0]
    (root / "artifacts/adapters/modpo-1-0/meta.json").write_text(json.dumps(meta))
    result = front.run(tiny_params(tiny_policy_dir, include_base=False), root, scorer=tiny_scorer, progress=False)
    by_name = {r.name: r for r in result.records}
    assert by_name["modpo-1-0"].objectives == by_name["merge-1.00-0.00"].objectives
    assert by_name["modpo-1-0"].objectives != by_name["merge-0.00-1.00"].objectives


def test_map_front_reports_surrogate_error(project, tiny_policy_dir):
    params = tiny_params(tiny_policy_dir, method="map", map_n_verify=1, map_dense_step=0.1,
                         include_adapters=False, include_base=False)
    result = front.run(params, project, scorer=tiny_scorer, progress=False)
    sources = [r.source for r in result.records]
    assert sources.count("map-design") == 3  # {2,2} lattice: two vertices and the midpoint
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
    assert "hypervolume" in out and "merge-0.50-0.50" in out
    assert main(["--params", str(params_path), "generate", "--weights", "0.5,0.5", "--root", str(project),
                 "--max-new-tokens", "4", "Give me three tips"]) == 0
    assert main(["--params", str(params_path), "generate", "--weights", "2,-1", "--root", str(project), "x"]) == 2
    assert "non-negative" in capsys.readouterr().err
