"""The ASGI app of the HTTP door: OpenAI's speech endpoint, model and voice listings, health, metrics, a web page.

Status codes: a request that cannot be parsed or names something unknown is 400 (unknown model: 404 as at
OpenAI), a missing or wrong bearer token 401, an unknown URL 404, a wrong method 405, a body that does not
arrive within `request_timeout` 408, a body larger than `max_request_bytes` or a request whose audio would pass
the engine's budget (BudgetError: the same request is refused again, so not "retry later") 413, the door's or
the engine's stream limit 503 with Retry-After. Every refusal has OpenAI's body
`{"error": {"message", "type", "param", "code"}}`; client-sent strings in messages are clipped.

Audio goes out as it is decoded: the first chunk is awaited before the status line (so every error the engine
finds at admission, and a budget refusal of the first sentence, is a proper status), then each decode window
is one HTTP chunk. A failure after that cannot change the status any more: an `audio` stream is cut without
its final chunk (clients see an incomplete body, not a short file that looks whole); an `sse` stream ends with
an `error` event. A client that goes away cancels its engine stream.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from vitsrt.audio import StreamEncoder
from vitsrt.errors import BudgetError, InputError, NotFoundError, OverloadedError, VitsrtError, clip
from vitsrt.serve.engine.engine import Engine
from vitsrt.serve.engine.timestamps import rescale
from vitsrt.serve.engine.types import AudioChunk, EmotionPrompt, SynthesisRequest
from vitsrt.serve.grpc.auth import parse_bearer, token_matches
from vitsrt.serve.grpc.metrics import ServerMetrics
from vitsrt.serve.http.openai_api import (
    CONTENT_TYPES,
    MODEL_ALIASES,
    ApiError,
    SpeechRequest,
    encoding_for,
    openai_voice_map,
    parse_speech_request,
    resolve_model,
    resolve_voice,
)

logger = logging.getLogger(__name__)

# Engine InputError fields -> the request field a client sent.
_PARAMS = {"text": "input", "length_scale": "speed", "speakers": "voice"}


class HttpConfig(BaseModel):
    """The HTTP door's settings; `vitsrt serve` derives them from its ServerConfig (same token and limits)."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = 8080  # 0 = pick a free port (HttpDoor.start returns it)
    auth_token: str | None = None
    tls_cert: Path | None = None  # PEM files; both or neither (uvicorn serves HTTPS with them)
    tls_key: Path | None = None
    max_request_bytes: int = 1 << 20
    max_concurrent_streams: int = 64
    request_timeout: float = 10.0  # the whole body must arrive within this (408 otherwise)
    max_call_seconds: float = 600.0  # a stream still running after this is cut
    grace_seconds: float = 10.0
    drain_seconds: float = 0.0
    metrics_auth: bool = True
    page: bool = True  # the web page at /


@dataclass
class _Call:
    """One speech request being streamed: what the body generator and the close hook share."""

    request: SpeechRequest
    chunks: AsyncIterator[AudioChunk]
    first: AudioChunk | None
    encoder: StreamEncoder
    started: float
    voice: str
    speaker: str
    samples: int = 0
    sample_rate: int = 0
    closed: bool = False
    spans: dict[str, Any] | None = None  # the last chunk's timestamps event, until sse_pieces sends it


def _page() -> str | None:
    try:
        return resources.files("vitsrt.serve.http").joinpath("index.html").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):  # a build without the package data
        return None


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _engine_error(exc: VitsrtError, emotion_field: str = "emotion") -> ApiError:
    """OpenAI-shaped refusal for an error the engine raised at admission (or before the first audio);
    `emotion_field` is the request field the emotion prompt came from (`emotion` or `instructions`)."""
    message = clip(str(exc), 300)[1:-1]  # clip() quotes; keep its cut, not its quotes
    if isinstance(exc, BudgetError):
        return ApiError(413, message, param="input", code="request_too_large")
    if isinstance(exc, OverloadedError):
        return ApiError(503, message, code="server_overloaded", headers={"Retry-After": "1"})
    if isinstance(exc, InputError):
        param = emotion_field if exc.field.startswith("emotion") else _PARAMS.get(exc.field, exc.field)
        return ApiError(400, message, param=param, code="invalid_value")
    if isinstance(exc, NotFoundError):
        return ApiError(400, message, param="voice", code="invalid_value")
    return ApiError(500, "internal error", code="internal_error")


