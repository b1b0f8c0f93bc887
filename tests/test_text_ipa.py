"""The ipa front end with a stand-in phonemizer (fast, no espeak): id maps, tokenizing, errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from vitsrt.errors import InputError
from vitsrt.text.inventory import (
    BOS,
    EOS,
    INVENTORY_VERSION,
    PAD,
    PHONEME_INVENTORY,
    WORD_SEPARATOR,
    default_phoneme_id_map,
    inventory_digest,
)
from vitsrt.text.ipa import IpaFrontEnd, PhonemeIdMap, join_pieces, split_pause_marks


class EchoPhonemizer:
    """Treats its input as IPA already; records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def phonemize(self, text: str, voice: str) -> str:
        self.calls.append((text, voice))
        return text


def _ids(symbols: str) -> list[int]:
    table = default_phoneme_id_map()
    return [table[s][0] for s in symbols]


# -- inventory -------------------------------------------------------------------------------------


def test_default_map_layout() -> None:
    table = default_phoneme_id_map()
    assert table[PAD] == [0] and table[BOS] == [1] and table[EOS] == [2] and table[WORD_SEPARATOR] == [3]
    ids = sorted(v[0] for v in table.values())
    assert ids == list(range(len(PHONEME_INVENTORY)))  # dense, unique
    assert len(set(PHONEME_INVENTORY)) == len(PHONEME_INVENTORY)
    for symbol in "həlˈoʊ,!?ɹɚθðŋʃʒæœøçχʁɲɕʑ\u0303ː123":
        assert symbol in table, symbol


def test_default_map_is_pinned() -> None:
    """Trained voices index embeddings by these ids: any change must be a deliberate append + version bump."""
    assert INVENTORY_VERSION == 1
    assert len(PHONEME_INVENTORY) == 197
    assert inventory_digest() == "v1:2e2d14140844e4295287b6361fc2eb482f94f8e601f7ec01901fb24cbc3e0883"


def test_default_map_is_fresh_each_call() -> None:
    a = default_phoneme_id_map()
    a["ə"].append(99)
    a["new"] = [500]
    b = default_phoneme_id_map()
    assert len(b["ə"]) == 1 and "new" not in b


# -- PhonemeIdMap ----------------------------------------------------------------------------------


