"""`paretoflow run | serve | promote | rollback`: the pipeline and the registry."""

from __future__ import annotations

import json
from pathlib import Path

from paretoflow.commands import parse_weights


def _run(args) -> int:
    from flows.nightly import main

    return main(["--params", args.params, *(["--root", args.root] if args.root else [])])


def _serve(args) -> int:
    from flows.serve import serve_deployments

    serve_deployments(args.params, Path(args.root).resolve())
    return 0


def _promote(args) -> int:
    from paretoflow.config import load_params
    from paretoflow.promote import run, validation_passed
    from paretoflow.tracking import Tracker, lineage_tags

    overrides = {}
    if args.weights:
        overrides = {"promote": {"preference": parse_weights(args.weights), "constraint": None}}
    if args.constraint:
        overrides = {"promote": {"preference": None, "constraint": json.loads(args.constraint)}}
    params = load_params(args.params, overrides)
    root = Path(args.root).resolve()
    tracker = Tracker(params.tracking, root)
    lineage = lineage_tags(params, root)
    with tracker.run("promote", tags=lineage) as parent:   # FAILED on any error, never left RUNNING
        outcome = run(params, root, tracker, parent, validation_passed=validation_passed(params, root),
                      lineage=lineage)
    moved = "" if outcome.alias != "champion" or outcome.metrics.get("promoted") else " (unchanged: already champion)"
    print(f"{outcome.candidate}: version {outcome.version} → {outcome.alias}{moved}")
    for reason in outcome.reasons:
        print(f"  gate failed: {reason}")
    return 0


def _rollback(args) -> int:
    from paretoflow.config import load_params
    from paretoflow.registry import registry_lock, rollback
    from paretoflow.tracking import Tracker, lineage_tags

    params = load_params(args.params)
    root = Path(args.root).resolve()
    tracker = Tracker(params.tracking, root)
    name = params.tracking.registered_model
    with tracker.run("rollback", tags={**lineage_tags(params, root), "paretoflow.stage": "rollback"}) as run_id:
        with registry_lock(params, root):
            demoted, restored = rollback(tracker, name, reason=args.reason or "")
        tracker.set_tags(run_id, {"paretoflow.demoted": demoted, "paretoflow.restored": restored})
    print(f"{name}: champion {demoted} → {restored}; version {demoted} is blocked from promotion "
          f"until `paretoflow unblock {demoted}`")
    return 0


def register(sub) -> None:
    p = sub.add_parser("run", help="run the nightly flow locally (no Prefect server needed)")
    p.add_argument("--root", default=None, help="project root (default: the params file's folder)")
    p.set_defaults(func=_run)
    p = sub.add_parser("serve", help="serve nightly + on-demand deployments on a Prefect server")
    p.add_argument("--root", default=".")
    p.set_defaults(func=_serve)
    p = sub.add_parser("promote", help="choose a front candidate, gate it, move registry aliases")
    p.add_argument("--root", default=".")
    p.add_argument("--weights", help="preference vector, e.g. 0.5,0.3,0.2")
    p.add_argument("--constraint", help='JSON, e.g. {"maximize":"helpfulness","minimums":{"harmlessness":0.8}}')
    p.set_defaults(func=_promote)
    p = sub.add_parser("rollback", help="move champion back to the latest earlier champion; block the demoted one")
    p.add_argument("--root", default=".")
    p.add_argument("--reason", help="why, recorded on the blocked version")
    p.set_defaults(func=_rollback)
