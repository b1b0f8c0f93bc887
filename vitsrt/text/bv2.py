"""The Bert-VITS2 text front end (kind ``bv2``): text in Chinese, Japanese or English -> the three id arrays
upstream's `get_text` builds, plus what the BERT stage needs (the tokenizer's ids and the phones per token).

The language modules (`bv2_zh`, `bv2_ja`, `bv2_en`) each give ``normalize(text)`` and ``g2p(norm_text)``
(English also takes the BERT tokenizer, whose pieces decide its word grouping); this module turns their
phones and language-local tones into ids with the voice's symbol table and tone offsets, intersperses the
blank (id 0, tone 0, language 0 — as upstream does, even in Japanese and English) and adjusts word2ph the
way upstream does for the blank (every entry doubled, the first one plus one).

Raw ids are accepted as with the ``ids`` front end.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitsrt.errors import InputError, NothingToSpeakError, TooManyIdsError
from vitsrt.text.bv2_common import G2P
from vitsrt.text.ids import DEFAULT_MAX_IDS, IdsFrontEnd, intersperse
from vitsrt.text.sequence import BertTokens, PhonemeSequence

__all__ = [
    "LANGUAGE_ALIASES",
    "STANDARD_BERT_SLOTS",
    "STANDARD_LANGUAGES",
    "STANDARD_NUM_TONES",
    "STANDARD_TONE_OFFSETS",
    "Bv2Analysis",
    "Bv2FrontEnd",
    "Tokenizer",
    "bert_word2ph",
    "make_bv2",
    "standard_frontend",
    "standard_symbols",
]

# Upstream's language names (ZH, JP, EN) and the tags clients send.
LANGUAGE_ALIASES = {
    "zh": "ZH", "zh-cn": "ZH", "zh-hans": "ZH", "cmn": "ZH", "chinese": "ZH",
    "ja": "JP", "jp": "JP", "ja-jp": "JP", "japanese": "JP",
    "en": "EN", "en-us": "EN", "en-gb": "EN", "english": "EN",
}
_MODULES = {"ZH": "vitsrt.text.bv2_zh", "JP": "vitsrt.text.bv2_ja", "EN": "vitsrt.text.bv2_en"}

# Upstream Bert-VITS2 2.0-2.3's tables (its text/symbols.py; later upstream revisions added Japanese symbols and
# no longer have 112 entries): ids index the encoder's embedding table as pad, then the union of the Chinese,
# Japanese and English phone sets sorted by code point, then punctuation and the silence/unknown markers.
_ZH_PHONES = (
    "E En a ai an ang ao b c ch d e ei en eng er f g h i i0 ia ian iang iao ie in ing iong ir iu j k l m n o "
    "ong ou p q r s sh t u ua uai uan uang ui un uo v van ve vn w x y z zh AA EE OO"
)
_JA_PHONES = "N a a: b by ch d dy e e: f g gy h hy i i: j k ky m my n ny o o: p py q r ry s sh t ts ty u u: w y z zy"
_EN_PHONES = "aa ae ah ao aw ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th uh uw V w y z zh"
_TAIL_SYMBOLS = ("!", "?", "…", ",", ".", "'", "-", "SP", "UNK")
STANDARD_LANGUAGES = {"ZH": 0, "JP": 1, "EN": 2}
STANDARD_TONE_OFFSETS = {"ZH": 0, "JP": 6, "EN": 8}  # 6 Chinese, 2 Japanese, 4 English tones
STANDARD_NUM_TONES = 12
STANDARD_BERT_SLOTS = {"ZH": "bert", "JP": "ja_bert", "EN": "en_bert"}


def standard_symbols() -> list[str]:
    """The 112-entry Bert-VITS2 2.x symbol table (index = phone id)."""
    phones = set(_ZH_PHONES.split()) | set(_JA_PHONES.split()) | set(_EN_PHONES.split())
    return ["_", *sorted(phones), *_TAIL_SYMBOLS]


class Tokenizer:
    """What the front end needs from a BERT tokenizer (`vitsrt.text.bert.BertTokenizer` is one)."""

    def encode(self, text: str) -> tuple[np.ndarray, list[str]]:  # ids and tokens, [CLS]/[SEP] included
        raise NotImplementedError

    def pieces(self, text: str) -> list[str]:  # tokens without [CLS]/[SEP], unknown ones as their text
        raise NotImplementedError


@dataclass(frozen=True)
class Bv2Analysis:
    """Every intermediate of one sentence (what `vitsrt g2p` prints)."""

    language: str
    norm_text: str
    g2p: G2P
    sequence: PhonemeSequence
    word2ph: list[int]  # after the blank adjustment: phones (with blanks) per BERT token


def bert_word2ph(word2ph: Sequence[int], add_blank: bool) -> list[int]:
    """word2ph for the blank-interspersed ids: each entry doubled, the first one plus one (upstream)."""
    if not add_blank:
        return list(word2ph)
    doubled = [2 * n for n in word2ph]
    doubled[0] += 1
    return doubled


class Bv2FrontEnd:
    """Bert-VITS2 text (and ids) -> `PhonemeSequence` with the BERT stage's tokens attached."""

    kind = "bv2"
    accepts_text = True

    def __init__(
        self,
        symbols: Sequence[str],
        languages: Mapping[str, int],
        tone_offsets: Mapping[str, int],
        *,
        num_tones: int,
        num_languages: int,
        add_blank: bool = True,
        bert_slots: Mapping[str, str] | None = None,
        tokenizers: Mapping[str, Tokenizer] | None = None,
        default_language: str | None = None,
        max_length: int = DEFAULT_MAX_IDS,
    ):
        self.symbols = list(symbols)
        self._index = {symbol: i for i, symbol in enumerate(self.symbols)}
        self.languages = dict(languages)
        self.tone_offsets = dict(tone_offsets)
        self.add_blank = add_blank
        self.bert_slots = dict(bert_slots or {})
        self.tokenizers = dict(tokenizers or {})
        self.default_language = default_language or next(iter(self.languages))
        self.max_length = max_length
        self.num_tones = num_tones
        self._ids = IdsFrontEnd(len(self.symbols), num_tones, num_languages, add_blank=add_blank,
                                max_length=max_length)

    def language_of(self, language: str | None) -> str:
        """The voice's name for `language` (``zh``, ``ja-JP``, ``EN`` ...); InputError if it has none."""
        name = (language or self.default_language).strip()
        upper = LANGUAGE_ALIASES.get(name.lower(), name.upper())
        if upper not in self.languages or upper not in self.tone_offsets:
            raise InputError("language", f"{name!r} is not a language of this voice; "
                             f"it speaks {', '.join(sorted(self.languages))}")
        return upper

    def analyse(self, text: str, *, language: str | None = None) -> Bv2Analysis:
        lang = self.language_of(language)
        module = importlib.import_module(_MODULES[lang])
        norm = module.normalize(text)
        if not norm.strip():
            raise NothingToSpeakError("text", f"has nothing to say in {lang} after normalisation")
        tokenizer = self.tokenizers.get(lang)
        result = module.g2p(norm, _pieces(tokenizer)) if lang == "EN" else module.g2p(norm)
        sequence = self._sequence(result, lang, tokenizer)
        return Bv2Analysis(lang, norm, result, sequence, bert_word2ph(result.word2ph, self.add_blank))

    def from_text(self, text: str, *, language: str | None = None, expand: bool = True) -> PhonemeSequence:
        del expand  # normalisation is the language module's, as upstream does it
        return self.analyse(text, language=language).sequence

    def from_ids(self, phone_ids: object, tone_ids: object = None, language_ids: object = None, *,
                 add_blank: bool = False) -> PhonemeSequence:
        return self._ids.from_ids(phone_ids, tone_ids, language_ids, add_blank=add_blank)

    def _sequence(self, result: G2P, lang: str, tokenizer: Tokenizer | None) -> PhonemeSequence:
        unknown = sorted({p for p in result.phones if p not in self._index})
        if unknown:
            raise InputError("text", f"this voice's symbol table lacks the phones {unknown}")
        if len(result.phones) <= 2:
            raise NothingToSpeakError("text", "contains nothing pronounceable")
        phones = [self._index[p] for p in result.phones]
        tones = [t + self.tone_offsets[lang] for t in result.tones]
        if max(tones) >= self.num_tones:
            raise InputError("text", f"a tone exceeds this voice's {self.num_tones} tones")
        languages = [self.languages[lang]] * len(phones)
        symbols = list(result.phones)
        if self.add_blank:
            phones, tones, languages = (intersperse(a, 0) for a in (phones, tones, languages))
            symbols = [s for p in result.phones for s in (self.symbols[0], p)] + [self.symbols[0]]
        if len(phones) > self.max_length:
            raise TooManyIdsError("text", f"gives {len(phones)} ids, more than the {self.max_length} per sentence")
        return PhonemeSequence(
            np.asarray(phones, dtype=np.int64), np.asarray(tones, dtype=np.int64),
            np.asarray(languages, dtype=np.int64), phonemes=list(result.phones[1:-1]), symbols=tuple(symbols),
            bert=self._bert(result, lang, tokenizer))

    def _bert(self, result: G2P, lang: str, tokenizer: Tokenizer | None) -> BertTokens | None:
        if tokenizer is None or lang not in self.bert_slots:
            return None
        ids, tokens = tokenizer.encode(result.bert_text)
        word2ph = bert_word2ph(result.word2ph, self.add_blank)
        if len(ids) != len(word2ph):
            raise InputError("text", f"the {lang} BERT tokenizer gives {len(ids)} tokens where the text has "
                             f"{len(word2ph)} (a character its vocabulary splits or merges)")
        return BertTokens(lang, self.bert_slots[lang], np.asarray(ids, dtype=np.int64),
                          np.asarray(word2ph, dtype=np.int64), tuple(tokens))


