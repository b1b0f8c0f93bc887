"""The ``ids`` front end: callers send phone/tone/language ids themselves.

This is how Bert-VITS2 voices are served until their Chinese/Japanese/English text front
end exists, and a debugging path for any voice. Everything a client sends is checked
against the voice *before* it reaches a graph: an out-of-range id would otherwise index
past an embedding table (a crash on CPU, silent garbage or a device fault on GPU) and take
a whole batch of other people's requests down with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vitsrt.errors import InputError, TooManyIdsError
from vitsrt.text.sequence import PhonemeSequence

__all__ = ["DEFAULT_MAX_IDS", "IdsFrontEnd", "intersperse", "validate_id_array"]

# Encoder positions per segment accepted by default (after blanks). The sentence splitter keeps
# real text far below this; it guards memory against hand-made id lists.
DEFAULT_MAX_IDS = 4096

_INT64_MAX = np.iinfo(np.int64).max


def intersperse(ids: Sequence[int] | np.ndarray, item: int = 0) -> np.ndarray:
    """Return ``[item, ids[0], item, ids[1], ..., ids[-1], item]`` (length 2n+1) as int64.

    VITS voices trained with ``add_blank`` saw a blank token around every symbol; feeding
    them ids without the blanks yields mumbled speech, so the blanks are added here.
    """
    arr = np.asarray(ids, dtype=np.int64).reshape(-1)
    out = np.full(2 * arr.size + 1, item, dtype=np.int64)
    out[1::2] = arr
    return out


def validate_id_array(values: object, field: str, upper: int) -> np.ndarray:
    """Convert `values` to a 1-D int64 array with every entry in [0, upper), else raise InputError(field).

    Accepts lists/tuples/arrays of integers (integral floats too, since some JSON encoders write
    ``3.0``); refuses strings, booleans, nested lists, NaN and fractions.
    """
    if isinstance(values, (str, bytes)):
        raise InputError(field, "must be a list of integers, not a string")
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:  # ragged nesting
        raise InputError(field, "must be a flat list of integers") from exc
    if arr.ndim != 1:
        raise InputError(field, "must be a flat list of integers")
    if arr.size == 0:
        raise InputError(field, "is empty")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.equal(np.floor(arr), arr).all():
            raise InputError(field, "must contain integers only")
        if np.abs(arr).max() > 2**53:
            raise InputError(field, "contains values too large to be ids")
    elif arr.dtype.kind not in "iu":
        raise InputError(field, f"must contain integers only (got {arr.dtype.name} values)")
    if arr.dtype.kind == "u" and int(arr.max()) > _INT64_MAX:
        raise InputError(field, "contains values too large to be ids")
    arr = arr.astype(np.int64)
    bad = np.flatnonzero((arr < 0) | (arr >= upper))
    if bad.size:
        k = int(bad[0])
        raise InputError(field, f"{field}[{k}] = {int(arr[k])} is out of range: this voice accepts 0..{upper - 1}")
    return arr


def _broadcast_or_validate(values: object, field: str, upper: int, length: int) -> np.ndarray:
    """None -> zeros, a bare int -> that id everywhere, otherwise a full list validated like phone ids."""
    if values is None:
        values = 0
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        value = int(values)
        if not 0 <= value < upper:
            raise InputError(field, f"{value} is out of range: this voice accepts 0..{upper - 1}")
        return np.full(length, value, dtype=np.int64)
    arr = validate_id_array(values, field, upper)
    if arr.size != length:
        raise InputError(field, f"has {arr.size} entries but phone_ids has {length}; they must align")
    return arr


class IdsFrontEnd:
    """Validates caller-supplied ids against a voice's table sizes and returns a `PhonemeSequence`.

    `n_symbols`, `num_tones` and `num_languages` are the sizes of the voice's embedding tables;
    `add_blank` says whether the voice was trained with blanks between symbols (callers may then
    send ids without blanks and ask for them to be inserted).
    """

    kind = "ids"
    accepts_text = False

    def __init__(
        self,
        n_symbols: int,
        num_tones: int = 1,
        num_languages: int = 1,
        *,
        add_blank: bool = False,
        blank_id: int = 0,
        max_length: int = DEFAULT_MAX_IDS,
    ) -> None:
        for name, value in (
            ("n_symbols", n_symbols),
            ("num_tones", num_tones),
            ("num_languages", num_languages),
            ("max_length", max_length),
        ):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0 <= blank_id < n_symbols:
            raise ValueError(f"blank_id {blank_id} outside the symbol table of {n_symbols}")
        self.n_symbols = int(n_symbols)
        self.num_tones = int(num_tones)
        self.num_languages = int(num_languages)
        self.add_blank = bool(add_blank)
        self.blank_id = int(blank_id)
        self.max_length = int(max_length)

    def from_ids(
        self,
        phone_ids: object,
        tone_ids: object = None,
        language_ids: object = None,
        *,
        add_blank: bool = False,
    ) -> PhonemeSequence:
        """Validate one segment's ids; tone/language ids may be omitted (zeros) or a single int.

        With ``add_blank=True`` the ids are taken as blank-free and blanks are interspersed
        (only allowed for voices trained with blanks); by default they are used as sent.
        """
        phones = validate_id_array(phone_ids, "phone_ids", self.n_symbols)
        tones = _broadcast_or_validate(tone_ids, "tone_ids", self.num_tones, phones.size)
        langs = _broadcast_or_validate(language_ids, "language_ids", self.num_languages, phones.size)
        if add_blank:
            if not self.add_blank:
                raise InputError("add_blank", "this voice was trained without blanks; send the ids as they are")
            phones = intersperse(phones, self.blank_id)
            # Upstream VITS gives blanks tone 0 and language 0; the voice learned exactly that.
            tones = intersperse(tones, 0)
            langs = intersperse(langs, 0)
        if phones.size > self.max_length:
            raise TooManyIdsError(
                "phone_ids",
                f"{phones.size} ids (after blanks) exceed the limit of {self.max_length}; split the request",
            )
        return PhonemeSequence(phone_ids=phones, tone_ids=tones, language_ids=langs)

    def from_text(self, text: str, *, language: str | None = None, expand: bool = True) -> PhonemeSequence:
        """Text is not accepted: this voice has no text front end."""
        raise InputError("text", "this voice has no text front end; send phone_ids (and tone_ids, language_ids)")
