"""The stage contract: which graphs a model family is split into, and each graph's inputs and outputs.

A *stage* is one graph (``encoder.onnx``...). A :class:`Family` is data: its stages in pipeline order,
each with named :class:`Tensor` inputs/outputs (dtype and axes). The exporter names graph inputs and
dynamic axes from it, the backends learn which stages exist and which are required, verification takes
its tolerances, and voice.json's graph specs are written from it. Nothing else spells a stage list.

Axes are written symbolically and resolved per voice by :meth:`Tensor.shape`:

* upper-case symbols stay symbolic: they vary per call (``"B"``, ``"T"``, ``"F"``: batch, tokens, frames;
  ``"G"``: the frames of a speaker vector, either ``F`` (one vector per frame) or 1 (one for every frame));
* a lower-case size name (``"hidden"``, ``"latent"``, ``"gin"``, ``"bert_dim"``, ``"hop"``, ``"speakers"``)
  becomes the voice's int (a name the voice does not give is an error, so a typo cannot pass as a dynamic axis);
* ``"F*hop"`` becomes ``"F*512"``: a symbolic product the graph computes.

A tensor or stage with ``when=FEATURE`` exists only for voices that have that feature (e.g. a speaker
input only when multi-speaker), so families without tones, languages, BERT or speakers fit as data; a tensor
with ``unless=FEATURE`` exists only for voices without it (the input a feature replaces, which bundles exported
before the feature keep).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from vitsrt.errors import VitsrtError

__all__ = [
    "BERT_FEATURES",
    "BERT_VITS2",
    "EMOTION",
    "FAMILIES",
    "MULTI_SPEAKER",
    "SDP",
    "SPEAKER_WEIGHTS",
    "STAGE_NAMES",
    "VITS",
    "Family",
    "Stage",
    "StageName",
    "Tensor",
    "family",
]

TensorDType = Literal["float32", "float16", "bfloat16", "int64", "int32", "bool"]


@dataclass(frozen=True)
class Tensor:
    """One graph input or output: name, dtype, axes (symbols, size names or fixed ints)."""

    name: str
    dtype: TensorDType
    axes: tuple[int | str, ...]
    when: str | None = None  # a voice feature this tensor needs; None: always present
    unless: str | None = None  # a voice feature that replaces this tensor (absent for voices that have it)

    @property
    def optional(self) -> bool:
        return self.when is not None or self.unless is not None

    def present(self, features: Collection[str]) -> bool:
        return (self.when is None or self.when in features) and (self.unless is None or self.unless not in features)

    def shape(self, sizes: Mapping[str, int]) -> list[int | str]:
        """The axes with size names replaced by this voice's sizes (``F*hop`` -> ``F*512``)."""
        return [_resolve(axis, sizes) for axis in self.axes]


def _resolve(axis: int | str, sizes: Mapping[str, int]) -> int | str:
    if isinstance(axis, int) or axis.isupper():
        return axis
    if "*" in axis:
        symbol, size = axis.split("*")
        return f"{symbol}*{_size(size, sizes)}"
    return _size(axis, sizes)


def _size(name: str, sizes: Mapping[str, int]) -> int:
    if name not in sizes:
        raise VitsrtError(f"the stage contract needs the size {name!r}, which was not given")
    return int(sizes[name])


@dataclass(frozen=True)
class Stage:
    """One graph. ``optional``: a voice may lack it and the engine falls back (duration_dp_only).
    ``tolerance``: the (atol, rtol) its export must meet against the PyTorch reference in float32."""

    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    optional: bool = False
    when: str | None = None  # a voice feature this stage needs (e.g. a BERT model bundled with the voice)
    tolerance: tuple[float, float] = (1e-4, 1e-5)

    def present(self, features: Collection[str]) -> bool:
        return self.when is None or self.when in features

    def inputs_for(self, features: Collection[str] = ()) -> tuple[Tensor, ...]:
        """The inputs a voice with `features` feeds this graph, in graph order."""
        return tuple(t for t in self.inputs if t.present(features))

    def outputs_for(self, features: Collection[str] = ()) -> tuple[Tensor, ...]:
        return tuple(t for t in self.outputs if t.present(features))

    @property
    def length_axis(self) -> str:
        """"F" for stages that run on frames, "T" for stages that run on tokens."""
        return "F" if any("F" in t.axes for t in self.inputs) else "T"


