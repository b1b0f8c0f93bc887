"""The ``ipa`` front end: text -> espeak-ng IPA phonemes -> ids through a piper-style id map.

Phonemes come from espeak-ng, driven by the `phonemizer` package (pure Python, ctypes) and
the libespeak-ng shared library *and* its voice data shipped inside the `espeakng-loader`
wheel. Nothing is downloaded and no system espeak-ng is needed. Why this pair rather than
`piper-phonemize`: piper-phonemize only has wheels up to CPython 3.11 (vitsrt supports
3.11+), and with stock espeak it breaks clauses after "Dr." and drops "…". phonemizer's own
punctuation restoration is not used either (it cuts "3.14" at the dot and loses words);
`split_pause_marks` does that job here. Both packages end up GPL-3 (espeak-ng), which is why
the ``ipa`` front end is an optional extra and is imported lazily.

Ids follow piper's convention so piper-style voices and our own share one code path:
``BOS [pad] p1 [pad] p2 [pad] ... pn [pad] EOS`` where the pads appear when the voice was
trained with blanks (``add_blank``). A phoneme the map lacks is skipped, counted and logged
rather than failing the request: one exotic symbol should not silence a sentence.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from vitsrt.errors import InputError, NothingToSpeakError, TooManyIdsError, VitsrtError, clip
from vitsrt.text.expand import expand_text
from vitsrt.text.ids import DEFAULT_MAX_IDS, IdsFrontEnd
from vitsrt.text.inventory import BOS, EOS, PAD, default_phoneme_id_map
from vitsrt.text.normalize import normalize_text
from vitsrt.text.sequence import PhonemeSequence, WordSpan

__all__ = [
    "DEFAULT_LANGUAGE",
    "EspeakPhonemizer",
    "IpaFrontEnd",
    "PhonemeIdMap",
    "PhonemeSequence",
    "Phonemizer",
    "TextPiece",
    "default_phoneme_id_map",
    "join_pieces",
    "split_pause_marks",
]

logger = logging.getLogger(__name__)

DEFAULT_LANGUAGE = "en-us"


class Phonemizer(Protocol):
    """Anything that turns a sentence into an IPA string for an espeak-ng voice name ("en-us")."""

    def phonemize(self, text: str, voice: str) -> str: ...


class PhonemeIdMap:
    """A validated piper-style phoneme-id map (symbol -> list of ids) with a tokenizer.

    Keys are NFC-normalised. Tokenizing is greedy longest-match over the keys, so maps with
    multi-character symbols ("aɪ", "t͡ʃ") work as well as piper's one-code-point maps; a
    character the map lacks is retried as its canonical decomposition ("õ" -> "o" + "◌̃").
    """

    def __init__(
        self,
        mapping: Mapping[str, Sequence[int]],
        *,
        pad: str = PAD,
        bos: str = BOS,
        eos: str = EOS,
    ) -> None:
        table: dict[str, tuple[int, ...]] = {}
        for raw_key, raw_ids in mapping.items():
            if not isinstance(raw_key, str) or not raw_key:
                raise ValueError(f"phoneme_id_map keys must be non-empty strings, got {raw_key!r}")
            if isinstance(raw_ids, str):
                raise ValueError(f"phoneme_id_map[{raw_key!r}] must be a list of ids, got a string")
            if isinstance(raw_ids, (int, np.integer)):
                raw_ids = [raw_ids]
            ids = tuple(int(i) for i in raw_ids)
            if not ids or any(i < 0 for i in ids):
                raise ValueError(f"phoneme_id_map[{raw_key!r}] must be a non-empty list of ids >= 0, got {raw_ids!r}")
            key = unicodedata.normalize("NFC", raw_key)
            if key in table and table[key] != ids:
                raise ValueError(f"phoneme_id_map has two entries for {key!r} after NFC normalisation")
            table[key] = ids
        for role, symbol in (("pad", pad), ("bos", bos), ("eos", eos)):
            if symbol not in table:
                raise ValueError(f"phoneme_id_map lacks the {role} symbol {symbol!r}")
        self._table = table
        self._specials = frozenset((pad, bos, eos))
        self._pad, self._bos, self._eos = pad, bos, eos
        self._max_key_len = max(len(k) for k in table)
        self.pad_ids = table[pad]
        self.bos_ids = table[bos]
        self.eos_ids = table[eos]
        self.n_symbols = 1 + max(max(ids) for ids in table.values())

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._table and symbol not in self._specials

    def __len__(self) -> int:
        return len(self._table)

    def ids_of(self, symbol: str) -> tuple[int, ...]:
        return self._table[symbol]

    def tokenize(self, phonemes: str) -> tuple[list[str], list[str]]:
        """Split an IPA string into known symbols; returns (symbols, unknown characters) in order.

        pad/BOS/EOS characters in the input are treated as unknown: they are markers the front
        end places itself, never phonemes.
        """
        known, _, unknown = self.tokenize_at(phonemes)
        return known, unknown

    def tokenize_at(self, phonemes: str) -> tuple[list[str], list[int], list[str]]:
        """`tokenize`, plus where each symbol starts in the NFC form of `phonemes` (words are found by it)."""
        text = unicodedata.normalize("NFC", phonemes)
        known: list[str] = []
        positions: list[int] = []
        unknown: list[str] = []
        i = 0
        while i < len(text):
            match = self._longest_match(text, i)
            if match:
                known.append(match)
                positions.append(i)
                i += len(match)
                continue
            parts = unicodedata.normalize("NFD", text[i])
            if len(parts) > 1 and all(p in self for p in parts):
                known.extend(parts)
                positions.extend([i] * len(parts))
            else:
                unknown.append(text[i])
            i += 1
        return known, positions, unknown

    def _longest_match(self, text: str, i: int) -> str | None:
        for size in range(min(self._max_key_len, len(text) - i), 0, -1):
            candidate = text[i : i + size]
            if candidate in self:
                return candidate
        return None

    def to_ids(self, symbols: Sequence[str], *, add_blank: bool) -> np.ndarray:
        """``BOS [pad] s1 [pad] ... sn [pad] EOS`` as int64 (pads only with `add_blank`)."""
        ids: list[int] = list(self.bos_ids)
        if add_blank:
            ids.extend(self.pad_ids)
        for symbol in symbols:
            ids.extend(self._table[symbol])
            if add_blank:
                ids.extend(self.pad_ids)
        ids.extend(self.eos_ids)
        return np.asarray(ids, dtype=np.int64)

    def symbol_ranges(self, symbols: Sequence[str], *, add_blank: bool) -> list[tuple[int, int]]:
        """The id range [start, end) of each symbol in `to_ids(symbols)` (its own ids, not the blank after)."""
        blank = len(self.pad_ids) if add_blank else 0
        at = len(self.bos_ids) + blank
        ranges = []
        for symbol in symbols:
            size = len(self._table[symbol])
            ranges.append((at, at + size))
            at += size + blank
        return ranges

    def id_symbols(self, symbols: Sequence[str], *, add_blank: bool) -> tuple[str, ...]:
        """The symbol each id of `to_ids(symbols)` stands for (markers as the map names them)."""
        pad = (self._pad,) * len(self.pad_ids) if add_blank else ()
        out: list[str] = [self._bos] * len(self.bos_ids)
        out.extend(pad)
        for symbol in symbols:
            out.extend([symbol] * len(self._table[symbol]))
            out.extend(pad)
        out.extend([self._eos] * len(self.eos_ids))
        return tuple(out)


# Marks that carry a pause or intonation and that the voice sees as symbols. espeak-ng reads them
# but drops them from its phoneme output, so they are cut out of the text around each espeak call
# and put back in place. "." is treated as such a mark only at the end of a segment: inside one it
# belongs to an abbreviation ("Dr. Smith") or a number ("3.14"), which espeak must see to read right.
_MARK_RUN = re.compile(r'[,;:!?…—()\[\]{}"«»“”¡¿.]+')
_DOT_RUN = re.compile(r"\.{3,}")


@dataclass(frozen=True)
class TextPiece:
    """A stretch of a segment: words for espeak (`is_mark` False) or a run of pause marks."""

    text: str
    is_mark: bool
    space_before: bool


def split_pause_marks(text: str) -> list[TextPiece]:
    """Cut free-standing punctuation out of `text`, keeping order and word spacing.

    A run of marks is free-standing when whitespace (or an end of the text) touches either side
    of it: "word," and "(word" are cut, "3.14", "10:30" and "a,b" stay inside the words. "..."
    becomes "…" first so an ellipsis is one mark.
    """
    text = _DOT_RUN.sub("…", text)
    pieces: list[TextPiece] = []
    pos = 0

    def add(piece: str, is_mark: bool, start: int) -> None:
        stripped = piece.strip()
        if stripped:
            lead = len(piece) - len(piece.lstrip())
            space = start + lead > 0 and text[start + lead - 1].isspace()
            pieces.append(TextPiece(stripped, is_mark, space))

    for match in _MARK_RUN.finditer(text):
        start, end = match.span()
        free_left = start == 0 or text[start - 1].isspace()
        free_right = end == len(text) or text[end].isspace()
        if not (free_left or free_right):
            continue
        run = match.group()
        if run.startswith(".") and text[end:].strip():
            # Mid-segment dots belong to the word before them ("Dr.", "e.g.,", '"Hi." she said'):
            # espeak needs them to read the abbreviation; only what follows them is a mark.
            dots = len(run) - len(run.lstrip("."))
            if dots == len(run):
                continue
            start += dots
            run = run[dots:]
        add(text[pos:start], False, pos)
        add(run, True, start)
        pos = end
    add(text[pos:], False, pos)
    return pieces


def join_pieces(pieces: Sequence[TextPiece], phonemes: Sequence[str]) -> str:
    """Rebuild one phoneme string from `pieces`, with `phonemes` standing in for the word pieces."""
    out: list[str] = []
    words = iter(phonemes)
    for piece in pieces:
        value = piece.text if piece.is_mark else next(words).strip()
        if not value:
            continue
        if out and piece.space_before:
            out.append(" ")
        out.append(value)
    return "".join(out)


class MissingExtraError(VitsrtError):
    """The optional `ipa` extra is not installed. A VitsrtError, so the CLI prints one line and the server
    answers with the message instead of "internal error"."""


def _configure_bundled_espeak(wrapper: Any) -> None:
    """Point phonemizer at the libespeak-ng and espeak-ng-data inside the espeakng-loader wheel.

    An explicit PHONEMIZER_ESPEAK_LIBRARY in the environment wins (e.g. a system espeak-ng the
    operator prefers); otherwise the bundled copy is used so no system package is required.
    """
    if os.environ.get("PHONEMIZER_ESPEAK_LIBRARY"):
        return
    try:
        import espeakng_loader
    except ImportError as exc:
        raise MissingExtraError(
            "the ipa front end needs espeak-ng: pip install 'vitsrt[ipa]' "
            "(or set PHONEMIZER_ESPEAK_LIBRARY to a libespeak-ng)"
        ) from exc
    wrapper.set_library(espeakng_loader.get_library_path())
    wrapper.set_data_path(espeakng_loader.get_data_path())


class _DropWordCountNotes(logging.Filter):
    """phonemizer warns whenever espeak's word count differs from the input's, which is normal
    here (numbers and abbreviations expand into several words); keep everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "words count mismatch" not in record.getMessage()


