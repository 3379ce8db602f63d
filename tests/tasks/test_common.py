"""Cache keys for cross-process resume, and cache entries valid only for their own outputs."""

from pathlib import Path

from paretoflow.config import load_params
from tasks.common import cache_valid, outputs_hash, stage_cache_key, write_manifest
from tests.conftest import REPO_ROOT

JOB = {"objective": "helpfulness"}


def _project(tmp_path):
    (tmp_path / "data/pairs").mkdir(parents=True)
    (tmp_path / "data/pairs/pairs.parquet").write_bytes(b"v1")
    return tmp_path


def test_key_tracks_inputs_params_and_root_but_not_unrelated_sections(tmp_path):
    params = load_params(REPO_ROOT / "params.yaml")
    root = _project(tmp_path / "a")
    key = stage_cache_key("align", params, root, JOB)
    assert key == stage_cache_key("align", params, root, JOB)
    assert key != stage_cache_key("align", params, root, {"objective": "conciseness"})
    # a front-only change does not touch the align key; an align change does
    front_changed = load_params(REPO_ROOT / "params.yaml", {"front": {"n_boot": 17}})
    assert stage_cache_key("align", front_changed, root, JOB) == key
    align_changed = load_params(REPO_ROOT / "params.yaml", {"align": {"seed": 5}})
    assert stage_cache_key("align", align_changed, root, JOB) != key
    # new input data → new key; another project root → new key
    (root / "data/pairs/pairs.parquet").write_bytes(b"v2")
    assert stage_cache_key("align", params, root, JOB) != key
    other = _project(tmp_path / "b")
    assert stage_cache_key("align", params, other, JOB) != key


def _write_adapter(root: Path, content: bytes) -> None:
    folder = root / "artifacts/adapters/expert-helpfulness"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_model.safetensors").write_bytes(content)
    (folder / "meta.json").write_text("{}")


def test_cache_entry_is_valid_only_for_the_outputs_it_wrote(tmp_path):
    params = load_params(REPO_ROOT / "params.yaml")
    root = _project(tmp_path)
    assert not cache_valid("align", params, root, JOB)            # nothing ran yet
    _write_adapter(root, b"trained under params A")
    key_a = stage_cache_key("align", params, root, JOB)
    write_manifest("align", params, root, key_a, JOB)
    assert cache_valid("align", params, root, JOB)

    # another run (other params) overwrote the fixed output path, then params go back to A:
    # the key matches the manifest but the files are not the ones it describes → recompute
    _write_adapter(root, b"trained under params B")
    assert stage_cache_key("align", params, root, JOB) == key_a
    assert not cache_valid("align", params, root, JOB)

    # a manifest of another key does not validate these outputs either
    _write_adapter(root, b"trained under params A")
    assert cache_valid("align", params, root, JOB)
    changed = load_params(REPO_ROOT / "params.yaml", {"align": {"seed": 5}})
    assert not cache_valid("align", changed, root, JOB)


def test_missing_or_partial_outputs_are_never_valid(tmp_path):
    params = load_params(REPO_ROOT / "params.yaml")
    root = _project(tmp_path)
    _write_adapter(root, b"x")
    write_manifest("align", params, root, stage_cache_key("align", params, root, JOB), JOB)
    (root / "artifacts/adapters/expert-helpfulness/meta.json").unlink()   # a killed run's leftovers
    assert not cache_valid("align", params, root, JOB)
    assert outputs_hash("front", params, root) is None
