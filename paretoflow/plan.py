"""A memory plan before anything runs: expected peak memory per stage and per device.

Reads only the policy's config.json (the architecture) and the params (profile and
budgets); builds the model on the meta device (accelerate's `init_empty_weights`, no
weights read) so parameter counts come from accelerate's `compute_module_sizes`, not
from a formula per architecture. Everything else is the formulas below, in bytes.

Notation: h hidden size, i MLP intermediate size, L decoder layers, a attention heads,
kv key/value heads, d head dim, V vocabulary, r LoRA rank, R rows (sequences) of one
forward, T tokens per row, n = R·T tokens; b_w bytes per weight in the loading dtype,
b_a bytes per activation (2 under bf16 autocast, else 4).

- weights       = Σ params · b_w (accelerate; tied embeddings counted once)
- LoRA state    = P_lora · (4 + 4 + 8): fp32 params, fp32 grads, AdamW exp_avg + exp_avg_sq
                  with P_lora = Σ over targeted linears r·(in + out)
- activations   (saved for backward, per token per decoder layer, LoRA on every linear;
                  counted on CPU with saved-tensor hooks, tests/paretoflow/test_plan.py):
                  A = (15h + 5i + a + 7r)·b_a + 2h·(4 - b_a)  with LoRA dropout > 0
                  (the dropout copies of the 7 linears' inputs are 6h + i of it; without
                  dropout A loses them). The second term: RMSNorm keeps its fp32 input.
    no checkpointing: n·L·A
    checkpointing:    n·L·h·b_a (each layer's input) + n·A (one layer recomputed in backward)
- backward work = n·(2h + 2i)·b_a (gradients of one layer's hidden states in flight)
- logits        = m·V·(4 + 4 + (b_a if b_a == 2 else 0)): fp32 logits kept for backward,
                  their fp32 gradient, the bf16 head output; m = response tokens (≤ n) or
                  the chunk (align.<profile>.logps_chunk_tokens), recomputed in backward
- forward only  = n·(2i + 2h)·b_a (one layer in flight) + n·h·b_a + logits without grad
- KV cache      = 2·L·kv·d·b_a·R·(prompt + new tokens); generate keeps only the last
                  position's logits (R·V·4·2)
- attention mask: R·T²·4 (the sdpa mask of a padded batch, once per forward)

Usable device memory = 95% of the device minus 1 GiB (CUDA context, allocator
fragmentation). Not modelled: allocator caching beyond that margin, NCCL buffers,
activation memory of non-Llama-like blocks (MoE, sliding windows).

    paretoflow plan                               # the configured policy and profile
    paretoflow plan --policy /models/llama3-8b --profile gpu --gpu-memory-gb 80
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

GIB = 1024**3
# SmolLM2-135M-Instruct (the "default" policy), for a plan before the GGUF was ever
# dequantized: the values of its config.json as materialize_default_policy writes it.
DEFAULT_POLICY_CONFIG = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 576,
    "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
    "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True,
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
}
MINILM_PARAMS = 22_713_216  # all-MiniLM-L6-v2 (sentence-transformers), fp32
# Reward-backbone copies resident per stage in today's code (one per RewardModel object):
# pairs: the judge mixture's reward judge (judges/reward_model.py); align: the MODPO margin
# rater (align/margins.py) and the selection judges (align/selection.py); front: its two
# scorers (front/stage.py).
REWARD_COPIES = {"pairs": 1, "reward": 1, "align": 2, "front": 2}


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs of an architecture (from config.json + a meta-device model)."""

    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    params: int  # distinct parameters (tied embeddings once)
    layer_params: int  # one decoder layer
    linear_shapes: tuple[tuple[str, int, int], ...]  # (name, in, out) of every linear but the head

    def lora_params(self, rank: int, target_modules: str | list[str]) -> int:
        """Σ r·(in + out) over the linears peft would wrap ("all-linear" = all but the head)."""
        if target_modules == "all-linear":
            chosen = self.linear_shapes
        else:
            targets = [target_modules] if isinstance(target_modules, str) else list(target_modules)
            chosen = tuple(s for s in self.linear_shapes if s[0].split(".")[-1] in targets)
        return sum(rank * (n_in + n_out) for _, n_in, n_out in chosen)

    def weights_up_to(self, layer: int) -> int:
        """Params of a copy that runs only the first `layer` decoder layers (0 = all)."""
        if not layer or layer >= self.layers:
            return self.params
        return self.params - (self.layers - layer) * self.layer_params