def _pieces(tokenizer: Tokenizer | None) -> Callable[[str], list[str]] | None:
    """The English g2p groups words by the BERT tokenizer's pieces ([CLS]/[SEP] removed)."""
    if tokenizer is None:
        return None
    return tokenizer.pieces


def make_bv2(config: Any, *, max_length: int = DEFAULT_MAX_IDS, root: Path | None = None) -> Bv2FrontEnd:
    """The front end a voice.json ``front_end`` section of kind ``bv2`` describes (`vitsrt.voice.FrontEnd`),
    with the BERT tokenizers of its ``bert_models`` read from the bundle at `root` (none without a root)."""
    from vitsrt.text.bert import BertTokenizer

    models = dict(config.bert_models) if root is not None else {}
    tokenizers = {lang: BertTokenizer.from_dir(root / path) for lang, path in models.items()}
    return Bv2FrontEnd(
        config.symbols, config.languages, config.tone_offsets, num_tones=config.num_tones,
        num_languages=config.num_languages, add_blank=config.add_blank, bert_slots=config.bert_slots,
        tokenizers=tokenizers, default_language=config.default_language, max_length=max_length)


def standard_frontend(max_length: int = DEFAULT_MAX_IDS) -> Bv2FrontEnd:
    """Upstream's tables without BERT tokenizers (English words are grouped without the BERT's pieces)."""
    return Bv2FrontEnd(standard_symbols(), STANDARD_LANGUAGES, STANDARD_TONE_OFFSETS, num_tones=STANDARD_NUM_TONES,
                       num_languages=len(STANDARD_LANGUAGES), max_length=max_length)
