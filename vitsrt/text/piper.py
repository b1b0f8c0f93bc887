"""The ``piper`` front end: text -> the phonemes and ids piper-tts itself makes for an imported piper voice.

A piper voice learned the exact output of piper's own espeak-ng build (bundled with piper-tts together with
its espeak-ng data) and piper's exact way of turning it into ids. Another espeak-ng build (the ``ipa`` front
end's) reads some words differently and splits some sentences elsewhere, so the phonemes come from piper-tts's
espeak bridge (`piper.espeakbridge`, imported lazily: piper-tts is the optional ``vitsrt[piper]`` extra, GPL-3
like espeak-ng). Everything after the bridge is ours and mirrors piper-tts 1.8:

* espeak-ng cuts text into clauses, each with its terminator (``. ? ! , : ;`` or none) and whether it ends a
  sentence; language-switch flags ``(en)`` are cut out of the phonemes, the terminator is kept as a phoneme
  and ``, : ;`` are followed by a space; clauses are joined (with nothing between them unless the terminator
  added a space) until one ends a sentence;
* a sentence's phonemes are the Unicode code points of its NFD form, then adjacent code points the voice's
  ``vowel_clusters`` name are merged into one phoneme ("a", "ɪ" -> "aɪ");
* ``[[ ... ]]`` in the text is raw phonemes, one per code point, glued to the sentence before it;
* ids: ``BOS PAD p1 PAD p2 PAD ... pn PAD EOS`` through the voice's phoneme_id_map, a phoneme the map lacks
  skipped (and counted).

Sentence splitting is espeak-ng's, not vitsrt's `split_sentences`: use `PiperFrontEnd.sentences` on a whole
text to get exactly piper's id list per sentence (plus a cut at clause boundaries for a sentence longer than
the engine's id limit, which piper does not have). `from_text` gives one sequence for one segment.
Known difference: piper adds Arabic diacritics with a neural model (tashkeel) before espeak-ng; this front end
does not, so Arabic voices read undiacritized text as espeak-ng alone does (a warning says so).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from vitsrt.errors import InputError, NothingToSpeakError, TooManyIdsError, VoiceError, clip
from vitsrt.text.ids import DEFAULT_MAX_IDS, IdsFrontEnd
from vitsrt.text.inventory import BOS, EOS, PAD
from vitsrt.text.ipa import MissingExtraError, espeak_language
from vitsrt.text.sequence import PhonemeSequence, WordSpan

__all__ = ["Clause", "ClauseSource", "PiperEspeak", "PiperFrontEnd"]

logger = logging.getLogger(__name__)

# One espeak-ng clause as piper's bridge reports it: (phonemes, terminator, ends a sentence).
Clause = tuple[str, str, bool]

# espeak-ng marks words it reads with another language's rules as "(en)wiːkˈɛnd(fr)"; piper drops the flags.
_LANGUAGE_FLAGS = re.compile(r"\([^)]+\)")
# Terminators that end a clause but not a sentence; piper puts a space after them.
_CLAUSE_MARKS = (",", ":", ";")
# Raw phonemes written into the text, "[[ hɛloʊ ]]" (non-greedy, one line: piper's pattern).
_RAW_BLOCK = re.compile(r"(\[\[.*?\]\])")
# Characters a written word may carry at its edges that are not part of the word ('"Hi,"' is the word Hi).
_WORD_EDGES = ".,;:!?…—–-()[]{}\"'«»“”‘’¡¿"


class ClauseSource(Protocol):
    """What the front end needs from espeak-ng: a text's clauses for one espeak-ng voice."""

    def clauses(self, text: str, voice: str) -> list[Clause]: ...


