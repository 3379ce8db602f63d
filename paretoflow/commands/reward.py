"""`paretoflow eval-rm`: score a saved reward model on any importable preference file
(the reward stage's own command, `paretoflow reward`, is in paretoflow/stages/reward.py)."""

from __future__ import annotations

from pathlib import Path

from paretoflow.data.formats import AUTO, FORMATS
from paretoflow.io import write_json


def register(subparsers) -> None:
    evaluate = subparsers.add_parser("eval-rm", help="evaluate the saved reward model on a preference file")
    evaluate.add_argument("--data", required=True, help="a preference file any importer reads (JSONL, JSON, Parquet, CSV)")
    evaluate.add_argument("--format", default="auto",
                          choices=[AUTO, *FORMATS],
                          help="file format (default: detected)")
    evaluate.add_argument("--objective", default=None, help="objective of an HH-RLHF file (default: from its name)")
    evaluate.add_argument("--model-dir", default=None, help="reward model folder (default: reward.out_dir)")
    evaluate.add_argument("--root", default=".", help="repo root")
    evaluate.add_argument("--out", default=None, help="also write the results as JSON here")
    evaluate.set_defaults(func=_evaluate)


def _evaluate(args) -> int:
    from paretoflow.config import load_params
    from paretoflow.reward.evaluate import evaluate_file
    from paretoflow.reward.model import RewardModel

    params = load_params(args.params)
    root = Path(args.root)
    model_dir = Path(args.model_dir) if args.model_dir else root / params.reward.out_dir
    data = Path(args.data)
    if not data.exists():
        raise FileNotFoundError(f"data file not found: {data}")
    result = evaluate_file(RewardModel.load(model_dir, root=root), data, params, args.format, args.objective,
                           cache_dir=root / params.reward.feature_cache_dir)
    print(f"{result['file']}: {result['n_responses']} responses, {result['n_quarantined_rows']} rows quarantined")
    print("LC accuracy: on the pairs whose chosen response is the shorter (a 'longer wins' rule scores 0 there)")
    print(f"{'objective':<16} {'pairs':>7} {'accuracy':>9} {'LC accuracy':>12} {'LC pairs':>9} {'ECE':>7}")
    for name, v in result["objectives"].items():
        print(f"{name:<16} {v['n_pairs']:>7} {v['accuracy']:>9.4f} {v['lc_accuracy']:>12.4f} {v['n_lc_pairs']:>9} {v['ece']:>7.4f}")
    if result["not_in_model"]:
        print(f"objectives in the file but not in the model (skipped): {result['not_in_model']}")
    if args.out:
        write_json(args.out, result)
    return 0