def read_policy_config(policy: str, cache_dir: str | Path = ".cache/models") -> dict[str, Any]:
    """config.json of the policy folder (the only file read); the default's known values."""
    from paretoflow.models import DEFAULT_CACHE_NAME, DEFAULT_POLICY

    if policy == DEFAULT_POLICY:
        cached = Path(cache_dir) / DEFAULT_CACHE_NAME / "config.json"
        return json.loads(cached.read_text()) if cached.exists() else dict(DEFAULT_POLICY_CONFIG)
    path = Path(policy)
    path = path if path.name == "config.json" else path / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"memory plan: no config.json at {path} (model.policy or --policy)")
    return json.loads(path.read_text())


def model_shape(config: dict[str, Any]) -> ModelShape:
    """Shape and parameter counts, the model built on the meta device (no weights)."""
    import torch
    from accelerate import init_empty_weights
    from accelerate.utils import compute_module_sizes
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(**config)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    sizes = compute_module_sizes(model, dtype=torch.float32)  # bytes at 4 per element
    decoder = model.get_decoder()
    layer_names = [n for n, _ in model.named_modules() if n.endswith(".layers.0")]
    head = model.get_output_embeddings()
    linears = tuple((name, m.in_features, m.out_features) for name, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear) and m is not head)
    heads = cfg.num_attention_heads
    return ModelShape(
        model_type=cfg.model_type, hidden=cfg.hidden_size, intermediate=cfg.intermediate_size,
        layers=cfg.num_hidden_layers, heads=heads, kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
        head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads, vocab=cfg.vocab_size,
        params=sum(p.numel() for p in model.parameters()),
        layer_params=sizes[layer_names[0]] // 4 if layer_names else sum(
            p.numel() for p in decoder.layers[0].parameters()),
        linear_shapes=linears)


# ------------------------------------------------------------------ the formulas


def activation_bytes_per_token_layer(shape: ModelShape, rank: int, dropout: float, act_bytes: int) -> int:
    """A of the module docstring: bytes one token keeps for backward in one decoder layer."""
    h, i = shape.hidden, shape.intermediate
    elements = 15 * h + 5 * i + shape.heads + 7 * rank
    if dropout == 0:
        elements -= 6 * h + i  # no dropout copies: the LoRA A matmuls read the shared input
    return elements * act_bytes + 2 * h * (4 - act_bytes)


def logits_bytes(tokens: int, vocab: int, act_bytes: int, grad: bool) -> int:
    """fp32 logits (+ their fp32 gradient in training, + the bf16 head output)."""
    per = 4 + (4 if grad else 0) + (act_bytes if act_bytes == 2 else 0)
    return tokens * vocab * per


def kv_cache_bytes(shape: ModelShape, rows: int, tokens: int, act_bytes: int) -> int:
    return 2 * shape.layers * shape.kv_heads * shape.head_dim * act_bytes * rows * tokens


def forward_bytes(shape: ModelShape, rows: int, tokens: int, act_bytes: int, logit_tokens: int) -> int:
    """Transient memory of a no-grad forward: one layer in flight + hidden + logits + mask."""
    n = rows * tokens
    h, i = shape.hidden, shape.intermediate
    return (n * (2 * i + 3 * h) * act_bytes + logits_bytes(logit_tokens, shape.vocab, act_bytes, grad=False)
            + rows * tokens * tokens * 4)


def train_step_bytes(shape: ModelShape, rows: int, tokens: int, rank: int, dropout: float, act_bytes: int,
                     checkpointing: bool, chunk_tokens: int, response_tokens: int | None = None) -> dict[str, int]:
    """Activations, logits and backward work of one training micro-batch (bytes).

    `response_tokens`: positions whose logits are computed (the fast path skips the
    prompt); None = every token, the upper bound the stage plans use."""
    n = rows * tokens
    response = n if response_tokens is None else response_tokens
    per_layer = activation_bytes_per_token_layer(shape, rank, dropout, act_bytes)
    if checkpointing:
        activations = n * shape.layers * shape.hidden * act_bytes + n * per_layer
    else:
        activations = n * shape.layers * per_layer
    logit_tokens = min(chunk_tokens, response) if chunk_tokens else response
    return {
        "activations": activations + rows * tokens * tokens * 4,
        "logits": logits_bytes(logit_tokens, shape.vocab, act_bytes, grad=True),
        "backward work": n * (2 * shape.hidden + 2 * shape.intermediate) * act_bytes,
    }


# ------------------------------------------------------------------ per stage


@dataclass
class StagePlan:
    """Expected peak of one stage on one device: resident parts + the largest phase."""

    stage: str
    resident: dict[str, int]
    phases: dict[str, dict[str, int]]
    advice: dict[str, str] = field(default_factory=dict)  # phase → the setting to change

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=lambda p: sum(self.phases[p].values()))

    @property
    def peak_bytes(self) -> int:
        return sum(self.resident.values()) + sum(self.phases[self.peak_phase].values())


