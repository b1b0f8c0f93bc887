"""Filelist lines and the voice's symbol table: phoneme symbols -> the encoder's three id streams.

Filelists keep upstream Bert-VITS2's 7-field layout::

    wavs/alice/0001.wav|alice|en-us|Hello there.|h ə l ˈoʊ ▁ ð ɛ ɹ .|0 0 0 0 0 0 0 0 0 0|1 1 1 1 1 1 1 1 1 1

(audio path, speaker, language, text, phonemes, tones, phones per symbol). Phonemes are the
voice's own symbols separated by spaces; the word-space symbol is written ``▁`` so the field
stays splittable. Which ids a symbol means is not in the filelist but in the config's
top-level ``frontend`` section that `vitsrt prepare` writes (the same fields as a voice.json
front end, so export can copy it): ``kind`` "ipa" (piper-style ``phoneme_id_map`` with BOS/EOS
and blanks) or "ids" (a ``symbols`` table, index = id, upstream-style blank interspersing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vitsrt.errors import ConfigError
from vitsrt.text.ids import intersperse
from vitsrt.text.ipa import PhonemeIdMap

SPACE_ESCAPE = "\u2581"  # "▁" stands for the word-space symbol inside the phoneme field


def encode_symbols(symbols: Sequence[str]) -> str:
    return " ".join(SPACE_ESCAPE if s == " " else s for s in symbols)


def decode_symbols(field_text: str) -> list[str]:
    return [" " if s == SPACE_ESCAPE else s for s in field_text.split(" ") if s]


@dataclass(frozen=True)
class FilelistEntry:
    audio: str
    speaker: str
    language: str
    text: str
    phonemes: list[str] = field(default_factory=list)
    tones: list[int] = field(default_factory=list)
    word2ph: list[int] = field(default_factory=list)

    def to_line(self) -> str:
        for name, value in (("audio", self.audio), ("speaker", self.speaker), ("text", self.text)):
            if "|" in value or "\n" in value:
                raise ValueError(f"{name} must not contain '|' or a newline: {value!r}")
        return "|".join(
            [
                self.audio,
                self.speaker,
                self.language,
                self.text,
                encode_symbols(self.phonemes),
                " ".join(str(t) for t in self.tones),
                " ".join(str(c) for c in self.word2ph),
            ]
        )

    @classmethod
    def from_line(cls, line: str) -> FilelistEntry:
        parts = line.rstrip("\n").split("|")
        if len(parts) != 7:
            raise ValueError(f"expected 7 '|'-separated fields, found {len(parts)}")
        audio, speaker, language, text, phones, tones, word2ph = parts
        return cls(
            audio,
            speaker,
            language,
            text,
            decode_symbols(phones),
            [int(t) for t in tones.split()],
            [int(c) for c in word2ph.split()],
        )


def read_filelist(path) -> list[FilelistEntry]:
    entries = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                entries.append(FilelistEntry.from_line(line))
            except ValueError as exc:
                raise ConfigError(f"{path}:{number}: {exc}") from None
    return entries


def write_filelist(path, entries: Sequence[FilelistEntry]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for entry in entries:
            handle.write(entry.to_line() + "\n")


@dataclass(frozen=True)
class TokenizedText:
    phone_ids: np.ndarray
    tone_ids: np.ndarray
    language_ids: np.ndarray


class SymbolTable:
    """Turns a filelist entry's symbols into encoder ids, as the voice's front end will at inference."""

    def __init__(self, section: Mapping[str, Any]):
        self.section = dict(section)
        self.kind = self.section.get("kind")
        self.add_blank = bool(self.section.get("add_blank", True))
        self.languages: dict[str, int] = dict(self.section.get("languages") or {})
        if not self.languages:
            raise ConfigError("config frontend section has no 'languages'")
        if self.kind == "ipa":
            self._ipa = PhonemeIdMap(
                self.section["phoneme_id_map"],
                pad=self.section.get("pad", "_"),
                bos=self.section.get("bos", "^"),
                eos=self.section.get("eos", "$"),
            )
            derived = self._ipa.n_symbols
        elif self.kind == "ids":
            symbols = self.section.get("symbols")
            if not symbols:
                raise ConfigError("config frontend section of kind 'ids' needs 'symbols'")
            self._index = {s: i for i, s in enumerate(symbols)}
            self.blank_id = int(self.section.get("blank_id", 0))
            derived = len(symbols)
        else:
            raise ConfigError(f"config frontend kind must be 'ipa' or 'ids', got {self.kind!r}")
        self.num_symbols = int(self.section.get("num_symbols") or derived)
        self.num_tones = int(self.section.get("num_tones") or 1)
        self.num_languages = int(self.section.get("num_languages") or max(self.languages.values()) + 1)

    @classmethod
    def from_config(cls, config) -> SymbolTable:
        section = (config.model_extra or {}).get("frontend")
        if not section:
            raise ConfigError(
                "the config has no 'frontend' section (which symbols the filelists use); run `vitsrt prepare` first"
            )
        return cls(section)

    def known(self, symbol: str) -> bool:
        return symbol in self._ipa if self.kind == "ipa" else symbol in self._index

    def encode(self, phonemes: Sequence[str], tones: Sequence[int], language: str) -> TokenizedText:
        if language not in self.languages:
            raise ValueError(f"language {language!r} is not in the voice's languages {sorted(self.languages)}")
        unknown = [s for s in phonemes if not self.known(s)]
        if unknown:
            raise ValueError(f"symbols missing from the voice's table: {sorted(set(unknown))}")
        if self.kind == "ipa":
            phone_ids = self._ipa.to_ids(phonemes, add_blank=self.add_blank)
            # Tones only exist per phoneme; markers and blanks get tone 0.
            tone_ids = np.zeros(phone_ids.size, dtype=np.int64)
        else:
            raw = np.asarray([self._index[s] for s in phonemes], dtype=np.int64)
            raw_tones = np.asarray(list(tones) or [0] * len(phonemes), dtype=np.int64)
            phone_ids = intersperse(raw, self.blank_id) if self.add_blank else raw
            tone_ids = intersperse(raw_tones, 0) if self.add_blank else raw_tones
        language_ids = np.full(phone_ids.size, self.languages[language], dtype=np.int64)
        return TokenizedText(phone_ids, tone_ids, language_ids)