def _encoder(request: SpeechRequest, voice_rate: int) -> StreamEncoder:
    """The stream's encoder, made before any engine work so a format this install cannot write (PyAV or soxr
    missing) is a 400 rather than a failure after the first audio."""
    try:
        return StreamEncoder(encoding_for(request.response_format), voice_rate, request.sample_rate)
    except VitsrtError as exc:
        param = "sample_rate" if "resampl" in str(exc) else "response_format"
        raise ApiError(400, clip(str(exc), 300)[1:-1], param=param, code="unsupported_format") from None


def _sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def _timestamps_event(chunk: AudioChunk, rate: int) -> dict[str, Any] | None:
    """The SSE event for a chunk's word/phoneme spans (None without any): positions in samples at the output
    `rate`, from the stream's first sample, as on the gRPC AudioChunk (see vitsrt.serve.engine.types)."""
    if not (chunk.words or chunk.phonemes):
        return None
    words = [{"text": w.text, "start_sample": w.start_sample, "end_sample": w.end_sample}
             for w in rescale(chunk.words, chunk.sample_rate, rate)]
    phonemes = [{"id": p.id, "symbol": p.symbol, "start_sample": p.start_sample, "end_sample": p.end_sample}
                for p in rescale(chunk.phonemes, chunk.sample_rate, rate)]
    return {"type": "speech.timestamps", "sample_rate": rate, "words": words, "phonemes": phonemes}


