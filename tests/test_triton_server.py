"""The Triton deployment against a real tritonserver (the one in the nvidia-pytriton wheel, CPU only).

`vitsrt triton-repo --stage-backend python --kind cpu` writes the repository for the fixture voice; the
server runs on 127.0.0.1 with free ports for this module and is stopped by a finalizer. Audio streamed
from the decoupled BLS model (tritonclient.grpc streaming), the one-shot BLS model, the engine running
its stages remotely (`triton` backend) and `vitsrt bench --target triton` must equal the in-process
engine's for the same seed (<= 1e-4).
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading

import numpy as np
import pytest

from vitsrt.serve.engine.engine import Engine, EngineOptions
from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest

grpcclient = pytest.importorskip("tritonclient.grpc",
                                 reason="tritonclient is not installed (pip install vitsrt[triton])")

TOLERANCE = 1e-4


def _ids(tokens: int, seed: int) -> PhonemeIds:
    rng = np.random.default_rng(seed)
    phones = [0 if i % 2 == 0 else int(rng.integers(1, 112)) for i in range(tokens)]
    tones = [0 if i % 2 == 0 else int(rng.integers(1, 6)) for i in range(tokens)]
    return PhonemeIds(phone_ids=phones, tone_ids=tones, language_ids=[0] * tokens)


def _inputs(ids: PhonemeIds, seed: int, **scalars) -> list:
    arrays = {
        "PHONE_IDS": (np.array(ids.phone_ids, dtype=np.int64), "INT64"),
        "TONE_IDS": (np.array(ids.tone_ids, dtype=np.int64), "INT64"),
        "LANGUAGE_IDS": (np.array(ids.language_ids, dtype=np.int64), "INT64"),
        "SEED": (np.array([seed], dtype=np.uint64), "UINT64"),
    }
    for name, (value, datatype) in scalars.items():
        arrays[name] = (np.array([value], dtype=np.int64 if datatype == "INT64" else np.float32), datatype)
    tensors = []
    for name, (value, datatype) in arrays.items():
        tensor = grpcclient.InferInput(name, list(value.shape), datatype)
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    return tensors


@pytest.fixture(scope="module")
def triton_repo(fixture_voice, tmp_path_factory):
    from vitsrt.cli import main

    repo = tmp_path_factory.mktemp("triton") / "repo"
    code = main(["-q", "triton-repo", str(fixture_voice), "-o", str(repo), "--stage-backend", "python",
                 "--kind", "cpu", "--threads", "1", "--max-queue-delay-us", "5000"])
    assert code == 0
    return repo


@pytest.fixture(scope="module")
def server(triton_repo, request):
    from vitsrt.serve.triton.launcher import TritonServerError, TritonServerProcess, find_tritonserver

    try:
        find_tritonserver()
    except TritonServerError as exc:
        pytest.skip(str(exc))
    process = TritonServerProcess(triton_repo, startup_timeout=120)
    request.addfinalizer(process.stop)  # registered first: stops the server even if startup fails halfway
    process.start()
    return process


@pytest.fixture(scope="module")
def engine(fixture_voice):
    with Engine.open([fixture_voice], options=EngineOptions(threads=1, max_wait_ms=1.0)) as engine:
        yield engine


def _stream(client: grpcclient.InferenceServerClient, requests: dict[str, list]) -> dict[str, list[np.ndarray]]:
    """Send every request on one gRPC stream; collect each one's chunks until its IS_LAST."""
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for request_id, inputs in requests.items():
            client.async_stream_infer("vitsrt_tts", inputs, request_id=request_id)
        chunks: dict[str, list[np.ndarray]] = {key: [] for key in requests}
        open_streams = set(requests)
        while open_streams:
            result, error = results.get(timeout=120)
            if error is not None:
                raise AssertionError(f"stream error: {error}")
            request_id = result.get_response().id
            assert int(result.as_numpy("CHUNK_INDEX")[0]) == len(chunks[request_id])
            chunks[request_id].append(result.as_numpy("AUDIO"))
            if bool(result.as_numpy("IS_LAST")[0]):
                open_streams.discard(request_id)
        return chunks
    finally:
        client.stop_stream()


def test_server_is_on_loopback_with_every_model_ready(server):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    assert server.grpc_url.startswith("127.0.0.1:")
    names = {m["name"] for m in client.get_model_repository_index(as_json=True)["models"]}
    assert names == {"vitsrt_encoder", "vitsrt_duration", "vitsrt_duration_dp_only", "vitsrt_flow", "vitsrt_decoder",
                     "vitsrt_tts", "vitsrt_tts_oneshot"}
    assert all(client.is_model_ready(name) for name in names)
    assert client.get_model_config("vitsrt_tts", as_json=True)["config"]["model_transaction_policy"]["decoupled"]


