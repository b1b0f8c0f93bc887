"""The stage contract run by a PyTorch generator: what the torch(-cuda) backend executes.

    model = generator_from_bundle(voice_dir / "weights.safetensors", graphs={stage: sha256, ...})
    runner = StageRunner(model, "bert-vits2", RunnerOptions(device="cuda", precision="bf16"))
    outputs = runner.run("decoder", {"z": z, "y_mask": y_mask, "g": g})   # numpy in, numpy out

The bundle's weights (``weights.safetensors``, written by `vitsrt export` next to the graphs) hold the
generator in its inference form (weight norm folded, no posterior encoder) and, in the file's metadata, the
model family, version and config.json the generator is rebuilt from: a voice directory alone is enough.

On CUDA every call is shaped for replay:

* lengths and batch sizes are padded up to buckets (tokens and frames to multiples of ``length_bucket``,
  batches to ``batch_buckets``), so the GPU sees a small set of shapes (cuDNN picks one algorithm per shape);
  padding is exact: every stage is masked, extra rows repeat the first item and are dropped afterwards;
* decoder calls whose window fits one of the fixed window shapes (``decode_frames``, from the engine's window
  policy and the decoder's context) x a batch bucket are captured once as a CUDA graph and replayed;
* inputs go through pinned host buffers with asynchronous copies on the runner's own stream (one
  synchronisation per call), so two runners (two engine lanes) overlap one's host work with the other's GPU work;
* ``precision`` bf16/fp16 autocasts the flow and decoder (``autocast_stages``); encoder and duration stay in
  float32, so durations, and with them every length and window, equal the float32 run's.

Everything here is also usable on the CPU (tests run the bucketing, padding, cropping and static-buffer replay
there; a CPU "graph" is an eager call on the static buffers).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from vitsrt.errors import VoiceError
from vitsrt.stages import Stage, family

__all__ = [
    "WEIGHTS_FORMAT",
    "RunnerOptions",
    "StageRunner",
    "bundle_state",
    "generator_from_bundle",
    "generator_from_state",
    "save_bundle_weights",
]

log = logging.getLogger(__name__)

WEIGHTS_FORMAT = "vitsrt-generator/1"
_TRAINING_ONLY = ("enc_q.",)  # the posterior encoder: training only, left out of the bundle
Precision = Literal["fp32", "bf16", "fp16"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


# ----- weights in the bundle ----------------------------------------------------------------------------


def bundle_state(model: nn.Module, family_name: str, config_json: str) -> dict[str, torch.Tensor]:
    """The generator's inference weights: a rebuilt copy (the model is left as it is) with weight norm folded,
    without the training-only modules, in float32."""
    from vitsrt.train.models.wavenet import fold_weight_norm

    state = model.state_dict()
    copy = _build(family_name, config_json, state)
    copy.load_state_dict(state, strict=True)
    fold_weight_norm(copy)
    return {k: (v.float() if v.is_floating_point() else v).detach().contiguous().clone()
            for k, v in copy.state_dict().items() if not k.startswith(_TRAINING_ONLY)}


def save_bundle_weights(path: str | Path, model: nn.Module, *, family_name: str, version: str, config_json: str,
                        graphs: Mapping[str, str]) -> Path:
    """Write ``weights.safetensors``: the inference weights (float32) and, as metadata, what rebuilds the
    generator (family, version, config.json) and the sha256 of the graphs they were exported to."""
    from safetensors.torch import save

    metadata = {"format": WEIGHTS_FORMAT, "family": family_name, "version": version, "config": config_json,
                "graphs": json.dumps(dict(sorted(graphs.items())))}
    path = Path(path)
    # Written like every other bundle file (the umask's mode; safetensors' own writer makes it private).
    path.write_bytes(save(bundle_state(model, family_name, config_json), metadata=metadata))
    return path


def _build(family_name: str, config_json: str, state: Mapping[str, torch.Tensor]) -> nn.Module:
    from vitsrt.config import parse_config

    config = parse_config(json.loads(config_json), source="the weights' config")
    if family_name == "bert-vits2":
        from vitsrt.train.models.synthesizer import SymbolSizes, SynthesizerTrn

        return SynthesizerTrn(config, SymbolSizes.from_state_dict(dict(state)))  # type: ignore[arg-type]
    if family_name == "vits":
        from vitsrt.train.models.vits import VitsSynthesizer

        return VitsSynthesizer(config, n_vocab=int(state["enc_p.emb.weight"].shape[0]))  # type: ignore[arg-type]
    raise VoiceError(f"no torch model for family {family_name!r}")


def generator_from_state(family_name: str, config_json: str, state: Mapping[str, torch.Tensor],
                         source: str = "weights") -> nn.Module:
    """The eval-mode generator `state` (from `bundle_state`) belongs to; a mismatch names the first key."""
    from vitsrt.train.models.wavenet import fold_weight_norm

    model = _build(family_name, config_json, state)
    fold_weight_norm(model)
    for prefix in _TRAINING_ONLY:
        delattr(model, prefix.rstrip("."))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        key = (missing or unexpected)[0]
        what = "lacks" if missing else "has an unknown tensor"
        raise VoiceError(f"{source} {what} {key} ({len(missing)} missing, {len(unexpected)} unknown)")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise VoiceError(f"{source}: {key} has shape {list(state[key].shape)}, the model {list(tensor.shape)}")
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


def generator_from_bundle(path: str | Path, graphs: Mapping[str, str] | None = None) -> tuple[nn.Module, str]:
    """(generator, family) from a bundle's ``weights.safetensors``; with `graphs` ({stage: sha256} from
    voice.json) the weights must have been written for exactly those graphs."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
    except (OSError, SafetensorError) as exc:
        raise VoiceError(f"{path}: cannot read the weights ({exc})") from None
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise VoiceError(f"{path}: not vitsrt generator weights (format {metadata.get('format')!r})")
    if graphs is not None and json.loads(metadata.get("graphs", "{}")) != dict(graphs):
        raise VoiceError(f"{path}: these weights were exported with other graphs than voice.json lists "
                         "(re-export the voice)")
    family_name = metadata.get("family", "")
    return generator_from_state(family_name, metadata.get("config", "{}"), state, source=str(path)), family_name


