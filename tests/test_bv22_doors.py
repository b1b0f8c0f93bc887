"""A Bert-VITS2 2.2 voice's emotion through every door, with real clients against a real `vitsrt serve`:
OpenAI's SDK on the HTTP door (`instructions`, and the `emotion` extension that wins over it), a wyoming-library
client on the Wyoming door (`voice.emotion` in the raw event), and `vitsrt synth --emotion / --emotion-audio`.

The voice is the upstream 2.2 fixture exported with its CLAP stand-in and the front-end fixture's English BERT, so
it speaks text. Each door's audio must equal the engine's own output for the same request with that emotion
prompt (in-process engine, same graphs, one thread), and differ from another prompt's (negative control). Voices
without emotion ignore `instructions` (as documented) and refuse `emotion` with one line.
"""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("tokenizers")
pytest.importorskip("transformers", reason="exporting the English BERT needs the bert extra")
pytest.importorskip("phonemizer", reason="the default voice's IPA front end needs the 'ipa' extra")

from bv22_helpers import fixture22

from conftest import FRONTEND_FIXTURE, REPO_ROOT
from grpc_support import read_until

VOICE = "tiny22-text"
SPEAKER = "alice"
TEXT = "Hello there, how are you today."
SEED = 5
# The door's process and the test's engine run the same graphs on one thread each: equal up to rounding to PCM16.
LSB = 2


@pytest.fixture(scope="module")
def voice(tmp_path_factory) -> Path:
    """The 2.2 fixture with its CLAP towers and an English BERT (a text front end), exported once per session."""
    root = fixture22()
    bert = FRONTEND_FIXTURE / "bert" / "deberta-v3-large"
    if not bert.is_dir():
        pytest.skip(f"front-end fixture not found at {FRONTEND_FIXTURE}")
    import torch

    from vitsrt.export.bundle import export_voice

    out = tmp_path_factory.getbasetemp() / "vitsrt-bv22-cache" / VOICE
    if not (out / "voice.json").is_file():
        torch.set_num_threads(1)
        export_voice(root / "G_0.pth", root / "config.json", out, name=VOICE, verify=False, threads=1,
                     clap=root / "clap", bert={"en": bert})
    return out


@pytest.fixture(scope="module")
def engine(voice) -> Iterator[Any]:
    from vitsrt.serve.engine.engine import Engine, EngineOptions
    from vitsrt.voices import default_voice_dir

    engine = Engine.open([voice, default_voice_dir()], options=EngineOptions(threads=1, lanes=1))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def served(voice) -> Iterator[dict[str, int]]:
    """`vitsrt serve` with the 2.2 voice (default) and the shipped default voice, HTTP and Wyoming doors."""
    from vitsrt.voices import default_voice_dir

    command = [sys.executable, "-m", "vitsrt.cli", "serve", "--threads", "1", "--lanes", "1", "-v", str(voice),
               "-v", str(default_voice_dir()), "--http-port", "0", "--wyoming-port", "0"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    log: list[str] = []
    try:
        http = int(read_until(process, r"HTTP door on [\d.]+:(\d+)", log, timeout=120).group(1))
        wyoming = int(read_until(process, r"Wyoming door listening on [\d.]+:(\d+)", log, timeout=120).group(1))
        threading.Thread(target=lambda: [log.append(line) for line in process.stderr], daemon=True).start()
        yield {"http": http, "wyoming": wyoming}
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert "Traceback" not in "".join(log)


def engine_pcm(engine: Any, emotion: dict[str, Any] | None = None, **fields: Any) -> np.ndarray:
    """The engine's own audio for a request, as PCM16 samples."""
    from vitsrt.audio import float_to_pcm16
    from vitsrt.serve.engine.types import EmotionPrompt, SynthesisRequest

    prompt = EmotionPrompt(**emotion) if emotion else None
    request = SynthesisRequest(emotion=prompt, **fields)
    return float_to_pcm16(np.concatenate([chunk.audio for chunk in engine.stream(request)]))


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max()) <= LSB


@pytest.fixture(scope="module")
def expected(engine) -> dict[str, np.ndarray]:
    """The engine's audio for the 2.2 voice with each prompt (and none), seed SEED."""
    out = {p: engine_pcm(engine, {"text": p}, voice=VOICE, speaker=SPEAKER, text=TEXT, seed=SEED)
           for p in ("Sad", "Angry")}
    out[""] = engine_pcm(engine, voice=VOICE, speaker=SPEAKER, text=TEXT, seed=SEED)
    assert not _close(out["Sad"], out["Angry"]) and not _close(out["Sad"], out[""])  # the prompts matter
    return out


