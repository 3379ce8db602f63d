"""DVC pipeline: dvc.yaml matches the code and params; the helpers in paretoflow.dvc; and
(integration, ~40 s of dvc CLI calls) a real `dvc repro` / push / pull round trip in a
throwaway git repository holding a minimal copy of the project."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from paretoflow import dvc, schema
from paretoflow.config import Params

REPO_ROOT = Path(__file__).resolve().parents[1]
DVC_YAML = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())


# ---------------------------------------------------------------------------------------
# dvc.yaml consistency (fast)


def _key_exists(dumped: dict, dotted: str) -> bool:
    node = dumped
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_dvc_yaml_params_deps_and_outs_match_the_project(params: Params):
    dumped = params.model_dump(mode="json", by_alias=True)
    curated = Path(params.curate.out_dir)
    # A dependency is either a source file in the repo or another stage's output.
    produced = {out for stage in DVC_YAML["stages"].values() for out in stage["outs"]}
    for name, stage in DVC_YAML["stages"].items():
        for key in stage["params"]:
            assert _key_exists(dumped, key), f"stage {name}: params key {key!r} not in params.yaml"
        for dep in stage["deps"]:
            if dep not in produced:
                assert (REPO_ROOT / dep).exists(), f"stage {name}: dependency {dep} missing"
    curate_outs = set(DVC_YAML["stages"]["curate"]["outs"])
    tables = [*schema.TABLES, "quarantine"]
    assert curate_outs == {str(curated / f"{t}.parquet") for t in tables} | {str(curated / "report.json")}
    # validate reads exactly what curate writes, and owns the docs and the report.
    assert set(DVC_YAML["stages"]["validate"]["deps"]) >= {str(curated / f"{t}.parquet") for t in tables}
    docs = Path(params.validate_.docs_dir)
    assert set(DVC_YAML["stages"]["validate"]["outs"]) == {str(docs), str(docs.parent / "validation.json")}


def test_every_curate_module_is_a_dependency():
    deps = set(DVC_YAML["stages"]["curate"]["deps"])
    imported = {"paretoflow/data/curate.py", "paretoflow/data/curate_rows.py", "paretoflow/data/spill.py",
                "paretoflow/data/importers.py", "paretoflow/data/normalize.py", "paretoflow/data/dedup.py",
                "paretoflow/schema.py"}
    source = "".join((REPO_ROOT / f"paretoflow/data/{name}.py").read_text() for name in ("curate", "curate_rows"))
    for module in ("importers", "normalize", "dedup", "curate_rows", "spill"):
        assert f"paretoflow.data.{module}" in source  # the list above is what curate (and its row maker) import
    assert imported <= deps


# ---------------------------------------------------------------------------------------
# Helpers without the dvc CLI (fast)

LOCK = """\
schema: '2.0'
stages:
  curate:
    cmd: paretoflow curate
    outs:
    - path: data/curated/prompts.parquet
      hash: md5
      md5: 0123456789abcdef0123456789abcdef
      size: 10
    - path: data/curated/pairs.parquet
      hash: md5
      md5: fedcba9876543210fedcba9876543210
      size: 12
  validate:
    cmd: paretoflow validate
    outs:
    - path: data/curated/data_docs
      hash: md5
      md5: 11111111111111111111111111111111.dir
      size: 100
      nfiles: 4
