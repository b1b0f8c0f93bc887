"""Speaker blending (issue #18 part 1): a request's weights over a voice's speakers, static (`speakers`) or changing
over the utterance (`speaker_curve`, per-frame speaker vectors into the flow and decoder).

What is checked, on tiny random multi-speaker VITS and Bert-VITS2 voices exported here (and, where present, the
shipped default Bert-VITS2 voice and the upstream Bert-VITS2 fixture): the flow/decoder graphs take per-frame speaker
vectors and equal PyTorch with them; one-hot weights and a blend of a speaker with itself give that speaker's audio
exactly; a constant curve gives the static blend exactly; a curve streams exactly as it synthesises one-shot; a batch
mixing curves, blends and plain speakers gives each item its own audio; a Bert-VITS2 blend equals PyTorch with the
blended vector in every stage, the text encoder included (its encoder takes weights over the speaker table), while a
bundle whose encoder takes `sid` still serves and blends approximately; bad weights, unknown names, single-speaker
voices and curves on older bundles are refused with clear errors; gRPC, HTTP and the CLI carry blends. Each exactness
check has a negative control that shows it can fail.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from test_vits_model import randomized, tiny_vits  # noqa: E402

from vitsrt.errors import InputError, NotFoundError  # noqa: E402
from vitsrt.export.bundle import export_voice  # noqa: E402
from vitsrt.serve.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from vitsrt.serve.engine import pipeline as pipeline_module  # noqa: E402
from vitsrt.serve.engine.pipeline import DecodeJob, VoicePipeline  # noqa: E402
from vitsrt.serve.engine.types import (  # noqa: E402
    BlendPoint,
    PhonemeIds,
    SpeakerMix,
    SpeakerWeight,
    SynthesisRequest,
    parse_speaker_curve,
    parse_speaker_weights,
)
from vitsrt.serve.engine.windows import ONE_SHOT, WindowPolicy  # noqa: E402
from vitsrt.train.checkpoint import save_checkpoint  # noqa: E402
from vitsrt.train.models.vits import VitsSynthesizer  # noqa: E402
from vitsrt.voice import load_voice, sha256_file  # noqa: E402

STREAMING = WindowPolicy(first_frames=16, frames=32, one_shot_frames=0, max_frames=64)
TOKENS = 121
CURVE = "0=speaker_0:1;0.6=speaker_1:0.5,speaker_2:0.5;1=speaker_2:1"  # three speakers over the utterance


# ----- voices -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def voices(tmp_path_factory) -> dict[str, object]:
    """A 3-speaker and a 1-speaker VITS voice exported now, the 3-speaker model, and a copy of the 3-speaker voice
    made as older bundles were (its flow and decoder take g [B, gin, 1] only)."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("blend")
    built: dict[str, object] = {}
    for name, speakers in (("multi", 3), ("single", 1)):
        config = tiny_vits(speakers, use_sdp=True)
        model = randomized(VitsSynthesizer(config), seed=11 + speakers)
        (base / name).mkdir()
        save_checkpoint(base / name / "G_100.pth", model, iteration=100)
        (base / name / "config.json").write_text(config.to_json(), encoding="utf-8")
        built[name] = export_voice(base / name / "G_100.pth", base / name / "config.json", base / name / "voice",
                                   name=f"blend-{name}", verify=False)
        built[f"{name}_model"] = model
    built["old"] = _as_older_bundle(built["multi"], base / "old")
    return built


