"""`paretoflow judge` (score text with the judge mixture) and `paretoflow pairs` (stage)."""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    judge = subparsers.add_parser(
        "judge",
        help="score responses on every objective with the judge mixture",
        description="Score one (prompt, response) or a folder of canonical tables "
        "(prompts.parquet + responses.parquet) with the objectives' judges.",
    )
    source = judge.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="prompt text (with --response)")
    source.add_argument("--file", help="a responses.parquet file or a folder holding "
                        "prompts.parquet and responses.parquet")
    judge.add_argument("--response", help="response text (with --prompt)")
    judge.add_argument("--tags", default="", help="comma-separated prompt tags, e.g. harmful")
    judge.add_argument("--root", default=".", help="repo root judges resolve artifacts from")
    judge.set_defaults(func=_judge)

    pairs = subparsers.add_parser("pairs", help="sample the policy, judge, write on-policy pairs")
    pairs.add_argument("--policy", default=None, help="policy name/path (default: model.policy)")
    pairs.add_argument("--root", default=".", help="repo root (data paths are relative to it)")
    pairs.set_defaults(func=_pairs)


def _judge(args) -> int:
    import numpy as np

    from paretoflow import schema
    from paretoflow.config import load_params
    from paretoflow.judges import build_mixture

    params = load_params(args.params)
    mixture = build_mixture(params, Path(args.root))
    if args.prompt is not None:
        if args.response is None:
            raise ValueError("--prompt needs --response")
        tags = [t.strip() for t in args.tags.split(",") if t.strip()]
        values, per_judge = mixture.score_detailed([args.prompt], [args.response], [tags])
        for name in mixture.objective_names:
            judges = ", ".join(f"{j}={s[0]:.4f}" for j, s in per_judge[name].items())
            print(f"{name}: {values[name][0]:.4f}  ({judges})")
        return 0

    path = Path(args.file)
    responses_path = path / "responses.parquet" if path.is_dir() else path
    prompts_path = responses_path.parent / "prompts.parquet"
    for p in (responses_path, prompts_path):
        if not p.exists():
            raise FileNotFoundError(f"canonical table not found: {p}")
    responses = schema.read("responses", responses_path, required=["response_id", "prompt_id", "text"])
    prompts = schema.read("prompts", prompts_path, required=["prompt_id", "text"]).set_index("prompt_id")
    unknown = sorted(set(responses["prompt_id"]) - set(prompts.index))
    if unknown:
        raise ValueError(f"{responses_path}: {len(unknown)} responses name unknown prompt ids, e.g. {unknown[0]}")
    prompt_rows = prompts.loc[responses["prompt_id"]]
    tags = [json.loads(t) if isinstance(t, str) else [] for t in prompt_rows.get("tags", [None] * len(responses))]
    values = mixture.score(list(prompt_rows["text"]), list(responses["text"]), tags)
    print(f"{len(responses)} responses from {responses_path}")
    for name in mixture.objective_names:
        v = values[name]
        print(f"{name}: mean {np.mean(v):.4f}  std {np.std(v):.4f}  min {np.min(v):.4f}  max {np.max(v):.4f}")
    return 0


def _pairs(args) -> int:
    from paretoflow.config import load_params
    from paretoflow.pairs import run

    result = run(load_params(args.params), Path(args.root), policy_path=args.policy)
    print(f"wrote {result.n_pairs} pairs from {result.n_responses} responses "
          f"to {result.n_prompts} prompts in {result.out_dir}")
    for key, value in result.metrics.items():
        print(f"  {key}: {value}")
    return 0