class PiperEspeak:
    """piper-tts's espeak-ng bridge with piper's bundled espeak-ng data.

    The bridge is one espeak-ng instance per process with global state (the current voice), so every
    instance of this class shares one lock; the bridge is initialised on first use.
    """

    _lock = threading.Lock()
    _ready = False

    def clauses(self, text: str, voice: str) -> list[Clause]:
        bridge, data_dir = _import_bridge()
        with PiperEspeak._lock:
            if not PiperEspeak._ready:
                bridge.initialize(str(data_dir))
                PiperEspeak._ready = True
            try:
                bridge.set_voice(voice)
            except RuntimeError as exc:
                raise VoiceError(f"piper-tts's espeak-ng has no voice {voice!r}") from exc
            try:
                found = bridge.get_phonemes(text)
            except ValueError as exc:  # e.g. an embedded NUL
                raise InputError("text", f"espeak-ng cannot read this text: {exc}") from exc
        return [(str(phonemes), str(terminator), bool(end)) for phonemes, terminator, end in found]


def _import_bridge() -> tuple[Any, Any]:
    try:
        from piper import espeakbridge
        from piper.phonemize_espeak import ESPEAK_DATA_DIR
    except ImportError as exc:
        raise MissingExtraError("the piper front end needs piper-tts: pip install 'vitsrt[piper]'") from exc
    return espeakbridge, ESPEAK_DATA_DIR


_DEFAULT_SOURCE = PiperEspeak()


@dataclass
class _Sentence:
    """One sentence's phonemes, and where in them a clause after the first begins (places to cut it)."""

    phonemes: list[str] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)

    def extend(self, other: _Sentence) -> None:
        offset = len(self.phonemes)
        if offset:
            self.cuts.append(offset)
        self.cuts.extend(offset + cut for cut in other.cuts)
        self.phonemes.extend(other.phonemes)


def _merge_clusters(points: Sequence[str], clusters: frozenset[tuple[str, ...]]) -> tuple[list[str], list[int]]:
    """Merge runs of code points that form a known vowel cluster (longest first, two or more code points);
    returns the phonemes and, for each, the index of the code point it starts at."""
    if not clusters:
        return list(points), list(range(len(points)))
    longest = max(len(cluster) for cluster in clusters)
    phonemes: list[str] = []
    starts: list[int] = []
    i = 0
    while i < len(points):
        size = next((n for n in range(min(longest, len(points) - i), 1, -1) if tuple(points[i : i + n]) in clusters), 1)
        phonemes.append("".join(points[i : i + size]))
        starts.append(i)
        i += size
    return phonemes, starts


def _sentence(points: list[str], clause_starts: Iterable[int], clusters: frozenset[tuple[str, ...]]) -> _Sentence:
    phonemes, starts = _merge_clusters(points, clusters)
    wanted = set(clause_starts)
    return _Sentence(phonemes, [k for k, start in enumerate(starts) if k > 0 and start in wanted])


def _group_clauses(clauses: Iterable[Clause], clusters: frozenset[tuple[str, ...]] = frozenset()) -> list[_Sentence]:
    """espeak-ng's clauses of one text -> its sentences, as piper groups them (an empty sentence included
    where a sentence-ending clause had no phonemes; a trailing unterminated run only if it has some)."""
    sentences: list[_Sentence] = []
    points: list[str] = []
    starts: list[int] = []
    for phonemes, terminator, ends_sentence in clauses:
        starts.append(len(points))
        spoken = _LANGUAGE_FLAGS.sub("", phonemes) + terminator
        if terminator in _CLAUSE_MARKS:
            spoken += " "
        points.extend(unicodedata.normalize("NFD", spoken))
        if ends_sentence:
            sentences.append(_sentence(points, starts, clusters))
            points, starts = [], []
    if points:
        sentences.append(_sentence(points, starts, clusters))
    return sentences


def _add_raw_block(sentences: list[_Sentence], parts: list[str], i: int) -> None:
    """A "[[ ... ]]" block: its code points go onto the last sentence, with the spaces around it kept as one
    space each side."""
    if not sentences:
        sentences.append(_Sentence())
    last = sentences[-1].phonemes
    if i > 0 and parts[i - 1].endswith(" "):
        last.append(" ")
    last.extend(parts[i][2:-2].strip())
    if i < len(parts) - 1 and parts[i + 1].startswith(" "):
        last.append(" ")