def _phonemizer_logger() -> logging.Logger:
    """A private logger for phonemizer that forwards to this module's logger, minus the noise.

    Built unregistered (not via logging.getLogger) so attaching the filter changes no global
    logging state.
    """
    child = logging.Logger(f"{__name__}.espeak")
    child.parent = logger
    child.addFilter(_DropWordCountNotes())
    return child


class EspeakPhonemizer:
    """espeak-ng IPA through `phonemizer`, one backend per voice name, serialised by a lock.

    libespeak-ng keeps global state and is not thread-safe; phonemizer gives every backend its
    own copy of the library, and the lock keeps concurrent requests on this instance from
    interleaving inside it. Stress marks are kept (they carry prosody), pause marks are put back
    where they stood (see `split_pause_marks`), espeak's language-switch flags are dropped.
    phonemizer's own punctuation handling is switched off: it splits "3.14" at the dot.
    """

    def __init__(self, *, with_stress: bool = True) -> None:
        self._with_stress = with_stress
        self._backends: dict[str, Any] = {}
        self._lock = threading.Lock()

    def phonemize(self, text: str, voice: str) -> str:
        pieces = split_pause_marks(text)
        words = [p.text for p in pieces if not p.is_mark]
        with self._lock:
            backend = self._backend(voice)
            phonemes = backend.phonemize(words, strip=True, njobs=1) if words else []
        if len(phonemes) != len(words):
            raise RuntimeError(f"phonemizer returned {len(phonemes)} lines for {len(words)}")
        return join_pieces(pieces, phonemes)

    def _backend(self, voice: str) -> Any:
        backend = self._backends.get(voice)
        if backend is not None:
            return backend
        try:
            from phonemizer.backend import EspeakBackend
            from phonemizer.backend.espeak.wrapper import EspeakWrapper
        except ImportError as exc:
            raise MissingExtraError(
                "the ipa front end (text input) needs phonemizer and espeak-ng: pip install 'vitsrt[ipa]'"
            ) from exc
        _configure_bundled_espeak(EspeakWrapper)
        try:
            backend = EspeakBackend(
                voice,
                punctuation_marks=_NEVER,
                preserve_punctuation=False,
                with_stress=self._with_stress,
                language_switch="remove-flags",
                words_mismatch="ignore",
                logger=_phonemizer_logger(),
            )
        except RuntimeError as exc:
            raise InputError("language", f"espeak-ng has no voice {voice!r}") from exc
        self._backends[voice] = backend
        return backend


