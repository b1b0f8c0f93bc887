"""Bad input, limits, authentication, TLS, health and reflection over a real server + engine. After every
refusal the server still serves a normal request."""

from __future__ import annotations

import shutil
import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from grpc_support import RunningServer, ids_request, open_engine, phone_ids
from vitsrt.audio import Encoding
from vitsrt.serve.grpc.client import TtsClient, build_request
from vitsrt.serve.proto import tts_pb2

MAX_TEXT = 5000
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _ids(tokens=20, seed=1, **overrides):
    ids = phone_ids(tokens, seed)
    ids.update(overrides)
    return ids


# (case, request, expected status, text the message must contain — the field at fault for INVALID_ARGUMENT)
BAD_REQUESTS = [
    ("empty text", build_request(""), INVALID, "text"),
    ("blank text", build_request("  \n\t "), INVALID, "text"),
    ("100k-char text", build_request("a" * 100_000), INVALID, "text"),
    ("text on an ids-only voice", build_request("hello there"), INVALID, "text"),
    ("no input", build_request(), INVALID, "input"),
    ("empty phone ids", build_request(phone_ids=[]), INVALID, "phone_ids"),
    ("too many phone ids", build_request(**_ids(MAX_TEXT + 2)), INVALID, "phone_ids"),
    ("phone id out of range", build_request(**_ids(phone_ids=[0, 112, 0] + [0] * 17)), INVALID, "phone_ids"),
    ("negative phone id", build_request(**_ids(phone_ids=[0, -1, 0] + [0] * 17)), INVALID, "phone_ids"),
    ("tone id out of range", build_request(**_ids(tone_ids=[0, 99] + [0] * 18)), INVALID, "tone_ids"),
    ("language id out of range", build_request(**_ids(language_ids=[7] * 20)), INVALID, "language_ids"),
    ("tone ids of the wrong length", build_request(**_ids(tone_ids=[0, 1, 0])), INVALID, "tone_ids"),
    ("unknown voice", ids_request(20, 1, voice="nobody"), grpc.StatusCode.NOT_FOUND, "nobody"),
    ("unknown speaker", ids_request(20, 1, speaker="carol"), grpc.StatusCode.NOT_FOUND, "carol"),
    ("NaN length_scale", ids_request(20, 1, length_scale=float("nan")), INVALID, "length_scale"),
    ("infinite noise_scale", ids_request(20, 1, noise_scale=float("inf")), INVALID, "noise_scale"),
    ("negative length_scale", ids_request(20, 1, length_scale=-1.0), INVALID, "length_scale"),
    ("zero length_scale", ids_request(20, 1, length_scale=0.0), INVALID, "length_scale"),
    ("negative noise_scale_w", ids_request(20, 1, noise_scale_w=-0.5), INVALID, "noise_scale_w"),
    ("sdp_ratio above 1", ids_request(20, 1, sdp_ratio=1.5), INVALID, "sdp_ratio"),
    ("unknown encoding", ids_request(20, 1, encoding=7), INVALID, "encoding"),
]


def _with_invalid_utf8(field_number: int) -> bytes:
    """A serialized SynthesizeRequest whose string field `field_number` holds bytes that are not UTF-8
    (protobuf clients refuse to build one, a raw sender can)."""
    valid = ids_request(20, 1).SerializeToString()
    bad = b"\xff\xfe\xc3"
    return valid + bytes([field_number << 3 | 2, len(bad)]) + bad


