"""Chinese text front end of Bert-VITS2 2.3 (language ``ZH``): ``normalize`` and ``g2p``.

Behaves like upstream's ``text/chinese.py`` (fishaudio/Bert-VITS2 2.3) in the setup its reference fixtures
were made with (cn2an as the number normaliser, not WeTextProcessing), quirks included, so that a voice
trained upstream hears the phones it was trained on:

* ``normalize``: ``cn2an.transform(text, "an2cn")`` reads the digits (years digit by digit, other numbers as
  cardinals, ``5%`` -> 百分之五, ``1/4`` -> 四分之一; numbers cn2an cannot read vanish); 嗯 -> 恩, 呣 -> 母; ``...``
  -> ``…`` and the Chinese and ASCII punctuation is mapped onto ``! ? … , . ' -``; then every character
  outside U+4E00..U+9FA5 that is not one of those marks is deleted (Latin letters, digits left over, ``%``,
  spaces).
* ``g2p``: the text is cut after every mark, jieba tags each piece's words, the words are merged and re-toned
  as `vitsrt.text.bv2_zh_sandhi` describes, pypinyin reads them (strict initials and finals), and every
  syllable becomes an initial phone and a final phone (no erhua merge: 儿 is its own syllable ``EE er``).
  Marks are phones of their own with tone 0; tones 1-5 are the syllables' (5 = neutral).

The pinyin -> phone step (opencpop-strict style) is derived from pypinyin's strict initials and finals by
the rules in `_syllable_phones`, not looked up in a table.

Inputs upstream crashes on (a character pypinyin has no reading or no final for, such as 噷 or 兙, or a
syllable outside the opencpop inventory such as biang) raise `InputError`; an empty text raises
`NothingToSpeakError`.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from collections.abc import Iterable

import cn2an
import jieba
import jieba.posseg
from pypinyin import Style, lazy_pinyin
from pypinyin.pinyin_dict import pinyin_dict

from vitsrt.errors import InputError, NothingToSpeakError, clip
from vitsrt.text import bv2_zh_sandhi
from vitsrt.text.bv2_common import G2P

__all__ = ["PUNCTUATION", "g2p", "normalize"]

log = logging.getLogger(__name__)

# The marks upstream keeps (its symbol table's punctuation): phones of their own, tone 0.
PUNCTUATION = "!?…,.'-"

_MARKS = str.maketrans(
    {
        **dict.fromkeys("：；，、·", ","),
        **dict.fromkeys("。\n$", "."),
        "！": "!",
        "？": "?",
        **dict.fromkeys('“”"‘’（）()《》【】[]「」', "'"),
        **dict.fromkeys("—～~", "-"),
    }
)
_DROPPED = re.compile(f"[^\u4e00-\u9fa5{re.escape(PUNCTUATION)}]+")
_SENTENCE = re.compile(f"[^{re.escape(PUNCTUATION)}]*[{re.escape(PUNCTUATION)}]|[^{re.escape(PUNCTUATION)}]+")

# cn2an warns (UserWarning, stderr) on numbers of more than 16 digits and then leaves them for the deletion of
# non-Chinese characters: expected here, not worth a line on stderr per request.
warnings.filterwarnings("ignore", category=UserWarning, module=r"cn2an(\.|$)")

# jieba logs its dictionary loading at DEBUG through a handler of its own; keep it quiet.
jieba.setLogLevel(logging.WARNING)
_JIEBA_READY = threading.Lock()
_jieba_loaded = False


def normalize(text: str) -> str:
    """Upstream's ``text_normalize`` with the cn2an normaliser (the fixtures' ``norm_text``); may return ""."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    try:
        text = cn2an.transform(text, "an2cn")
    except Exception as exc:  # upstream would crash; cn2an raises plain ValueError/KeyError/... on odd numbers
        raise InputError("text", f"has a number cn2an cannot read ({type(exc).__name__}: {clip(exc)})") from exc
    text = text.replace("嗯", "恩").replace("呣", "母")
    text = text.replace("...", "…").translate(_MARKS)
    return _DROPPED.sub("", text)


# ---------------------------------------------------------------------------------------------------------
# pinyin -> phones, by rule.
#
# A syllable with an initial is that initial plus its final, the final in its short written form after an
# initial (uei -> ui, iou -> iu, uen -> un) and the apical vowel of zhi/chi/shi/ri written ir, that of zi/ci/si
# i0. A syllable without an initial gets a glide or a pseudo-initial as its first phone: y for i- and ü-finals,
# w for u-finals (the glide replaces the medial: ia -> y a, uo -> w o, but i/in/ing, u and the ü-finals keep
# their vowel: y i, y ing, w u, y van), AA/EE/OO for finals that start with a/e/o. After y the open vowels of
# ie and ian are written E and En (ye -> y E, yan -> y En).
#
# pypinyin also knows syllables the opencpop inventory (and so upstream) does not have; they are refused.

