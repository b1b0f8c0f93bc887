"""Text clean-up that every front end runs first, plus the request-size guard.

Requests arrive from HTTP/gRPC clients, pasted documents and terminals, so they carry
carriage returns, tabs, zero-width characters, lone surrogates and other bytes that
either confuse the phonemizer (it may read them aloud, or crash encoding to UTF-8)
or make sentence splitting unstable. Normalising once, up front, means the sentence
splitter and the phonemizer only ever see NFC text with single spaces and ``\\n``
as the only line separator.
"""

from __future__ import annotations

import re
import unicodedata

from vitsrt.errors import InputError

__all__ = ["check_text_length", "normalize_text", "prepare_text"]

# Line separators of every flavour become "\n" (the sentence splitter treats a newline as a hard boundary).
_LINE_BREAKS = re.compile("\r\n|[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")

# Invisible format characters that carry no sound and only break word matching. ZWJ/ZWNJ
# (U+200C/U+200D) are deliberately absent: they change spelling in Persian and Indic scripts.
_INVISIBLE = frozenset("\u00ad\u180e\u200b\u2060\ufeff")

_SPACE_RUN = re.compile(r"[^\S\n]+")
_SPACES_AROUND_NEWLINE = re.compile(r" *\n *")
_NEWLINE_RUN = re.compile(r"\n{2,}")


def _clean_char(ch: str) -> str:
    """Map one code point to what survives normalisation ("" drops it, " " turns it into a space)."""
    if ch == "\n":
        return ch
    if ch == "\t" or ch.isspace():
        return " "
    if ch in _INVISIBLE:
        return ""
    # Cc: C0/C1 controls; Cs: lone surrogates (e.g. from broken JSON escapes), unencodable as UTF-8.
    if unicodedata.category(ch) in ("Cc", "Cs"):
        return ""
    return ch


def normalize_text(text: str, *, keep_newlines: bool = True) -> str:
    """Return `text` as NFC with control characters removed and whitespace collapsed.

    - every line-break convention (``\\r\\n``, ``\\r``, U+2028, ...) becomes ``\\n``;
    - tabs and other Unicode spaces (NBSP, ideographic space, ...) become a plain space;
    - other control characters, lone surrogates and zero-width spaces/BOMs are dropped;
    - runs of spaces collapse to one, blank lines collapse to one ``\\n``, ends are stripped.

    With ``keep_newlines=False`` line breaks become spaces too (one flowing paragraph).
    The function is idempotent: normalising twice changes nothing.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    text = _LINE_BREAKS.sub("\n", text)
    text = "".join(_clean_char(ch) for ch in text)
    # NFC after dropping controls so that a control between a base letter and its combining mark
    # does not keep the pair from composing.
    text = unicodedata.normalize("NFC", text)
    if not keep_newlines:
        text = text.replace("\n", " ")
    text = _SPACE_RUN.sub(" ", text)
    text = _SPACES_AROUND_NEWLINE.sub("\n", text)
    text = _NEWLINE_RUN.sub("\n", text)
    return text.strip()


def check_text_length(text: str, max_chars: int, *, field: str = "text") -> str:
    """Refuse empty or over-long text with an `InputError` naming `field`; return `text` unchanged.

    The limit is counted in Unicode code points of the text as given (call `normalize_text`
    first so that stripped whitespace does not count against the caller).
    """
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    if not isinstance(text, str):
        raise InputError(field, f"must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InputError(field, "is empty (nothing to synthesize)")
    if len(text) > max_chars:
        raise InputError(
            field, f"is {len(text)} characters long, over the limit of {max_chars}; split it into smaller requests"
        )
    return text


def prepare_text(text: str, max_chars: int, *, field: str = "text") -> str:
    """Normalise a request's text and enforce the length limit on the result (the engine's entry point).

    Numbers, dates, abbreviations ... are not written out here: that needs the language, so the ``ipa``
    front end does it per sentence (``from_text(..., expand=True)``, `vitsrt.text.expand`), and the
    limit keeps counting what the client sent.
    """
    if not isinstance(text, str):
        raise InputError(field, f"must be a string, got {type(text).__name__}")
    return check_text_length(normalize_text(text), max_chars, field=field)
