"""Independent pieces of CPU work side by side in one process: `lanes` threads, each with
its own copy of what it mutates (a model whose weights it rewrites), torch's intra-op
threads divided among them.

    results = in_lanes(items, work, resources)   # work(resource, item), in item order

Why threads of one intra-op thread each rather than one thread of every core: on these
2-core CPUs a decode step of the 135M policy at 32 rows runs far below the matmul rate
(per-op overhead and OpenMP fork-join across 30 layers), so two generations at once on one
core each finish sooner than the same two one after the other on both cores. Measured on
the front's 64 test prompts (two batches of 32, greedy, 64 new tokens, bench/speed.py
`--lanes`): 1.20-1.22x for the two batches of one candidate (the long-prompt batch takes
~1.4x the short one, so one lane waits), identical answers, 64/64. Whole candidates per
lane keep both busy. torch releases the GIL inside its ops, so Python threads suffice;
a process per lane would reload the model and re-import torch (~7.5 s, measured).

A result must not depend on the lane that computes it: `work` may only use the lane's
resource and its item (greedy decoding on equal weights and equal batches gives the same
tokens on one thread or two, checked by tests/paretoflow/test_lanes.py). Nothing in a lane
may draw from torch's global generator, which the threads share: sampled generation draws
from a generator of its batch (`generation.SeededDraw`), LoRA training from its session's
(`align.session.SeededDropout`; the session is built under a lock, since seeding and the
LoRA initialisation use the global one). Align jobs in lanes (align.cpu.lanes): two LoRA
jobs of the default policy at once on one thread each vs one after the other on two,
batch 4 x 96 tokens, 6 steps each: 1.34x, and their greedy selection answers 1.40x, losses
and tokens identical (docs/measurements.md#align).

torch fixes a thread's intra-op count at its first parallel op (from the process-wide
setting) or when the thread sets it itself, and a later `set_num_threads` from another
thread does not reach it: hence the setting before the lanes' threads exist.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

R = TypeVar("R")
T = TypeVar("T")
U = TypeVar("U")


def in_lanes(items: Sequence[T], work: Callable[[R, T], U], resources: Sequence[R]) -> list[U]:
    """`work(resource, item)` for every item, `len(resources)` at a time, results in item
    order. A lane takes the next item when it is free (whole items, no split), so uneven
    items even out. With one resource (or one item) this is a plain loop in this thread,
    with torch's thread count untouched."""
    if not resources:
        raise ValueError("in_lanes needs at least one resource")
    if len(resources) == 1 or len(items) <= 1:
        return [work(resources[0], item) for item in items]
    import torch

    free: queue.SimpleQueue = queue.SimpleQueue()
    for resource in resources:
        free.put(resource)

    def job(item: T) -> U:
        resource = free.get()
        try:
            return work(resource, item)
        finally:
            free.put(resource)

    threads = torch.get_num_threads()
    # torch reads the intra-op count when a thread first runs an op, so the lanes' threads
    # (created below) each run ops on this share.
    torch.set_num_threads(max(1, threads // len(resources)))
    try:
        with ThreadPoolExecutor(len(resources), thread_name_prefix="lane") as pool:
            return list(pool.map(job, items))
    finally:
        torch.set_num_threads(threads)


__all__ = ["in_lanes"]
