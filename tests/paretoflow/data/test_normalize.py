"""Text normalisation: NFKC, control characters, whitespace."""

from paretoflow.data.normalize import has_lone_surrogate, normalize_text, word_count


def test_nfkc_folds_compatibility_forms():
    # Full-width letters and the "ﬁ" ligature fold to ASCII under NFKC.
    assert normalize_text("ＡＢＣ ﬁne") == "ABC fine"


def test_control_and_zero_width_characters_removed():
    assert normalize_text("a\x00b\x07c\u200bd\ufeff") == "abcd"


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
