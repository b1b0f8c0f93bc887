"""The voice bundle manifest (vitsrt.voice): validation, atomic writing, loading and integrity checks."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from vitsrt.errors import VitsrtError, VoiceError
from vitsrt.sampling import Sampling
from vitsrt.voice import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    EngineKey,
    VoiceManifest,
    load_voice,
    read_manifest,
    sha256_file,
)

STAGES = ("encoder", "duration", "duration_dp_only", "flow", "decoder")


def tensor(name, dtype="float32", shape=("B", "C", "T")):
    return {"name": name, "dtype": dtype, "shape": list(shape)}


def graph(file: str, digest: str, inputs: list[dict], outputs: list[dict]) -> dict:
    return {"file": file, "sha256": digest, "inputs": inputs, "outputs": outputs, "opset": 17}


def make_bundle(root: Path) -> dict:
    """A complete, valid voice directory (fake graph bytes); returns the manifest dict."""
    root.mkdir(parents=True, exist_ok=True)
    digests = {}
    for stage in STAGES:
        data = f"not really onnx: {stage}".encode()
        (root / f"{stage}.onnx").write_bytes(data)
        digests[stage] = hashlib.sha256(data).hexdigest()
    encoder_inputs = [
        tensor("phone_ids", "int64", ["B", "T"]),
        tensor("tone_ids", "int64", ["B", "T"]),
        tensor("language_ids", "int64", ["B", "T"]),
        tensor("lengths", "int64", ["B"]),
        tensor("bert", shape=["B", 1024, "T"]),
        tensor("ja_bert", shape=["B", 1024, "T"]),
        tensor("en_bert", shape=["B", 1024, "T"]),
        tensor("sid", "int64", ["B"]),
    ]
    duration_inputs = [
        tensor("enc", shape=["B", 32, "T"]),
        tensor("x_mask", shape=["B", 1, "T"]),
        tensor("g", shape=["B", 32, 1]),
        tensor("sdp_noise", shape=["B", 2, "T"]),
        tensor("sdp_ratio", shape=["B"]),
    ]
    return {
        "format_version": FORMAT_VERSION,
        "name": "tiny-2.3",
        "model": {"family": "bert-vits2", "version": "2.3"},
        "sample_rate": 44100,
        "hop_length": 512,
        "latent_channels": 32,
        "num_speakers": 2,
        "speakers": {"alice": 0, "bob": 1},
        "front_end": {
            "kind": "ids",
            "num_symbols": 4,
            "symbols": ["_", "a", "b", "c"],
            "add_blank": True,
            "languages": {"ZH": 0, "JP": 1, "EN": 2},
            "num_languages": 3,
            "num_tones": 12,
            "bert_inputs": ["bert", "ja_bert", "en_bert"],
        },
        "decoder_context_frames": 13,
        "decoder": {  # upstream Bert-VITS2 44.1 kHz layout: hop 512, 13 frames of context
            "upsample_rates": [8, 8, 2, 2, 2],
            "upsample_kernel_sizes": [16, 16, 8, 2, 2],
            "resblock": "1",
            "resblock_kernel_sizes": [3, 7, 11],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        },
        "graphs": {
            "encoder": graph(
                "encoder.onnx",
                digests["encoder"],
                encoder_inputs,
                [tensor("enc"), tensor("m_p"), tensor("logs_p"), tensor("x_mask", shape=["B", 1, "T"])],
            ),
            "duration": graph(
                "duration.onnx", digests["duration"], duration_inputs, [tensor("logw", shape=["B", 1, "T"])]
            ),
            "duration_dp_only": graph(
                "duration_dp_only.onnx",
                digests["duration_dp_only"],
                duration_inputs[:3],
                [tensor("logw", shape=["B", 1, "T"])],
            ),
            "flow": graph(
                "flow.onnx",
                digests["flow"],
                [tensor("z_p", shape=["B", 32, "F"]), tensor("y_mask", shape=["B", 1, "F"])],
                [tensor("z", shape=["B", 32, "F"])],
            ),
            "decoder": graph(
                "decoder.onnx",
                digests["decoder"],
                [tensor("z", shape=["B", 32, "F"]), tensor("y_mask", shape=["B", 1, "F"])],
                [tensor("audio", shape=["B", 1, "F*512"])],
            ),
        },
        "parity": {
            "reference": "torch 2.13.0 cpu fp32",
            "runtime": "onnxruntime 1.31.1 CPUExecutionProvider",
            "stages": {
                "decoder": {"max_abs_diff": 3e-6, "tolerance": 1e-4, "worst_case": "B=4 F=97", "cases": 12}
            },
        },
    }


def write_json(root: Path, data: dict) -> Path:
    path = root / MANIFEST_NAME
    path.write_text(json.dumps(data))
    return path


def load_error(root: Path, data: dict, **kwargs) -> str:
    write_json(root, data)
    with pytest.raises(VoiceError) as info:
        load_voice(root, **kwargs)
    return str(info.value)


def test_valid_bundle_loads_and_round_trips(tmp_path: Path):
    data = make_bundle(tmp_path)
    manifest = VoiceManifest.model_validate(data)
    written = manifest.write(tmp_path)
    assert written == tmp_path / MANIFEST_NAME
    voice = load_voice(tmp_path)
    assert voice.manifest == manifest
    assert voice.name == "tiny-2.3"
    assert voice.manifest.model.tag == "bert-vits2-2.3"
    assert voice.graph_path("flow") == tmp_path / "flow.onnx"
    assert voice.manifest.sdp_skippable
    assert voice.manifest.graphs.get("decoder").output("audio").shape == ["B", 1, "F*512"]
    assert [stage for stage, _ in voice.manifest.graphs.items()] == list(STAGES)
    assert voice.manifest.parity.stages["decoder"].passed
    assert voice.manifest.engines == []
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary behind
    # writing again to an explicit file path replaces it
    assert manifest.write(tmp_path / MANIFEST_NAME) == tmp_path / MANIFEST_NAME
    assert read_manifest(tmp_path / MANIFEST_NAME) == manifest == VoiceManifest.read(tmp_path / MANIFEST_NAME)


def test_inference_defaults_are_upstream_2_3_webui_values():
    defaults = VoiceManifest.model_fields["inference"].get_default(call_default_factory=True)
    assert isinstance(defaults, Sampling)
    assert (defaults.noise_scale, defaults.noise_scale_w, defaults.length_scale, defaults.sdp_ratio) == (
        0.6,
        0.9,
        1.0,
        0.5,
    )


def test_unknown_major_version_is_refused_clearly(tmp_path: Path):
    data = make_bundle(tmp_path)
    data["format_version"] = "2.0"
    data["something_new"] = {"x": 1}  # a future format may add keys; the version error must win
    message = load_error(tmp_path, data)
    assert "format_version 2.0 is not supported" in message and "1.x" in message
    with pytest.raises(ValueError, match="not supported"):
        VoiceManifest.model_validate(data)


def test_newer_minor_version_is_accepted(tmp_path: Path):
    data = make_bundle(tmp_path)
    data["format_version"] = "1.7"
    write_json(tmp_path, data)
    assert load_voice(tmp_path).manifest.format_version == "1.7"


@pytest.mark.parametrize("version", ["1", "v1.0", 1.0, None])
def test_malformed_version(tmp_path: Path, version):
    data = make_bundle(tmp_path)
    data["format_version"] = version
    assert "MAJOR.MINOR" in load_error(tmp_path, data)


def test_typo_and_wrong_types_are_named(tmp_path: Path):
    data = make_bundle(tmp_path)
    data["inference"] = {"noise_scal": 0.5}
    message = load_error(tmp_path, data)
    assert "inference.noise_scal" in message and "Extra inputs" in message

    data = make_bundle(tmp_path)
    data["sample_rate"] = "44100"
    assert "sample_rate" in load_error(tmp_path, data)

    data = make_bundle(tmp_path)
    data["inference"] = {"sdp_ratio": 1.5}
    assert "inference.sdp_ratio" in load_error(tmp_path, data)


def test_missing_graph_file_is_named(tmp_path: Path):
    write_json(tmp_path, make_bundle(tmp_path))
    (tmp_path / "flow.onnx").unlink()
    with pytest.raises(VoiceError, match=r"flow graph 'flow\.onnx' .* missing"):
        load_voice(tmp_path)


def test_sha256_mismatch_is_named_and_optional(tmp_path: Path):
    write_json(tmp_path, make_bundle(tmp_path))
    (tmp_path / "decoder.onnx").write_bytes(b"tampered")
    with pytest.raises(VoiceError) as info:
        load_voice(tmp_path)
    assert "decoder.onnx" in str(info.value) and "SHA-256 mismatch" in str(info.value)
    assert isinstance(info.value, VitsrtError)
    load_voice(tmp_path, verify_sha256=False)  # existence is still checked, contents are not


@pytest.mark.parametrize("bad_file", ["../outside.onnx", "/abs/encoder.onnx", "sub\\encoder.onnx", ""])
def test_graph_paths_must_stay_inside_the_bundle(tmp_path: Path, bad_file):
    data = make_bundle(tmp_path)
    data["graphs"]["encoder"]["file"] = bad_file
    assert "graphs.encoder.file" in load_error(tmp_path, data)


def test_cross_field_consistency(tmp_path: Path):
    data = make_bundle(tmp_path)
    data["speakers"]["carol"] = 2
    assert "speaker 'carol' has id 2" in load_error(tmp_path, data)

    data = make_bundle(tmp_path)
    data["graphs"]["encoder"]["inputs"] = [i for i in data["graphs"]["encoder"]["inputs"] if i["name"] != "en_bert"]
    assert "en_bert" in load_error(tmp_path, data)

    data = make_bundle(tmp_path)
    del data["front_end"]["symbols"]
    assert "needs the 'symbols' table" in load_error(tmp_path, data)

    data = make_bundle(tmp_path)
    data["front_end"]["languages"]["KO"] = 3
    assert "outside 0..2" in load_error(tmp_path, data)

    data = make_bundle(tmp_path)
    data["graphs"]["flow"]["outputs"].append(tensor("z", shape=["B", 32, "F"]))
    assert "duplicate output names" in load_error(tmp_path, data)

    data = make_bundle(tmp_path)
    data["graphs"]["flow"]["sha256"] = "ABC"
    assert "graphs.flow.sha256" in load_error(tmp_path, data)


def test_ipa_front_end_requires_its_markers(tmp_path: Path):
    data = make_bundle(tmp_path)
    data["front_end"] = {
        "kind": "ipa",
        "num_symbols": 5,
        "phoneme_id_map": {"_": [0], "^": [1], "$": [2], "a": [3], "b": [4]},
        "add_blank": False,
        "languages": {"en-us": 0},
        "num_languages": 1,
        "num_tones": 1,
        "espeak_voices": {"en-us": "en-us"},
    }
    write_json(tmp_path, data)
    assert load_voice(tmp_path).manifest.front_end.kind == "ipa"
    del data["front_end"]["phoneme_id_map"]["$"]
    assert "eos marker" in load_error(tmp_path, data)


def test_engines(tmp_path: Path, caplog):
    data = make_bundle(tmp_path)
    key = {
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "compute_capability": "9.0",
        "trt_version": "10.9.0",
        "precision": "fp16",
    }
    data["engines"] = [
        {"stage": "decoder", "key": key, "file": "engines/h100/decoder.plan"},
        {"stage": "flow", "key": key, "file": "engines/h100/flow.plan"},
    ]
    (tmp_path / "engines" / "h100").mkdir(parents=True)
    (tmp_path / "engines" / "h100" / "decoder.plan").write_bytes(b"plan")
    write_json(tmp_path, data)
    with caplog.at_level(logging.WARNING, logger="vitsrt.voice"):
        voice = load_voice(tmp_path)
    assert "flow.plan" in caplog.text  # listed but missing: a warning, not an error
    engine_key = EngineKey.model_validate(key)
    assert set(voice.manifest.engines_for(engine_key)) == {"decoder", "flow"}
    assert voice.engine_paths(engine_key) == {"decoder": tmp_path / "engines/h100/decoder.plan"}
    other = engine_key.model_copy(update={"precision": "fp32"})
    assert voice.manifest.engines_for(other) == {}

    data["engines"].append(dict(data["engines"][0]))
    assert "two TensorRT engines" in load_error(tmp_path, data)


def test_not_a_voice(tmp_path: Path):
    with pytest.raises(VoiceError, match="not a directory"):
        load_voice(tmp_path / "nope")
    with pytest.raises(VoiceError, match=r"voice\.json"):
        load_voice(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(VoiceError, match="not valid JSON"):
        load_voice(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{}")
    with pytest.raises(VoiceError, match="no format_version"):
        load_voice(tmp_path)


def test_sha256_file(tmp_path: Path):
    path = tmp_path / "blob"
    path.write_bytes(b"x" * (3 << 20))
    assert sha256_file(path, chunk_size=1 << 16) == hashlib.sha256(b"x" * (3 << 20)).hexdigest()


def test_python_callers_may_pass_tuples_and_numpy_scalars(tmp_path: Path):
    np = pytest.importorskip("numpy")
    data = make_bundle(tmp_path)
    data["sample_rate"] = np.int64(44100)
    data["graphs"]["flow"]["inputs"][0]["shape"] = ("B", np.int64(32), "F")
    data["parity"]["stages"]["decoder"]["max_abs_diff"] = np.float32(2.5e-6)
    manifest = VoiceManifest.model_validate(data)
    manifest.write(tmp_path)
    reread = load_voice(tmp_path).manifest
    assert reread.sample_rate == 44100 and reread.graphs.flow.inputs[0].shape == ["B", 32, "F"]
    # ...but the file itself is read strictly
    raw = json.loads((tmp_path / MANIFEST_NAME).read_text())
    raw["hop_length"] = 512.0
    assert "hop_length" in load_error(tmp_path, raw)


def test_unknown_stage_is_a_voice_error(tmp_path: Path):
    manifest = VoiceManifest.model_validate(make_bundle(tmp_path))
    with pytest.raises(VoiceError, match="no 'model_config' graph"):
        manifest.graphs.get("model_config")  # type: ignore[arg-type]
