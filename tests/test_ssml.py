"""SSML subset (vitsrt.text.ssml) on the parser, on the real engine with the default voice and over gRPC.

Breaks and rates are exact edits: a break is exact zeros between audio that equals the same sentences said
without it (same seed: the noise is drawn per segment index), and a prosody rate r is length_scale / r.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from http_support import RunningDoor
from vitsrt.errors import BudgetError, InputError
from vitsrt.serve.engine.engine import Engine, EngineOptions
from vitsrt.serve.engine.types import SynthesisRequest
from vitsrt.text.ssml import MAX_DEPTH, MAX_ELEMENTS, Pause, Speech, is_ssml, parse_ssml
from vitsrt.voices import default_voice_dir

SEED = 5
RATE = 16000


def parts(text: str, **kwargs) -> list:
    return parse_ssml(text, max_chars=10**7, **kwargs).parts


# ----- the parser ---------------------------------------------------------------------------------------------


def test_detection_needs_a_speak_root_at_the_start():
    assert is_ssml("<speak>Hi</speak>") and is_ssml('  \n<speak version="1.1">Hi</speak>')
    assert is_ssml('<?xml version="1.0"?>\n<speak>Hi</speak>')
    assert is_ssml("<!DOCTYPE speak><speak/>")  # refused by the parser, not read out as text
    assert not is_ssml("Hi <speak>") and not is_ssml("<speaker>Hi</speaker>") and not is_ssml("x <b>")


def test_every_element_and_nesting():
    doc = parse_ssml(
        '<speak xml:lang="en-US">Hi <break time="500ms"/>there. <break strength="strong"/>'
        '<prosody rate="50%">slow <prosody rate="x-fast">then fast</prosody> slow</prosody> '
        '<say-as interpret-as="cardinal">1,234</say-as> <sub alias="World Wide Web">WWW</sub> '
        '<phoneme alphabet="ipa" ph="təmˈɑːɾoʊ">tomato</phoneme> <unknown>kept</unknown><break/></speak>',
        max_chars=5000)
    assert doc.language == "en-US"
    assert doc.parts == [
        Speech("Hi "), Pause(0.5), Speech("there. "), Pause(0.75),
        Speech("slow ", 0.5), Speech("then fast", 0.75), Speech(" slow", 0.5),
        Speech(" one thousand two hundred thirty-four  World Wide Web "),
        Speech("təmˈɑːɾoʊ", ipa=True), Speech("kept"), Pause(0.5)]


def test_whitespace_and_text_runs():
    # Text, alias and say-as at one rate make one run (split into sentences later as plain text is).
    assert parts("<speak>\n  One.\n  <sub alias='Two'>2</sub>.\n</speak>") == [Speech("\n  One.\n  Two.\n")]
    assert parts("<speak>   </speak>") == []
    assert parts('<speak><break time="2s"/><break time="1.5s"/></speak>') == [Pause(2.0), Pause(1.5)]


@pytest.mark.parametrize(("kind", "content", "said"), [
    ("characters", "abc", "eh b c"),
    ("spell-out", "IBM", "i b m"),
    ("digits", "2024", "two zero two four"),
    ("cardinal", "2,024", "two thousand twenty-four"),
    ("ordinal", "3rd", "third"),
    ("date", "2024-03-05", "March fifth, twenty twenty-four"),
    ("time", "3:30 pm", "three thirty p m"),
    ("telephone", "555-1234", "five five five, one two three four"),
    ("no-such-kind", "42 apples", "42 apples"),  # unknown interpret-as: read as text
])
def test_say_as_readings(kind, content, said):
    (speech,) = parts(f'<speak><say-as interpret-as="{kind}">{content}</say-as></speak>')
    assert speech.text.strip() == said


def test_say_as_is_english_only():
    (speech,) = parts('<speak xml:lang="de"><say-as interpret-as="cardinal">12</say-as></speak>')
    assert speech.text == "12"
    (speech,) = parts('<speak xml:lang="de"><say-as interpret-as="cardinal">12</say-as></speak>', language="en-us")
    assert speech.text.strip() == "twelve"


HOSTILE = {
    "billion laughs": '<!DOCTYPE s [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><speak>&b;</speak>',
    "external entity": '<!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]><speak>&x;</speak>',
    "bare doctype": "<!DOCTYPE speak><speak>Hi</speak>",
    "undefined entity": "<speak>&x;</speak>",
    "unclosed": "<speak>Hi <prosody rate='slow'>there</speak>",
    "no end": "<speak>Hi",
    "deep nesting": "<speak>" + "<prosody>" * 10_000 + "Hi" + "</prosody>" * 10_000 + "</speak>",
    "a million breaks": "<speak>" + "<break/>" * 10**6 + "</speak>",
    "negative time": '<speak><break time="-1s"/></speak>',
    "huge time": '<speak><break time="100000s"/></speak>',
    "time without unit": '<speak><break time="500"/></speak>',
    "bad strength": '<speak><break strength="huge"/></speak>',
    "zero rate": '<speak><prosody rate="0%">Hi</prosody></speak>',
    "huge rate": '<speak><prosody rate="1e9">Hi</prosody></speak>',
    "bad rate": '<speak><prosody rate="quick">Hi</prosody></speak>',
    "other root": "<speak/><other/>",
    "wrong root": "<speaker>Hi</speaker>",
    "x-sampa": '<speak><phoneme alphabet="x-sampa" ph="t@"/></speak>',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_documents_are_one_line_input_errors(name):
    with pytest.raises(InputError) as info:
        parse_ssml(HOSTILE[name], max_chars=10**7)
    assert info.value.field == "text" and "\n" not in str(info.value) and "aaaaaaaa" not in str(info.value)


def test_limits_are_the_documented_ones():
    parse_ssml("<speak>" + "<break/>" * (MAX_ELEMENTS - 1) + "</speak>", max_chars=10**7)
    parse_ssml("<speak>" + "<s>" * (MAX_DEPTH - 1) + "</s>" * (MAX_DEPTH - 1) + "</speak>", max_chars=5000)
    with pytest.raises(InputError, match="over the limit of 50"):
        parse_ssml("<speak>" + "x" * 50 + "</speak>", max_chars=50)
    with pytest.raises(InputError, match="over the limit of 10 s"):
        parse_ssml('<speak><break time="10001ms"/></speak>', max_chars=100)
    assert parts('<speak><break time="10s"/></speak>') == [Pause(10.0)]


# ----- the engine ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    pytest.importorskip("phonemizer", reason="the default voice speaks text through the ipa extra")
    with Engine.open([default_voice_dir()], options=EngineOptions(threads=1, max_wait_ms=2.0)) as opened:
        yield opened


def sentences(engine: Engine, text: str, **fields) -> list[np.ndarray]:
    """Each segment's audio (as delivered: a break's zeros lead the segment after it)."""
    chunks = list(engine.stream(SynthesisRequest(text=text, seed=SEED, **fields)))
    count = chunks[-1].sentence_index + 1
    return [np.concatenate([c.audio for c in chunks if c.sentence_index == i]) for i in range(count)]


def ids(engine: Engine, text: str, **fields) -> list[list[int]]:
    segments = engine.pipeline().segments_for(SynthesisRequest(text=text, **fields), 1, 1)
    return [segment.ids.phone_ids.tolist() for segment in segments]


def test_a_break_is_exact_zeros_between_unchanged_sentences(engine):
    plain = sentences(engine, "Hello there. How are you?")
    ssml = sentences(engine, '<speak>Hello there. <break time="500ms"/>How are you?</speak>')
    assert len(plain) == len(ssml) == 2
    assert np.array_equal(ssml[0], plain[0])
    assert np.array_equal(ssml[1][:8000], np.zeros(8000, np.float32))
    assert np.array_equal(ssml[1][8000:], plain[1])
    assert np.abs(plain[1][:50]).max() > 0  # negative control: the sentence itself does not start with zeros


def test_leading_and_trailing_breaks(engine):
    (plain,) = sentences(engine, "Hello there.")
    (ssml,) = sentences(engine, '<speak><break time="0.25s"/>Hello there.<break time="1s"/></speak>')
    assert np.array_equal(ssml, np.concatenate([np.zeros(4000, np.float32), plain, np.zeros(16000, np.float32)]))


def test_prosody_rate_is_an_exact_length_scale(engine):
    base = engine.pipeline().manifest.inference.length_scale
    (slow,) = sentences(engine, '<speak><prosody rate="50%">Hello there.</prosody></speak>')
    (reference,) = sentences(engine, "Hello there.", length_scale=base * 2)
    (normal,) = sentences(engine, "Hello there.")
    assert np.array_equal(slow, reference) and len(slow) > 1.5 * len(normal)
    # A rate inside text makes its own segment; nested rates multiply.
    segments = engine.pipeline().segments_for(SynthesisRequest(
        text='<speak>One <prosody rate="2">two <prosody rate="slow">three</prosody></prosody> four</speak>'), 1, 1)
    assert [s.scales.length_scale for s in segments] == [base, base / 2, base / 1.5, base]
    with pytest.raises(InputError, match="length_scale"):
        engine.pipeline().segments_for(SynthesisRequest(
            text='<speak><prosody rate="10"><prosody rate="10">Hi</prosody></prosody></speak>'), 1, 1)


def test_sub_says_the_alias(engine):
    (alias,) = sentences(engine, '<speak><sub alias="World Wide Web">WWW</sub></speak>')
    (reference,) = sentences(engine, "World Wide Web")
    assert np.array_equal(alias, reference)


def test_say_as_reaches_the_phonemes(engine):
    assert ids(engine, '<speak>Call <say-as interpret-as="telephone">555-1234</say-as> now.</speak>') == ids(
        engine, "Call five five five, one two three four now.")
    assert ids(engine, '<speak><say-as interpret-as="digits">42</say-as></speak>') == ids(engine, "four two")


def test_phoneme_says_the_given_ipa(engine):
    pipeline = engine.pipeline()
    ipa = pipeline.frontend.phonemize("tomato")
    (segment,) = pipeline.segments_for(SynthesisRequest(text=f'<speak><phoneme ph="{ipa}">x</phoneme></speak>'), 1, 1)
    assert segment.ids.phone_ids.tolist() == pipeline.frontend.from_ipa(ipa).phone_ids.tolist()
    assert segment.ids.phone_ids.tolist() == ids(engine, "tomato")[0]  # the same ids espeak gives the word
    with pytest.raises(InputError, match="U\\+0416"):  # Ж is in no English voice's map
        pipeline.segments_for(SynthesisRequest(text='<speak><phoneme ph="tƷЖ">x</phoneme></speak>'), 1, 1)


def test_language_from_xml_lang_and_unknown_elements(engine):
    assert ids(engine, '<speak xml:lang="EN-us">Hi <emphasis>there</emphasis>.</speak>') == ids(engine, "Hi there.")
    assert ids(engine, '<speak xml:lang="fr">Hi.</speak>') == ids(engine, "Hi.")  # a language it lacks: a hint


def test_hostile_text_is_refused_at_admission(engine):
    for text in (HOSTILE["billion laughs"], HOSTILE["unclosed"], "<speak>" + "<break/>" * 2000 + "</speak>"):
        with pytest.raises(InputError) as info:
            engine.synthesize(SynthesisRequest(text=text))
        assert info.value.field == "text"
    with pytest.raises(InputError, match="nothing pronounceable"):
        engine.synthesize(SynthesisRequest(text='<speak><break time="1s"/></speak>'))


def test_timestamps_count_the_silence(engine):
    def spans(text: str) -> list[tuple[str, int, int]]:
        result = engine.synthesize(SynthesisRequest(text=text, seed=SEED, timestamps=True))
        return [(w.text, w.start_sample, w.end_sample) for w in result.words]

    plain = spans("Hello there. How are you?")
    ssml = spans('<speak><break time="100ms"/>Hello there. <break time="500ms"/>How are you?</speak>')
    assert [w[0] for w in ssml] == [w[0] for w in plain] == ["Hello", "there", "How", "are", "you"]
    assert ssml[:2] == [(t, a + 1600, b + 1600) for t, a, b in plain[:2]]
    assert ssml[2:] == [(t, a + 9600, b + 9600) for t, a, b in plain[2:]]


def test_breaks_count_toward_the_audio_budget():
    pytest.importorskip("phonemizer")
    options = EngineOptions(threads=1, max_audio_seconds=5.0)
    with Engine.open([default_voice_dir()], options=options) as small:
        small.synthesize(SynthesisRequest(text='<speak>Hi. <break time="3s"/></speak>'))
        with pytest.raises(BudgetError):
            small.synthesize(SynthesisRequest(text='<speak>Hi. <break time="3s"/>Hi. <break time="3s"/></speak>'))


def test_grpc_request_with_ssml(engine):
    grpc = pytest.importorskip("grpc")
    from grpc_support import RunningServer
    from vitsrt.audio import Encoding
    from vitsrt.serve.grpc.client import TtsClient, build_request
    from vitsrt.serve.grpc.server import ServerConfig

    text = '<speak>Hello there. <break time="500ms"/><prosody rate="fast">How are you?</prosody></speak>'
    expected = np.concatenate(sentences(engine, text))  # the server streams (its windows): as engine.stream
    with RunningServer(engine, ServerConfig(port=0)) as server, TtsClient(server.target, timeout=60) as client:
        received = client.call_unary(build_request(text, seed=SEED, encoding=Encoding.FLOAT32LE))
        with pytest.raises(grpc.RpcError) as refused:
            client.call_unary(build_request(HOSTILE["billion laughs"]))
    assert np.array_equal(received.samples, expected)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "text" in refused.value.details() and "DOCTYPE" in refused.value.details()


def test_http_input_with_ssml(engine):
    httpx = pytest.importorskip("httpx")
    from vitsrt.audio import float_to_pcm16

    door = RunningDoor(engine)
    text = '<speak>Hello there. <break time="500ms"/>How are you?</speak>'
    try:
        body = {"model": "tts-1", "voice": "slt", "input": text, "response_format": "pcm", "seed": SEED,
                "sample_rate": RATE}
        reply = httpx.post(f"{door.url}/v1/audio/speech", json=body, timeout=60)
    finally:
        door.close()
    assert reply.status_code == 200, reply.text
    expected = np.concatenate(sentences(engine, text, speaker="slt"))
    assert reply.content == float_to_pcm16(expected).tobytes()
