"""Japanese text front end of Bert-VITS2 2.3 (language ``JP``): ``normalize`` and ``g2p``.

Behaves like upstream's ``text/japanese.py`` (fishaudio/Bert-VITS2 2.3), quirks included, so that a
voice trained upstream hears the phones it was trained on:

* ``normalize``: NFKC; digits are read as kanji numbers the way ``num2words(lang="ja")`` reads them
  (``1,500`` -> 千五百, ``007`` -> 七, ``0.001`` -> 零点零零一, ``¥3,000`` -> 三千円); punctuation is mapped to
  ``! ? , . ' -`` (``…`` -> ``...``) and every character that is not kana, a CJK ideograph, ``々`` or one of
  those marks is deleted (Latin letters, ``%``, ``『』``, spaces).
* ``g2p``: OpenJTalk (pyopenjtalk-plus, its bundled dictionary) splits the text into words with katakana
  readings; the readings become phones through a kana table (long vowels repeat the vowel), the accent
  marks of OpenJTalk's full-context labels become tones 0/1, and each word's phones are spread over its
  characters (one BERT token per character) for ``word2ph``.

Inputs upstream crashes on (a text of only ``ー``, readings the kana table cannot spell, numbers of 10^51 or
more) raise `InputError` instead.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal

try:
    import pyopenjtalk
except ImportError as exc:  # an optional extra: the other front ends work without it
    raise ImportError("the Japanese Bert-VITS2 front end needs pyopenjtalk-plus (pip install 'vitsrt[bv2]')") from exc

from vitsrt.errors import InputError, NothingToSpeakError, clip
from vitsrt.text.bv2_common import G2P

__all__ = ["Words", "g2p", "kana_to_phones", "normalize", "read_number", "split_words"]

# ---------------------------------------------------------------------------------------------------------
# Numbers: kanji readings as num2words(lang="ja") gives them (myriad groups, a bare 千/百/十 for one).

_DIGITS = "零一二三四五六七八九"
_MYRIADS = "万億兆京垓秭穣溝澗正載極"  # 10^4, 10^8, ... 10^48
_TOO_LARGE = 10 ** (4 * len(_MYRIADS) + 3)  # num2words' limit: 1000 times its largest unit

_GROUPED = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+")
_CURRENCY = re.compile(r"([$¥£€])([0-9.]*[0-9])")
_CURRENCY_NAMES = {"$": "ドル", "¥": "円", "£": "ポンド", "€": "ユーロ"}
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _below_myriad(n: int) -> str:
    """1..9999 in kanji; a digit 1 before 千, 百 or 十 is not written (千五百, 十一)."""
    words = []
    for size, unit in ((1000, "千"), (100, "百"), (10, "十")):
        digit, n = divmod(n, size)
        if digit:
            words.append(("" if digit == 1 else _DIGITS[digit]) + unit)
    if n:
        words.append(_DIGITS[n])
    return "".join(words)


def _integer_words(n: int) -> str:
    if n == 0:
        return _DIGITS[0]
    if n >= _TOO_LARGE:
        raise InputError("text", f"has a number of {len(str(n))} digits, too large to read in Japanese")
    groups = []
    for power in range(len(_MYRIADS) + 1):
        n, group = divmod(n, 10000)
        if group:
            groups.append(_below_myriad(group) + (_MYRIADS[power - 1] if power else ""))
        if not n:
            break
    return "".join(reversed(groups))


def read_number(digits: str) -> str:
    """A run like ``1500`` or ``3.14`` in kanji. A fraction goes through a float, as num2words does: its digits
    are those of the float's shortest repr (``0.10`` -> 零点一, ``2.50`` -> 二点五, ``2.0`` -> 二)."""
    value = Decimal(digits)
    if value == value.to_integral_value():
        return _integer_words(int(value))
    number = float(value)
    if math.isinf(number):
        raise InputError("text", f"has a number of {len(digits)} digits, too large to read in Japanese")
    whole = int(number)
    places = abs(Decimal(str(number)).as_tuple().exponent)
    scaled = abs(number - whole) * 10**places
    fraction = round(scaled) if abs(round(scaled) - scaled) < 0.01 else math.floor(scaled)
    decimals = str(fraction).rjust(places, "0")[:places]
    point = "点" if places else ""
    return _integer_words(whole) + point + "".join(_DIGITS[int(d)] for d in decimals)


def _numbers_to_words(text: str) -> str:
    text = _GROUPED.sub(lambda m: m[0].replace(",", ""), text)
    text = _CURRENCY.sub(lambda m: m[2] + _CURRENCY_NAMES[m[1]], text)
    return _NUMBER.sub(lambda m: read_number(m[0]), text)


# ---------------------------------------------------------------------------------------------------------
# Punctuation: mapped to the symbol table's marks; everything but kana, ideographs, 々 and those marks goes.

