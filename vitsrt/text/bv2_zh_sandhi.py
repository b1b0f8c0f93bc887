"""Mandarin tone sandhi as Bert-VITS2 2.3 applies it before its pinyin-to-phone step (used by `vitsrt.text.bv2_zh`).

Bert-VITS2's Chinese front end cuts each sentence into words with jieba's part-of-speech tagger, merges some of
those words (不 with the word after it, 一 with its neighbours, reduplications, runs of third tones, 儿 with the
word before it), reads every word with pypinyin and then rewrites the tones of the words' finals:

* 不 reads bu2 before a fourth tone, and is neutral in the middle of a three-character word (看不懂);
* 一 reads yi2 before a fourth tone, yi4 before other tones (but keeps yi1 before a mark such as ``,``), yi5
  between a reduplicated verb (看一看), yi1 in 第一 and in numbers;
* neutral tone (5) on reduplicated nouns/verbs/adjectives, sentence particles, 的地得, plural 们/noun 子,
  locative 上下里, directional 来去 and the measure word 个, and on the last syllable of a word (or of the last two
  characters of a word, or of one of its two jieba sub-words) in the neutral-tone lexicon below;
* third-tone sandhi: 3-3 becomes 2-3 inside two-character words, the halves of four-character words, and the
  sub-words of three-character words.

This is a re-implementation that follows upstream's decisions step for step, quirks included, because voices
trained on upstream's phones need the same phones at inference:

* `merge_yi` gives up entirely (keeps its input) on a second 看一看-style merge in one sentence: upstream indexes
  its output list past the end there and swallows the IndexError;
* a 看一看 pattern whose first verb jieba did not tag ``v`` while the second is tagged ``v`` makes upstream loop
  forever; here it is an `InputError`;
* a syllable without a final (pypinyin's hm, m, n, ng, and characters pypinyin has no reading for) makes upstream
  crash wherever it first indexes that final; here that is an `InputError` raised where upstream would fail.

The neutral-tone lexicon (and the short list of words that keep their full tone) is PaddleSpeech's (Apache-2.0),
which upstream's `tone_sandhi.py` carries too; it is read at run time from the `misaki` package, which ships the
same lists, and is not copied here. The phones depend on it: 371 of upstream's 420 words get a tone pypinyin alone
would not give. misaki's copy is a newer revision: its neutral-tone list differs from upstream's in 9 words
(upstream also lists 不在 学生 情形 打点 老太 老头; misaki also lists 别人 将军 戏弄), and its list of words that keep
their full tone has 40 words where upstream's has 11 (misaki adds reduplications such as 整整 想想 and words such
as 学子 落地), so sentences with those words can differ from upstream in a tone (public fixture case zh026: 整整).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Sequence

from vitsrt.errors import InputError, clip
from vitsrt.text.ipa import MissingExtraError

__all__ = ["modified_tone", "neutral_tone_words", "never_neutral_words", "pre_merge", "split_word", "tone_of"]

Finals = Callable[[str], list[str]]  # word -> pypinyin FINALS_TONE3 (neutral tone as 5), one per character
SearchCut = Callable[[str], Iterable[str]]  # word -> jieba's search-engine cut of it


@functools.cache
def _lexicon() -> tuple[frozenset[str], frozenset[str]]:
    """(words whose last syllable is neutral, words that keep their full tone): PaddleSpeech's lists as the
    `misaki` package (Apache-2.0, the bv2 extra) carries them; read from it, not copied here."""
    try:
        from misaki.tone_sandhi import ToneSandhi
    except ImportError as exc:
        raise MissingExtraError("the Chinese front end needs misaki's tone-sandhi word lists: "
                                "pip install 'vitsrt[bv2]'") from exc
    tables = ToneSandhi()
    return frozenset(tables.must_neural_tone_words), frozenset(tables.must_not_neural_tone_words)


def neutral_tone_words() -> frozenset[str]:
    return _lexicon()[0]


def never_neutral_words() -> frozenset[str]:
    return _lexicon()[1]


_PARTICLES = "吧呢啊呐噻嘛吖嗨哦哒额滴哩哟喽啰耶喔诶"  # sentence-final particles: neutral
_STRUCTURAL = "的地得"
_LOCATIVES = "上下里"
_DIRECTION_HEADS = "上下进出回过起开"  # ...+来/去 (上来, 出去): the 来/去 is neutral
_MEASURE_GE_AFTER = "几有两半多各整每做是"  # besides numerals: 个 after these is the measure word
_YI_KEEPS_FIRST_TONE_BEFORE = "：，；。？！“”‘’':,;.?!"  # 一 before these marks stays yi1 (not - or …)


def tone_of(final: str, word: str) -> str:
    """The tone digit of a pypinyin final; upstream fails on a final without one (hm, ng, unread characters)."""
    if not final:
        raise InputError("text", f"no pinyin final for a syllable of {clip(word)} (Bert-VITS2 cannot read it)")
    return final[-1]


def _retone(final: str, tone: str) -> str:
    return final[:-1] + tone


def _all_third(finals: Sequence[str], word: str) -> bool:
    return all(tone_of(final, word) == "3" for final in finals)


def _third_meets_third(first: Sequence[str], second: Sequence[str], word: str) -> bool:
    return tone_of(second[0], word) == "3" and tone_of(first[-1], word) == "3"


def split_word(word: str, search_cut: SearchCut) -> tuple[str, str]:
    """Split `word` in two around the shortest piece of jieba's search cut (the first such piece, as sorted):
    the piece and the rest when the piece starts the word, else the word minus the piece's length and the piece."""
    piece = sorted(search_cut(word), key=len)[0]
    if word.find(piece) == 0:
        return piece, word[len(piece) :]
    return word[: -len(piece)], piece


