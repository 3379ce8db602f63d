"""One MiniLM vector per text, shared by the reward features and the judges (real
all-MiniLM-L6-v2 from its wheel; a few short texts, ~4 s with the import)."""

import numpy as np
import pytest

from paretoflow.embeddings import EmbeddingStore, open_store, sentence_encoder, text_key

PROMPT = "How do I bake bread at home?"
ANSWER = "Mix flour, water, yeast and salt, knead the dough, let it rise, then bake it at 220 C."


@pytest.fixture(scope="module")
def encoder():
    return sentence_encoder(dtype="float32")


def test_auto_precision_follows_the_cpu(monkeypatch):
    """auto: bf16 only where the CPU multiplies bf16 in hardware; the two are separate
    encoders with separate stores; an unknown setting is refused."""
    from paretoflow import cpu, embeddings

    monkeypatch.setattr(cpu, "native_bf16", lambda: True)
    assert embeddings.resolve_dtype("auto") == "bfloat16"
    monkeypatch.setattr(cpu, "native_bf16", lambda: False)
    assert embeddings.resolve_dtype("auto") == "float32"
    assert embeddings.resolve_dtype("bfloat16") == "bfloat16"
    with pytest.raises(ValueError, match="encoder dtype"):
        embeddings.resolve_dtype("fp16")
    fp32, bf16 = sentence_encoder(dtype="float32"), sentence_encoder(dtype="bfloat16")
    assert fp32 is not bf16 and bf16.namespace == fp32.namespace + "-bf16"


def test_cpu_flags_are_read_from_cpuinfo(monkeypatch, tmp_path):
    from paretoflow import cpu

    def flags(text):
        info = tmp_path / "cpuinfo"
        info.write_text(text)
        monkeypatch.setattr(cpu, "CPUINFO", str(info))
        cpu.native_bf16.cache_clear()
        try:
            return cpu.native_bf16()
        finally:
            monkeypatch.undo()
            cpu.native_bf16.cache_clear()

    assert flags("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n") is True
    assert flags("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw\n") is False
    assert flags("processor\t: 0\nflags\t\t: fpu amx_bf16 amx_tile\n") is True
    monkeypatch.setattr(cpu, "CPUINFO", str(tmp_path / "absent"))
    cpu.native_bf16.cache_clear()
    assert cpu.native_bf16() is False
    monkeypatch.undo()
    cpu.native_bf16.cache_clear()


def test_bf16_vectors_are_unit_and_within_rounding_of_float32(encoder):
    """The bf16 pass (autocast) renormalised in float32: unit vectors whose cosine to the
    float32 ones is >= 0.999 (measured >= 0.99994 on 512 answers, embeddings.py), and the
    ranking of an on-topic against an off-topic answer is kept."""
    bf16 = sentence_encoder(dtype="bfloat16")
    texts = [PROMPT, ANSWER, "The stock market closed higher on Tuesday.", " ".join(["word"] * 300)]
    pieces = [encoder.piece(t) for t in texts]
    exact, low = encoder.encode(pieces), bf16.encode(pieces)
    assert low.dtype == np.float32 and low.shape == exact.shape
    assert np.allclose(np.linalg.norm(low, axis=1), 1.0, atol=1e-6)
    cosine = np.sum(exact * low, axis=1)
    assert cosine.min() >= 0.999 and not np.array_equal(low, exact)
    assert (low[0] @ low[1] > low[0] @ low[2]) and (exact[0] @ exact[1] > exact[0] @ exact[2])


def test_a_long_text_is_read_as_its_first_window(encoder):
    """The piece a text is keyed and encoded by is what MiniLM reads of the whole text:
    its first 254 word pieces, so both embed alike (sentence-transformers truncates)."""
    text = " ".join(f"grain{i} of wheat" for i in range(200))
    piece = encoder.piece(text)
    assert text.startswith(piece) and len(piece) < len(text)
    assert len(encoder.tokenizer(piece, add_special_tokens=False)["input_ids"]) == encoder.max_length - 2
    assert encoder.piece(ANSWER) == ANSWER
    whole = encoder.model.encode([text], normalize_embeddings=True, convert_to_numpy=True)[0]
    assert np.allclose(encoder.encode([piece])[0], whole, atol=1e-5)


