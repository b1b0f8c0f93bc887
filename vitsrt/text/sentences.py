"""Punctuation-aware sentence splitting with a hard length bound per segment.

Why: the encoder, duration predictor and flow run once per segment and attend over the
whole segment, so a segment must be short enough for bounded latency and memory, yet a
split in the wrong place (after "Dr.", inside "3.14") puts an audible pause mid-phrase.
The rules below err on the side of *not* splitting: a missed boundary only makes a
segment longer, and the length bound catches that; a spurious one is audible.

Boundaries:
- a newline always ends a segment;
- CJK terminators 。！？｡ always end one (no space follows them in CJK text);
- ``. ! ? …`` (and runs like ``?!`` or ``...``) end one when followed by whitespace and the
  next word does not start with a lower-case letter; ``!``, ``?`` and ``…`` directly followed
  by a CJK character also end one;
- closing quotes/brackets right after the terminator stay with the sentence they close;
- a single ``.`` after a known abbreviation (Mr., e.g., etc.), a single capital initial
  (J. R. R.), a dotted acronym (U.S., a.m.) or a leading list number ("1. ") is not a boundary;
  a few abbreviations (No., Vol., Jan.) are only kept when a number follows.

Segments longer than ``max_chars`` are cut at the last clause mark (, ; : — and CJK
，、；：) inside the bound, else at the last space, else hard at the bound.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from vitsrt.text.normalize import normalize_text

__all__ = [
    "ABBREVIATIONS",
    "DEFAULT_MAX_SENTENCE_CHARS",
    "NUMBER_ABBREVIATIONS",
    "SentenceSplitter",
    "split_sentences",
]

DEFAULT_MAX_SENTENCE_CHARS = 300

# Lower-case, without the final dot. Titles and Latin abbreviations that practically never end a sentence.
ABBREVIATIONS: frozenset[str] = frozenset(
    {
        "mr", "mrs", "ms", "mx", "dr", "prof", "sr", "jr", "st", "mt", "ft", "messrs", "mme", "mlle",
        "gen", "col", "lt", "capt", "cpt", "sgt", "cmdr", "adm", "gov", "sen", "rep", "hon", "pres", "rev",
        "vs", "etc", "cf", "al", "approx", "ca", "viz", "resp", "incl", "esp",
        "inc", "ltd", "co", "corp", "bros", "dept", "univ", "assn",
        "ave", "blvd", "rd", "hwy",
        "e.g", "i.e", "a.m", "p.m", "ph.d", "u.s", "u.k",
    }
)  # fmt: skip

# Abbreviations that are also ordinary words ("no", "mar") or often end a clause: kept only before a number.
NUMBER_ABBREVIATIONS: frozenset[str] = frozenset(
    {
        "no", "nos", "nr", "vol", "vols", "fig", "figs", "p", "pp", "art", "sec", "ch", "eq", "ex", "op",
        "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    }
)  # fmt: skip

_ASCII_TERMINATORS = frozenset(".!?…")
_CJK_TERMINATORS = frozenset("。！？｡")
_TERMINATORS = _ASCII_TERMINATORS | _CJK_TERMINATORS
# Characters that close a quotation or bracket; they belong to the sentence before them.
_CLOSERS = frozenset("\"'”’»›)]}」』】〕）〉》〗〙〛＂＇］｝")
_OPENERS = frozenset("\"'“‘«‹([{「『【〔（〈《〖〘〚＂＇［｛¡¿")
# Clause marks where an over-long sentence may be cut; the ASCII ones need a following space.
_CLAUSE_MARKS = frozenset(",;:—–")
_CJK_CLAUSE_MARKS = frozenset("，、；：")
_DOTTED_ACRONYM = re.compile(r"^[^\W\d_]{1,2}(?:\.[^\W\d_]{1,2})+$")


def _is_wide(ch: str) -> bool:
    """True for CJK-width characters (scripts written without spaces between sentences)."""
    return unicodedata.east_asian_width(ch) in ("W", "F")


@dataclass(frozen=True)
class SentenceSplitter:
    """Split text into speakable segments of at most `max_chars` code points each.

    `abbreviations` and `number_abbreviations` are lower-case and without the final dot;
    `min_fill` is the fraction of `max_chars` a clause-mark cut must reach before it is
    preferred over a later plain-space cut (so a comma at character 5 does not produce a
    5-character segment when a space near the bound exists).
    """

    max_chars: int = DEFAULT_MAX_SENTENCE_CHARS
    abbreviations: frozenset[str] = field(default=ABBREVIATIONS)
    number_abbreviations: frozenset[str] = field(default=NUMBER_ABBREVIATIONS)
    min_fill: float = 0.5

    def __post_init__(self) -> None:
        if self.max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {self.max_chars}")
        if not 0.0 <= self.min_fill <= 1.0:
            raise ValueError(f"min_fill must be in [0, 1], got {self.min_fill}")
        # Accept any iterable of strings from callers, stored normalised and immutable.
        object.__setattr__(self, "abbreviations", _as_keys(self.abbreviations))
        object.__setattr__(self, "number_abbreviations", _as_keys(self.number_abbreviations))

    def split(self, text: str) -> list[str]:
        """Normalise `text` and return its non-empty segments in order."""
        segments: list[str] = []
        for line in normalize_text(text).split("\n"):
            for sentence in self._split_line(line):
                segments.extend(self._bound(sentence))
        return segments

    # -- sentence boundaries -------------------------------------------------------------------

    def _split_line(self, line: str) -> list[str]:
        sentences: list[str] = []
        start = 0
        i = 0
        n = len(line)
        while i < n:
            if line[i] not in _TERMINATORS:
                i += 1
                continue
            term_end = i
            while term_end < n and line[term_end] in _TERMINATORS:
                term_end += 1
            end = term_end
            while end < n and (line[end] in _CLOSERS or line[end] in _TERMINATORS):
                end += 1
            if self._is_boundary(line, start, i, term_end, end):
                piece = line[start:end].strip()
                if piece:
                    sentences.append(piece)
                start = end
            i = end
        tail = line[start:].strip()
        if tail:
            sentences.append(tail)
        return sentences

    def _is_boundary(self, line: str, start: int, i: int, term_end: int, end: int) -> bool:
        """Decide whether the terminator run line[i:term_end] (+ closers up to `end`) ends a sentence."""
        run = line[i:term_end]
        if any(ch in _CJK_TERMINATORS for ch in run):
            return True
        if end >= len(line):
            return True
        after = line[end]
        if not after.isspace():
            # "3.14", "U.S.A", "example.com" stay whole; "好!我" is CJK text without spaces.
            return run != "." and _is_wide(after)
        nxt = _next_word_start(line, end)
        if nxt is None:
            return True
        if nxt.islower():
            # "e.g. the", "Wait... what", '"Stop!" she said': the sentence goes on.
            return False
        if run == "." and end == term_end:
            word = _word_before(line, start, i)
            if self._keeps_period(word, line, start, i, nxt):
                return False
        return True

    def _keeps_period(self, word: str, line: str, start: int, i: int, nxt: str) -> bool:
        """True when the single '.' after `word` belongs to the word rather than ending the sentence."""
        if not word:
            return False
        key = word.lower()
        if key in self.abbreviations:
            return True
        if key in self.number_abbreviations and nxt.isdigit():
            return True
        if len(word) == 1 and word.isalpha() and word.isupper():
            return True  # an initial: "J. R. R. Tolkien"
        if _DOTTED_ACRONYM.match(word):
            return True  # "U.S.", "a.m.", "Ph.D."
        # "1. Preheat the oven": a list number opening the sentence.
        return word.isdigit() and not line[start : i - len(word)].strip(" " + "".join(_OPENERS))

    # -- length bound --------------------------------------------------------------------------

    def _bound(self, sentence: str) -> list[str]:
        pieces: list[str] = []
        rest = sentence
        while len(rest) > self.max_chars:
            cut = self._find_cut(rest)
            head = rest[:cut].rstrip()
            rest = rest[cut:].lstrip()
            if head:
                pieces.append(head)
        if rest:
            pieces.append(rest)
        return pieces

    def _find_cut(self, s: str) -> int:
        """Index to cut `s` at so that s[:cut].rstrip() fits in max_chars (always 1 <= cut <= max_chars)."""
        limit = self.max_chars
        clause_cut = 0
        space_cut = 0
        for idx in range(min(len(s), limit + 1)):
            ch = s[idx]
            if ch.isspace():
                if 0 < idx <= limit:
                    space_cut = idx
                continue
            if ch in _CLAUSE_MARKS or ch in _CJK_CLAUSE_MARKS:
                k = idx + 1
                while k < len(s) and s[k] in _CLOSERS:
                    k += 1
                needs_space = ch in _CLAUSE_MARKS
                if k <= limit and (not needs_space or k == len(s) or s[k].isspace()):
                    clause_cut = k
        if clause_cut and clause_cut >= self.min_fill * limit:
            return clause_cut
        if space_cut:
            return space_cut
        if clause_cut:
            return clause_cut
        # No break point at all (one huge "word", CJK without clause marks): cut hard, but never
        # strand a combining mark or joiner at the start of the next piece.
        cut = limit
        while cut > 1 and (unicodedata.combining(s[cut]) or s[cut] in "\u200c\u200d"):
            cut -= 1
        return cut


def _as_keys(words: Iterable[str]) -> frozenset[str]:
    return frozenset(w.lower().rstrip(".") for w in words)


def _word_before(line: str, start: int, i: int) -> str:
    """The token ending right before position i (back to whitespace), without opening quotes/brackets."""
    j = i
    while j > start and not line[j - 1].isspace():
        j -= 1
    word = line[j:i]
    while word and word[0] in _OPENERS:
        word = word[1:]
    return word


def _next_word_start(line: str, pos: int) -> str | None:
    """First character after position `pos` that is neither whitespace nor an opening quote/bracket."""
    for ch in line[pos:]:
        if not ch.isspace() and ch not in _OPENERS:
            return ch
    return None


def split_sentences(
    text: str,
    max_chars: int = DEFAULT_MAX_SENTENCE_CHARS,
    *,
    abbreviations: Iterable[str] | None = None,
) -> list[str]:
    """Split `text` into segments of at most `max_chars` characters (see `SentenceSplitter`)."""
    if abbreviations is None:
        return SentenceSplitter(max_chars=max_chars).split(text)
    return SentenceSplitter(max_chars=max_chars, abbreviations=frozenset(abbreviations)).split(text)