_MARKS = "!?…,.'-"
_TRIPLE_DOTS = ("···", "・・・")  # checked before their single characters
_PUNCTUATION_MAP = {
    **dict.fromkeys("：；，·・、", ","),
    **dict.fromkeys("。．\n$", "."),
    "！": "!", "？": "?", "…": "...", "—": "-", "−": "-", "～": "-", "~": "-",
    **dict.fromkeys("“”\"‘’（）()《》【】[]「」", "'"),
}
_PUNCTUATION_RUN = re.compile("|".join(re.escape(k) for k in (*_TRIPLE_DOTS, *_PUNCTUATION_MAP)))
_DISALLOWED = re.compile("[^\u3040-\u309f\u30a0-\u30ff\u4e00-\u9fff\u3400-\u4dbf\u3005" + re.escape(_MARKS) + "]+")
_KEPT_WORDS = frozenset(_PUNCTUATION_MAP) | frozenset(_PUNCTUATION_MAP.values()) | set(_TRIPLE_DOTS)


def _map_punctuation(text: str) -> str:
    text = _PUNCTUATION_RUN.sub(lambda m: "..." if m[0] in _TRIPLE_DOTS else _PUNCTUATION_MAP[m[0]], text)
    return _DISALLOWED.sub("", text)


def normalize(text: str) -> str:
    """Upstream's ``text_normalize``: NFKC, numbers read, punctuation mapped, other symbols and letters gone."""
    text = unicodedata.normalize("NFKC", text)
    text = _numbers_to_words(text)
    return _map_punctuation(text).replace("\u3099", "")


# ---------------------------------------------------------------------------------------------------------
# Kana -> phones. Keys are katakana (hiragana is converted first); values are phones separated by spaces, a
# trailing ":" repeats the vowel before it. Characters the table lacks (ヵ, ヶ, kanji ...) give no phone.

_VOWELS = "aiueo"
_ROWS = {  # a row of the kana table and the consonant before each of its five vowels
    "アイウエオ": ("", "", "", "", ""),
    "カキクケコ": "kkkkk", "ガギグゲゴ": "ggggg", "ナニヌネノ": "nnnnn", "マミムメモ": "mmmmm",
    "ラリルレロ": "rrrrr", "バビブベボ": "bbbbb", "パピプペポ": "ppppp",
    "サシスセソ": ("s", "sh", "s", "s", "s"), "ザジズゼゾ": ("z", "j", "z", "z", "z"),
    "タチツテト": ("t", "ch", "ts", "t", "t"), "ダヂヅデド": ("d", "j", "z", "d", "d"),
    "ハヒフヘホ": ("h", "h", "f", "h", "h"),
}
_SMALL_VOWELS = "ァィゥェォ"
_PALATAL = {  # kana before a small ャ/ュ/ョ and the consonant they make together
    "キ": "ky", "ク": "ky", "ギ": "gy", "グ": "gy", "シ": "sh", "ス": "sh", "ジ": "j", "ヂ": "j",
    "チ": "ch", "ツ": "ch", "ズ": "zy", "ヅ": "zy", "ニ": "ny", "ヌ": "ny", "ヒ": "hy", "フ": "hy",
    "ビ": "by", "ピ": "py", "プ": "py", "ミ": "my", "ム": "my", "リ": "ry", "ル": "ry",
    "テ": "ty", "ト": "ty", "デ": "dy", "ド": "dy",
}
_SHORT_DOUBLES = {"シィ": "sh i", "チィ": "ch i", "ツゥ": "ts u", "ヅゥ": "d u:"}
_OTHER_KANA = {
    "ヤ": "y a", "ユ": "y u", "ヨ": "y o", "ワ": "w a", "ヰ": "i", "ヱ": "e", "ヲ": "o", "ン": "N", "ッ": "q",
    "ヴ": "v u", "ヮ": "w a", "ャ": "y a", "ュ": "y u", "ョ": "y o",
    "ヤァ": "y a:", "ユゥ": "y u:", "ヨォ": "y o:", "ワァ": "w a:", "ヲォ": "o:",
    "ユャ": "y a:", "ユュ": "y u:", "ユョ": "y o:", "イャ": "y a", "ブュ": "by u", "ヴュ": "by u",
    "イェ": "i e", "シェ": "sh e", "ジェ": "j e", "ヂェ": "j e", "チェ": "ch e",
    "ツァ": "ts a", "ツィ": "ts i", "ツェ": "ts e", "ツォ": "ts o",
    "ティ": "t i", "ディ": "d i", "トゥ": "t u", "ドゥ": "d u", "スィ": "s i",
    "ズァ": "z u", "ズィ": "z i", "ズェ": "z e", "ズォ": "z o",
    "ウァ": "u a", "ウィ": "w i", "ウェ": "w e", "ウォ": "w o",
    "ファ": "f a", "フィ": "f i", "フェ": "f e", "フォ": "f o",
    "ヴァ": "v a", "ヴィ": "v i", "ヴェ": "v e", "ヴォ": "v o",
    "ウ゛": "b u", "ゥ゛": "v u", "ウ゛ァ": "v a", "ウ゛ィ": "v i", "ウ゛ェ": "v e", "ウ゛ォ": "v o", "ウ゛ュ": "by u",
    "ドァ": "d o ",  # upstream's entry ends in a space: inside a word it yields an empty phone (an error)
    **dict.fromkeys("ー〜−-", ":"),
}


