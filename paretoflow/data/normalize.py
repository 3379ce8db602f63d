"""Text normalisation applied to every prompt turn and response before hashing.

Same text → same bytes → same content-hash id, whatever the source's encoding habits:

1. Unicode NFKC (full-width letters, ligatures and compatibility forms fold together).
2. Control characters removed (Unicode category Cc except newline and tab), plus the
   invisible zero-width space / byte-order mark that NFKC keeps.
3. Whitespace collapsed: runs of spaces/tabs become one space, trailing spaces on a line
   go, three or more newlines become two (a paragraph break). Newlines themselves are
   kept because chat text carries lists and code whose meaning depends on line breaks.
4. Leading/trailing whitespace stripped.

`has_lone_surrogate` tells text that came from undecodable bytes (a lone surrogate
cannot be written as UTF-8, so it would break Parquet later): callers quarantine it.
"""

from __future__ import annotations

import re
import unicodedata

# Cc category minus \t and \n (\r is folded to \n first); built once as a translate table.
_CONTROL_TABLE = {
    code: None
    for code in list(range(0x00, 0x20)) + list(range(0x7F, 0xA0))
    if chr(code) not in "\t\n"
}
_CONTROL_TABLE.update({0x200B: None, 0xFEFF: None})
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_SPACE_BEFORE_NEWLINE = re.compile(r" ?\n ?")
_MANY_NEWLINES = re.compile(r"\n{3,}")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def normalize_text(text: str) -> str:
    """NFKC, drop control characters, collapse whitespace, strip (see module docstring)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(_CONTROL_TABLE)
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = _SPACE_BEFORE_NEWLINE.sub("\n", text)
    text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


def has_lone_surrogate(text: str) -> bool:
    """True when text holds a lone surrogate (undecodable bytes read with surrogateescape,
    or a JSON "\\ud800" escape): such text cannot be encoded as UTF-8."""
    return _SURROGATE.search(text) is not None


def word_count(text: str) -> int:
    """Whitespace tokens: the unit of the min_words / max_words filters."""
    return len(text.split())
