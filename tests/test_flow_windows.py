"""Exact chunked flow: a WaveNet-coupling flow (original VITS; Bert-VITS2 with use_transformer_flow false) runs per
decode window with its receptive field as context, and the windows' audio equals the whole-sentence flow's.

The receptive field comes from the layout (vitsrt.receptive_field), is checked here against the torch flow by
perturbing one input frame, is written to voice.json at export and recomputed at load. Streamed audio equals
one-shot audio to 1e-5 per sample; one frame less of flow context does not (negative control); batches of
windows from different streams give each stream its own audio; the first window's flow reads a bounded number
of frames, however long the sentence.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from test_vits_model import randomized, tiny_vits  # noqa: E402

from vitsrt.config import parse_config  # noqa: E402
from vitsrt.errors import VoiceError  # noqa: E402
from vitsrt.export.bundle import export_voice  # noqa: E402
from vitsrt.receptive_field import coupling_flow_context_frames  # noqa: E402
from vitsrt.serve.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from vitsrt.serve.engine import pipeline as pipeline_module  # noqa: E402
from vitsrt.serve.engine.engine import Engine, EngineOptions  # noqa: E402
from vitsrt.serve.engine.pipeline import DecodeJob, VoicePipeline  # noqa: E402
from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest  # noqa: E402
from vitsrt.serve.engine.windows import ONE_SHOT, WindowPolicy, plan_windows  # noqa: E402
from vitsrt.train.checkpoint import save_checkpoint  # noqa: E402
from vitsrt.train.models.residual_flow import ResidualCouplingBlock  # noqa: E402
from vitsrt.train.models.synthesizer import SynthesizerTrn  # noqa: E402
from vitsrt.train.models.vits import VitsSynthesizer  # noqa: E402
from vitsrt.voice import FlowInfo, load_voice  # noqa: E402

TOLERANCE = 1e-5
STREAMING = WindowPolicy(first_frames=16, frames=32, one_shot_frames=0, max_frames=64, flow_frames=128)

# A small Bert-VITS2 2.3 generator with the WaveNet-coupling flow (4 couplings of n_flow_layer = 4 WaveNet layers).
BV2_RESIDUAL = {
    "version": "2.3",
    "train": {"segment_size": 4096},
    "data": {"sampling_rate": 16000, "filter_length": 256, "hop_length": 64, "win_length": 256,
             "n_speakers": 2, "spk2id": {"ann": 0, "ben": 1}},
    "model": {"inter_channels": 8, "hidden_channels": 16, "filter_channels": 24, "n_heads": 2, "n_layers": 3,
              "gin_channels": 8, "upsample_initial_channel": 32, "upsample_rates": [8, 4, 2],
              "upsample_kernel_sizes": [16, 8, 4], "resblock": "2", "resblock_kernel_sizes": [3, 5],
              "resblock_dilation_sizes": [[1, 2], [2, 6]], "use_transformer_flow": False},
}


# ----- the receptive field ------------------------------------------------------------------------------------


def long_reach(flow: ResidualCouplingBlock) -> ResidualCouplingBlock:
    """Flow weights whose outermost conv taps carry the signal, so the receptive field's edge frames move the output
    well above float32 rounding. With plain random weights an edge frame's influence is a product of 16 single
    taps (~1e-30): a context several frames short would pass every check, and no negative control could fail."""
    with torch.no_grad():
        for coupling in flow.flows[::2]:
            for conv in coupling.enc.in_layers:
                conv.weight_v[:, :, 1:-1] = 0
                conv.weight_g.copy_(2.0 * torch.sign(conv.weight_g))
            for conv in coupling.enc.res_skip_layers:
                conv.weight_g.copy_(4.0 * torch.sign(conv.weight_g))
    return flow


def _reach(block: ResidualCouplingBlock, channels: int, frames: int = 200, at: int = 100) -> tuple[int, int]:
    """How far (left, right) a change of one input frame moves the flow's (reverse) output, measured."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels, frames, generator=gen, dtype=torch.float64)
    mask = torch.ones(1, 1, frames, dtype=torch.float64)
    g = torch.randn(1, 8, 1, generator=gen, dtype=torch.float64) if block.flows[0].enc.gin_channels else None
    poked = x.clone()
    poked[:, :, at] += 0.1
    with torch.no_grad():
        changed = (block(poked, mask, g=g, reverse=True) - block(x, mask, g=g, reverse=True)).abs().amax(dim=(0, 1))
    hit = torch.nonzero(changed > 1e-9).flatten()
    return at - int(hit.min()), int(hit.max()) - at


