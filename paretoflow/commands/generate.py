"""`paretoflow generate`: answer a prompt with the exact expert merge for given weights
(the front stage's own command, `paretoflow front`, is in paretoflow/stages/front.py).

    paretoflow generate --weights 0.7,0.2,0.1 "How do I sleep better?"
"""

from __future__ import annotations

from pathlib import Path

from paretoflow.commands import parse_weights


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
    gen = subparsers.add_parser("generate", help="answer a prompt with the exact expert merge for given weights")
    gen.add_argument("prompt", help="the user message")
    gen.add_argument("--weights", required=True, help="one weight per objective, e.g. 0.7,0.2,0.1")
    gen.add_argument("--root", default=".", help="project root holding artifacts/adapters")
    gen.add_argument("--max-new-tokens", type=int, default=None, help="default: front budget max_new_tokens")
    gen.add_argument("--profile", choices=["cpu", "gpu"], default=None, help="override project.profile")
    gen.set_defaults(func=_generate)