"""


def test_data_hash_reads_dvc_lock(tmp_path):
    (tmp_path / "dvc.lock").write_text(LOCK)
    assert dvc.data_hash(tmp_path, "data/curated/prompts.parquet") == "0123456789abcdef0123456789abcdef"
    assert dvc.data_hash(tmp_path, "data/curated/data_docs/") == "11111111111111111111111111111111.dir"
    both = dvc.data_hash(tmp_path, ["data/curated/pairs.parquet", "data/curated/prompts.parquet"])
    expected = hashlib.sha256(
        b"data/curated/pairs.parquet fedcba9876543210fedcba9876543210\n"
        b"data/curated/prompts.parquet 0123456789abcdef0123456789abcdef"
    ).hexdigest()[:32]
    assert both == expected
    assert dvc.data_hash(tmp_path, ["data/curated/prompts.parquet", "data/curated/pairs.parquet"]) == both
    with pytest.raises(KeyError, match="ratings.parquet"):
        dvc.data_hash(tmp_path, "data/curated/ratings.parquet")


def test_helpers_refuse_missing_lock_and_non_dvc_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="dvc.lock"):
        dvc.data_hash(tmp_path, "x")
    with pytest.raises(FileNotFoundError, match="not a DVC repository"):
        dvc.repro(tmp_path)


# ---------------------------------------------------------------------------------------
# Real dvc repro / push / pull (integration)

# Diverse filler from the built-in set (pairwise 3-shingle Jaccard < 0.4, data/raw/README.md),
# so only the planted pair below reacts to the near-duplicate threshold.
BUILTIN = REPO_ROOT / "data/raw/prompts"
TRAIN = [json.loads(line)["prompt"] for line in (BUILTIN / "train.jsonl").read_text().splitlines()[:80]]
# Word 3-shingle Jaccard between these two is between 0.5 and 0.8 (checked below): kept
# at near_dup_threshold 0.8, merged at 0.5.
NEAR_A = "Please give me a simple recipe for a quick vegetable curry that I can cook on a busy weeknight with plain rice"
NEAR_B = "Please give me a simple recipe for a quick vegetable curry that I can make on a busy weeknight with brown rice"
EVAL = [json.loads(line)["prompt"] for line in (BUILTIN / "eval.jsonl").read_text().splitlines()[:10]]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _write_params(root: Path, **sections: dict) -> None:
    raw = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in sections.items():
        raw[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def _outputs(root: Path) -> dict[str, bytes]:
    """Every file of every stage output, path → bytes."""
    files = {}
    for stage in DVC_YAML["stages"].values():
        for out in stage["outs"]:
            path = root / out
            for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
                if f.is_file():
                    files[str(f.relative_to(root))] = f.read_bytes()
    return files


@pytest.fixture
def project(tmp_path) -> Path:
    """A git + DVC repository with params.yaml, dvc.yaml, the stages' code deps and a small
    data/raw: the minimal project dvc repro needs."""
    root = tmp_path / "project"
    root.mkdir()
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "test@paretoflow")
    _git(root, "config", "user.name", "test")
    for name in ("params.yaml", ".gitignore"):
        shutil.copy(REPO_ROOT / name, root / name)
    builtin = [s for s in yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["curate"]["sources"]
               if s["path"].startswith("data/raw/prompts/")]  # the project ships no human data
    _write_params(root, curate={"sources": builtin},
                  validate={"min_prompts_per_split": 1, "min_pairs_per_objective_split": 0},
                  dvc={"remote_url": str(tmp_path / "remote")})
    # The data stages only (the model stages need the real policy), declared by the stage
    # registry from this project's params, as `paretoflow stages --write` would.
    from paretoflow.config import load_params
    from paretoflow.pipeline import dvc_stages

    data_stages = {k: v for k, v in dvc_stages(load_params(root / "params.yaml")).items()
                   if k in ("curate", "validate")}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": data_stages}, sort_keys=False))
    for stage in data_stages.values():
        for dep in stage["deps"]:
            if dep.startswith("paretoflow/"):
                (root / dep).parent.mkdir(parents=True, exist_ok=True)
                if (REPO_ROOT / dep).is_dir():
                    shutil.copytree(REPO_ROOT / dep, root / dep, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(REPO_ROOT / dep, root / dep)
    prompts = root / "data/raw/prompts"
    prompts.mkdir(parents=True)
    train_rows = [{"prompt": p, "tags": ["category:test"]} for p in [*TRAIN, NEAR_A, NEAR_B]]
    (prompts / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train_rows))
    (prompts / "eval.jsonl").write_text("".join(json.dumps({"prompt": p, "tags": []}) + "\n" for p in EVAL))
    subprocess.run([str(dvc.dvc_executable()), "init", "-q"], cwd=root, check=True)
    dvc.run_dvc(root, "config", "core.autostage", "true")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "minimal project")
    return root


@pytest.mark.integration
def test_repro_is_incremental_and_push_pull_restores_outputs(project, tmp_path):
    from paretoflow.config import load_params
    from paretoflow.data.dedup import jaccard, shingles

    similarity = jaccard(shingles(NEAR_A, 3), shingles(NEAR_B, 3))
    assert 0.5 < similarity < 0.8, similarity

    params = load_params(project / "params.yaml")
    assert dvc.ensure_remote(params, project) is True
    assert dvc.ensure_remote(params, project) is False

    log = dvc.repro(project)
    assert "Running stage 'curate'" in log and "Running stage 'validate'" in log
    lock = (project / "dvc.lock").read_bytes()
    assert json.loads((project / "data/curated/report.json").read_text())["reasons"] == {}
    prompts_hash = dvc.data_hash(project, "data/curated/prompts.parquet")
    # DVC's md5 of a file output is the md5 of its bytes.
    assert prompts_hash == hashlib.md5((project / "data/curated/prompts.parquet").read_bytes()).hexdigest()

    # Nothing changed: nothing reruns, dvc.lock is byte-identical.
    log = dvc.repro(project)
    assert "Stage 'curate' didn't change" in log and "Stage 'validate' didn't change" in log
    assert "Running stage" not in log
    assert (project / "dvc.lock").read_bytes() == lock

    # A curation key: curate reruns, its output changes (one near-duplicate merged), so
    # validate reruns too.
    _write_params(project, curate={"near_dup_threshold": 0.5})
    log = dvc.repro(project)
    assert "Running stage 'curate'" in log and "Running stage 'validate'" in log
    assert dvc.data_hash(project, "data/curated/prompts.parquet") != prompts_hash
    assert json.loads((project / "data/curated/report.json").read_text())["reasons"] == {"near_duplicate": 1}
    curate_lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["curate"]

    # A validate-only key: only validate reruns; curate's lock entry is untouched.
    _write_params(project, validate={"min_prompts_per_split": 2})
    log = dvc.repro(project)
    assert "Stage 'curate' didn't change" in log and "Running stage 'validate'" in log
    assert yaml.safe_load((project / "dvc.lock").read_text())["stages"]["curate"] == curate_lock

    # Push, clone the git repo elsewhere, pull: every output comes back byte-identical.
    dvc.push(project)
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "pipeline outputs")
    before = _outputs(project)
    assert len(before) > 8 and any("data_docs" in p for p in before)
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(project), str(clone))
    assert not (clone / "data/curated").exists()
    dvc.pull(clone)
    assert _outputs(clone) == before
    assert "up to date" in dvc.status(clone).lower() or not dvc.status(clone).strip()


def test_remote_check_reads_what_the_dvc_cli_wrote(tmp_path):
    """`ensure_remote` skips its two `dvc` processes only when the repository's config
    already makes the remote the default at the wanted url (as DVC itself would read it)."""
    root = tmp_path / "repo"
    dvc.init(root)
    wanted = str((tmp_path / "dvc-remote").resolve())   # `dvc remote add` resolves from its cwd, the root
    assert not dvc._configured(root, "local", wanted)                     # nothing configured yet
    dvc.run_dvc(root, "remote", "add", "--default", "local", "../dvc-remote")   # stored relative to .dvc/
    assert dvc._configured(root, "local", wanted)
    assert not dvc._configured(root, "other", wanted)
    assert not dvc._configured(root, "local", str(tmp_path / "elsewhere"))
    dvc.run_dvc(root, "remote", "add", "other", str(tmp_path / "elsewhere"))
    dvc.run_dvc(root, "remote", "default", "--local", "other")            # config.local overrides
    assert not dvc._configured(root, "local", wanted)
    assert dvc._configured(root, "other", str(tmp_path / "elsewhere"))
    (root / ".dvc" / "config").write_text("[core\n")                      # unreadable: the CLI decides
    assert not dvc._configured(root, "local", wanted)