_APICAL = {"zh": "ir", "ch": "ir", "sh": "ir", "r": "ir", "z": "i0", "c": "i0", "s": "i0"}
_SHORT_FINALS = {"uei": "ui", "iou": "iu", "uen": "un"}
_PSEUDO_INITIALS = {"a": "AA", "e": "EE", "o": "OO"}
_AFTER_Y = {"e": "E", "an": "En"}
_KEEP_VOWEL = {"i", "in", "ing", "u"}
# (initial, final) pairs pypinyin 0.55 can give that are outside the inventory: dialect and loan syllables
# (biang, bong, din, fiao, len, nia, wong) and ê; syllabic m/n/ng/hm/hng have no final at all.
_OUTSIDE_INVENTORY = {("b", "iang"), ("b", "ong"), ("d", "in"), ("f", "iao"), ("l", "en"), ("n", "ia"), ("", "ong")}
_FINALS = {
    "a", "ai", "an", "ang", "ao", "e", "ei", "en", "eng", "er", "i", "ia", "ian", "iang", "iao", "ie", "in", "ing",
    "iong", "iou", "o", "ong", "ou", "u", "ua", "uai", "uan", "uang", "uei", "uen", "ueng", "uo", "v", "van", "ve",
    "vn",
}  # fmt: skip


def _syllable_phones(initial: str, final: str) -> tuple[str, ...] | None:
    """The phones of one pypinyin syllable (strict initial, final without its tone digit), or None if upstream's
    pinyin table has no entry for it."""
    if final not in _FINALS or (initial, final) in _OUTSIDE_INVENTORY:
        return None
    if initial:
        if final == "i" and initial in _APICAL:
            return initial, _APICAL[initial]
        return initial, _SHORT_FINALS.get(final, final)
    head = final[0]
    if head in _PSEUDO_INITIALS:
        return _PSEUDO_INITIALS[head], final
    if head == "v":
        return "y", final
    rest = final if final in _KEEP_VOWEL else final[1:]
    if head == "i":
        return "y", _AFTER_Y.get(rest, rest)
    return "w", rest


# ---------------------------------------------------------------------------------------------------------
# g2p


def _ensure_jieba() -> None:
    """Load jieba's dictionary once (it caches a prefix dictionary in the temp dir; no network)."""
    global _jieba_loaded
    if _jieba_loaded:
        return
    with _JIEBA_READY:
        if not _jieba_loaded:
            jieba.initialize()
            _jieba_loaded = True


def _finals(word: str) -> list[str]:
    return lazy_pinyin(word, neutral_tone_with_five=True, style=Style.FINALS_TONE3)


def _initials(word: str) -> list[str]:
    return lazy_pinyin(word, neutral_tone_with_five=True, style=Style.INITIALS)


def _search_cut(word: str) -> Iterable[str]:
    return jieba.cut_for_search(word)


def _check_normalised(text: str) -> None:
    left = _DROPPED.search(text)
    if left:
        raise InputError("text", f"is not normalised Chinese text (call normalize first): {clip(left.group())}")
    unread = sorted({ch for ch in text if ch not in PUNCTUATION and ord(ch) not in pinyin_dict})
    if unread:
        raise InputError("text", f"has characters pypinyin has no reading for: {''.join(unread)}")


def _syllable(initial: str, final: str, word: str) -> tuple[list[str], int]:
    """Phones and tone of one (initial, toned final) pair; a mark is its own phone with tone 0."""
    if initial == final:
        if initial and initial in PUNCTUATION:
            return [initial], 0
        raise InputError("text", f"has a syllable in {clip(word)} that pypinyin reads as {clip(initial)}")
    tone = bv2_zh_sandhi.tone_of(final, word)
    phones = _syllable_phones(initial, final[:-1]) if tone in "12345" else None
    if phones is None:
        raise InputError("text", f"reads {clip(word)} with the syllable {initial}{final}, which Bert-VITS2's "
                         "pinyin table does not have")  # fmt: skip
    return list(phones), int(tone)


def _sentence(text: str, phones: list[str], tones: list[int], word2ph: list[int]) -> None:
    """Append the phones, tones and per-character phone counts of one piece of text (ends at a mark)."""
    cut = [(pair.word, pair.flag) for pair in jieba.posseg.lcut(text)]
    for word, pos in bv2_zh_sandhi.pre_merge(cut, _finals):
        if pos == "eng":
            continue
        initials, finals = _initials(word), _finals(word)
        if not len(initials) == len(finals) == len(word):
            raise InputError("text", f"pypinyin reads {clip(word)} as {len(finals)} syllables")
        finals = bv2_zh_sandhi.modified_tone(word, pos, finals, _search_cut)
        for initial, final in zip(initials, finals, strict=True):
            syllable, tone = _syllable(initial, final, word)
            phones += syllable
            tones += [tone] * len(syllable)
            word2ph.append(len(syllable))


def g2p(norm_text: str) -> G2P:
    """Phones (``_`` at both ends), tones 0-5, word2ph (one entry per character plus the [CLS]/[SEP] 1s) and
    the BERT text (`norm_text` itself) of a `normalize`d text."""
    if not norm_text:
        raise NothingToSpeakError("text", "has nothing to say in ZH after normalisation")
    _check_normalised(norm_text)
    _ensure_jieba()
    phones: list[str] = []
    tones: list[int] = []
    word2ph: list[int] = []
    for piece in _SENTENCE.findall(norm_text):
        _sentence(piece, phones, tones, word2ph)
    if len(word2ph) != len(norm_text):
        raise InputError("text", f"gives {len(word2ph)} phone groups for the {len(norm_text)} characters")
    return G2P(["_", *phones, "_"], [0, *tones, 0], [1, *word2ph, 1], norm_text)