def _piper_sentences(
    text: str, voice: str, source: ClauseSource, clusters: frozenset[tuple[str, ...]]
) -> list[_Sentence]:
    """A whole text's sentences as piper-tts phonemizes it (its `PiperVoice.phonemize` for espeak voices)."""
    parts = _RAW_BLOCK.split(text)
    sentences: list[_Sentence] = []
    after_raw = False
    for i, part in enumerate(parts):
        if part.startswith("[["):
            _add_raw_block(sentences, parts, i)
            after_raw = True
            continue
        found = _group_clauses(source.clauses(part, voice), clusters)
        if after_raw and found:
            sentences[-1].extend(found.pop(0))
        sentences.extend(found)
        after_raw = False
    if sentences and not sentences[-1].phonemes:
        sentences.pop()
    return sentences


@functools.lru_cache(maxsize=4096)
def _pronounceable(phoneme: str) -> bool:
    """True if the phoneme holds a letter or a combining mark (not a space, punctuation or a digit alone)."""
    return any(unicodedata.category(ch)[0] in "LM" for ch in phoneme)


def _written_words(text: str) -> list[str]:
    """The written words of `text`, edge punctuation stripped, anything without a letter or digit dropped."""
    words = (word.strip(_WORD_EDGES) for word in text.split())
    return [word for word in words if any(ch.isalnum() for ch in word)]


def _names(text: str, spoken: int) -> Iterator[str] | None:
    """The written words to name `spoken` spoken words by, when espeak-ng spoke exactly one per written word
    (it often joins "in the" into one, or reads "3.14" as four); None: name them by their IPA."""
    written = _written_words(text) if "[[" not in text else []
    return iter(written) if len(written) == spoken else None


@dataclass
class _Ids:
    """One sentence mapped to ids: the ids, the symbol of each id, each phoneme's id range (None: skipped)."""

    ids: list[int]
    symbols: list[str]
    spans: list[tuple[int, int] | None]
    skipped: list[str]


def _spoken_words(phonemes: Sequence[str], spans: Sequence[tuple[int, int] | None]) -> list[tuple[int, int, str]]:
    """Each spoken word as (first id, end id, its IPA): a space-free run of phonemes, from its first to its last
    pronounceable mapped phoneme (terminators and stress-free marks around it stay outside)."""
    words: list[tuple[int, int, str]] = []
    run: list[int] = []
    for k in [*range(len(phonemes)), len(phonemes)]:
        if k < len(phonemes) and not phonemes[k].isspace():
            run.append(k)
            continue
        kept = [j for j in run if spans[j] is not None and _pronounceable(phonemes[j])]
        if kept:
            first, last = kept[0], kept[-1]
            name = unicodedata.normalize("NFC", "".join(phonemes[first : last + 1]))
            words.append((spans[first][0], spans[last][1], name))  # type: ignore[index]
        run = []
    return words


