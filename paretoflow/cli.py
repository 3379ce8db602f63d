"""`paretoflow` command line: one subcommand per stage, plus the library's tools.

Each stage's command lives in its module (`paretoflow/stages/<stage>.py`, under the
stage's own name); the other commands in `paretoflow/commands/<name>.py`. Every such
module exposes `register(subparsers)`; this module discovers them, so a stage or tool adds
its command without touching a shared file. Every command reads `--params` (default
params.yaml). The installed `paretoflow` script is flows/cli.py: these commands plus
`run`, `serve` and `worker`, which start Prefect flows and so are not the library's.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import pkgutil
import sys

from paretoflow import commands, stages


def _command_modules() -> list[str]:
    out = []
    for package in (stages, commands):
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            out.append(f"{package.__name__}.{info.name}")
    return out


def build_parser_and_subparsers() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(prog="paretoflow", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _command_modules():
        module = importlib.import_module(name)
        if hasattr(module, "register"):
            module.register(sub)
    return parser, sub


def build_parser() -> argparse.ArgumentParser:
    return build_parser_and_subparsers()[0]


def _load(path: str, overrides: dict | None = None):
    """The params of `--params`, for commands: a stage module does not import paretoflow.config
    (Params holds every stage's section, so it would put every stage in its code hash)."""
    from paretoflow.config import load_params

    return load_params(path, overrides)


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    args = (parser or build_parser()).parse_args(argv)
    args.load_params = functools.partial(_load, args.params)
    from paretoflow.registry import RegistryUnavailable
    from paretoflow.tracking import TrackingUnavailable

    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, RegistryUnavailable, TrackingUnavailable) as exc:
        # Bad input: one clear line naming what is wrong, no traceback.
        print(f"paretoflow {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
