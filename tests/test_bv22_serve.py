"""Serving a Bert-VITS2 2.2 voice: a request's emotion (text prompt, reference clip or ready embedding) reaches the
encoder through the CLAP towers bundled with the voice, in process and over gRPC (a real server on the engine)."""

from __future__ import annotations

import json
import shutil

import grpc
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("tokenizers")

from bv22_helpers import exported_voice22, fixture22, load_npz

from grpc_support import RunningServer, open_engine, phone_ids
from vitsrt.errors import InputError
from vitsrt.serve.engine.types import EmotionPrompt, PhonemeIds, SynthesisRequest
from vitsrt.serve.grpc.client import TtsClient, build_request
from vitsrt.serve.grpc.server import ServerConfig

IDS = phone_ids(24, seed=3)


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    return exported_voice22(tmp_path_factory)


@pytest.fixture(scope="module")
def clap_cases():
    return load_npz("clap_cases.npz")


@pytest.fixture(scope="module")
def engine(voice):
    engine = open_engine(voice)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def client(engine):
    with RunningServer(engine, ServerConfig(port=0, metrics_port=0)) as running, \
            TtsClient(running.target, timeout=120) as client:
        client.wait_ready()
        yield client


def _speak(engine, emotion: EmotionPrompt | None = None, **ids) -> np.ndarray:
    request = SynthesisRequest(phonemes=PhonemeIds(**(ids or IDS)), seed=5, emotion=emotion)
    return np.concatenate([chunk.audio for chunk in engine.stream(request)])


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and float(np.abs(a - b).max()) <= 1e-5


def test_text_prompt_equals_upstreams_embedding(engine, clap_cases):
    """"Sad" through our text tower speaks as upstream's CLAP embedding of "Sad" does; another prompt differs."""
    sad = _speak(engine, EmotionPrompt(text="Sad"))
    upstream = _speak(engine, EmotionPrompt(embedding=clap_cases["text1_emb"][:, 0].tolist()))
    assert _same(sad, upstream)
    assert not _same(sad, _speak(engine, EmotionPrompt(text="Angry")))


def test_reference_clip_equals_upstreams_embedding(engine, clap_cases):
    wav = (fixture22() / "clap_audio1.wav").read_bytes()
    clip = _speak(engine, EmotionPrompt(audio=wav))
    assert _same(clip, _speak(engine, EmotionPrompt(embedding=clap_cases["audio1_emb"][:, 0].tolist())))
    assert not _same(clip, _speak(engine, EmotionPrompt(text="Sad")))


def test_no_emotion_is_a_zero_embedding(engine):
    assert _same(_speak(engine), _speak(engine, EmotionPrompt(embedding=[0.0] * 512)))


def test_default_prompt_from_voice_json(voice, tmp_path, engine):
    """A voice whose voice.json names a default prompt speaks requests without one with it."""
    copy = tmp_path / "tiny22-happy"
    shutil.copytree(voice, copy)
    manifest = json.loads((copy / "voice.json").read_text())
    manifest["emotion"]["default_prompt"] = "Sad"
    manifest["name"] = "tiny22-sad"
    (copy / "voice.json").write_text(json.dumps(manifest))
    other = open_engine(copy)
    try:
        assert _same(_speak(other), _speak(engine, EmotionPrompt(text="Sad")))
    finally:
        other.close()


