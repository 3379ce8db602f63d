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
The buffers are written by a background thread (os.write releases the GIL), so the
write syscalls run on the second core while the caller normalises and hashes the next
rows: on the 2-core machine a write cost ~6 ms of system time a MB (100k bench pairs
spill 280 MB: ~1.7 s of a 13.8 s run). At most WRITE_QUEUE_BUFFERS buffers wait for the
thread (4 MB), and a read first waits for every buffer put before it to be written; the
file's bytes are the same as written in the caller's thread, in the same order.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from array import array
from collections.abc import Sequence

WRITE_BUFFER_BYTES = 1 << 20  # bytes gathered before one write: a write per text costs a syscall each
WRITE_QUEUE_BUFFERS = 4  # buffers waiting for the writer thread at most: the memory it may hold


class TextSpill:
    """Append-only store of texts, addressed by the order they were put (0, 1, ...)."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self._file = tempfile.TemporaryFile(prefix="paretoflow-texts-", dir=directory)
        self._fd = self._file.fileno()
        self._ends = array("q")  # end offset of each text; text i spans [end[i-1], end[i])
        self._written = 0  # bytes in the file
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=WRITE_QUEUE_BUFFERS)
        self._writer: threading.Thread | None = None  # started by the first flush
        self._failure: BaseException | None = None  # what the writer raised, re-raised to the caller
        self._unwritten = False  # buffers queued since the last wait for the writer

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
        return self.get_bytes(index).decode("utf-8", "surrogatepass")

    def get_bytes(self, index: int) -> bytes:
        """Text `index` as stored: its UTF-8 bytes (surrogatepass)."""
        if self._pending:
            self._flush()
        if self._unwritten:
            self._queue.join()  # every buffer put so far is in the file
            self._unwritten = False
            self._raise_failure()
        start = self._ends[index - 1] if index else 0
        return os.pread(self._fd, self._ends[index] - start, start)

    def _flush(self) -> None:
        self._raise_failure()
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_queued, name="text-spill-writer", daemon=True)
            self._writer.start()
        data = b"".join(self._pending)
        self._queue.put(data)  # blocks while WRITE_QUEUE_BUFFERS wait: memory stays bounded
        self._unwritten = True
        self._written += len(data)
        self._pending, self._pending_bytes = [], 0

    def _write_queued(self) -> None:
        """The writer thread: write each buffer in order until None; after a failure, only
        drain the queue (the caller re-raises it at its next flush, read or close)."""
        while True:
            data = self._queue.get()
            try:
                if data is None:
                    return
                if self._failure is None:
                    view = memoryview(data)
                    while view:  # os.write may write less than asked
                        view = view[os.write(self._fd, view):]
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._failure = exc
            finally:
                self._queue.task_done()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise OSError(f"writing the text spill failed: {self._failure}") from self._failure

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        self._file.close()

    def __enter__(self) -> TextSpill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