# --- HTTP: OpenAI's SDK -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(served) -> Any:
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"http://127.0.0.1:{served['http']}/v1", api_key="unused", max_retries=0,
                         timeout=120)


def _speech(client: Any, model: str = VOICE, voice: str = SPEAKER, **kwargs: Any) -> np.ndarray:
    extra = {"seed": SEED, **kwargs.pop("extra_body", {})}
    reply = client.audio.speech.create(model=model, voice=voice, input=TEXT, response_format="pcm",
                                       extra_body=extra, **kwargs)
    return np.frombuffer(reply.content, dtype="<i2")


def test_http_emotion_extension_is_the_prompt(client, expected):
    sad = _speech(client, extra_body={"emotion": "Sad"})
    assert _close(sad, expected["Sad"])
    assert not _close(sad, expected["Angry"])  # negative control: another prompt, other audio
    assert _close(_speech(client, extra_body={"emotion": "Angry"}), expected["Angry"])


def test_http_instructions_are_the_prompt_of_a_22_voice(client, expected):
    assert _close(_speech(client, instructions="Sad"), expected["Sad"])
    assert _close(_speech(client, instructions="Angry"), expected["Angry"])
    assert _close(_speech(client), expected[""])  # no prompt: the voice's default (a zero embedding here)


def test_http_emotion_wins_over_instructions(client, expected):
    both = _speech(client, instructions="Angry", extra_body={"emotion": "Sad"})
    assert _close(both, expected["Sad"]) and not _close(both, expected["Angry"])


def test_http_other_voices_ignore_instructions_and_refuse_emotion(client, engine):
    openai = pytest.importorskip("openai")
    plain = engine_pcm(engine, voice="vitsrt-default", speaker="slt", text=TEXT, seed=SEED)
    with_instructions = _speech(client, model="vitsrt-default", voice="slt", instructions="Speak cheerfully.")
    assert np.array_equal(with_instructions, plain)
    with pytest.raises(openai.BadRequestError) as caught:
        _speech(client, model="vitsrt-default", voice="slt", extra_body={"emotion": "Sad"})
    error = caught.value.body
    assert error["param"] == "emotion" and "takes no emotion" in error["message"] and "\n" not in error["message"]


