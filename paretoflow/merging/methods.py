"""The merge-method registry: one module per method under paretoflow/merging/, one line here.

A method module defines `NON_NEGATIVE` (whether its coefficients are mixing weights that
may not subtract a task) and `merge(module, present, weights, options) -> ΔW | None`:
`present` is [(expert index, LoraExpert)] of the experts adapting `module`, `weights` the
checked coefficients of every expert, `options` the MergeOptions. None = no update there.
This file imports no torch at module level, so params validate a method name without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

# The registry: a method named here is the module of that name in paretoflow/merging/
# (imported in `method_module`, where the stage's code hash sees it).
METHODS: tuple[str, ...] = ("exact", "task_arithmetic", "ties", "dare")
MERGE_METHODS = METHODS


@dataclass(frozen=True)
class MergeOptions:
    ties_density: float = 0.2
    dare_drop_rate: float = 0.9
    task_arithmetic_lambda: float = 1.0
    seed: int = 0


def check_method(name: str) -> str:
    if name not in METHODS:
        raise ValueError(f"unknown merge method {name!r}; choose one of {list(METHODS)}")
    return name


def method_module(name: str) -> ModuleType:
    """The module of a registered method (torch is imported here, on first use)."""
    check_method(name)
    from paretoflow.merging import dare, exact, task_arithmetic, ties

    modules = {m.__name__.rpartition(".")[2]: m for m in (dare, exact, task_arithmetic, ties)}
    return modules[name]