# Given to phonemizer as its punctuation pattern: matches nothing, so phonemizer never strips marks
# out of words ("3.14") before espeak sees them.
_NEVER = re.compile(r"(?!)")


def _pronounceable(symbols: Sequence[str]) -> bool:
    """True if any symbol holds a letter or a combining mark (not just spaces and punctuation)."""
    return any(unicodedata.category(ch)[0] in "LM" for s in symbols for ch in s)


# Characters a written word may carry at its edges that are not part of the word ('"Hi,"' is the word Hi).
_WORD_EDGES = ',;:!?…—()[]{}"«»“”¡¿'


def _text_words(text: str) -> list[str]:
    """The written words of `text` as espeak-ng is given them (pause marks cut out, see `split_pause_marks`),
    edge marks stripped, anything without a letter or digit (a lone dash) dropped: espeak speaks none of it."""
    words: list[str] = []
    for piece in split_pause_marks(text):
        if not piece.is_mark:
            words.extend(word.strip(_WORD_EDGES) for word in piece.text.split())
    return [word for word in words if any(ch.isalnum() for ch in word)]


def _word_numbers(text: str) -> list[int]:
    """For each character: the number of the whitespace-free stretch it is in, -1 for whitespace."""
    numbers: list[int] = []
    current = -1
    for i, ch in enumerate(text):
        if ch.isspace():
            numbers.append(-1)
            continue
        if i == 0 or text[i - 1].isspace():
            current += 1
        numbers.append(current)
    return numbers


