"""WER/CER arithmetic of vitsrt.benchmarks.evaluation against hand-counted cases."""

from __future__ import annotations

import numpy as np
import pytest

from vitsrt.benchmarks.evaluation import (
    edit_distance,
    error_rates,
    normalize_transcript,
    number_words,
    score,
    to_asr_rate,
)


def test_edit_distance_hand_cases() -> None:
    assert edit_distance([], []) == 0
    assert edit_distance(list("abc"), []) == 3
    assert edit_distance([], list("ab")) == 2
    assert edit_distance(list("kitten"), list("sitting")) == 3  # k->s, e->i, +g
    assert edit_distance(["the", "cat", "sat"], ["the", "cat", "sat"]) == 0
    assert edit_distance(["the", "cat", "sat"], ["a", "cat", "sat", "down"]) == 2  # sub + ins
    # Negative control: a one-word change must register.
    assert edit_distance(["the", "cat", "sat"], ["the", "dog", "sat"]) == 1


def test_normalisation() -> None:
    assert normalize_transcript("Hello, World!") == "hello world"
    assert normalize_transcript("I'll  come up.") == "i'll come up"
    assert normalize_transcript("There were 6 boats") == "there were six boats"
    assert normalize_transcript("rabbit-hole, 'quoted'") == "rabbit hole quoted"
    assert normalize_transcript("1,500 and 42") == "one thousand five hundred and forty two"
    assert number_words(0) == "zero" and number_words(100) == "one hundred"
    assert number_words(115) == "one hundred fifteen"


def test_score_wer_and_cer_by_hand() -> None:
    # ref 4 words, hyp drops one and substitutes one: 2 word edits -> WER 0.5.
    counts = score("The cat sat down.", "the bat sat")
    assert (counts.word_edits, counts.words) == (2, 4)
    assert counts.wer == pytest.approx(0.5)
    # characters: "the cat sat down" (16) vs "the bat sat" -> c->b, delete " down" (5) = 6 edits.
    assert (counts.char_edits, counts.chars) == (6, 16)
    assert counts.cer == pytest.approx(6 / 16)
    # Punctuation, case and digits are not errors.
    assert score("There were six boats!", "there were 6 boats").wer == 0.0


def test_error_rates_are_corpus_level() -> None:
    # 1 edit over 2 words + 0 over 8 words = 1/10, not the mean of per-sentence rates (0.25).
    counts = error_rates(["a b", "c d e f g h i j"], ["a x", "c d e f g h i j"])
    assert counts.wer == pytest.approx(0.1)
    empty = error_rates(["one two three"], [""])
    assert empty.wer == 1.0 and empty.cer == 1.0
    with pytest.raises(ValueError):
        error_rates(["a"], [])


def test_resample_to_asr_rate() -> None:
    tone = np.sin(np.arange(22050) * 2 * np.pi * 200 / 22050).astype(np.float32)
    out = to_asr_rate(tone, 22050)
    assert out.dtype == np.float32 and abs(len(out) - 16000) <= 1
    assert to_asr_rate(tone, 16000) is not None and len(to_asr_rate(tone, 16000)) == 22050
