"""Which of the processes `accelerate launch` started this one is, and the few collectives
that splitting generation across them needs.

    processes = current()                 # index 0 of 1 without a launcher
    mine = processes.shard(batches)       # batches[index::count]
    everything = processes.gather(mine)   # every process's items, on every process
    decision = processes.broadcast(x)     # the main process's x, on every process

Without a launcher (WORLD_SIZE unset or 1: `make run`, the CLI, tests) every collective
is the identity and accelerate is not touched, so one process runs exactly the code it ran
before. Under `accelerate launch --num_processes N` (configs/accelerate/cpu-2proc.yaml on
CPU: gloo), `current()` builds accelerate's `PartialState` as the trainer's `Accelerator`
does (`cpu=True` without CUDA) and the collectives are accelerate's `gather_object` and
`broadcast_object_list` (torch.distributed all_gather_object / broadcast_object_list).

A process that fails leaves the others waiting in their next collective until the process
group's timeout (torch.distributed's default, 30 min on gloo): `on_main` runs a main-only
step and tells every process whether it failed, so a bad input stops all of them at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Processes:
    """This process's place among `count` processes (index 0 is the main one)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"process index {self.index} is not in [0, {self.count})")

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This process's items, round-robin (`items[index::count]`): with items sorted by
        cost (generation batches by prompt length) every process gets a similar share."""
        return list(items[self.index :: self.count])

    def gather(self, items: Sequence[Any]) -> list[Any]:
        """Every process's `items` (picklable), concatenated in process order, on every process."""
        if self.count == 1:
            return list(items)
        from accelerate.utils import gather_object

        return gather_object(list(items))

    def broadcast(self, value: Any) -> Any:
        """The main process's `value` (picklable) on every process."""
        if self.count == 1:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value if self.is_main else None])[0]

    def on_main(self, step: Callable[[], T]) -> T | None:
        """`step()` on the main process only (None elsewhere); if it raises, every process
        raises (the main one its own error, the others a RuntimeError quoting it)."""
        result, error = None, None
        if self.is_main:
            try:
                result = step()
            except Exception as exc:  # re-raised below, after the others have heard of it
                error = exc
        failure = self.broadcast(None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        if failure is not None:
            raise RuntimeError(f"the main process failed: {failure}")
        return result


SINGLE = Processes()


def current() -> Processes:
    """The processes of this launch: `SINGLE` without a launcher (accelerate untouched),
    else this process's rank and the world size from accelerate's `PartialState`."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return SINGLE
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    return Processes(state.process_index, state.num_processes)


__all__ = ["SINGLE", "Processes", "current"]
