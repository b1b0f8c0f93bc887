"""The Japanese Bert-VITS2 2.3 front end (vitsrt.text.bv2_ja) against upstream's outputs.

The reference is the fixture written by running upstream Bert-VITS2 2.3 (../shared/fixtures/bertvits2-2.3-frontend,
read at run time): every public JP case must match exactly in norm_text, phones, tones, word2ph, bert_text and
the intermediates (words, katakana readings, label accents). Negative controls show that plausible mistakes
(a different accent rule, another phone spread, no NFKC, 一千 for 千) do not pass the same comparisons.
"""

from __future__ import annotations

import json
import random
import unicodedata

import pytest

from conftest import FRONTEND_ABSENT as _ABSENT
from conftest import FRONTEND_FIXTURE, frontend_cases
from vitsrt.errors import InputError, NothingToSpeakError, VitsrtError

pytest.importorskip("pyopenjtalk", reason="the bv2 extra (pyopenjtalk-plus) is not installed")
from vitsrt.text import bv2_ja

CASES = frontend_cases("JP")
CASE_PARAMS = [pytest.param(c, id=c["id"]) for c in CASES] or [pytest.param(None, marks=pytest.mark.skip(_ABSENT))]


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    if not CASES:
        pytest.skip(_ABSENT)
    return CASES


# ----- exactness against upstream ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_normalize_matches_upstream(case):
    assert bv2_ja.normalize(case["text"]) == case["norm_text"]


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_g2p_matches_upstream(case):
    result = bv2_ja.g2p(case["norm_text"])
    assert result.phones == case["phones"]
    assert result.tones == case["tones"]
    assert result.word2ph == case["word2ph"]
    assert result.bert_text == case["bert_text"]
    assert len(result.word2ph) == len(case["bert_tokens"])  # one BERT token per character, [CLS]/[SEP] included


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_words_readings_and_accents_match_upstream(case):
    words = bv2_ja.split_words(case["norm_text"])
    assert words.texts == case["jp_sep_text"]
    assert words.katakana == case["jp_sep_kata"]
    assert [list(pair) for pair in words.accents] == case["jp_accent"]


def test_every_phone_the_kana_table_gives_has_an_upstream_symbol():
    path = FRONTEND_FIXTURE / "symbols.json"
    if not path.is_file():
        pytest.skip(_ABSENT)
    symbols = set(json.loads(path.read_text(encoding="utf-8"))["symbols"])
    assert bv2_ja._PHONES.issubset(symbols)
    assert {"ー", ":", ""}.isdisjoint(symbols)  # what the g2p refuses is what upstream's symbol check refused


def test_the_public_cases_cover_the_japanese_paths(cases):
    """The comparisons above are only worth something if the cases exercise the interesting paths."""
    texts = "".join(c["text"] for c in cases)
    assert any(ch.isdigit() for ch in texts) and "…" in texts and "「" in texts and "々" in texts
    assert any(1 in c["tones"] for c in cases) and any(n > 2 for c in cases for n in c["word2ph"])


# ----- negative controls: plausible mistakes do not pass -----------------------------------------------------


def _tones_without_shift(words: list[list[str]], accents: list[tuple[str, int]]) -> list[int]:
    """A wrong accent rule: the marks taken on the phone they belong to (no one-phone shift), clipped to 0/1."""
    pending = list(accents)
    tones = []
    for phones in words:
        level = 0
        for phone in phones:
            if pending and phone == pending[0][0]:
                level += pending.pop(0)[1]
            tones.append(min(max(level, 0), 1))
    return tones


def test_a_wrong_accent_rule_differs_from_upstream(cases):
    differs = 0
    for case in cases:
        words = bv2_ja.split_words(case["norm_text"])
        phones = [bv2_ja.kana_to_phones(k) for k in words.katakana]
        bv2_ja._resolve_long_marks(phones)
        right = bv2_ja._tones([list(p) for p in phones], words.accents)
        assert [0, *right, 0] == case["tones"]  # the real rule on the same inputs (sanity)
        wrong = _tones_without_shift(phones, words.accents)
        differs += [0, *wrong, 0] != case["tones"]
        flat = [0, *[0] * len(right), 0]
        if 1 in case["tones"]:
            assert flat != case["tones"]  # ignoring the accents altogether is caught in every accented case
    assert differs == len(cases)


def test_a_wrong_phone_spread_differs_from_upstream(cases):
    """Giving the remainder to the last characters instead of the first changes word2ph somewhere."""
    differs = 0
    for case in cases:
        words = bv2_ja.split_words(case["norm_text"])
        result = bv2_ja.g2p(case["norm_text"])
        phones = [bv2_ja.kana_to_phones(k) for k in words.katakana]
        wrong = []
        for text, word in zip(words.texts, phones, strict=True):
            base, extra = divmod(len(word), len(text))
            wrong += [base] * (len(text) - extra) + [base + 1] * extra
        differs += [1, *wrong, 1] != case["word2ph"]
        assert result.word2ph == case["word2ph"]
    assert differs > 0