def test_requests_in_one_batch_keep_their_own_emotion(engine):
    """Two requests with different prompts served concurrently each sound as they do alone."""
    import threading

    results: dict[str, np.ndarray] = {}

    def speak(prompt: str) -> None:
        results[prompt] = _speak(engine, EmotionPrompt(text=prompt))

    threads = [threading.Thread(target=speak, args=(p,)) for p in ("Sad", "Angry voice")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert _same(results["Sad"], _speak(engine, EmotionPrompt(text="Sad")))
    assert _same(results["Angry voice"], _speak(engine, EmotionPrompt(text="Angry voice")))


@pytest.mark.parametrize(("prompt", "field"), [
    ({"embedding": [0.1] * 3}, "emotion.embedding"),
    ({"embedding": [float("nan")] * 512}, "emotion.embedding"),
    ({"audio": b"not audio at all"}, "emotion.audio"),
    ({"text": "語" * 200}, "emotion.text"),  # 600 byte-level tokens: over the 512 positions
])
def test_bad_emotion_is_an_input_error(engine, prompt, field):
    with pytest.raises(InputError) as caught:
        request = SynthesisRequest(phonemes=PhonemeIds(**IDS), emotion=EmotionPrompt(**prompt))
        list(engine.stream(request))
    assert caught.value.field.startswith(field.split(".")[0]) and field.split(".")[-1] in str(caught.value)


def test_one_source_only():
    with pytest.raises(InputError, match="exactly one"):
        EmotionPrompt(text="Sad", embedding=[0.0] * 512)
    with pytest.raises(InputError, match="exactly one"):
        EmotionPrompt()


# ----- gRPC -----------------------------------------------------------------------------------------------------


def _grpc_request(**emotion):
    message = build_request(**IDS, seed=5, encoding=2)  # FLOAT32LE: the engine's samples as sent
    if "embedding" in emotion:
        message.emotion.embedding.values.extend(emotion["embedding"])
    elif emotion:
        key, value = next(iter(emotion.items()))
        setattr(message.emotion, key, value)
    return message


def test_grpc_request_with_an_emotion_prompt(client, engine):
    want = _speak(engine, EmotionPrompt(text="Sad"))
    unary = np.frombuffer(client.call_unary(_grpc_request(text="Sad")).data, np.float32)
    streamed = np.frombuffer(client.call_streaming(_grpc_request(text="Sad")).data, np.float32)
    assert _same(unary, want) and _same(streamed, want)
    assert not _same(unary, _speak(engine))  # the prompt made a difference


def test_grpc_reference_clip_and_embedding(client, engine, clap_cases):
    wav = (fixture22() / "clap_audio2.wav").read_bytes()
    clip = np.frombuffer(client.call_unary(_grpc_request(audio=wav)).data, np.float32)
    assert _same(clip, _speak(engine, EmotionPrompt(audio=wav)))
    embedding = clap_cases["audio2_emb"][:, 0].tolist()
    given = np.frombuffer(client.call_unary(_grpc_request(embedding=embedding)).data, np.float32)
    assert _same(given, clip)


@pytest.mark.parametrize(("emotion", "field"), [
    ({"embedding": [1.0, 2.0]}, "emotion.embedding"),
    ({"text": ""}, "emotion"),
    ({"audio": b"RIFF...."}, "emotion.audio"),
])
def test_grpc_bad_emotion_is_invalid_argument(client, emotion, field):
    with pytest.raises(grpc.RpcError) as caught:
        client.call_unary(_grpc_request(**emotion))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in caught.value.details()
    client.call_unary(_grpc_request(text="Sad"))  # the server still serves


def test_grpc_emotion_on_a_voice_without_one_is_refused(fixture_voice):
    """A 2.3 voice takes no emotion: INVALID_ARGUMENT naming the field."""
    engine = open_engine(fixture_voice)
    try:
        with RunningServer(engine, ServerConfig(port=0)) as running, TtsClient(running.target, timeout=60) as client:
            client.wait_ready()
            with pytest.raises(grpc.RpcError) as caught:
                client.call_unary(_grpc_request(text="Sad"))
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "emotion" in caught.value.details()
    finally:
        engine.close()


def test_torch_backend_speaks_the_same_emotion(voice, engine):
    """The torch backend (the bundle's weights) feeds emo to the 2.2 encoder as the graphs do."""
    from vitsrt.serve.engine.engine import Engine, EngineOptions

    want = [_speak(engine, EmotionPrompt(text=p)) for p in ("Sad", "Angry")]
    with Engine.open([voice], backend="torch", options=EngineOptions(lanes=1, threads=1)) as torch_engine:
        got = [_speak(torch_engine, EmotionPrompt(text=p)) for p in ("Sad", "Angry")]
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape and float(np.abs(a - b).max()) <= 1e-4
