"""Triton Python-backend BLS model ``<prefix>_tts``: text or ids in, audio chunks out.

The repository generator copies this file as ``model.py`` of both BLS models:

* ``<prefix>_tts`` (``decoupled: true``) streams one response per decoded window, exactly like
  ``Engine.stream``: the last response carries ``IS_LAST = true`` and the final flag;
* ``<prefix>_tts_oneshot`` answers one response with the whole utterance, like ``Engine.synthesize``.

Nothing is re-implemented here: the front end, host length regulation, prior sampling and exact chunked
decoding are :class:`vitsrt.serve.engine.pipeline.VoicePipeline`; only the stage backend differs.
:class:`TritonBlsBackend` implements the engine's ``StageBackend`` interface by calling the stage models
of the same server through BLS requests, so concurrent streams meet in the stage models' dynamic
batchers (decoder windows of equal size batch together).

Inputs (all optional except one of TEXT / PHONE_IDS): TEXT, SPEAKER, LANGUAGE (BYTES [1]);
PHONE_IDS, TONE_IDS, LANGUAGE_IDS (INT64 [-1]); SPEAKER_ID (INT64 [1], instead of SPEAKER); SEED (UINT64
[1]); one FP32 [1] per sampling value, its field name in capitals (LENGTH_SCALE, ...). The strings can also come as
request parameters "text", "speaker", "language" (a parameter wins over the tensor). Under numpy 2 the
Python-backend stub of Triton 2.51 (the nvidia-pytriton wheel) loses string tensors before this code
runs (see :mod:`vitsrt.serve.triton.pb_tensors`): such a request gets an error naming the parameter to
use instead, and the model keeps serving.
Outputs: AUDIO (FP32 [-1], mono in [-1, 1]), SAMPLE_RATE (INT32 [1]), CHUNK_INDEX (INT32 [1]),
IS_LAST (BOOL [1]).
"""

from __future__ import annotations

import json
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from vitsrt.errors import InputError, NotFoundError, OverloadedError, VitsrtError, clip
from vitsrt.serve.engine.pipeline import DecodeJob, VoicePipeline
from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest
from vitsrt.serve.engine.windows import ONE_SHOT, WindowPolicy, window_fields
from vitsrt.serve.triton.layout import SAMPLING_TENSORS, from_wire, stage_layouts, stage_model_name, to_wire
from vitsrt.serve.triton.pb_tensors import UNREADABLE, from_pb_tensor, patch_bytes_inputs, to_pb_tensor
from vitsrt.voice import Voice, read_manifest

# String inputs reachable as request parameters too: under numpy 2 the stub cannot deliver the tensors.
_STRING_PARAMETERS = {"TEXT": "text", "SPEAKER": "speaker", "LANGUAGE": "language"}

# At import, before the first request: the stub decodes a request's string tensors before execute() runs,
# and its own decoder aborts the stub process on what numpy 2 leaves of them.
patch_bytes_inputs(pb_utils)