@dataclass(frozen=True)
class Precision:
    weight_bytes: int  # the policy's loading dtype
    act_bytes: int  # activations (bf16 autocast on the gpu profile with CUDA)


def profile_precision(profile: str, base_dtype: str = "auto", mixed_precision: str = "auto",
                      cuda: bool | None = None) -> Precision:
    """bf16 weights and activations on the gpu profile (a GPU assumed when planning for it)."""
    on_gpu = profile == "gpu" if cuda is None else (profile == "gpu" and cuda)
    weight = {"float32": 4, "bfloat16": 2}.get(base_dtype, 2 if on_gpu else 4)
    act = {"no": 4, "bf16": 2, "fp16": 2}.get(mixed_precision, 2 if on_gpu else 4)
    return Precision(weight, act)


def reward_copy_bytes(params, shape: ModelShape) -> int:
    """One reward backbone: the policy up to the read layer, fp32 (reward/features.py), or MiniLM."""
    budget = params.reward.budget(params.project.profile)
    if budget.backbone == "policy":
        return shape.weights_up_to(budget.layer) * 4
    return MINILM_PARAMS * 4


def generation_phase(shape: ModelShape, rows: int, prompt: int, new: int, act_bytes: int) -> dict[str, int]:
    return {"KV cache": kv_cache_bytes(shape, rows, prompt + new, act_bytes),
            "prefill": forward_bytes(shape, rows, prompt, act_bytes, logit_tokens=rows)}


def plan_pairs(params, shape: ModelShape, precision: Precision) -> StagePlan:
    b = params.pairs.budget(params.project.profile)
    return StagePlan("pairs", {"policy weights": shape.params * precision.weight_bytes,
                               "reward backbone": REWARD_COPIES["pairs"] * reward_copy_bytes(params, shape)},
                     {"generate": generation_phase(shape, b.batch_size, b.max_prompt_tokens, b.max_new_tokens,
                                                   precision.act_bytes)},
                     {"generate": "pairs.<profile>.batch_size or max_new_tokens"})


def plan_reward(params, shape: ModelShape) -> StagePlan:
    b = params.reward.budget(params.project.profile)
    resident = {"reward backbone": reward_copy_bytes(params, shape)}
    if b.backbone != "policy":  # MiniLM: small, no plan of its activations needed
        return StagePlan("reward", resident, {"features": {}})
    kept = replace(shape, layers=min(b.layer, shape.layers)) if b.layer else shape
    return StagePlan("reward", resident, {"features": {"forward": forward_bytes(kept, b.batch_size, b.max_length, 4, 0)}},
                     {"features": "reward.<profile>.batch_size or max_length"})


def plan_align(params, shape: ModelShape, precision: Precision, shards: int = 1) -> StagePlan:
    """Training session: weights + LoRA state + reward copies, then the largest phase."""
    b = params.align.budget(params.project.profile)
    lora = shape.lora_params(b.lora_r, b.target_modules)
    resident = {"policy weights": shape.params * precision.weight_bytes // shards,
                "LoRA params + grads + AdamW": lora * 16 // shards,
                "reward backbones": REWARD_COPIES["align"] * reward_copy_bytes(params, shape)}
    act = precision.act_bytes
    train = train_step_bytes(shape, 2 * b.batch_size, b.max_length, b.lora_r, b.lora_dropout, act,
                             b.gradient_checkpointing, b.logps_chunk_tokens)
    ref_rows = 2 * b.eval_batch_size
    ref_logits = min(b.logps_chunk_tokens, ref_rows * b.max_length) if b.logps_chunk_tokens else ref_rows * b.max_length
    phases = {"train step": train,
              "reference pass": {"forward": forward_bytes(shape, ref_rows, b.max_length, act, ref_logits)},
              "selection": generation_phase(shape, b.selection_batch_size, b.max_prompt_tokens,
                                            b.selection_max_new_tokens, act)}
    if shards > 1:  # FSDP: generation gathers the full weights on every rank
        phases["selection"]["gathered weights"] = shape.params * precision.weight_bytes
    advice = {"train step": ("align.<profile>.gradient_checkpointing: true, a smaller batch_size or max_length"
                             if not b.gradient_checkpointing else "align.<profile>.batch_size or max_length")
              + (", logps_chunk_tokens" if train["logits"] > train["activations"] else ""),
              "reference pass": "align.<profile>.eval_batch_size or logps_chunk_tokens",
              "selection": "align.<profile>.selection_batch_size"}
    return StagePlan("align", resident, phases, advice)


