"""`paretoflow plan`: expected peak memory per stage and per GPU; refuses what will not fit.

    paretoflow plan                                         # model.policy, project.profile
    paretoflow plan --policy /models/llama3-8b --profile gpu --gpu-memory-gb 80
    paretoflow plan --profile gpu --num-processes 8 --fsdp

Reads only the policy's config.json (paretoflow/plan.py states the formulas). Exit 0 when
every stage fits, 3 when one does not (the message names the setting to change).
"""

from __future__ import annotations

import sys


def _handle(args) -> int:
    from paretoflow.config import load_params
    from paretoflow.plan import GIB, default_device_bytes, format_plan, memory_plan, read_policy_config

    params = load_params(args.params)
    if args.profile:
        params.project.profile = args.profile
    policy = args.policy or params.model.policy
    config = read_policy_config(policy, params.model.cache_dir)
    device = (int(args.gpu_memory_gb * GIB) if args.gpu_memory_gb is not None
              else default_device_bytes(params.project.profile))
    plan = memory_plan(params, config, policy=policy, device_bytes=device,
                       num_processes=args.num_processes, fsdp=args.fsdp)
    print(format_plan(plan))
    failures = plan.failures()
    for line in failures:
        print(f"paretoflow plan: will not fit: {line}", file=sys.stderr)
    return 3 if failures else 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("plan", help="expected peak memory per stage; refuse what will not fit",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=None, help="policy folder (its config.json; default: model.policy)")
    parser.add_argument("--profile", choices=["cpu", "gpu"], default=None, help="override project.profile")
    parser.add_argument("--gpu-memory-gb", type=float, default=None,
                        help="device memory in GiB (default: GPU 0's via torch.cuda; host RAM on cpu)")
    parser.add_argument("--num-processes", type=int, default=1, help="processes (GPUs) of the align stage")
    parser.add_argument("--fsdp", action="store_true", help="align shards weights and LoRA state (FSDP)")
    parser.set_defaults(func=_handle)
