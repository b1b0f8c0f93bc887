"""``vitsrt triton-repo``: a Triton model repository for one voice.

Layout (prefix "vitsrt" by default)::

    REPO/vitsrt_encoder/config.pbtxt + 1/model.onnx      (or 1/model.plan, or 1/model.onnx + 1/model.py)
    REPO/vitsrt_duration/ ... vitsrt_duration_dp_only/ ... vitsrt_flow/ ... vitsrt_decoder/
    REPO/vitsrt_tts/config.pbtxt + voice.json + 1/model.py          decoupled BLS: streams audio chunks
    REPO/vitsrt_tts_oneshot/config.pbtxt + voice.json + 1/model.py  request/response BLS: whole utterance

Stage models batch dynamically (``dynamic_batching``, ``max_batch_size`` = ``--max-batch``) with ``-1``
on every dynamic axis; see :mod:`vitsrt.serve.triton.layout` for the exact tensor rules. Stage backends:

* ``onnxruntime``: ``platform: "onnxruntime_onnx"`` (needs Triton's onnxruntime backend);
* ``tensorrt``: ``platform: "tensorrt_plan"`` from the plans that ``vitsrt build-engines`` recorded in
  voice.json (GPU only; the plans must match the serving GPU and TensorRT version);
* ``python``: Python-backend wrappers around ONNX Runtime, for servers that only have the Python
  backend (such as the tritonserver inside the ``nvidia-pytriton`` wheel, used by the CI test).

The repository is written to a hidden staging directory beside the target and renamed into place, so a
server polling the repository never sees half of it. Needs neither torch nor tritonclient.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from vitsrt.errors import VitsrtError
from vitsrt.serve.engine.windows import DEFAULT_POLICY, WindowPolicy
from vitsrt.serve.triton.layout import (
    DEFAULT_PREFIX,
    SAMPLING_TENSORS,
    TritonTensor,
    bls_model_names,
    stage_model_name,
    stage_tensors,
)
from vitsrt.stages import family
from vitsrt.voice import EngineKey, Voice, load_voice

__all__ = ["BLS_INPUTS", "BLS_OUTPUTS", "RepoOptions", "TritonRepoError", "render_stage_config", "write_triton_repo"]

log = logging.getLogger(__name__)

StageBackendName = Literal["onnxruntime", "tensorrt", "python"]

# (name, config data type, dims) of the BLS models' tensors; every input is optional.
BLS_INPUTS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("TEXT", "TYPE_STRING", (1,)),
    ("PHONE_IDS", "TYPE_INT64", (-1,)),
    ("TONE_IDS", "TYPE_INT64", (-1,)),
    ("LANGUAGE_IDS", "TYPE_INT64", (-1,)),
    ("SPEAKER", "TYPE_STRING", (1,)),
    ("SPEAKER_ID", "TYPE_INT64", (1,)),
    ("LANGUAGE", "TYPE_STRING", (1,)),
    ("SEED", "TYPE_UINT64", (1,)),
    *((name, "TYPE_FP32", (1,)) for name in SAMPLING_TENSORS),
)
BLS_OUTPUTS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("AUDIO", "TYPE_FP32", (-1,)),
    ("SAMPLE_RATE", "TYPE_INT32", (1,)),
    ("CHUNK_INDEX", "TYPE_INT32", (1,)),
    ("IS_LAST", "TYPE_BOOL", (1,)),
)


class TritonRepoError(VitsrtError):
    """The repository cannot be generated (one-line reason)."""


@dataclass(frozen=True)
class RepoOptions:
    """What ``vitsrt triton-repo`` writes. ``kind=None`` picks gpu, or cpu for the python stage backend."""

    stage_backend: StageBackendName = "onnxruntime"
    kind: Literal["cpu", "gpu"] | None = None
    instances: int = 1
    max_batch: int = 8
    max_queue_delay_us: int = 2000
    prefix: str = DEFAULT_PREFIX
    threads: int | None = None  # ONNX Runtime intra-op threads per stage instance (None: runtime default)
    precision: str = "fp32"  # tensorrt: which recorded plans
    gpu: str | None = None  # tensorrt: substring of the GPU name when plans for several GPUs are recorded
    windows: WindowPolicy = DEFAULT_POLICY  # the BLS model's decode windows
    max_concurrent_streams: int = 16
    bls_instances: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def resolved_kind(self) -> str:
        return self.kind or ("cpu" if self.stage_backend == "python" else "gpu")

    def check(self) -> None:
        if self.stage_backend not in ("onnxruntime", "tensorrt", "python"):
            raise TritonRepoError(f"unknown stage backend {self.stage_backend!r}: onnxruntime, tensorrt or python")
        if self.resolved_kind not in ("cpu", "gpu"):
            raise TritonRepoError(f"--kind must be cpu or gpu, not {self.kind!r}")
        if self.stage_backend == "tensorrt" and self.resolved_kind != "gpu":
            raise TritonRepoError("TensorRT plans run on GPUs only: use --kind gpu")
        for name in ("instances", "max_batch", "max_concurrent_streams", "bls_instances"):
            if getattr(self, name) < 1:
                raise TritonRepoError(f"{name} must be >= 1")
        if self.max_queue_delay_us < 0:
            raise TritonRepoError("max_queue_delay_us must be >= 0")
        if not self.prefix.replace("_", "").replace("-", "").isalnum():
            raise TritonRepoError(f"invalid model name prefix {self.prefix!r}: letters, digits, '_' and '-'")


# ----- config.pbtxt rendering ---------------------------------------------------------------------------


def _dims(dims: Iterable[int]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]" if dims else "[ ]"


def _tensor_block(kind: str, tensors: list[TritonTensor]) -> str:
    lines = []
    for t in tensors:
        reshape = f"\n    reshape: {{ shape: {_dims(t.reshape)} }}" if t.reshape is not None else ""
        lines.append(
            f'  {{\n    name: "{t.name}"\n    data_type: {t.config_type}\n    dims: {_dims(t.dims)}{reshape}\n  }}'
        )
    return f"{kind} [\n" + ",\n".join(lines) + "\n]\n"


def _bls_block(kind: str, tensors: Iterable[tuple[str, str, tuple[int, ...]]], optional: bool) -> str:
    flag = "\n    optional: true" if optional else ""
    lines = [f'  {{\n    name: "{n}"\n    data_type: {dt}\n    dims: {_dims(d)}{flag}\n  }}' for n, dt, d in tensors]
    return f"{kind} [\n" + ",\n".join(lines) + "\n]\n"


def _parameters(params: dict[str, str]) -> str:
    return "".join(
        f'parameters {{\n  key: "{key}"\n  value: {{ string_value: {json.dumps(str(value))} }}\n}}\n'
        for key, value in params.items()
    )


def _instances(count: int, kind: str) -> str:
    instance_kind = "KIND_GPU" if kind == "gpu" else "KIND_CPU"
    return f"instance_group [\n  {{\n    count: {count}\n    kind: {instance_kind}\n  }}\n]\n"


def render_stage_config(voice: Voice, stage: str, options: RepoOptions, max_batch: int | None = None) -> str:
    """config.pbtxt of one stage model."""
    inputs, outputs = stage_tensors(voice.manifest.graphs.get(stage))
    name = stage_model_name(options.prefix, stage)
    kind = options.resolved_kind
    head = [f'name: "{name}"']
    params: dict[str, str] = {}
    if options.stage_backend == "onnxruntime":
        head += ['platform: "onnxruntime_onnx"', 'backend: "onnxruntime"', 'default_model_filename: "model.onnx"']
        if options.threads:
            params["intra_op_thread_count"] = str(options.threads)
        if kind == "gpu":
            params["cudnn_conv_algo_search"] = "1"  # HEURISTIC: no exhaustive search per new length
    elif options.stage_backend == "tensorrt":
        head += ['platform: "tensorrt_plan"', 'backend: "tensorrt"', 'default_model_filename: "model.plan"']
    else:
        head.append('backend: "python"')
        params.update(stage=stage, graph_file="model.onnx", device="cuda" if kind == "gpu" else "cpu")
        if options.threads:
            params["intra_op_threads"] = str(options.threads)
    params.update(options.extra)
    batch = max_batch or options.max_batch
    text = "\n".join(head) + f"\nmax_batch_size: {batch}\n"
    text += _tensor_block("input", inputs) + _tensor_block("output", outputs)
    text += f"dynamic_batching {{\n  max_queue_delay_microseconds: {options.max_queue_delay_us}\n}}\n"
    text += _instances(options.instances, kind) + _parameters(params)
    return text


def render_bls_config(name: str, options: RepoOptions, stages: list[str], streaming: bool) -> str:
    """config.pbtxt of a BLS model (streaming: decoupled)."""
    params = {
        "mode": "stream" if streaming else "oneshot",
        "voice_manifest": "voice.json",
        "stage_prefix": options.prefix,
        "stages": ",".join(stages),
        **{key: str(value) for key, value in options.windows.model_dump(by_alias=True).items()},
        "max_concurrent_streams": str(options.max_concurrent_streams),
    }
    text = f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n'
    if streaming:
        text += "model_transaction_policy {\n  decoupled: true\n}\n"
    text += _bls_block("input", BLS_INPUTS, optional=True) + _bls_block("output", BLS_OUTPUTS, optional=False)
    text += _instances(options.bls_instances, "cpu") + _parameters(params)
    return text


# ----- files ------------------------------------------------------------------------------------------


def _place(source: Path, target: Path) -> None:
    """Hard-link when source and target share a filesystem (graphs can be large), else copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _model_source(module: str) -> str:
    return (resources.files("vitsrt.serve.triton") / module).read_text(encoding="utf-8")