RAW_BAD_REQUESTS = [
    ("invalid UTF-8 in voice", _with_invalid_utf8(1), INVALID, "request"),
    ("invalid UTF-8 in text", _with_invalid_utf8(3), INVALID, "request"),
    ("truncated protobuf", ids_request(20, 1).SerializeToString()[:-3], INVALID, "request"),
    ("oversized message", build_request("a" * (2 << 20)).SerializeToString(),
     grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
]


@pytest.fixture(scope="module")
def engine(fixture_voice):
    engine = open_engine(fixture_voice, max_text_chars=MAX_TEXT)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def server(engine):
    from vitsrt.serve.grpc.server import ServerConfig

    with RunningServer(engine, ServerConfig(port=0, metrics_port=0)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with TtsClient(server.target, timeout=30) as client:
        client.wait_ready()
        yield client


def _assert_still_serves(client: TtsClient) -> None:
    assert client.call_unary(ids_request(12, seed=1)).duration_seconds > 0
    assert client.call_streaming(ids_request(12, seed=1)).chunks >= 1


@pytest.mark.parametrize("streaming", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize(("case", "request_message", "code", "mention"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request_gets_the_right_status(client, case, request_message, code, mention, streaming):
    with pytest.raises(grpc.RpcError) as caught:
        if streaming:
            client.call_streaming(request_message)
        else:
            client.call_unary(request_message)
    assert caught.value.code() is code, (case, caught.value.details())
    assert mention in caught.value.details(), (case, caught.value.details())


@pytest.mark.parametrize(("case", "payload", "code", "mention"), RAW_BAD_REQUESTS, ids=[c[0] for c in RAW_BAD_REQUESTS])
def test_malformed_bytes_get_the_right_status(client, case, payload, code, mention):
    unary = client.channel.unary_unary("/vitsrt.v1.TextToSpeech/Synthesize")
    streaming = client.channel.unary_stream("/vitsrt.v1.TextToSpeech/SynthesizeStream")
    for method, invoke in (("Synthesize", lambda: unary(payload, timeout=30)),
                           ("SynthesizeStream", lambda: list(streaming(payload, timeout=30)))):
        with pytest.raises(grpc.RpcError) as caught:
            invoke()
        assert caught.value.code() is code, (case, method, caught.value.details())
        assert mention in caught.value.details(), (case, method, caught.value.details())


def test_negative_control_the_good_requests_pass(client):
    """The table's requests differ from valid ones only in the broken field."""
    assert client.call_unary(build_request(**_ids())).duration_seconds > 0
    assert client.call_unary(ids_request(20, 1, length_scale=1.0, noise_scale=0.0, sdp_ratio=1.0,
                                         speaker="bob", encoding=Encoding.FLOAT32LE)).duration_seconds > 0
    valid = ids_request(20, 1).SerializeToString()
    reply = tts_pb2.SynthesizeResponse.FromString(client.channel.unary_unary("/vitsrt.v1.TextToSpeech/Synthesize")(
        valid + bytes([1 << 3 | 2, 4]) + b"tiny", timeout=30))
    assert reply.duration_seconds > 0


def test_server_still_serves_and_counted_the_errors(client, server):
    for request_message in (build_request(""), ids_request(20, 1, voice="nobody")):
        with pytest.raises(grpc.RpcError):
            client.call_unary(request_message)
    _assert_still_serves(client)
    assert server.metric("vitsrt_errors_total", method="Synthesize", code="INVALID_ARGUMENT") >= 1
    assert server.metric("vitsrt_errors_total", method="Synthesize", code="NOT_FOUND") >= 1
    assert server.metric("vitsrt_active_streams") == 0


def test_health_and_reflection(client, server):
    health = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "vitsrt.v1.TextToSpeech"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    database = ProtoReflectionDescriptorDatabase(client.channel)
    assert "vitsrt.v1.TextToSpeech" in database.get_services()
    described = database.FindFileContainingSymbol("vitsrt.v1.TextToSpeech")
    assert described.package == "vitsrt.v1" and described.name == "vitsrt/v1/tts.proto"


def test_bearer_token(engine):
    from vitsrt.serve.grpc.server import ServerConfig

    with RunningServer(engine, ServerConfig(port=0, metrics_port=0, auth_token="s3cret")) as server:
        for token, ok in ((None, False), ("wrong", False), ("s3cret ", True), ("s3cret", True)):
            with TtsClient(server.target, token=token, timeout=30) as client:
                if ok:
                    assert client.call_streaming(ids_request(12, seed=1)).chunks >= 1
                    assert client.list_voices().default_voice == "tiny"
                    continue
                for call in (client.list_voices, lambda c=client: c.call_unary(ids_request(12, seed=1)),
                             lambda c=client: c.call_streaming(ids_request(12, seed=1))):
                    with pytest.raises(grpc.RpcError) as caught:
                        call()
                    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with TtsClient(server.target) as anonymous:  # health answers without a token (load balancer probes)
            reply = health_pb2_grpc.HealthStub(anonymous.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            reflect = reflection_pb2_grpc.ServerReflectionStub(anonymous.channel)
            with pytest.raises(grpc.RpcError) as caught:
                list(reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                  timeout=10))
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert server.metric("vitsrt_errors_total", method="Synthesize", code="UNAUTHENTICATED") == 2


def _self_signed(directory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls(engine, tmp_path):
    from vitsrt.serve.grpc.server import ServerConfig

    cert, key = _self_signed(tmp_path)
    with RunningServer(engine, ServerConfig(port=0, tls_cert=cert, tls_key=key)) as server:
        with TtsClient(server.target, root_certificates=cert, timeout=30) as client:
            assert client.call_streaming(ids_request(12, seed=1)).chunks >= 1
        with TtsClient(server.target, timeout=5) as plaintext, pytest.raises(grpc.RpcError) as caught:
            plaintext.list_voices()
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