class SpeechService:
    """The routes' behaviour over one engine; `ready` says whether the door takes new work (readiness)."""

    def __init__(self, engine: Engine, config: HttpConfig, metrics: ServerMetrics, ready: Callable[[], bool]):
        self.engine = engine
        self.config = config
        self.metrics = metrics
        self.ready = ready
        self.active = 0
        self._token = config.auth_token.encode() if config.auth_token else None

    # ----- shared checks ----------------------------------------------------------------------------

    def authorize(self, request: Request, token_required: bool = True) -> None:
        if self._token is None or not token_required:
            return
        given = parse_bearer(request.headers.get("authorization", ""))
        if token_matches(given, self._token):
            return
        message = ("You didn't provide an API key: send 'Authorization: Bearer TOKEN'." if given is None
                   else "Incorrect API key provided.")
        raise ApiError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": 'Bearer realm="vitsrt"'})

    async def read_json(self, request: Request) -> object:
        limit = self.config.max_request_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"request body of {declared} bytes is larger than the limit of {limit} bytes",
                           code="request_too_large")
        body = bytearray()
        try:
            async with asyncio.timeout(self.config.request_timeout):
                async for piece in request.stream():
                    body += piece
                    if len(body) > limit:
                        raise ApiError(413, f"request body is larger than the limit of {limit} bytes",
                                       code="request_too_large")
        except TimeoutError:
            raise ApiError(408, f"request body not received within {self.config.request_timeout:g} s",
                           code="request_timeout") from None
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested past the parser's depth
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not valid JSON"
            raise ApiError(400, f"We could not parse the JSON body of your request ({reason}).",
                           code="invalid_json") from None

    # ----- listings -----------------------------------------------------------------------------------

    def models(self) -> dict[str, Any]:
        names = [*self.engine.voices, *MODEL_ALIASES]
        return {"object": "list", "data": [self.model(name) for name in names]}

    def model(self, name: str) -> dict[str, Any]:
        voice = resolve_model(name, self.engine.voices, self.engine.default_voice)
        entry = {"id": name, "object": "model", "created": 0, "owned_by": "vitsrt"}
        return entry if voice == name else {**entry, "voice": voice}  # an alias says which voice it speaks

    def voices(self) -> dict[str, Any]:
        data = []
        for name, info in self.engine.voices.items():
            data.append({"id": name, "object": "voice", "default": name == self.engine.default_voice,
                         "sample_rate": info.sample_rate, "speakers": list(info.speakers),
                         "languages": list(info.languages), "frontend": info.frontend,
                         "openai_voices": openai_voice_map(info)})
        return {"object": "list", "default_voice": self.engine.default_voice, "data": data}

    # ----- speech -------------------------------------------------------------------------------------

    def plan(self, request: SpeechRequest) -> tuple[SynthesisRequest, StreamEncoder]:
        """The engine request and the stream's encoder for a parsed request."""
        voices = self.engine.voices
        model_voice = resolve_model(request.model, voices, self.engine.default_voice)
        voice, speaker, blend = resolve_voice(request.voice_name, model_voice, request.model, voices)
        limit = self.engine.options.max_text_chars
        if not request.input.strip():
            raise ApiError(400, "input is empty", param="input", code="invalid_value")
        if len(request.input) > limit:
            raise ApiError(400, f"input has {len(request.input)} characters, the limit is {limit}", param="input",
                           code="string_above_max_length")
        if request.timestamps and request.stream_format != "sse":  # an audio body has no place for them
            raise ApiError(400, "timestamps are sent as events: set stream_format to 'sse'", param="timestamps",
                           code="invalid_value")
        encoder = _encoder(request, voices[voice].sample_rate)
        length_scale = None
        if request.speed is not None:  # relative to the voice's own pace, so 1.0 sounds as trained
            length_scale = self.engine.pipeline(voice).manifest.inference.length_scale / request.speed
        emotion = self._emotion(request, voice)
        try:
            synthesis = SynthesisRequest(voice=voice, speaker="" if blend else speaker, speakers=blend,
                                         text=request.input, language=request.language, seed=request.seed,
                                         length_scale=length_scale, normalize_text=request.normalize_text,
                                         timestamps=request.timestamps, emotion=emotion)
        except InputError as exc:
            raise _engine_error(exc, request.emotion_field) from None
        return synthesis, encoder

    def _emotion(self, request: SpeechRequest, voice: str) -> EmotionPrompt | None:
        """The request's emotion prompt for `voice` (see SpeechRequest.emotion_prompt); 400 naming the field it
        came from for a prompt the engine's request type refuses (e.g. a too-long `instructions`)."""
        emotion = self.engine.pipeline(voice).manifest.emotion
        prompt = request.emotion_prompt(emotion is not None and emotion.clap_model is not None)
        if prompt is None:
            return None
        field = request.emotion_field
        try:
            return EmotionPrompt(text=prompt)
        except (ValidationError, InputError) as exc:
            reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else exc.reason
            raise ApiError(400, f"{field}: {reason}", param=field, code="invalid_value") from None

    def acquire(self) -> None:
        """Take one of `max_concurrent_streams` (503 when none is left); `release` gives it back."""
        if self.active >= self.config.max_concurrent_streams:
            raise ApiError(503, f"server is at its limit of {self.config.max_concurrent_streams} concurrent "
                           "streams; retry later", code="server_overloaded", headers={"Retry-After": "1"})
        self.active += 1  # event-loop only: a plain counter is race-free
        self.metrics.active_streams.inc()

    def release(self) -> None:
        self.active -= 1
        self.metrics.active_streams.dec()

    async def open_stream(self, request: SpeechRequest) -> _Call:
        """Admit the request in the engine and wait for its first audio (errors here still get a status)."""
        synthesis, encoder = self.plan(request)
        started = time.perf_counter()
        chunks = self.engine.astream(synthesis)
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            first = None
        except VitsrtError as exc:
            await chunks.aclose()
            raise _engine_error(exc, request.emotion_field) from None
        except BaseException:
            await chunks.aclose()
            raise
        self.metrics.time_to_first_audio.labels("http:speech").observe(time.perf_counter() - started)
        speaker = synthesis.speaker or ",".join(f"{w.speaker}:{w.weight:g}" for w in synthesis.speakers)
        return _Call(request, chunks, first, encoder, started, synthesis.voice, speaker)

    async def _chunks(self, call: _Call) -> AsyncIterator[AudioChunk]:
        if call.first is not None:
            yield call.first
            async for chunk in call.chunks:
                yield chunk

    async def audio_pieces(self, call: _Call) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks(call):
                call.samples += len(chunk.audio)
                call.sample_rate = chunk.sample_rate
                call.spans = _timestamps_event(chunk, call.encoder.sample_rate)
                yield call.encoder.encode(chunk.audio)
        except VitsrtError as exc:  # counted here; the caller ends the stream as its format allows
            self.metrics.errors.labels("http:speech", str(_engine_error(exc).status)).inc()
            raise
        tail = call.encoder.finish()
        if tail:
            yield tail

    async def sse_pieces(self, call: _Call) -> AsyncIterator[bytes]:
        try:
            async for piece in self.audio_pieces(call):
                if call.spans is not None:  # before the audio they start in
                    yield _sse(call.spans)
                    call.spans = None
                if piece:
                    yield _sse({"type": "speech.audio.delta", "audio": base64.b64encode(piece).decode()})
        except VitsrtError as exc:  # the status is sent already: say it in the stream, then end it cleanly
            logger.warning("http stream failed after its first audio: %s", clip(str(exc), 300))
            yield _sse({"type": "error", **_engine_error(exc).body()})
            return
        chars = len(call.request.input)  # no tokeniser here: characters stand in for OpenAI's input tokens
        yield _sse({"type": "speech.audio.done", "usage": {"input_tokens": chars, "output_tokens": 0,
                                                           "total_tokens": chars}})

    async def close(self, call: _Call) -> None:
        if call.closed:
            return
        call.closed = True
        await call.chunks.aclose()  # cancels the engine stream if it is still running
        self.metrics.latency.labels("http:speech").observe(time.perf_counter() - call.started)
        if call.sample_rate:
            self.metrics.audio_seconds.labels("http:speech").inc(call.samples / call.sample_rate)