def _ipa_words(ipa: str, symbols: Sequence[str], positions: Sequence[int]) -> list[tuple[int, int]]:
    """Each spoken word as (first, last) index into `symbols`. espeak-ng separates words by spaces, so a word is
    a whitespace-free stretch of `ipa` (the NFC string `symbols` were tokenized from), from its first to its last
    pronounceable symbol: pause marks glued to it ("wˈɜːld,") stay outside, a stretch of marks only is no word."""
    numbers = _word_numbers(ipa)
    words: dict[int, list[int]] = {}
    for index, (symbol, at) in enumerate(zip(symbols, positions, strict=True)):
        if numbers[at] >= 0 and _pronounceable([symbol]):
            words.setdefault(numbers[at], [index, index])[1] = index
    return [(first, last) for first, last in words.values()]


def espeak_language(name: str, languages: Mapping[str, int], espeak_voices: Mapping[str, str]) -> tuple[str, int]:
    """(espeak voice, language id) of a voice's language `name`, or of the one language whose espeak voice is
    `name`; InputError otherwise. Shared by the espeak front ends (`ipa`, `piper`)."""
    if name not in languages:
        by_voice = [lang for lang, voice in espeak_voices.items() if voice == name]
        if len(by_voice) != 1:
            raise InputError("language", f"{clip(name)} is not a language of this voice "
                             f"(choose from {sorted(languages)})")
        name = by_voice[0]
    return espeak_voices[name], languages[name]


