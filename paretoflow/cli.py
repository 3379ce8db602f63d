"""`paretoflow` command line: one subcommand per stage.

Subcommands live in `paretoflow/commands/<stage>.py`, each exposing
`register(subparsers)`; this module discovers them, so stages add commands without
touching a shared file. Every command reads `--params` (default params.yaml).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from paretoflow import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paretoflow", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
