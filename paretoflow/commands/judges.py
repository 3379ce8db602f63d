"""`paretoflow judge`: score text, tables or preference files with the judge mixture."""

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
    source.add_argument("--pairs", help="a preference file (prompt / chosen / rejected, any supported format): "
                        "how often each objective's scorer prefers the chosen answer, per `kind` column if any")
    judge.add_argument("--format", default="auto", help="format of --pairs (default: detected)")
    judge.add_argument("--response", help="response text (with --prompt)")
    judge.add_argument("--tags", default="", help="comma-separated prompt tags, e.g. harmful")
    judge.add_argument("--root", default=".", help="repo root judges resolve artifacts from")
    judge.set_defaults(func=_judge)


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
    if args.pairs is not None:
        return _judge_pairs(args, params, mixture)

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


def _judge_pairs(args, params, mixture) -> int:
    """`judge --pairs FILE`: per objective (and per `kind` when the file has that column),
    the rate at which the objective's scorer ranks chosen above rejected, Wilson interval."""
    import pandas as pd

    from paretoflow.data.importers import read_file
    from paretoflow.judges.battery import preference_rates, rates_table

    objective = params.objective_names[0]  # which objective a pair file speaks for does not matter here
    imported = read_file(Path(args.pairs), params.objectives, args.format, objective)
    rows, tags = [], []
    for record in imported.records:
        prompt = next(t["content"] for t in reversed(record.messages) if t["role"] == "user")
        for pair in record.pairs:
            kind = record.metadata.get("kind", "all") if isinstance(record.metadata, dict) else "all"
            rows.append({"prompt": prompt, "chosen": record.responses[pair.chosen_index],
                         "rejected": record.responses[pair.rejected_index], "kind": str(kind)})
            tags.append(record.tags)
    print(f"{args.pairs}: {imported.rows_in} rows, {len(rows)} pairs scored, {len(imported.quarantined)} quarantined")
    for q in imported.quarantined[:5]:
        print(f"  quarantined {q.location}: {q.reason}: {q.detail}")
    if not rows:
        raise ValueError(f"{args.pairs}: no (prompt, chosen, rejected) pair to score")
    battery = pd.DataFrame(rows, columns=["prompt", "chosen", "rejected", "kind"])
    print("chosen preferred by each objective's scorer, rate [95% Wilson interval]:")
    print(rates_table(preference_rates(mixture.score, battery, tags)))
    return 0
