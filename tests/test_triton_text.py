"""Text and speaker names through Triton, served the documented way: `vitsrt triton-repo` on the shipped
default voice, then `vitsrt triton-serve REPO` as a subprocess (the tritonserver of the nvidia-pytriton
wheel, CPU only, 127.0.0.1, free ports), one server for this module.

Text and speaker go as request parameters ("text", "speaker"): the wheel's Python-backend stub cannot
read string tensors under numpy 2 (vitsrt.serve.triton.pb_tensors). Such a tensor, like every other bad
request, must fail that request only: the model keeps serving the next one. The last test stops the
server with SIGTERM and expects exit status 0.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from vitsrt.serve.engine.engine import Engine, EngineOptions
from vitsrt.serve.engine.types import SynthesisRequest

grpcclient = pytest.importorskip("tritonclient.grpc",
                                 reason="tritonclient is not installed (pip install vitsrt[triton])")

DEFAULT_VOICE = Path(__file__).resolve().parents[1] / "vitsrt" / "voices" / "default"
TOLERANCE = 1e-4
NUMPY_2 = int(np.__version__.split(".", 1)[0]) >= 2


class Served:
    def __init__(self, process: subprocess.Popen, grpc_url: str, http_url: str, output: Path):
        self.process, self.grpc_url, self.http_url, self.output = process, grpc_url, http_url, output

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False


def _wait_ready(served: Served, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise AssertionError(f"triton-serve exited early:\n{served.output.read_text(errors='replace')[-3000:]}")
        if served.ready():
            return
        time.sleep(0.25)
    raise AssertionError(f"not ready in {timeout:.0f} s:\n{served.output.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def served(tmp_path_factory, request) -> Served:
    from vitsrt.serve.triton.launcher import TritonServerError, find_tritonserver, free_port

    try:
        find_tritonserver()
    except TritonServerError as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("triton-text")
    repo = root / "repo"
    made = subprocess.run([sys.executable, "-m", "vitsrt.cli", "-q", "triton-repo", str(DEFAULT_VOICE), "-o", str(repo),
                           "--stage-backend", "python", "--kind", "cpu", "--threads", "1"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert f"start it with: vitsrt triton-serve {repo}" in made.stdout  # the printed command is the one used here
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    output = root / "triton-serve.log"
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "vitsrt.cli", "triton-serve", str(repo), "--grpc-port", str(grpc_port),
             "--http-port", str(http_port), "--metrics-port", str(metrics_port)],
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    request.addfinalizer(lambda: _kill(process))
    result = Served(process, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", output)
    _wait_ready(result)
    return result


def _kill(process: subprocess.Popen) -> None:
    """Teardown after a failure: whatever the test left running goes (its own process group)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture(scope="module")
def engine():
    with Engine.open([DEFAULT_VOICE], options=EngineOptions(threads=1, max_wait_ms=1.0)) as engine:
        yield engine


def _seed(seed: int) -> list:
    tensor = grpcclient.InferInput("SEED", [1], "UINT64")
    tensor.set_data_from_numpy(np.array([seed], dtype=np.uint64))
    return [tensor]


def _string(name: str, value: str):
    tensor = grpcclient.InferInput(name, [1], "BYTES")
    tensor.set_data_from_numpy(np.array([value.encode()], dtype=np.object_))
    return tensor


def _stream(client, inputs: list, parameters: dict | None) -> list[np.ndarray]:
    """One streamed request; its chunks, or the InferenceServerException it ended with (raised)."""
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        client.async_stream_infer("vitsrt_tts", inputs, request_id="r", parameters=parameters)
        chunks = []
        while True:
            result, error = results.get(timeout=120)
            if error is not None:
                raise error
            chunks.append(result.as_numpy("AUDIO"))
            if bool(result.as_numpy("IS_LAST")[0]):
                return chunks
    finally:
        client.stop_stream()


def test_streamed_text_with_a_speaker_name_equals_the_engine(served, engine):
    client = grpcclient.InferenceServerClient(served.grpc_url)
    text = "Hello there. How are you today?"
    chunks = _stream(client, _seed(5), {"text": text, "speaker": "kal"})
    want = [c.audio for c in engine.stream(SynthesisRequest(text=text, speaker="kal", seed=5))]
    assert [len(c) for c in chunks] == [len(w) for w in want] and len(want) > 1
    got, expected = np.concatenate(chunks), np.concatenate(want)
    assert np.abs(expected).max() > 1e-3
    assert np.abs(got - expected).max() <= TOLERANCE