# ----- shapes: buckets and padding ----------------------------------------------------------------------------


class RunnerOptions(BaseModel):
    """How stages run (the torch backend's execution options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = "cpu"
    precision: Precision = Field("fp32", description="bf16/fp16: autocast the stages in autocast_stages")
    autocast_stages: tuple[str, ...] = ("flow", "decoder")
    buckets: bool | None = Field(None, description="pad lengths and batches to buckets (None: on CUDA only)")
    length_bucket: int = Field(32, ge=1, description="tokens and frames are padded to a multiple of this")
    batch_buckets: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    cuda_graphs: bool | None = Field(None, description="replay decoder windows as CUDA graphs (None: on CUDA)")
    decode_frames: tuple[int, ...] = Field((), description="the decoder's fixed window shapes, in input frames")
    max_graphs: int = Field(64, ge=0, description="captured decoder graphs at most (then eager)")


def bucket(value: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket >= value, or None when value is larger than every bucket."""
    return next((b for b in sorted(buckets) if b >= value), None)


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class Shapes:
    """A call's real sizes by axis symbol ("B", "T", "F") and the padded sizes it runs at."""

    real: dict[str, int]
    padded: dict[str, int]

    @property
    def key(self) -> tuple[tuple[str, int], ...]:
        return tuple(sorted(self.padded.items()))


# Axes padded to buckets: tokens, frames and a speaker vector's frames ("G": F per frame, or 1 broadcast, which
# stays 1); the batch axis grows by repeating the first item.
PADDED_AXES = ("T", "F", "G")


