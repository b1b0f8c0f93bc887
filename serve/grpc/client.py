"""A small blocking client for `vitsrt.v1.TextToSpeech` (used by `vitsrt client`, the tests and benchmarks).

    with TtsClient("127.0.0.1:50051") as client:
        result = client.synthesize("Hello there.", seed=1)
        streamed = client.synthesize_streaming("A longer text. Two sentences.")  # + first_audio_seconds
        for chunk in client.chunks(build_request("Played as it arrives.")):
            play(chunk.audio)

Errors come back as `grpc.RpcError` with the server's status code and message; the client does not
translate them, so callers can branch on `err.code()` exactly as with any gRPC service.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from vitsrt.audio import Encoding, decode_pcm, finalize_wav, wav_bytes
from vitsrt.sampling import Sampling
from vitsrt.serve.proto import tts_pb2, tts_pb2_grpc

# Unary responses carry whole utterances: 5000 characters of text can be minutes of audio.
DEFAULT_MAX_RECEIVE_BYTES = 256 << 20


def build_request(
    text: str | None = None,
    *,
    phone_ids: list[int] | None = None,
    tone_ids: list[int] | None = None,
    language_ids: list[int] | None = None,
    voice: str = "",
    speaker: str = "",
    language: str = "",
    seed: int | None = None,
    encoding: Encoding | int = Encoding.PCM_S16LE,
    **sampling: float | None,
) -> tts_pb2.SynthesizeRequest:
    """A SynthesizeRequest; None leaves an optional field unset (= the voice's default).

    `sampling` takes vitsrt.sampling.Sampling's fields by name (length_scale=1.2, ...), sent as given: ranges
    are the server's to check, so a client can send any value.
    """
    unknown = sorted(set(sampling) - set(Sampling.model_fields))
    if unknown:
        raise TypeError(f"build_request() got unexpected keyword arguments: {', '.join(unknown)}")
    message = tts_pb2.SynthesizeRequest(voice=voice, speaker=speaker, language=language, encoding=int(encoding))
    if text is not None:
        message.text = text
    if phone_ids is not None:
        message.phonemes.phone_ids.extend(phone_ids)
        message.phonemes.tone_ids.extend(tone_ids or [])
        message.phonemes.language_ids.extend(language_ids or [])
    for name, value in {**sampling, "seed": seed}.items():
        if value is not None:
            setattr(message, name, value)
    return message


@dataclass
class ReceivedAudio:
    """What one call returned: the raw bytes as sent plus client-side timings."""

    data: bytes
    sample_rate: int
    encoding: Encoding
    chunks: int = 1
    first_audio_seconds: float = 0.0  # from sending the request to the first audio bytes
    total_seconds: float = 0.0
    chunk_arrivals: list[float] = field(default_factory=list)  # seconds since the request, per chunk
    # Streaming with SynthesizeRequest.timestamps: every chunk's spans in order (tts_pb2 messages)
    words: list[Any] = field(default_factory=list)
    phonemes: list[Any] = field(default_factory=list)

    @property
    def samples(self) -> np.ndarray:
        """float32 samples (WAV: the header is skipped)."""
        if self.encoding is Encoding.WAV:
            return decode_pcm(self.data[44:], Encoding.PCM_S16LE)
        return decode_pcm(self.data, self.encoding)

    @property
    def duration_seconds(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0

    @property
    def real_time_factor(self) -> float:
        """Wall time / audio duration (< 1 is faster than real time)."""
        duration = self.duration_seconds
        return self.total_seconds / duration if duration else float("inf")

    def wav(self) -> bytes:
        """A complete WAV file of this audio, whatever encoding it came in."""
        if self.encoding is Encoding.WAV:
            return finalize_wav(self.data)
        return wav_bytes(self.samples, self.sample_rate)


class TtsClient:
    """Blocking client over one channel. Thread-safe: gRPC channels and stubs may be shared by threads."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        token: str | None = None,
        root_certificates: bytes | str | Path | None = None,
        tls: bool = False,
        server_name_override: str | None = None,
        max_receive_bytes: int = DEFAULT_MAX_RECEIVE_BYTES,
        timeout: float | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ):
        options = [("grpc.max_receive_message_length", max_receive_bytes), *options]  # extra channel options
        if server_name_override:
            options.append(("grpc.ssl_target_name_override", server_name_override))
        if root_certificates is not None or tls:
            roots = root_certificates
            if isinstance(roots, str | Path):
                roots = Path(roots).read_bytes()
            self.channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(roots), options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = tts_pb2_grpc.TextToSpeechStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout

    def __enter__(self) -> TtsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def list_voices(self) -> tts_pb2.ListVoicesResponse:
        return self.stub.ListVoices(tts_pb2.ListVoicesRequest(), metadata=self.metadata, timeout=self.timeout)

    def call_unary(self, request: tts_pb2.SynthesizeRequest) -> ReceivedAudio:
        started = time.perf_counter()
        reply = self.stub.Synthesize(request, metadata=self.metadata, timeout=self.timeout)
        elapsed = time.perf_counter() - started
        return ReceivedAudio(reply.audio, reply.sample_rate, Encoding.from_wire(reply.encoding), 1, elapsed,
                             elapsed, [elapsed])

    def chunks(self, request: tts_pb2.SynthesizeRequest) -> Iterator[tts_pb2.AudioChunk]:
        """The raw chunk messages; breaking out of the loop cancels the call (and the server's work)."""
        call = self.stub.SynthesizeStream(request, metadata=self.metadata, timeout=self.timeout)
        try:
            yield from call
        finally:
            call.cancel()

    def call_streaming(self, request: tts_pb2.SynthesizeRequest) -> ReceivedAudio:
        """Run a streaming call to the end and join its audio, timing each chunk's arrival."""
        started = time.perf_counter()
        parts: list[bytes] = []
        arrivals: list[float] = []
        sample_rate, encoding = 0, Encoding.PCM_S16LE
        words: list[Any] = []
        phonemes: list[Any] = []
        for chunk in self.chunks(request):
            arrivals.append(time.perf_counter() - started)
            parts.append(chunk.audio)
            words.extend(chunk.words)
            phonemes.extend(chunk.phonemes)
            sample_rate = chunk.sample_rate
            encoding = Encoding.from_wire(chunk.encoding)
        total = time.perf_counter() - started
        first = next((t for t, p in zip(arrivals, parts, strict=True) if p), total)
        return ReceivedAudio(b"".join(parts), sample_rate, encoding, len(parts), first, total, arrivals, words,
                             phonemes)

    def synthesize(self, text: str, **fields: object) -> ReceivedAudio:
        """Unary synthesis of `text`; keyword fields as in `build_request`."""
        return self.call_unary(build_request(text, **fields))  # type: ignore[arg-type]

    def synthesize_streaming(self, text: str, **fields: object) -> ReceivedAudio:
        """Streaming synthesis of `text`, collected; keyword fields as in `build_request`."""
        return self.call_streaming(build_request(text, **fields))  # type: ignore[arg-type]
