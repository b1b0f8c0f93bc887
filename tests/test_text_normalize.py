"""Text normalisation and the request-length guard."""

from __future__ import annotations

import pytest

from vitsrt.errors import InputError, VitsrtError
from vitsrt.text.normalize import check_text_length, normalize_text, prepare_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  hello   world  ", "hello world"),
        ("a\tb", "a b"),
        ("a\r\nb\rc", "a\nb\nc"),
        ("a\u2028b\u2029c\x85d", "a\nb\nc\nd"),
        ("one\n\n\n  two", "one\ntwo"),
        ("line  \n   next", "line\nnext"),
        ("no\x00nul\x07bell\x1bescape", "nonulbellescape"),
        ("zero\u200bwidth\ufeffbom\u00adshy", "zerowidthbomshy"),
        ("nbsp\u00a0and\u3000ideographic\u2003em", "nbsp and ideographic em"),
        ("e\u0301", "\u00e9"),  # NFC composes
        ("e\x00\u0301", "\u00e9"),  # a control between base and mark no longer blocks composition
        ("lone\ud800surrogate", "lonesurrogate"),
        ("\n\t  \n", ""),
        ("", ""),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_zero_width_joiners_are_kept() -> None:
    # ZWNJ changes spelling in Persian; it must survive.
    assert normalize_text("می\u200cخواهم") == "می\u200cخواهم"


def test_keep_newlines_false_flattens() -> None:
    assert normalize_text("a\n\nb\r\nc", keep_newlines=False) == "a b c"


@pytest.mark.parametrize("raw", ["  a \t b\r\n\r\n c\x00 ", "x\u2028\u2028y", "e\u0301  \u00a0z"])
def test_normalize_is_idempotent(raw: str) -> None:
    once = normalize_text(raw)
    assert normalize_text(once) == once


def test_normalize_rejects_non_str() -> None:
    with pytest.raises(TypeError):
        normalize_text(b"bytes")  # type: ignore[arg-type]


def test_check_text_length_accepts_up_to_limit() -> None:
    assert check_text_length("x" * 10, 10) == "x" * 10


def test_check_text_length_over_limit_names_field_and_numbers() -> None:
    with pytest.raises(InputError) as info:
        check_text_length("x" * 11, 10)
    err = info.value
    assert isinstance(err, VitsrtError)
    assert err.field == "text"
    assert "11" in str(err) and "10" in str(err)


@pytest.mark.parametrize("empty", ["", "   ", "\n\t"])
def test_check_text_length_rejects_empty(empty: str) -> None:
    with pytest.raises(InputError, match="empty") as info:
        check_text_length(empty, 10)
    assert info.value.field == "text"


def test_check_text_length_custom_field() -> None:
    with pytest.raises(InputError) as info:
        check_text_length("abc", 2, field="ssml")
    assert info.value.field == "ssml"


def test_check_text_length_bad_limit() -> None:
    with pytest.raises(ValueError):
        check_text_length("abc", 0)


def test_prepare_text_counts_after_normalisation() -> None:
    # 4 visible characters padded with whitespace and controls: fits a limit of 4 once cleaned.
    assert prepare_text("  ab \x00 \t\t cd  ", 5) == "ab cd"
    with pytest.raises(InputError):
        prepare_text("ab cd", 4)


def test_prepare_text_rejects_non_string() -> None:
    with pytest.raises(InputError) as info:
        prepare_text(123, 10)  # type: ignore[arg-type]
    assert info.value.field == "text"
