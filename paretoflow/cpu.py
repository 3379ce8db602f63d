"""What this CPU does fast: bf16 products in hardware or not.

The settings that say "auto" on CPU resolve by it: `model.encoder_dtype` (MiniLM under bf16
autocast, paretoflow/embeddings.py) and `align.<profile>.mixed_precision` (LoRA training
under accelerate's bf16 autocast, paretoflow/align/session.py). Where the instructions are
missing, oneDNN emulates bf16 and it is slower than float32: one 8192x384 @ 384x1536
product under bf16 autocast ran 4.3x faster than float32 with AVX512_BF16, 0.80x with
oneDNN capped at AVX512_CORE and 0.26x at AVX2 (bench/encoder.py, 2026-12-04).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

# CPU flags of hardware bf16 products (Linux /proc/cpuinfo names)
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = "/proc/cpuinfo"


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512_BF16 or AMX-BF16, from
    /proc/cpuinfo; False where that file is absent)."""
    try:
        text = Path(CPUINFO).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(BF16_FLAGS & set(line.partition(":")[2].split()))
    return False


__all__ = ["BF16_FLAGS", "native_bf16"]
