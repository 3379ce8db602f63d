"""Non-answer battery: how often each objective's scorer prefers the real answer, per kind.

    .venv/bin/python bench/battery.py [--params params.yaml] [--root .] [--max-prompts 200]
                                      [--before] [--json out.json]

Builds the battery from the curated train split (paretoflow/judges/battery.py: benign
train prompts with a chosen human answer; test and eval prompts stay unseen) and scores
it with the judge mixture of params. `--before` also scores it with the same objectives
without their gates and length floor (the scorers as they were before issue 17), so both
tables come from one process. Needs `paretoflow curate` and, for reward-model judges,
`paretoflow reward` first.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from paretoflow.config import load_params
from paretoflow.judges import build_mixture
from paretoflow.judges.battery import battery_from_curated, preference_rates, rates_table


def ungated(params):
    """The objectives without gates and without a length_band floor."""
    objectives = []
    for objective in params.objectives:
        judges = [j.model_copy(update={"params": {k: v for k, v in j.params.items() if k != "floor"}})
                  for j in objective.judges]
        objectives.append(objective.model_copy(update={"gates": [], "judges": judges}))
    return params.model_copy(update={"objectives": objectives})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    parser.add_argument("--max-prompts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--before", action="store_true", help="also score without gates (the old scorers)")
    parser.add_argument("--json", default=None, help="write the rates here")
    args = parser.parse_args()
    params, root = load_params(args.params), Path(args.root)
    battery = battery_from_curated(root, params, max_prompts=args.max_prompts, seed=args.seed)
    print(f"battery: {battery['prompt'].nunique()} train prompts x {battery['kind'].nunique()} kinds = {len(battery)} pairs")
    out = {}
    for label, p in ([("before (no gates)", ungated(params))] if args.before else []) + [("scorers of params", params)]:
        started = time.perf_counter()
        rates = preference_rates(build_mixture(p, root).score, battery)
        print(f"\n{label} ({time.perf_counter() - started:.1f} s): real answer preferred, rate [95% Wilson]")
        print(rates_table(rates))
        out[label] = {o: {k: r.to_dict() for k, r in by_kind.items()} for o, by_kind in rates.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
