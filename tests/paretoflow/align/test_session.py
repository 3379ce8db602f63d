"""Which precision "auto" trains in (align/session.py `resolve_mixed_precision`)."""

import pytest

from paretoflow import cpu
from paretoflow.align import session


@pytest.mark.parametrize(
    ("cuda", "bf16_cpu", "profile", "expected"),
    [
        (True, False, "gpu", "bf16"),   # a card: bf16 on the gpu profile
        (True, True, "cpu", "no"),      # the cpu profile on a machine with a card stays fp32
        (False, True, "cpu", "bf16"),   # AVX512_BF16 / AMX: autocast
        (False, False, "cpu", "no"),    # emulated bf16 is slower than fp32
        (False, True, "gpu", "bf16"),
    ],
)
def test_auto_follows_the_hardware(monkeypatch, cuda, bf16_cpu, profile, expected):
    monkeypatch.setattr(session.torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(cpu, "native_bf16", lambda: bf16_cpu)
    assert session.resolve_mixed_precision("auto", profile) == expected


def test_an_explicit_setting_is_kept(monkeypatch):
    monkeypatch.setattr(cpu, "native_bf16", lambda: True)
    assert session.resolve_mixed_precision("no", "cpu") == "no"
    assert session.resolve_mixed_precision("bf16", "cpu") == "bf16"
