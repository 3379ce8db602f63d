"""`paretoflow stages`: the stage registry, and the files generated from it.

    paretoflow stages            # stage, entry point, reads → writes, code files
    paretoflow stages --write    # regenerate dvc.yaml and the diagram in docs/architecture.md
    paretoflow stages --check    # exit 1 when either file disagrees with the registry
"""

from __future__ import annotations

import sys
from pathlib import Path

ARCHITECTURE = Path("docs/architecture.md")


def generated_files(params, repo: Path) -> dict[Path, str]:
    """path → the text the registry says it should hold."""
    from paretoflow import pipeline as stages

    doc = (repo / ARCHITECTURE).read_text(encoding="utf-8")
    return {
        repo / "dvc.yaml": stages.render_dvc_yaml(params),
        repo / ARCHITECTURE: stages.replace_between(doc, stages.DIAGRAM_BEGIN, stages.DIAGRAM_END,
                                                    stages.render_diagram(params)),
    }


def _handle(args) -> int:
    from paretoflow import pipeline as stages
    from paretoflow.config import load_params
    from paretoflow.io import write_text

    params = load_params(args.params)
    repo = Path(args.root)
    if args.write or args.check:
        stale = [path for path, text in generated_files(params, repo).items()
                 if not path.exists() or path.read_text(encoding="utf-8") != text]
        if args.check:
            for path in stale:
                print(f"{path}: out of date with the stage registry (run `paretoflow stages --write`)",
                      file=sys.stderr)
            return 1 if stale else 0
        for path, text in generated_files(params, repo).items():
            write_text(path, text)
            print(f"wrote {path}")
        return 0
    print(stages.render_diagram(params))
    for s in stages.STAGES.values():
        print(f"\n{s.name}: {len(s.code_files())} code files, hash {s.code_hash()}")
        print("  " + " ".join(s.code_files()))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("stages", help="show the stage registry; regenerate dvc.yaml and the diagram",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="repository root holding dvc.yaml and docs/")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="regenerate dvc.yaml and docs/architecture.md's diagram")
    mode.add_argument("--check", action="store_true", help="exit 1 if they disagree with the registry")
    parser.set_defaults(func=_handle)