def test_judges_and_reward_features_share_the_store(tmp_path, params):
    """The answer gate writes the vectors of prompt and answer; the reward model's MiniLM
    features of the same (one-turn) prompt and answer then encode nothing."""
    from paretoflow.config import JudgeRef
    from paretoflow.judges import JudgeContext, build_judge
    from paretoflow.judges import relevance
    from paretoflow.reward.features import BackboneSpec, MiniLMBackbone, extract_features

    relevance._MEMO.clear()
    encoder = sentence_encoder(dtype=params.model.encoder_dtype)  # the run's ("auto": by CPU)
    run_params = params.model_copy(update={"reward": params.reward.model_copy(update={"feature_cache_dir": "vectors"})})
    gate = build_judge(JudgeRef(name="answer"), JudgeContext(root=tmp_path, params=run_params))
    gate.score([PROMPT], [ANSWER], [[]])
    store = EmbeddingStore(tmp_path / "vectors" / encoder.namespace)
    keys = store.get([text_key(PROMPT), text_key(ANSWER)])
    assert all(k is not None for k in keys)
    stored = len(store)

    backbone = MiniLMBackbone(BackboneSpec(kind="minilm"))
    assert backbone.namespace == encoder.namespace and backbone.encoder is encoder
    features = extract_features(backbone, [PROMPT], [ANSWER], cache_dir=tmp_path / "vectors", progress=False)
    assert features.from_cache and len(EmbeddingStore(tmp_path / "vectors" / encoder.namespace)) == stored
    assert np.array_equal(features.prompt[0], keys[0]) and np.array_equal(features.pair[0, 384:768], keys[1])


def test_a_store_sees_shards_written_after_it_loaded_and_forgets_a_cleared_folder(tmp_path):
    import shutil

    first, second = EmbeddingStore(tmp_path / "ns"), EmbeddingStore(tmp_path / "ns")
    first.put([text_key("a")], np.ones((1, 2)))
    assert len(second) == 1                      # another reader of the folder
    second.put([text_key("b")], np.full((1, 2), 2.0))
    assert first.get([text_key("b")])[0].tolist() == [2.0, 2.0]
    shutil.rmtree(tmp_path / "ns")
    assert len(first) == 0 and first.get([text_key("a")]) == [None]
    assert open_store(str(tmp_path / "ns")) is open_store(str(tmp_path / "ns"))


def test_reward_model_scorers_share_one_policy_backbone(tiny_policy_dir, tmp_path):
    """Every PolicyBackbone of one (model, weights, layer) in a process holds the same
    loaded model; a model with other weights at the same path is loaded anew."""
    import shutil

    from paretoflow.models import build_tiny_policy
    from paretoflow.reward.features import BackboneSpec, build_backbone

    spec = BackboneSpec(kind="policy", policy=str(tiny_policy_dir), max_length=32)
    one, two = build_backbone(spec), build_backbone(spec)
    assert one is not two and one._load()[0] is two._load()[0]
    assert build_backbone(BackboneSpec(kind="policy", policy=str(tiny_policy_dir), layer=1))._load()[0] is not one._load()[0]

    path = tmp_path / "model"
    shutil.copytree(tiny_policy_dir, path)
    before = build_backbone(BackboneSpec(kind="policy", policy=str(path)))._load()[0]
    shutil.rmtree(path)
    build_tiny_policy(path, seed=1)
    after = build_backbone(BackboneSpec(kind="policy", policy=str(path)))
    assert after._load()[0] is not before and after.fingerprint != one.fingerprint
