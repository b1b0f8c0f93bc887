"""``vitsrt build-engines``: TensorRT plans for a voice's stage graphs, recorded in voice.json.

What is decided here, and why:

* **Profiles.** One optimization profile per stage sized for serving: batch ``1..max_batch``, text
  ``1..max_text_len`` tokens, frames ``1..max_frames``. The decoder gets a second, tight profile for the
  engine's streaming windows: every window call feeds between 1 frame (the tail of an utterance or a
  tiny utterance) and ``max(first, window) + 2*context`` frames (a middle window with context on both
  sides); its optimum is ``window + 2*context``, the steady-state shape, so the kernels are chosen for
  the call that dominates streaming. The one-shot profile (up to ``max_frames``) serves whole-utterance
  decoding. At run time the backend picks the tightest profile that holds the shapes.
* **Precision.** ``fp32`` turns TF32 off (plans then match the ONNX graphs to ~1e-5); ``tf32`` leaves it
  on. Reduced precision has two routes:

  - TensorRT 10 (weakly typed): ``BuilderFlag.FP16``/``BF16`` and the numerically sensitive layers
    (exp/log/pow/sqrt/division, softmax, normalisation, reductions) pinned to fp32 with
    ``PREFER_PRECISION_CONSTRAINTS``;
  - TensorRT 11 (strongly typed only: the precision flags are gone), or TensorRT 10 with
    ``strongly_typed=True``: the ONNX graph is first converted to mixed precision by
    :func:`vitsrt.export.fp16.convert_mixed_precision` (sensitive ops stay fp32 between Cast nodes) and
    built as a strongly typed network. Graph inputs and outputs stay fp32 either way, so the serving
    contract in voice.json does not change.
* **Keys.** A plan only runs on the GPU model / compute capability / TensorRT version it was built
  with, so plans live under ``engines/<gpu>_sm<cc>_trt<version>_<precision>/<stage>.plan`` and are listed
  in voice.json with their :class:`~vitsrt.voice.EngineKey`; ``build.json`` beside them records the
  profiles (the Triton repository generator reads ``max_batch`` from it).

``tensorrt`` and ``cuda-python`` are imported only when building; everything else here is plain Python
and unit-tested on CPU.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from vitsrt.errors import VitsrtError
from vitsrt.serve.backends.tensorrt_runtime import (
    TensorRTLogger,
    detect_engine_key,
    import_tensorrt,
    trt_major,
)
from vitsrt.serve.engine.windows import WindowPolicy
from vitsrt.voice import (
    MANIFEST_NAME,
    EngineKey,
    GraphSpec,
    TensorRTEngine,
    Voice,
    VoiceManifest,
    load_voice,
    sha256_file,
)

__all__ = [
    "BuildOptions",
    "Profile",
    "ProfileLimits",
    "ShapeRange",
    "TensorRTBuildError",
    "build_engines",
    "detect_engine_key",
    "engine_dir_name",
    "engine_relpath",
    "gpu_slug",
    "import_tensorrt",
    "ort_tensorrt_options",
    "record_engines",
    "stage_profiles",
    "trt_major",
]

log = logging.getLogger(__name__)

REDUCED_PRECISIONS = ("fp16", "bf16")


class TensorRTBuildError(VitsrtError):
    """TensorRT is unavailable or a plan could not be built (one-line reason)."""


# ----- profiles (pure Python) ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileLimits:
    """The serving envelope the plans must cover."""

    max_batch: int = 8
    max_text_len: int = 512  # tokens, blanks included
    max_frames: int = 4096  # ~47 s at 44.1 kHz / hop 512
    opt_batch: int | None = None  # default: half of max_batch (rounded up)
    opt_text_len: int = 128
    opt_frames: int = 512

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_text_len", "max_frames", "opt_text_len", "opt_frames"):
            if getattr(self, name) < 1:
                raise TensorRTBuildError(f"{name} must be >= 1")
        if self.opt_batch is not None and not 1 <= self.opt_batch <= self.max_batch:
            raise TensorRTBuildError("opt_batch must be between 1 and max_batch")

    @property
    def batch(self) -> tuple[int, int, int]:
        opt = self.opt_batch or max(1, math.ceil(self.max_batch / 2))
        return 1, opt, self.max_batch

    @property
    def tokens(self) -> tuple[int, int, int]:
        return 1, min(self.opt_text_len, self.max_text_len), self.max_text_len

    @property
    def frames(self) -> tuple[int, int, int]:
        return 1, min(self.opt_frames, self.max_frames), self.max_frames


@dataclass(frozen=True)
class ShapeRange:
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min) and all(
            lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max, strict=True)
        )


@dataclass(frozen=True)
class Profile:
    """One optimization profile: a shape range for every graph input."""

    name: str
    shapes: dict[str, ShapeRange]

    def contains(self, shapes: dict[str, Sequence[int]]) -> bool:
        return all(self.shapes[n].contains(s) for n, s in shapes.items() if n in self.shapes)


def window_frames_range(context: int, policy: WindowPolicy) -> tuple[int, int, int]:
    """(min, opt, max) frames of one streaming decoder call (see the module docstring)."""
    widest = max(policy.first_frames, policy.frames, policy.max_frames) + 2 * context
    widest = max(widest, policy.one_shot_frames)  # short utterances decode in one call
    return 1, min(policy.frames + 2 * context, widest), widest


def _resolve(spec_shape: Sequence[int | str], axes: dict[str, tuple[int, int, int]]) -> ShapeRange:
    lows, opts, highs = [], [], []
    for dim in spec_shape:
        if isinstance(dim, int):
            lows.append(dim), opts.append(dim), highs.append(dim)
        elif dim in axes:
            lo, opt, hi = axes[dim]
            lows.append(lo), opts.append(opt), highs.append(hi)
        else:
            raise TensorRTBuildError(f"input dimension {dim!r} has no profile rule (expected B, T, F or G)")
    return ShapeRange(tuple(lows), tuple(opts), tuple(highs))


def _profile(name: str, graph: GraphSpec, axes: dict[str, tuple[int, int, int]]) -> Profile:
    return Profile(name, {spec.name: _resolve(spec.shape, axes) for spec in graph.inputs})


def stage_profiles(
    manifest: VoiceManifest, stage: str, limits: ProfileLimits, policy: WindowPolicy | None = None
) -> list[Profile]:
    """The optimization profiles of one stage, tightest first (`policy`: the engine's default windows)."""
    policy = policy or WindowPolicy()
    graph = manifest.graphs.get(stage)  # type: ignore[arg-type]
    # "G": a speaker vector's frames (flow, decoder), F for a speaker curve or 1 (optimised for 1: most requests)
    axes = {"B": limits.batch, "T": limits.tokens, "F": limits.frames, "G": (1, 1, limits.frames[2])}
    if stage != "decoder":
        return [_profile("serving", graph, axes)]
    window = window_frames_range(manifest.decoder_context_frames, policy)
    profiles = [_profile("windows", graph, {**axes, "F": window, "G": (1, 1, window[2])})]
    if limits.max_frames > window[2]:
        profiles.append(_profile("one-shot", graph, axes))
    return profiles


# ----- keys and names --------------------------------------------------------------------------------


def gpu_slug(name: str) -> str:
    """'NVIDIA GeForce RTX 4090' -> 'nvidia-geforce-rtx-4090' (safe in file names)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "gpu"


def engine_dir_name(key: EngineKey) -> str:
    return f"{gpu_slug(key.gpu_name)}_sm{key.compute_capability.replace('.', '')}_trt{key.trt_version}_{key.precision}"


def engine_relpath(key: EngineKey, stage: str) -> str:
    """Where a stage's plan lives inside the voice directory (POSIX, relative)."""
    return str(PurePosixPath("engines") / engine_dir_name(key) / f"{stage}.plan")


def record_engines(voice_dir: Path, built: Sequence[TensorRTEngine]) -> VoiceManifest:
    """Add (or replace, same stage and key) plans in voice.json, written atomically."""
    manifest = load_voice(voice_dir, verify_sha256=False).manifest
    replaced = [(e.stage, e.key) for e in built]
    kept = [e for e in manifest.engines if (e.stage, e.key) not in replaced]
    updated = manifest.model_copy(update={"engines": [*kept, *built]})
    updated = VoiceManifest.model_validate(updated.model_dump())  # re-run the manifest's own checks
    updated.write(Path(voice_dir) / MANIFEST_NAME)
    return updated


# ----- TensorRT (lazy) ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp32"
    limits: ProfileLimits = field(default_factory=ProfileLimits)
    policy: WindowPolicy = field(default_factory=WindowPolicy)
    workspace_gb: float = 4.0
    timing_cache: Path | None = None
    stages: tuple[str, ...] | None = None
    device_id: int = 0
    strongly_typed: bool | None = None  # None: TRT 11 yes, TRT 10 only for reduced precision if asked

    def check(self) -> None:
        if self.precision not in ("fp32", "tf32", *REDUCED_PRECISIONS):
            raise TensorRTBuildError(f"unsupported precision {self.precision!r}: fp32, tf32, fp16 or bf16")
        if self.workspace_gb <= 0:
            raise TensorRTBuildError("workspace_gb must be > 0")


# TensorRT 10 weak-typing route: layer kinds kept in fp32 (the same families fp16.py keeps in fp32).
_SENSITIVE_UNARY = ("EXP", "LOG", "SQRT", "RECIP", "ERF")
_SENSITIVE_ELEMENTWISE = ("DIV", "POW")


def _pin_sensitive_layers(trt: Any, network: Any) -> int:
    """Pin numerically sensitive layers to fp32 (TensorRT 10 with FP16/BF16 flags). Returns the count."""
    sensitive_types = {
        getattr(trt.LayerType, n) for n in ("SOFTMAX", "NORMALIZATION", "REDUCE", "CUMULATIVE")
        if hasattr(trt.LayerType, n)
    }
    unary_ops = {getattr(trt.UnaryOperation, n) for n in _SENSITIVE_UNARY if hasattr(trt.UnaryOperation, n)}
    binary_ops = {getattr(trt.ElementWiseOperation, n) for n in _SENSITIVE_ELEMENTWISE
                  if hasattr(trt.ElementWiseOperation, n)}
    softplus = getattr(getattr(trt, "ActivationType", None), "SOFTPLUS", None)
    floats = {trt.float32, trt.float16, getattr(trt, "bfloat16", trt.float16)}
    pinned = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        layer_type = layer.type
        keep = layer_type in sensitive_types
        # The Python API exposes a layer's op only on its subclass: downcast by assigning __class__.
        if layer_type == trt.LayerType.UNARY:
            layer.__class__ = trt.IUnaryLayer
            keep = layer.op in unary_ops
        elif layer_type == trt.LayerType.ELEMENTWISE:
            layer.__class__ = trt.IElementWiseLayer
            keep = layer.op in binary_ops
        elif layer_type == trt.LayerType.ACTIVATION:
            layer.__class__ = trt.IActivationLayer
            keep = softplus is not None and layer.type == softplus  # IActivationLayer.type: the activation
        if not keep:
            continue
        layer.precision = trt.float32
        for out in range(layer.num_outputs):
            if layer.get_output(out).dtype in floats:
                layer.set_output_type(out, trt.float32)
        pinned += 1
    return pinned


def _network_flags(trt: Any, strongly_typed: bool) -> int:
    flags = 0
    names = trt.NetworkDefinitionCreationFlag
    if strongly_typed and hasattr(names, "STRONGLY_TYPED"):
        flags |= 1 << int(names.STRONGLY_TYPED)
    # EXPLICIT_BATCH is deprecated and ignored from TensorRT 10 (explicit batch is the only mode).
    return flags


def _parse(trt: Any, builder: Any, logger: Any, onnx_path: Path, strongly_typed: bool) -> tuple[Any, Any]:
    network = builder.create_network(_network_flags(trt, strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTBuildError(f"TensorRT cannot parse {onnx_path.name}: {errors or 'unknown error'}")
    return network, parser


def _configure(trt: Any, builder: Any, network: Any, options: BuildOptions, profiles: list[Profile],
               strongly_typed: bool, cache: Any) -> Any:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gb * (1 << 30)))
    flags = trt.BuilderFlag
    if options.precision == "fp32" and hasattr(flags, "TF32"):
        config.clear_flag(flags.TF32)  # TF32 convolutions drift ~1e-3 from the fp32 graphs
    if options.precision in REDUCED_PRECISIONS and not strongly_typed:
        config.set_flag(flags.FP16 if options.precision == "fp16" else flags.BF16)
        pinned = _pin_sensitive_layers(trt, network)
        if hasattr(flags, "PREFER_PRECISION_CONSTRAINTS"):
            config.set_flag(flags.PREFER_PRECISION_CONSTRAINTS)
        log.info("pinned %d numerically sensitive layers to fp32", pinned)
    for profile in profiles:
        optimization = builder.create_optimization_profile()
        for name, shapes in profile.shapes.items():
            optimization.set_shape(name, shapes.min, shapes.opt, shapes.max)
        config.add_optimization_profile(optimization)
    if cache is not None:
        config.set_timing_cache(cache, ignore_mismatch=False)
    return config


def _check_plan(trt: Any, logger: Any, plan: bytes, graph: GraphSpec, stage: str) -> None:
    """Deserialize the plan once: it must load and expose exactly the graph's I/O names."""
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        raise TensorRTBuildError(f"the {stage} plan does not deserialize")
    names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
    expected = {s.name for s in (*graph.inputs, *graph.outputs)}
    if names != expected:
        raise TensorRTBuildError(f"the {stage} plan has tensors {sorted(names)}, expected {sorted(expected)}")


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stage_onnx(voice: Voice, stage: str, options: BuildOptions, strongly_typed: bool, workdir: Path) -> Path:
    source = voice.graph_path(stage)  # type: ignore[arg-type]
    if options.precision not in REDUCED_PRECISIONS or not strongly_typed:
        return source
    from vitsrt.export.fp16 import convert_mixed_precision

    target = workdir / f"{stage}.{options.precision}.onnx"
    report = convert_mixed_precision(source, target, dtype="float16" if options.precision == "fp16" else "bfloat16")
    log.info("%s: %d nodes in %s, %d kept in fp32", stage, report.low_nodes, options.precision, len(report.kept))
    return target


def build_engines(voice_dir: str | os.PathLike[str], options: BuildOptions | None = None) -> list[TensorRTEngine]:
    """Build and record the plans; returns the new voice.json entries."""
    options = options or BuildOptions()
    options.check()
    trt = import_tensorrt()
    root = Path(voice_dir)
    voice = load_voice(root)
    key = detect_engine_key(options.precision, trt, options.device_id)
    major = trt_major(trt)
    strongly_typed = bool(options.strongly_typed) or (major >= 11 and options.precision in REDUCED_PRECISIONS)
    if major >= 11 and options.precision == "tf32":
        log.warning("TensorRT %s: tf32 is controlled by the network types; building as fp32 graphs", trt.__version__)
    logger = TensorRTLogger(trt)
    builder = trt.Builder(logger)
    cache_bytes = options.timing_cache.read_bytes() if options.timing_cache and options.timing_cache.is_file() else b""
    probe = builder.create_builder_config()
    cache = probe.create_timing_cache(cache_bytes) if options.timing_cache else None
    stages = [s for s, _ in voice.manifest.graphs.items() if options.stages is None or s in options.stages]
    unknown = set(options.stages or ()) - {s for s, _ in voice.manifest.graphs.items()}
    if unknown:
        raise TensorRTBuildError(f"unknown or absent stages: {sorted(unknown)}")
    built: list[TensorRTEngine] = []
    summary: dict[str, Any] = {"key": key.model_dump(), "tensorrt": str(trt.__version__),
                               "strongly_typed": strongly_typed, "max_batch": options.limits.max_batch,
                               "limits": asdict(options.limits), "policy": asdict(options.policy), "profiles": {}}
    with tempfile.TemporaryDirectory(prefix="vitsrt-trt-") as workdir:
        for stage in stages:
            graph = voice.manifest.graphs.get(stage)
            profiles = stage_profiles(voice.manifest, stage, options.limits, options.policy)
            onnx_path = _stage_onnx(voice, stage, options, strongly_typed, Path(workdir))
            network, _parser = _parse(trt, builder, logger, onnx_path, strongly_typed)
            config = _configure(trt, builder, network, options, profiles, strongly_typed, cache)
            log.info("building %s (%s, %d profile(s)) for %s", stage, options.precision, len(profiles), key.gpu_name)
            plan = builder.build_serialized_network(network, config)
            if plan is None:
                raise TensorRTBuildError(f"TensorRT failed to build the {stage} plan (see the log above)")
            data = bytes(memoryview(plan))
            _check_plan(trt, logger, data, graph, stage)
            relative = engine_relpath(key, stage)
            _write_atomic(root / relative, data)
            built.append(TensorRTEngine(stage=stage, key=key, file=relative, sha256=sha256_file(root / relative)))
            summary["profiles"][stage] = [
                {"name": p.name, "shapes": {n: asdict(r) for n, r in p.shapes.items()}} for p in profiles
            ]
    if cache is not None and options.timing_cache is not None:
        _write_atomic(options.timing_cache, bytes(memoryview(cache.serialize())))
    summary_text = json.dumps(summary, indent=2) + "\n"
    _write_atomic(root / "engines" / engine_dir_name(key) / "build.json", summary_text.encode())
    record_engines(root, built)
    return built


# ----- the second route: onnxruntime's TensorRT execution provider ----------------------------------------


def _shape_list(profile: Profile, which: str) -> str:
    """TensorRT EP profile syntax: 'name:1x32x90,other:1x1x90'."""
    return ",".join(
        f"{name}:{'x'.join(str(d) for d in getattr(r, which))}" for name, r in profile.shapes.items()
    )


def ort_tensorrt_options(
    manifest: VoiceManifest,
    stage: str,
    limits: ProfileLimits | None = None,
    policy: WindowPolicy | None = None,
    precision: str = "fp32",
    cache_dir: Path | None = None,
    device_id: int = 0,
) -> dict[str, Any]:
    """Provider options for ``TensorrtExecutionProvider`` with the same profiles as the native plans.

    The EP takes one explicit profile per session (min/opt/max shape strings); the decoder gets its
    one-shot range so every call fits (the native backend's tighter window profile is not expressible
    as a second profile here). Engines are cached under `cache_dir` so a restart does not rebuild.
    """
    limits = limits or ProfileLimits()
    profiles = stage_profiles(manifest, stage, limits, policy)
    widest = profiles[-1]
    options: dict[str, Any] = {
        "device_id": device_id,
        "trt_profile_min_shapes": _shape_list(widest, "min"),
        "trt_profile_opt_shapes": _shape_list(profiles[0], "opt"),
        "trt_profile_max_shapes": _shape_list(widest, "max"),
        "trt_fp16_enable": precision == "fp16",
        "trt_bf16_enable": precision == "bf16",
        "trt_layer_norm_fp32_fallback": precision in REDUCED_PRECISIONS,
    }
    if cache_dir is not None:
        options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir),
                       trt_timing_cache_enable=True, trt_timing_cache_path=str(cache_dir))
    return options