BAD = {
    "emotion too long": ({"extra_body": {"emotion": "x" * 501}}, "emotion", "at most 500"),
    "emotion not a string": ({"extra_body": {"emotion": 7}}, "emotion", "string"),
    "emotion empty": ({"extra_body": {"emotion": ""}}, "emotion", "at least 1"),
    "instructions too long for 2.2": ({"instructions": "x" * 501}, "instructions", "at most 500"),
    "instructions past CLAP's positions": ({"instructions": "語" * 200}, "instructions", "emotion.text"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_http_bad_emotion_is_a_400_with_one_line(client, case):
    openai = pytest.importorskip("openai")
    kwargs, param, words = BAD[case]
    with pytest.raises(openai.BadRequestError) as caught:
        _speech(client, **kwargs)
    error = caught.value.body
    assert error["param"] == param and words in error["message"] and "\n" not in error["message"], error


# --- Wyoming ------------------------------------------------------------------------------------------------------

def _wyoming(port: int, events: list[Any]) -> list[Any]:
    """Send `events` on one connection; every event received up to the last reply's end."""
    from wyoming.client import AsyncTcpClient

    ends = {"audio-stop", "synthesize-stopped"}

    async def main() -> list[Any]:
        received = []
        async with AsyncTcpClient("127.0.0.1", port, connect_timeout=5, read_timeout=120) as conn:
            for event in events:
                await conn.write_event(event)
            expected_ends = 1 if events[0].type == "synthesize" else 2  # a stream: its sentence's stop + stopped
            while expected_ends:
                event = await conn.read_event()
                assert event is not None, [e.type for e in received]
                received.append(event)
                expected_ends -= event.type in ends
        return received

    return asyncio.run(main())


def _wyoming_audio(events: list[Any]) -> np.ndarray:
    from wyoming.audio import AudioChunk

    pcm = b"".join(AudioChunk.from_event(e).audio for e in events if AudioChunk.is_type(e.type))
    return np.frombuffer(pcm, dtype="<i2")


def _synthesize(voice: dict[str, Any], text: str = TEXT) -> Any:
    from wyoming.event import Event

    return Event(type="synthesize", data={"text": text, "voice": voice})


@pytest.fixture(scope="module")
def expected_seed0(engine) -> dict[str, np.ndarray]:
    """The Wyoming door speaks with seed 0."""
    return {p: engine_pcm(engine, {"text": p}, voice=VOICE, speaker=SPEAKER, text=TEXT, seed=0)
            for p in ("Sad", "Angry")}


def test_wyoming_voice_emotion_is_the_prompt(served, expected_seed0):
    sad = _wyoming_audio(_wyoming(served["wyoming"], [_synthesize({"name": VOICE, "speaker": SPEAKER,
                                                                   "emotion": "Sad"})]))
    assert _close(sad, expected_seed0["Sad"])
    assert not _close(sad, expected_seed0["Angry"])  # negative control


def test_wyoming_streamed_text_keeps_the_starts_emotion(served, expected_seed0):
    from wyoming.event import Event
    from wyoming.tts import SynthesizeChunk, SynthesizeStop

    start = Event(type="synthesize-start", data={"voice": {"name": VOICE, "speaker": SPEAKER, "emotion": "Angry"}})
    events = _wyoming(served["wyoming"], [start, SynthesizeChunk(text=TEXT).event(), SynthesizeStop().event()])
    assert [e.type for e in events if e.type == "error"] == []
    assert _close(_wyoming_audio(events), expected_seed0["Angry"])


@pytest.mark.parametrize(("given", "words"), [
    ({"name": VOICE, "emotion": 7}, "voice.emotion"),
    ({"name": VOICE, "emotion": "x" * 501}, "voice.emotion"),
    ({"name": "vitsrt-default", "emotion": "Sad"}, "takes no emotion"),
])
def test_wyoming_bad_emotion_is_an_error_event(served, given, words):
    from wyoming.error import Error

    events = _wyoming(served["wyoming"], [_synthesize(given)])
    errors = [Error.from_event(e) for e in events if e.type == "error"]
    assert len(errors) == 1 and errors[0].code == "invalid-input" and words in errors[0].text
    assert events[-1].type == "audio-stop"


# --- vitsrt synth -------------------------------------------------------------------------------------------------

def _synth(tmp_path: Path, *flags: str, voice: Path | None = None) -> subprocess.CompletedProcess:
    out = tmp_path / "out.wav"
    command = [sys.executable, "-m", "vitsrt.cli", "synth", TEXT, "--threads", "1", "--lanes", "1", "--seed",
               str(SEED), "-o", str(out), *flags]
    if voice is not None:
        command += ["-v", str(voice)]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)


def _wav(tmp_path: Path) -> np.ndarray:
    import soundfile

    return soundfile.read(io.BytesIO((tmp_path / "out.wav").read_bytes()), dtype="int16")[0]


def test_synth_emotion_text_and_audio(voice, engine, expected, tmp_path):
    result = _synth(tmp_path, "--emotion", "Sad", voice=voice)
    assert result.returncode == 0, result.stderr[-2000:]
    sad = _wav(tmp_path)
    assert _close(sad, expected["Sad"]) and not _close(sad, expected["Angry"])

    clip = fixture22() / "clap_audio1.wav"
    result = _synth(tmp_path, "--emotion-audio", str(clip), voice=voice)
    assert result.returncode == 0, result.stderr[-2000:]
    reference = engine_pcm(engine, {"audio": clip.read_bytes()}, voice=VOICE, speaker=SPEAKER, text=TEXT, seed=SEED)
    assert _close(_wav(tmp_path), reference) and not _close(_wav(tmp_path), expected["Sad"])


def test_synth_emotion_refused_for_other_voices_and_bad_files(voice, tmp_path):
    result = _synth(tmp_path, "--emotion", "Sad")  # the shipped default voice: no emotion input
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode != 0 and len(lines) == 1 and "takes no emotion" in lines[0], result.stderr[-2000:]
    result = _synth(tmp_path, "--emotion-audio", str(tmp_path / "missing.wav"), voice=voice)
    assert result.returncode != 0 and "emotion_audio" in result.stderr and "no such file" in result.stderr
    result = _synth(tmp_path, "--emotion", "Sad", "--emotion-audio", "x.wav", voice=voice)
    assert result.returncode != 0 and "not allowed with" in result.stderr  # one or the other
