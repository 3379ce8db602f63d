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
"""

from __future__ import annotations

import re

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
    return CONTROL_TOKEN.sub(lambda m: m.group(0)[0] + "\\" + m.group(0)[1:], text)
