"""Property tests (issue "Hardening", item 6): whatever a client sends, only vitsrt's typed errors
(`vitsrt.errors.VitsrtError` subclasses) come out of the wire conversion and the text front ends, never a
ValueError, KeyError, TypeError, pydantic ValidationError..., and what they return is well-formed.

Hypothesis runs derandomized (the same examples on every run, so CI is reproducible) with modest
example counts; the whole file takes well under a minute.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from vitsrt.errors import InputError, VitsrtError
from vitsrt.sampling import SAMPLING_RANGES
from vitsrt.serve.grpc.convert import request_from_proto
from vitsrt.serve.proto import tts_pb2
from vitsrt.text import make_frontend, normalize_text, prepare_text, split_sentences
from vitsrt.voice import load_voice
from vitsrt.voices import DEFAULT_VOICE_DIR

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW_SETTINGS = settings(SETTINGS, max_examples=50)

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# Text as clients send it: any code point but lone surrogates (UTF-8 on the wire cannot carry them),
# with control characters, combining marks, RTL, CJK, emoji, zero-width characters.
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)
SPICY = st.sampled_from(["\x00", "\x07", "\x1b", "\r\n", "\u2028", "\u200b", "\ufeff", "\u0301", "-", "...",
                         "Dr.", "3.14", "?!", "。", "\U0001f600", " ", "\t", "\u00ad", "e\u0301", "ﬁ", "Å"])
TEXTISH = st.one_of(
    ANY_TEXT,
    st.lists(st.one_of(SPICY, st.text("abcdefghij klmnop.,!?'-", max_size=12)), max_size=40).map("".join),
    st.builds(lambda word, dashes: f"{word} {'-' * dashes} {word}", st.sampled_from(["Hello", "ok", "x"]),
              st.integers(0, 500)),
)
FLOAT32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
SCALE = st.one_of(st.none(), FLOAT32, st.sampled_from([0.0, -0.0, 1e-30, 1e-6, 0.1, 1.0, 10.0, 1e4, 1e6, 3.4e38]))


# ----- (1) wire conversion ----------------------------------------------------------------------------


WIRE_FIELDS = ("voice", "speaker", "language", "encoding", "input", "scales", "seed")


def _valid_scale(name: str) -> st.SearchStrategy[float | None]:
    low, high = (np.float32(bound) for bound in SAMPLING_RANGES[name])  # float32 bounds inside the range
    low = low if low >= SAMPLING_RANGES[name][0] else np.nextafter(low, np.float32(np.inf))
    high = high if high <= SAMPLING_RANGES[name][1] else np.nextafter(high, np.float32(-np.inf))
    return st.one_of(st.none(), st.floats(float(low), float(high), width=32))


@st.composite
def synthesize_requests(draw) -> tts_pb2.SynthesizeRequest:
    """A request with an arbitrary set of its fields wild (anything the wire can carry), the rest valid: the
    empty set (a served request) and single broken fields come up often, any mix of broken fields too."""
    wild = draw(st.sets(st.sampled_from(WIRE_FIELDS)))
    message = tts_pb2.SynthesizeRequest()
    for name in ("voice", "speaker", "language"):
        if name in wild:
            setattr(message, name, draw(ANY_TEXT))
    message.encoding = draw(st.integers(-(2**31), 2**31 - 1) if "encoding" in wild else st.integers(0, 3))
    which = draw(st.sampled_from(["text", "phonemes", "none", "empty phonemes"] if "input" in wild
                                 else ["text", "phonemes"]))
    if which == "text":
        message.text = draw(TEXTISH if "input" in wild else st.text("abc def.", min_size=1).filter(str.strip))
    elif which == "phonemes":
        size = draw(st.integers(1, 60))
        any_ids = st.lists(st.one_of(st.integers(-3, 120), INT64), max_size=60)
        aligned = {"phone_ids": (0, 111), "tone_ids": (0, 11), "language_ids": (0, 2)}
        for name, (low, high) in aligned.items():
            kind = draw(st.sampled_from(["aligned", "empty", "any"] if "input" in wild else ["aligned", "empty"]))
            if name == "phone_ids" and kind == "empty" and "input" not in wild:
                kind = "aligned"
            if kind == "aligned":
                values = draw(st.lists(st.integers(low, high), min_size=size, max_size=size))
            else:
                values = draw(any_ids) if kind == "any" else []
            getattr(message.phonemes, name).extend(values)
        message.phonemes.SetInParent()
    elif which == "empty phonemes":
        message.phonemes.SetInParent()
    for name in SAMPLING_RANGES:
        value = draw(SCALE if "scales" in wild else _valid_scale(name))
        if value is not None:
            setattr(message, name, value)
    seed = draw(st.one_of(st.none(), st.integers(0, 2**64 - 1)))
    if seed is not None:
        message.seed = seed
    # through the wire format, as the server sees it
    return tts_pb2.SynthesizeRequest.FromString(message.SerializeToString())


@SETTINGS
@given(message=synthesize_requests(), max_text_chars=st.sampled_from([1, 7, 50, 5000]))
def test_request_from_proto_raises_only_typed_errors(message, max_text_chars):
    try:
        request, encoding = request_from_proto(message, max_text_chars)
    except VitsrtError as exc:
        event(f"refused: {type(exc).__name__} {getattr(exc, 'field', '')}")
        text = str(exc)
        assert text and "\n" not in text and len(text) < 400, repr(text)
        if isinstance(exc, InputError):
            assert exc.field and text.startswith(exc.field)
        return
    event("accepted")  # every field the engine relies on is well-formed
    assert (request.text is None) != (request.phonemes is None)
    if request.text is not None:
        assert request.text.strip() and len(request.text) <= max_text_chars
    else:
        phones = request.phonemes.phone_ids
        assert len(phones) > 0  # (their number is the engine's max_phonemes, checked at admission)
        for other in (request.phonemes.tone_ids, request.phonemes.language_ids):
            assert other is None or len(other) == len(phones)
    for name, (low, high) in SAMPLING_RANGES.items():
        value = getattr(request, name)
        assert value is None or (math.isfinite(value) and low <= value <= high), (name, value)
    assert request.seed is None or 0 <= request.seed < 2**64
    assert int(encoding.value) == message.encoding or message.encoding == 0


# ----- (2) text clean-up and sentence splitting -------------------------------------------------------


@SETTINGS
@given(text=TEXTISH, max_chars=st.sampled_from([1, 5, 40, 300, 5000]))
def test_prepare_text_raises_only_input_errors(text, max_chars):
    try:
        prepared = prepare_text(text, max_chars)
    except InputError as exc:
        assert exc.field == "text" and "\n" not in str(exc)
        return
    assert prepared.strip() and len(prepared) <= max_chars
    assert normalize_text(prepared) == prepared  # idempotent: nothing left to clean


@SETTINGS
@given(text=TEXTISH, max_chars=st.sampled_from([1, 2, 10, 40, 300]))
def test_split_sentences_segments_are_bounded_and_non_empty(text, max_chars):
    try:
        segments = split_sentences(text, max_chars=max_chars)
    except VitsrtError:
        return
    for segment in segments:
        assert segment.strip(), segments
        assert len(segment) <= max_chars, (len(segment), segment)
    assert not normalize_text(text) or segments  # speakable input never vanishes entirely


# ----- (2) front ends: the shipped voice's IPA front end, the fixture voice's ids front end -----------


def _check_sequence(seq, front_end) -> None:
    phones, tones, langs = seq.phone_ids, seq.tone_ids, seq.language_ids
    for arr in (phones, tones, langs):
        assert isinstance(arr, np.ndarray) and arr.dtype == np.int64 and arr.ndim == 1
    assert len(phones) > 0 and len(phones) == len(tones) == len(langs)
    assert phones.min() >= 0 and phones.max() < front_end.num_symbols
    assert tones.min() >= 0 and tones.max() < front_end.num_tones
    assert langs.min() >= 0 and langs.max() < front_end.num_languages


@pytest.fixture(scope="module")
def ipa_voice():
    pytest.importorskip("phonemizer", reason="the shipped voice's IPA front end needs the 'ipa' extra")
    manifest = load_voice(DEFAULT_VOICE_DIR).manifest
    return manifest.front_end, make_frontend(manifest.front_end)


@pytest.fixture(scope="module")
def ids_voice(fixture_voice):
    manifest = load_voice(fixture_voice).manifest
    return manifest.front_end, make_frontend(manifest.front_end)


LANGUAGE = st.one_of(st.none(), st.just(""), st.sampled_from(["en-us", "en", "EN", "xx"]), ANY_TEXT)


@SLOW_SETTINGS
@given(text=TEXTISH, language=LANGUAGE)
def test_ipa_from_text_raises_only_typed_errors(ipa_voice, text, language):
    config, front_end = ipa_voice
    try:
        seq = front_end.from_text(text, language=language)
    except VitsrtError as exc:
        event(f"refused: {getattr(exc, 'field', type(exc).__name__)}")
        assert "\n" not in str(exc) and len(str(exc)) < 400
        return
    event("accepted")
    _check_sequence(seq, config)
    assert len(seq.phone_ids) <= front_end.max_length


@SLOW_SETTINGS
@given(text=TEXTISH)
def test_ipa_engine_text_path(ipa_voice, text):
    """What the engine does with a request's text: prepare, split, phonemize each sentence. A sentence may be
    refused (typed error); every sequence that comes out is well-formed."""
    config, front_end = ipa_voice
    try:
        sentences = split_sentences(prepare_text(text, 5000), max_chars=300)
        sequences = [front_end.from_text(sentence) for sentence in sentences]
    except VitsrtError:
        event("refused")
        return
    event("accepted")
    for seq in sequences:
        _check_sequence(seq, config)


def _wild_ids(elements) -> st.SearchStrategy[object]:
    """Anything a Python caller might pass as an id list."""
    return st.one_of(
        st.lists(elements, max_size=80),
        st.lists(st.integers(), max_size=10),  # unbounded: beyond int64 too
        st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=10),
        st.lists(st.lists(st.integers(0, 3), max_size=3), max_size=3),
        st.lists(st.booleans(), max_size=5),
        st.text(max_size=10),
        st.binary(max_size=10),
        st.integers(),
        st.none(),
        st.just(np.array([[1, 2], [3, 4]])),
        st.builds(lambda xs: np.array(xs, dtype=np.uint64), st.lists(st.integers(0, 2**64 - 1), max_size=5)),
    )


@SETTINGS
@given(data=st.data(), add_blank=st.booleans())
def test_from_ids_raises_only_typed_errors(ids_voice, ipa_voice, data, add_blank):
    for config, front_end in (ids_voice, ipa_voice):
        wild = data.draw(st.sets(st.sampled_from(["phones", "tones", "languages"])), label="wild")
        size = data.draw(st.integers(1, 80), label="size")
        values = []
        for name, table in (("phones", config.num_symbols), ("tones", config.num_tones),
                            ("languages", config.num_languages)):
            if name in wild:
                strategy = _wild_ids(st.integers(-2, table + 1))
            else:
                aligned = st.lists(st.integers(0, table - 1), min_size=size, max_size=size)
                strategy = aligned if name == "phones" else st.one_of(st.none(), st.integers(0, table - 1), aligned)
            values.append(data.draw(strategy, label=name))
        try:
            seq = front_end.from_ids(*values, add_blank=add_blank)
        except VitsrtError as exc:
            event(f"{front_end.kind}: refused")
            assert "\n" not in str(exc) and len(str(exc)) < 400
            continue
        event(f"{front_end.kind}: accepted")
        _check_sequence(seq, config)
        assert len(seq.phone_ids) <= front_end.max_length


@SETTINGS
@given(phones=st.lists(st.integers(0, 111), min_size=1, max_size=200))
def test_from_ids_accepts_every_in_range_list(ids_voice, phones):
    """The positive side: in-range ids are never refused (below the length limit) and come back unchanged."""
    config, front_end = ids_voice
    assume(len(phones) <= front_end.max_length and max(phones) < config.num_symbols)
    seq = front_end.from_ids(phones)
    assert seq.phone_ids.tolist() == phones
    assert not seq.tone_ids.any() and not seq.language_ids.any()
