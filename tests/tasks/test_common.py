"""Cache keys for cross-process resume."""

from pathlib import Path

from paretoflow.config import load_params
from tasks.common import code_hash, outputs_present, stage_cache_key
from tests.conftest import REPO_ROOT


def _project(tmp_path):
    (tmp_path / "data/pairs").mkdir(parents=True)
    (tmp_path / "data/pairs/pairs.parquet").write_bytes(b"v1")
    return tmp_path


def test_key_tracks_inputs_params_and_root_but_not_unrelated_sections(tmp_path):
    params = load_params(REPO_ROOT / "params.yaml")
    root = _project(tmp_path / "a")
    key = stage_cache_key("align", params, root, adapter="expert-helpfulness")
    assert key == stage_cache_key("align", params, root, adapter="expert-helpfulness")
    assert key != stage_cache_key("align", params, root, adapter="expert-conciseness")
    # a front-only change does not touch the align key; an align change does
    front_changed = load_params(REPO_ROOT / "params.yaml", {"front": {"n_boot": 17}})
    assert stage_cache_key("align", front_changed, root, adapter="expert-helpfulness") == key
    align_changed = load_params(REPO_ROOT / "params.yaml", {"align": {"seed": 5}})
    assert stage_cache_key("align", align_changed, root, adapter="expert-helpfulness") != key
    # new input data → new key; another project root → new key
    (root / "data/pairs/pairs.parquet").write_bytes(b"v2")
    assert stage_cache_key("align", params, root, adapter="expert-helpfulness") != key
    other = _project(tmp_path / "b")
    assert stage_cache_key("align", params, other, adapter="expert-helpfulness") != key


def test_code_hash_is_per_stage():
    assert code_hash("align") == code_hash("align")
    assert len({code_hash(s) for s in ("curate", "pairs", "reward", "align", "front")}) == 5


def test_outputs_present(tmp_path):
    params = load_params(REPO_ROOT / "params.yaml")
    assert not outputs_present(params, tmp_path, "pairs")
    (tmp_path / "data/pairs").mkdir(parents=True)
    for name in ("pairs.parquet", "ratings.parquet"):
        (tmp_path / "data/pairs" / name).write_bytes(b"x")
    assert outputs_present(params, Path(tmp_path), "pairs")
