"""`paretoflow export`: a registered candidate as one peft adapter or as merged weights.

    paretoflow export --model-version 3 --format peft out/adapter      # exact 'cat' merge, rank Σ rᵢ
    paretoflow export --alias champion --format merged out/model       # full safetensors weights
    paretoflow export --model-version 3 --format peft --weights 0.2,0.5,0.3 out/adapter
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from paretoflow.commands import parse_weights


def export_version(tracker, name: str, version: str, fmt: str, out: Path, weights: list[float] | None = None) -> Path:
    """Download version `version` of `name` (its package, base through MLflow) and export it."""
    from paretoflow.promote import PACKAGE
    from paretoflow.serving.base import open_package
    from paretoflow.serving.export import export_merged, export_peft

    run_id = tracker.client.get_model_version(name, version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        package = tracker.download(run_id, PACKAGE, Path(tmp))
        if not (package / "base.json").exists():
            raise ValueError(f"version {version} of {name} predates MLflow Model packaging (no base.json): "
                             "re-promote it to export it")
        policy = open_package(package)   # its adapters stay in `tmp`: export before leaving
        base_uri = json.loads((package / "base.json").read_text())["uri"]   # models:/paretoflow-base/N
        if fmt == "peft":
            return export_peft(policy, out, base_uri, weights)
        return export_merged(policy, out, weights)


def _export(args) -> int:
    from paretoflow.config import load_params
    from paretoflow.tracking import Tracker

    params = load_params(args.params)
    tracker = Tracker(params.tracking, Path(args.root).resolve())
    name = params.tracking.registered_model
    version = args.model_version or str(tracker.client.get_model_version_by_alias(name, args.alias).version)
    weights = parse_weights(args.weights) if args.weights else None
    out = export_version(tracker, name, version, args.format, Path(args.out), weights)
    print(f"{name} v{version} exported as {args.format} to {out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="write a registered candidate as one peft adapter or merged safetensors",
                       description=__doc__.splitlines()[0])
    p.add_argument("out", help="output folder")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model-version", help="registry version number")
    which.add_argument("--alias", help="registry alias, e.g. champion")
    p.add_argument("--format", choices=["peft", "merged"], default="peft")
    p.add_argument("--weights", default=None, help="another trade-off, one weight per objective (linear merges)")
    p.add_argument("--root", default=".")
    p.set_defaults(func=_export)
