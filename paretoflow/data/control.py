"""Chat-template control tokens inside data: found, escaped or quarantined at curate time.

A prompt holding `<|im_end|><|im_start|>system` becomes real special tokens once a chat
template renders it and the tokenizer splits it (tokenizers match added special tokens by
their exact text), so data would open a system turn of its own. Curate therefore either
escapes such text (`curate.control_tokens: escape`, the default) or quarantines the row
(`quarantine`, reason control_token). Escaping lives in data/ so that every consumer of
the curated tables (align, pairs, front) gets text that cannot become control.

The documented list (after NFKC normalisation, so full-width look-alikes such as
DeepSeek's `<｜…｜>` fold into the first form):

- `<|name|>`: ChatML and most modern templates (`<|im_start|>`, `<|im_end|>`,
  `<|endoftext|>`, `<|begin_of_text|>`, `<|eot_id|>`, `<|start_header_id|>`, ...);
- `[INST]`, `[/INST]`, `<<SYS>>`, `<</SYS>>`: Llama-2 / Mistral turn markers;
- `<s>`, `</s>`: sentence-piece begin / end of sequence;
- `<start_of_turn>`, `<end_of_turn>`: Gemma.

Escaping puts a backslash after the token's first character (`<|im_end|>` →
`<\\|im_end|>`, `[INST]` → `[\\INST]`): the text stays readable, no tokenizer matches it
as a special token, it is ASCII (NFKC keeps it) and escaping twice changes nothing
(the escaped form no longer matches the pattern).

The list cannot know every model's tokens (Gemma's `<bos>`, Mistral's `[TOOL_CALLS]`,
SmolLM2's `<file_sep>`), and data curated once is trained into whatever policy is
configured later. So a second defence sits where text meets a tokenizer:
`special_token_escaper(tokenizer)` escapes, the same way, every special token that
tokenizer itself would match, and align, generation and the reward features pass each
message and response through it before the chat template is rendered.
"""

from __future__ import annotations

import re
from collections.abc import Callable

CONTROL_TOKEN = re.compile(
    r"<\|[^|<>\s]{1,64}\|>"
    r"|\[/?INST\]"
    r"|<</?SYS>>"
    r"|</?s>"
    r"|<(?:start|end)_of_turn>"
)


def find_control_token(text: str) -> str | None:
    """The first control token in `text`, or None."""
    if "<" not in text and "[" not in text:  # every token starts with one of them
        return None
    match = CONTROL_TOKEN.search(text)
    return None if match is None else match.group(0)


def escape_control_tokens(text: str) -> str:
    """`text` with every control token escaped (idempotent; see module docstring)."""
    return CONTROL_TOKEN.sub(_escape, text)


def _escape(match: re.Match) -> str:
    return match.group(0)[0] + "\\" + match.group(0)[1:]


def special_token_escaper(tokenizer) -> Callable[[str], str]:
    """A function escaping (as above) every special token of `tokenizer` in a text: its
    named special tokens and every added token flagged special. Longest tokens first, so
    `<|im_end|>` is not escaped as a shorter token it contains. Tokens of one character
    cannot be escaped this way and are left out (no tokenizer in use has one)."""
    specials = {str(t) for t in getattr(tokenizer, "all_special_tokens", None) or []}
    for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(token, "special", False):
            specials.add(str(getattr(token, "content", token)))
    specials = sorted((t for t in specials if len(t) > 1), key=len, reverse=True)
    if not specials:
        return lambda text: text
    pattern = re.compile("|".join(map(re.escape, specials)))
    return lambda text: pattern.sub(_escape, text)


def escaped_messages(escape: Callable[[str], str], messages: list[dict]) -> list[dict]:
    """`messages` with each turn's content passed through `escape` (roles untouched)."""
    return [{**m, "content": escape(m["content"])} if isinstance(m.get("content"), str) else m
            for m in messages]
