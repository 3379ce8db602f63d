"""`paretoflow align`: train LoRA experts (DPO) and MODPO policies.

    paretoflow align --objective helpfulness      # artifacts/adapters/expert-helpfulness
    paretoflow align --weights 0.7,0.3,0.0        # artifacts/adapters/modpo-0.7-0.3-0
    paretoflow align --all                        # every expert + align.modpo_weights
    paretoflow align --objective helpfulness --sources human=1,on_policy=0   # human pairs only

Multi-GPU: `accelerate launch --num_processes N -m paretoflow.cli align --all`.
"""

from __future__ import annotations

import json
from pathlib import Path

from paretoflow.commands import parse_weights


def _handle(args) -> int:
    from paretoflow import align
    from paretoflow.config import load_params

    params = load_params(args.params)
    if args.profile:
        params.project.profile = args.profile
    root = Path(args.root)
    if args.sources is not None and args.all:
        raise ValueError("--sources applies to one adapter; for --all set align.sources in params")
    if args.all:
        results = align.run_all(params, root, policy_path=args.policy, resume=not args.fresh)
    else:
        weights = parse_weights(args.weights) if args.weights is not None else None
        results = [align.run(params, root, objective=args.objective, weights=weights,
                             policy_path=args.policy, resume=not args.fresh,
                             sources=parse_sources(args.sources) if args.sources is not None else None)]
    for result in results:
        summary = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.metrics.items()}
        print(f"{result.name}: {result.adapter_dir} {json.dumps(summary)}")
    return 0


def parse_sources(text: str) -> dict[str, float]:
    """`human=1,on_policy=0.5` → {"human": 1.0, "on_policy": 0.5} (kinds checked by the caller)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--sources: {part!r} is not kind=weight (e.g. human=1,on_policy=0)")
        try:
            out[kind.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--sources: weight {value!r} of {kind!r} is not a number") from None
    return out


def register(subparsers) -> None:
    parser = subparsers.add_parser("align", help="train LoRA DPO experts / MODPO policies",
                                   description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--objective", help="train the DPO expert of this objective")
    what.add_argument("--weights", help="train a MODPO policy for these weights, e.g. 0.7,0.3,0.0")
    what.add_argument("--all", action="store_true", help="every expert and align.modpo_weights")
    parser.add_argument("--root", default=".", help="project root holding data/ and artifacts/")
    parser.add_argument("--policy", default=None, help="base policy folder (default: model.policy)")
    parser.add_argument("--profile", choices=["cpu", "gpu"], default=None,
                        help="override project.profile for this run")
    parser.add_argument("--fresh", action="store_true", help="ignore checkpoints, start over")
    parser.add_argument("--sources", default=None,
                        help="pair source weights for this adapter, e.g. human=1,on_policy=0 "
                             "(default: align.sources / align.objective_sources)")
    parser.set_defaults(func=_handle)
