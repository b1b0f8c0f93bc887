"""What the benchmark drives: one small async interface, many targets.

    target = open_target("engine", TargetOptions(voice="voices/alice"))
    await target.open()                       # load / connect; VitsrtError with a clear reason on failure
    timing = await target.run(item, seed=7)   # one request; errors are recorded in the timing, not raised
    await target.close()

A target is anything with the `BenchTarget` shape. Built-ins: `engine` (in-process `Engine`, any backend),
`grpc` (a `vitsrt serve` server), `torch` (PyTorch eager `SynthesizerTrn.infer` on the checkpoint: the
baseline users migrate from). `triton` is looked up as `vitsrt.benchmarks.triton_target:TritonTarget`,
so the Triton integration plugs in by adding that module: its class takes a `TargetOptions` and
implements `BenchTarget`.

Clocks: every target timestamps on the client side of its own boundary. The engine target runs in the
benchmark's process (its chunk times are taken in the asyncio loop, which shares the CPU with the engine);
the gRPC target measures what a network client sees.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from vitsrt.benchmarks.metrics import EngineCounters, RequestTiming
from vitsrt.benchmarks.schema import TargetInfo
from vitsrt.benchmarks.workload import IdsSpec, WorkItem
from vitsrt.errors import VitsrtError

log = logging.getLogger(__name__)


@dataclass
class TargetOptions:
    """Everything a target may need; each target reads the fields that concern it."""

    voice: str | None = None  # engine: bundle directory; grpc/triton: voice name (or a bundle directory)
    speaker: str = ""
    stream: bool | None = None  # None: the target's natural mode (streaming where it can)
    label: str | None = None
    threads: int | None = None
    # engine
    backend: str = "onnxruntime"
    engine: dict[str, Any] = field(default_factory=dict)  # EngineOptions fields (max_batch, max_wait_ms, ...)
    # torch (and the engine's torch backend)
    checkpoint: str | None = None
    config: str | None = None
    device: str = "cpu"
    torch_serial: bool = False
    # remote targets
    server: str | None = None
    token: str | None = None
    connect_timeout_s: float = 10.0
    request_timeout_s: float | None = 600.0


@runtime_checkable
class BenchTarget(Protocol):
    """The interface the load generator drives. `run` must never raise for a failed request."""

    kind: str

    async def open(self) -> None: ...

    def ids_spec(self) -> IdsSpec | None:
        """The id tables stand-in ids must respect, or None when the voice takes text."""
        ...

    async def run(self, item: WorkItem, seed: int) -> RequestTiming: ...

    def counters(self) -> EngineCounters | None:
        """Cumulative engine counters (batch sizes, stage seconds), or None if the target has none."""
        ...

    def info(self) -> TargetInfo: ...

    def versions(self) -> dict[str, str]: ...

    async def close(self) -> None: ...


BUILTIN_TARGETS = {
    "engine": "vitsrt.benchmarks.targets:EngineTarget",
    "grpc": "vitsrt.benchmarks.targets:GrpcTarget",
    "torch": "vitsrt.benchmarks.targets:TorchTarget",
    "triton": "vitsrt.benchmarks.triton_target:TritonTarget",
}


def open_target(kind: str, options: TargetOptions) -> BenchTarget:
    """Instantiate a target by name (nothing is loaded until `open`)."""
    if kind not in BUILTIN_TARGETS:
        raise VitsrtError(f"unknown target {kind!r}; choose one of {', '.join(BUILTIN_TARGETS)}")
    module_name, _, class_name = BUILTIN_TARGETS[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise VitsrtError(f"the {kind} target is not available in this build ({module_name} is missing)") from None
    return getattr(module, class_name)(options)


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of `names` (without importing them)."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _error_text(exc: BaseException) -> str:
    message = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {message}"


def front_end_ids_spec(front_end: Any) -> IdsSpec | None:
    """Stand-in id tables for a voice.json front end; None when the voice takes text."""
    if front_end.kind != "ids":
        return None
    symbols = tuple(front_end.symbols) if front_end.symbols else None
    return IdsSpec(front_end.num_symbols, front_end.add_blank, front_end.blank_id, symbols)


# ----- engine (in-process) ----------------------------------------------------------------------------


class EngineTarget:
    """The vitsrt engine in this process: `astream` for streaming, `synthesize` (one-shot) otherwise."""

    kind = "engine"

    def __init__(self, options: TargetOptions):
        if not options.voice:
            raise VitsrtError("--target engine needs --voice VOICE_DIR (an exported voice bundle)")
        self.options = options
        self.stream = True if options.stream is None else options.stream
        self.engine: Any = None
        self._manifest: Any = None

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        from vitsrt.serve.engine.engine import Engine, EngineOptions

        fields = dict(self.options.engine)
        if self.options.threads is not None:
            fields["threads"] = self.options.threads
        try:
            engine_options = EngineOptions(**fields)
        except ValueError as exc:
            raise VitsrtError(f"bad engine option: {exc}") from None
        # Given files go to the backend, whose options model decides: the torch backend needs them, the others
        # refuse them in one line (no option is accepted and ignored).
        backend_options = {name: value for name in ("checkpoint", "config")
                           if (value := getattr(self.options, name))}
        self.engine = Engine.open([self.options.voice], backend=self.options.backend, options=engine_options,
                                  backend_options=backend_options)
        pipeline = self.engine.pipeline()
        if self.options.speaker and self.options.speaker not in pipeline.manifest.speakers:
            known = ", ".join(pipeline.manifest.speakers)
            raise VitsrtError(f"voice {pipeline.name!r} has no speaker {self.options.speaker!r} (it has: {known})")
        self._manifest = pipeline.manifest

    def ids_spec(self) -> IdsSpec | None:
        return front_end_ids_spec(self._manifest.front_end)

    def _request(self, item: WorkItem, seed: int) -> Any:
        from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest

        if item.phonemes is not None:
            p = item.phonemes
            phonemes = PhonemeIds(phone_ids=p.phone_ids, tone_ids=p.tone_ids, language_ids=p.language_ids)
            return SynthesisRequest(phonemes=phonemes, speaker=self.options.speaker, seed=seed)
        return SynthesisRequest(text=item.text, speaker=self.options.speaker, seed=seed)

    async def run(self, item: WorkItem, seed: int) -> RequestTiming:
        timing = RequestTiming(sent_at=time.perf_counter())
        try:
            request = self._request(item, seed)
            if self.stream:
                async for chunk in self.engine.astream(request):
                    timing.add_chunk(time.perf_counter() - timing.sent_at, len(chunk.audio) / chunk.sample_rate)
            else:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(None, self.engine.synthesize, request)
                timing.add_chunk(time.perf_counter() - timing.sent_at, result.duration_seconds)
                timing.stages_s = dict(result.timings)
            timing.finish()
        except Exception as exc:  # a failed request is a data point, not the end of the run
            timing.error = _error_text(exc)
        return timing

    def counters(self) -> EngineCounters | None:
        # The engine adds a step's seconds after the step has delivered its audio, so a client can see its
        # stream end a moment before the step is booked: wait (briefly) until the counters stop moving.
        stats = self.engine.stats()
        deadline = time.perf_counter() + 2.0
        while time.perf_counter() < deadline:
            time.sleep(0.02)
            again = self.engine.stats()
            if again["stage_seconds"] == stats["stage_seconds"] and again["active_streams"] == 0:
                break
            stats = again
        return EngineCounters(dict(stats["stage_seconds"]), {k: dict(v) for k, v in stats["batch_sizes"].items()})

    def info(self) -> TargetInfo:
        options = self.engine.options.model_dump() if self.engine is not None else dict(self.options.engine)
        mode = "stream" if self.stream else "one-shot"
        return TargetInfo(
            kind=self.kind,
            label=self.options.label or f"engine {self.options.backend} {mode}",
            backend=self.options.backend,
            voice=str(self.options.voice),
            stream=self.stream,
            threads=options.get("threads"),
            options=options,
            notes=["in-process: chunk arrival times are taken in the benchmark's asyncio loop",
                   *(["threads None: the backend's default (onnxruntime: one per physical core)"]
                     if options.get("threads") is None else [])],
        )

    def versions(self) -> dict[str, str]:
        names = ["onnxruntime", "onnxruntime-gpu", "numpy"]
        if "torch" in sys.modules:  # a torch backend ran
            names.append("torch")
        return package_versions(*names)

    async def close(self) -> None:
        if self.engine is not None:
            await asyncio.to_thread(self.engine.close)


# ----- gRPC (a `vitsrt serve` server) ---------------------------------------------------------------


class GrpcTarget:
    """A vitsrt.v1.TextToSpeech server over gRPC (asyncio client, one channel shared by all clients).

    `--voice` names a voice the server has loaded (empty: its default). Voices with the ids front end need
    the id table sizes, which the API does not expose: pass the bundle directory as `--voice` (its
    voice.json supplies name and tables) or the Bert-VITS2 2.x table (112 symbols, blanks) is assumed.
    """

    kind = "grpc"
    _BYTES_PER_SAMPLE = 2  # the benchmark asks for PCM_S16LE

    def __init__(self, options: TargetOptions):
        if not options.server:
            raise VitsrtError("--target grpc needs --server HOST:PORT")
        self.options = options
        self.stream = True if options.stream is None else options.stream
        self.voice_name = ""
        self._spec: IdsSpec | None = None
        self._frontend = ""
        self.channel: Any = None

    async def open(self) -> None:
        import grpc

        from vitsrt.serve.proto import tts_pb2, tts_pb2_grpc

        self._pb = tts_pb2
        bundle_spec = self._bundle_spec()
        self.channel = grpc.aio.insecure_channel(self.options.server, options=[
            ("grpc.max_receive_message_length", 256 << 20)])
        self.stub = tts_pb2_grpc.TextToSpeechStub(self.channel)
        self.metadata = (("authorization", f"Bearer {self.options.token}"),) if self.options.token else ()
        try:
            await asyncio.wait_for(self.channel.channel_ready(), self.options.connect_timeout_s)
        except TimeoutError:
            await self.channel.close()
            raise VitsrtError(
                f"cannot reach a gRPC server at {self.options.server} (no connection within "
                f"{self.options.connect_timeout_s:g} s): is `vitsrt serve` running there?"
            ) from None
        try:
            voices = await self.stub.ListVoices(tts_pb2.ListVoicesRequest(), metadata=self.metadata,
                                                timeout=self.options.connect_timeout_s)
        except grpc.aio.AioRpcError as exc:
            await self.channel.close()
            raise VitsrtError(f"the server at {self.options.server} refused ListVoices: "
                              f"{exc.code().name}: {exc.details()}") from None
        names = {v.name: v for v in voices.voices}
        wanted = self.voice_name or voices.default_voice
        if wanted not in names:
            await self.channel.close()
            raise VitsrtError(f"the server has no voice {wanted!r} (it has: {', '.join(names) or 'none'})")
        voice = names[wanted]
        if self.options.speaker and self.options.speaker not in voice.speakers:
            await self.channel.close()
            raise VitsrtError(f"voice {wanted!r} has no speaker {self.options.speaker!r} "
                              f"(it has: {', '.join(voice.speakers)})")
        self.voice_name, self._frontend = wanted, voice.frontend
        if voice.frontend == "ids":
            self._spec = bundle_spec or IdsSpec()

    def _bundle_spec(self) -> IdsSpec | None:
        """`--voice DIR`: take the voice name and id tables from the bundle the server was started with."""
        voice = self.options.voice or ""
        if voice and Path(voice).is_dir():
            from vitsrt.voice import load_voice

            manifest = load_voice(voice, verify_sha256=False).manifest
            self.voice_name = manifest.name
            return front_end_ids_spec(manifest.front_end)
        self.voice_name = voice
        return None

    def ids_spec(self) -> IdsSpec | None:
        return self._spec

    def _request(self, item: WorkItem, seed: int) -> Any:
        request = self._pb.SynthesizeRequest(voice=self.voice_name, speaker=self.options.speaker, seed=seed,
                                             encoding=self._pb.PCM_S16LE)
        if item.phonemes is not None:
            request.phonemes.phone_ids.extend(item.phonemes.phone_ids)
            request.phonemes.tone_ids.extend(item.phonemes.tone_ids)
            request.phonemes.language_ids.extend(item.phonemes.language_ids)
        else:
            request.text = item.text
        return request

    async def run(self, item: WorkItem, seed: int) -> RequestTiming:
        import grpc

        timing = RequestTiming(sent_at=time.perf_counter())
        request = self._request(item, seed)
        timeout = self.options.request_timeout_s
        try:
            if self.stream:
                call = self.stub.SynthesizeStream(request, metadata=self.metadata, timeout=timeout)
                async for chunk in call:
                    seconds = len(chunk.audio) / self._BYTES_PER_SAMPLE / max(chunk.sample_rate, 1)
                    timing.add_chunk(time.perf_counter() - timing.sent_at, seconds)
            else:
                reply = await self.stub.Synthesize(request, metadata=self.metadata, timeout=timeout)
                seconds = len(reply.audio) / self._BYTES_PER_SAMPLE / max(reply.sample_rate, 1)
                timing.add_chunk(time.perf_counter() - timing.sent_at, seconds)
            timing.finish()
        except grpc.aio.AioRpcError as exc:
            timing.error = f"{exc.code().name}: {exc.details()}"
        except Exception as exc:  # a failed request is a data point, not the end of the run
            timing.error = _error_text(exc)
        return timing

    def counters(self) -> EngineCounters | None:
        return None

    def info(self) -> TargetInfo:
        mode = "stream" if self.stream else "unary"
        notes = []
        if self._spec is not None and not (self.options.voice and Path(self.options.voice).is_dir()):
            notes.append("ids voice without its bundle: the Bert-VITS2 2.x id table (112 symbols) was assumed")
        return TargetInfo(
            kind=self.kind,
            label=self.options.label or f"grpc {mode}",
            voice=self.voice_name,
            server=self.options.server,
            stream=self.stream,
            options={"encoding": "PCM_S16LE", "frontend": self._frontend},
            notes=notes,
        )

    def versions(self) -> dict[str, str]:
        return package_versions("grpcio", "protobuf")

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()


# ----- torch eager (the baseline) -------------------------------------------------------------------


class TorchTarget:
    """PyTorch eager `SynthesizerTrn.infer` on the checkpoint, batch 1 per request, whole utterance.

    Requests run in the load generator's worker threads, so at concurrency N up to N `infer` calls run at
    once (PyTorch releases the GIL inside ops; they share its intra-op thread pool): what a naive
    multi-threaded server around the upstream model does. `torch_serial` takes a lock instead (one call
    at a time, the others queue), like a server that serialises the model. Either way there is no batching
    across requests and no streaming: time to first audio = total latency.
    """

    kind = "torch"

    def __init__(self, options: TargetOptions):
        if not (options.checkpoint and options.config):
            raise VitsrtError("--target torch needs --checkpoint G_*.pth and --config config.json")
        if options.stream:
            raise VitsrtError("--target torch is whole-utterance only; run it with --no-stream")
        self.options = options
        self.stream = False
        self._lock = threading.Lock() if options.torch_serial else None

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        import torch

        from vitsrt.sampling import Sampling
        from vitsrt.train.loading import load_generator

        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        if self.options.device.startswith("cuda") and not torch.cuda.is_available():
            raise VitsrtError("--device cuda: torch sees no GPU")
        loaded = load_generator(self.options.checkpoint, self.options.config)  # type: ignore[arg-type]
        self._torch = torch
        self.device = torch.device(self.options.device)
        self.model = loaded.model.to(self.device).eval()
        self.config = loaded.config
        self.sample_rate = int(loaded.config.data.sampling_rate)
        speakers = dict(loaded.config.data.spk2id or {})
        if self.options.speaker:
            if self.options.speaker not in speakers:
                raise VitsrtError(f"the checkpoint has no speaker {self.options.speaker!r} "
                                  f"(it has: {', '.join(speakers) or 'none'})")
            self.sid = speakers[self.options.speaker]
        else:
            self.sid = min(speakers.values()) if speakers else 0
        n_vocab = int(loaded.state_dict["enc_p.emb.weight"].shape[0])
        self._spec = IdsSpec(n_vocab, bool(loaded.config.data.add_blank), 0, _standard_symbols(n_vocab))
        self.defaults = Sampling()  # a checkpoint has no voice.json: the values an export would store

    def ids_spec(self) -> IdsSpec | None:
        return self._spec

    def _infer(self, item: WorkItem, seed: int) -> tuple[float, float]:
        """Returns (audio seconds, seconds spent waiting for the lock)."""
        torch = self._torch
        if item.phonemes is None:
            raise VitsrtError("the torch target needs ids (no text front end in the eager model)")
        p = item.phonemes
        waited = time.perf_counter()
        if self._lock is not None:
            self._lock.acquire()
        waited = time.perf_counter() - waited
        try:
            dev = self.device
            x = torch.tensor([p.phone_ids], dtype=torch.long, device=dev)
            tone = torch.tensor([p.tone_ids], dtype=torch.long, device=dev)
            language = torch.tensor([p.language_ids], dtype=torch.long, device=dev)
            bert = torch.zeros(1, 1024, x.size(1), device=dev)
            generator = torch.Generator(device=dev).manual_seed(seed)
            with torch.inference_mode():
                result = self.model.infer(
                    x, torch.tensor([x.size(1)], device=dev), torch.tensor([self.sid], device=dev), tone, language,
                    bert, bert, bert, **self.defaults.model_dump(), generator=generator,
                )
                samples = int(result.audio.shape[-1])
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
        finally:
            if self._lock is not None:
                self._lock.release()
        return samples / self.sample_rate, waited

    async def run(self, item: WorkItem, seed: int) -> RequestTiming:
        timing = RequestTiming(sent_at=time.perf_counter())
        try:
            loop = asyncio.get_running_loop()
            audio_s, waited = await loop.run_in_executor(None, self._infer, item, seed)
            timing.add_chunk(time.perf_counter() - timing.sent_at, audio_s)
            timing.finish()
            if self._lock is not None:
                timing.stages_s = {"queue": waited}
        except Exception as exc:  # a failed request is a data point, not the end of the run
            timing.error = _error_text(exc)
        return timing

    def counters(self) -> EngineCounters | None:
        return None

    def info(self) -> TargetInfo:
        threads = self._torch.get_num_threads() if hasattr(self, "_torch") else self.options.threads
        return TargetInfo(
            kind=self.kind,
            label=self.options.label or "torch eager",
            backend=f"torch-{self.options.device}",
            voice=str(self.options.checkpoint),
            stream=False,
            threads=threads,
            options={"serial": self.options.torch_serial, "device": self.options.device, "batch": 1},
            notes=["SynthesizerTrn.infer, batch 1, one call per request, no streaming (TTFA = latency)",
                   "serial: one call at a time" if self.options.torch_serial
                   else "concurrent calls in worker threads sharing torch's intra-op pool"],
        )

    def versions(self) -> dict[str, str]:
        return package_versions("torch", "numpy")

    async def close(self) -> None:
        self.model = None


def _standard_symbols(n_vocab: int) -> tuple[str, ...] | None:
    """The Bert-VITS2 symbol table when the model has its size (so stand-in ids match the engine's)."""
    from vitsrt.text.bv2 import standard_symbols

    table = standard_symbols()
    return tuple(table) if len(table) == n_vocab else None
