"""The per-request text normalisation switch (`normalize_text`): on by default, off on request, the same on
every door (engine, gRPC wire conversion, HTTP body)."""

from __future__ import annotations

import pytest

from vitsrt.serve.engine.engine import Engine, EngineOptions
from vitsrt.serve.engine.types import SynthesisRequest
from vitsrt.serve.grpc.convert import request_from_proto
from vitsrt.serve.proto import tts_pb2
from vitsrt.voices import default_voice_dir

pytest.importorskip("phonemizer", reason="the default voice speaks text through the ipa extra")

TEXT = "It costs $19.99 on 12/03/2024."


@pytest.fixture(scope="module")
def pipeline():
    with Engine.open([default_voice_dir()], options=EngineOptions(threads=1)) as engine:
        yield engine.pipeline()


def ids(pipeline, request: SynthesisRequest) -> list[list[int]]:
    return [segment.ids.phone_ids.tolist() for segment in pipeline.segments_for(request, 1, 1)]


def test_normalisation_is_on_by_default_and_off_on_request(pipeline):
    frontend = pipeline.frontend
    spoken = ids(pipeline, SynthesisRequest(text=TEXT))
    raw = ids(pipeline, SynthesisRequest(text=TEXT, normalize_text=False))
    assert spoken == [frontend.from_text(TEXT, expand=True).phone_ids.tolist()]
    assert raw == [frontend.from_text(TEXT, expand=False).phone_ids.tolist()]
    assert spoken != raw  # the switch changes what is said


def test_the_wire_and_the_http_body_carry_the_switch():
    unset = request_from_proto(tts_pb2.SynthesizeRequest(text=TEXT), 5000)[0]
    off = request_from_proto(tts_pb2.SynthesizeRequest(text=TEXT, normalize_text=False), 5000)[0]
    assert unset.normalize_text is True and off.normalize_text is False
    from vitsrt.serve.http.openai_api import SpeechRequest

    body = SpeechRequest.model_validate({"model": "tts-1", "input": TEXT, "voice": "slt", "normalize_text": False})
    assert body.normalize_text is False
    assert SpeechRequest.model_validate({"model": "tts-1", "input": TEXT, "voice": "slt"}).normalize_text is True
