"""Sentence splitting: boundaries, the things that must not split, and the length bound."""

from __future__ import annotations

import random

import pytest

from vitsrt.text.sentences import SentenceSplitter, split_sentences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello world. How are you? I am fine!", ["Hello world.", "How are you?", "I am fine!"]),
        ("One.Two", ["One.Two"]),  # no space: not a boundary (file names, URLs)
        ("Really?! Yes.", ["Really?!", "Yes."]),
        ("No terminator at the end", ["No terminator at the end"]),
        ("Trailing spaces.   ", ["Trailing spaces."]),
        ("", []),
        ("   \n\n  ", []),
        ("Line one\nLine two without stop\n\nLine three.", ["Line one", "Line two without stop", "Line three."]),
        ("1999 was fine. 2000 came.", ["1999 was fine.", "2000 came."]),
    ],
)
def test_basic_boundaries(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mr. Smith met Dr. Jones. They talked.", ["Mr. Smith met Dr. Jones.", "They talked."]),
        ("Mrs. Brown and Prof. White left. Bye.", ["Mrs. Brown and Prof. White left.", "Bye."]),
        ("Use tools, e.g. Hammers. Done.", ["Use tools, e.g. Hammers.", "Done."]),
        ("That is, i.e. The end. Next.", ["That is, i.e. The end.", "Next."]),
        ("Apples, pears, etc. Then more. End.", ["Apples, pears, etc. Then more.", "End."]),
        ("He lived in the U.S. For years. Yes.", ["He lived in the U.S. For years.", "Yes."]),
        ("J. R. R. Tolkien wrote it. Yes.", ["J. R. R. Tolkien wrote it.", "Yes."]),
        ("Meet at 10 a.m. Tomorrow. Ok.", ["Meet at 10 a.m. Tomorrow.", "Ok."]),
        ("See Fig. 3 and No. 5 now. I said no. Then left.", ["See Fig. 3 and No. 5 now.", "I said no.", "Then left."]),
        ("Due Jan. 5 at noon. Fine.", ["Due Jan. 5 at noon.", "Fine."]),
        ("She went to Sen. Davis. Fine.", ["She went to Sen. Davis.", "Fine."]),
    ],
)
def test_abbreviations_and_initials_do_not_split(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Pi is 3.14 roughly. Yes.", ["Pi is 3.14 roughly.", "Yes."]),
        ("It costs $1,000.50 now. Ok.", ["It costs $1,000.50 now.", "Ok."]),
        ("We meet at 10:30. Then eat.", ["We meet at 10:30.", "Then eat."]),
        ("Version 2.0.1 is out. Nice.", ["Version 2.0.1 is out.", "Nice."]),
        ("I have 3. Then more.", ["I have 3.", "Then more."]),
        ("1. Preheat the oven. 2. Mix it.", ["1. Preheat the oven.", "2. Mix it."]),
    ],
)
def test_numbers_stay_whole(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Wait... what? Fine.", ["Wait... what?", "Fine."]),
        ("Well\u2026 OK. Fine...", ["Well\u2026", "OK.", "Fine..."]),
        ("Hmm... Let me think.", ["Hmm...", "Let me think."]),
    ],
)
def test_ellipses(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('He said "Stop!" and left. Then.', ['He said "Stop!" and left.', "Then."]),
        ('"Why?" she asked. Ok.', ['"Why?" she asked.', "Ok."]),
        ('She said "Go." Then he went.', ['She said "Go."', "Then he went."]),
        ("(See above.) Next one.", ["(See above.)", "Next one."]),
        ("He said \u201cyes.\u201d She agreed.", ["He said \u201cyes.\u201d", "She agreed."]),
        ("It ended!) New start.", ["It ended!)", "New start."]),
        ("Done. (note) more", ["Done. (note) more"]),  # lower-case after the opener: continues
    ],
)
def test_closing_quotes_and_brackets_stay_with_their_sentence(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("你好。我很好！你呢？", ["你好。", "我很好！", "你呢？"]),
        ("「好的。」谢谢", ["「好的。」", "谢谢"]),
        ("こんにちは。元気ですか？", ["こんにちは。", "元気ですか？"]),
        ("Hello!你好", ["Hello!", "你好"]),
        ("半角の句点｡次", ["半角の句点｡", "次"]),
    ],
)
def test_cjk_terminators(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_normalises_before_splitting() -> None:
    assert split_sentences("  One.\t\tTwo.\r\nThree\x00. ") == ["One.", "Two.", "Three."]


def test_custom_abbreviations_replace_defaults() -> None:
    text = "Call Dr. Who. Zz. Yes."
    assert split_sentences(text) == ["Call Dr. Who.", "Zz.", "Yes."]
    assert split_sentences(text, abbreviations={"zz."}) == ["Call Dr.", "Who.", "Zz. Yes."]


def test_long_sentence_split_at_clause_marks() -> None:
    text = "first part is here, second part is here; third part is here: fourth part is here"
    pieces = split_sentences(text, max_chars=40)
    assert pieces == ["first part is here, second part is here;", "third part is here: fourth part is here"]


def test_long_sentence_prefers_late_space_over_early_comma() -> None:
    text = "Hi, " + "word " * 20
    pieces = split_sentences(text, max_chars=40)
    assert all(len(p) <= 40 for p in pieces)
    assert len(pieces[0]) > 30  # not cut after "Hi,"


def test_clause_mark_without_space_is_not_a_cut() -> None:
    # "1,000,000" and "10:30" must not be cut at their comma/colon.
    text = "value 1,000,000 at 10:30 and then some more words to go"
    pieces = split_sentences(text, max_chars=20)
    assert all(len(p) <= 20 for p in pieces)
    assert any("1,000,000" in p for p in pieces)
    assert any("10:30" in p for p in pieces)


def test_long_sentence_split_at_spaces() -> None:
    pieces = split_sentences("word " * 100, max_chars=37)
    assert pieces[0] == " ".join(["word"] * 7)
    assert all(len(p) <= 37 for p in pieces)
    assert " ".join(pieces).split() == ["word"] * 100


def test_unbreakable_text_cut_hard() -> None:
    pieces = split_sentences("x" * 250, max_chars=100)
    assert [len(p) for p in pieces] == [100, 100, 50]


def test_hard_cut_never_strands_combining_mark() -> None:
    text = "q\u0301" * 60  # q + acute has no precomposed form: stays two code points under NFC
    pieces = split_sentences(text, max_chars=25)
    assert all(len(p) <= 25 for p in pieces)
    assert all(p[0] != "\u0301" for p in pieces)
    assert "".join(pieces) == text


def test_cjk_long_sentence_split_at_cjk_comma() -> None:
    text = "我" * 20 + "，" + "你" * 20 + "。"
    assert split_sentences(text, max_chars=30) == ["我" * 20 + "，", "你" * 20 + "。"]


def test_splitter_validates_config() -> None:
    with pytest.raises(ValueError):
        SentenceSplitter(max_chars=0)
    with pytest.raises(ValueError):
        SentenceSplitter(min_fill=1.5)


def test_max_chars_one() -> None:
    assert split_sentences("ab c", max_chars=1) == ["a", "b", "c"]


def test_property_bound_and_content_preserved() -> None:
    """Random text: every segment fits, and no non-space character is lost or reordered."""
    rng = random.Random(1234)
    alphabet = list("abcdefghij ABC.,;:!?\n3\u2026\"')(\u3002\u6211")
    for trial in range(300):
        max_chars = rng.randint(1, 60)
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))
        pieces = SentenceSplitter(max_chars=max_chars).split(text)
        assert all(0 < len(p) <= max_chars for p in pieces), (trial, max_chars, text)
        assert all(p == p.strip() for p in pieces)
        assert "".join("".join(pieces).split()) == "".join(text.split()), (trial, text)
