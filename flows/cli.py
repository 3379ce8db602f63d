"""The `paretoflow` command: the library's commands (paretoflow/cli.py: one per stage, plus
import, judge, generate, export, registry, stages) and the ones that run Prefect flows:

    paretoflow [--params F] run       # the nightly flow locally (no Prefect server needed)
    paretoflow [--params F] serve     # nightly + on-demand deployments on a Prefect server
    paretoflow worker --pool NAME     # a Prefect worker for the align-expert runs

They live here, not in the library, because the library imports neither Prefect nor flows/.
Registry moves made from this command (promote, rollback, unblock) take the Prefect
global concurrency limit when PREFECT_API_URL is set (tasks/locks.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from paretoflow import cli


def _run(args: argparse.Namespace) -> int:
    args.load_params()   # a bad params file fails here, naming the key, before Prefect is imported
    from flows.nightly import main

    return main(["--params", args.params, *(["--root", args.root] if args.root else [])])


def _serve(args: argparse.Namespace) -> int:
    args.load_params()
    from flows.serve import serve_deployments

    serve_deployments(args.params, Path(args.root).resolve())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from flows import worker

    p = sub.add_parser("run", help="run the nightly flow locally (no Prefect server needed)")
    p.add_argument("--root", default=None, help="project root (default: the params file's folder)")
    p.set_defaults(func=_run)
    p = sub.add_parser("serve", help="serve nightly + on-demand deployments on a Prefect server")
    p.add_argument("--root", default=".")
    p.set_defaults(func=_serve)
    worker.register(sub)


def build_parser() -> argparse.ArgumentParser:
    parser, sub = cli.build_parser_and_subparsers()
    register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tasks.locks import install_prefect_lock

    install_prefect_lock()
    return cli.main(argv, parser=build_parser())


if __name__ == "__main__":
    sys.exit(main())