def test_streamed_audio_equals_the_engine(server, engine):
    ids, seed = _ids(121, seed=3), 11
    client = grpcclient.InferenceServerClient(server.grpc_url)
    chunks = _stream(client, {"a": _inputs(ids, seed)})["a"]
    expected = [c.audio for c in engine.stream(SynthesisRequest(phonemes=ids, seed=seed))]
    assert len(chunks) == len(expected) > 1  # really streamed, window for window like the engine
    assert [len(c) for c in chunks] == [len(e) for e in expected]
    got, want = np.concatenate(chunks), np.concatenate(expected)
    assert np.abs(want).max() > 1e-3
    assert np.abs(got - want).max() <= TOLERANCE
    # negative control: another seed is audibly different audio
    other = np.concatenate(_stream(client, {"b": _inputs(ids, seed + 1)})["b"])
    n = min(len(other), len(want))
    assert np.abs(other[:n] - want[:n]).max() > TOLERANCE


def test_one_shot_model_equals_engine_synthesize(server, engine):
    ids, seed = _ids(57, seed=8), 5
    client = grpcclient.InferenceServerClient(server.grpc_url)
    scalars = {"SPEAKER_ID": (1, "INT64"), "SDP_RATIO": (0.0, "FP32"), "LENGTH_SCALE": (1.2, "FP32")}
    result = client.infer("vitsrt_tts_oneshot", _inputs(ids, seed, **scalars))
    want = engine.synthesize(
        SynthesisRequest(phonemes=ids, seed=seed, speaker="bob", sdp_ratio=0.0, length_scale=1.2)
    ).audio
    got = result.as_numpy("AUDIO")
    assert int(result.as_numpy("SAMPLE_RATE")[0]) == 44100
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= TOLERANCE
    # negative control: the speaker id is honoured
    alice = client.infer("vitsrt_tts_oneshot", _inputs(ids, seed, **{**scalars, "SPEAKER_ID": (0, "INT64")}))
    assert np.abs(alice.as_numpy("AUDIO")[: len(want)] - want[: len(alice.as_numpy("AUDIO"))]).max() > TOLERANCE


def test_concurrent_streams_batch_in_the_decoder_and_stay_exact(server, engine):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    before = client.get_inference_statistics("vitsrt_decoder", as_json=True)["model_stats"][0]
    cases = {f"r{i}": (_ids(60 + 23 * i, seed=20 + i), 100 + i) for i in range(4)}
    chunks = _stream(client, {key: _inputs(ids, seed) for key, (ids, seed) in cases.items()})
    for key, (ids, seed) in cases.items():
        want = np.concatenate([c.audio for c in engine.stream(SynthesisRequest(phonemes=ids, seed=seed))])
        got = np.concatenate(chunks[key])
        assert got.shape == want.shape, key
        assert np.abs(got - want).max() <= TOLERANCE, key
    # Triton merges decoder windows of different streams when equal shapes arrive within the queue delay.
    # Whether they do is timing (a loaded 2-core machine may serialise one round), so send rounds of
    # four identically shaped streams until one merges; five rounds without any merge is a failure.
    same = {f"s{i}": _inputs(_ids(80, seed=7), 300) for i in range(4)}
    for _ in range(5):
        _stream(client, same)
        after = client.get_inference_statistics("vitsrt_decoder", as_json=True)["model_stats"][0]
        inferences = int(after.get("inference_count", 0)) - int(before.get("inference_count", 0))
        executions = int(after.get("execution_count", 0)) - int(before.get("execution_count", 0))
        if inferences > executions > 0:
            break
    assert inferences > executions > 0, (inferences, executions)


def test_bad_request_is_an_error_and_the_server_keeps_serving(server):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    bad = PhonemeIds(phone_ids=[0, 500, 0], tone_ids=[0, 0, 0], language_ids=[0, 0, 0])
    with pytest.raises(Exception, match="phone_ids"):
        client.infer("vitsrt_tts_oneshot", _inputs(bad, 1))
    with pytest.raises(Exception, match="SPEAKER_ID"):
        client.infer("vitsrt_tts_oneshot", _inputs(_ids(9, 1), 1, SPEAKER_ID=(7, "INT64")))
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        client.async_stream_infer("vitsrt_tts", _inputs(bad, 1), request_id="bad")
        _, error = results.get(timeout=60)
        assert error is not None and "phone_ids" in str(error)
    finally:
        client.stop_stream()
    assert len(client.infer("vitsrt_tts_oneshot", _inputs(_ids(9, 2), 2)).as_numpy("AUDIO")) > 0