def test_id_map_validation() -> None:
    base = {"_": [0], "^": [1], "$": [2], "a": [3]}
    PhonemeIdMap(base)
    for broken, fragment in [
        ({"^": [1], "$": [2], "a": [3]}, "pad"),
        ({"_": [0], "$": [2]}, "bos"),
        ({"_": [0], "^": [1]}, "eos"),
        ({**base, "b": []}, "non-empty"),
        ({**base, "b": [-1]}, "non-empty"),
        ({**base, "": [4]}, "non-empty strings"),
        ({**base, "b": "12"}, "got a string"),
        ({**base, "e\u0301": [4], "\u00e9": [5]}, "two entries"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            PhonemeIdMap(broken)


def test_id_map_accepts_bare_int_values_and_counts_symbols() -> None:
    m = PhonemeIdMap({"_": 0, "^": 1, "$": 2, "a": [7, 8]})
    assert m.n_symbols == 9
    assert m.ids_of("a") == (7, 8)


def test_tokenize_longest_match_and_unknowns() -> None:
    m = PhonemeIdMap({"_": [0], "^": [1], "$": [2], "a": [3], "aɪ": [4], "t͡ʃ": [5], " ": [6]})
    known, unknown = m.tokenize("aɪ a t͡ʃaɪ qa")
    assert known == ["aɪ", " ", "a", " ", "t͡ʃ", "aɪ", " ", "a"]
    assert unknown == ["q"]


def test_tokenize_decomposes_precomposed_letters() -> None:
    m = PhonemeIdMap(default_phoneme_id_map())
    known, unknown = m.tokenize("bõ ä ş")
    assert known == ["b", "o", "\u0303", " ", "a", "\u0308", " ", "s", "\u0327"]
    assert unknown == []
    # ç is a letter of its own in the inventory: kept whole
    assert m.tokenize("ç")[0] == ["ç"]


def test_tokenize_never_emits_markers() -> None:
    m = PhonemeIdMap(default_phoneme_id_map())
    known, unknown = m.tokenize("a_^$b")
    assert known == ["a", "b"]
    assert unknown == ["_", "^", "$"]


def test_to_ids_piper_layout() -> None:
    m = PhonemeIdMap({"_": [0], "^": [1], "$": [2], "a": [3], "b": [4, 5]})
    assert m.to_ids(["a", "b"], add_blank=True).tolist() == [1, 0, 3, 0, 4, 5, 0, 2]
    assert m.to_ids(["a", "b"], add_blank=False).tolist() == [1, 3, 4, 5, 2]
    assert m.to_ids([], add_blank=True).tolist() == [1, 0, 2]


# -- pause marks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words", "marks"),
    [
        ("Hello, world!", ["Hello", "world"], [",", "!"]),
        ("Pi is 3.14.", ["Pi is 3.14"], ["."]),
        ("At 10:30, ok", ["At 10:30", "ok"], [","]),
        ("Dr. Smith came.", ["Dr. Smith came"], ["."]),
        ("Tools, e.g., hammers", ["Tools", "e.g.", "hammers"], [",", ","]),
        ('"Hi." she said', ["Hi.", "she said"], ['"', '"']),
        ("Wait... what?", ["Wait", "what"], ["\u2026", "?"]),
        ("(really) \u2014 yes", ["really", "yes"], ["(", ")", "\u2014"]),
        ("\u00bfQu\u00e9? \u00a1Hola!", ["Qu\u00e9", "Hola"], ["\u00bf", "?", "\u00a1", "!"]),
        ("a,b", ["a,b"], []),
        ("...", [], ["\u2026"]),
    ],
)
def test_split_pause_marks(text: str, words: list[str], marks: list[str]) -> None:
    pieces = split_pause_marks(text)
    assert [p.text for p in pieces if not p.is_mark] == words
    assert [p.text for p in pieces if p.is_mark] == marks


def test_join_pieces_restores_spacing() -> None:
    pieces = split_pause_marks('He said "Stop!" (really) \u2014 then left...')
    words = [p.text for p in pieces if not p.is_mark]
    assert join_pieces(pieces, [w.upper() for w in words]) == 'HE SAID "STOP!" (REALLY) \u2014 THEN LEFT\u2026'
    # words the phonemizer returns empty (e.g. a lone symbol) vanish without doubling spaces
    pieces = split_pause_marks("a, b, c")
    assert join_pieces(pieces, ["x", "", "z"]) == "x,, z"


# -- IpaFrontEnd with a stand-in phonemizer --------------------------------------------------------


def _frontend(**kwargs: object) -> tuple[IpaFrontEnd, EchoPhonemizer]:
    echo = EchoPhonemizer()
    kwargs.setdefault("languages", {"en-us": 0, "de": 2})
    return IpaFrontEnd(phonemizer=echo, **kwargs), echo  # type: ignore[arg-type]


def test_from_text_maps_phonemes_with_blanks_and_markers() -> None:
    fe, echo = _frontend()
    seq = fe.from_text("  həˈl  oʊ ")
    assert echo.calls == [("həˈl oʊ", "en-us")]  # normalised, default language = first entry
    assert seq.phonemes == list("həˈl oʊ")
    expected = [1, 0]
    for pid in _ids("həˈl oʊ"):
        expected += [pid, 0]
    expected.append(2)
    assert seq.phone_ids.tolist() == expected
    assert seq.tone_ids.tolist() == [0] * len(expected)
    assert seq.language_ids.tolist() == [0] * len(expected)
    assert seq.phone_ids.dtype == np.int64 and seq.skipped == 0


def test_from_text_without_blanks() -> None:
    fe, _ = _frontend(add_blank=False)
    assert fe.from_text("ab").phone_ids.tolist() == [1, *_ids("ab"), 2]


def test_language_selects_voice_and_language_id() -> None:
    fe, echo = _frontend()
    seq = fe.from_text("ɡuːtən", language="de")
    assert echo.calls[-1] == ("ɡuːtən", "de")
    assert set(seq.language_ids.tolist()) == {2}


def test_unknown_language_is_input_error() -> None:
    fe, _ = _frontend()
    with pytest.raises(InputError) as info:
        fe.from_text("a", language="fr-fr")
    assert info.value.field == "language"


def test_default_language_override_and_check() -> None:
    fe, echo = _frontend(default_language="de")
    fe.from_text("a")
    assert echo.calls[-1][1] == "de"
    with pytest.raises(ValueError):
        _frontend(default_language="xx")
    fe, echo = _frontend(languages=None)
    fe.from_text("a")
    assert echo.calls[-1][1] == "en-us"


def test_unknown_phonemes_are_skipped_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    fe, _ = _frontend(phoneme_id_map={"_": [0], "^": [1], "$": [2], "a": [3], "b": [4]})
    with caplog.at_level(logging.WARNING, logger="vitsrt.text.ipa"):
        seq = fe.from_text("a\u2603b\u2603z")
    assert seq.skipped == 3
    assert seq.phonemes == ["a", "b"]
    assert seq.phone_ids.tolist() == [1, 0, 3, 0, 4, 0, 2]
    assert "skipped 3 phoneme" in caplog.text and "U+2603" in caplog.text


@pytest.mark.parametrize("text", ["", "   ", "\x00\t"])
def test_empty_text_is_input_error(text: str) -> None:
    fe, echo = _frontend()
    with pytest.raises(InputError, match="empty") as info:
        fe.from_text(text)
    assert info.value.field == "text"
    assert echo.calls == []


def test_unpronounceable_text_is_input_error() -> None:
    fe, _ = _frontend()
    with pytest.raises(InputError, match="pronounceable") as info:
        fe.from_text("?! ,")
    assert info.value.field == "text"


def test_too_many_ids_is_input_error() -> None:
    fe, _ = _frontend(max_length=9)  # ^ _ a _ b _ c _ $ = 9
    assert len(fe.from_text("abc")) == 9
    with pytest.raises(InputError, match="limit of 9"):
        fe.from_text("abcd")


def test_from_ids_is_checked_against_the_map_size() -> None:
    fe, _ = _frontend()
    n = len(PHONEME_INVENTORY)
    seq = fe.from_ids([1, n - 1, 2], language_ids=2)
    assert seq.language_ids.tolist() == [2, 2, 2]
    with pytest.raises(InputError) as info:
        fe.from_ids([1, n, 2])
    assert info.value.field == "phone_ids"
    with pytest.raises(InputError) as info:
        fe.from_ids([1, 2], language_ids=3)  # languages {en-us: 0, de: 2} -> 3 ids
    assert info.value.field == "language_ids"
    with pytest.raises(InputError) as info:
        fe.from_ids([1, 2], tone_ids=1)  # ipa voices have one tone
    assert info.value.field == "tone_ids"
    assert fe.from_ids([5, 6], add_blank=True).phone_ids.tolist() == [0, 5, 0, 6, 0]


def test_piper_style_foreign_map() -> None:
    """A map with piper's shape but other ids (a voice trained elsewhere) drives the same code."""
    foreign = {"_": [0], "^": [1], "$": [2], " ": [3], "h": [20], "ə": [59], "l": [24], "ˈ": [120], "o": [27]}
    fe, _ = _frontend(phoneme_id_map=foreign)
    seq = fe.from_text("həlˈo")
    assert seq.phone_ids.tolist() == [1, 0, 20, 0, 59, 0, 24, 0, 120, 0, 27, 0, 2]
    assert fe.id_map.n_symbols == 121
