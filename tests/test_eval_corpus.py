"""The default voice's corpus recipe (vitsrt.train.corpus): sentence filters, the held-out list, a tiny build."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from vitsrt.train import corpus

REPO = Path(__file__).resolve().parents[1]
HAVE_FLITE = shutil.which("flite") is not None and corpus.ALICE_PATH.is_file()
needs_flite = pytest.mark.skipif(not HAVE_FLITE, reason="Debian's flite package is not installed (make corpus)")


def test_clean_sentence_rules() -> None:
    assert corpus.clean_sentence("`Oh dear!  I shall be late!'") == "Oh dear! I shall be late!"
    assert corpus.clean_sentence("There were 6 boats near the river.") is None  # digits
    assert corpus.clean_sentence("Too short.") is None  # < 4 words
    assert corpus.clean_sentence(" ".join(["word"] * 26).capitalize() + ".") is None  # > 25 words
    assert corpus.clean_sentence("no capital at the start.") is None
    assert corpus.clean_sentence("CHAPTER I: Down the Rabbit-Hole.") is None  # a heading
    assert corpus.clean_sentence("So she was VERY tired today.") == "So she was VERY tired today."


def test_dedupe_and_generator_are_deterministic() -> None:
    assert corpus.dedupe(["A b c d.", "a B c d!", "Other one here."]) == ["A b c d.", "Other one here."]
    first = corpus.generated_sentences(200, seed=3)
    assert first == corpus.generated_sentences(200, seed=3)
    assert first != corpus.generated_sentences(200, seed=4)
    assert len(first) == 200 and all(corpus.clean_sentence(s) == s for s in first)
    rng = random.Random(0)
    assert all(corpus.MIN_WORDS <= len(s.split()) <= corpus.MAX_WORDS
               for s in (corpus.generated_sentence(rng) for _ in range(200)))


@needs_flite
def test_committed_heldout_matches_the_generator_and_stays_out_of_training() -> None:
    heldout = corpus.heldout_sentences(seed=0)
    committed = (REPO / "recipes" / "default-voice" / "heldout.txt").read_text(encoding="utf-8").split("\n")
    assert [line for line in committed if line] == heldout
    assert 20 <= len(heldout) <= 40
    pool = set(corpus.training_pool(0, heldout))
    assert not pool & set(heldout)
    # Negative control: the same pool without the held-out filter does contain them.
    assert set(heldout[:5]) & set(corpus.alice_sentences() + corpus.generated_sentences(4000, 0))


@needs_flite
def test_tiny_corpus_build_is_idempotent(tmp_path: Path) -> None:
    options = corpus.CorpusOptions(hours=0.01, speakers=("slt", "kal"), workers=2, progress=False)
    summary = corpus.build_corpus(tmp_path, options)
    lines = (tmp_path / "metadata.csv").read_text(encoding="utf-8").splitlines()
    assert summary["hours"] >= 0.0097 * 0.9 and len(lines) >= 4
    heldout = set((tmp_path / "heldout.txt").read_text(encoding="utf-8").splitlines())
    speakers = set()
    for line in lines:
        path, speaker, language, text = line.split("|")
        speakers.add(speaker)
        assert language == "en" and text not in heldout
        assert corpus.wav_seconds(tmp_path / path) > 0.5
    assert speakers == {"slt", "kal"}
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("wavs/*/*.wav")}
    corpus.build_corpus(tmp_path, options)
    assert (tmp_path / "metadata.csv").read_text(encoding="utf-8").splitlines() == lines
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("wavs/*/*.wav")} == stamps  # nothing re-synthesised


def test_unknown_speaker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(corpus.CorpusError):
        corpus.build_corpus(tmp_path, corpus.CorpusOptions(hours=0.01, speakers=("nobody",)))
