"""Hostile or inconsistent voice bundles are refused with one line (vitsrt.voice), never a traceback or a hang."""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError
from test_voice import make_bundle, write_json

from vitsrt.errors import VoiceError
from vitsrt.voice import MANIFEST_NAME, DecoderInfo, EngineKey, Voice, VoiceManifest, load_voice
from vitsrt.voices import DEFAULT_VOICE_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]


def refusal(root: Path, **kwargs) -> str:
    """load_voice's one-line refusal of `root`."""
    with pytest.raises(VoiceError) as info:
        load_voice(root, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def load_in_thread(root: Path, fifo: Path, **kwargs) -> BaseException | None:
    """load_voice(root) in a thread; if it blocks on the FIFO, unblock it by opening the write end, and fail."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            load_voice(root, **kwargs)
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # a writer appears: open() returns, reads hit EOF
        worker.join(timeout=10)
        pytest.fail(f"load_voice blocked on the FIFO {fifo.name}")
    return outcome[0]


# ----- defect 1: voice.json of 100,000 nested brackets (RecursionError traceback) ---------------------------


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000, "[" * 100_000],
    ids=["balanced-arrays", "balanced-objects", "unclosed"],
)
def test_deeply_nested_json_is_one_line(tmp_path: Path, text: str):
    (tmp_path / MANIFEST_NAME).write_text(text)
    message = refusal(tmp_path)
    assert "nested" in message and "deep" in message


def test_moderately_nested_strings_do_not_count(tmp_path: Path):
    data = make_bundle(tmp_path)
    data["speakers"] = {"[[[[" * 40 + "{{": 0, "}}" * 40: 1}  # brackets inside strings are text
    write_json(tmp_path, data)
    assert set(load_voice(tmp_path).manifest.speakers) == set(data["speakers"])


def test_oversized_manifest_is_refused_before_parsing(tmp_path: Path):
    data = make_bundle(tmp_path)
    data["parity"]["stages"]["decoder"]["worst_case"] = "x" * (4 << 20)
    write_json(tmp_path, data)
    assert "larger than 4 MiB" in refusal(tmp_path)


def test_number_with_thousands_of_digits_is_one_line(tmp_path: Path):
    (tmp_path / MANIFEST_NAME).write_text('{"format_version": "1.2", "sample_rate": ' + "9" * 5000 + "}")
    assert "a number with thousands of digits" in refusal(tmp_path)


# ----- defect 2: a FIFO (or other non-regular file) hangs start-up --------------------------------------------


def test_fifo_manifest_is_refused_without_blocking(tmp_path: Path):
    fifo = tmp_path / MANIFEST_NAME
    os.mkfifo(fifo)
    error = load_in_thread(tmp_path, fifo)
    assert isinstance(error, VoiceError)
    assert str(error).endswith("voice.json': is a FIFO, not a regular file")


@pytest.mark.parametrize("verify_sha256", [True, False])
def test_fifo_graph_is_refused_without_blocking(tmp_path: Path, verify_sha256: bool):
    write_json(tmp_path, make_bundle(tmp_path))
    fifo = tmp_path / "encoder.onnx"
    fifo.unlink()
    os.mkfifo(fifo)
    error = load_in_thread(tmp_path, fifo, verify_sha256=verify_sha256)
    assert isinstance(error, VoiceError)
    assert "the encoder graph 'encoder.onnx' named in voice.json is a FIFO, not a regular file" in str(error)


def test_directory_as_manifest_or_graph_is_refused(tmp_path: Path):
    (tmp_path / MANIFEST_NAME).mkdir()
    assert "is a directory, not a regular file" in refusal(tmp_path)
    (tmp_path / MANIFEST_NAME).rmdir()
    write_json(tmp_path, make_bundle(tmp_path))
    (tmp_path / "flow.onnx").unlink()
    (tmp_path / "flow.onnx").mkdir()
    assert "the flow graph 'flow.onnx' named in voice.json is a directory" in refusal(tmp_path)


# ----- defect 3: symlinks out of the voice directory are followed --------------------------------------------


def test_graph_symlink_out_of_the_voice_directory_is_refused(tmp_path: Path):
    voice, outside = tmp_path / "voice", tmp_path / "secret.onnx"
    data = make_bundle(voice)
    outside.write_bytes((voice / "decoder.onnx").read_bytes())  # same bytes: the hash would match
    (voice / "decoder.onnx").unlink()
    (voice / "decoder.onnx").symlink_to(outside)
    write_json(voice, data)
    for verify in (True, False):
        message = refusal(voice, verify_sha256=verify)
        assert "the decoder graph 'decoder.onnx' named in voice.json leads outside the voice directory" in message


def test_symlinked_subdirectory_out_of_the_voice_directory_is_refused(tmp_path: Path):
    voice, elsewhere = tmp_path / "voice", tmp_path / "elsewhere"
    data = make_bundle(voice)
    elsewhere.mkdir()
    (voice / "flow.onnx").rename(elsewhere / "flow.onnx")
    (voice / "graphs").symlink_to(elsewhere)
    data["graphs"]["flow"]["file"] = "graphs/flow.onnx"
    write_json(voice, data)
    assert "the flow graph 'graphs/flow.onnx' named in voice.json leads outside" in refusal(voice)


def test_links_inside_and_a_symlinked_voice_directory_are_fine(tmp_path: Path):
    voice = tmp_path / "real"
    data = make_bundle(voice)
    (voice / "store").mkdir()
    (voice / "flow.onnx").rename(voice / "store" / "flow.onnx")
    (voice / "flow.onnx").symlink_to(Path("store") / "flow.onnx")
    write_json(voice, data)
    (tmp_path / "current").symlink_to(voice)
    loaded = load_voice(tmp_path / "current")
    assert loaded.graph_path("flow") == tmp_path / "current" / "flow.onnx"


def test_tensorrt_plan_symlink_out_of_the_voice_directory_is_refused(tmp_path: Path):
    voice = tmp_path / "voice"
    data = make_bundle(voice)
    key = {"gpu_name": "NVIDIA H100", "compute_capability": "9.0", "trt_version": "10.9.0", "precision": "fp16"}
    data["engines"] = [{"stage": "decoder", "key": key, "file": "engines/decoder.plan"}]
    (voice / "engines").mkdir()
    (tmp_path / "decoder.plan").write_bytes(b"plan")
    (voice / "engines" / "decoder.plan").symlink_to(tmp_path / "decoder.plan")
    write_json(voice, data)
    message = refusal(voice)
    assert "the decoder TensorRT plan 'engines/decoder.plan' named in voice.json leads outside" in message
    # A Voice built around load_voice (as the Triton model does) still refuses to hand the plan out.
    manifest = VoiceManifest.model_validate(data)
    with pytest.raises(VoiceError, match="leads outside"):
        Voice(root=voice, manifest=manifest).engine_paths(EngineKey.model_validate(key))


def test_control_characters_in_file_names_are_refused(tmp_path: Path):
    data = make_bundle(tmp_path)
    data["graphs"]["flow"]["file"] = "flow.onnx\nERROR forged log line"
    write_json(tmp_path, data)
    assert "graphs.flow.file: must not contain control characters" in refusal(tmp_path)


# ----- defect 4: decoder_context_frames is trusted ------------------------------------------------------------


def test_edited_decoder_context_is_refused(tmp_path: Path):
    data = make_bundle(tmp_path)
    data["decoder_context_frames"] = 9
    write_json(tmp_path, data)
    message = refusal(tmp_path)
    assert message.endswith(
        "voice.json: invalid voice manifest: decoder_context_frames is 9 but the decoder described in voice.json "
        "needs 13"
    )
    data["decoder_context_frames"] = 13
    write_json(tmp_path, data)
    assert load_voice(tmp_path).manifest.decoder.context_frames() == 13


def test_decoder_layout_must_match_hop_and_be_buildable(tmp_path: Path):
    data = make_bundle(tmp_path)
    data["decoder"]["upsample_rates"] = [8, 8, 2, 2, 4]
    data["decoder"]["upsample_kernel_sizes"] = [16, 16, 8, 2, 4]
    write_json(tmp_path, data)
    assert "the decoder's upsample_rates multiply to 1024 but hop_length is 512" in refusal(tmp_path)

    data = make_bundle(tmp_path)
    data["decoder"]["upsample_kernel_sizes"] = [16, 16, 8, 2, 3]
    write_json(tmp_path, data)
    assert "decoder: upsample kernel 3 does not fit rate 2" in refusal(tmp_path)

    data = make_bundle(tmp_path)
    data["decoder"]["resblock"] = "3"
    write_json(tmp_path, data)
    assert "decoder.resblock" in refusal(tmp_path)


def test_older_bundle_without_decoder_layout_loads_with_one_warning(tmp_path: Path, caplog):
    data = make_bundle(tmp_path)
    data["format_version"] = "1.1"
    del data["decoder"]
    data["decoder_context_frames"] = 9  # cannot be caught without the layout: that is what the warning says
    write_json(tmp_path, data)
    with caplog.at_level(logging.WARNING, logger="vitsrt.voice"):
        assert load_voice(tmp_path).manifest.decoder is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "format 1.1 records no decoder layout, so decoder_context_frames (9) cannot be checked" in warnings[0]


def test_shipped_default_voice_is_checked():
    raw = json.loads((DEFAULT_VOICE_DIR / MANIFEST_NAME).read_text())
    assert raw["format_version"] == "1.2"
    assert DecoderInfo.model_validate(raw["decoder"]).context_frames() == raw["decoder_context_frames"] == 5
    edited = copy.deepcopy(raw)
    edited["decoder_context_frames"] = 4
    with pytest.raises(ValidationError, match=r"decoder_context_frames is 4 but the decoder described in voice\.json"):
        VoiceManifest.model_validate(edited)


def test_receptive_field_maths_is_in_core_and_torch_free():
    code = (
        "import sys, vitsrt.voice, vitsrt.receptive_field, vitsrt.serve.engine.engine; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_train_import_path_still_works():
    from vitsrt.receptive_field import decoder_context_frames as core
    from vitsrt.train.models.receptive_field import decoder_context_frames as train

    assert core is train


# ----- other fields a hostile file could use to make a server allocate ----------------------------------------


def _set(data: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        data = data[int(key)] if isinstance(data, list) else data[key]
    data[leaf] = value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_speakers", 10**9),
        ("front_end.num_symbols", 10**9),
        ("front_end.num_tones", 10**6),
        ("front_end.num_languages", 10**6),
        ("front_end.bert_dim", 10**9),
        ("sample_rate", 10**8),
        ("hop_length", 10**7),
        ("latent_channels", 10**9),
        ("decoder_context_frames", 10**9),
        ("graphs.flow.opset", 10**9),
    ],
)
def test_absurd_sizes_are_refused(tmp_path: Path, field: str, value: int):
    data = make_bundle(tmp_path)
    _set(data, field, value)
    write_json(tmp_path, data)
    message = refusal(tmp_path)
    assert field in message and "less than or equal" in message


def test_absurd_fixed_graph_dimension_is_refused(tmp_path: Path):
    data = make_bundle(tmp_path)
    data["graphs"]["flow"]["inputs"][0]["shape"] = ["B", 10**12, "F"]
    write_json(tmp_path, data)
    assert "graphs.flow.inputs.0.shape: fixed dimension 1000000000000 is outside 0..8192" in refusal(tmp_path)
