"""`paretoflow rollback | unblock | champion-history`: the registry's human side (the
promote stage's own command is in paretoflow/stages/promote.py)."""

from __future__ import annotations

from pathlib import Path


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


def _unblock(args) -> int:
    from paretoflow.config import load_params
    from paretoflow.registry import registry_lock, unblock
    from paretoflow.tracking import Tracker, lineage_tags

    params = load_params(args.params)
    root = Path(args.root).resolve()
    tracker = Tracker(params.tracking, root)
    name = params.tracking.registered_model
    with tracker.run("unblock", tags={**lineage_tags(params, root), "paretoflow.stage": "unblock"}) as run_id:
        with registry_lock(params, root):
            note = unblock(tracker, name, args.version)
        tracker.set_tags(run_id, {"paretoflow.unblocked": args.version})
    print(f"{name}: version {args.version} may be promoted again (was blocked: {note})")
    return 0


def _history(args) -> int:
    from paretoflow.config import load_params
    from paretoflow.registry import BLOCK_TAG, champion_history
    from paretoflow.tracking import Tracker

    params = load_params(args.params)
    tracker = Tracker(params.tracking, Path(args.root).resolve())
    name = params.tracking.registered_model
    history = champion_history(tracker, name)
    if not history:
        print(f"{name}: no champion yet")
    for i, version in enumerate(reversed(history)):
        tags = tracker.client.get_model_version(name, version).tags
        state = "champion" if i == 0 else tags.get("promotion", "")
        blocked = f"  BLOCKED: {tags[BLOCK_TAG]}" if BLOCK_TAG in tags else ""
        print(f"{version:>6}  {state:<12} {tags.get('candidate', '')}{blocked}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("rollback", help="move champion back to the latest earlier champion; block the demoted one")
    p.add_argument("--root", default=".")
    p.add_argument("--reason", help="why, recorded on the blocked version")
    p.set_defaults(func=_rollback)
    p = sub.add_parser("unblock", help="let a rolled-back registry version be promoted again")
    p.add_argument("version", help="registry version number")
    p.add_argument("--root", default=".")
    p.set_defaults(func=_unblock)
    p = sub.add_parser("champion-history", help="versions that held the champion alias, newest first")
    p.add_argument("--root", default=".")
    p.set_defaults(func=_history)