class TritonBlsBackend:
    """The engine's StageBackend over BLS: ``run(stage, arrays)`` is one request to ``<prefix>_<stage>``."""

    def __init__(self, voice: Voice, prefix: str, stages: list[str]):
        self.name = "triton-bls"
        self._layouts = stage_layouts(voice.manifest)
        self._models = {stage: stage_model_name(prefix, stage) for stage in stages}

    def has_stage(self, stage: str) -> bool:
        return stage in self._models

    def run(self, stage: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors_in, tensors_out = self._layouts[stage]
        wire = to_wire(tensors_in, inputs)
        request = pb_utils.InferenceRequest(
            model_name=self._models[stage],
            requested_output_names=[t.name for t in tensors_out],
            inputs=[to_pb_tensor(pb_utils, name, value) for name, value in wire.items()],
        )
        response = request.exec()
        if response.has_error():
            raise VitsrtError(f"{self._models[stage]}: {response.error().message()}")
        return {
            t.name: from_wire(t, from_pb_tensor(pb_utils.get_output_tensor_by_name(response, t.name)))
            for t in tensors_out
        }

    def close(self) -> None:
        self._models.clear()


def _parameters(request: Any) -> dict[str, Any]:
    """The request's parameters ({} when the stub predates them or none were sent)."""
    raw = request.parameters() if hasattr(request, "parameters") else ""
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _text(request: Any, name: str, parameters: dict[str, Any]) -> str | None:
    key = _STRING_PARAMETERS[name]
    if key in parameters:
        if not isinstance(parameters[key], str):
            raise InputError(key, f"the request parameter must be a string, not {clip(parameters[key])}")
        return parameters[key]
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    values = tensor.as_numpy().reshape(-1)
    if values.size == 0:
        return None
    value = values[0]
    if value is UNREADABLE:
        raise InputError(name, f"this server's Python-backend stub cannot read string tensors under numpy 2; "
                               f"send it as the request parameter {key!r}")
    if not isinstance(value, bytes):
        return str(value)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(name, "is not valid UTF-8") from None


def _array(request: Any, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else from_pb_tensor(tensor).reshape(-1)


def _first_int(request: Any, name: str) -> int | None:
    value = _array(request, name)
    return int(value[0]) if value is not None and value.size else None


def parse_request(request: Any, speaker_by_id: dict[int | None, str]) -> SynthesisRequest:
    """A Triton request's tensors as the engine's SynthesisRequest (InputError on bad values)."""
    speaker_id = _first_int(request, "SPEAKER_ID")
    if speaker_id is not None and speaker_id not in speaker_by_id:
        raise InputError("SPEAKER_ID", f"no speaker has id {speaker_id}")
    phones = _array(request, "PHONE_IDS")
    phonemes = None
    if phones is not None:
        tones, languages = _array(request, "TONE_IDS"), _array(request, "LANGUAGE_IDS")
        phonemes = PhonemeIds(
            phone_ids=phones.astype(np.int64).tolist(),
            tone_ids=None if tones is None else tones.astype(np.int64).tolist(),
            language_ids=None if languages is None else languages.astype(np.int64).tolist(),
        )
    parameters = _parameters(request)
    fields: dict[str, Any] = {
        "text": _text(request, "TEXT", parameters),
        "phonemes": phonemes,
        "speaker": _text(request, "SPEAKER", parameters) or speaker_by_id.get(speaker_id, ""),
        "language": _text(request, "LANGUAGE", parameters) or "",
    }
    seed = _array(request, "SEED")
    if seed is not None and seed.size:
        fields["seed"] = int(seed[0])
    for tensor_name, field in SAMPLING_TENSORS.items():
        value = _array(request, tensor_name)
        if value is not None and value.size:
            fields[field] = float(value[0])
    return SynthesisRequest(**fields)


def _response(audio: np.ndarray, sample_rate: int, index: int, is_last: bool) -> Any:
    return pb_utils.InferenceResponse(
        output_tensors=[
            to_pb_tensor(pb_utils, "AUDIO", np.asarray(audio, dtype=np.float32)),
            to_pb_tensor(pb_utils, "SAMPLE_RATE", np.array([sample_rate], dtype=np.int32)),
            to_pb_tensor(pb_utils, "CHUNK_INDEX", np.array([index], dtype=np.int32)),
            to_pb_tensor(pb_utils, "IS_LAST", np.array([is_last], dtype=np.bool_)),
        ]
    )


def _error(exc: BaseException) -> Any:
    """An error response whose gRPC status says whose fault it was (INTERNAL only for our own failures)."""
    errors = pb_utils.TritonError
    if isinstance(exc, NotFoundError):
        code = errors.NOT_FOUND
    elif isinstance(exc, OverloadedError):
        code = errors.UNAVAILABLE
    elif isinstance(exc, InputError):
        code = errors.INVALID_ARG
    else:
        code = errors.INTERNAL
    message = str(exc) if isinstance(exc, VitsrtError) else f"synthesis failed: {exc}"
    return pb_utils.InferenceResponse(error=errors(message, code))


class TritonPythonModel:
    """Both BLS flavours; ``parameters.mode`` ("stream" or "oneshot") picks which."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        model_dir = Path(args["model_repository"])
        manifest_path = model_dir / params.get("voice_manifest", "voice.json")
        voice = Voice(root=manifest_path.parent, manifest=read_manifest(manifest_path))
        stages = [s for s in params.get("stages", "").split(",") if s]
        backend = TritonBlsBackend(voice, params.get("stage_prefix", "vitsrt"), stages)
        self.pipeline = VoicePipeline(voice, backend, max_text_chars=int(params.get("max_text_chars", "5000")))
        self.speakers: dict[int | None, str] = {sid: name for name, sid in voice.manifest.speakers.items()}
        self.streaming = params.get("mode", "stream") == "stream"
        self.policy = WindowPolicy(**window_fields(params)) if self.streaming else ONE_SHOT
        workers = int(params.get("max_concurrent_streams", "16"))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vitsrt-bls")
        self._lock = threading.Lock()
        self._next_stream = 0
        pb_utils.Logger.log_info(f"vitsrt BLS {args['model_name']}: voice {voice.name}, stages {stages}")

    def _stream_id(self) -> int:
        with self._lock:
            self._next_stream += 1
            return self._next_stream

    def _chunks(self, request: Any, cancelled=lambda: False):
        """Yield (audio, is_last) window by window, sentence by sentence."""
        synthesis = parse_request(request, self.speakers)
        seed = synthesis.seed if synthesis.seed is not None else secrets.randbits(63)
        segments = self.pipeline.segments_for(synthesis, self._stream_id(), seed, self.policy)
        for segment in segments:
            self.pipeline.prefill([segment])
            self.pipeline.flow([segment])
            for window in segment.windows:
                if cancelled():
                    return
                audio = self.pipeline.decode([DecodeJob(segment, window)])[0]
                yield audio, window.is_last and segment is segments[-1]

    def _stream(self, request: Any) -> None:
        sender = request.get_response_sender()
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        # Only ask before the final flag went out: the server frees the response factory with it, and
        # is_cancelled() on a freed factory crashes tritonserver 2.51.
        cancelled = getattr(sender, "is_cancelled", lambda: False)
        try:
            for index, (audio, is_last) in enumerate(self._chunks(request, cancelled)):
                sender.send(_response(audio, self.pipeline.sample_rate, index, is_last), flags=final if is_last else 0)
                if is_last:
                    return
            sender.send(flags=final)  # cancelled by the client: close the stream without more audio
        except Exception as exc:  # report to this stream's client; the model keeps serving others
            sender.send(_error(exc), flags=final)

    def _one_shot(self, request: Any) -> Any:
        try:
            pieces = [audio for audio, _ in self._chunks(request)]
            return _response(np.concatenate(pieces), self.pipeline.sample_rate, 0, True)
        except Exception as exc:  # one bad request gets an error response, the batch continues
            return _error(exc)

    def execute(self, requests: list) -> list | None:
        if self.streaming:
            for request in requests:
                self._pool.submit(self._stream, request)
            return None
        return list(self._pool.map(self._one_shot, requests))

    def finalize(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
