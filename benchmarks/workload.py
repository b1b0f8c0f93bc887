"""What the benchmark asks for: a fixed, built-in set of sentences (or the user's), turned into requests.

The built-in sentences were written for this project. They come in three lengths so that results say
something about both time to first audio (long sentences) and per-request overhead (short ones):
short ~6-9 words, medium ~20 words, long ~60 words. Each level of a run cycles through the chosen
sentences in a fixed order, so two runs with the same flags send the same requests.

Voices with the ``ids`` front end (Bert-VITS2 voices until their text front end exists) cannot take text.
For them the text is turned into *stand-in* phoneme ids, deterministically (see `derive_phonemes`):
one phone per letter, a silence id between words, a punctuation id for punctuation, tone 0, language 0,
and blanks interspersed when the voice was trained with them, with a pad at both ends (as Bert-VITS2's
own front end does). The audio is meaningless, but the sequence lengths, and so the work per request,
track the text: a real English G2P gives a little fewer phones than letters (roughly 0.8 per letter),
so stand-in ids make requests slightly longer than real ones, never shorter.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vitsrt.errors import InputError

SHORT = (
    "The kettle clicked off just as the phone rang.",
    "Please leave the parcel by the blue door.",
    "Four gulls circled above the empty harbour.",
    "Turn left after the second bridge.",
)

MEDIUM = (
    "Before the storm arrived, the fishermen pulled their boats high onto the shingle and tied them down "
    "with rope.",
    "Our train was delayed for almost an hour, so we bought warm bread at the station and watched the snow "
    "fall.",
    "If the printer jams again, open the side panel, remove the crumpled sheet and close the tray gently.",
    "She planted tomatoes along the south wall, where the bricks hold the afternoon heat until late evening.",
)

LONG = (
    "When the old observatory on the hill was finally reopened, the town held a small celebration: children "
    "queued to look at the craters of the moon, a retired teacher explained how the brass telescope had been "
    "carried up the slope by horse in the winter of its founding, and late at night, after the crowd had "
    "gone home, the volunteers sat on the steps and counted meteors until dawn.",
    "The recipe looks simple, but the bakers who make it well will tell you that everything depends on "
    "patience, because the dough has to rest in a cool room overnight, be folded gently three times in the "
    "morning, and then bake in a very hot oven until the crust cracks and sings as it cools on the wire rack "
    "by the open window.",
    "Across the valley, the engineers tested the new footbridge by marching a hundred volunteers over it in "
    "step, measuring how far the deck swayed, and then asking everyone to walk at their own pace, which, to "
    "the relief of the designers and the mayor, made the structure almost perfectly still under the weight "
    "of the whole cheerful crowd.",
)

BUILTIN = {"short": SHORT, "medium": MEDIUM, "long": LONG}
MIXES = {"short": SHORT, "medium": MEDIUM, "long": LONG, "mixed": (*SHORT, *MEDIUM, *LONG)}

# Sentences used by the engine streaming benchmark (issue 4): ~20 and ~60 words.
SENTENCE_20_WORDS = MEDIUM[0]
SENTENCE_60_WORDS = LONG[2]

# The Bert-VITS2 2.x table (112 symbols) is what an ids voice has unless its manifest says otherwise.
BERT_VITS2_SYMBOLS = 112


@dataclass(frozen=True)
class IdsSpec:
    """The table sizes stand-in ids must respect (from a voice.json, a checkpoint, or assumed)."""

    n_symbols: int = BERT_VITS2_SYMBOLS
    add_blank: bool = True
    blank_id: int = 0
    symbols: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Phonemes:
    phone_ids: list[int]
    tone_ids: list[int]
    language_ids: list[int]


@dataclass(frozen=True)
class WorkItem:
    """One request's content: the text, and stand-in ids when the voice takes ids only."""

    index: int
    text: str
    phonemes: Phonemes | None = None

    @property
    def words(self) -> int:
        return len(self.text.split())


def _symbol_pools(spec: IdsSpec) -> tuple[list[int], int, int]:
    """(ids letters may map to, the word-gap id, the punctuation id) for a voice's table."""
    symbols = list(spec.symbols) if spec.symbols else []
    if symbols and "SP" in symbols:
        # A Bert-VITS2 table: letters become English-looking phones (the lowercase ARPAbet-like entries
        # after the Japanese block); words are separated by its silence symbol.
        letters = [i for i, s in enumerate(symbols) if s.isalpha() and s.islower() and i != spec.blank_id]
        punct = symbols.index(",") if "," in symbols else symbols.index("SP")
        return letters or list(range(1, spec.n_symbols)), symbols.index("SP"), punct
    pool = [i for i in range(spec.n_symbols) if i != spec.blank_id] or [spec.blank_id]
    return pool, pool[-1], pool[len(pool) // 2]


def derive_phonemes(text: str, spec: IdsSpec) -> Phonemes:
    """Deterministic stand-in ids for `text` (see the module docstring): the same text and table always give
    the same ids, on every machine (CRC-32, not Python's salted hash)."""
    pool, gap, punct = _symbol_pools(spec)
    phones: list[int] = [spec.blank_id]  # Bert-VITS2 pads each sentence with its pad symbol
    for position, word in enumerate(text.split()):
        if position:
            phones.append(gap)
        letters = [c for c in word.lower() if c.isalnum()]
        for k, letter in enumerate(letters):
            key = f"{letter}{letters[k - 1] if k else '^'}".encode()
            phones.append(pool[zlib.crc32(key) % len(pool)])
        if any(not c.isalnum() for c in word):
            phones.append(punct)
    phones.append(spec.blank_id)
    if spec.add_blank:
        spaced = [spec.blank_id] * (2 * len(phones) + 1)
        spaced[1::2] = phones
        phones = spaced
    zeros = [0] * len(phones)
    return Phonemes(phones, zeros, list(zeros))


def load_texts(path: str | Path) -> list[str]:
    """One request text per non-empty line of a UTF-8 file (lines starting with '#' are comments)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError("texts", f"cannot read {path}: {exc.strerror or exc}") from None
    texts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not texts:
        raise InputError("texts", f"{path} holds no text (one sentence per line)")
    return texts


def builtin_texts(mix: str = "mixed") -> list[str]:
    if mix not in MIXES:
        raise InputError("lengths", f"unknown length mix {mix!r}; choose one of {', '.join(MIXES)}")
    return list(MIXES[mix])


class Workload:
    """Cycles through texts; `item(i)` is the i-th request of a level (warm-up uses its own indices)."""

    def __init__(self, texts: Sequence[str], ids_spec: IdsSpec | None = None, source: str = "builtin"):
        if not texts:
            raise InputError("texts", "the workload is empty")
        self.texts = list(texts)
        self.ids_spec = ids_spec
        self.source = source
        self._items = [
            WorkItem(i, text, derive_phonemes(text, ids_spec) if ids_spec is not None else None)
            for i, text in enumerate(self.texts)
        ]

    def item(self, index: int) -> WorkItem:
        return self._items[index % len(self._items)]

    def __len__(self) -> int:
        return len(self._items)

    def describe(self) -> dict[str, object]:
        words = [item.words for item in self._items]
        tokens = [len(item.phonemes.phone_ids) for item in self._items if item.phonemes is not None]
        return {
            "source": self.source,
            "texts": len(self._items),
            "words_min": min(words),
            "words_max": max(words),
            "words_mean": sum(words) / len(words),
            "stand_in_ids": self.ids_spec is not None,
            "tokens_mean": (sum(tokens) / len(tokens)) if tokens else None,
        }
