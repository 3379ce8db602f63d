"""Training throughput of our LoRA DPO step vs TRL's DPOTrainer, same run, same settings.

    .venv/bin/python bench/align.py            # default policy (SmolLM2-135M)
    .venv/bin/python bench/align.py --tiny     # 2-layer test model, seconds
    .venv/bin/python bench/align.py --max-length 512 --batch-size 16 --json align.json

Both trainers get the same model, the same pairs (conversational prompt, assistant
answers, short enough that neither truncates), the same batch size, LoRA config (r,
alpha, dropout, all linear layers), optimizer (AdamW, constant lr), precision (fp32 on
CPU, bf16 autocast on CUDA) and precomputed reference log-probs (TRL:
`precompute_ref_log_probs=True`; ours always). TRL defaults that differ are set
equal: `gradient_checkpointing=False` (TRL default True, recomputes activations) and
`bf16` only where ours uses it. The first step of each is a warmup and is not timed.

Rows have the requested length: each pair's chosen and rejected answers are filled with
words until prompt + answer + end of turn, tokenized as our trainer tokenizes them
(`paretoflow.align.data.tokenize_pairs`), is `--max-length` tokens or one word short of
it. The mean row length each trainer actually trained on is measured from its batches
and printed (TRL renders the answer as an assistant turn, so its rows may differ by a
token or two, and it truncates at `--max-length` too).

Throughput = non-padding tokens of the batches the timed steps consumed (chosen and
rejected rows, prompt counted in both, as both trainers feed them) / wall time of those
steps (TRL: between consecutive `on_step_end` callbacks; ours: each step's own timer).
Prints tokens/s of both, the ratio ours / TRL (target >= 1.0x), and the MFU of each.

MFU = model FLOPs per second / peak FLOP/s. Model FLOPs per trained token (one policy
forward + backward; the reference log-probs are precomputed before the timed steps, so
they are not counted):
    4·N_frozen + 6·N_lora + 12·L·d·S
N counts the weights that take part in matmuls (every nn.Linear of the base, lm_head
included, embeddings lookups and norms not). The 6N of Kaplan et al. 2020 / Chinchilla
(Hoffmann et al. 2022) is 2N forward + 4N backward, the backward computing gradients of
activations (2N) and of weights (2N); a frozen LoRA base computes no weight gradients, so
it costs 4N, and the LoRA factors (A: r×in, B: out×r on every targeted linear) cost 6N.
12·L·d·S is the attention term of PaLM (Chowdhery et al. 2022, appendix B: QKᵀ and AV,
forward and backward, with L layers, model width d and S the mean row length measured
here); it has no weights, so it is the same with LoRA. Padding and the causal mask's
skipped half are not discounted (the PaLM convention).
Peak: `--peak-tflops` if given; on CUDA the dense bf16 datasheet figure of a known card
(PEAK_TFLOPS); otherwise, and always on CPU, a matmul rate measured in this process
(square matmuls in the training dtype, best of several, same threads): so CPU MFU is
relative to what this machine's matmul kernel reaches now, not to a datasheet.
`--json PATH` writes the settings, both rows and the FLOP/peak figures.
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
from paretoflow.io import write_json  # noqa: E402

TOPICS = ["the sea", "sleep", "photosynthesis", "a budget", "bread", "the moon", "rain", "chess",
          "gardens", "trains", "music", "bees", "glaciers", "tea", "maps", "bridges"]


# Dense bf16 tensor-core peaks from the vendors' datasheets (no sparsity), TFLOP/s.
PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0}
CHOSEN_WORDS = ("is a fascinating subject. Here is one clear point about it, with an example "
                "that makes it easy to remember, and a second point that follows from it.").split()
REJECTED_WORDS = "I do not know much about this. Maybe ask someone else, or look it up later.".split()


def _filled(tokenizer, prompt_tokens: int, lead: str, words: list[str], max_length: int) -> str:
    """`lead` plus as much of `words` (cycled) as fits a row of `max_length` tokens:
    prompt + answer + end of turn, tokenized as `tokenize_pairs` does. Whole words first
    (binary search), then the next word's letters one at a time, so the row reaches the
    length unless one more letter would add two tokens."""
    def tokens(text: str) -> int:
        return prompt_tokens + len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1

    def text(k: int) -> str:
        return " ".join([lead, *(words[i % len(words)] for i in range(k))])

    low, high = 0, 1
    while tokens(text(high)) <= max_length:
        low, high = high, 2 * high
    while high - low > 1:  # the largest k whose row fits
        middle = (low + high) // 2
        low, high = (middle, high) if tokens(text(middle)) <= max_length else (low, middle)
    filled, letters = text(low) + " ", words[low % len(words)]
    for letter in letters:
        if tokens(filled + letter) > max_length:
            break
        filled += letter
    return filled.rstrip()


def make_examples(n: int, tokenizer, max_length: int) -> list[PairExample]:
    """n pairs whose chosen and rejected rows fill `max_length` tokens (only the topic
    differs between pairs), so both trainers' timed steps see the requested length
    whatever order they shuffle the pairs in."""
    examples = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        messages = [{"role": "user", "content": f"Please explain {topic} to a curious friend in simple words."}]
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt_tokens = len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
        if prompt_tokens >= max_length // 2:
            raise ValueError(f"--max-length {max_length} leaves no room: the prompt alone is {prompt_tokens} tokens")
        chosen = _filled(tokenizer, prompt_tokens, f"Sure. {topic.capitalize()}", CHOSEN_WORDS, max_length)
        rejected = _filled(tokenizer, prompt_tokens, f"About {topic}:", REJECTED_WORDS, max_length)
        examples.append(PairExample(pair_id=f"x{i}", prompt_id=f"p{i}", messages=messages,
                                    chosen_text=chosen, rejected_text=rejected,
                                    chosen_margins=[0.0], rejected_margins=[0.0]))
    return examples


def matmul_counts(policy: str, r: int) -> dict[str, int]:
    """Weights in matmuls of the base (every nn.Linear, lm_head included), of the LoRA
    factors on every targeted linear (all but lm_head: peft's "all-linear"), layers, width."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(policy)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    output = model.get_output_embeddings()
    frozen = sum(m.weight.numel() for _, m in linears)
    lora = sum(r * (m.in_features + m.out_features) for _, m in linears if m is not output)
    return {"n_frozen": frozen, "n_lora": lora, "layers": config.num_hidden_layers, "width": config.hidden_size}


def flops_per_token(counts: dict[str, int], mean_row_tokens: float) -> float:
    """4·N_frozen + 6·N_lora + 12·L·d·S (module docstring)."""
    return (4 * counts["n_frozen"] + 6 * counts["n_lora"]
            + 12 * counts["layers"] * counts["width"] * mean_row_tokens)


def measured_matmul_tflops(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """Best TFLOP/s of `repeats` square `size` matmuls in `dtype` on this process's device."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first one warms up
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e12


def peak(args, bf16: bool) -> tuple[float, str]:
    """(peak TFLOP/s, where it comes from): module docstring."""
    if args.peak_tflops:
        return args.peak_tflops, "given (--peak-tflops)"
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for key, value in PEAK_TFLOPS.items():
            if key in name:
                return value, f"datasheet dense bf16 ({key})"
    dtype = torch.bfloat16 if bf16 else torch.float32
    return measured_matmul_tflops(dtype), f"measured {str(dtype).removeprefix('torch.')} 2048x2048 matmul, this process"


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


def _row(name: str, rate: float, tokens: int, seconds: float, args, counts, peak_tflops: float) -> dict:
    mean_row = tokens / (2 * args.batch_size * args.steps)     # chosen and rejected rows per pair
    flops = flops_per_token(counts, mean_row)
    return {"trainer": name, "tokens_per_s": rate, "tokens": tokens, "seconds": seconds,
            "mean_row_tokens": mean_row, "flops_per_token": flops,
            "achieved_tflops": rate * flops / 1e12, "mfu": rate * flops / (peak_tflops * 1e12)}


def _policy(args, out: Path) -> str:
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
    return policy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the 2-layer test model instead of SmolLM2")
    parser.add_argument("--steps", type=int, default=4, help="timed steps (after 1 warmup step)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128, help="tokens per row (prompt + answer)")
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--policy", default=None, help="a local HF folder (overrides --tiny)")
    parser.add_argument("--random-weights", action="store_true",
                        help="the policy folder's architecture with random weights (config + tokenizer only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="peak TFLOP/s for MFU (default: datasheet for known GPUs, else a measured matmul)")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from paretoflow.models import load_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        policy = _policy(args, out)
        bf16 = torch.cuda.is_available()
        examples = make_examples(args.batch_size * (args.steps + 1), load_tokenizer(policy), args.max_length)
        counts = matmul_counts(policy, args.r)
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()}"
        print(f"policy={policy} device={device} batch={args.batch_size} pairs/step, "
              f"max_length={args.max_length}, LoRA r={args.r} all-linear, bf16={bf16}, "
              f"{args.steps} timed steps after 1 warmup", flush=True)
        peak_tflops, peak_source = peak(args, bf16)
        # TRL first, then ours: if anything, later runs see a warmer cache and allocator.
        trl = _row("trl", *bench_trl(policy, examples, args, bf16, out), args, counts, peak_tflops)
        ours = _row("paretoflow", *bench_ours(policy, examples, args, bf16, out), args, counts, peak_tflops)
    print(f"N_frozen={counts['n_frozen']:,} N_lora={counts['n_lora']:,} (matmul weights); "
          f"peak {peak_tflops:.3f} TFLOP/s ({peak_source})")
    for label, row in (("TRL DPOTrainer", trl), ("paretoflow", ours)):
        print(f"{label:15s}: {row['tokens_per_s']:10.1f} tokens/s  ({row['tokens']} tokens in {row['seconds']:.2f} s, "
              f"mean row {row['mean_row_tokens']:.1f} tokens)  {row['achieved_tflops']:.4f} TFLOP/s  "
              f"MFU {100 * row['mfu']:.1f}%")
    ratio = ours["tokens_per_s"] / trl["tokens_per_s"]
    print(f"ratio ours/TRL : {ratio:.2f}x")
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        write_json(args.json, {"policy": policy, "device": device, "bf16": bf16, "settings": settings,
                               "flops_convention": "4*N_frozen + 6*N_lora + 12*L*d*S per trained token",
                               **counts, "peak_tflops": peak_tflops, "peak_source": peak_source,
                               "rows": [trl, ours], "ratio_ours_trl": ratio}, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