def _build_kana_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for row, consonants in _ROWS.items():
        for kana, consonant, vowel, small in zip(row, consonants, _VOWELS, _SMALL_VOWELS, strict=True):
            table[kana] = f"{consonant} {vowel}".strip()
            table[kana + small] = f"{consonant} {vowel}:".strip()
    for kana, vowel in zip(_SMALL_VOWELS, _VOWELS, strict=True):
        table[kana] = vowel
    for kana, consonant in _PALATAL.items():
        for small, vowel in zip("ャュョ", "auo", strict=True):
            table[kana + small] = f"{consonant} {vowel}"
    table.update(_SHORT_DOUBLES)
    table.update(_OTHER_KANA)
    return table


_KANA = _build_kana_table()
_LONGEST_KEY = max(map(len, _KANA))
_LENGTHENED = re.compile(r"(\w)(:*)")
_HIRAGANA_TO_KATAKANA = {c: c + 0x60 for c in range(0x3041, 0x3097)}
# Phones the kana table can give, plus the marks; anything else (an empty phone, a lone ー, a stray ":") is
# an input upstream cannot handle.
_PHONES = frozenset(p.rstrip(":") for v in _KANA.values() for p in v.split()) - {"", "N"} | {"n"} | set(_MARKS)


def _spell(kana: str) -> list[str]:
    """Kana text (no leading ー) -> phones: longest table match first, unknown characters skipped."""
    kana = kana.translate(_HIRAGANA_TO_KATAKANA)
    pieces, i = [], 0
    while i < len(kana):
        for size in range(_LONGEST_KEY, 0, -1):
            value = _KANA.get(kana[i : i + size])
            if value is not None:
                pieces.append(value if value.startswith(":") else " " + value)
                i += size
                break
        else:
            i += 1
    spelled = _LENGTHENED.sub(lambda m: " ".join(m[1] * (len(m[2]) + 1)), "".join(pieces).strip())
    return spelled.replace("N", "n").split(" ")


def _is_mark(ch: str) -> bool:
    """Upstream's test for a reading that is a symbol rather than kana (its first character decides)."""
    if ch.isascii():
        return not ch.isalnum()
    return not (ch.isdecimal() or ch == "\u3005" or "\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff"
                or "\uff11" <= ch <= "\uff19" or "\uff21" <= ch <= "\uff3a" or "\uff41" <= ch <= "\uff5a"
                or "\uff66" <= ch <= "\uff9d")


def kana_to_phones(kana: str) -> list[str]:
    """One word's katakana reading -> phones; a leading ``ー`` stays ``ー`` (the word before decides its vowel)."""
    kana = kana.strip()
    leading = len(kana) - len(kana.lstrip("ー"))
    phones, rest = ["ー"] * leading, kana[leading:]
    while rest:
        if _is_mark(rest[0]):
            phones.append(rest)  # upstream keeps the whole remainder here, then moves on by one character
            rest = rest[1:]
        elif rest[0] == "ー":
            rest = rest[1:]
        else:
            phones += _spell(rest)
            break
    return phones


# ---------------------------------------------------------------------------------------------------------
# Words, readings and accents from OpenJTalk.


@dataclass(frozen=True)
class Words:
    """Upstream's ``text2sep_kata``: OpenJTalk's words (punctuation mapped), their katakana readings (a mark for
    punctuation) and the ``(phone, accent)`` pairs of the full-context labels (accent 1 rise, -1 fall, 0 none)."""

    texts: list[str]
    katakana: list[str]
    accents: list[tuple[str, int]]


_LABEL_PHONE = re.compile(r"-([^+]*)\+")
_LABEL_A1 = re.compile(r"/A:(-?[0-9]+)\+")
_LABEL_A2 = re.compile(r"\+([0-9]+)\+")


def _label_field(pattern: re.Pattern[str], label: str) -> str:
    found = pattern.search(label)
    if found is None:
        raise InputError("text", f"OpenJTalk gave a label without accent information: {clip(label)}")
    return found[1]


