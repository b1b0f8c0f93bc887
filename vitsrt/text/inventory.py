"""vitsrt's own phoneme inventory: the stable symbol table for the voices we train.

A voice's embedding table is indexed by symbol id, so the table must never change under a
trained voice. The inventory is therefore an ordered tuple whose position *is* the id:
entries may only ever be appended (bump `INVENTORY_VERSION`), never reordered or removed.
A test pins a digest of the tuple.

Contents, chosen from the IPA chart and from what espeak-ng 1.52 emits for English, German,
French, Spanish, Italian, Portuguese, Dutch, Polish, Swedish, Russian and Mandarin:
control symbols (pad, BOS, EOS, word space), the punctuation that the phonemizer passes
through, tone digits, ASCII and extended IPA letters, length/stress marks, modifier letters
and combining diacritics. Precomposed letter+diacritic forms (õ, ä) are deliberately absent:
the tokenizer decomposes them, so "õ" and "ɐ̃" share the same nasal-tilde symbol.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "BOS",
    "EOS",
    "INVENTORY_VERSION",
    "PAD",
    "PHONEME_INVENTORY",
    "WORD_SEPARATOR",
    "default_phoneme_id_map",
    "inventory_digest",
]

INVENTORY_VERSION = 1

PAD = "_"  # id 0: also the blank interspersed between phonemes and the batch padding value
BOS = "^"
EOS = "$"
WORD_SEPARATOR = " "

_CONTROL = (PAD, BOS, EOS, WORD_SEPARATOR)

# Passed through by the phonemizer (clause and quotation marks), plus "-" which espeak-ng writes
# for French liaison and "'" for elisions.
_PUNCTUATION = tuple("!\"'(),-.:;?[]{}¡«»¿—…“”")

# espeak-ng writes Mandarin and Vietnamese tones as digits after the syllable.
_TONE_DIGITS = tuple("123456")

_ASCII_LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")

_VOWELS = tuple("æɐɑɒɔəɘɚɛɜɝɞɤɨɪɯɵøœɶʉʊʌʏᵻᵿ")

_CONSONANTS = tuple("ɓʙβçɕðɗɖɟʄɡɠɢʛɣɦɧħɥʜʝɭɬɫɮʟɱŋɳɲɴɸθɹɺɾɻʀʁɽʂʃʈʋⱱɰχʎʐʑʒʔʕʡʢʘǀǁǂǃ")

# Stress, length, linking and tone letters (spacing characters).
_SUPRASEGMENTALS = ("ˈ", "ˌ", "ː", "ˑ", "‿", "˥", "˦", "˧", "˨", "˩")

# Spacing modifier letters: aspiration, palatalisation, labialisation, ejective, rhotic hook, ...
_MODIFIERS = ("ʰ", "ʱ", "ʲ", "ʷ", "ˠ", "ˤ", "ʼ", "ⁿ", "ˡ", "˞")

# Combining diacritics (each follows the letter it modifies and gets its own id).
_DIACRITICS = (
    "\u0303",  # nasalised
    "\u0308",  # centralised (and the decomposed half of ä, ö, ü)
    "\u030a",  # voiceless (above, for descenders)
    "\u0325",  # voiceless
    "\u032c",  # voiced
    "\u0329",  # syllabic
    "\u030d",  # syllabic (above)
    "\u032f",  # non-syllabic
    "\u031d",  # raised
    "\u031e",  # lowered
    "\u031f",  # advanced
    "\u0320",  # retracted
    "\u0318",  # advanced tongue root
    "\u0319",  # retracted tongue root
    "\u0339",  # more rounded
    "\u031c",  # less rounded
    "\u032a",  # dental
    "\u033a",  # apical
    "\u033b",  # laminal
    "\u0324",  # breathy voiced
    "\u0330",  # creaky voiced
    "\u0334",  # velarised or pharyngealised
    "\u031a",  # no audible release
    "\u0306",  # extra-short
    "\u0361",  # tie bar (above)
    "\u035c",  # tie bar (below)
    "\u0301",  # high tone / acute
    "\u0300",  # low tone / grave
    "\u0304",  # mid tone / macron
    "\u0302",  # falling tone / circumflex
    "\u030c",  # rising tone / caron
    "\u0327",  # cedilla (decomposed half of letters like ş)
)

PHONEME_INVENTORY: tuple[str, ...] = (
    _CONTROL
    + _PUNCTUATION
    + _TONE_DIGITS
    + _ASCII_LETTERS
    + _VOWELS
    + _CONSONANTS
    + _SUPRASEGMENTALS
    + _MODIFIERS
    + _DIACRITICS
)


def default_phoneme_id_map() -> dict[str, list[int]]:
    """The piper-style map (symbol -> [id]) of `PHONEME_INVENTORY`; a fresh dict on every call."""
    return {symbol: [index] for index, symbol in enumerate(PHONEME_INVENTORY)}


def inventory_digest() -> str:
    """sha256 of the inventory in order; stored with trained voices to detect a mismatched table."""
    payload = "\n".join(PHONEME_INVENTORY).encode("utf-8")
    return f"v{INVENTORY_VERSION}:" + hashlib.sha256(payload).hexdigest()