@dataclass(frozen=True)
class Family:
    """A model family's stages in pipeline order."""

    name: str
    stages: tuple[Stage, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    @property
    def required(self) -> tuple[str, ...]:
        """The stages every voice of this family has (a backend must run all of them)."""
        return tuple(s.name for s in self.stages if not s.optional and s.when is None)

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise VitsrtError(f"{self.name} has no stage {name!r}; its stages are {', '.join(self.names)}")

    def stages_for(self, features: Collection[str] = ()) -> tuple[Stage, ...]:
        """The stages a voice with `features` can have, in pipeline order."""
        return tuple(s for s in self.stages if s.present(features))


def _t(name: str, dtype: TensorDType, *axes: int | str, when: str | None = None,
       unless: str | None = None) -> Tensor:
    return Tensor(name, dtype, axes, when, unless)


# Bert-VITS2 2.x. Input order is the graph's argument order (export's stage wrappers follow it).
BERT_FEATURES = ("bert", "ja_bert", "en_bert")  # per-token BERT features, [B, bert_dim, T] each
_G = _t("g", "float32", "B", "gin", 1)
# The flow and decoder take the speaker vector per frame ([B, gin, F]: a speaker blend that changes over the
# utterance) or once ([B, gin, 1], broadcast over the frames): their speaker conditioning is pointwise in time
# (1x1 convolutions, a per-frame linear map in the transformer flow), so a window cropped with its context sees
# exactly what the whole sentence does. Text-level stages (encoder, duration) take one vector per item. Bundles
# exported before speaker curves have 1 here (they take static vectors only).
_G_FRAMES = _t("g", "float32", "B", "gin", "G")
_ENC = _t("enc", "float32", "B", "hidden", "T")
_X_MASK = _t("x_mask", "float32", "B", 1, "T")
_Y_MASK = _t("y_mask", "float32", "B", 1, "F")
_LOGW = (_t("logw", "float32", "B", 1, "T"),)
# Bert-VITS2 2.2's voice feature: one CLAP embedding per item (``emo`` [B, emo_dim], L2-normalised, 512 wide) into
# the encoder, whose emotion branch adds a vector to every token. 2.0 / 2.3 voices have no such input.
EMOTION = "emotion"
# The encoder's speaker input. A Bert-VITS2 text encoder is conditioned on the speaker vector inside the graph, so
# the graph takes the speaker as weights over the speaker table (``speaker_weights`` [B, speakers], one-hot for one
# speaker, a blend's mean weights for a blend) and computes g = speaker_weights @ emb_g.weight itself: a blend gets
# exactly the encoder, durations and g that the blended vector gives. Every export has this feature; bundles
# exported before it take ``sid`` [B] (one speaker per item: the engine blends their encoder outputs instead).
SPEAKER_WEIGHTS = "speaker_weights"

BERT_VITS2 = Family(
    name="bert-vits2",
    stages=(
        Stage(
            "encoder",
            inputs=(
                _t("phone_ids", "int64", "B", "T"),
                _t("tone_ids", "int64", "B", "T"),
                _t("language_ids", "int64", "B", "T"),
                _t("lengths", "int64", "B"),
                *(_t(name, "float32", "B", "bert_dim", "T") for name in BERT_FEATURES),
                _t("sid", "int64", "B", unless=SPEAKER_WEIGHTS),
                _t("speaker_weights", "float32", "B", "speakers", when=SPEAKER_WEIGHTS),
                _t("emo", "float32", "B", "emo_dim", when=EMOTION),
            ),
            outputs=(
                _ENC,
                _t("m_p", "float32", "B", "latent", "T"),
                _t("logs_p", "float32", "B", "latent", "T"),
                _X_MASK,
                _G,
            ),
            # With unit-variance BERT features encoder outputs reach ~4, where float32 rounding alone
            # is ~6e-5 on a default-size model; the other stages measure 1e-8 .. 2e-6.
            tolerance=(1e-4, 1e-4),
        ),
        Stage(
            "duration",
            inputs=(_ENC, _X_MASK, _G, _t("sdp_noise", "float32", "B", 2, "T"), _t("sdp_ratio", "float32", "B")),
            outputs=_LOGW,
        ),
        # The deterministic predictor alone: run instead of `duration` when a whole batch has sdp_ratio 0.
        Stage("duration_dp_only", inputs=(_ENC, _X_MASK, _G), outputs=_LOGW, optional=True),
        Stage(
            "flow",
            inputs=(_t("z_p", "float32", "B", "latent", "F"), _Y_MASK, _G_FRAMES),
            outputs=(_t("z", "float32", "B", "latent", "F"),),
        ),
        Stage(
            "decoder",
            inputs=(_t("z", "float32", "B", "latent", "F"), _Y_MASK, _G_FRAMES),
            outputs=(_t("audio", "float32", "B", 1, "F*hop"),),
        ),
    ),
)

# Original VITS as upstream VITS and piper build it: phone ids alone (no tones, languages or BERT). Voice features:
# "multi_speaker" (a speaker table: `sid` in, `g` out of the encoder and into every later stage; single-speaker
# voices have no speaker tensor at all) and "sdp" (the stochastic duration predictor, which takes the host's
# `sdp_noise`; without it the deterministic predictor runs on the encoder output alone). One duration stage:
# VITS has no sdp/dp mix, so no sdp_ratio and no duration_dp_only.
MULTI_SPEAKER = "multi_speaker"
SDP = "sdp"
_G_MULTI = _t("g", "float32", "B", "gin", 1, when=MULTI_SPEAKER)
_G_FRAMES_MULTI = _t("g", "float32", "B", "gin", "G", when=MULTI_SPEAKER)  # per frame or broadcast, as _G_FRAMES

VITS = Family(
    name="vits",
    stages=(
        Stage(
            "encoder",
            inputs=(
                _t("phone_ids", "int64", "B", "T"),
                _t("lengths", "int64", "B"),
                _t("sid", "int64", "B", when=MULTI_SPEAKER),
            ),
            outputs=(
                _ENC,
                _t("m_p", "float32", "B", "latent", "T"),
                _t("logs_p", "float32", "B", "latent", "T"),
                _X_MASK,
                _G_MULTI,
            ),
        ),
        Stage(
            "duration",
            inputs=(_ENC, _X_MASK, _G_MULTI, _t("sdp_noise", "float32", "B", 2, "T", when=SDP)),
            outputs=_LOGW,
        ),
        Stage(
            "flow",
            inputs=(_t("z_p", "float32", "B", "latent", "F"), _Y_MASK, _G_FRAMES_MULTI),
            outputs=(_t("z", "float32", "B", "latent", "F"),),
        ),
        Stage(
            "decoder",
            inputs=(_t("z", "float32", "B", "latent", "F"), _Y_MASK, _G_FRAMES_MULTI),
            outputs=(_t("audio", "float32", "B", 1, "F*hop"),),
        ),
    ),
)

FAMILIES: Mapping[str, Family] = {BERT_VITS2.name: BERT_VITS2, VITS.name: VITS}

# Every stage name any family uses (voice.json's graph and TensorRT-plan keys).
STAGE_NAMES: tuple[str, ...] = tuple(dict.fromkeys(n for f in FAMILIES.values() for n in f.names))
StageName = Literal[STAGE_NAMES]  # type: ignore[valid-type]  # built from the data above


def family(name: str) -> Family:
    """The contract of a model family by name (``ModelInfo.family``)."""
    if name not in FAMILIES:
        raise VitsrtError(f"no stage contract for model family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]
