"""The stage registry is the one declaration: dvc.yaml, the diagram and cache keys follow it."""

from pathlib import Path

import yaml

from paretoflow import pipeline as stages
from paretoflow.stages import base
from paretoflow.config import Params, load_params
from paretoflow.commands.stages import generated_files
from tests.conftest import REPO_ROOT


def _params() -> Params:
    return load_params(REPO_ROOT / "params.yaml")


def test_dvc_yaml_and_architecture_diagram_match_the_registry():
    for path, text in generated_files(_params(), REPO_ROOT).items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run `paretoflow stages --write`"


def test_dvc_yaml_deps_are_real_imports_and_outs_real_outputs():
    params = _params()
    dvc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    assert set(dvc) == {s.name for s in stages.STAGES.values() if s.dvc}
    for name, entry in dvc.items():
        s = stages.stage(name)
        code = [d for d in entry["deps"] if d.startswith("paretoflow/")]
        assert code == s.code_files()
        assert all((REPO_ROOT / c).is_file() for c in code)
        assert entry["outs"] == s.outputs(params)
        assert entry["params"] == list(s.sections)
        # every data dep is a raw input or another stage's output, produced earlier
        for dep in entry["deps"]:
            if dep.startswith("paretoflow/"):
                continue
            producer = stages.producer_of(params, dep)
            if producer is not None:
                assert stages.ORDER.index(producer) < stages.ORDER.index(name), (name, dep, producer)


def test_import_closure_follows_lazy_imports():
    # front scores with the reward model through a lazy import inside a function
    assert "paretoflow/reward/model.py" in stages.stage("front").code_files()
    assert "paretoflow/reward/model.py" in stages.stage("reward").code_files()
    # the pairs stage judges its samples with the reward model (the reward_model judge)
    assert "paretoflow/reward/model.py" in stages.stage("pairs").code_files()
    assert "paretoflow/reward/model.py" not in stages.stage("curate").code_files()
    assert "paretoflow/merging/exact.py" in stages.stage("front").code_files()   # methods by name, seen


def test_editing_the_reward_model_changes_reward_and_front_code_hashes(monkeypatch, tmp_path):
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "paretoflow", copy / "paretoflow", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(base, "LIBRARY_ROOT", copy)
    base.import_closure.cache_clear()
    before = {name: stages.stage(name).code_hash() for name in stages.ORDER}

    def edited(rel: str) -> dict[str, str]:
        with (copy / rel).open("a") as fh:
            fh.write("\n# an edit\n")
        base.import_closure.cache_clear()
        return {name: stages.stage(name).code_hash() for name in stages.ORDER}

    try:
        after = edited("paretoflow/reward/model.py")
        assert after["reward"] != before["reward"] and after["front"] != before["front"]
        assert after["curate"] == before["curate"]
        # the front stage's own module (its config) reruns front (and promote, which reads
        # front.json), nothing upstream
        again = edited("paretoflow/stages/front.py")
        assert {n for n in stages.ORDER if again[n] != after[n]} == {"front"}
        # Params (config.py) is imported by stages for type hints only: no stage reruns
        assert edited("paretoflow/config.py") == again
    finally:
        base.import_closure.cache_clear()


def test_import_closure_skips_type_checking_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "paretoflow"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from paretoflow import b\n"
                              "else:\n    from paretoflow import c\ndef f():\n    from paretoflow import d\n")
    for name in "bcd":
        (pkg / f"{name}.py").write_text("")
    monkeypatch.setattr(base, "LIBRARY_ROOT", tmp_path)
    base.import_closure.cache_clear()
    try:
        assert base.import_closure(("paretoflow.a",)) == {
            "paretoflow/__init__.py", "paretoflow/a.py", "paretoflow/c.py", "paretoflow/d.py"}
    finally:
        base.import_closure.cache_clear()


def test_each_artifact_path_is_declared_once():
    # one path per artifact: no two params fields default to the same folder or file
    def leaves(value, prefix=""):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from leaves(v, f"{prefix}.{k}" if prefix else k)
        elif isinstance(value, str) and "/" in value:
            yield prefix, value

    dumped = _params().model_dump(mode="json", by_alias=True)
    dumped["curate"].pop("sources")  # raw inputs may repeat (a file under a folder source)
    seen: dict[str, str] = {}
    for key, value in leaves(dumped):
        assert value not in seen, f"{value} declared twice: {seen.get(value)} and {key}"
        seen[value] = key


def test_jobs_of_align_name_their_adapters():
    params = _params()
    s = stages.stage("align")
    jobs = s.job_list(params)
    assert jobs[: len(params.objective_names)] == [{"objective": o} for o in params.objective_names]
    names = [s.name_of(j) for j in jobs]
    assert len(set(names)) == len(names)
    assert s.outputs_for(params, jobs[0]) == [f"{params.align.out_dir}/{names[0]}"]
    assert stages.stage("front").outputs_for(params, None) == [params.front.out_dir]


def test_write_paths_must_stay_inside_the_project():
    import pytest

    for bad in ("", ".", "../elsewhere", "/etc/x", "data/../../x"):
        with pytest.raises(ValueError, match="inside the project root"):
            load_params(REPO_ROOT / "params.yaml", {"validate": {"docs_dir": bad}})
    assert Path(load_params(REPO_ROOT / "params.yaml", {"front": {"out_dir": "a/b"}}).front.out_dir) == Path("a/b")