@pytest.mark.parametrize(("n_flows", "kernel", "rate", "layers", "gin"), [
    (4, 5, 1, 4, 0),  # original VITS / piper
    (4, 5, 1, 3, 8),  # Bert-VITS2 with n_flow_layer 3 (its WaveNet layers), speaker-conditioned
    (2, 3, 2, 3, 0),  # dilated stacks (1, 2, 4)
])
def test_flow_context_is_the_measured_receptive_field(n_flows, kernel, rate, layers, gin):
    torch.manual_seed(1)
    block = long_reach(randomized(ResidualCouplingBlock(6, 8, kernel, rate, layers, n_flows, gin_channels=gin)))
    context = block.receptive_field_frames()
    assert block.layout() == {"n_flows": n_flows, "kernel_size": kernel, "dilation_rate": rate, "n_layers": layers}
    assert context == coupling_flow_context_frames(n_flows, kernel, rate, layers)
    assert context == n_flows * sum((kernel - 1) // 2 * rate**i for i in range(layers))
    # Tight: an output exactly `context` frames away moves, none further.
    assert _reach(block.double(), 6) == (context, context)


def test_flow_info_validates_the_layout():
    assert FlowInfo(n_flows=4, kernel_size=5, dilation_rate=1, n_layers=4).context_frames() == 32
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        FlowInfo(n_flows=4, kernel_size=4, dilation_rate=1, n_layers=4)


# ----- voices -------------------------------------------------------------------------------------------------


def _bv2_checkpoint(root: Path) -> tuple[Path, Path]:
    config = parse_config(copy.deepcopy(BV2_RESIDUAL))
    torch.manual_seed(3)
    model = randomized(SynthesizerTrn(config), seed=3)
    long_reach(model.flow)
    root.mkdir(parents=True, exist_ok=True)
    save_checkpoint(root / "G_100.pth", model, iteration=100)
    (root / "config.json").write_text(config.to_json(), encoding="utf-8")
    return root / "G_100.pth", root / "config.json"


def _vits_checkpoint(root: Path, speakers: int) -> tuple[Path, Path]:
    config = tiny_vits(speakers, use_sdp=True)
    model = randomized(VitsSynthesizer(config), seed=speakers)
    long_reach(model.flow)
    root.mkdir(parents=True, exist_ok=True)
    save_checkpoint(root / "G_100.pth", model, iteration=100)
    (root / "config.json").write_text(config.to_json(), encoding="utf-8")
    return root / "G_100.pth", root / "config.json"


@pytest.fixture(scope="module")
def voices(tmp_path_factory) -> dict[str, Path]:
    """name -> exported voice dir: a multi-speaker VITS, a single-speaker VITS, a residual-flow Bert-VITS2."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("flow-windows")
    built = {"vits-multi": _vits_checkpoint(base / "vm", 3), "vits-single": _vits_checkpoint(base / "vs", 1),
             "bv2-residual": _bv2_checkpoint(base / "bv2")}
    return {name: export_voice(*files, base / name, name=name, verify=False) for name, files in built.items()}


def _request(voice: str, tokens: int, seed: int, **kwargs) -> SynthesisRequest:
    rng = np.random.default_rng(seed)
    phones = [0 if i % 2 == 0 else int(rng.integers(1, 40)) for i in range(tokens)]
    extra = {} if voice.startswith("vits") else {"tone_ids": [0] * tokens, "language_ids": [0] * tokens}
    return SynthesisRequest(phonemes=PhonemeIds(phone_ids=phones, **extra), seed=seed, voice=voice, noise_scale=0.6,
                            noise_scale_w=0.7, length_scale=1.3, **kwargs)


class _Recording:
    """A backend that notes each call's stage and frames (the z_p / z input's last axis), in call order."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def has_stage(self, stage: str) -> bool:
        return self.inner.has_stage(stage)

    def run(self, stage, inputs):
        frames = inputs["z_p"].shape[-1] if stage == "flow" else inputs["z"].shape[-1] if stage == "decoder" else 0
        with self._lock:
            self.calls.append((stage, frames))
        return self.inner.run(stage, inputs)

    def close(self) -> None:
        self.inner.close()