class AudioStream(Response):
    """Response that sends `pieces` as they come (chunked), cut short by a vanished client (which cancels
    the stream) or by `max_seconds`. A failure after the status line leaves out the final chunk, so the client
    sees an incomplete response rather than a complete-looking short one (uvicorn logs one line about it)."""

    def __init__(self, headers: dict[str, str], pieces: AsyncIterator[bytes], on_close: Callable[[], Any],
                 max_seconds: float):
        super().__init__(status_code=200)
        self.stream_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self.pieces = pieces
        self.on_close = on_close
        self.max_seconds = max_seconds

    async def _send_all(self, send: Callable[..., Any]) -> bool:
        await send({"type": "http.response.start", "status": 200, "headers": self.stream_headers})
        try:
            async for piece in self.pieces:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        except VitsrtError as exc:
            logger.warning("http stream cut after its first audio: %s", clip(str(exc), 300))
            return False
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        sending = asyncio.ensure_future(self._send_all(send))
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            done, _ = await asyncio.wait({sending, gone}, timeout=self.max_seconds,
                                         return_when=asyncio.FIRST_COMPLETED)
            if sending not in done:
                reason = "the client went away" if gone in done else f"it ran past {self.max_seconds:g} s"
                logger.info("http stream cancelled: %s", reason)
        finally:
            for task in (sending, gone):
                task.cancel()
            await asyncio.gather(sending, gone, return_exceptions=True)
            await self.pieces.aclose()  # type: ignore[attr-defined]
            await self.on_close()