class PiperFrontEnd:
    """Text -> `PhonemeSequence` for piper voices, equal to piper-tts's phonemes and ids.

    `phoneme_id_map` is the voice's map (``phoneme_id_map`` of its ``.onnx.json``: phoneme -> ids),
    `espeak_voice` its espeak-ng voice (``espeak.voice``), `vowel_clusters` its ``vowel_clusters`` if any.
    `languages` names the voice's languages (-> language id; default ``{espeak_voice: 0}``); each is read
    by the espeak-ng voice `espeak_voices` gives it, else by `espeak_voice`. The first language is the
    default. `max_length` bounds the ids of one sequence. `source` replaces piper's espeak bridge (tests).
    """

    kind = "piper"
    accepts_text = True

    def __init__(
        self,
        phoneme_id_map: Mapping[str, Sequence[int]],
        espeak_voice: str,
        *,
        languages: Mapping[str, int] | None = None,
        espeak_voices: Mapping[str, str] | None = None,
        vowel_clusters: Iterable[Sequence[str]] | None = None,
        pad: str = PAD,
        bos: str = BOS,
        eos: str = EOS,
        num_symbols: int | None = None,
        num_languages: int | None = None,
        num_tones: int = 1,
        max_length: int = DEFAULT_MAX_IDS,
        source: ClauseSource | None = None,
    ) -> None:
        if not isinstance(espeak_voice, str) or not espeak_voice.strip():
            raise ValueError(f"espeak_voice must name an espeak-ng voice, got {espeak_voice!r}")
        self.id_map = _checked_map(phoneme_id_map, (pad, bos, eos))
        self.pad_ids, self.bos_ids, self.eos_ids = self.id_map[pad], self.id_map[bos], self.id_map[eos]
        self.pad, self.bos, self.eos = pad, bos, eos
        self.espeak_voice = espeak_voice
        self.languages = dict(languages) if languages else {espeak_voice: 0}
        if any(not isinstance(v, int) or v < 0 for v in self.languages.values()):
            raise ValueError(f"language ids must be ints >= 0, got {self.languages}")
        self.espeak_voices = {name: (espeak_voices or {}).get(name, espeak_voice) for name in self.languages}
        self.default_language = next(iter(self.languages))
        self.vowel_clusters = frozenset(tuple(c) for c in vowel_clusters or ())
        missing = sorted("".join(c) for c in self.vowel_clusters if "".join(c) not in self.id_map)
        if missing or any(len(c) < 2 for c in self.vowel_clusters):
            raise ValueError(f"vowel_clusters must join two or more phonemes into one of the map's: {missing}")
        n_symbols = 1 + max(max(ids) for ids in self.id_map.values())
        n_symbols = n_symbols if num_symbols is None else _at_least(int(num_symbols), n_symbols, "num_symbols")
        n_langs = max(self.languages.values()) + 1
        n_langs = n_langs if num_languages is None else _at_least(int(num_languages), n_langs, "num_languages")
        self.max_length = int(max_length)
        self.source: ClauseSource = source if source is not None else _DEFAULT_SOURCE
        self._ids = IdsFrontEnd(
            n_symbols, num_tones, n_langs, add_blank=True, blank_id=self.pad_ids[0], max_length=self.max_length
        )
        if any(voice == "ar" or voice.startswith("ar-") for voice in self.espeak_voices.values()):
            logger.warning("piper adds Arabic diacritics (tashkeel) before espeak-ng; this front end does not")

    # ----- text ------------------------------------------------------------------------------------------

    def _language(self, language: str | None) -> tuple[str, int]:
        return espeak_language(language or self.default_language, self.languages, self.espeak_voices)

    def phonemize(self, text: str, *, language: str | None = None) -> list[list[str]]:
        """piper's phonemes of `text`, one list per sentence, exactly as piper-tts's `PiperVoice.phonemize`."""
        voice, _ = self._language(language)
        return [s.phonemes for s in _piper_sentences(text, voice, self.source, self.vowel_clusters)]

    def sentences(self, text: str, language: str | None = None) -> list[PhonemeSequence]:
        """A whole text as piper speaks it: one sequence per sentence of piper's (espeak-ng's) split, each with
        piper's ids. Sentences without phonemes are left out (piper skips them too); a sentence over
        `max_length` ids is cut at clause boundaries, else at word boundaries (piper has no limit).
        Raises NothingToSpeakError when no sentence has anything pronounceable."""
        voice, language_id = self._language(language)
        found = [s for s in _piper_sentences(text, voice, self.source, self.vowel_clusters) if s.phonemes]
        pieces = [piece for sentence in found for piece in self._pieces(sentence)]
        mapped = [self._map(piece) for piece in pieces]
        if not any(_pronounceable(p) for piece in pieces for p in piece):
            raise NothingToSpeakError("text", f"nothing pronounceable in {clip(text, 40)}")
        spoken = [_spoken_words(piece, ids.spans) for piece, ids in zip(pieces, mapped, strict=True)]
        names = _names(text, sum(map(len, spoken)))
        return [
            self._sequence(piece, ids, words, language_id, names)
            for piece, ids, words in zip(pieces, mapped, spoken, strict=True)
        ]

    def from_text(self, text: str, *, language: str | None = None, expand: bool = True) -> PhonemeSequence:
        """One segment -> one sequence: piper's ids when espeak-ng finds one sentence in it; when it finds
        several (e.g. after "Dr."), their phonemes joined by a space. `expand` is ignored: espeak-ng reads
        numbers and abbreviations itself, as it does in piper (that is what the voice learned)."""
        del expand
        voice, language_id = self._language(language)
        found = [s.phonemes for s in _piper_sentences(text, voice, self.source, self.vowel_clusters) if s.phonemes]
        phonemes = [p for k, sentence in enumerate(found) for p in ([" "] if k else []) + sentence]
        if not any(_pronounceable(p) for p in phonemes):
            raise NothingToSpeakError("text", f"nothing pronounceable in {clip(text, 40)}")
        ids = self._map(phonemes)
        if len(ids.ids) > self.max_length:
            raise TooManyIdsError(
                "text", f"segment gives {len(ids.ids)} ids, over the limit of {self.max_length}; split the text"
            )
        words = _spoken_words(phonemes, ids.spans)
        return self._sequence(phonemes, ids, words, language_id, _names(text, len(words)))

    def from_ipa(self, ipa: str, *, language: str | None = None) -> PhonemeSequence:
        """IPA given by the caller (SSML <phoneme>) -> ids as piper maps phonemes: code points of its NFD form,
        vowel clusters merged. Every phoneme must be in the map (an unknown one is refused by name)."""
        _, language_id = self._language(language)
        points = list(unicodedata.normalize("NFD", ipa.strip()))
        phonemes, _ = _merge_clusters(points, self.vowel_clusters)
        unknown = sorted({p for p in phonemes if p not in self.id_map})
        if unknown:
            names = " ".join(f"{p!r}" for p in unknown)
            raise InputError("text", f"phoneme symbol(s) not in this voice's phoneme_id_map: {clip(names, 120)}")
        if not any(_pronounceable(p) for p in phonemes):
            raise NothingToSpeakError("text", f"nothing pronounceable in the IPA {clip(ipa, 40)}")
        ids = self._map(phonemes)
        if len(ids.ids) > self.max_length:
            raise TooManyIdsError("text", f"IPA gives {len(ids.ids)} ids, over the limit of {self.max_length}")
        return self._sequence(phonemes, ids, _spoken_words(phonemes, ids.spans), language_id, None)

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

    # ----- ids -------------------------------------------------------------------------------------------

    def phonemes_to_ids(self, phonemes: Sequence[str]) -> list[int]:
        """piper's ids for one sentence's phonemes: BOS PAD, then each known phoneme's ids and PAD, then EOS."""
        return self._map(phonemes).ids

    def _map(self, phonemes: Sequence[str]) -> _Ids:
        ids = [*self.bos_ids, *self.pad_ids]
        symbols = [self.bos] * len(self.bos_ids) + [self.pad] * len(self.pad_ids)
        spans: list[tuple[int, int] | None] = []
        skipped: list[str] = []
        for phoneme in phonemes:
            got = self.id_map.get(phoneme)
            if got is None:
                skipped.append(phoneme)
                spans.append(None)
                continue
            spans.append((len(ids), len(ids) + len(got)))
            ids.extend(got)
            ids.extend(self.pad_ids)
            symbols.extend([phoneme] * len(got) + [self.pad] * len(self.pad_ids))
        ids.extend(self.eos_ids)
        symbols.extend([self.eos] * len(self.eos_ids))
        if skipped:
            logger.warning(
                "skipped %d phoneme(s) missing from the voice's phoneme_id_map: %s",
                len(skipped),
                " ".join(sorted({f"{p!r}" for p in skipped})),
            )
        return _Ids(ids, symbols, spans, skipped)

    def _sequence(
        self,
        phonemes: Sequence[str],
        ids: _Ids,
        words: list[tuple[int, int, str]],
        language_id: int,
        names: Iterable[str] | None,
    ) -> PhonemeSequence:
        """`names` (an iterator shared by a text's sentences) names the words when it has one for each."""
        phone_ids = np.asarray(ids.ids, dtype=np.int64)
        spans = tuple(WordSpan(next(names) if names is not None else ipa, a, b) for a, b, ipa in words)
        return PhonemeSequence(
            phone_ids=phone_ids,
            tone_ids=np.zeros(phone_ids.size, dtype=np.int64),
            language_ids=np.full(phone_ids.size, language_id, dtype=np.int64),
            phonemes=[p for p, span in zip(phonemes, ids.spans, strict=True) if span is not None],
            skipped=len(ids.skipped),
            symbols=tuple(ids.symbols),
            words=spans,
        )

    def _cost(self, phonemes: Sequence[str]) -> list[int]:
        """Prefix sums of the ids each phoneme adds (its ids and a pad); 0 for a skipped one."""
        costs = [0]
        for phoneme in phonemes:
            got = self.id_map.get(phoneme)
            costs.append(costs[-1] + (len(got) + len(self.pad_ids) if got is not None else 0))
        return costs

    def _pieces(self, sentence: _Sentence) -> list[list[str]]:
        """The sentence, or for one over `max_length` ids, its pieces: cut at the last clause start that fits,
        else after the last space that fits; a single word over the limit is refused."""
        phonemes = sentence.phonemes
        costs = self._cost(phonemes)
        frame = len(self.bos_ids) + len(self.pad_ids) + len(self.eos_ids)
        pieces: list[list[str]] = []
        start = 0
        while frame + costs[-1] - costs[start] > self.max_length:
            fits = max(k for k in range(start, len(phonemes) + 1) if frame + costs[k] - costs[start] <= self.max_length)
            cut = max((c for c in sentence.cuts if start < c <= fits), default=0)
            if not cut:
                cut = max((k for k in range(start + 1, fits + 1) if phonemes[k - 1].isspace()), default=0)
            if not cut:
                raise TooManyIdsError("text", f"a word gives over {self.max_length} ids; split the text")
            pieces.append(_trim(phonemes[start:cut]))
            start = cut
        pieces.append(_trim(phonemes[start:]) if pieces else list(phonemes))
        return [piece for piece in pieces if piece]