def _select_engines(voice: Voice, options: RepoOptions) -> tuple[dict[str, Path], int | None]:
    keys: list[EngineKey] = []
    for engine in voice.manifest.engines:
        key = engine.key
        if key.precision != options.precision or key in keys:
            continue
        if options.gpu and options.gpu.lower() not in key.gpu_name.lower():
            continue
        keys.append(key)
    if not keys:
        raise TritonRepoError(
            f"voice {voice.name!r} has no {options.precision} TensorRT plans recorded"
            f"{' for GPU ' + repr(options.gpu) if options.gpu else ''}: run `vitsrt build-engines` on the serving GPU"
        )
    if len(keys) > 1:
        listed = "; ".join(f"{k.gpu_name} sm{k.compute_capability} trt{k.trt_version}" for k in keys)
        raise TritonRepoError(
            f"{options.precision} plans for several GPUs are recorded ({listed}): pick one with --gpu"
        )
    paths = voice.engine_paths(keys[0])
    missing = [s for s in family(voice.manifest.model.family).required if s not in paths]
    if missing:
        raise TritonRepoError(f"the TensorRT plans for stages {missing} are missing: rebuild them")
    # build-engines leaves its profile summary beside the plans: never promise a larger batch than built.
    summary = next(iter(paths.values())).parent / "build.json"
    max_batch = None
    if summary.is_file():
        try:
            max_batch = int(json.loads(summary.read_text())["max_batch"])
        except (ValueError, KeyError, TypeError):
            log.warning("%s is unreadable; using --max-batch as is", summary)
    return dict(paths), max_batch