async def _disconnected(receive: Callable[..., Any]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _route_name(request: Request) -> str:
    route = request.scope.get("route")
    return f"http:{getattr(route, 'name', None) or 'other'}"


def _add_error_handlers(app: FastAPI, service: SpeechService) -> None:
    def count(request: Request, status: int) -> None:
        service.metrics.errors.labels(_route_name(request), str(status)).inc()

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        count(request, exc.status)
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            error = ApiError(404, f"Unknown request URL: {request.method} {clip(request.url.path)[1:-1]}.",
                             code="unknown_url")
        elif exc.status_code == 405:
            error = ApiError(405, f"Method {request.method} is not allowed for {request.url.path}.",
                             code="method_not_allowed", headers=dict(exc.headers or {}))
        else:
            error = ApiError(exc.status_code, str(exc.detail), code=None)
        count(request, error.status)
        return _error_response(error)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("http %s %s failed", request.method, clip(request.url.path))
        count(request, 500)
        return _error_response(ApiError(500, "internal error", code="internal_error"))


def _add_info_routes(app: FastAPI, service: SpeechService) -> None:
    page = _page() if service.config.page else None

    @app.get("/", name="page", include_in_schema=False)
    async def index() -> Response:
        if page is None:
            raise StarletteHTTPException(404)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/healthz", name="healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", name="readyz")
    async def readyz() -> JSONResponse:
        ready = service.ready()
        return JSONResponse({"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503)

    @app.get("/metrics", name="metrics")
    async def metrics(request: Request) -> Response:
        service.authorize(request, token_required=service.config.metrics_auth)
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", name="models")
    async def models(request: Request) -> dict[str, Any]:
        service.authorize(request)
        service.metrics.requests.labels("http:models").inc()
        return service.models()

    @app.get("/v1/models/{model_id:path}", name="model")
    async def model(model_id: str, request: Request) -> dict[str, Any]:
        service.authorize(request)
        service.metrics.requests.labels("http:models").inc()
        return service.model(model_id)

    @app.get("/v1/audio/voices", name="voices")
    async def voices(request: Request) -> dict[str, Any]:
        service.authorize(request)
        service.metrics.requests.labels("http:voices").inc()
        return service.voices()


def _add_speech_route(app: FastAPI, service: SpeechService) -> None:
    @app.post("/v1/audio/speech", name="speech")
    async def speech(request: Request) -> Response:
        service.metrics.requests.labels("http:speech").inc()
        service.authorize(request)
        parsed = parse_speech_request(await service.read_json(request))
        service.acquire()
        try:
            call = await service.open_stream(parsed)
        except BaseException:
            service.release()
            raise

        async def on_close() -> None:
            try:
                await service.close(call)
            finally:
                service.release()

        sse = parsed.stream_format == "sse"
        headers = {"Content-Type": "text/event-stream" if sse else CONTENT_TYPES[parsed.response_format],
                   "Cache-Control": "no-store", "X-Sample-Rate": str(call.encoder.sample_rate),
                   "X-Voice": f"{call.voice}/{call.speaker}"}
        pieces = service.sse_pieces(call) if sse else service.audio_pieces(call)
        return AudioStream(headers, pieces, on_close, service.config.max_call_seconds)


def build_app(engine: Engine, config: HttpConfig, metrics: ServerMetrics | None = None,
              ready: Callable[[], bool] = lambda: True) -> FastAPI:
    """The FastAPI app around `engine` (which stays owned by the caller)."""
    service = SpeechService(engine, config, metrics or ServerMetrics(engine.stats), ready)
    app = FastAPI(title="vitsrt", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    _add_error_handlers(app, service)
    _add_info_routes(app, service)
    _add_speech_route(app, service)
    return app