def _trim(phonemes: list[str]) -> list[str]:
    """A cut piece without the spaces at its edges."""
    first = next((k for k, p in enumerate(phonemes) if not p.isspace()), len(phonemes))
    last = next((k for k in range(len(phonemes) - 1, -1, -1) if not phonemes[k].isspace()), -1)
    return list(phonemes[first : last + 1])


def _at_least(value: int, needed: int, name: str) -> int:
    if value < needed:
        raise ValueError(f"{name} {value} is smaller than the voice needs ({needed})")
    return value


def _checked_map(mapping: Mapping[str, Sequence[int]], markers: Iterable[str]) -> dict[str, list[int]]:
    """The map as piper uses it (keys exactly as written: piper looks phonemes up without normalising)."""
    table: dict[str, list[int]] = {}
    for key, raw in mapping.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"phoneme_id_map keys must be non-empty strings, got {key!r}")
        values = [raw] if isinstance(raw, (int, np.integer)) else raw
        if isinstance(values, str) or not values or any(isinstance(i, bool) or int(i) < 0 for i in values):
            raise ValueError(f"phoneme_id_map[{key!r}] must be a non-empty list of ids >= 0, got {raw!r}")
        table[key] = [int(i) for i in values]
    for marker in markers:
        if marker not in table:
            raise ValueError(f"phoneme_id_map lacks the marker symbol {marker!r}")
    return table