def _bu(word: str, finals: list[str]) -> None:
    if len(word) == 3 and word[1] == "不":
        finals[1] = _retone(finals[1], "5")
        return
    for i in range(len(word) - 1):
        if word[i] == "不" and tone_of(finals[i + 1], word) == "4":
            finals[i] = _retone(finals[i], "2")


def _yi(word: str, finals: list[str]) -> None:
    if "一" in word and all(ch.isnumeric() for ch in word if ch != "一"):
        return  # a number read digit by digit: 一 keeps yi1
    if len(word) == 3 and word[1] == "一" and word[0] == word[2]:
        finals[1] = _retone(finals[1], "5")
    elif word.startswith("第一"):
        finals[1] = _retone(finals[1], "1")
    else:
        for i in range(len(word) - 1):
            if word[i] != "一":
                continue
            if tone_of(finals[i + 1], word) == "4":
                finals[i] = _retone(finals[i], "2")
            elif word[i + 1] not in _YI_KEEPS_FIRST_TONE_BEFORE:
                finals[i] = _retone(finals[i], "4")


def _is_neutral_word(word: str) -> bool:
    neutral = neutral_tone_words()
    return word in neutral or word[-2:] in neutral


def _neutral_position(word: str, pos: str) -> int | None:
    """Which syllable the word-shape rules make neutral (first matching rule wins), or None."""
    last = word[-1]
    ge = word.find("个")
    if last in _PARTICLES or last in _STRUCTURAL:
        return -1
    if len(word) > 1 and last in "们子" and pos in ("r", "n") and word not in never_neutral_words():
        return -1
    if len(word) > 1 and last in _LOCATIVES and pos in ("s", "l", "f"):
        return -1
    if len(word) > 1 and last in "来去" and word[-2] in _DIRECTION_HEADS:
        return -1
    if (ge >= 1 and (word[ge - 1].isnumeric() or word[ge - 1] in _MEASURE_GE_AFTER)) or word == "个":
        return ge
    if _is_neutral_word(word):
        return -1
    return None


def _neutral(word: str, pos: str, finals: list[str], search_cut: SearchCut) -> list[str]:
    if pos[:1] in ("n", "v", "a") and word not in never_neutral_words():
        for j in range(1, len(word)):
            if word[j] == word[j - 1]:
                finals[j] = _retone(finals[j], "5")
    at = _neutral_position(word, pos)
    if at is not None:
        finals[at] = _retone(finals[at], "5")
    head, tail = split_word(word, search_cut)
    parts = [finals[: len(head)], finals[len(head) :]]
    for part, part_finals in zip((head, tail), parts, strict=True):
        if part and _is_neutral_word(part):
            part_finals[-1] = _retone(part_finals[-1], "5")
    return parts[0] + parts[1]


def _three(word: str, finals: list[str], search_cut: SearchCut) -> list[str]:
    if len(word) == 2 and _all_third(finals, word):
        finals[0] = _retone(finals[0], "2")
    elif len(word) == 3:
        head, _ = split_word(word, search_cut)
        if _all_third(finals, word):
            if len(head) == 2:  # 蒙古/包
                finals[0], finals[1] = _retone(finals[0], "2"), _retone(finals[1], "2")
            elif len(head) == 1:  # 纸/老虎
                finals[1] = _retone(finals[1], "2")
            return finals
        first, second = finals[: len(head)], finals[len(head) :]
        for i, part in enumerate((first, second)):
            if _all_third(part, word) and len(part) == 2:  # 所有/人
                part[0] = _retone(part[0], "2")
            elif i == 1 and not _all_third(part, word) and _third_meets_third(first, part, word):
                first[-1] = _retone(first[-1], "2")  # 好/喜欢
        return first + second
    elif len(word) == 4:  # idioms: two two-character halves
        halves = [finals[:2], finals[2:]]
        for half in halves:
            if _all_third(half, word):
                half[0] = _retone(half[0], "2")
        return halves[0] + halves[1]
    return finals


