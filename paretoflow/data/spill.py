"""Texts held on disk instead of in memory while curation decides which rows to keep.

Response texts are most of a preference dataset's bytes (1M generated pairs: ~2.2 GB of
answers beside ~0.1 GB of distinct prompts), yet curation reads them only twice: once
when the row arrives (normalise, hash, check) and once when the responses table is
written. Between the two, `TextSpill` keeps them in an anonymous temporary file (deleted
when closed, or when the process dies) and memory holds 8 bytes per text: its offset.

    spill = TextSpill()
    first = spill.put_all(["a", "b"])    # index of the first text put
    spill.get(first + 1)                  # "b"
    spill.close()

Writes are buffered (WRITE_BUFFER_BYTES) and reads use os.pread, so the file's pages
sit in the kernel's page cache, not in this process's RSS (an mmap would count them).
"""

from __future__ import annotations

import os
import tempfile
from array import array
from collections.abc import Sequence

WRITE_BUFFER_BYTES = 1 << 20  # bytes gathered before one write: a write per text costs a syscall each


class TextSpill:
    """Append-only store of texts, addressed by the order they were put (0, 1, ...)."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self._file = tempfile.TemporaryFile(prefix="paretoflow-texts-", dir=directory)
        self._fd = self._file.fileno()
        self._ends = array("q")  # end offset of each text; text i spans [end[i-1], end[i])
        self._written = 0  # bytes in the file
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def __len__(self) -> int:
        return len(self._ends)

    def put_all(self, texts: Sequence[str]) -> int:
        """Store `texts` in order; returns the index of the first (the others follow it)."""
        first = len(self._ends)
        end = self._ends[-1] if self._ends else 0
        for text in texts:
            # surrogatepass: a lone surrogate comes back as it went in (readers quarantine
            # such text, but the spill must not be where a row's failure turns into a crash)
            data = text.encode("utf-8", "surrogatepass")
            end += len(data)
            self._ends.append(end)
            self._pending.append(data)
            self._pending_bytes += len(data)
        if self._pending_bytes >= WRITE_BUFFER_BYTES:
            self._flush()
        return first

    def get(self, index: int) -> str:
        if self._pending:
            self._flush()
        start = self._ends[index - 1] if index else 0
        data = os.pread(self._fd, self._ends[index] - start, start)
        return data.decode("utf-8", "surrogatepass")

    def _flush(self) -> None:
        data = b"".join(self._pending)
        view = memoryview(data)
        while view:  # os.write may write less than asked
            view = view[os.write(self._fd, view):]
        self._written += len(data)
        self._pending, self._pending_bytes = [], 0

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TextSpill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