def _accents(labels: list[str]) -> list[tuple[str, int]]:
    phones = [_label_field(_LABEL_PHONE, label) for label in labels]
    accents = []
    for n, phone in enumerate(phones):
        if phone in ("sil", "pau"):
            continue
        a1 = int(_label_field(_LABEL_A1, labels[n]))
        a2 = int(_label_field(_LABEL_A2, labels[n]))
        following = phones[n + 1] if n + 1 < len(phones) else "sil"
        a2_next = -1 if following in ("sil", "pau") else int(_label_field(_LABEL_A2, labels[n + 1]))
        if a1 == 0 and a2_next == a2 + 1:
            accent = -1  # the accent nucleus: the pitch falls after this mora
        elif a2 == 1 and a2_next == 2:
            accent = 1  # the pitch rises after the phrase's first mora
        else:
            accent = 0
        accents.append((phone.replace("cl", "q").lower(), accent))
    return accents


def split_words(norm_text: str) -> Words:
    """OpenJTalk's analysis of `norm_text` as upstream's ``text2sep_kata`` keeps it."""
    features = pyopenjtalk.run_frontend(norm_text, predict_nani=False)  # the upstream setup had no 何 model
    texts: list[str] = []
    katakana: list[str] = []
    for feature in features:
        word, reading = _map_punctuation(feature["string"]), feature["pron"].replace("’", "")
        if reading and _is_mark(reading[0]):
            if len(word) > 1:
                chars = [_map_punctuation(ch) for ch in word]
                texts += chars
                katakana += chars
                continue
            if word not in _KEPT_WORDS:
                word = ","
            reading = word
        elif not reading and word == "っ":
            reading = "ッ"
        elif not reading:
            reading = word
        texts.append(word)
        katakana.append(reading)
    return Words(texts, katakana, _accents(pyopenjtalk.make_label(features)))


# ---------------------------------------------------------------------------------------------------------
# g2p


def _resolve_long_marks(words: list[list[str]]) -> None:
    """A word-initial ``ー`` takes the last phone of the word before (upstream indexes -1 for the first word);
    a later ``ー`` takes the last character of the phone before it."""
    for i, phones in enumerate(words):
        if not phones:
            raise InputError("text", "has a word OpenJTalk gives no reading for")
        if phones[0] == "ー":
            phones[0] = words[i - 1][-1]
        for j in range(1, len(phones)):
            if phones[j] == "ー":
                phones[j] = phones[j - 1][-1:]


def _tones(words: list[list[str]], accents: list[tuple[str, int]]) -> list[int]:
    """Upstream's ``align_tones``: walk the label phones along the word's phones, accumulate the accent marks of
    the phones that match, shift by one phone (the mark acts after its phone) and lift a word that dips to -1."""
    pending = list(reversed(accents))
    tones: list[int] = []
    for phones in words:
        marks = [0] * len(phones)
        for idx, phone in enumerate(phones):
            if not pending:
                break
            if phone == pending[-1][0]:
                marks[idx] = pending.pop()[1] + (marks[idx - 1] if idx > 0 else 0)
        shifted = [0, *marks][:-1]
        if -1 in shifted:
            shifted = [t + 1 for t in shifted]
        tones += shifted
    if any(t not in (0, 1) for t in tones):
        raise InputError("text", "gives an accent pattern upstream's Japanese g2p rejects")
    return tones


def _spread(n_phones: int, n_chars: int) -> list[int]:
    """Phones per character: as even as possible, the first characters take the remainder."""
    if n_chars == 0:
        raise InputError("text", "has a word with phones but no characters for the BERT tokens")
    base, extra = divmod(n_phones, n_chars)
    return [base + 1] * extra + [base] * (n_chars - extra)


def g2p(norm_text: str) -> G2P:
    """Phones (``_`` at both ends), tones 0/1, word2ph (one entry per character plus [CLS]/[SEP]) and the BERT
    text (the words joined) of a `normalize`d text."""
    if not norm_text:
        raise NothingToSpeakError("text", "has nothing to say in JP after normalisation")
    words = split_words(norm_text)
    phones = [kana_to_phones(kana) for kana in words.katakana]
    _resolve_long_marks(phones)
    unknown = sorted({p for word in phones for p in word if p not in _PHONES})
    if unknown:
        raise InputError("text", f"has characters Japanese g2p cannot read (readings {clip(words.katakana)} give "
                         f"phones {clip(unknown)}, e.g. a lone ー or a mark it cannot spell)")
    tones = _tones(phones, words.accents)
    word2ph = [n for text, word in zip(words.texts, phones, strict=True) for n in _spread(len(word), len(text))]
    bert_text = "".join(words.texts)
    if len(word2ph) != len(bert_text):
        raise InputError("text", f"gives {len(word2ph)} phone groups for the {len(bert_text)} characters of "
                         f"{clip(bert_text)}")
    flat = [p for word in phones for p in word]
    return G2P(["_", *flat, "_"], [0, *tones, 0], [1, *word2ph, 1], bert_text)
