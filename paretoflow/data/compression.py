"""Compressed text files: which codec a name says, and a stream of the inflated content.

.gz, .bz2 and .xz through the standard library, .zst through pyarrow (its zstd codec is
built in; the standard library has none before Python 3.14). readers.stream_chunks reads
the stream a chunk at a time under the running byte cap, so a decompression bomb stops
there whatever the codec.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path
from typing import Any

__all__ = ["COMPRESSIONS", "compression_of", "inflating"]

COMPRESSIONS = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd"}  # suffix -> codec, as named in errors


def compression_of(path: Path) -> str | None:
    """The codec the file's name says it is compressed with, or None."""
    return next((name for suffix, name in COMPRESSIONS.items() if path.name.lower().endswith(suffix)), None)


def inflating(path: Path, compression: str) -> Any:
    """A binary stream of the file's inflated content (read(n) gives at most n bytes)."""
    if compression == "gzip":
        return gzip.open(path, "rb")
    if compression == "bzip2":
        return bz2.open(path, "rb")
    if compression == "xz":
        return lzma.open(path, "rb")
    import pyarrow as pa

    return pa.input_stream(str(path), compression="zstd")