def _pipeline(voice_dir: Path) -> VoicePipeline:
    voice = load_voice(voice_dir)
    return VoicePipeline(voice, _Recording(OnnxRuntimeBackend(voice, intra_op_threads=1)))


def _flowed_segment(pipeline: VoicePipeline, request: SynthesisRequest, policy: WindowPolicy = STREAMING):
    segment = pipeline.segments_for(request, stream_id=1, seed=request.seed, policy=policy)[0]
    pipeline.prefill([segment])
    pipeline.flow([segment])
    return segment


def _whole_flow(pipeline: VoicePipeline, segment) -> tuple[np.ndarray, np.ndarray]:
    """The reference, as the engine did it before: the flow graph on the whole sentence, then one decoder call.
    Returns (z [C, F], audio)."""
    y_mask = np.ones((1, 1, segment.frames), dtype=np.float32)
    speakers = {"g": segment.g[None]} if segment.g is not None else {}
    z = pipeline.backend.run("flow", {"z_p": segment.z_p[None], "y_mask": y_mask, **speakers})["z"][0]
    whole = copy.copy(segment)
    whole.z = z
    return z, pipeline.decode([DecodeJob(whole, plan_windows(segment.frames, pipeline.context, ONE_SHOT)[0])])[0]


def _latent_error(pipeline: VoicePipeline, segment, z: np.ndarray) -> float:
    """The largest difference between each window's decoder input (windowed flow) and the whole flow's z there."""
    jobs = [DecodeJob(segment, window) for window in segment.windows]
    return max(float(np.abs(piece - z[:, job.window.ctx_start : job.window.ctx_end]).max())
               for job, piece in zip(jobs, pipeline.latents(jobs), strict=True))


def _windowed_audio(pipeline: VoicePipeline, segment, batched: bool) -> np.ndarray:
    jobs = [DecodeJob(segment, window) for window in segment.windows]
    pieces = pipeline.decode(jobs) if batched else [pipeline.decode([job])[0] for job in jobs]
    return np.concatenate(pieces)


def test_export_records_the_flow_layout_and_load_checks_it(voices, tmp_path):
    for voice_dir in voices.values():
        manifest = load_voice(voice_dir).manifest
        assert manifest.format_version == "1.3"
        assert manifest.flow is not None and manifest.flow_context_frames == manifest.flow.context_frames()
    assert load_voice(voices["vits-multi"]).manifest.flow_context_frames == 32  # 4 couplings x 4 layers x 2
    voice_dir = shutil.copytree(voices["vits-single"], tmp_path / "voice")
    raw = json.loads((voice_dir / "voice.json").read_text())
    for edit, message in (({"flow_context_frames": 31}, "flow_context_frames is 31 but the flow described"),
                          ({"flow": None}, "flow_context_frames is set but flow is not"),
                          ({"flow_context_frames": None}, "flow is set but flow_context_frames is not")):
        (voice_dir / "voice.json").write_text(json.dumps({**raw, **edit}))
        with pytest.raises(VoiceError, match=message):
            load_voice(voice_dir)
    # Neither: a sentence-wide flow (older bundles, transformer flows) is still a valid voice.
    (voice_dir / "voice.json").write_text(json.dumps({**raw, "flow": None, "flow_context_frames": None}))
    assert VoicePipeline(load_voice(voice_dir), backend=None).flow_context is None  # type: ignore[arg-type]