def test_engine_with_stages_on_triton_equals_local_engine(server, fixture_voice, engine):
    request = SynthesisRequest(phonemes=_ids(90, seed=4), seed=21, sdp_ratio=0.3)
    want = [c.audio for c in engine.stream(request)]
    with Engine.open([fixture_voice], backend="triton", backend_options={"url": server.grpc_url},
                     options=EngineOptions(max_wait_ms=1.0)) as remote:
        assert remote.pipeline().backend.name.startswith("triton")
        outputs: dict[int, list[np.ndarray]] = {}

        def stream(i: int) -> None:  # concurrent streams share batched remote stage calls
            outputs[i] = [c.audio for c in remote.stream(request)]

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    for i in range(3):
        assert [len(c) for c in outputs[i]] == [len(c) for c in want]
        assert np.abs(np.concatenate(outputs[i]) - np.concatenate(want)).max() <= TOLERANCE


def test_bench_target_triton(server, fixture_voice, engine, tmp_path):
    from vitsrt.benchmarks.targets import TargetOptions, open_target
    from vitsrt.benchmarks.workload import Phonemes, WorkItem
    from vitsrt.cli import main

    report = tmp_path / "bench.json"
    code = main(["-q", "bench", "--target", "triton", "--server", server.grpc_url, "--voice", str(fixture_voice),
                 "--concurrency", "2", "--requests", "4", "--warmup", "1", "--no-progress", "--json", str(report)])
    assert code == 0
    level = json.loads(report.read_text())["levels"][0]
    assert level["ok"] == 4 and level["errors"] == 0 and level["audio_s"] > 0

    ids = _ids(75, seed=6)
    item = WorkItem(0, "stand-in", Phonemes(ids.phone_ids, ids.tone_ids, ids.language_ids))
    target = open_target("triton", TargetOptions(voice=str(fixture_voice), server=server.grpc_url, speaker="bob"))

    async def collect() -> list[np.ndarray]:
        await target.open()
        try:
            return [chunk async for chunk in target.stream_audio(item, seed=9)]
        finally:
            await target.close()

    chunks = asyncio.run(collect())
    want = [c.audio for c in engine.stream(SynthesisRequest(phonemes=ids, seed=9, speaker="bob"))]
    assert [len(c) for c in chunks] == [len(c) for c in want]
    assert np.abs(np.concatenate(chunks) - np.concatenate(want)).max() <= TOLERANCE


def test_grpc_front_door_with_stages_in_triton(server, fixture_voice, engine, monkeypatch):
    """`vitsrt serve --backend triton`: our gRPC server and engine, every stage call sent to Triton (the
    address from $VITSRT_TRITON_URL, which is what the serve command's engine sees)."""
    from grpc_support import RunningServer
    from vitsrt.audio import Encoding
    from vitsrt.serve.backends.triton_backend import URL_ENV
    from vitsrt.serve.grpc.client import TtsClient, build_request
    from vitsrt.serve.grpc.server import ServerConfig

    monkeypatch.setenv(URL_ENV, server.grpc_url)
    ids = _ids(66, seed=12)
    request = build_request(phone_ids=ids.phone_ids, tone_ids=ids.tone_ids, language_ids=ids.language_ids, seed=3,
                            encoding=Encoding.FLOAT32LE)
    want = np.concatenate([c.audio for c in engine.stream(SynthesisRequest(phonemes=ids, seed=3))])
    remote = Engine.open([fixture_voice], backend="triton", options=EngineOptions(max_wait_ms=1.0))
    try:
        with RunningServer(remote, ServerConfig(port=0)) as running, TtsClient(running.target, timeout=60) as client:
            received = client.call_streaming(request)
    finally:
        remote.close()
    assert received.chunks > 1
    assert np.abs(received.samples - want).max() <= TOLERANCE


def test_triton_backend_splits_batches_larger_than_the_model_allows(server, fixture_voice):
    from vitsrt.serve.backends.onnxruntime_backend import OnnxRuntimeBackend
    from vitsrt.serve.backends.triton_backend import TritonBackend
    from vitsrt.voice import load_voice

    voice = load_voice(fixture_voice)
    remote = TritonBackend(voice, url=server.grpc_url)
    assert remote.has_stage("duration_dp_only") and remote._max_batch["decoder"] == 8
    remote._max_batch["decoder"] = 2  # as if the repository had been written with --max-batch 2
    rng = np.random.default_rng(4)
    frames = np.array([30, 17, 25, 30, 9])
    y_mask = (np.arange(30)[None, None, :] < frames[:, None, None]).astype(np.float32)
    inputs = {"z": rng.standard_normal((5, voice.manifest.latent_channels, 30)).astype(np.float32) * y_mask,
              "y_mask": y_mask, "g": rng.standard_normal((5, 32, 1)).astype(np.float32)}
    got = remote.run("decoder", inputs)["audio"]
    want = OnnxRuntimeBackend(voice, intra_op_threads=1).run("decoder", inputs)["audio"]
    remote.close()
    assert got.shape == want.shape == (5, 1, 30 * voice.manifest.hop_length)
    assert np.abs(got - want).max() <= TOLERANCE