def _as_older_bundle(source: Path, target: Path) -> Path:
    """`source` with the flow's and decoder's g input fixed to one frame, graphs and voice.json alike."""
    shutil.copytree(source, target)
    manifest = json.loads((target / "voice.json").read_text(encoding="utf-8"))
    for stage in ("flow", "decoder"):
        path = target / f"{stage}.onnx"
        graph = onnx.load(str(path))
        dim = next(i for i in graph.graph.input if i.name == "g").type.tensor_type.shape.dim[2]
        dim.Clear()
        dim.dim_value = 1
        onnx.save(graph, str(path))
        spec = manifest["graphs"][stage]
        next(i for i in spec["inputs"] if i["name"] == "g")["shape"][2] = 1
        spec["sha256"] = sha256_file(path)
    (target / "voice.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return target


def _pipeline(voice_dir: Path) -> VoicePipeline:
    voice = load_voice(voice_dir)
    return VoicePipeline(voice, OnnxRuntimeBackend(voice, intra_op_threads=1))


@pytest.fixture(scope="module")
def multi(voices) -> VoicePipeline:
    return _pipeline(voices["multi"])


def _request(seed: int = 5, tokens: int = TOKENS, **fields) -> SynthesisRequest:
    rng = np.random.default_rng(seed)
    phones = [0 if i % 2 == 0 else int(rng.integers(1, 40)) for i in range(tokens)]
    return SynthesisRequest(phonemes=PhonemeIds(phone_ids=phones), seed=seed, noise_scale=0.6, noise_scale_w=0.7,
                            length_scale=1.2, **fields)


def _blend(text: str, **fields) -> SynthesisRequest:
    return _request(speakers=parse_speaker_weights(text), **fields)


def _curve(text: str, **fields) -> SynthesisRequest:
    return _request(speaker_curve=parse_speaker_curve(text), **fields)


def _speak(pipeline: VoicePipeline, request: SynthesisRequest, policy: WindowPolicy = ONE_SHOT,
           batched: bool = True) -> np.ndarray:
    """The request's audio through the pipeline's steps, one segment at a time; windows decoded as one batch or
    one call each."""
    pieces = []
    for segment in pipeline.segments_for(request, stream_id=1, seed=request.seed, policy=policy):
        pipeline.prefill([segment])
        pipeline.flow([segment])
        jobs = [DecodeJob(segment, window) for window in segment.windows]
        pieces += pipeline.decode(jobs) if batched else [pipeline.decode([job])[0] for job in jobs]
    return np.concatenate(pieces)


def _differs(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape != b.shape or float(np.abs(a - b).max()) > 1e-3


# ----- the graphs: per-frame speaker vectors ------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["flow", "decoder"])
def test_flow_and_decoder_graphs_take_a_speaker_vector_per_frame(voices, stage):
    manifest = load_voice(voices["multi"]).manifest
    assert manifest.graphs.get(stage).input("g").shape == ["B", 8, "G"] and manifest.speaker_curves
    assert not load_voice(voices["old"]).manifest.speaker_curves
    model = voices["multi_model"]
    gen = torch.Generator().manual_seed(1)
    frames = 37
    x = torch.randn(2, 8, frames, generator=gen)
    y_mask = torch.ones(2, 1, frames)
    y_mask[1, :, 25:] = 0
    g = torch.randn(2, 8, frames, generator=gen)
    runner = _pipeline(voices["multi"]).backend
    name = "z_p" if stage == "flow" else "z"
    method = model.flow_reverse if stage == "flow" else model.decode
    for given in (g, g[:, :, :1]):  # per frame, and one vector broadcast over the frames
        ours = runner.run(stage, {name: x.numpy(), "y_mask": y_mask.numpy(), "g": given.numpy()})
        with torch.no_grad():
            reference = method(x, y_mask, given).numpy()
        assert float(np.abs(next(iter(ours.values())) - reference).max()) <= 1e-5
    # Negative control: the per-frame vectors reach the output (the graph does not read frame 0 only).
    first = runner.run(stage, {name: x.numpy(), "y_mask": y_mask.numpy(), "g": g[:, :, :1].numpy()})
    every = runner.run(stage, {name: x.numpy(), "y_mask": y_mask.numpy(), "g": g.numpy()})
    assert float(np.abs(next(iter(first.values())) - next(iter(every.values()))).max()) > 1e-3


def test_tensorrt_profiles_cover_per_frame_speaker_vectors(voices):
    from vitsrt.export.tensorrt_build import ProfileLimits, stage_profiles

    manifest = load_voice(voices["multi"]).manifest
    for stage in ("flow", "decoder"):
        for profile in stage_profiles(manifest, stage, ProfileLimits(max_frames=900)):
            g, z = profile.shapes["g"], profile.shapes["z_p" if stage == "flow" else "z"]
            assert (g.min[2], g.opt[2], g.max[2]) == (1, 1, z.max[2])


# ----- requests: parsing and validation -----------------------------------------------------------------------


def test_blend_strings_parse():
    assert parse_speaker_weights("slt:0.7, rms:0.3") == [SpeakerWeight(speaker="slt", weight=0.7),
                                                         SpeakerWeight(speaker="rms", weight=0.3)]
    assert parse_speaker_weights("a:b:2") == [SpeakerWeight(speaker="a:b", weight=2.0)]  # the last ':' splits
    points = parse_speaker_curve("0=slt:1;1=rms:1,slt:1")
    assert [p.position for p in points] == [0.0, 1.0] and [len(p.speakers) for p in points] == [1, 2]


@pytest.mark.parametrize(("make", "field", "words"), [
    (lambda: parse_speaker_weights("slt"), "speakers", "NAME:WEIGHT"),
    (lambda: parse_speaker_weights(":1"), "speakers", "NAME:WEIGHT"),
    (lambda: parse_speaker_weights("slt:loud"), "speakers", "not a number"),
    (lambda: parse_speaker_curve("0.5"), "speaker_curve", "POSITION="),
    (lambda: parse_speaker_curve("x=slt:1"), "speaker_curve", "not a number"),
    (lambda: parse_speaker_curve("0=slt"), "speaker_curve", "NAME:WEIGHT"),
    (lambda: _blend("speaker_0:-0.5,speaker_1:1"), "speakers", "weight -0.5 "),
    (lambda: _blend("speaker_0:nan"), "speakers", "weight nan "),
    (lambda: _blend("speaker_0:inf"), "speakers", "weight inf "),
    (lambda: _blend("speaker_0:1e300,speaker_0:1e300"), "speakers", r"weight 1e\+300 \(weights are 0..1e6\)"),
    (lambda: _blend("speaker_0:0,speaker_1:0"), "speakers", "every weight is zero"),
    (lambda: _curve("0=speaker_0:1;1=speaker_1:0"), "speaker_curve", "every weight is zero"),
    (lambda: _curve("0=speaker_0:1;1.5=speaker_1:1"), "speaker_curve", "outside 0..1"),
    (lambda: _curve("0.5=speaker_0:1;0.5=speaker_1:1"), "speaker_curve", "must increase"),
    (lambda: _curve("0.6=speaker_0:1;0.2=speaker_1:1"), "speaker_curve", "must increase"),
    (lambda: _blend("speaker_0:1", speaker="speaker_1"), "speakers", "at most one"),
    (lambda: _request(speakers=[SpeakerWeight(speaker="speaker_0", weight=1)],
                      speaker_curve=[BlendPoint(position=0, speakers=[SpeakerWeight(speaker="speaker_1", weight=1)])]),
     "speakers", "at most one"),
])
def test_bad_weights_are_refused_naming_the_field(make, field, words):
    with pytest.raises(InputError, match=words) as caught:
        make()
    assert caught.value.field == field


def test_speaker_mix_weights_interpolate_and_average():
    speakers = {"a": 0, "b": 1, "c": 2}
    static = SpeakerMix.resolve([BlendPoint(position=0, speakers=parse_speaker_weights("b:1,a:1,b:2,c:0"))],
                                speakers, "v")
    assert static.sids.tolist() == [0, 1] and static.weights.tolist() == [[0.25, 0.75]]  # summed, normalised, c out
    assert static.at(np.array([0.0, 0.3, 1.0])).tolist() == [[0.25, 0.75]] * 3
    curve = SpeakerMix.resolve(parse_speaker_curve("0.2=a:1;0.6=b:3"), speakers, "v")
    assert np.allclose(curve.at(np.array([0.0, 0.2, 0.3, 0.6, 0.9])),
                       [[1, 0], [1, 0], [0.75, 0.25], [0, 1], [0, 1]], atol=1e-15)
    # The mean of the piecewise-linear curve over a span (areas: 0.2 of a, a ramp of 0.4, 0.4 of b).
    assert np.allclose(curve.mean(0.0, 1.0), [0.4, 0.6], atol=1e-15)
    assert np.allclose(curve.mean(0.3, 0.5), [0.5, 0.5], atol=1e-15)
    assert np.allclose(curve.frames(0.0, 1.0, 5)[:, 0], [1, 0.75, 0.25, 0, 0], atol=1e-15)  # centres 0.1, 0.3, ..., 0.9
    flat = SpeakerMix.resolve(parse_speaker_curve("0=a:0.3,b:0.7;0.5=a:3,b:7;1=a:0.3,b:0.7"), speakers, "v")
    assert np.array_equal(flat.mean(0.1, 0.9), flat.weights[0])  # exact where the curve is flat
    with pytest.raises(NotFoundError, match="unknown speaker 'd' in the blend for voice 'v'; available: a, b, c"):
        SpeakerMix.resolve(parse_speaker_curve("0=a:1;1=d:1"), speakers, "v")


# ----- the engine: what a blend sounds like -------------------------------------------------------------------


@pytest.mark.parametrize("policy", [ONE_SHOT, STREAMING], ids=["one-shot", "streaming"])
def test_one_hot_weights_are_that_speaker_exactly(multi, policy):
    plain = {name: _speak(multi, _request(speaker=name), policy) for name in ("speaker_1", "speaker_2")}
    assert np.array_equal(_speak(multi, _blend("speaker_1:1"), policy), plain["speaker_1"])
    assert np.array_equal(_speak(multi, _blend("speaker_0:0,speaker_1:2.5,speaker_2:0"), policy), plain["speaker_1"])
    assert np.array_equal(_speak(multi, _curve("0.3=speaker_2:1;0.8=speaker_2:4"), policy), plain["speaker_2"])
    # Negative control: the speakers differ, so an equality above means the blend picked the right one.
    assert _differs(plain["speaker_1"], plain["speaker_2"])


def test_a_blend_of_a_speaker_with_itself_is_that_speaker(multi):
    plain = _speak(multi, _request(speaker="speaker_2"))
    assert np.array_equal(_speak(multi, _blend("speaker_2:0.3,speaker_2:0.7")), plain)
    assert np.array_equal(_speak(multi, _blend("speaker_2:0.1,speaker_2:0.2,speaker_2:0.3")), plain)


def test_a_blend_speaks_with_the_weighted_sum_of_the_vectors(multi):
    request = _blend("speaker_0:1,speaker_2:3")
    segment = multi.segments_for(request, stream_id=1, seed=request.seed)[0]
    multi.prefill([segment])
    vectors = {}
    for name in ("speaker_0", "speaker_2"):
        alone = multi.segments_for(_request(speaker=name), stream_id=1, seed=5)[0]
        multi.prefill([alone])
        vectors[name] = alone.g.astype(np.float64)
    expected = 0.25 * vectors["speaker_0"] + 0.75 * vectors["speaker_2"]
    assert segment.g.shape == (8, 1) and float(np.abs(segment.g - expected).max()) <= 1e-7
    audio = _speak(multi, request)
    assert _differs(audio, _speak(multi, _request(speaker="speaker_0")))
    assert _differs(audio, _speak(multi, _request(speaker="speaker_2")))


@pytest.mark.parametrize("policy", [ONE_SHOT, STREAMING], ids=["one-shot", "streaming"])
def test_a_constant_curve_is_the_static_blend(multi, policy):
    static = _speak(multi, _blend("speaker_0:0.7,speaker_2:0.3"), policy)
    flat = "0=speaker_0:0.7,speaker_2:0.3;0.4=speaker_0:7,speaker_2:3;1=speaker_2:0.3,speaker_0:0.7"
    assert np.array_equal(_speak(multi, _curve(flat), policy), static)
    # Negative control: a curve that is not flat is other audio.
    assert _differs(_speak(multi, _curve("0=speaker_0:0.7,speaker_2:0.3;1=speaker_0:0.3,speaker_2:0.7"), policy),
                    static)


def test_a_speaker_curve_streams_exactly(multi):
    request = _curve(CURVE)
    segment = multi.segments_for(request, stream_id=1, seed=request.seed, policy=STREAMING)[0]
    multi.prefill([segment])
    multi.flow([segment])
    assert segment.g.shape == (8, segment.frames)  # a vector per frame
    one_shot = _speak(multi, request)
    assert len(segment.windows) > 3 and one_shot.size > 0
    for batched in (True, False):
        streamed = _speak(multi, request, STREAMING, batched=batched)
        assert streamed.shape == one_shot.shape and float(np.abs(streamed - one_shot).max()) <= 1e-5
    # The curve is heard: not the same as its mean as a static blend, nor any one speaker.
    assert _differs(one_shot, _speak(multi, _blend("speaker_0:0.3,speaker_1:0.2,speaker_2:0.5")))


def test_negative_control_windows_fed_uncropped_speaker_vectors_differ(multi, monkeypatch):
    """If each window read the per-frame vectors from frame 0 instead of its own frames, streaming would not match."""
    real = pipeline_module._speaker_vectors

    def misaligned(segments, frames, width):
        return real(segments, [(0, end - start) for start, end in frames], width)

    one_shot = _speak(multi, _curve(CURVE))
    monkeypatch.setattr(pipeline_module, "_speaker_vectors", misaligned)
    streamed = _speak(multi, _curve(CURVE), STREAMING)
    assert streamed.shape == one_shot.shape and float(np.abs(streamed - one_shot).max()) > 1e-4  # >> the 1e-5 bar


MIXED = [_curve(CURVE, seed=1), _blend("speaker_0:1,speaker_1:1", seed=2), _request(speaker="speaker_2", seed=3),
         _curve("0=speaker_1:1;1=speaker_0:1", seed=4, tokens=57)]


def _together(pipeline: VoicePipeline, requests: list[SynthesisRequest]) -> list[np.ndarray]:
    """Each request's audio with all of them in every step's batch (one prefill, one flow, one decode call)."""
    segments = [pipeline.segments_for(r, stream_id=i, seed=r.seed, policy=STREAMING)[0] for i, r in enumerate(requests)]
    pipeline.prefill(segments)
    pipeline.flow(segments)
    jobs = [DecodeJob(segment, window) for segment in segments for window in segment.windows]
    audio = dict(zip(map(id, jobs), pipeline.decode(jobs), strict=True))
    return [np.concatenate([audio[id(job)] for job in jobs if job.segment is segment]) for segment in segments]


def _worst(got: list[np.ndarray], expected: list[np.ndarray]) -> float:
    assert [a.shape for a in got] == [b.shape for b in expected]
    return max(float(np.abs(a - b).max()) for a, b in zip(got, expected, strict=True))


def test_a_batch_mixing_curves_blends_and_speakers_gives_each_its_own_audio(multi, monkeypatch):
    alone = [_speak(multi, request, STREAMING) for request in MIXED]
    assert _worst(_together(multi, MIXED), alone) <= 1e-5
    # Negative control: rows handed each other's speaker vectors (first and last swapped) would be caught.
    real = pipeline_module._speaker_vectors

    def swapped(segments, frames, width):
        g = real(segments, frames, width)["g"].copy()
        g[[0, -1]] = g[[-1, 0]]
        return {"g": g}

    monkeypatch.setattr(pipeline_module, "_speaker_vectors", swapped)
    assert _worst(_together(multi, MIXED), alone) > 1e-4


def test_engine_streams_a_curve_as_it_synthesises_it(voices):
    from vitsrt.serve.engine.engine import Engine, EngineOptions

    options = EngineOptions(max_batch=8, max_wait_ms=2.0, threads=1, max_active_streams=8)
    with Engine.open([voices["multi"]], options=options) as engine:
        request = _curve(CURVE, tokens=161)
        chunks = list(engine.stream(request))
        one_shot = engine.synthesize(request).audio
    streamed = np.concatenate([chunk.audio for chunk in chunks])
    assert len(chunks) > 2 and streamed.shape == one_shot.shape
    assert float(np.abs(streamed - one_shot).max()) <= 1e-5


# ----- refusals -----------------------------------------------------------------------------------------------


def test_a_single_speaker_voice_refuses_blends(voices):
    single = _pipeline(voices["single"])
    for request, field in ((_blend("speaker_0:1"), "speakers"), (_curve("0=speaker_0:1"), "speaker_curve")):
        with pytest.raises(InputError, match="has one speaker: it cannot blend speakers") as caught:
            single.segments_for(request, stream_id=1, seed=1)
        assert caught.value.field == field


def test_unknown_names_are_not_found(multi):
    with pytest.raises(NotFoundError, match="unknown speaker 'nobody' in the blend for voice 'blend-multi'; "
                                            "available: speaker_0, speaker_1, speaker_2"):
        multi.segments_for(_blend("speaker_0:1,nobody:1"), stream_id=1, seed=1)


def test_an_older_bundle_takes_static_blends_and_refuses_curves(voices, multi):
    old = _pipeline(voices["old"])
    with pytest.raises(InputError, match="exported before speaker curves") as caught:
        old.segments_for(_curve(CURVE), stream_id=1, seed=1)
    assert caught.value.field == "speaker_curve"
    request = _blend("speaker_0:0.4,speaker_1:0.6")
    assert float(np.abs(_speak(old, request, STREAMING) - _speak(multi, request, STREAMING)).max()) <= 1e-6
    # Why the refusal: its graphs cannot take a vector per frame.
    with pytest.raises(Exception, match=r"(?i)dimension"):
        old.backend.run("decoder", {"z": np.zeros((1, 8, 5), np.float32), "y_mask": np.ones((1, 1, 5), np.float32),
                                    "g": np.zeros((1, 8, 5), np.float32)})


# ----- Bert-VITS2: the shipped default voice (an older bundle) and the upstream fixture --------------------------


@pytest.fixture(scope="module")
def default_voice() -> VoicePipeline:
    pytest.importorskip("phonemizer", reason="the default voice's IPA front end needs the 'ipa' extra")
    from vitsrt.voices import default_voice_dir

    return _pipeline(default_voice_dir())


def test_default_voice_blends_its_speakers(default_voice):
    text = "The little boat is near the old bridge."
    plain = {name: _speak(default_voice, SynthesisRequest(text=text, speaker=name, seed=3)) for name in ("slt", "rms")}
    one_hot = SynthesisRequest(text=text, speakers=parse_speaker_weights("slt:1,rms:0"), seed=3)
    assert np.array_equal(_speak(default_voice, one_hot), plain["slt"])
    blend = SynthesisRequest(text=text, speakers=parse_speaker_weights("slt:0.7,rms:0.3"), seed=3)
    mixed = _speak(default_voice, blend)
    assert _differs(mixed, plain["slt"]) and _differs(mixed, plain["rms"])
    streamed = _speak(default_voice, blend, STREAMING)
    assert streamed.shape == mixed.shape and float(np.abs(streamed - mixed).max()) <= 1e-5
    with pytest.raises(InputError, match="exported before speaker curves"):
        default_voice.segments_for(SynthesisRequest(text=text, speaker_curve=parse_speaker_curve("0=slt:1;1=rms:1")),
                                   stream_id=1, seed=1)


def test_bert_vits2_text_encoder_outputs_are_blended_like_the_vectors(default_voice):
    """The shipped default voice predates speaker weights (its encoder takes sid and conditions the text encoder on
    that speaker inside the graph): a blended item gets the weighted sum of the encoder's outputs for each speaker,
    and g for the duration stage is the weighted sum of the vectors (approximate; re-exported voices are exact)."""
    text = "Near the old bridge."
    alone = {}
    for name in ("slt", "kal"):
        segment = default_voice.segments_for(SynthesisRequest(text=text, speaker=name), stream_id=1, seed=1)[0]
        default_voice.prefill([segment])
        alone[name] = segment
    mixed = default_voice.segments_for(SynthesisRequest(text=text, speakers=parse_speaker_weights("slt:1,kal:3")),
                                       stream_id=1, seed=1)[0]
    default_voice.prefill([mixed])
    for name in ("m_p", "logs_p", "g"):
        expected = 0.25 * getattr(alone["slt"], name).astype(np.float64) + 0.75 * getattr(alone["kal"], name)
        assert float(np.abs(getattr(mixed, name) - expected).max()) <= 1e-5
    assert float(np.abs(alone["slt"].m_p - alone["kal"].m_p).max()) > 1e-3  # the speaker matters there


def test_sentences_take_parts_of_the_curve_by_their_ids(default_voice):
    request = SynthesisRequest(text="The boat is near. It will leave the old bridge at noon today.",
                               speakers=parse_speaker_weights("slt:1,rms:1"))
    segments = default_voice.segments_for(request, stream_id=1, seed=1)
    assert len(segments) == 2 and segments[0].span[0] == 0.0 and segments[-1].span[1] == 1.0
    assert segments[0].span[1] == segments[1].span[0]
    total = sum(s.tokens for s in segments)
    assert segments[0].span[1] == pytest.approx(segments[0].tokens / total)


def test_bert_vits2_fixture_voice_streams_a_curve_exactly(fixture_voice):
    """A freshly exported Bert-VITS2 voice (transformer flow: sentence-wide) takes a speaker curve."""
    pipeline = _pipeline(fixture_voice)
    assert pipeline.manifest.speaker_curves
    rng = np.random.default_rng(2)
    phones = [0 if i % 2 == 0 else int(rng.integers(1, 112)) for i in range(121)]
    ids = PhonemeIds(phone_ids=phones, tone_ids=[0] * 121, language_ids=[0] * 121)
    request = SynthesisRequest(phonemes=ids, seed=2, speaker_curve=parse_speaker_curve("0=alice:1;1=bob:1"))
    one_shot = _speak(pipeline, request)
    streamed = _speak(pipeline, request, STREAMING)
    assert streamed.shape == one_shot.shape and float(np.abs(streamed - one_shot).max()) <= 1e-5
    plain = _speak(pipeline, SynthesisRequest(phonemes=ids, seed=2, speaker="bob"))
    assert np.array_equal(_speak(pipeline, SynthesisRequest(phonemes=ids, seed=2, speakers=parse_speaker_weights(
        "bob:1"))), plain)
    assert _differs(one_shot, plain)


# ----- the doors: gRPC, HTTP, CLI -----------------------------------------------------------------------------


def test_grpc_carries_blends_and_curves(voices):
    grpc = pytest.importorskip("grpc")
    from grpc_support import RunningServer, open_engine
    from vitsrt.audio import float_to_pcm16
    from vitsrt.serve.grpc.client import TtsClient, build_request
    from vitsrt.serve.grpc.server import ServerConfig

    rng = np.random.default_rng(5)
    phones = [0 if i % 2 == 0 else int(rng.integers(1, 40)) for i in range(TOKENS)]
    with open_engine(voices["multi"]) as engine, RunningServer(engine, ServerConfig(port=0)) as server, \
            TtsClient(server.target, timeout=60) as client:
        client.wait_ready()
        message = build_request(phone_ids=phones, seed=5)
        message.speakers.add(speaker="speaker_0", weight=0.25)
        message.speakers.add(speaker="speaker_2", weight=0.75)
        expected = engine.synthesize(SynthesisRequest(phonemes=PhonemeIds(phone_ids=phones), seed=5,
                                                      speakers=parse_speaker_weights("speaker_0:1,speaker_2:3")))
        assert client.call_unary(message).data == float_to_pcm16(expected.audio).tobytes()
        curve = build_request(phone_ids=phones, seed=5)
        for position, name in ((0.0, "speaker_1"), (1.0, "speaker_2")):
            curve.speaker_curve.add(position=position).speakers.add(speaker=name, weight=1.0)
        unary, streamed = (np.frombuffer(client.call_unary(curve).data, "<i2"),
                           np.frombuffer(client.call_streaming(curve).data, "<i2"))
        # Streamed windows equal one-shot within 1e-5, so a PCM sample may round one step apart.
        assert unary.shape == streamed.shape and int(np.abs(unary.astype(np.int32) - streamed).max()) <= 1
        assert unary.tobytes() != float_to_pcm16(expected.audio).tobytes()
        bad = build_request(phone_ids=phones, seed=5)
        bad.speakers.add(speaker="speaker_0", weight=-1.0)
        unknown = build_request(phone_ids=phones, seed=5)
        unknown.speakers.add(speaker="nobody", weight=1.0)
        empty = build_request(phone_ids=phones, seed=5)
        empty.speaker_curve.add(position=0.5)
        both = build_request(phone_ids=phones, seed=5, speaker="speaker_1")
        both.speakers.add(speaker="speaker_0", weight=1.0)
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        for message, code, words in ((bad, invalid, "speakers: speaker 'speaker_0' has weight"),
                                     (unknown, grpc.StatusCode.NOT_FOUND, "unknown speaker 'nobody'"),
                                     (empty, invalid, "speaker_curve: the point at 0.5"),
                                     (both, invalid, "at most one of speaker")):
            with pytest.raises(grpc.RpcError) as caught:
                client.call_unary(message)
            assert caught.value.code() == code and words in caught.value.details()


def test_http_voice_string_blends(default_voice):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from http_support import RunningDoor
    from vitsrt.audio import float_to_pcm16
    from vitsrt.serve.engine.engine import Engine, EngineOptions

    text = "The little boat is near the old bridge."
    with Engine.open([default_voice.voice.root], options=EngineOptions(threads=1, max_batch=8)) as engine:
        door = RunningDoor(engine)
        try:
            def speech(voice: str) -> httpx.Response:
                body = {"model": "tts-1", "input": text, "voice": voice, "response_format": "pcm", "seed": 4}
                return httpx.post(f"{door.url}/v1/audio/speech", json=body, timeout=60)

            reply = speech("slt:0.7,rms:0.3")
            blend = SynthesisRequest(text=text, seed=4, speakers=parse_speaker_weights("slt:0.7,rms:0.3"))
            expected = np.concatenate([chunk.audio for chunk in engine.stream(blend)])  # the door streams too
            assert reply.status_code == 200 and reply.content == float_to_pcm16(expected).tobytes()
            assert reply.headers["X-Voice"] == "vitsrt-default/slt:0.7,rms:0.3"
            one_hot = speech("vitsrt-default/rms:1")
            assert one_hot.status_code == 200 and one_hot.content == speech("rms").content != reply.content
            for voice, words in (("slt:-1,rms:1", "weight -1.0"), ("slt:0,rms:0", "every weight is zero"),
                                 ("slt:0.5,nobody:0.5", "has no speaker 'nobody'"), ("slt:half", "not a number")):
                refused = speech(voice)
                assert refused.status_code == 400, voice
                error = refused.json()["error"]
                assert error["param"] == "voice" and words in error["message"], error
        finally:
            door.close()


def test_cli_speaker_blend_and_curve_flags(voices, tmp_path):
    import soundfile

    from vitsrt.commands import synth

    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    ids = " ".join(str(i) for i in _request().phonemes.phone_ids)
    common = ["-v", str(voices["multi"]), "--ids", ids, "--seed", "5", "--noise-scale", "0.6", "--noise-scale-w", "0.7",
              "--length-scale", "1.2", "--threads", "1", "--lanes", "1"]
    args = parser.parse_args([*common, "--speaker", "speaker_0:0.25,speaker_2:0.75", "-o", str(tmp_path / "b.wav")])
    assert synth.build_request(args).speakers == parse_speaker_weights("speaker_0:0.25,speaker_2:0.75")
    assert synth.run(args) == 0
    written, _ = soundfile.read(tmp_path / "b.wav", dtype="float32")  # 16-bit PCM: within a few steps
    pipeline = _pipeline(voices["multi"])
    expected = _speak(pipeline, _blend("speaker_0:0.25,speaker_2:0.75"))
    assert written.shape == expected.shape and float(np.abs(written - expected).max()) <= 1e-4
    assert _differs(written, _speak(pipeline, _request(speaker="speaker_0")))
    curve = parser.parse_args([*common, "--speaker-curve", "0=speaker_0:1;1=speaker_1:1", "-o", "c.wav"])
    assert [p.position for p in synth.build_request(curve).speaker_curve] == [0.0, 1.0]
    both = parser.parse_args([*common, "--speaker", "speaker_0", "--speaker-curve", "0=speaker_1:1", "-o", "x.wav"])
    with pytest.raises(InputError, match="at most one"):
        synth.build_request(both)


# ----- Bert-VITS2: the encoder takes weights over the speaker table (exact blends) ---------------------------------
#
# On the random 3-speaker Bert-VITS2 voice of conftest (`small_22k_voice`: ann, ben, cat; a windowed WaveNet flow),
# exported now: its encoder takes `speaker_weights` [B, 3] and computes g = weights @ emb_g.weight inside the graph.
# A copy of it with the encoder re-exported as bundles were before (`sid` [B]) stands for those bundles.

BV2_BLEND = "ann:0.2,cat:0.8"
BV2_SCALES = {"noise_scale": 0.6, "noise_scale_w": 0.7, "length_scale": 1.2, "sdp_ratio": 0.0}


@pytest.fixture(scope="module")
def bv2(small_22k_voice, tmp_path_factory) -> dict[str, object]:
    """The voice, its PyTorch generator as loaded from the checkpoint (weight norm unfolded: the reference), and an
    older-style copy whose encoder takes `sid`."""
    from vitsrt.train.loading import load_generator

    torch.set_num_threads(1)
    checkpoint = small_22k_voice.parent / "ckpt"
    model = load_generator(checkpoint / "G_0.pth", checkpoint / "config.json").model.eval()
    old = _as_sid_bundle(small_22k_voice, tmp_path_factory.mktemp("bv2-sid") / "voice", model)
    return {"voice": small_22k_voice, "model": model, "old": old}


class _SidEncoder(torch.nn.Module):
    """The encoder as bundles exported before speaker weights had it: the speaker id in, looked up inside."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, phone_ids, tone_ids, language_ids, lengths, bert, ja_bert, en_bert, sid):
        return self.model.encode(phone_ids, lengths, tone_ids, language_ids, bert, ja_bert, en_bert, sid)


def _as_sid_bundle(source: Path, target: Path, model) -> Path:
    """`source` with its encoder re-exported to take `sid` [B] (voice.json and the torch weights' record updated)."""
    import warnings

    from safetensors import safe_open
    from safetensors.torch import save

    from vitsrt.export.onnx_checks import DEFAULT_IR_VERSION, finalize_onnx
    from vitsrt.export.onnx_export import folded_copy, trace_inputs

    shutil.copytree(source, target)
    folded = folded_copy(model)
    args = list(trace_inputs(folded, "encoder"))
    args[7] = torch.arange(2) % 3  # speaker_weights -> sid
    names = ["phone_ids", "tone_ids", "language_ids", "lengths", "bert", "ja_bert", "en_bert", "sid"]
    outputs = ["enc", "m_p", "logs_p", "x_mask", "g"]
    axes = {name: {0: "B", 1: "T"} for name in names[:3]}
    axes |= {"lengths": {0: "B"}, "sid": {0: "B"}, "g": {0: "B"}}
    axes |= {name: {0: "B", 2: "T"} for name in (*names[4:7], *outputs[:4])}
    path = target / "encoder.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_SidEncoder(folded).eval(), tuple(args), str(path), input_names=names, output_names=outputs,
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    finalize_onnx(path, ir_version=DEFAULT_IR_VERSION)
    manifest = json.loads((target / "voice.json").read_text(encoding="utf-8"))
    spec = manifest["graphs"]["encoder"]
    spec["inputs"] = [i if i["name"] != "speaker_weights" else {"name": "sid", "dtype": "int64", "shape": ["B"]}
                      for i in spec["inputs"]]
    spec["sha256"] = sha256_file(path)
    (target / "voice.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    with safe_open(str(target / "weights.safetensors"), framework="pt") as f:
        metadata, state = f.metadata(), {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    metadata["graphs"] = json.dumps({**json.loads(metadata["graphs"]), "encoder": spec["sha256"]}, sort_keys=True)
    (target / "weights.safetensors").write_bytes(save(state, metadata=metadata))
    return target


def _bv2_request(seed: int = 7, tokens: int = 61, **fields) -> SynthesisRequest:
    rng = np.random.default_rng(seed)
    phones = [0 if i % 2 == 0 else int(rng.integers(1, 100)) for i in range(tokens)]
    ids = PhonemeIds(phone_ids=phones, tone_ids=[0] * tokens, language_ids=[0] * tokens)
    return SynthesisRequest(phonemes=ids, seed=seed, **BV2_SCALES, **fields)


def _weights(text: str) -> np.ndarray:
    """[3] float32 weights over ann, ben, cat (normalised) as the engine feeds them."""
    mix = SpeakerMix.resolve([BlendPoint(position=0, speakers=parse_speaker_weights(text))],
                             {"ann": 0, "ben": 1, "cat": 2}, "v")
    weights = np.zeros(3, dtype=np.float32)
    weights[mix.sids] = mix.mean(0.0, 1.0)
    return weights


@torch.no_grad()
def _bv2_reference(model, pipeline: VoicePipeline, request: SynthesisRequest, weights: np.ndarray,
                   mixed_outputs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(audio, durations) of one sentence from the synthesizer's own stages in PyTorch with g = weights @ emb_g
    everywhere (encoder, duration, flow, decoder) and the request's prior noise. `mixed_outputs`: the text encoder
    run per speaker and its outputs weighted instead (what a `sid` encoder gives a blend)."""
    from vitsrt.train.models.synthesizer import durations_from_logw, expand_by_durations

    (segment,) = pipeline.segments_for(request, stream_id=1, seed=request.seed)
    ids = segment.ids
    x, tone, language = (torch.tensor(np.asarray(a, dtype=np.int64))[None]
                         for a in (ids.phone_ids, ids.tone_ids, ids.language_ids))
    lengths = torch.tensor([x.shape[1]])
    zeros = torch.zeros(1, pipeline.bert_dim, x.shape[1])
    text = (x, lengths, tone, language, zeros, zeros, zeros)
    g = model.speaker_mix(torch.from_numpy(weights)[None])
    enc, m_p, logs_p, x_mask, _ = model.encode_with_g(*text, g)
    if mixed_outputs:
        each = [model.encode(*text, torch.tensor([sid])) for sid in np.flatnonzero(weights)]
        enc, m_p, logs_p = (sum(float(weights[sid]) * out[k] for sid, out in zip(np.flatnonzero(weights), each,
                                                                                 strict=True)) for k in range(3))
    logw = model.predict_logw_dp(enc, x_mask, g)
    durations = durations_from_logw(logw, x_mask, torch.tensor(request.length_scale))
    y_lengths, (m, logs) = expand_by_durations(durations, m_p, logs_p)
    eps = torch.from_numpy(segment.noise.prior_eps(pipeline.channels, int(y_lengths[0])))[None]
    z_p = m + eps * torch.exp(logs) * request.noise_scale
    y_mask = torch.ones(1, 1, z_p.shape[-1])
    audio = model.decode(model.flow_reverse(z_p, y_mask, g), y_mask, g)
    return audio[0, 0].numpy(), durations[0, 0].long().numpy()


def _prefilled(pipeline: VoicePipeline, request: SynthesisRequest):
    (segment,) = pipeline.segments_for(request, stream_id=1, seed=request.seed)
    pipeline.prefill([segment])
    return segment


def test_bert_vits2_encoder_takes_speaker_weights(bv2):
    manifest = load_voice(bv2["voice"]).manifest
    encoder = manifest.graphs.encoder
    assert encoder.input("speaker_weights").shape == ["B", 3] and encoder.input("sid") is None
    assert load_voice(bv2["old"]).manifest.graphs.encoder.input("sid").shape == ["B"]
    # The graph is the synthesizer's encoder with g = weights @ emb_g: one-hot rows and a blend in one batch.
    model, runner = bv2["model"], _pipeline(bv2["voice"]).backend
    rng = np.random.default_rng(3)
    feeds = {"phone_ids": rng.integers(1, 100, (3, 9)), "tone_ids": np.zeros((3, 9), np.int64),
             "language_ids": np.zeros((3, 9), np.int64), "lengths": np.array([9, 4, 7]),
             **{name: rng.standard_normal((3, 1024, 9)).astype(np.float32) for name in ("bert", "ja_bert", "en_bert")},
             "speaker_weights": np.array([[0, 1, 0], [0.25, 0, 0.75], [0, 0, 1]], np.float32)}
    ours = runner.run("encoder", feeds)
    t = {name: torch.from_numpy(np.asarray(value)) for name, value in feeds.items()}
    with torch.no_grad():
        g = model.speaker_mix(t["speaker_weights"])
        reference = model.encode_with_g(t["phone_ids"], t["lengths"], t["tone_ids"], t["language_ids"], t["bert"],
                                        t["ja_bert"], t["en_bert"], g)
        by_id = model.speaker_embedding(torch.tensor([1, 0, 2]))
    for name, expected in zip(("enc", "m_p", "logs_p", "x_mask", "g"), reference, strict=True):
        assert float(np.abs(ours[name] - expected.numpy()).max()) <= 1e-4, name
    assert np.array_equal(ours["g"][[0, 2]], by_id[[0, 2]].numpy())  # a one-hot row is that speaker's row exactly
    # Negative control: the weights condition the text encoder itself (not only the g it hands on).
    other = runner.run("encoder", {**feeds, "speaker_weights": feeds["speaker_weights"][[1, 0, 2]]})
    assert float(np.abs(other["m_p"][1] - ours["m_p"][1]).max()) > 1e-3


@pytest.mark.parametrize("policy", [ONE_SHOT, STREAMING], ids=["one-shot", "streaming"])
def test_bert_vits2_one_hot_weights_are_that_speaker_exactly(bv2, policy):
    pipeline = _pipeline(bv2["voice"])
    plain = {name: _speak(pipeline, _bv2_request(speaker=name), policy) for name in ("ben", "cat")}
    one_hot = _bv2_request(speakers=parse_speaker_weights("ann:0,ben:2.5,cat:0"))
    assert np.array_equal(_speak(pipeline, one_hot, policy), plain["ben"])
    assert np.array_equal(_speak(pipeline, _bv2_request(speaker_curve=parse_speaker_curve("0=cat:1;1=cat:3")), policy),
                          plain["cat"])
    assert _differs(plain["ben"], plain["cat"])  # negative control: the speakers differ


def test_bert_vits2_blend_is_the_blended_vector_everywhere(bv2):
    """A blend equals PyTorch running the synthesizer's stages with g = sum w_i emb_g[i] in every one of them
    (encoder included): the same durations, audio within 1e-4. Negative control: the old answer (the encoder's
    outputs per speaker, weighted) is clearly farther from it than that."""
    pipeline, model = _pipeline(bv2["voice"]), bv2["model"]
    request, weights = _bv2_request(speakers=parse_speaker_weights(BV2_BLEND)), _weights(BV2_BLEND)
    expected_audio, expected_durations = _bv2_reference(model, pipeline, request, weights)
    segment = _prefilled(pipeline, request)
    assert np.array_equal(segment.durations, expected_durations)
    for policy in (ONE_SHOT, STREAMING):
        audio = _speak(pipeline, request, policy)
        assert audio.shape == expected_audio.shape and float(np.abs(audio - expected_audio).max()) <= 1e-4
    old_way, _ = _bv2_reference(model, pipeline, request, weights, mixed_outputs=True)
    assert old_way.shape != expected_audio.shape or float(np.abs(old_way - expected_audio).max()) > 1e-3
    for name in ("ann", "cat"):  # and it is a blend, not one of its speakers
        assert _differs(audio, _speak(pipeline, _bv2_request(speaker=name)))


def test_bert_vits2_plain_speaker_equals_the_torch_reference(bv2):
    """The same reference with a one-hot row is a plain request (so the blend check above compares like with like)."""
    pipeline = _pipeline(bv2["voice"])
    request = _bv2_request(speaker="ben")
    audio, durations = _bv2_reference(bv2["model"], pipeline, request, np.array([0, 1, 0], np.float32))
    assert np.array_equal(_prefilled(pipeline, request).durations, durations)
    ours = _speak(pipeline, request)
    assert float(np.abs(ours - audio).max()) <= 1e-4
    other, _ = _bv2_reference(bv2["model"], pipeline, request, np.array([0, 0, 1], np.float32))
    assert _differs(ours, other)  # negative control: the reference with another speaker's row is other audio


def test_bert_vits2_sid_bundle_still_serves_and_blends_approximately(bv2):
    new, old = _pipeline(bv2["voice"]), _pipeline(bv2["old"])
    assert old.speaker_weights is False and new.speaker_weights is True
    plain = _bv2_request(speaker="cat")
    assert float(np.abs(_speak(old, plain) - _speak(new, plain)).max()) <= 1e-5
    request = _bv2_request(speakers=parse_speaker_weights(BV2_BLEND))
    mixed = _prefilled(old, request)
    alone = {name: _prefilled(old, _bv2_request(speaker=name)) for name in ("ann", "cat")}
    w = _weights(BV2_BLEND)
    for name in ("m_p", "logs_p", "g"):  # as before: the encoder's outputs per speaker, weighted
        expected = w[0] * getattr(alone["ann"], name).astype(np.float64) + w[2] * getattr(alone["cat"], name)
        assert float(np.abs(getattr(mixed, name) - expected).max()) <= 1e-5, name
    exact = _prefilled(new, request)
    assert float(np.abs(exact.m_p - mixed.m_p).max()) > 1e-3  # not what the exact encoder gives
    # Its audio is the torch reference's with the encoder outputs weighted (streamed as one-shot), and a blend.
    audio, _ = _bv2_reference(bv2["model"], old, request, w, mixed_outputs=True)
    streamed = _speak(old, request, STREAMING)
    assert streamed.shape == audio.shape and float(np.abs(streamed - audio).max()) <= 1e-4
    assert _differs(streamed, _speak(old, _bv2_request(speaker="ann")))


def test_bert_vits2_torch_backend_takes_either_encoder_input(bv2):
    """The torch stage runner from the bundle accepts what the graph declares: speaker_weights (blends exact as on
    onnxruntime) or, in a sid bundle, sid."""
    from vitsrt.serve.engine.engine import Engine, EngineOptions

    requests = [_bv2_request(speakers=parse_speaker_weights(BV2_BLEND)), _bv2_request(speaker="ben", seed=3)]
    for voice in (bv2["voice"], bv2["old"]):
        audio = {}
        for backend in ("onnxruntime", "torch"):
            with Engine.open([voice], backend=backend, options=EngineOptions(lanes=1, threads=1)) as engine:
                audio[backend] = [engine.synthesize(r).audio for r in requests]
        assert _worst(audio["torch"], audio["onnxruntime"]) <= 1e-5
        # Negative control: a blend a little off is caught (the comparison sees the weights).
        with Engine.open([voice], options=EngineOptions(lanes=1, threads=1)) as engine:
            near = engine.synthesize(_bv2_request(speakers=parse_speaker_weights("ann:0.25,cat:0.75"))).audio
        assert _differs(near, audio["torch"][0])


def test_bert_vits2_triton_layout_declares_the_encoders_speaker_input(bv2):
    from vitsrt.serve.triton.layout import stage_tensors

    new = {t.name: t for t in stage_tensors(load_voice(bv2["voice"]).manifest.graphs.encoder)[0]}
    old = {t.name: t for t in stage_tensors(load_voice(bv2["old"]).manifest.graphs.encoder)[0]}
    assert "sid" not in new and (new["speaker_weights"].dims, new["speaker_weights"].reshape) == ((3,), None)
    assert "speaker_weights" not in old and (old["sid"].dims, old["sid"].reshape) == ((1,), ())


def test_bert_vits2_contract_selects_the_speaker_input_by_feature(bv2):
    from vitsrt.stages import BERT_VITS2, SPEAKER_WEIGHTS

    encoder = BERT_VITS2.stage("encoder")
    names = {features: [t.name for t in encoder.inputs_for(features)] for features in ((), (SPEAKER_WEIGHTS,))}
    assert "sid" in names[()] and "speaker_weights" not in names[()]
    assert "speaker_weights" in names[(SPEAKER_WEIGHTS,)] and "sid" not in names[(SPEAKER_WEIGHTS,)]
    # voice.json must give the weights one column per speaker; a width that does not match is refused at load.
    from vitsrt.voice import VoiceManifest

    data = json.loads((bv2["voice"] / "voice.json").read_text(encoding="utf-8"))
    VoiceManifest.model_validate(data)  # as exported: valid
    next(i for i in data["graphs"]["encoder"]["inputs"] if i["name"] == "speaker_weights")["shape"] = ["B", 4]
    with pytest.raises(ValueError, match=r"speaker_weights has shape \['B', 4\], expected \['B', 3\]"):
        VoiceManifest.model_validate(data)


BV2_MIXED = [_bv2_request(seed=1, speaker_curve=parse_speaker_curve("0=ann:1;1=cat:1")),
             _bv2_request(seed=2, speakers=parse_speaker_weights(BV2_BLEND)), _bv2_request(seed=3, speaker="ben"),
             _bv2_request(seed=4, tokens=33, speakers=parse_speaker_weights("ben:1,cat:1"))]


def test_bert_vits2_batch_gives_each_item_its_own_speaker_weights(bv2, monkeypatch):
    pipeline = _pipeline(bv2["voice"])
    alone = [_speak(pipeline, request, STREAMING) for request in BV2_MIXED]
    assert _worst(_together(pipeline, BV2_MIXED), alone) <= 1e-5
    # Negative control: the encoder handed the rows' weights in another order is caught.
    real = VoicePipeline._encoder_weights
    monkeypatch.setattr(VoicePipeline, "_encoder_weights", lambda self, segments: real(self, segments)[::-1].copy())
    assert all(_differs(a, b) for a, b in zip(_together(pipeline, BV2_MIXED), alone, strict=True))


def test_bert_vits2_export_verification_checks_either_encoder_input(bv2):
    """Export verification feeds the encoder what its graph declares (speaker_weights: one-hot and random blends;
    sid in an older graph) and compares it with the matching PyTorch reference."""
    from vitsrt.export.verify import VerifyCase, check_parity, verify_graphs

    cases = (VerifyCase((5,), (5,)), VerifyCase((9, 3, 6), (9, 3, 6)))
    for voice in (bv2["voice"], bv2["old"]):
        check_parity(verify_graphs(bv2["model"], {"encoder": voice / "encoder.onnx"}, cases=cases, threads=1))
    # Negative control: a speaker table 1% off is seen through the weights (it no longer matches the graph's).
    table = bv2["model"].emb_g.weight
    kept = table.detach().clone()
    try:
        with torch.no_grad():
            table.mul_(1.01)
        parity = verify_graphs(bv2["model"], {"encoder": bv2["voice"] / "encoder.onnx"}, cases=cases, threads=1)
    finally:
        with torch.no_grad():
            table.copy_(kept)
    assert not parity["encoder"].passed