def test_transformer_flow_voices_keep_the_sentence_wide_flow(fixture_voice):
    manifest = load_voice(fixture_voice).manifest  # the upstream fixture: use_transformer_flow true
    assert manifest.flow is None and manifest.flow_context_frames is None
    pipeline = _pipeline(fixture_voice)
    request = SynthesisRequest(phonemes=PhonemeIds(phone_ids=[0, 5, 0, 9, 0] * 4, tone_ids=[0] * 20,
                                                   language_ids=[0] * 20), seed=1)
    segment = _flowed_segment(pipeline, request)
    assert segment.z is not None and segment.z.shape[-1] == segment.frames
    assert [c for c in pipeline.backend.calls if c[0] == "flow"] == [("flow", segment.frames)]


# ----- exactness ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vits-multi", "vits-single", "bv2-residual"])
def test_windowed_flow_equals_the_whole_sentence_flow(voices, name):
    pipeline = _pipeline(voices[name])
    speaker = {"speaker": "speaker_1"} if name == "vits-multi" else {}
    segment = _flowed_segment(pipeline, _request(name, 71, seed=4, **speaker))
    assert segment.z is None and segment.z_p is not None and segment.frames > 120 and len(segment.windows) > 3
    z, reference = _whole_flow(pipeline, segment)
    assert float(np.abs(reference).max()) > 1e-3
    assert _latent_error(pipeline, segment, z) <= TOLERANCE
    for batched in (False, True):
        streamed = _windowed_audio(pipeline, segment, batched)
        assert streamed.shape == reference.shape
        assert float(np.abs(streamed - reference).max()) <= TOLERANCE


@pytest.mark.parametrize("name", ["vits-multi", "bv2-residual"])
def test_one_frame_less_flow_context_is_not_exact(voices, name):
    """Negative control: with the flow's context one frame short, the decoder's input frames (what the flow context
    is for) no longer equal the whole flow's. (In the audio the decoder damps the one wrong outermost context frame
    to ~1e-8 on these tiny voices, as its own context is rounded up to whole frames.)"""
    pipeline = _pipeline(voices[name])
    request = _request(name, 71, seed=4)
    z, _ = _whole_flow(pipeline, _flowed_segment(pipeline, request))
    pipeline.flow_context -= 1
    short = _flowed_segment(pipeline, request)
    assert short.windows[0].flow_end == short.windows[0].ctx_end + pipeline.flow_context
    difference = _latent_error(pipeline, short, z)
    assert difference > 100 * TOLERANCE, difference


def test_first_window_flows_a_bounded_number_of_frames(voices):
    """Structural time to first audio: the first window's flow reads its frames plus both contexts, not the
    sentence; later flow calls serve several windows, at most flow_frames of them plus both contexts; a one-shot
    request flows the whole sentence once."""
    pipeline = _pipeline(voices["vits-single"])
    segment = _flowed_segment(pipeline, _request("vits-single", 121, seed=8))
    assert segment.frames > 200
    calls = pipeline.backend.calls
    assert not [c for c in calls if c[0] == "flow"]  # the flow step ran no flow graph
    pipeline.decode([DecodeJob(segment, segment.windows[0])])
    bound = STREAMING.first_frames + pipeline.context + pipeline.flow_context
    assert calls[-2:] == [("flow", bound), ("decoder", STREAMING.first_frames + pipeline.context)]
    calls.clear()
    _windowed_audio(pipeline, segment, batched=False)
    widest = STREAMING.flow_frames + 2 * (pipeline.context + pipeline.flow_context)
    flows = [frames for stage, frames in calls if stage == "flow"]
    assert max(flows) <= widest < segment.frames
    assert len(flows) == len({w.flow_span for w in segment.windows}) < len(segment.windows)  # each flow window once
    calls.clear()
    whole = _flowed_segment(pipeline, _request("vits-single", 121, seed=8), policy=ONE_SHOT)
    pipeline.decode([DecodeJob(whole, whole.windows[0])])
    assert [c for c in calls if c[0] == "flow"] == [("flow", whole.frames)]


class _SlowFlow(_Recording):
    """A recording backend whose flow calls take a while, so two lanes asking for one flow window overlap; it
    notes each flow call's (start, end)."""

    def __init__(self, inner):
        super().__init__(inner)
        self.flow_times: list[tuple[float, float]] = []

    def run(self, stage, inputs):
        start = time.perf_counter()
        if stage == "flow":
            time.sleep(0.2)
        out = super().run(stage, inputs)
        if stage == "flow":
            with self._lock:
                self.flow_times.append((start, time.perf_counter()))
        return out


