"""`vitsrt bench --target triton`: drive the BLS models of a Triton server directly with tritonclient.

    vitsrt bench --target triton --server 127.0.0.1:8001 --voice VOICE_DIR --concurrency 1,4,16

Streaming (the default) opens one gRPC stream per request to the decoupled ``<prefix>_tts`` model and
timestamps every chunk as it arrives; ``--no-stream`` calls ``<prefix>_tts_oneshot``. `--voice` may be
the bundle directory the repository was generated from: its voice.json gives the id tables for stand-in
ids and speaker ids (sent as the numeric SPEAKER_ID, which every Python-backend stub can read; without
the bundle the speaker goes as the SPEAKER string and the Bert-VITS2 2.x id table is assumed).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from vitsrt.benchmarks.metrics import EngineCounters, RequestTiming
from vitsrt.benchmarks.schema import TargetInfo
from vitsrt.benchmarks.targets import TargetOptions, package_versions
from vitsrt.benchmarks.workload import IdsSpec, WorkItem
from vitsrt.errors import VitsrtError
from vitsrt.serve.triton.layout import DEFAULT_PREFIX, bls_model_names

__all__ = ["TritonTarget"]


class TritonTarget:
    """The Triton BLS models over gRPC (tritonclient.grpc.aio); one stream per streaming request."""

    kind = "triton"

    def __init__(self, options: TargetOptions, model_prefix: str = DEFAULT_PREFIX):
        if not options.server:
            raise VitsrtError("--target triton needs --server HOST:PORT (Triton's gRPC port)")
        self.options = options
        self.stream = True if options.stream is None else options.stream
        self.stream_model, self.oneshot_model = bls_model_names(model_prefix)
        self.client: Any = None
        self.sample_rate = 0
        self._spec: IdsSpec | None = IdsSpec()
        self._speaker_id: int | None = None
        self._voice_name = options.voice or ""

    async def open(self) -> None:
        try:
            import tritonclient.grpc.aio as grpcclient
            from tritonclient.utils import InferenceServerException
        except ImportError:
            raise VitsrtError("--target triton needs tritonclient: pip install 'vitsrt[triton]'") from None
        self._grpc = grpcclient
        self._error = InferenceServerException
        self._read_bundle()
        self.client = grpcclient.InferenceServerClient(self.options.server)
        model = self.stream_model if self.stream else self.oneshot_model
        try:
            ready = await self.client.is_model_ready(model)
        except InferenceServerException as exc:
            await self.client.close()
            raise VitsrtError(f"cannot reach Triton at {self.options.server}: {exc.message()}") from None
        if not ready:
            await self.client.close()
            raise VitsrtError(f"Triton at {self.options.server} has no ready model {model!r} "
                              "(start it on a repository from `vitsrt triton-repo`)")

    def _read_bundle(self) -> None:
        voice = self.options.voice or ""
        if not (voice and Path(voice).is_dir()):
            return
        from vitsrt.voice import load_voice

        manifest = load_voice(voice, verify_sha256=False).manifest
        self._voice_name = manifest.name
        front = manifest.front_end
        self._spec = (
            IdsSpec(front.num_symbols, front.add_blank, front.blank_id, tuple(front.symbols) if front.symbols else None)
            if front.kind == "ids"
            else None
        )
        if self.options.speaker:
            if self.options.speaker not in manifest.speakers:
                raise VitsrtError(f"voice {manifest.name!r} has no speaker {self.options.speaker!r} "
                                  f"(it has: {', '.join(manifest.speakers)})")
            self._speaker_id = manifest.speakers[self.options.speaker]

    def ids_spec(self) -> IdsSpec | None:
        return self._spec

    def inputs(self, item: WorkItem, seed: int) -> list[Any]:
        """The BLS request tensors for one work item."""
        arrays: dict[str, tuple[np.ndarray, str]] = {"SEED": (np.array([seed], dtype=np.uint64), "UINT64")}
        if item.phonemes is not None:
            p = item.phonemes
            arrays["PHONE_IDS"] = (np.asarray(p.phone_ids, dtype=np.int64), "INT64")
            arrays["TONE_IDS"] = (np.asarray(p.tone_ids, dtype=np.int64), "INT64")
            arrays["LANGUAGE_IDS"] = (np.asarray(p.language_ids, dtype=np.int64), "INT64")
        if self._speaker_id is not None:
            arrays["SPEAKER_ID"] = (np.array([self._speaker_id], dtype=np.int64), "INT64")
        tensors = []
        for name, (value, datatype) in arrays.items():
            tensor = self._grpc.InferInput(name, list(value.shape), datatype)
            tensor.set_data_from_numpy(value)
            tensors.append(tensor)
        return tensors

    def parameters(self, item: WorkItem) -> dict[str, str]:
        """Text and speaker name go as request parameters: the BLS model reads them there, because the Python
        backend's stub in the nvidia-pytriton wheel cannot deliver string tensors under numpy 2."""
        found = {"text": item.text} if item.phonemes is None else {}
        if self._speaker_id is None and self.options.speaker:
            found["speaker"] = self.options.speaker
        return found

    async def stream_audio(self, item: WorkItem, seed: int) -> AsyncIterator[np.ndarray]:
        """Audio chunks of one streamed request, as they arrive (raises VitsrtError on a server error)."""
        request = {"model_name": self.stream_model, "inputs": self.inputs(item, seed), "request_id": str(seed),
                   "parameters": self.parameters(item)}

        async def requests() -> AsyncIterator[dict]:
            yield request

        responses = self.client.stream_infer(requests(), stream_timeout=self.options.request_timeout_s)
        try:
            async for result, error in responses:
                if error is not None:
                    raise VitsrtError(f"{self.stream_model}: {error.message()}")
                self.sample_rate = int(result.as_numpy("SAMPLE_RATE")[0])
                yield result.as_numpy("AUDIO")
                if bool(result.as_numpy("IS_LAST")[0]):
                    return
        finally:
            responses.cancel()

    async def synthesize(self, item: WorkItem, seed: int) -> np.ndarray:
        """The whole utterance from the one-shot model."""
        try:
            result = await self.client.infer(self.oneshot_model, self.inputs(item, seed),
                                             parameters=self.parameters(item),
                                             client_timeout=self.options.request_timeout_s)
        except self._error as exc:
            raise VitsrtError(f"{self.oneshot_model}: {exc.message()}") from None
        self.sample_rate = int(result.as_numpy("SAMPLE_RATE")[0])
        return result.as_numpy("AUDIO")

    async def run(self, item: WorkItem, seed: int) -> RequestTiming:
        timing = RequestTiming(sent_at=time.perf_counter())
        try:
            if self.stream:
                async for audio in self.stream_audio(item, seed):
                    timing.add_chunk(time.perf_counter() - timing.sent_at, len(audio) / self.sample_rate)
            else:
                audio = await self.synthesize(item, seed)
                timing.add_chunk(time.perf_counter() - timing.sent_at, len(audio) / self.sample_rate)
            timing.latency_s = time.perf_counter() - timing.sent_at
        except Exception as exc:  # a failed request is a data point, not the end of the run
            timing.error = f"{type(exc).__name__}: {exc}"
        return timing

    def counters(self) -> EngineCounters | None:
        return None

    def info(self) -> TargetInfo:
        mode = "stream" if self.stream else "one-shot"
        return TargetInfo(
            kind=self.kind,
            label=self.options.label or f"triton {mode}",
            voice=self._voice_name,
            server=self.options.server,
            stream=self.stream,
            options={"model": self.stream_model if self.stream else self.oneshot_model},
            notes=["Triton BLS model over gRPC; stage batching happens in Triton's dynamic batchers"],
        )

    def versions(self) -> dict[str, str]:
        return package_versions("tritonclient", "grpcio", "numpy")

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None
