"""The committed gRPC stubs are exactly what `make protos` generates from protos/vitsrt/v1/tts.proto."""

from __future__ import annotations

import shutil

import pytest

from conftest import REPO_ROOT

generate = pytest.importorskip("vitsrt.serve.proto.generate")
STUBS = REPO_ROOT / "serve" / "proto"


@pytest.fixture(scope="module")
def tools():
    pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) is needed to regenerate the stubs")
    installed = generate.installed_tools_version()
    assert installed == generate.GRPCIO_TOOLS_VERSION, (
        f"grpcio-tools {installed} installed; the stubs are pinned to {generate.GRPCIO_TOOLS_VERSION} (make install)")


def test_committed_stubs_are_up_to_date(tools, tmp_path):
    written = generate.generate(tmp_path)
    assert sorted(p.name for p in written) == sorted(generate.GENERATED)
    for fresh in written:
        committed = STUBS / fresh.name
        assert committed.is_file(), f"{committed} missing: run `make protos`"
        assert committed.read_text() == fresh.read_text(), f"{committed.name} is stale: run `make protos`"


def test_negative_control_a_changed_proto_is_detected(tools, tmp_path):
    proto_root = tmp_path / "protos"
    shutil.copytree(REPO_ROOT / "protos", proto_root)
    proto = proto_root / generate.PROTO_FILE
    field = "uint32 sentence_index = 6;"
    proto.write_text(proto.read_text().replace(field, field + "\n  bool extra = 99;"))
    written = generate.generate(tmp_path / "out", proto_root=proto_root)
    changed = [p.name for p in written if p.read_text() != (STUBS / p.name).read_text()]
    assert "tts_pb2.py" in changed


def test_stub_imports_are_package_relative():
    from vitsrt.serve.proto import tts_pb2, tts_pb2_grpc

    text = (STUBS / "tts_pb2_grpc.py").read_text()
    assert "from vitsrt.v1 import" not in text and "from . import tts_pb2" in text
    assert tts_pb2_grpc.TextToSpeechStub is not None
    service = tts_pb2.DESCRIPTOR.services_by_name["TextToSpeech"]
    assert service.full_name == "vitsrt.v1.TextToSpeech"
    assert [m.name for m in service.methods] == ["ListVoices", "Synthesize", "SynthesizeStream"]
    assert tts_pb2.AudioEncoding.Value("WAV") == 3 and tts_pb2.AudioEncoding.Value("PCM_S16LE") == 1
