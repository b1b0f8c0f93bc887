"""Text front ends: turn a request (text or ids) into the id arrays a voice's encoder takes.

Torch-free and numpy-only so the serving engine can import it. The espeak-ng dependency of the
``ipa`` front end is imported only when a voice first phonemizes text.

Typical engine use::

    frontend = make_frontend(voice.frontend)
    for segment in split_sentences(prepare_text(request.text, max_chars=5000)):
        seq = frontend.from_text(segment, language=request.language, expand=request.expand)

Expansion (numbers, money, dates, times, abbreviations, URLs, emoji -> spoken words; see
`vitsrt.text.expand`) runs per segment inside the ``ipa`` front end's ``from_text``, for the
espeak-ng voice that reads it; ``expand=False`` turns it off for one call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from vitsrt.text.expand import drop_emoji, expand_text, expander_for, register_expander
from vitsrt.text.ids import DEFAULT_MAX_IDS, IdsFrontEnd, intersperse, validate_id_array
from vitsrt.text.inventory import BOS, EOS, PAD, PHONEME_INVENTORY, default_phoneme_id_map, inventory_digest
from vitsrt.text.ipa import EspeakPhonemizer, IpaFrontEnd, PhonemeIdMap, Phonemizer
from vitsrt.text.normalize import check_text_length, normalize_text, prepare_text
from vitsrt.text.piper import PiperFrontEnd
from vitsrt.text.sentences import DEFAULT_MAX_SENTENCE_CHARS, SentenceSplitter, split_sentences
from vitsrt.text.sequence import PhonemeSequence

__all__ = [
    "DEFAULT_MAX_IDS",
    "DEFAULT_MAX_SENTENCE_CHARS",
    "PHONEME_INVENTORY",
    "EspeakPhonemizer",
    "FrontEnd",
    "IdsFrontEnd",
    "IpaFrontEnd",
    "PhonemeIdMap",
    "PhonemeSequence",
    "Phonemizer",
    "PiperFrontEnd",
    "SentenceSplitter",
    "check_text_length",
    "default_phoneme_id_map",
    "drop_emoji",
    "expand_text",
    "expander_for",
    "intersperse",
    "inventory_digest",
    "make_frontend",
    "normalize_text",
    "prepare_text",
    "register_expander",
    "split_sentences",
    "validate_id_array",
]


@runtime_checkable
class FrontEnd(Protocol):
    """What the engine needs from a voice's front end; both kinds accept raw ids."""

    kind: str
    accepts_text: bool

    def from_text(self, text: str, *, language: str | None = None, expand: bool = True) -> PhonemeSequence: ...

    def from_ids(
        self,
        phone_ids: object,
        tone_ids: object = None,
        language_ids: object = None,
        *,
        add_blank: bool = False,
    ) -> PhonemeSequence: ...


def _field(config: Any, name: str, default: Any = None) -> Any:
    """Read a field from a pydantic model / any object, or from a plain mapping; None means unset."""
    value = config.get(name, default) if isinstance(config, Mapping) else getattr(config, name, default)
    return default if value is None else value


def _map_from_symbols(symbols: Sequence[str]) -> dict[str, list[int]]:
    return {symbol: [index] for index, symbol in enumerate(symbols)}


def make_frontend(
    config: Any,
    *,
    max_length: int = DEFAULT_MAX_IDS,
    phonemizer: Phonemizer | None = None,
    root: Path | None = None,
) -> FrontEnd:
    """Build the front end a voice.json describes.

    `config` is the voice's front-end section: the `vitsrt.voice.FrontEnd` pydantic model, or
    any object/dict with its fields: ``kind`` ("ids" | "ipa" | "piper"), ``num_symbols``, ``symbols``,
    ``phoneme_id_map``, ``add_blank``, ``blank_id``, ``bos``/``eos``/``pad``, ``espeak_voices``,
    ``languages`` (name -> id), ``num_languages``, ``num_tones``; optionally ``default_language``.
    Missing sizes are derived (``len(symbols)``, largest map id + 1, largest language id + 1).
    For "ipa" the map comes from ``phoneme_id_map``, else from ``symbols``, else vitsrt's
    default inventory. `phonemizer` lets several voices share one espeak-ng instance.
    "piper" (an imported piper voice, `PiperFrontEnd`) also reads ``espeak_voice`` and ``vowel_clusters``;
    its text should go through ``frontend.sentences(text)`` whole (espeak-ng splits it as in piper).
    "bv2" (Bert-VITS2 text, `Bv2FrontEnd`) loads the BERT tokenizers its ``bert_models`` name from the voice
    bundle at `root`.
    """
    kind = _field(config, "kind")
    symbols = _field(config, "symbols")
    id_map = _field(config, "phoneme_id_map")
    languages = dict(_field(config, "languages", {}))
    num_tones = int(_field(config, "num_tones", 1))
    num_symbols = _field(config, "num_symbols")
    num_languages = _field(config, "num_languages")
    if kind == "ids":
        if num_symbols is None:
            if symbols:
                num_symbols = len(symbols)
            elif id_map:
                num_symbols = 1 + max(max(ids) if isinstance(ids, Sequence) else int(ids) for ids in id_map.values())
            else:
                raise ValueError("an 'ids' front end needs 'num_symbols', 'symbols' or 'phoneme_id_map'")
        if num_languages is None:
            num_languages = (max(languages.values()) + 1) if languages else 1
        return IdsFrontEnd(
            int(num_symbols),
            num_tones,
            int(num_languages),
            add_blank=bool(_field(config, "add_blank", False)),
            blank_id=int(_field(config, "blank_id", 0)),
            max_length=max_length,
        )
    if kind == "ipa":
        if not id_map and symbols:
            id_map = _map_from_symbols(symbols)
        return IpaFrontEnd(
            id_map or None,
            languages or None,
            espeak_voices=_field(config, "espeak_voices"),
            default_language=_field(config, "default_language"),
            add_blank=bool(_field(config, "add_blank", True)),
            pad=_field(config, "pad", PAD),
            bos=_field(config, "bos", BOS),
            eos=_field(config, "eos", EOS),
            num_symbols=num_symbols,
            num_languages=num_languages,
            num_tones=num_tones,
            max_length=max_length,
            phonemizer=phonemizer,
        )
    if kind == "piper":
        return PiperFrontEnd(
            id_map or {},
            _field(config, "espeak_voice"),
            languages=languages or None,
            espeak_voices=_field(config, "espeak_voices"),
            vowel_clusters=_field(config, "vowel_clusters"),
            pad=_field(config, "pad", PAD),
            bos=_field(config, "bos", BOS),
            eos=_field(config, "eos", EOS),
            num_symbols=num_symbols,
            num_languages=num_languages,
            num_tones=num_tones,
            max_length=max_length,
        )
    if kind == "bv2":
        from vitsrt.text.bv2 import make_bv2  # its language modules load pypinyin/jieba/pyopenjtalk on first use

        return make_bv2(config, max_length=max_length, root=root)
    raise ValueError(f"unknown front end kind {kind!r} (expected 'ids', 'ipa', 'piper' or 'bv2')")
