"""Cache keys for cross-process resume, and cache entries valid only for their own outputs."""

from pathlib import Path

from paretoflow.config import load_params
from tasks.common import cache_valid, outputs_hash, stage_cache_key, write_manifest
from tests.conftest import REPO_ROOT

JOB = {"objective": "helpfulness"}


def _params(overrides: dict | None = None, policy: str = "example-org/some-model"):
    """params.yaml with a policy named by a hub id (its fingerprint hashes the name: no
    model is materialized for a key); `policy` may name a local folder instead."""
    return load_params(REPO_ROOT / "params.yaml", {"model": {"policy": policy}, **(overrides or {})})


def _project(tmp_path):
    (tmp_path / "data/pairs").mkdir(parents=True)
    (tmp_path / "data/pairs/pairs.parquet").write_bytes(b"v1")
    return tmp_path


def test_key_tracks_inputs_params_and_root_but_not_unrelated_sections(tmp_path):
    params = _params()
    root = _project(tmp_path / "a")
    key = stage_cache_key("align", params, root, JOB)
    assert key == stage_cache_key("align", params, root, JOB)
    assert key != stage_cache_key("align", params, root, {"objective": "conciseness"})
    # a front-only change does not touch the align key; an align change does
    front_changed = _params({"front": {"n_boot": 17}})
    assert stage_cache_key("align", front_changed, root, JOB) == key
    align_changed = _params({"align": {"seed": 5}})
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
    params = _params()
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
    changed = _params({"align": {"seed": 5}})
    assert not cache_valid("align", changed, root, JOB)


def test_missing_or_partial_outputs_are_never_valid(tmp_path):
    params = _params()
    root = _project(tmp_path)
    _write_adapter(root, b"x")
    write_manifest("align", params, root, stage_cache_key("align", params, root, JOB), JOB)
    (root / "artifacts/adapters/expert-helpfulness/meta.json").unlink()   # a killed run's leftovers
    assert not cache_valid("align", params, root, JOB)
    assert outputs_hash("front", params, root) is None


def _policy_folder(policy: Path) -> Path:
    """A local policy folder (config + weights) whose fingerprint hashes its content."""
    policy.mkdir()
    (policy / "config.json").write_text("{}")
    (policy / "model.safetensors").write_bytes(b"weights" * 1000)
    return policy


def test_key_sees_the_policy_weights_by_content(tmp_path):
    root = _project(tmp_path / "project")
    policy = _policy_folder(tmp_path / "policy")
    params = _params(policy=str(policy))
    key = stage_cache_key("align", params, root, JOB)
    assert stage_cache_key("curate", params, root) == stage_cache_key("curate", _params(), root)  # reads no policy
    with (policy / "model.safetensors").open("r+b") as fh:   # overwritten in place, same size
        fh.seek(3000)
        fh.write(b"EDITED")
    assert stage_cache_key("align", params, root, JOB) != key


def test_reward_reads_the_policy_only_with_the_policy_backbone(tmp_path):
    """cpu profile (MiniLM features): the reward key ignores the policy, so the flow can train
    it before the policy is ready; the policy backbone's key sees the weights."""
    from paretoflow.pipeline import stage

    root = _project(tmp_path / "project")
    policy = _policy_folder(tmp_path / "policy")
    minilm = _params(policy=str(policy))
    on_policy = _params({"reward": {"cpu": {"backbone": "policy"}}}, policy=str(policy))
    assert not stage("reward").policy_read(minilm) and stage("reward").policy_read(on_policy)
    keys = stage_cache_key("reward", minilm, root), stage_cache_key("reward", on_policy, root)
    (policy / "model.safetensors").write_bytes(b"retrained" * 1000)
    assert stage_cache_key("reward", minilm, root) == keys[0]
    assert stage_cache_key("reward", on_policy, root) != keys[1]


def test_key_sees_whether_auto_precisions_resolve_to_bf16(tmp_path, monkeypatch):
    """"auto" (encoder, align autocast) is bf16 on a CPU with bf16 instructions, float32
    elsewhere: a cache made on one is not served on the other; curate reads no model."""
    import tasks.common

    root, params = _project(tmp_path), _params()
    monkeypatch.setattr(tasks.common, "native_bf16", lambda: True)
    with_bf16 = stage_cache_key("front", params, root), stage_cache_key("curate", params, root)
    monkeypatch.setattr(tasks.common, "native_bf16", lambda: False)
    assert stage_cache_key("front", params, root) != with_bf16[0]
    assert stage_cache_key("curate", params, root) == with_bf16[1]


def _fake_run(params, root: Path) -> list[tuple[str, dict]]:
    """Every cached stage (job) 'ran': its outputs on disk and its manifest written."""
    from paretoflow.pipeline import ORDER, stage

    for source in params.curate.sources:
        (root / source.path).parent.mkdir(parents=True, exist_ok=True)
        (root / source.path).write_text(source.path)
    done = []
    for name in ORDER:
        s = stage(name)
        if not s.cached:
            continue
        for job in s.job_list(params):
            for out in s.outputs_for(params, job):
                path = root / out
                target = path / "output.bin" if not Path(out).suffix else path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(f"{name} {job}")
            write_manifest(name, params, root, stage_cache_key(name, params, root, job), job)
            done.append((name, job))
    return done


def test_editing_only_the_front_section_reruns_only_front_and_promote(tmp_path):
    from paretoflow.pipeline import STAGES

    params = _params()
    done = _fake_run(params, tmp_path)
    assert all(cache_valid(name, params, tmp_path, job) for name, job in done)
    edited = _params({"front": {"n_boot": 500, "cpu": {"max_new_tokens": 48}}})
    rerun = {name for name, job in done if not cache_valid(name, edited, tmp_path, job)}
    always = {name for name, s in STAGES.items() if not s.cached}   # validate, promote: every run
    assert rerun == {"front"} and always == {"validate", "promote"}
    # an edit of the pairs section reruns pairs and the stage that reads it (align trains on
    # its pairs); front follows through its inputs once align rewrites the adapters
    edited = _params({"pairs": {"min_margin": 0.1}})
    assert {name for name, job in done if not cache_valid(name, edited, tmp_path, job)} == {"pairs", "align"}