class _YiMergeFailed(Exception):
    """Upstream's merge_yi fails on its second 看一看 merge in a sentence; upstream then skips the whole step."""


Pair = list[str]  # [word, jieba part-of-speech tag]


def _merge_bu(seg: Sequence[Sequence[str]]) -> list[Pair]:
    """Glue a lone 不 to the word after it (a 不 at the very end stays, tagged d)."""
    out: list[Pair] = []
    last = ""
    for word, pos in seg:
        if last == "不":
            word = "不" + word
        if word != "不":
            out.append([word, pos])
        last = word
    if last == "不":
        out.append(["不", "d"])
    return out


def _merge_yi(seg: Sequence[Sequence[str]]) -> list[Pair]:
    """Verb 一 verb into one word (听一听), then a lone 一 with the word after it."""
    out: list[Pair] = []
    merged = False
    i = 0
    while i < len(seg):
        word, pos = seg[i]
        if 0 < i < len(seg) - 1 and word == "一" and seg[i - 1][0] == seg[i + 1][0] and seg[i - 1][1] == "v":
            if merged:
                raise _YiMergeFailed
            out[i - 1][0] = out[i - 1][0] + "一" + out[i - 1][0]
            merged = True
            i += 2
            continue
        if i >= 2 and seg[i - 1][0] == "一" and seg[i - 2][0] == word and pos == "v":
            # upstream's loop neither appends nor advances here, so it never returns
            raise InputError("text", f"Bert-VITS2 never finishes reading {clip(seg[i - 2][0] + '一' + word)} here")
        out.append([word, pos])
        i += 1
    joined: list[Pair] = []
    for word, pos in out:
        if joined and joined[-1][0] == "一":
            joined[-1][0] += word
        else:
            joined.append([word, pos])
    return joined


def _merge_repeats(seg: Sequence[Sequence[str]]) -> list[Pair]:
    """A word equal to the (merged) word before it joins it (看 看 -> 看看)."""
    out: list[Pair] = []
    for word, pos in seg:
        if out and out[-1][0] == word:
            out[-1][0] += word
        else:
            out.append([word, pos])
    return out


def _third_tone_words(prev: list[str], cur: list[str], prev_word: str, cur_word: str) -> bool:
    return _all_third(prev, prev_word) and _all_third(cur, cur_word)


def _third_tone_edge(prev: list[str], cur: list[str], prev_word: str, cur_word: str) -> bool:
    return tone_of(prev[-1], prev_word) == "3" and tone_of(cur[0], cur_word) == "3"


def _merge_third_tones(seg: Sequence[Sequence[str]], finals_of: Finals, joins: Callable[..., bool]) -> list[Pair]:
    """Join neighbours that `joins` (on their pypinyin finals) when the first is no AA reduplication, it was not
    itself joined to its predecessor and the two have at most three characters together."""
    finals = [finals_of(word) for word, _ in seg]
    out: list[Pair] = []
    joined = [False] * len(seg)
    for i, (word, pos) in enumerate(seg):
        if i >= 1 and joins(finals[i - 1], finals[i], seg[i - 1][0], word) and not joined[i - 1]:
            prev = seg[i - 1][0]
            if not (len(prev) == 2 and prev[0] == prev[1]) and len(prev) + len(word) <= 3:
                out[-1][0] += word
                joined[i] = True
                continue
        out.append([word, pos])
    return out


def _merge_er(seg: Sequence[Sequence[str]]) -> list[Pair]:
    """儿 joins the word before it (no erhua: it stays its own syllable er)."""
    out: list[Pair] = []
    for i, (word, pos) in enumerate(seg):
        if i >= 1 and word == "儿" and seg[i - 1][0] != "#":
            out[-1][0] += word
        else:
            out.append([word, pos])
    return out


def pre_merge(seg: Sequence[Sequence[str]], finals_of: Finals) -> list[Pair]:
    """Upstream's word merges before sandhi, in its order, on jieba's (word, tag) cut of one sentence."""
    seg = _merge_bu(seg)
    with contextlib.suppress(_YiMergeFailed):  # as upstream: then no 一 merges at all
        seg = _merge_yi(seg)
    seg = _merge_repeats(seg)
    seg = _merge_third_tones(seg, finals_of, _third_tone_words)
    seg = _merge_third_tones(seg, finals_of, _third_tone_edge)
    return _merge_er(seg)


def modified_tone(word: str, pos: str, finals: Sequence[str], search_cut: SearchCut) -> list[str]:
    """`finals` (pypinyin FINALS_TONE3 of `word`, one per character) with upstream's sandhi applied in its order:
    不, 一, neutral tone, third tone."""
    if not word:
        return list(finals)
    out = list(finals)
    _bu(word, out)
    _yi(word, out)
    out = _neutral(word, pos, out, search_cut)
    return _three(word, out, search_cut)
