"""Text normalisation: NFKC, control characters, whitespace."""

from paretoflow.data.normalize import has_lone_surrogate, normalize_text, word_count


def test_nfkc_folds_compatibility_forms():
    # Full-width letters and the "ﬁ" ligature fold to ASCII under NFKC.
    assert normalize_text("ＡＢＣ ﬁne") == "ABC fine"


def test_control_and_zero_width_characters_removed():
    assert normalize_text("a\x00b\x07c\u200bd\ufeff") == "abcd"


def test_every_line_boundary_is_a_line_break():
    # NEL (U+0085) was deleted as a control character: "and\x85here" became "andhere".
    assert normalize_text("and\x85here") == "and\nhere"
    assert normalize_text("one\u2028two\u2029three") == "one\ntwo\nthree"
    assert normalize_text("page\x0cbreak\x0bvertical\x1erecord") == "page\nbreak\nvertical\nrecord"
    assert normalize_text("a\r\n\x85b") == "a\n\nb"  # \r\n is one break, NEL another


def test_terminal_escape_sequences_removed_whole():
    # Only ESC was removed before: "\x1b[31mred\x1b[0m" left "[31mred[0m".
    assert normalize_text("\x1b[31mred\x1b[0m text") == "red text"
    assert normalize_text("\x1b[1;38;5;208mbold\x1b[K") == "bold"
    assert normalize_text("\x1b]0;window title\x07body") == "body"
    assert normalize_text("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == "link"
    assert normalize_text("keep [31m as typed") == "keep [31m as typed"  # no ESC, no change


def test_whitespace_collapsed_but_newlines_kept():
    text = "  one \t two  \r\n\r\n\r\n\n three \n four  "
    assert normalize_text(text) == "one two\n\nthree\nfour"


def test_idempotent():
    text = " Ｈｅｌｌｏ\u3000world \n\n\n\n bye\x1b "
    once = normalize_text(text)
    assert normalize_text(once) == once == "Hello world\n\nbye"


def test_lone_surrogate_detected():
    assert has_lone_surrogate(b"caf\xe9".decode("utf-8", "surrogateescape"))
    assert not has_lone_surrogate("café 😀")


def test_word_count():
    assert word_count(" a  b\nc ") == 3
    assert word_count("") == 0


def _reference_normalize(text: str) -> str:
    """The normaliser without its fast path, written out from the module docstring."""
    import unicodedata

    from paretoflow.data.normalize import _CONTROL, _ESCAPE

    # str.splitlines is the independent definition of a line boundary (\r\n counts once);
    # a break it drops at the very end would be stripped anyway.
    text = "\n".join(text.splitlines())
    text = unicodedata.normalize("NFKC", text)
    lines: list[str] = []
    for line in _CONTROL.sub("", _ESCAPE.sub("", text)).split("\n"):
        line = " ".join(line.split())
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip()


def test_fast_path_and_separator_count_agree_with_the_full_steps():
    import random

    from paretoflow.data.normalize import normalized_word_count

    rng = random.Random(0)
    alphabet = "ab \n\t\r\x0b\x0c\x1c\x1f\x00\x7f\x85\u00a0\u2028\u200b\uff41\ufeff.\x1b[]m;0\x07"
    for i in range(20_000):
        text = "".join(rng.choice(alphabet if i % 2 else "ab \n.") for _ in range(rng.randint(0, 12)))
        normal = normalize_text(text)
        assert normal == _reference_normalize(text), repr(text)
        assert normalized_word_count(normal) == word_count(normal), repr(text)
    already = "one two\n\nthree"
    assert normalize_text(already) is already  # unchanged text is not copied
