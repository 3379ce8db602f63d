"""`paretoflow front` (evaluate merged experts → Pareto front) and `paretoflow generate`.

    paretoflow front                                   # artifacts/front/{front.json,scores.parquet,front.png,...}
    paretoflow front --method map --merge-method ties
    paretoflow generate --weights 0.7,0.2,0.1 "How do I sleep better?"
"""

from __future__ import annotations

from pathlib import Path

from paretoflow.commands import parse_weights


def _front(args) -> int:
    from paretoflow import front
    from paretoflow.config import load_params

    params = load_params(args.params)
    if args.profile:
        params.project.profile = args.profile
    if args.method:
        params.front.method = args.method
    if args.merge_method:
        params.front.merge_method = args.merge_method
    result = front.run(params, Path(args.root), progress=not args.quiet)
    reference = ", ".join(f"{k}={v:g}" for k, v in result.reference_point.items())
    low, high = result.hypervolume_ci
    print(f"front: {result.n_candidates} candidates, {result.n_non_dominated} non-dominated, "
          f"hypervolume {result.hypervolume:.5f} [{low:.5f}, {high:.5f}] (reference {reference}), "
          f"sparsity {result.sparsity:.5f}, expected utility {result.expected_utility:.4f}")
    n_prompts = int(result.metrics["n_prompts"])
    print(f"minimum detectable difference on {n_prompts} prompts: "
          + ", ".join(f"{k} {v:.3f}" for k, v in result.mde.get("judges", {}).items()))
    print("  (* non-dominated, ! distinguishable from the base; mean and paired difference vs base [CI])")
    for record in result.records:
        values = " ".join(f"{k}={v:.3f} ({record.vs_base[k].diff:+.3f} [{record.vs_base[k].ci_low:+.3f}, "
                          f"{record.vs_base[k].ci_high:+.3f}])" for k, v in record.objectives.items())
        flags = ("*" if record.non_dominated else " ") + ("!" if record.distinguishable else " ")
        print(f"  {flags} {record.name:28s} {values}")
    print(f"wrote {result.front_json}, {result.scores_parquet}, {result.front_png}, {result.candidates_parquet}")
    return 0


def _generate(args) -> int:
    from paretoflow.config import load_params
    from paretoflow.front import generate_with_weights

    params = load_params(args.params)
    if args.profile:
        params.project.profile = args.profile
    print(generate_with_weights(params, parse_weights(args.weights), args.prompt, Path(args.root),
                                max_new_tokens=args.max_new_tokens))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("front", help="merge experts over a simplex, evaluate, write the Pareto front",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="project root holding data/ and artifacts/")
    parser.add_argument("--method", choices=["grid", "map"], default=None, help="override front.method")
    parser.add_argument("--merge-method", choices=["exact", "ties", "dare", "task_arithmetic"], default=None,
                        help="override front.merge_method")
    parser.add_argument("--profile", choices=["cpu", "gpu"], default=None, help="override project.profile")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_front)

    gen = subparsers.add_parser("generate", help="answer a prompt with the exact expert merge for given weights")
    gen.add_argument("prompt", help="the user message")
    gen.add_argument("--weights", required=True, help="one weight per objective, e.g. 0.7,0.2,0.1")
    gen.add_argument("--root", default=".", help="project root holding artifacts/adapters")
    gen.add_argument("--max-new-tokens", type=int, default=None, help="default: front budget max_new_tokens")
    gen.add_argument("--profile", choices=["cpu", "gpu"], default=None, help="override project.profile")
    gen.set_defaults(func=_generate)
