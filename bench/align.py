"""Training throughput of our LoRA DPO step vs TRL's DPOTrainer, same run, same settings.

    .venv/bin/python bench/align.py            # default policy (SmolLM2-135M)
    .venv/bin/python bench/align.py --tiny     # 2-layer test model, seconds

Both trainers get the same model, the same pairs (conversational prompt, assistant
answers, short enough that neither truncates), the same batch size, LoRA config (r,
alpha, dropout, all linear layers), optimizer (AdamW, constant lr), precision (fp32 on
CPU, bf16 autocast on CUDA) and precomputed reference log-probs (TRL:
`precompute_ref_log_probs=True`; ours always). TRL defaults that differ are set
equal: `gradient_checkpointing=False` (TRL default True, recomputes activations) and
`bf16` only where ours uses it. The first step of each is a warmup and is not timed.

Throughput = non-padding tokens of the batches the timed steps consumed (chosen and
rejected rows, prompt counted in both, as both trainers feed them) / wall time of those
steps (TRL: between consecutive `on_step_end` callbacks; ours: each step's own timer).
Prints tokens/s of both and the ratio ours / TRL (target >= 1.0x).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from paretoflow.align.data import PairExample  # noqa: E402
from paretoflow.align.trainer import train_adapter  # noqa: E402
from paretoflow.config import AlignBudget  # noqa: E402

TOPICS = ["the sea", "sleep", "photosynthesis", "a budget", "bread", "the moon", "rain", "chess",
          "gardens", "trains", "music", "bees", "glaciers", "tea", "maps", "bridges"]


def make_examples(n: int) -> list[PairExample]:
    """n pairs of near-equal length (only the topic differs), so that both trainers'
    timed steps see about the same tokens whatever order they shuffle the pairs in."""
    examples = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        prompt = f"Please explain {topic} to a curious friend in simple words."
        chosen = (f"Sure. {topic.capitalize()} is a fascinating subject. " +
                  "Here is one clear point about it, with an example. " * 4)
        rejected = f"I do not know much about {topic}. " + "Maybe ask someone else. " * 3
        examples.append(PairExample(pair_id=f"x{i}", prompt_id=f"p{i}",
                                    messages=[{"role": "user", "content": prompt}],
                                    chosen_text=chosen.strip(), rejected_text=rejected.strip(),
                                    chosen_margins=[0.0], rejected_margins=[0.0]))
    return examples


def bench_ours(policy: str, examples, args, bf16: bool, out: Path) -> tuple[float, int, float]:
    config = AlignBudget(
        lora_r=args.r, lora_alpha=2.0 * args.r, lora_dropout=0.05, batch_size=args.batch_size,
        eval_batch_size=args.batch_size, max_steps=args.steps + 1, eval_steps=10_000,
        checkpoint_steps=10_000, max_val_pairs=0, max_length=args.max_length,
        max_prompt_tokens=args.max_length // 2, learning_rate=5e-4,
        mixed_precision="bf16" if bf16 else "no",
        early_stopping_metric="val_loss", selection_prompts=0,  # throughput only: no selection
    )
    result = train_adapter(config, policy, examples, [], out / "ours", seed=0, progress=False)
    history = __import__("json").loads((out / "ours" / "train_log.json").read_text())["steps"][1:]
    tokens = sum(h["tokens"] for h in history)
    seconds = sum(h["step_time_s"] for h in history)
    assert result.completed
    return tokens / seconds, tokens, seconds


def bench_trl(policy: str, examples, args, bf16: bool, out: Path) -> tuple[float, int, float]:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import DPOConfig, DPOTrainer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from paretoflow.models import load_tokenizer

    tokenizer = load_tokenizer(policy)
    dataset = Dataset.from_list([
        {"prompt": e.messages, "chosen": [{"role": "assistant", "content": e.chosen_text}],
         "rejected": [{"role": "assistant", "content": e.rejected_text}]} for e in examples
    ])
    step_ends: list[float] = []
    batch_tokens: list[int] = []

    class Timer(TrainerCallback):
        def on_step_end(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            step_ends.append(time.perf_counter())

    class CountingCollator(DataCollatorForPreference):
        def torch_call(self, features):
            batch = super().torch_call(features)
            batch_tokens.append(int(batch["attention_mask"].sum()))
            return batch

    config = DPOConfig(
        output_dir=str(out / "trl"), per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1, max_steps=args.steps + 1, learning_rate=5e-4,
        lr_scheduler_type="constant", beta=0.1, max_length=args.max_length,
        precompute_ref_log_probs=True, precompute_ref_batch_size=args.batch_size,
        gradient_checkpointing=False, bf16=bf16, use_cpu=not torch.cuda.is_available(),
        logging_steps=10_000, save_strategy="no", report_to="none", seed=0,
        dataloader_num_workers=0, disable_tqdm=True, weight_decay=0.0,
    )
    model = AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32, use_safetensors=True)
    lora = LoraConfig(r=args.r, lora_alpha=2 * args.r, lora_dropout=0.05, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora, callbacks=[Timer()],
                         data_collator=CountingCollator(pad_token_id=tokenizer.pad_token_id))
    trainer.train()
    # step k consumed batch k (no accumulation); step 0 is the warmup
    collated = batch_tokens[-(args.steps + 1):]
    tokens = sum(collated[1:])
    seconds = step_ends[-1] - step_ends[0]
    return tokens / seconds, tokens, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the 2-layer test model instead of SmolLM2")
    parser.add_argument("--steps", type=int, default=4, help="timed steps (after 1 warmup step)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--policy", default=None, help="a local HF folder (overrides --tiny)")
    parser.add_argument("--random-weights", action="store_true",
                        help="the policy folder's architecture with random weights (config + tokenizer only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if args.policy:
            policy = args.policy
        elif args.tiny:
            from paretoflow.models import build_tiny_policy

            policy = str(build_tiny_policy(out / "tiny", seed=0))
        else:
            from paretoflow.models import resolve_policy_path

            policy = resolve_policy_path("default", ".cache/models")
        if args.random_weights:  # same architecture and FLOPs, no weights file needed
            from transformers import AutoConfig, AutoModelForCausalLM

            from paretoflow.models import load_tokenizer

            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(policy))
            model.save_pretrained(out / "random", safe_serialization=True)
            load_tokenizer(policy).save_pretrained(out / "random")
            policy = str(out / "random")
        bf16 = torch.cuda.is_available()
        examples = make_examples(args.batch_size * (args.steps + 1))
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()}"
        print(f"policy={policy} device={device} batch={args.batch_size} pairs/step, "
              f"max_length={args.max_length}, LoRA r={args.r} all-linear, bf16={bf16}, "
              f"{args.steps} timed steps after 1 warmup", flush=True)
        # TRL first, then ours: if anything, later runs see a warmer cache and allocator.
        trl_rate, trl_tokens, trl_seconds = bench_trl(policy, examples, args, bf16, out)
        ours_rate, ours_tokens, ours_seconds = bench_ours(policy, examples, args, bf16, out)
    print(f"TRL DPOTrainer : {trl_rate:10.1f} tokens/s  ({trl_tokens} tokens in {trl_seconds:.2f} s)")
    print(f"paretoflow     : {ours_rate:10.1f} tokens/s  ({ours_tokens} tokens in {ours_seconds:.2f} s)")
    print(f"ratio ours/TRL : {ours_rate / trl_rate:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