def _axis_sizes(stage: Stage, inputs: Mapping[str, np.ndarray]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for spec in stage.inputs:
        if spec.name in inputs:
            for axis, size in zip(spec.axes, inputs[spec.name].shape, strict=False):
                if axis in ("B", *PADDED_AXES):
                    sizes.setdefault(str(axis), int(size))
    return sizes


def pad_input(array: np.ndarray, axes: Sequence[int | str], padded: Mapping[str, int]) -> np.ndarray:
    """`array` grown to the padded sizes: zeros along T, F and G (every stage masks the padded frames), and extra
    batch rows that repeat the first item (a valid input, so no stage sees an empty or zero-length item)."""
    widths = [(0, padded[a] - array.shape[i]) if a in PADDED_AXES else (0, 0) for i, a in enumerate(axes)]
    if any(after for _, after in widths):
        array = np.pad(array, widths)
    if "B" in axes:
        axis = list(axes).index("B")
        extra = padded["B"] - array.shape[axis]
        if extra > 0:
            first = np.take(array, [0], axis=axis)
            array = np.concatenate([array, np.repeat(first, extra, axis=axis)], axis=axis)
    return np.ascontiguousarray(array)


def crop_output(array: np.ndarray, axes: Sequence[int | str], real: Mapping[str, int], hop: int) -> np.ndarray:
    """An output cut back to the call's real sizes (``F*hop`` axes to real frames x hop)."""
    index: list[slice] = []
    for axis in axes:
        if axis in ("B", "T", "F"):
            index.append(slice(0, real[str(axis)]))
        elif isinstance(axis, str) and axis.startswith("F*"):
            index.append(slice(0, real["F"] * hop))
        else:
            index.append(slice(None))
    return array[tuple(index)]


# ----- the runner -----------------------------------------------------------------------------------------------


def stage_call(model: nn.Module, family_name: str, stage: str) -> Callable[[dict[str, torch.Tensor]], dict]:
    """The model method a stage graph was exported from, over tensors named as the graph's inputs."""
    if family_name == "bert-vits2":
        calls: dict[str, Callable[[dict[str, torch.Tensor]], dict]] = {
            "encoder": lambda t: dict(zip(("enc", "m_p", "logs_p", "x_mask", "g"), model.encode_with_g(
                t["phone_ids"], t["lengths"], t["tone_ids"], t["language_ids"], t["bert"], t["ja_bert"],
                t["en_bert"], _bert_vits2_speaker(model, t), t.get("emo")), strict=True)),  # emo: 2.2 only
            "duration": lambda t: {"logw": model.predict_logw(t["enc"], t["x_mask"], t["g"], t["sdp_noise"],
                                                              t["sdp_ratio"])},
            "duration_dp_only": lambda t: {"logw": model.predict_logw_dp(t["enc"], t["x_mask"], t["g"])},
        }
    else:  # vits: no tones, languages or BERT; `g` only for several speakers
        calls = {
            "encoder": lambda t: dict(zip(("enc", "m_p", "logs_p", "x_mask", "g"), model.encode(
                t["phone_ids"], t["lengths"], t.get("sid")), strict=True)),
            "duration": lambda t: {"logw": model.predict_logw(t["enc"], t["x_mask"], t.get("g"), t.get("sdp_noise"))},
        }
    calls["flow"] = lambda t: {"z": model.flow_reverse(t["z_p"], t["y_mask"], t.get("g"))}
    calls["decoder"] = lambda t: {"audio": model.decode(t["z"], t["y_mask"], t.get("g"))}
    if stage not in calls:
        raise VoiceError(f"unknown stage {stage!r} for family {family_name!r}")
    call = calls[stage]
    return lambda t: {k: v for k, v in call(t).items() if v is not None}


def _bert_vits2_speaker(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The encoder's g [B, G, 1] from whichever speaker input the bundle's graph declares: ``speaker_weights``
    (weights over the speaker table) or, in bundles exported before it, ``sid``."""
    if "speaker_weights" in tensors:
        return model.speaker_mix(tensors["speaker_weights"])
    return model.speaker_embedding(tensors["sid"])


class _Replay:
    """One captured call: static device inputs, the outputs the capture wrote, and how to run it again.
    On CUDA a `torch.cuda.CUDAGraph`; elsewhere (tests) an eager call on the same static buffers."""

    def __init__(self, call: Callable[[dict[str, torch.Tensor]], dict], static: dict[str, torch.Tensor],
                 stream: Any, autocast: Callable[[], Any]):
        self.static = static
        device = next(iter(static.values())).device
        if device.type != "cuda":
            self._call, self._autocast, self.graph = call, autocast, None
            self.outputs: dict[str, torch.Tensor] = {}
            return
        with torch.cuda.stream(stream):  # warm up on the side stream first, as capture requires
            for _ in range(2):
                with autocast():
                    call(static)
        stream.synchronize()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=stream, capture_error_mode="thread_local"), autocast():
            self.outputs = call(static)

    def _eager(self) -> dict[str, torch.Tensor]:
        with self._autocast():
            return self._call(self.static)

    def replay(self) -> dict[str, torch.Tensor]:
        if self.graph is None:
            self.outputs = self._eager()
        else:
            self.graph.replay()
        return self.outputs


class StageRunner:
    """Runs a family's stages on numpy inputs on one device (one runner per engine lane: not shared between
    threads; it owns its CUDA stream, pinned buffers and captured graphs)."""

    def __init__(self, model: nn.Module, family_name: str, options: RunnerOptions | None = None, hop: int = 1):
        self.options = options or RunnerOptions()
        self.device = torch.device(self.options.device)
        self.cuda = self.device.type == "cuda"
        self.family = family(family_name)
        self.family_name = family_name
        self.hop = hop
        self.model = model.to(self.device).eval()
        self.buckets = self.options.buckets if self.options.buckets is not None else self.cuda
        self.graphs_on = self.options.cuda_graphs if self.options.cuda_graphs is not None else self.cuda
        self._calls = {s.name: stage_call(self.model, family_name, s.name) for s in self.family.stages}
        self._graphs: dict[tuple, _Replay] = {}
        self._pinned: dict[tuple, torch.Tensor] = {}
        self._lock = threading.Lock()  # one call at a time per runner (a lane's worker is its only caller)
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # one algorithm search per bucketed shape
            if self.options.precision == "fp32":  # float32 means float32: no TF32 convolutions or matmuls
                torch.backends.cudnn.allow_tf32 = False
                torch.backends.cuda.matmul.allow_tf32 = False

    def has_stage(self, stage: str) -> bool:
        return stage in self._calls

    def run(self, stage: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if stage not in self._calls:
            raise VoiceError(f"unknown stage {stage!r}")
        spec = self.family.stage(stage)
        shapes = self.shapes(stage, inputs)
        padded = {t.name: pad_input(inputs[t.name], t.axes, shapes.padded) for t in spec.inputs if t.name in inputs}
        with self._lock, torch.inference_mode():
            outputs = self._execute(stage, padded, shapes)
        axes = {t.name: t.axes for t in spec.outputs}
        return {name: crop_output(value, axes[name], shapes.real, self.hop) for name, value in outputs.items()}

    # ----- shapes ---------------------------------------------------------------------------------------

    def shapes(self, stage: str, inputs: Mapping[str, np.ndarray]) -> Shapes:
        real = _axis_sizes(self.family.stage(stage), inputs)
        if not self.buckets:
            return Shapes(real, dict(real))
        padded = dict(real)
        if "B" in real:
            padded["B"] = bucket(real["B"], self.options.batch_buckets) or real["B"]
        for axis in ("T", "F"):
            if axis in real:
                fixed = bucket(real[axis], self.options.decode_frames) if stage == "decoder" else None
                padded[axis] = fixed or round_up(real[axis], self.options.length_bucket)
        if "G" in real:  # per-frame speaker vectors follow the frames (and are part of a replay's key)
            padded["G"] = padded["F"] if real["G"] > 1 else 1
        return Shapes(real, padded)

    def _graphable(self, stage: str, shapes: Shapes) -> bool:
        if not (self.graphs_on and stage == "decoder" and shapes.padded.get("F") in self.options.decode_frames):
            return False
        if shapes.padded.get("B") not in self.options.batch_buckets:
            return False
        return (stage, shapes.key) in self._graphs or len(self._graphs) < self.options.max_graphs

    # ----- execution --------------------------------------------------------------------------------------

    def _autocast(self, stage: str) -> Callable[[], Any]:
        dtype = _DTYPES.get(self.options.precision)
        enabled = dtype is not None and stage in self.options.autocast_stages
        # No autocast weight cache: it must not outlive a CUDA graph capture.
        return lambda: torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=enabled,
                                      cache_enabled=False)

    def _execute(self, stage: str, inputs: dict[str, np.ndarray], shapes: Shapes) -> dict[str, np.ndarray]:
        if self.cuda:
            assert self.stream is not None
            with torch.cuda.stream(self.stream):
                return self._execute_on_stream(stage, inputs, shapes)
        return self._execute_on_stream(stage, inputs, shapes)

    def _execute_on_stream(self, stage: str, inputs: dict[str, np.ndarray], shapes: Shapes) -> dict[str, np.ndarray]:
        if self._graphable(stage, shapes):
            replay = self._graphs.get((stage, shapes.key))
            if replay is None:
                static = {name: self._to_device(name, array) for name, array in inputs.items()}
                replay = self._graphs[(stage, shapes.key)] = _Replay(self._calls[stage], static, self.stream,
                                                                      self._autocast(stage))
                log.debug("captured %s for %s (%d graphs)", stage, shapes.padded, len(self._graphs))
            else:
                for name, array in inputs.items():
                    replay.static[name].copy_(self._staged(name, array), non_blocking=True)
            return self._to_host(replay.replay())
        tensors = {name: self._to_device(name, array) for name, array in inputs.items()}
        with self._autocast(stage)():
            outputs = self._calls[stage](tensors)
        return self._to_host(outputs)

    def _staged(self, name: str, array: np.ndarray) -> torch.Tensor:
        """`array` in a pinned host buffer reused for its name and shape (CUDA), or as a tensor (CPU)."""
        if not self.cuda:
            return torch.from_numpy(array)
        key = ("in", name, array.shape, array.dtype.str)
        pinned = self._pinned.get(key)
        if pinned is None:
            pinned = self._pinned[key] = torch.empty(array.shape, dtype=torch.from_numpy(array[:0]).dtype,
                                                     pin_memory=True)
        pinned.numpy()[...] = array
        return pinned

    def _to_device(self, name: str, array: np.ndarray) -> torch.Tensor:
        staged = self._staged(name, array)
        return staged.to(self.device, non_blocking=True) if self.cuda else staged.clone()

    def _to_host(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        if not self.cuda:
            return {k: v.float().numpy().copy() for k, v in outputs.items()}
        hosts = {}
        for name, value in outputs.items():
            key = ("out", name, tuple(value.shape))
            host = self._pinned.get(key)
            if host is None:
                host = self._pinned[key] = torch.empty(tuple(value.shape), dtype=torch.float32, pin_memory=True)
            host.copy_(value.float(), non_blocking=True)
            hosts[name] = host
        assert self.stream is not None
        self.stream.synchronize()  # the call's one synchronisation: every copy above has landed
        return {name: host.numpy().copy() for name, host in hosts.items()}

    @property
    def captured(self) -> int:
        return len(self._graphs)

    def close(self) -> None:
        self._graphs.clear()
        self._pinned.clear()