def test_one_shot_text_honours_the_speaker_name(served, engine):
    client = grpcclient.InferenceServerClient(served.grpc_url)
    slt = client.infer("vitsrt_tts_oneshot", _seed(2), parameters={"text": "Good morning.", "speaker": "slt"})
    want = engine.synthesize(SynthesisRequest(text="Good morning.", speaker="slt", seed=2)).audio
    got = slt.as_numpy("AUDIO")
    assert int(slt.as_numpy("SAMPLE_RATE")[0]) == 16000
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= TOLERANCE
    # negative control: another speaker name is other audio
    awb = client.infer("vitsrt_tts_oneshot", _seed(2), parameters={"text": "Good morning.", "speaker": "awb"})
    other = awb.as_numpy("AUDIO")
    n = min(len(other), len(got))
    assert np.abs(other[:n] - got[:n]).max() > TOLERANCE


def _bad_requests() -> dict[str, tuple[list, dict | None, str, str]]:
    """name -> (inputs, parameters, expected gRPC status, text in the message)."""
    wrong_dtype = grpcclient.InferInput("SEED", [1], "FP32")
    wrong_dtype.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    cases = {
        "unknown speaker": (_seed(1), {"text": "Hi.", "speaker": "nobody"}, "StatusCode.NOT_FOUND", "nobody"),
        "empty text": (_seed(1), {"text": "  "}, "StatusCode.INVALID_ARGUMENT", "text"),
        "text not a string": (_seed(1), {"text": 7}, "StatusCode.INVALID_ARGUMENT", "text"),
        "wrong dtype": ([wrong_dtype], {"text": "Hi."}, "StatusCode.INVALID_ARGUMENT", "SEED"),
    }
    if NUMPY_2:  # the stub garbles string tensors: a clear error instead of a dead stub
        cases["TEXT tensor"] = ([_string("TEXT", "Hello"), _string("SPEAKER", "kal")], None,
                                "StatusCode.INVALID_ARGUMENT", "request parameter 'text'")
    return cases


@pytest.mark.parametrize("case", list(_bad_requests()))
def test_a_bad_request_fails_alone_and_the_next_one_is_served(served, case):
    from tritonclient.utils import InferenceServerException

    inputs, parameters, status, words = _bad_requests()[case]
    client = grpcclient.InferenceServerClient(served.grpc_url)
    with pytest.raises(InferenceServerException, match=words) as one_shot:
        client.infer("vitsrt_tts_oneshot", inputs, parameters=parameters)
    assert one_shot.value.status() == status
    with pytest.raises(InferenceServerException, match=words):
        _stream(client, inputs, parameters)
    # both models still serve (the stub of neither died), and readiness is telling the truth
    assert client.is_model_ready("vitsrt_tts") and client.is_model_ready("vitsrt_tts_oneshot")
    good = {"text": "Still here.", "speaker": "rms"}
    assert len(client.infer("vitsrt_tts_oneshot", _seed(3), parameters=good).as_numpy("AUDIO")) > 0
    assert sum(len(c) for c in _stream(client, _seed(3), good)) > 0


def test_bench_target_sends_text_and_a_speaker_name_the_server_reads(served, engine):
    """`vitsrt bench --target triton` on a text voice: text and speaker name travel as request parameters."""
    import asyncio

    from vitsrt.benchmarks.targets import TargetOptions, open_target
    from vitsrt.benchmarks.workload import WorkItem

    item = WorkItem(0, "A quick test of the benchmark text path.")
    target = open_target("triton", TargetOptions(voice=str(DEFAULT_VOICE), server=served.grpc_url, speaker="rms"))

    async def collect() -> np.ndarray:
        await target.open()
        try:
            return await target.synthesize(item, seed=4)
        finally:
            await target.close()

    got = asyncio.run(collect())
    want = engine.synthesize(SynthesisRequest(text=item.text, speaker="rms", seed=4)).audio
    assert got.shape == want.shape and np.abs(got - want).max() <= TOLERANCE


def test_text_tensors_work_where_the_stub_can_read_them(served, engine):
    if NUMPY_2:
        pytest.skip("numpy 2 here: the wheel's Python-backend stub cannot read string tensors")
    client = grpcclient.InferenceServerClient(served.grpc_url)
    result = client.infer("vitsrt_tts_oneshot", [*_seed(4), _string("TEXT", "Hello."), _string("SPEAKER", "kal")])
    want = engine.synthesize(SynthesisRequest(text="Hello.", speaker="kal", seed=4)).audio
    assert np.abs(result.as_numpy("AUDIO") - want).max() <= TOLERANCE


def test_sigterm_stops_triton_serve_cleanly(served):
    """Runs last in this module (file order): it ends the shared server."""
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(60) == 0, served.output.read_text(errors="replace")[-3000:]
    assert not served.ready()
    with pytest.raises(ProcessLookupError):  # nothing of its process group (server, stubs) is left
        os.killpg(served.process.pid, 0)
