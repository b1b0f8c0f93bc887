"""Every config.pbtxt that `vitsrt triton-repo` writes parses against Triton's model-config schema
(`ModelConfig` from tritonclient), for every stage backend and instance kind, with the right dims."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vitsrt.export.tensorrt_build import engine_relpath, record_engines
from vitsrt.export.triton_repo import RepoOptions, TritonRepoError, write_triton_repo
from vitsrt.voice import EngineKey, TensorRTEngine, load_voice, sha256_file

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                       reason="tritonclient is not installed (pip install vitsrt[triton])")
text_format = pytest.importorskip("google.protobuf.text_format")

STAGE_MODELS = ["vitsrt_encoder", "vitsrt_duration", "vitsrt_duration_dp_only", "vitsrt_flow", "vitsrt_decoder"]
KEY = EngineKey(gpu_name="NVIDIA L4", compute_capability="8.9", trt_version="10.3.0", precision="fp16")


def _parse(path: Path):
    config = model_config_pb2.ModelConfig()
    text_format.Parse(path.read_text(), config)
    return config


@pytest.fixture(scope="module")
def voice_with_plans(fixture_voice, tmp_path_factory) -> Path:
    """The fixture voice plus stand-in plan files recorded in voice.json (the generator only copies them)."""
    voice_dir = tmp_path_factory.mktemp("plans") / "voice"
    shutil.copytree(fixture_voice, voice_dir)
    entries = []
    for stage, _ in load_voice(voice_dir).manifest.graphs.items():
        plan = voice_dir / engine_relpath(KEY, stage)
        plan.parent.mkdir(parents=True, exist_ok=True)
        plan.write_bytes(f"plan for {stage}".encode())
        entries.append(TensorRTEngine(stage=stage, key=KEY, file=engine_relpath(KEY, stage), sha256=sha256_file(plan)))
    record_engines(voice_dir, entries)
    (plan.parent / "build.json").write_text('{"max_batch": 4}')
    return voice_dir


@pytest.mark.parametrize(
    ("backend", "kind", "platform", "model_file"),
    [
        ("onnxruntime", "gpu", "onnxruntime_onnx", "model.onnx"),
        ("onnxruntime", "cpu", "onnxruntime_onnx", "model.onnx"),
        ("python", "cpu", "", "model.onnx"),
        ("python", "gpu", "", "model.onnx"),
        ("tensorrt", "gpu", "tensorrt_plan", "model.plan"),
    ],
)
def test_every_config_parses_against_the_model_config_schema(voice_with_plans, tmp_path, backend, kind, platform,
                                                             model_file):
    repo = tmp_path / "repo"
    options = RepoOptions(stage_backend=backend, kind=kind, instances=2, max_batch=8, max_queue_delay_us=3000,
                          precision="fp16", threads=2)
    models = write_triton_repo(voice_with_plans, repo, options)
    assert models == [*STAGE_MODELS, "vitsrt_tts", "vitsrt_tts_oneshot"]
    manifest = load_voice(voice_with_plans).manifest
    for name in STAGE_MODELS:
        config = _parse(repo / name / "config.pbtxt")
        assert config.name == name and config.platform == platform
        assert config.backend == {"onnxruntime": "onnxruntime", "python": "python", "tensorrt": "tensorrt"}[backend]
        assert (repo / name / "1" / model_file).is_file()
        assert (repo / name / "1" / "model.py").is_file() == (backend == "python")
        assert config.max_batch_size == (4 if backend == "tensorrt" else 8)  # capped by the plans' build.json
        assert config.dynamic_batching.max_queue_delay_microseconds == 3000
        group = config.instance_group[0]
        assert group.count == 2
        assert group.kind == (model_config_pb2.ModelInstanceGroup.KIND_GPU if kind == "gpu"
                              else model_config_pb2.ModelInstanceGroup.KIND_CPU)
        graph = manifest.graphs.get(name.removeprefix("vitsrt_"))
        assert [i.name for i in config.input] == [s.name for s in graph.inputs]
        assert [o.name for o in config.output] == [s.name for s in graph.outputs]
    decoder = _parse(repo / "vitsrt_decoder" / "config.pbtxt")
    z, y_mask, g = decoder.input
    assert list(z.dims) == [manifest.latent_channels, -1] and z.data_type == model_config_pb2.TYPE_FP32
    assert list(y_mask.dims) == [1, -1] and list(g.dims) == [g.dims[0], -1]  # g: one vector, or one per frame
    assert list(decoder.output[0].dims) == [1, -1]
    encoder = _parse(repo / "vitsrt_encoder" / "config.pbtxt")
    lengths = next(i for i in encoder.input if i.name == "lengths")
    assert list(lengths.dims) == [1] and lengths.HasField("reshape") and list(lengths.reshape.shape) == []
    weights = next(i for i in encoder.input if i.name == "speaker_weights")
    assert list(weights.dims) == [manifest.num_speakers] and not weights.HasField("reshape")
    assert next(i for i in encoder.input if i.name == "phone_ids").data_type == model_config_pb2.TYPE_INT64
    for name, decoupled in (("vitsrt_tts", True), ("vitsrt_tts_oneshot", False)):
        config = _parse(repo / name / "config.pbtxt")
        assert config.backend == "python" and config.max_batch_size == 0
        assert config.model_transaction_policy.decoupled is decoupled
        assert all(i.optional for i in config.input)
        assert {o.name for o in config.output} == {"AUDIO", "SAMPLE_RATE", "CHUNK_INDEX", "IS_LAST"}
        assert config.parameters["stages"].string_value == ",".join(s.removeprefix("vitsrt_") for s in STAGE_MODELS)
        assert (repo / name / "voice.json").is_file() and (repo / name / "1" / "model.py").is_file()


def test_negative_control_the_schema_rejects_a_broken_config(voice_with_plans, tmp_path):
    repo = tmp_path / "repo"
    write_triton_repo(voice_with_plans, repo, RepoOptions(stage_backend="python"))
    path = repo / "vitsrt_decoder" / "config.pbtxt"
    path.write_text(path.read_text().replace("max_batch_size", "max_batch_sizes"))
    with pytest.raises(text_format.ParseError):
        _parse(path)
    path.write_text(path.read_text().replace("TYPE_FP32", "TYPE_FLOAT32"))
    with pytest.raises(text_format.ParseError):
        _parse(path)


def test_generator_refuses_bad_requests(fixture_voice, voice_with_plans, tmp_path):
    with pytest.raises(TritonRepoError, match="no fp16 TensorRT plans"):
        write_triton_repo(fixture_voice, tmp_path / "a", RepoOptions(stage_backend="tensorrt", precision="fp16"))
    with pytest.raises(TritonRepoError, match="GPUs only"):
        write_triton_repo(voice_with_plans, tmp_path / "b", RepoOptions(stage_backend="tensorrt", kind="cpu"))
    occupied = tmp_path / "c"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("x")
    with pytest.raises(TritonRepoError, match="not empty"):
        write_triton_repo(fixture_voice, occupied, RepoOptions(stage_backend="python"))
    assert (occupied / "keep.txt").is_file()
    write_triton_repo(fixture_voice, occupied, RepoOptions(stage_backend="python"), force=True)
    assert not (occupied / "keep.txt").exists() and (occupied / "vitsrt_tts" / "config.pbtxt").is_file()
    assert not [p for p in occupied.parent.iterdir() if p.name.startswith(".")]  # no staging left behind
