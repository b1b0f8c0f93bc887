"""The one shape every front end hands to the engine: three aligned id arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["BertTokens", "PhonemeSequence", "WordSpan"]


@dataclass(frozen=True)
class WordSpan:
    """One spoken word of a segment as the id range [start, end) it covers: from its first phoneme's id to its
    last phoneme's id, the blanks between its phonemes included, the blanks and marks around it not."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class BertTokens:
    """What the BERT stage needs for one sentence: the tokenizer's ids ([CLS]/[SEP] included) for the model of
    `language`, and how many ids (blanks included) each token covers; its features feed encoder input `slot`."""

    language: str
    slot: str
    input_ids: np.ndarray  # [N] int64
    word2ph: np.ndarray  # [N] int64, sums to the sentence's number of ids
    tokens: tuple[str, ...] = ()


@dataclass(frozen=True)
class PhonemeSequence:
    """Token ids for one segment, ready to batch into the encoder.

    `phone_ids`, `tone_ids` and `language_ids` are 1-D int64 arrays of one length (blanks, if the
    voice uses them, already interspersed). `phonemes` lists the recognised phoneme symbols in order
    (without pad/BOS/EOS; empty for raw ids) and exists for debugging and logs.
    `skipped` counts input phonemes dropped because the voice's symbol table lacks them.
    `symbols` names the symbol of every id (pad/BOS/EOS markers included; empty for raw ids) and `words`
    the words the ids speak, in order (empty for raw ids): what timestamps are reported in. `bert` carries
    the BERT stage's tokens for Bert-VITS2 text.
    """

    phone_ids: np.ndarray
    tone_ids: np.ndarray
    language_ids: np.ndarray
    phonemes: list[str] = field(default_factory=list)
    skipped: int = 0
    symbols: tuple[str, ...] = ()
    words: tuple[WordSpan, ...] = ()
    bert: BertTokens | None = None  # Bert-VITS2 text: the BERT stage's input (None: no BERT features)

    def __post_init__(self) -> None:
        arrays = (self.phone_ids, self.tone_ids, self.language_ids)
        for name, arr in zip(("phone_ids", "tone_ids", "language_ids"), arrays, strict=True):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.int64 or arr.ndim != 1:
                raise TypeError(f"{name} must be a 1-D int64 numpy array")
        if not len(self.phone_ids) == len(self.tone_ids) == len(self.language_ids):
            raise ValueError(
                "phone_ids, tone_ids and language_ids differ in length: "
                f"{len(self.phone_ids)}, {len(self.tone_ids)}, {len(self.language_ids)}"
            )
        if self.symbols and len(self.symbols) != len(self.phone_ids):
            raise ValueError(f"symbols has {len(self.symbols)} entries for {len(self.phone_ids)} ids")
        if any(not 0 <= w.start < w.end <= len(self.phone_ids) for w in self.words):
            raise ValueError("a word's id range lies outside the ids")
        if self.bert is not None and int(self.bert.word2ph.sum()) != len(self.phone_ids):
            raise ValueError(f"BERT word2ph covers {int(self.bert.word2ph.sum())} ids of {len(self.phone_ids)}")

    def __len__(self) -> int:
        return len(self.phone_ids)