def test_skipping_nfkc_or_writing_itchi_sen_differs_from_upstream(cases):
    by_id = {c["id"]: c for c in cases}
    nfkc_sensitive = [c for c in cases if unicodedata.normalize("NFKC", c["text"]) != c["text"]]
    without_nfkc = [bv2_ja._map_punctuation(bv2_ja._numbers_to_words(c["text"])) for c in nfkc_sensitive]
    assert sum(norm != c["norm_text"] for norm, c in zip(without_nfkc, nfkc_sensitive, strict=True)) >= 1  # ￥ -> ¥
    sen = [c for c in by_id.values() if "千" in c["norm_text"] and "一千" not in c["norm_text"]]
    assert sen and all(c["norm_text"].replace("千", "一千") != bv2_ja.normalize(c["text"]) for c in sen)


# ----- numbers and normalisation -----------------------------------------------------------------------------


@pytest.mark.parametrize(("digits", "words"), [
    ("1500", "千五百"), ("007", "七"), ("0.001", "零点零零一"), ("0", "零"), ("10", "十"), ("15", "十五"),
    ("333", "三百三十三"), ("10000", "一万"), ("11000", "一万千"), ("10000000", "千万"), ("100000000", "一億"),
    ("12345678901", "百二十三億四千五百六十七万八千九百一"), ("1.0", "一"), ("2.50", "二点五"), ("0.10", "零点一"),
])
def test_read_number(digits, words):
    assert bv2_ja.read_number(digits) == words


@pytest.mark.parametrize(("text", "norm"), [
    ("この本は1,500円でした。", "この本は千五百円でした."),
    ("約￥3,000です", "約三千円です"),
    ("$5と€2", "五ドルと二ユーロ"),
    ("①㍿", "一株式会社"),
    ("ｱｲｳｴｵ", "アイウエオ"),
    ("『本』（上）「下」", "本'上''下'"),
    ("すごい……", "すごい......"),
    ("AIとPython 100%", "と百"),
    ("えっ：そう；ね・・・", "えっそうね..."),
])
def test_normalize(text, norm):
    assert bv2_ja.normalize(text) == norm


def test_lone_marks_and_iteration_marks():
    assert bv2_ja.g2p("々").phones == ["_", ",", "_"]
    assert bv2_ja.g2p("ヵ").phones == ["_", ",", "_"]
    dots = bv2_ja.g2p(bv2_ja.normalize("ああ……"))
    assert dots.phones[-7:-1] == ["."] * 6 and dots.word2ph[-7:-1] == [1] * 6


# ----- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["ー", "ーー", "ｰ", "か゚゚"])
def test_inputs_upstream_crashes_on_raise_input_error(text):
    norm = bv2_ja.normalize(text)
    with pytest.raises(InputError, match="cannot read"):
        bv2_ja.g2p(norm)


def test_a_number_too_large_to_read_raises_input_error():
    with pytest.raises(InputError, match="too large"):
        bv2_ja.normalize("1" * 52)
    assert bv2_ja.normalize("1" * 51).endswith("百十一")


def test_nothing_left_after_normalisation():
    assert bv2_ja.normalize("hello, world") == ","
    assert bv2_ja.normalize("abc 100%")[:1] == "百"
    assert bv2_ja.normalize("Hi") == ""
    with pytest.raises(NothingToSpeakError):
        bv2_ja.g2p("")


def test_random_text_gives_a_result_or_a_vitsrt_error():
    """Mixed kana, kanji, marks, digits and symbols: never an IndexError/AssertionError, always consistent output."""
    pool = ("あいうかきゃっんーアヴァィッンヵヶヮ日本何々〆〇、。！？「」『』（）…・～—−-:;'\"0123456789"
            "０９.,¥$€%@abcＡ ゛゜ﾞﾟｶﾞｰ①㍿🙂\n")
    rng = random.Random(16)
    spoken = 0
    for _ in range(150):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(1, 10)))
        norm = bv2_ja.normalize(text)
        if not norm:
            continue
        try:
            result = bv2_ja.g2p(norm)
        except VitsrtError:
            continue
        spoken += 1
        assert result.phones[0] == result.phones[-1] == "_" and set(result.tones) <= {0, 1}
        assert len(result.word2ph) == len(result.bert_text) + 2 and sum(result.word2ph) == len(result.phones)
    assert spoken > 100
