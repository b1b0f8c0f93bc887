"""Split a generator into the stage graphs a serving engine runs: for Bert-VITS2 encoder, duration,
duration_dp_only, flow and decoder; for original VITS (:class:`~vitsrt.train.models.vits.VitsSynthesizer`)
encoder, duration, flow and decoder, with the speaker and SDP-noise tensors only where the voice has them
(the family's stage contract in :mod:`vitsrt.stages` decides every graph's inputs and outputs). A Bert-VITS2
encoder takes its speaker as ``speaker_weights`` [B, speakers] (the "speaker_weights" feature: g = weights @
emb_g.weight inside the graph, so a speaker blend conditions the text encoder exactly). A Bert-VITS2 2.2
generator's encoder also takes ``emo`` [B, 512] (the "emotion" feature): its CLAP emotion branch, quantizer
included (ArgMin + GatherElements over the fixed codebooks), is part of the encoder graph.

Design choices, and why:

* **Exporter.** The TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) at opset 17
  by default. Every stage method of :class:`~vitsrt.train.models.synthesizer.SynthesizerTrn` is
  written trace-friendly (masks from ``arange`` + compare, relative attention without Python slicing
  bounds, the duration spline with ``where``-selection), so one trace at a padded batch of two with
  distinct lengths yields graphs that are exact at every batch size and length. The dynamo exporter
  would work too but produces larger graphs and is slower; nothing here depends on which one ran.
* **Randomness lives on the host.** The SDP noise enters ``duration`` as ``sdp_noise`` (already scaled
  by ``noise_scale_w``) and the prior sample is drawn before ``flow``; graphs are deterministic, which
  is what makes ONNX Runtime, TensorRT and torch comparable bit for bit up to float rounding.
* **Duration skip.** ``duration`` computes ``sdp * ratio + dp * (1 - ratio)`` with a per-item
  ``sdp_ratio [B]``. A second graph, ``duration_dp_only``, holds only the deterministic predictor. A
  backend runs it instead of ``duration`` when every request in a batch has ``sdp_ratio == 0``, which
  skips the SDP's conditioning stack and four spline flows. An input switch inside one graph would
  need an ``If`` (forbidden for TensorRT) or a ``Where`` that still computes both branches, so the
  choice costs one extra small file instead; the manifest lists it as the optional
  ``graphs.duration_dp_only``. With ratio 0 both graphs give the same ``logw`` (``sdp * 0`` adds an
  exact zero), tested in tests/test_export_duration_skip.py.
* **Weight norm is folded** on a private copy of the model (rebuilt from its state dict: the legacy
  weight-norm hook cannot be deep-copied), so each conv is one constant in the graph and the caller's
  model is untouched.
* **Checked before it ships.** Every graph is finalised with an onnxruntime-loadable IR version and
  must pass :func:`~vitsrt.export.onnx_checks.find_forbidden_ops` and
  :func:`~vitsrt.export.onnx_checks.find_value_dependent_shapes`; a finding fails the export.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from vitsrt.errors import VitsrtError
from vitsrt.export.onnx_checks import (
    DEFAULT_IR_VERSION,
    finalize_onnx,
    find_forbidden_ops,
    find_value_dependent_shapes,
    format_findings,
)
from vitsrt.export.planar import DECODER_LAYOUTS, DEFAULT_DECODER_LAYOUT, DecoderLayout, PlanarDecoder
from vitsrt.stages import (
    BERT_VITS2,
    EMOTION,
    MULTI_SPEAKER,
    SDP,
    SPEAKER_WEIGHTS,
    VITS,
    Family,
    Stage,
    StageName,
    Tensor,
)
from vitsrt.train.models.emotion import CLAP_DIM
from vitsrt.train.models.synthesizer import SynthesizerTrn
from vitsrt.train.models.vits import VitsSynthesizer
from vitsrt.train.models.wavenet import fold_weight_norm
from vitsrt.voice import TensorSpec

__all__ = [
    "DEFAULT_OPSET",
    "EMOTION_FP32_SCOPES",
    "EXPORTED_STAGES",
    "MAX_OPSET",
    "MIN_OPSET",
    "ExportError",
    "StageIO",
    "check_decoder_layout",
    "check_graph",
    "export_stage",
    "export_stages",
    "folded_copy",
    "has_emotion",
    "model_family",
    "model_features",
    "stage_io",
    "stage_module",
]

Generator = SynthesizerTrn | VitsSynthesizer

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
MIN_OPSET = 17
# IR 10 (what onnxruntime >= 1.20 loads) covers default-domain opsets up to 22.
MAX_OPSET = 22
EXPORTED_STAGES: tuple[StageName, ...] = BERT_VITS2.names
# The module scopes of a 2.2 encoder whose weights decide the quantizer's codes: a code choice is piecewise
# constant (the fixture's closest runner-up is 6e-5 away), so float16-rounded weights there can flip a code and
# with it the durations; `--weights fp16` keeps them float32 (vitsrt.export.weight_storage keep_scopes).
EMOTION_FP32_SCOPES = ("/enc_p/in_feature_net/", "/enc_p/emo_vq/")

# The trace shapes: two items of different lengths so padding paths are traced, and sizes that
# coincide with no channel count (a dimension equal to a constant could get folded into the graph).
_TRACE_TOKENS = (11, 6)
_TRACE_FRAMES = (29, 13)


class ExportError(VitsrtError):
    """The export cannot proceed or produced something unusable (one-line reason)."""


# ----- stage wrappers ---------------------------------------------------------------------------------
#
# Thin nn.Modules with graph-facing argument order and names (the order of the stage contract's inputs,
# vitsrt.stages.BERT_VITS2; _check_declared_io catches a drift). They call the synthesizer's own stage
# methods, so the graphs are the same computations the torch reference (and `infer`) uses.


class EncoderStage(nn.Module):
    """The text encoder with its speaker as weights over the speaker table ([B, speakers]; one-hot: one speaker)."""

    def __init__(self, model: SynthesizerTrn):
        super().__init__()
        self.model = model

    def forward(
        self,
        phone_ids: torch.Tensor,
        tone_ids: torch.Tensor,
        language_ids: torch.Tensor,
        lengths: torch.Tensor,
        bert: torch.Tensor,
        ja_bert: torch.Tensor,
        en_bert: torch.Tensor,
        speaker_weights: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        g = self.model.speaker_mix(speaker_weights)
        return self.model.encode_with_g(phone_ids, lengths, tone_ids, language_ids, bert, ja_bert, en_bert, g)


class EmotionEncoderStage(EncoderStage):
    """Bert-VITS2 2.2's encoder: the 2.3 inputs plus ``emo`` [B, 512], one CLAP embedding per item."""

    def forward(  # type: ignore[override]
        self,
        phone_ids: torch.Tensor,
        tone_ids: torch.Tensor,
        language_ids: torch.Tensor,
        lengths: torch.Tensor,
        bert: torch.Tensor,
        ja_bert: torch.Tensor,
        en_bert: torch.Tensor,
        speaker_weights: torch.Tensor,
        emo: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        g = self.model.speaker_mix(speaker_weights)
        return self.model.encode_with_g(phone_ids, lengths, tone_ids, language_ids, bert, ja_bert, en_bert, g, emo)


class DurationStage(nn.Module):
    def __init__(self, model: SynthesizerTrn):
        super().__init__()
        self.model = model

    def forward(
        self,
        enc: torch.Tensor,
        x_mask: torch.Tensor,
        g: torch.Tensor,
        sdp_noise: torch.Tensor,
        sdp_ratio: torch.Tensor,
    ) -> torch.Tensor:
        # Same arithmetic and order as SynthesizerTrn.predict_logw; the [B] -> [B,1,1] reshape uses a
        # constant -1 so the traced graph never reads the batch size from a Python int.
        ratio = sdp_ratio.reshape(-1, 1, 1)
        logw_sdp = self.model.sdp.infer(enc, x_mask, g, sdp_noise)
        return logw_sdp * ratio + self.model.predict_logw_dp(enc, x_mask, g) * (1 - ratio)


class DurationDpOnlyStage(nn.Module):
    def __init__(self, model: SynthesizerTrn):
        super().__init__()
        self.model = model

    def forward(self, enc: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.model.predict_logw_dp(enc, x_mask, g)


class FlowStage(nn.Module):
    def __init__(self, model: SynthesizerTrn):
        super().__init__()
        self.model = model

    def forward(self, z_p: torch.Tensor, y_mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.model.flow_reverse(z_p, y_mask, g)


class DecoderStage(nn.Module):
    """The model's ``decode``; with layout "2d" the same computation on a 2-D copy of its generator
    (:mod:`vitsrt.export.planar`: onnxruntime's CPU provider runs it with its blocked NCHWc convolutions)."""

    def __init__(self, model: SynthesizerTrn, layout: DecoderLayout = "1d"):
        super().__init__()
        self.model = model
        self.planar = PlanarDecoder(model.dec) if layout == "2d" else None

    def forward(self, z: torch.Tensor, y_mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.planar is not None:
            return self.planar(z, y_mask, g)
        return self.model.decode(z, y_mask, g)


_WRAPPERS: dict[StageName, type[nn.Module]] = {
    "encoder": EncoderStage,
    "duration": DurationStage,
    "duration_dp_only": DurationDpOnlyStage,
    "flow": FlowStage,
    "decoder": DecoderStage,
}


class VitsStage(nn.Module):
    """An original-VITS stage: its graph inputs (whichever the voice's features give it), in contract order, to
    the model's stage method; the outputs the contract lists for the voice, in order."""

    def __init__(self, model: VitsSynthesizer, stage: StageName, decoder_layout: DecoderLayout = "1d"):
        super().__init__()
        self.model = model
        self.stage = stage
        # The decoder in 2-D layout (see DecoderStage), else the model's own decode.
        self.planar = PlanarDecoder(model.dec) if stage == "decoder" and decoder_layout == "2d" else None
        features = model_features(model)
        self.inputs = [t.name for t in VITS.stage(stage).inputs_for(features)]
        self.outputs = [t.name for t in VITS.stage(stage).outputs_for(features)]

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...] | torch.Tensor:
        t = dict(zip(self.inputs, tensors, strict=True))
        m, g = self.model, t.get("g")
        if self.stage == "encoder":
            enc, m_p, logs_p, x_mask, g_out = m.encode(t["phone_ids"], t["lengths"], t.get("sid"))
            out = {"enc": enc, "m_p": m_p, "logs_p": logs_p, "x_mask": x_mask, "g": g_out}
        elif self.stage == "duration":
            out = {"logw": m.predict_logw(t["enc"], t["x_mask"], g, t.get("sdp_noise"))}
        elif self.stage == "flow":
            out = {"z": m.flow_reverse(t["z_p"], t["y_mask"], g)}
        else:
            decode = m.decode if self.planar is None else self.planar
            out = {"audio": decode(t["z"], t["y_mask"], g)}
        values = tuple(out[name] for name in self.outputs)
        return values if len(values) > 1 else values[0]


def model_family(model: Generator) -> Family:
    """The stage contract `model` is exported by."""
    return VITS if isinstance(model, VitsSynthesizer) else BERT_VITS2


def has_emotion(model: Generator) -> bool:
    """Whether `model` is a Bert-VITS2 2.2 generator (its encoder takes the CLAP embedding ``emo``)."""
    return isinstance(model, SynthesizerTrn) and model.enc_p.emotion


def model_features(model: Generator) -> frozenset[str]:
    """The contract's voice features `model` has (VITS: several speakers, the stochastic duration predictor;
    Bert-VITS2: speaker weights into the encoder, and 2.2 the emotion input)."""
    if not isinstance(model, VitsSynthesizer):
        return frozenset({SPEAKER_WEIGHTS, EMOTION} if has_emotion(model) else {SPEAKER_WEIGHTS})
    return frozenset({MULTI_SPEAKER} if model.multi_speaker else set()) | ({SDP} if model.use_sdp else set())


def model_stages(model: Generator) -> tuple[StageName, ...]:
    """The stages a voice of `model` has (every stage its contract gives a voice with its features)."""
    return tuple(s.name for s in model_family(model).stages_for(model_features(model)))


def stage_module(model: Generator, stage: StageName, decoder_layout: DecoderLayout = "1d") -> nn.Module:
    """The export wrapper for one stage (in eval mode); `decoder_layout` "2d": the decoder on a 2-D copy of the
    generator (the same function; :mod:`vitsrt.export.planar`)."""
    if isinstance(model, VitsSynthesizer):
        return VitsStage(model, stage, decoder_layout).eval()
    if stage == "decoder":
        return DecoderStage(model, decoder_layout).eval()
    if stage == "encoder" and has_emotion(model):
        return EmotionEncoderStage(model).eval()
    return _WRAPPERS[stage](model).eval()


# ----- I/O contract -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageIO:
    """Names, dtypes and symbolic shapes of one stage graph (what goes into voice.json)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """Every symbolic dimension becomes a dynamic axis; 'F*512' is named 'F_x_512' in the graph."""
        axes: dict[str, dict[int, str]] = {}
        for spec in (*self.inputs, *self.outputs):
            named = {
                axis: dim.replace("*", "_x_").replace(" ", "")
                for axis, dim in enumerate(spec.shape)
                if isinstance(dim, str)
            }
            if named:
                axes[spec.name] = named
        return axes


def model_sizes(model: Generator) -> dict[str, int]:
    """The sizes the stage contract's axes name (vitsrt.stages), read from this model."""
    m = model.config.model
    sizes = {"hidden": m.hidden_channels, "latent": m.inter_channels, "gin": m.gin_channels, "hop": model.hop_length}
    if isinstance(model, SynthesizerTrn):
        sizes["bert_dim"] = model.enc_p.bert_proj.in_channels
        sizes["speakers"] = model.emb_g.num_embeddings
    if has_emotion(model):
        sizes["emo_dim"] = CLAP_DIM
    return sizes


def _specs(tensors: Sequence[Tensor], sizes: dict[str, int]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(name=t.name, dtype=t.dtype, shape=t.shape(sizes)) for t in tensors)


def stage_io(model: Generator, stage: StageName) -> StageIO:
    """The I/O contract of `stage` for this model's sizes (B, T, F symbolic; channels fixed) and features."""
    try:
        contract: Stage = model_family(model).stage(stage)
    except VitsrtError:
        raise ValueError(f"unknown stage {stage!r}") from None
    sizes, features = model_sizes(model), model_features(model)
    return StageIO(_specs(contract.inputs_for(features), sizes), _specs(contract.outputs_for(features), sizes))


def speaker_count(model: Generator) -> int:
    """Rows of the speaker table (1 for a VITS model without one)."""
    return model.n_speakers if isinstance(model, VitsSynthesizer) else model.emb_g.num_embeddings


def phone_count(model: Generator) -> int:
    return model.n_vocab if isinstance(model, VitsSynthesizer) else model.symbols.n_vocab


# ----- trace inputs -----------------------------------------------------------------------------------


def _mask(lengths: Sequence[int]) -> torch.Tensor:
    size = max(lengths)
    return (torch.arange(size)[None, :] < torch.tensor(lengths)[:, None]).float().unsqueeze(1)


def trace_inputs(model: Generator, stage: StageName, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Example inputs for tracing `stage`: a padded batch of two with distinct lengths."""
    gen = torch.Generator().manual_seed(seed)
    io = stage_io(model, stage)
    tokens, frames = _TRACE_TOKENS, _TRACE_FRAMES
    batch, t_max, f_max = len(tokens), max(tokens), max(frames)
    sid = torch.arange(batch) % speaker_count(model)
    values: dict[str, torch.Tensor] = {
        "phone_ids": torch.randint(0, phone_count(model), (batch, t_max), generator=gen),
        "lengths": torch.tensor(tokens),
        "sid": sid,
        "x_mask": _mask(tokens),
        "y_mask": _mask(frames),
        "sdp_ratio": torch.tensor([0.3, 1.0]),
    }
    g = model.speaker_embedding(sid)
    if g is not None:
        values["g"] = g.detach()
    if isinstance(model, SynthesizerTrn):
        values["speaker_weights"] = torch.nn.functional.one_hot(sid, speaker_count(model)).float()
        values["tone_ids"] = torch.randint(0, model.symbols.num_tones, (batch, t_max), generator=gen)
        values["language_ids"] = torch.randint(0, model.symbols.num_languages, (batch, t_max), generator=gen)
    # A per-frame speaker input (axis "G": the flow and decoder) is traced with a different vector on every frame,
    # so the graph is made for F vectors; one vector ([B, gin, 1]) broadcasts through the same graph.
    shapes = {"T": t_max, "F": f_max, "B": batch, "G": f_max}
    out = []
    for spec in io.inputs:
        if spec.name in values and spec.shape[-1] != "G":
            out.append(values[spec.name])
        else:
            shape = [shapes[d] if isinstance(d, str) else d for d in spec.shape]
            out.append(torch.randn(*shape, generator=gen))
    return tuple(out)


# ----- export -----------------------------------------------------------------------------------------


def folded_copy(model: Generator) -> Generator:
    """A private eval-mode copy of `model` with weight norm folded into plain conv weights."""
    if isinstance(model, VitsSynthesizer):
        copy: Generator = VitsSynthesizer(model.config, model.n_vocab)
    else:
        copy = SynthesizerTrn(model.config, model.symbols, emotion=model.enc_p.emotion)
    copy.load_state_dict(model.state_dict(), strict=True)
    folded = fold_weight_norm(copy)
    log.debug("folded weight norm in %d convs", folded)
    return copy.eval()


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported: use {MIN_OPSET}..{MAX_OPSET} (IR {DEFAULT_IR_VERSION})")
    return int(opset)


def check_graph(path: str | Path, stage: str) -> None:
    """Fail with ExportError if the graph has TensorRT-hostile ops or value-dependent shapes."""
    model = onnx.load(str(path), load_external_data=False)
    findings = find_forbidden_ops(model) + find_value_dependent_shapes(model)
    if findings:
        first = format_findings(findings[:3]).replace("\n", "; ")
        more = f" (and {len(findings) - 3} more)" if len(findings) > 3 else ""
        raise ExportError(f"{stage} graph is not TensorRT-friendly: {first}{more}")


def _check_declared_io(path: Path, stage: str, io: StageIO) -> None:
    """The written graph must expose exactly the contract's names (the tracer drops unused inputs)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    outputs = [o.name for o in graph.output]
    if inputs != io.input_names or outputs != io.output_names:
        raise ExportError(
            f"{stage} graph has inputs {inputs} / outputs {outputs}, expected {io.input_names} / {io.output_names}"
        )


def check_decoder_layout(layout: str) -> DecoderLayout:
    if layout not in DECODER_LAYOUTS:
        raise ExportError(f"decoder layout {layout!r} is not one of {', '.join(DECODER_LAYOUTS)}")
    return layout  # type: ignore[return-value]


def export_stage(
    folded: Generator,
    stage: StageName,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    decoder_layout: DecoderLayout = DEFAULT_DECODER_LAYOUT,
) -> Path:
    """Trace one stage of an already folded model to `path`, finalise and check it (`decoder_layout`: how the
    decoder graph computes, same interface either way; :mod:`vitsrt.export.planar`)."""
    path = Path(path)
    io = stage_io(folded, stage)
    module = stage_module(folded, stage, check_decoder_layout(decoder_layout))
    args = trace_inputs(folded, stage)
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation and emits tracer warnings about Python
        # values taken from tensor shapes; the graphs are verified numerically instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=io.input_names,
            output_names=io.output_names,
            dynamic_axes=io.dynamic_axes(),
            opset_version=check_opset(opset),
            do_constant_folding=True,
            dynamo=False,
        )
    finalize_onnx(path, ir_version=DEFAULT_IR_VERSION)
    os.chmod(path, 0o644)  # finalize_onnx rewrites through a private (0600) temp file
    _check_declared_io(path, stage, io)
    check_graph(path, stage)
    log.info("exported %s -> %s (%.1f MB)", stage, path.name, path.stat().st_size / 1e6)
    return path


def export_stages(
    model: Generator,
    out_dir: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    stages: Sequence[StageName] | None = None,
    decoder_layout: DecoderLayout = DEFAULT_DECODER_LAYOUT,
) -> Mapping[StageName, Path]:
    """Export the stages of `model` (weight norm folded on a copy) as ``<stage>.onnx`` into `out_dir`
    (`stages`: all of its family's for its features when None; `decoder_layout`: see :func:`export_stage`)."""
    check_opset(opset)
    check_decoder_layout(decoder_layout)
    stages = model_stages(model) if stages is None else stages
    out_dir = Path(out_dir)
    folded = folded_copy(model)
    return {
        stage: export_stage(folded, stage, out_dir / f"{stage}.onnx", opset=opset, decoder_layout=decoder_layout)
        for stage in stages
    }