def plan_front(params, shape: ModelShape, precision: Precision) -> StagePlan:
    b = params.front.budget(params.project.profile)
    a = params.align.budget(params.project.profile)
    experts = len(params.objectives)
    return StagePlan("front", {"policy weights": shape.params * precision.weight_bytes,
                               "expert adapters": experts * shape.lora_params(a.lora_r, a.target_modules) * 4,
                               "reward backbones": REWARD_COPIES["front"] * reward_copy_bytes(params, shape)},
                     {"generate": generation_phase(shape, b.batch_size, b.max_prompt_tokens, b.max_new_tokens,
                                                   precision.act_bytes)},
                     {"generate": "front.<profile>.batch_size or max_new_tokens"})


# ------------------------------------------------------------------ the whole plan


@dataclass
class MemoryPlan:
    profile: str
    policy: str
    shape: ModelShape
    precision: Precision
    stages: list[StagePlan]
    device_bytes: int | None  # the device's total memory (None: unknown, nothing refused)
    num_processes: int = 1
    fsdp: bool = False

    @property
    def usable_bytes(self) -> int | None:
        return None if self.device_bytes is None else int(self.device_bytes * 0.95) - GIB

    def failures(self) -> list[str]:
        """One line per stage that will not fit, naming the setting to change."""
        usable = self.usable_bytes
        if usable is None:
            return []
        out = []
        for stage in self.stages:
            if stage.peak_bytes > usable:
                phase = stage.peak_phase
                setting = stage.advice.get(phase, "a smaller budget").replace("<profile>", self.profile)
                out.append(f"{stage.stage} ({phase}) needs {stage.peak_bytes / GIB:.1f} GiB of "
                           f"{usable / GIB:.1f} GiB usable: change {setting}")
        return out


def memory_plan(params, config: dict[str, Any], *, policy: str = "", device_bytes: int | None = None,
                num_processes: int = 1, fsdp: bool = False) -> MemoryPlan:
    """Peak memory per stage for `params` (its profile and budgets) and a policy's config.json."""
    shape = model_shape(config)
    profile = params.project.profile
    a = params.align.budget(profile)
    precision = profile_precision(profile, a.base_dtype, a.mixed_precision)
    shards = num_processes if fsdp else 1
    stages = [plan_pairs(params, shape, precision), plan_reward(params, shape),
              plan_align(params, shape, precision, shards), plan_front(params, shape, precision)]
    return MemoryPlan(profile, policy, shape, precision, stages, device_bytes, num_processes, fsdp)


def default_device_bytes(profile: str) -> int | None:
    """GPU 0's memory when CUDA is present; host RAM for the cpu profile; else unknown."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory
    if profile == "cpu":
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return None


def format_plan(plan: MemoryPlan) -> str:
    """The plan as text: per stage the resident parts, each phase, the peak, fit or not."""
    s = plan.shape
    where = (f"per GPU, FSDP over {plan.num_processes}" if plan.fsdp
             else f"per GPU ({plan.num_processes} process(es), each holding a full copy)")
    lines = [f"memory plan: {plan.policy or 'policy'} ({s.model_type}, {s.params / 1e9:.2f}B params, "
             f"h={s.hidden} L={s.layers} V={s.vocab}), profile {plan.profile}, weights "
             f"{plan.precision.weight_bytes} B/param, activations {plan.precision.act_bytes} B; {where}"]
    usable = plan.usable_bytes
    lines.append(f"device: {plan.device_bytes / GIB:.1f} GiB, usable {usable / GIB:.1f} GiB"
                 if usable is not None else "device: unknown (give --gpu-memory-gb): nothing checked")
    for stage in plan.stages:
        fits = "" if usable is None else ("  fits" if stage.peak_bytes <= usable else "  DOES NOT FIT")
        lines.append(f"{stage.stage}: peak {stage.peak_bytes / GIB:.2f} GiB in {stage.peak_phase}{fits}")
        for name, value in stage.resident.items():
            lines.append(f"    {name:<30} {value / GIB:8.2f} GiB")
        for phase, parts in stage.phases.items():
            detail = ", ".join(f"{k} {v / GIB:.2f}" for k, v in parts.items())
            lines.append(f"  {phase:<32} {sum(parts.values()) / GIB:8.2f} GiB  ({detail})")
    return "\n".join(lines)


__all__ = ["DEFAULT_POLICY_CONFIG", "MemoryPlan", "ModelShape", "StagePlan", "activation_bytes_per_token_layer",
           "default_device_bytes", "format_plan", "kv_cache_bytes", "memory_plan", "model_shape",
           "read_policy_config", "train_step_bytes"]
