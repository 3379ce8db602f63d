"""`paretoflow import FILE ...`: one file → canonical tables + quarantine (the curate
stage's own command, `paretoflow curate`, is in paretoflow/stages/curate.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from paretoflow.config import SourceConfig, load_params
from paretoflow.data.formats import AUTO, FORMATS



def register(subparsers: argparse._SubParsersAction) -> None:
    importer = subparsers.add_parser(
        "import", help="import one raw file into canonical tables + quarantine (full curation of that file)"
    )
    importer.add_argument("file", help="JSONL / JSON / Parquet / CSV / TSV file, .gz .bz2 .xz .zst too (or a folder of them)")
    importer.add_argument("--format", default="auto", choices=[AUTO, *FORMATS])
    importer.add_argument("--objective", default=None, help="objective of an HH-RLHF / generic file")
    importer.add_argument("--role", default="train", choices=["train", "eval"])
    importer.add_argument(
        "--map", action="append", default=[], metavar="FIELD=COLUMN",
        help="column_map entry (generic: canonical field=column; rating datasets: objective=[-]attribute)",
    )
    importer.add_argument("--encoding", default="utf-8",
                          help="text encoding of a JSON / CSV / TSV file (default utf-8; e.g. cp1252 for Excel's CSV)")
    importer.add_argument("--out", required=True, help="output folder for the tables")
    importer.set_defaults(func=import_command)


def _column_map(entries: list[str]) -> dict[str, str]:
    mapping = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"--map {entry!r}: expected FIELD=COLUMN")
        mapping[key] = value
    return mapping


def import_command(args: argparse.Namespace) -> int:
    from paretoflow.data.curate import curate_into, report_table

    params = load_params(args.params)
    source = SourceConfig(
        path=args.file, format=args.format, objective=args.objective, role=args.role,
        column_map=_column_map(args.map), encoding=args.encoding,
    )
    curate_config = params.curate.model_copy(update={"sources": [source]})
    # The file and --out are named by the user on the command line: the file may lie
    # outside the project (its folder becomes the data root of this import).
    named = Path(args.file).resolve()
    # Streamed as the curate stage runs (curate_into): the responses' texts stay on disk
    # until they are written, not the whole table in memory.
    result = curate_into(params.model_copy(update={"curate": curate_config}), Path(args.out), Path("."),
                         progress=True, data_roots=[named if named.is_dir() else named.parent])
    print(report_table(result.report, result.paths["quarantine"]))
    print(f"wrote {', '.join(str(p) for p in result.paths.values())}")
    return 0