def _two_lanes(pipeline: VoicePipeline, segment, windows) -> dict[int, np.ndarray]:
    """Decode `windows` of `segment` on two threads started together; audio by window index."""
    barrier = threading.Barrier(2)
    audio: dict[int, np.ndarray] = {}

    def lane(window) -> None:
        barrier.wait()
        audio[window.index] = pipeline.decode([DecodeJob(segment, window)])[0]

    lanes = [threading.Thread(target=lane, args=(w,)) for w in windows]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join(timeout=60)
    return audio


@pytest.mark.parametrize("locked", [True, False])
def test_two_lanes_run_a_shared_flow_window_once(voices, monkeypatch, locked):
    """Two lanes decoding two windows of one flow window at the same time: one flow call, both exact. Negative
    control: without the segment's lock both lanes run it."""
    pipeline = _pipeline(voices["vits-single"])
    pipeline.backend = _SlowFlow(pipeline.backend.inner)
    segment = _flowed_segment(pipeline, _request("vits-single", 121, seed=8))
    first, second = segment.windows[1], segment.windows[2]
    assert first.flow_span == second.flow_span
    if not locked:
        segment.flows.locks = {span: contextlib.nullcontext() for span in segment.flows.locks}
    audio = _two_lanes(pipeline, segment, (first, second))
    flows = [c for c in pipeline.backend.calls if c[0] == "flow"]
    assert len(flows) == (1 if locked else 2)
    _, reference = _whole_flow(pipeline, segment)
    hop = pipeline.hop
    for w in (first, second):
        assert float(np.abs(audio[w.index] - reference[w.start * hop : w.end * hop]).max()) <= TOLERANCE


@pytest.mark.parametrize("per_window", [True, False])
def test_two_lanes_run_different_flow_windows_of_a_sentence_at_once(voices, per_window):
    """The first window's flow window and the next one's run side by side on two lanes. Negative control: one
    lock for the whole sentence makes them take turns."""
    pipeline = _pipeline(voices["vits-single"])
    pipeline.backend = _SlowFlow(pipeline.backend.inner)
    segment = _flowed_segment(pipeline, _request("vits-single", 121, seed=8))
    first, second = segment.windows[0], segment.windows[1]
    assert first.flow_span != second.flow_span
    if not per_window:
        one = threading.Lock()
        segment.flows.locks = dict.fromkeys(segment.flows.locks, one)
    _two_lanes(pipeline, segment, (first, second))
    earlier, later = sorted(pipeline.backend.flow_times)
    assert (later[0] < earlier[1]) == per_window  # the later call started before the earlier one ended


class _CountingLock:
    """A lock that counts the acquisitions that had to wait."""

    def __init__(self, waits: list):
        self._lock, self._waits = threading.Lock(), waits

    def __enter__(self):
        if not self._lock.acquire(blocking=False):
            self._waits.append(1)
            self._lock.acquire()

    def __exit__(self, *exc) -> None:
        self._lock.release()


@pytest.mark.parametrize("followers_wait", [True, False])
def test_engine_lanes_never_wait_for_each_other_s_flow_window(voices, monkeypatch, followers_wait):
    """Two lanes, one long stream, slow flow calls: a window sharing a flow window is queued only after the window
    that runs it, so no lane blocks on a flow window's lock. Negative control: every window queued at once."""
    waits: list = []
    original = pipeline_module.FlowOutputs.__init__

    def counting(self, windows):
        original(self, windows)
        self.locks = {span: _CountingLock(waits) for span in self.locks}

    monkeypatch.setattr(pipeline_module.FlowOutputs, "__init__", counting)
    if not followers_wait:
        monkeypatch.setattr(pipeline_module, "_leaders", lambda segment: segment.windows)
        monkeypatch.setattr(pipeline_module, "_followers", lambda jobs: [])
    voice = load_voice(voices["vits-single"])
    flows = itertools.count()

    class LaterFlowsSlow(_Recording):  # the first window's flow is quick, the next flow windows take a while
        def run(self, stage, inputs):
            if stage == "flow" and next(flows) > 0:
                time.sleep(0.2)
            return super().run(stage, inputs)

    def backend(v):
        return LaterFlowsSlow(OnnxRuntimeBackend(v, intra_op_threads=1))

    policy = WindowPolicy(first_frames=8, frames=16, one_shot_frames=0, max_frames=16, flow_frames=48)
    options = EngineOptions(lanes=2, threads=1, max_batch=1, windows=policy)
    with Engine([VoicePipeline(voice, backend(voice))], options, lane_backend=backend) as engine:
        audio = np.concatenate([c.audio for c in engine.stream(_request("vits-single", 121, seed=8))])
    assert len(audio) > 0
    assert bool(waits) != followers_wait