class IpaFrontEnd:
    """Text -> `PhonemeSequence` for voices whose symbols are espeak-ng IPA phonemes.

    `phoneme_id_map` is the voice's piper-style map (defaults to `default_phoneme_id_map()`),
    with `pad`/`bos`/`eos` naming its marker symbols. `languages` maps the voice's language
    names to its language ids; `espeak_voices` maps a language name to the espeak-ng voice that
    phonemizes it (a name without an entry is used as the espeak voice itself, so
    ``{"en-us": 0}`` needs no `espeak_voices`). The first language is the default unless
    `default_language` says otherwise. `add_blank` intersperses the pad symbol between
    phonemes. `num_symbols`/`num_languages` are the embedding-table sizes when they exceed what
    the map/languages imply. `phonemizer` may be shared between voices or replaced (tests).
    """

    kind = "ipa"
    accepts_text = True

    def __init__(
        self,
        phoneme_id_map: Mapping[str, Sequence[int]] | None = None,
        languages: Mapping[str, int] | None = None,
        *,
        espeak_voices: Mapping[str, str] | None = None,
        default_language: str | None = None,
        add_blank: bool = True,
        pad: str = PAD,
        bos: str = BOS,
        eos: str = EOS,
        num_symbols: int | None = None,
        num_languages: int | None = None,
        num_tones: int = 1,
        max_length: int = DEFAULT_MAX_IDS,
        phonemizer: Phonemizer | None = None,
    ) -> None:
        table = phoneme_id_map if phoneme_id_map is not None else default_phoneme_id_map()
        self.id_map = PhonemeIdMap(table, pad=pad, bos=bos, eos=eos)
        langs = dict(languages) if languages else {default_language or DEFAULT_LANGUAGE: 0}
        if any(not isinstance(v, int) or v < 0 for v in langs.values()):
            raise ValueError(f"language ids must be ints >= 0, got {langs}")
        self.languages = langs
        self.espeak_voices = {name: (espeak_voices or {}).get(name, name) for name in langs}
        self.default_language = default_language or next(iter(langs))
        if self.default_language not in langs:
            raise ValueError(f"default_language {self.default_language!r} is not among {sorted(langs)}")
        n_symbols = self.id_map.n_symbols if num_symbols is None else int(num_symbols)
        if n_symbols < self.id_map.n_symbols:
            raise ValueError(f"num_symbols {n_symbols} is smaller than the phoneme_id_map needs")
        n_languages = max(langs.values()) + 1 if num_languages is None else int(num_languages)
        if n_languages <= max(langs.values()):
            raise ValueError(f"num_languages {n_languages} does not cover the language ids {langs}")
        self.add_blank = bool(add_blank)
        self.max_length = int(max_length)
        self.phonemizer: Phonemizer = phonemizer if phonemizer is not None else EspeakPhonemizer()
        # The same table sizes guard ids sent directly to this voice.
        self._ids = IdsFrontEnd(
            n_symbols,
            num_tones,
            n_languages,
            add_blank=self.add_blank,
            blank_id=self.id_map.pad_ids[0],
            max_length=self.max_length,
        )

    def _language(self, language: str | None) -> tuple[str, int]:
        return espeak_language(language or self.default_language, self.languages, self.espeak_voices)

    def phonemize(self, text: str, *, language: str | None = None, expand: bool = True) -> str:
        """The raw IPA string for `text` (for debugging and `vitsrt` CLI display); `expand` as in `from_text`."""
        voice, _ = self._language(language)
        return self.phonemizer.phonemize(self._spoken_text(text, voice, expand), voice)

    @staticmethod
    def _spoken_text(text: str, voice: str, expand: bool) -> str:
        """Normalised text, with numbers, dates, abbreviations ... written out for `voice` when `expand`.

        Keyed by the espeak-ng voice rather than the voice's own language name: the espeak voice is
        what reads the words, and its region decides conventions (en-us reads 12/03 as December 3rd).
        """
        clean = normalize_text(text, keep_newlines=False)
        return expand_text(clean, voice) if expand else clean

    def from_text(self, text: str, *, language: str | None = None, expand: bool = True) -> PhonemeSequence:
        """Phonemize one segment (call the sentence splitter first for long text) and map it to ids.

        With `expand` (the default) numbers, money, dates, times, abbreviations, URLs and emoji are
        first rewritten as the words a person would say (`vitsrt.text.expand.expand_text`) for
        languages that have an expander; ``expand=False`` hands the text to espeak-ng as written.
        """
        voice, language_id = self._language(language)
        clean = self._spoken_text(text, voice, expand)
        if not clean:
            raise NothingToSpeakError("text", "is empty (nothing to synthesize)")
        ipa = unicodedata.normalize("NFC", self.phonemizer.phonemize(clean, voice))
        symbols, positions, unknown = self.id_map.tokenize_at(ipa)
        if unknown:
            logger.warning(
                "skipped %d phoneme(s) missing from the voice's phoneme_id_map: %s",
                len(unknown),
                " ".join(sorted({f"{ch!r}(U+{ord(ch):04X})" for ch in unknown})),
            )
        if not _pronounceable(symbols):
            raise NothingToSpeakError("text", f"nothing pronounceable in {clip(clean, 40)}")
        phone_ids = self.id_map.to_ids(symbols, add_blank=self.add_blank)
        if phone_ids.size > self.max_length:
            raise TooManyIdsError(
                "text", f"segment gives {phone_ids.size} ids, over the limit of {self.max_length}; split the text"
            )
        return PhonemeSequence(
            phone_ids=phone_ids,
            tone_ids=np.zeros(phone_ids.size, dtype=np.int64),
            language_ids=np.full(phone_ids.size, language_id, dtype=np.int64),
            phonemes=symbols,
            skipped=len(unknown),
            symbols=self.id_map.id_symbols(symbols, add_blank=self.add_blank),
            words=self._words(clean, ipa, symbols, positions),
        )

    def from_ipa(self, ipa: str, *, language: str | None = None) -> PhonemeSequence:
        """IPA given by the caller (SSML <phoneme>) straight to ids, no espeak-ng: every symbol must be in the
        voice's phoneme_id_map (an unknown one is refused by name: silently skipping it would say another word).
        Words are the IPA's space-separated runs, named by their IPA."""
        _, language_id = self._language(language)
        ipa = unicodedata.normalize("NFC", ipa.strip())
        symbols, positions, unknown = self.id_map.tokenize_at(ipa)
        if unknown:
            names = " ".join(sorted({f"{ch!r}(U+{ord(ch):04X})" for ch in unknown}))
            raise InputError("text", f"phoneme symbol(s) not in this voice's phoneme_id_map: {clip(names, 120)}")
        if not _pronounceable(symbols):
            raise NothingToSpeakError("text", f"nothing pronounceable in the IPA {clip(ipa, 40)}")
        phone_ids = self.id_map.to_ids(symbols, add_blank=self.add_blank)
        if phone_ids.size > self.max_length:
            raise TooManyIdsError("text", f"IPA gives {phone_ids.size} ids, over the limit of {self.max_length}")
        return PhonemeSequence(
            phone_ids=phone_ids,
            tone_ids=np.zeros(phone_ids.size, dtype=np.int64),
            language_ids=np.full(phone_ids.size, language_id, dtype=np.int64),
            phonemes=symbols,
            symbols=self.id_map.id_symbols(symbols, add_blank=self.add_blank),
            words=self._words(ipa, ipa, symbols, positions),
        )

    def _words(self, text: str, ipa: str, symbols: list[str], positions: list[int]) -> tuple[WordSpan, ...]:
        """The spoken words with their id ranges. Named by the written (expanded) words of `text` when there are
        as many of them as espeak-ng spoke, else by their IPA: espeak sometimes joins words ("of the" ->
        "ʌvðə"), and then no one-to-one pairing is safe, so the whole segment keeps the IPA names."""
        spoken = _ipa_words(ipa, symbols, positions)
        written = _text_words(text)
        names = written if len(written) == len(spoken) else ["".join(symbols[a : b + 1]) for a, b in spoken]
        ranges = self.id_map.symbol_ranges(symbols, add_blank=self.add_blank)
        return tuple(WordSpan(name, ranges[a][0], ranges[b][1]) for name, (a, b) in zip(names, spoken, strict=True))

    def from_ids(
        self,
        phone_ids: object,
        tone_ids: object = None,
        language_ids: object = None,
        *,
        add_blank: bool = False,
    ) -> PhonemeSequence:
        """Ids sent directly, checked against this voice's table sizes (see `IdsFrontEnd.from_ids`)."""
        return self._ids.from_ids(phone_ids, tone_ids, language_ids, add_blank=add_blank)
