"""The dataset-format registry: one module per format, one registry line (`FORMATS`).

A format module defines `detect(row) -> bool` (does this first record look like the
format), `parser(ctx) -> (row parser, ignored attributes)` (configuration errors raise
there, before any row; a row's own failure raises RowError with its quarantine reason),
and optionally `DERIVE_PAIRS` (pairs derived across a prompt's rated rows after
curation) and `count_present(row, attributes, counts)` (attributes of a dataset not mapped
to a declared objective, counted for the report). Shared readers: `fields.py`.

This file imports nothing heavy (no pandas, no pyarrow): params validate a source's
`format` against `FORMATS` when they load.
"""

from __future__ import annotations

from types import ModuleType

# The registry, in detection order: "auto" takes the first whose detect() accepts the first
# readable record; generic accepts every record, so it comes last.
FORMATS: tuple[str, ...] = ("hh_rlhf", "pku_saferlhf", "ultrafeedback", "helpsteer2", "kto", "openai_dpo", "builtin",
                             "generic")
AUTO = "auto"


def check_format(name: str, allow_auto: bool = True) -> str:
    if name == AUTO and allow_auto:
        return name
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; formats: {[AUTO, *FORMATS] if allow_auto else list(FORMATS)}")
    return name


def format_module(name: str) -> ModuleType:
    """The module of a registered format (imported on first use)."""
    check_format(name, allow_auto=False)
    from paretoflow.data.formats import (
        builtin, generic, helpsteer2, hh_rlhf, kto, openai_dpo, pku_saferlhf, ultrafeedback,
    )

    modules = {m.__name__.rpartition(".")[2]: m for m in
               (builtin, generic, helpsteer2, hh_rlhf, kto, openai_dpo, pku_saferlhf, ultrafeedback)}
    return modules[name]


def detect_format(value: dict) -> str:
    """The first registered format whose detect() accepts this record."""
    return next(name for name in FORMATS if format_module(name).detect(value))


def derives_pairs(name: str) -> bool:
    return bool(getattr(format_module(name), "DERIVE_PAIRS", False))


__all__ = ["AUTO", "FORMATS", "check_format", "derives_pairs", "detect_format", "format_module"]
