"""Per-sequence summed log-probabilities of responses, batched.

    log π(y | x) = Σ_t log π(y_t | x, y_<t)     over the response tokens only

Fast path: the decoder runs once over prompt+response, then the output head and the
log-softmax are applied only at the positions that predict a response token. The head
of a 135M model with a 49k vocabulary is a fifth of its FLOPs per token and the
(batch × length × vocab) logits tensor is the largest activation, so skipping prompt
positions saves both. The fast path is used for architectures whose logits are exactly
`lm_head(last_hidden_state)` (`FAST_PATH_MODEL_TYPES`); others take the plain forward.

Chunked head (`chunk_tokens` > 0): the output head and log-softmax run over at most
`chunk_tokens` response positions at a time, so the [tokens, vocab] fp32 logits are
never held whole (at 128k-152k vocab they outgrow the activations). In training each
chunk runs under `torch.utils.checkpoint` (non-reentrant): backward keeps only the chunk's
hidden states and recomputes its logits, so the peak is one chunk's logits, not all of
them. Each row of the head's output is the same with or without chunks (the per-token
values are concatenated in order, then summed per sequence as before).

`ResponseLogps` is an `nn.Module` so the trainer can hand it to `accelerator.prepare`:
under DDP the gradient sync hooks sit on the wrapped module's forward, so the policy
must be called through it, not through its submodules.
"""

from __future__ import annotations

import torch
from torch import nn

# Decoder-only families whose logits are lm_head(hidden) with no scaling or soft-capping.
FAST_PATH_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "smollm3", "olmo2", "phi3"})


def _unwrap_causal_lm(model: nn.Module) -> nn.Module:
    """The transformers CausalLM inside a PeftModel (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def summed_response_logps(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    response_mask: torch.Tensor,
) -> torch.Tensor:
    """Reference implementation from full logits (batch, length, vocab) → (batch,)."""
    targets = input_ids[:, 1:]
    mask = response_mask[:, 1:]
    token_logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = token_logps.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def _head_token_logps(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log π(target) at each row of `hidden` (n, h) → (n,), through fp32 logits."""
    logits = head(hidden).float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def head_token_logps(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                     chunk_tokens: int = 0) -> torch.Tensor:
    """`_head_token_logps` over chunks of `chunk_tokens` rows (0 = one chunk).

    Hand-written: transformers' loss kernels take labels for a cross-entropy mean, not
    per-token log-probs of selected positions, and Liger's fused linear cross-entropy is
    not a dependency; torch's checkpoint does the recompute."""
    if chunk_tokens <= 0 or hidden.shape[0] <= chunk_tokens:
        return _head_token_logps(head, hidden, targets)
    from torch.utils.checkpoint import checkpoint

    recompute = torch.is_grad_enabled() and hidden.requires_grad
    parts = []
    for start in range(0, hidden.shape[0], chunk_tokens):
        h, t = hidden[start: start + chunk_tokens], targets[start: start + chunk_tokens]
        parts.append(checkpoint(_head_token_logps, head, h, t, use_reentrant=False) if recompute
                     else _head_token_logps(head, h, t))
    return torch.cat(parts)


class ResponseLogps(nn.Module):
    """Wraps a causal LM (peft or plain); forward returns summed response log-probs."""

    def __init__(self, model: nn.Module, fast: bool | None = None, chunk_tokens: int = 0):
        super().__init__()
        self.model = model
        causal_lm = _unwrap_causal_lm(model)
        model_type = getattr(getattr(causal_lm, "config", None), "model_type", None)
        self.fast = (model_type in FAST_PATH_MODEL_TYPES) if fast is None else fast
        self.chunk_tokens = chunk_tokens
        # FSDP's transformer auto-wrap (accelerate) reads `_no_split_modules` off the module it
        # is given: the LM's own decoder-layer classes, whatever the architecture.
        self._no_split_modules = list(getattr(causal_lm, "_no_split_modules", None) or [])

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_mask: torch.Tensor,
    ) -> torch.Tensor:
        response_mask = response_mask.bool()
        if not self.fast:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
            return summed_response_logps(logits, input_ids, response_mask)
        causal_lm = _unwrap_causal_lm(self.model)
        hidden = causal_lm.get_decoder()(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        # Position t predicts token t+1: keep positions whose next token is a response token.
        predicts_response = response_mask[:, 1:]
        selected_hidden = hidden[:, :-1][predicts_response]  # (n_response_tokens, hidden)
        targets = input_ids[:, 1:][predicts_response]
        token_logps = head_token_logps(causal_lm.get_output_embeddings(), selected_hidden, targets,
                                       self.chunk_tokens)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device).unsqueeze(1).expand_as(predicts_response)
        sums = torch.zeros(input_ids.shape[0], dtype=token_logps.dtype, device=input_ids.device)
        return sums.index_add(0, rows[predicts_response], token_logps)


@torch.no_grad()
def batched_response_logps(
    scorer: ResponseLogps,
    batches,
    progress=None,
) -> torch.Tensor:
    """Concatenate `scorer` outputs over an iterable of collated batches (no grad)."""
    outputs = []
    for batch in batches:
        outputs.append(scorer(**batch).detach().float().cpu())
        if progress is not None:
            progress.update(1)
    return torch.cat(outputs) if outputs else torch.zeros(0)


__all__ = ["FAST_PATH_MODEL_TYPES", "ResponseLogps", "head_token_logps", "batched_response_logps", "summed_response_logps"]