def test_triton_repo_refuses_a_flow_window_of_no_frames_in_one_line(voices, tmp_path, capsys):
    from vitsrt.cli import main

    out = tmp_path / "repo"
    assert main(["triton-repo", str(voices["vits-single"]), "-o", str(out), "--flow-window-frames", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "flow_window_frames" in err
    assert not out.exists()


# ----- the engine ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(voices):
    options = EngineOptions(max_batch=8, max_wait_ms=2.0, threads=1, max_active_streams=16, windows=STREAMING)
    with Engine.open(list(voices.values()), options=options) as engine:
        yield engine


@pytest.mark.parametrize("name", ["vits-multi", "bv2-residual"])
def test_engine_streams_a_windowed_flow_voice_exactly(engine, name):
    request = _request(name, 91, seed=5)
    chunks = list(engine.stream(request))
    streamed = np.concatenate([c.audio for c in chunks])
    one_shot = engine.synthesize(request).audio
    assert len(chunks) > 3 and chunks[-1].is_last
    assert streamed.shape == one_shot.shape and float(np.abs(one_shot).max()) > 1e-3
    assert float(np.abs(streamed - one_shot).max()) <= TOLERANCE
    assert {"encoder", "duration", "regulator", "flow", "decode"} <= set(chunks[-1].timings)


def test_engine_batches_windows_of_concurrent_streams_invariantly(engine):
    """Concurrent streams of different lengths and voices (their windows share flow and decoder calls) each get
    the audio they get alone."""
    requests = [_request(name, tokens, seed=tokens) for name, tokens in
                (("vits-multi", 23), ("vits-multi", 67), ("vits-multi", 91), ("bv2-residual", 45),
                 ("bv2-residual", 80), ("vits-single", 5))]
    alone = [np.concatenate([c.audio for c in engine.stream(r)]) for r in requests]
    results: dict[int, np.ndarray] = {}

    def run(i: int) -> None:
        results[i] = np.concatenate([c.audio for c in engine.stream(requests[i])])

    before = engine.stats()["batch_sizes"]["decode"]
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    after = engine.stats()["batch_sizes"]["decode"]
    assert any(after.get(size, 0) > before.get(size, 0) for size in after if size > 1)  # windows did batch
    for i, audio in enumerate(alone):
        assert results[i].shape == audio.shape
        assert float(np.abs(results[i] - audio).max()) <= TOLERANCE


def test_residual_flow_with_deeper_couplings_loads_and_keeps_its_depth(tmp_path) -> None:
    """Bert-VITS2's n_flow_layer is each WaveNet coupling's depth when use_transformer_flow is false (upstream
    passes it as n_layers; the coupling count stays 4): a checkpoint with n_flow_layer 6 loads and its
    flow keeps that depth."""
    import copy

    from conftest import SMALL_22K_CONFIG
    from vitsrt.benchmarks.voices import build_random_checkpoint
    from vitsrt.train.loading import load_generator

    raw = copy.deepcopy(SMALL_22K_CONFIG)
    raw["model"]["n_flow_layer"] = 6
    checkpoint, config = build_random_checkpoint(tmp_path, raw, seed=5)
    flow = load_generator(checkpoint, config).model.flow
    assert len(flow.flows) == 8  # 4 couplings and their flips
    assert flow.layout()["n_layers"] == 6