def _write(voice: Voice, root: Path, options: RepoOptions) -> list[str]:
    models = []
    engine_files: dict[str, Path] = {}
    max_batch = options.max_batch
    if options.stage_backend == "tensorrt":
        engine_files, built_batch = _select_engines(voice, options)
        if built_batch is not None and built_batch < max_batch:
            log.warning("the plans were built for batch <= %d; max_batch_size lowered from %d", built_batch, max_batch)
            max_batch = built_batch
    stages = []
    for stage, _ in voice.manifest.graphs.items():
        if options.stage_backend == "tensorrt" and stage not in engine_files:
            continue  # an optional stage without a plan (duration_dp_only): the BLS model skips it
        name = stage_model_name(options.prefix, stage)
        model_dir = root / name
        version = model_dir / "1"
        version.mkdir(parents=True)
        if options.stage_backend == "tensorrt":
            _place(engine_files[stage], version / "model.plan")
        else:
            _place(voice.graph_path(stage), version / "model.onnx")
        if options.stage_backend == "python":
            (version / "model.py").write_text(_model_source("stage_model.py"), encoding="utf-8")
        (model_dir / "config.pbtxt").write_text(render_stage_config(voice, stage, options, max_batch), encoding="utf-8")
        stages.append(stage)
        models.append(name)
    for name, streaming in zip(bls_model_names(options.prefix), (True, False), strict=True):
        model_dir = root / name
        (model_dir / "1").mkdir(parents=True)
        (model_dir / "1" / "model.py").write_text(_model_source("bls_model.py"), encoding="utf-8")
        voice.manifest.write(model_dir / "voice.json")
        (model_dir / "config.pbtxt").write_text(render_bls_config(name, options, stages, streaming), encoding="utf-8")
        models.append(name)
    return models


def write_triton_repo(
    voice_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    options: RepoOptions | None = None,
    *,
    force: bool = False,
) -> list[str]:
    """Write the model repository for the voice at `voice_dir` into `out_dir`; returns the model names."""
    options = options or RepoOptions()
    options.check()
    voice = load_voice(voice_dir)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TritonRepoError(f"output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise TritonRepoError(f"output directory {out} is not empty (use --force to replace it)")
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.triton-", dir=parent))
    try:
        models = _write(voice, staging, options)
        os.chmod(staging, 0o755)
        retired = None
        if out.exists():
            retired = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(out, retired)
        os.rename(staging, out)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("wrote Triton repository %s: %s", out, ", ".join(models))
    return models
