"""The torch-cuda backend on a real GPU (`scripts/gpu_check.sh` runs these; they skip without CUDA).

Exactness on CUDA, float32 (TF32 off), CUDA graphs and buckets on, stated tolerances:
* streaming == one-shot through the engine: <= 1e-4 max abs per sample (cuDNN may pick another algorithm for
  another window shape; on the CPU the same check holds to 1e-5);
* batch invariance: concurrent streams (batched, padded, two lanes) == each stream alone: <= 1e-4;
* torch-cuda == onnxruntime on the CPU for the same voice: <= 1e-4;
* CUDA-graph replay == eager on the GPU: <= 1e-5.
bf16/fp16 autocast (flow and decoder) against float32 is measured and written to $VITSRT_GPU_RESULTS/parity.json
(bounded loosely here: same lengths, max abs <= 0.1).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch backend needs the 'torch' extra")

from vitsrt.serve.engine.engine import Engine, EngineOptions  # noqa: E402
from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)"),
]

CUDA_EXACT = 1e-4
REPLAY_EXACT = 1e-5


def ids_request(tokens: int, seed: int, **kwargs) -> SynthesisRequest:
    phones = [int(x) for x in np.random.default_rng(seed).integers(1, 100, tokens)]
    return SynthesisRequest(phonemes=PhonemeIds(phone_ids=phones), seed=seed, **kwargs)


def _record(name: str, value: object) -> None:
    """Add a measured figure to $VITSRT_GPU_RESULTS/parity.json (the GPU check's results folder)."""
    folder = os.environ.get("VITSRT_GPU_RESULTS")
    if not folder:
        return
    path = Path(folder) / "parity.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[name] = value
    path.write_text(json.dumps(data, indent=2))


def _worst(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [x.shape for x in a] == [y.shape for y in b]
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def _run(voice: Path, requests, backend: str = "torch-cuda", stream: bool = True, lanes: int = 1, **options):
    engine_options = EngineOptions(lanes=lanes, max_batch=16, max_wait_ms=2.0)
    with Engine.open([voice], backend=backend, options=engine_options, backend_options=options or None) as engine:
        if stream:
            return [np.concatenate([c.audio for c in engine.stream(r)]) for r in requests]
        return [engine.synthesize(r).audio for r in requests]


@pytest.fixture(scope="module", params=["small_22k_voice", "default_size_voice"])
def voice(request) -> Path:
    return request.getfixturevalue(request.param)


REQUESTS = [ids_request(n, 40 + i, sdp_ratio=0.3) for i, n in enumerate([6, 33, 90, 180])]


def test_cuda_streaming_equals_one_shot(voice):
    streamed = _run(voice, REQUESTS)
    one_shot = _run(voice, REQUESTS, stream=False)
    worst = _worst(streamed, one_shot)
    _record(f"{voice.name}: streaming vs one-shot (torch-cuda fp32)", worst)
    assert worst <= CUDA_EXACT
    # negative control: another seed is far outside the tolerance
    other = _run(voice, [REQUESTS[2].model_copy(update={"seed": 7})], stream=False)[0]
    assert other.shape != one_shot[2].shape or np.abs(other - one_shot[2]).max() > 100 * CUDA_EXACT


def test_cuda_batch_invariance_across_concurrent_streams(voice):
    requests = [ids_request(n, 70 + i, sdp_ratio=0.5, noise_scale=0.6) for i, n in enumerate([5, 17, 40, 64, 9,
                                                                                               120, 48, 77])]
    alone = _run(voice, requests, lanes=1)
    results: dict[int, np.ndarray] = {}
    engine_options = EngineOptions(lanes=2, max_batch=16, max_wait_ms=5.0)
    with Engine.open([voice], backend="torch-cuda", options=engine_options) as engine:
        barrier = threading.Barrier(len(requests))

        def run(i: int) -> None:
            barrier.wait()
            results[i] = np.concatenate([c.audio for c in engine.stream(requests[i])])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        batched = engine.stats()["batch_sizes"]
    worst = _worst([results[i] for i in range(len(requests))], alone)
    _record(f"{voice.name}: concurrent vs alone (torch-cuda fp32, 2 lanes)", worst)
    assert worst <= CUDA_EXACT
    assert any(size > 1 for sizes in batched.values() for size in sizes), batched  # batching happened


def test_cuda_equals_onnxruntime_cpu(voice):
    gpu = _run(voice, REQUESTS, stream=False)
    cpu = _run(voice, REQUESTS, backend="onnxruntime", stream=False)
    worst = _worst(gpu, cpu)
    _record(f"{voice.name}: torch-cuda fp32 vs onnxruntime cpu", worst)
    assert worst <= CUDA_EXACT


def test_cuda_graph_replay_equals_eager(voice):
    replayed = _run(voice, REQUESTS)
    eager = _run(voice, REQUESTS, cuda_graphs=False, buckets=False)
    worst = _worst(replayed, eager)
    _record(f"{voice.name}: CUDA graphs + buckets vs eager (fp32)", worst)
    assert worst <= REPLAY_EXACT


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_parity_is_measured(voice, precision):
    fp32 = _run(voice, REQUESTS, stream=False)
    started = time.perf_counter()
    low = _run(voice, REQUESTS, stream=False, precision=precision)
    seconds = time.perf_counter() - started
    worst = _worst(low, fp32)  # same shapes: encoder and durations stay float32
    peak = max(float(np.abs(a).max()) for a in fp32)
    rms = max(float(np.sqrt(np.mean((a - b) ** 2))) for a, b in zip(low, fp32, strict=True))
    _record(f"{voice.name}: {precision} vs fp32", {"max_abs": worst, "rms": rms, "peak": peak,
                                                  "seconds_incl_open": seconds})
    assert worst <= 0.1
