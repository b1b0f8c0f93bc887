"""The voice bundle manifest (``voice.json``): the contract between ``vitsrt export`` and every server.

A voice directory holds ``voice.json`` plus the stage graphs it names (and optional TensorRT plans). The
manifest is validated strictly: a typo in a hand-edited file, a graph file that went missing or was
truncated in a copy, or a bundle written by a newer, incompatible vitsrt must fail at load time with a
message naming the problem, not as a shape error deep inside a batch of other people's requests.
Hostile files get the same treatment: voice.json and every file it names must be regular files (a FIFO
would hang start-up), files must stay inside the voice directory after symlinks are resolved, sizes are
bounded before anything is allocated, and ``decoder_context_frames`` (``flow_context_frames``) is recomputed
from the recorded decoder (flow) layout rather than trusted.

Compatibility rule: ``format_version`` is ``"MAJOR.MINOR"``. Readers accept any minor of their major
(minor bumps only add optional fields with defaults); an unknown major is refused with a clear error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from vitsrt.errors import VoiceError, clip
from vitsrt.files import NotRegularFileError, SmallFileError, irregular, open_regular, read_small_text
from vitsrt.receptive_field import coupling_flow_context_frames, decoder_context_frames
from vitsrt.sampling import Sampling
from vitsrt.stages import BERT_FEATURES, FAMILIES, STAGE_NAMES, StageName, TensorDType

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "STAGES",
    "SUPPORTED_FORMAT_MAJOR",
    "BertInput",
    "DecoderInfo",
    "EmotionInfo",
    "EngineKey",
    "FlowInfo",
    "FrontEnd",
    "GraphSpec",
    "Graphs",
    "ModelInfo",
    "ParityReport",
    "StageName",
    "StageParity",
    "TensorRTEngine",
    "TensorSpec",
    "Voice",
    "VoiceManifest",
    "load_voice",
    "read_manifest",
    "sha256_file",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "voice.json"
# 1.1: `weights` (how the graphs store their weights); 1.2: `decoder` (its layout, to check the context);
# 1.3: `flow_context_frames` and `flow` (a WaveNet-coupling flow's layout: the engine runs it per window)
FORMAT_VERSION = "1.3"
SUPPORTED_FORMAT_MAJOR = 1

# Upper bounds on what a voice.json may claim. A hostile or corrupted file must not make a server
# allocate (per request: noise of latent_channels x frames, BERT zeros of bert_dim x tokens) or wait
# without limit; each bound is far above any VITS-family model (Bert-VITS2: 44.1 kHz, hop 512,
# 192 latent channels, 112 symbols, 1024-dim BERT, a few hundred speakers).
MAX_MANIFEST_BYTES = 4 << 20  # real manifests are ~20 KB
MAX_JSON_DEPTH = 32  # real manifests nest 7 deep; json.loads recurses once per level
MAX_SAMPLE_RATE = 192_000
MAX_HOP_LENGTH = 4096
MAX_CHANNELS = 8192  # latent_channels, bert_dim and every fixed graph dimension
MAX_TABLE_ROWS = 1 << 16  # num_speakers, num_symbols: rows of embedding tables
MAX_SMALL_TABLE = 1024  # num_tones, num_languages
MAX_CONTEXT_FRAMES = 512

# The stage contract lives in vitsrt.stages; these names are its manifest-facing views.
STAGES: tuple[StageName, ...] = STAGE_NAMES
BertInput = Literal[BERT_FEATURES]  # type: ignore[valid-type]
Precision = Literal["fp32", "tf32", "fp16", "bf16", "int8", "fp8"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# A symbolic dimension: an identifier optionally combined with integers/identifiers, e.g. "B", "T", "F*512".
_SYMBOLIC_DIM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\s*[*+-]\s*[A-Za-z0-9_]+)*$")
_FORMAT_VERSION = re.compile(r"^(\d+)\.(\d+)$")


class _Strict(BaseModel):
    """Base for manifest records: unknown keys are errors (they are almost always typos).

    Files are validated in strict mode (see :func:`read_manifest`: ``"sample_rate": "44100"`` is an
    error there), while Python callers such as the exporter may pass tuples or numpy scalars.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)


def _check_relative_file(value: str) -> str:
    """Bundle files must stay inside the voice directory: relative, POSIX separators, no '..'."""
    if not value or value.strip() != value or len(value) > 1024:
        raise ValueError("must be a non-empty relative path without surrounding spaces")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")  # they would forge lines in messages and logs
    path = PurePosixPath(value)
    if "\\" in value or path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", value):
        raise ValueError(f"{value!r} must be a relative path inside the voice directory (POSIX '/', no '..')")
    return value


def _check_sha256(value: str) -> str:
    if not _HEX64.match(value):
        raise ValueError("must be 64 lowercase hexadecimal characters")
    return value


class TensorSpec(_Strict):
    """One graph input or output. Dimensions are ints (fixed) or symbols ("B", "T", "F", "F*512")."""

    name: str = Field(min_length=1, max_length=256)
    dtype: TensorDType
    shape: list[int | str] = Field(max_length=8)

    @field_validator("shape")
    @classmethod
    def _dims(cls, dims: list[int | str]) -> list[int | str]:
        for dim in dims:
            if isinstance(dim, int) and not 0 <= dim <= MAX_CHANNELS:
                raise ValueError(f"fixed dimension {dim} is outside 0..{MAX_CHANNELS}")
            if isinstance(dim, str) and not _SYMBOLIC_DIM.match(dim):
                raise ValueError(f"symbolic dimension {dim!r} is not an expression like 'T' or 'F*512'")
        return dims


class GraphSpec(_Strict):
    """A stage graph file plus what a backend needs to bind it without opening it first."""

    file: str
    sha256: str
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    opset: int = Field(ge=1, le=1000)

    @field_validator("file")
    @classmethod
    def _relative_file(cls, value: str) -> str:
        return _check_relative_file(value)

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        return _check_sha256(value)

    @model_validator(mode="after")
    def _unique_names(self) -> GraphSpec:
        for kind, specs in (("input", self.inputs), ("output", self.outputs)):
            names = [s.name for s in specs]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} names: {dupes}")
        return self

    def input(self, name: str) -> TensorSpec | None:
        """The input called `name`, or None."""
        return next((s for s in self.inputs if s.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        """The output called `name`, or None."""
        return next((s for s in self.outputs if s.name == name), None)


class _GraphsBase(_Strict):
    """The stage graphs by stage name; an optional stage (``duration_dp_only``: the deterministic
    predictor alone, run instead of ``duration`` when a whole batch has ``sdp_ratio == 0``) may be absent."""

    def items(self) -> list[tuple[StageName, GraphSpec]]:
        """(stage, graph) for every graph present, in pipeline order."""
        return [(stage, spec) for stage in STAGES if (spec := getattr(self, stage, None)) is not None]

    def get(self, stage: StageName) -> GraphSpec:
        """The graph for `stage`; VoiceError if this voice has none."""
        spec = getattr(self, stage, None) if stage in STAGES else None
        if spec is None:
            raise VoiceError(f"this voice has no {stage!r} graph")
        return spec


# One field per stage of the contract (voice.json's "graphs" object), required unless the stage is optional.
def _required_everywhere(stage: str) -> bool:
    """Whether every family requires `stage` (a field every voice.json has); the rest are checked per family."""
    return all(stage in f.required for f in FAMILIES.values())


# One field per stage of any family's contract (voice.json's "graphs" object), required when every family
# requires it; VoiceManifest checks the graphs against its own family's stages.
Graphs = create_model(
    "Graphs",
    __base__=_GraphsBase,
    **{name: ((GraphSpec, ...) if _required_everywhere(name) else (GraphSpec | None, None)) for name in STAGE_NAMES},
)


class StageParity(_Strict):
    """Export-time agreement of one graph with the PyTorch reference on random inputs."""

    max_abs_diff: float = Field(ge=0)
    tolerance: float = Field(gt=0)
    worst_case: str = ""
    cases: int = Field(default=0, ge=0)

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


class ParityReport(_Strict):
    """Parity figures measured by ``vitsrt export --verify`` (keyed by stage, plus e.g. "pipeline")."""

    reference: str = Field(min_length=1, description="the reference, e.g. 'torch 2.13.0 cpu'")
    runtime: str = Field(min_length=1, description="what ran the graphs, e.g. 'onnxruntime 1.31.1 CPU'")
    stages: dict[str, StageParity] = Field(min_length=1)

    @field_validator("stages")
    @classmethod
    def _finite(cls, stages: dict[str, StageParity]) -> dict[str, StageParity]:
        for name, figures in stages.items():
            if not math.isfinite(figures.max_abs_diff):
                raise ValueError(f"stage {name!r}: max_abs_diff is not finite")
        return stages


class EngineKey(_Strict):
    """What a TensorRT plan is only valid for: plans do not transfer across GPUs or TensorRT versions."""

    gpu_name: str = Field(min_length=1)
    compute_capability: str = Field(pattern=r"^\d+\.\d+$")
    trt_version: str = Field(pattern=r"^\d+(\.\d+)*$")
    precision: Precision


class TensorRTEngine(_Strict):
    """A serialized TensorRT plan for one stage, relative to the voice directory (usually engines/...)."""

    stage: StageName
    key: EngineKey
    file: str
    sha256: str | None = None

    @field_validator("file")
    @classmethod
    def _relative_file(cls, value: str) -> str:
        return _check_relative_file(value)

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        return None if value is None else _check_sha256(value)


class ModelInfo(_Strict):
    """Which architecture the graphs come from, e.g. family "bert-vits2", version "2.3"."""

    family: Literal["vits", "vits2", "bert-vits2"]
    version: str = Field(min_length=1, pattern=r"^[0-9A-Za-z.+_-]+$")

    @property
    def tag(self) -> str:
        """The compact form used in logs and listings, e.g. ``bert-vits2-2.3``."""
        return f"{self.family}-{self.version}"


class FrontEnd(_Strict):
    """How text or ids become the encoder's ``phone_ids``/``tone_ids``/``language_ids`` (and BERT inputs).

    * ``kind="ids"``: callers send ids; ``symbols`` is the model's symbol table (index = id).
    * ``kind="ipa"``: espeak-ng phonemes mapped piper-style through ``phoneme_id_map`` with the
      ``bos``/``eos`` markers and ``pad`` between phonemes; ``espeak_voices`` maps a language name to the
      espeak-ng voice that phonemizes it.
    * ``kind="bv2"``: Bert-VITS2 text in Chinese, Japanese or English (`vitsrt.text.bv2`, upstream's front end):
      ``symbols`` is upstream's symbol table, ``tone_offsets`` each language's first tone id; ``bert_models``
      names, per language, the BERT graph directory in the bundle (``bert/<hash>``, shared by voices that use the
      same model) whose features feed the encoder input ``bert_slots`` names; languages without one get zeros.
      Raw ids are accepted too.
    * ``kind="piper"``: an imported piper voice: phonemes and ids exactly as piper-tts makes them
      (`vitsrt.text.piper`), through ``phoneme_id_map`` with pad between phonemes (``add_blank`` true);
      ``espeak_voice`` is the voice's espeak-ng voice (its ``espeak.voice``), ``vowel_clusters`` its
      phoneme merges (each joins into a key of ``phoneme_id_map``).
    Table sizes are stored explicitly because they are the sizes of the encoder's embedding tables,
    which bound every id a request may carry.
    """

    kind: Literal["ids", "ipa", "piper", "bv2"]
    num_symbols: int = Field(ge=1, le=MAX_TABLE_ROWS)
    symbols: list[str] | None = None
    phoneme_id_map: dict[str, list[int]] | None = None
    add_blank: bool
    blank_id: int = Field(default=0, ge=0)
    bos: str = "^"
    eos: str = "$"
    pad: str = "_"
    espeak_voices: dict[str, str] = Field(default_factory=dict)
    languages: dict[str, int] = Field(min_length=1)
    num_languages: int = Field(ge=1, le=MAX_SMALL_TABLE)
    num_tones: int = Field(ge=1, le=MAX_SMALL_TABLE)
    bert_inputs: list[BertInput] = Field(default_factory=list)
    bert_dim: int = Field(default=1024, ge=1, le=MAX_CHANNELS)
    espeak_voice: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_+-]*$")
    vowel_clusters: list[list[str]] | None = None
    tone_offsets: dict[str, int] | None = None
    bert_slots: dict[str, BertInput] = Field(default_factory=dict)
    bert_models: dict[str, str] = Field(default_factory=dict)
    default_language: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FrontEnd:
        if self.kind in ("ids", "bv2"):
            if self.symbols is None:
                raise ValueError(f"kind {self.kind!r} needs the 'symbols' table")
            if len(self.symbols) != self.num_symbols:
                raise ValueError(
                    f"'symbols' has {len(self.symbols)} entries but num_symbols is {self.num_symbols}"
                )
        else:
            if not self.phoneme_id_map:
                raise ValueError(f"kind {self.kind!r} needs a non-empty 'phoneme_id_map'")
            for marker in ("bos", "eos", "pad"):
                if getattr(self, marker) not in self.phoneme_id_map:
                    raise ValueError(f"{marker} marker {getattr(self, marker)!r} is not in phoneme_id_map")
            unknown = sorted(set(self.espeak_voices) - set(self.languages))
            if unknown:
                raise ValueError(f"espeak_voices names languages that are not in 'languages': {unknown}")
        self._piper_consistent()
        self._bv2_consistent()
        if self.phoneme_id_map is not None:
            for phoneme, ids in self.phoneme_id_map.items():
                if not ids or any(i < 0 or i >= self.num_symbols for i in ids):
                    raise ValueError(
                        f"phoneme_id_map[{phoneme!r}] = {ids} is empty or outside 0..{self.num_symbols - 1}"
                    )
        if self.blank_id >= self.num_symbols:
            raise ValueError(f"blank_id {self.blank_id} is outside 0..{self.num_symbols - 1}")
        for name, lang_id in self.languages.items():
            if not 0 <= lang_id < self.num_languages:
                raise ValueError(f"language {name!r} has id {lang_id}, outside 0..{self.num_languages - 1}")
        if len(set(self.bert_inputs)) != len(self.bert_inputs):
            raise ValueError(f"bert_inputs has duplicates: {self.bert_inputs}")
        return self

    def _piper_consistent(self) -> None:
        if self.kind != "piper":
            if self.espeak_voice is not None or self.vowel_clusters is not None:
                raise ValueError("'espeak_voice' and 'vowel_clusters' belong to kind 'piper'")
            return
        if self.espeak_voice is None:
            raise ValueError("kind 'piper' needs 'espeak_voice' (the piper voice's espeak.voice)")
        if not self.add_blank:
            raise ValueError("kind 'piper' puts the pad between phonemes: 'add_blank' must be true")
        for cluster in self.vowel_clusters or []:
            if len(cluster) < 2 or "".join(cluster) not in (self.phoneme_id_map or {}):
                raise ValueError(f"vowel cluster {cluster} must join two or more phonemes into a phoneme_id_map key")


    def _bv2_consistent(self) -> None:
        if self.kind != "bv2":
            if self.tone_offsets is not None or self.bert_slots or self.bert_models:
                raise ValueError("'tone_offsets', 'bert_slots' and 'bert_models' belong to kind 'bv2'")
            return
        if self.tone_offsets is None:
            raise ValueError("kind 'bv2' needs 'tone_offsets' (each language's first tone id)")
        for field in ("tone_offsets", "bert_slots", "bert_models"):
            unknown = sorted(set(getattr(self, field)) - set(self.languages))
            if unknown:
                raise ValueError(f"{field} names languages that are not in 'languages': {unknown}")
        for lang, offset in self.tone_offsets.items():
            if not 0 <= offset < self.num_tones:
                raise ValueError(f"tone_offsets[{lang!r}] = {offset} is outside 0..{self.num_tones - 1}")
        for lang, path in self.bert_models.items():
            if lang not in self.bert_slots:
                raise ValueError(f"bert_models[{lang!r}] has no bert_slots entry (which encoder input it feeds)")
            if not _BERT_DIR.fullmatch(path):
                raise ValueError(f"bert_models[{lang!r}] = {clip(path)} is not a bundle directory bert/<hash>")
        missing = sorted(set(self.bert_slots.values()) - set(self.bert_inputs))
        if missing:
            raise ValueError(f"bert_slots feed {missing}, which are not in bert_inputs")
        if self.default_language is not None and self.default_language not in self.languages:
            raise ValueError(f"default_language {clip(self.default_language)} is not in 'languages'")


_BERT_DIR = re.compile(r"bert/[0-9a-f]{8,64}")
_CLAP_DIR = re.compile(r"clap/[0-9a-f]{8,64}")


class EmotionInfo(_Strict):
    """Bert-VITS2 2.2 voices: where the encoder's ``emo`` input (one CLAP embedding per request) comes from.

    ``clap_model`` names the bundle directory ``clap/<hash>`` of the exported CLAP towers (``vitsrt export
    --clap``), which turn a request's text prompt or reference clip into the embedding; without it requests can
    only send a ready embedding. ``default_prompt`` is the text prompt of requests that give no emotion (needs
    ``clap_model``); without one they get a zero embedding."""

    clap_model: str | None = None
    default_prompt: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _consistent(self) -> EmotionInfo:
        if self.clap_model is not None and not _CLAP_DIR.fullmatch(self.clap_model):
            raise ValueError(f"clap_model {clip(self.clap_model)} is not a bundle directory clap/<hash>")
        if self.default_prompt is not None and self.clap_model is None:
            raise ValueError("default_prompt needs clap_model (the text tower that embeds it)")
        return self


_Rate = Annotated[int, Field(ge=1, le=64)]
_Kernel = Annotated[int, Field(ge=1, le=256)]
_Dilations = Annotated[list[Annotated[int, Field(ge=1, le=64)]], Field(min_length=1, max_length=8)]


class DecoderInfo(_Strict):
    """The HiFi-GAN decoder's layer layout (the model config's fields of the same names).

    Recorded so that a loader can recompute ``decoder_context_frames`` instead of trusting it: a
    context that is too small does not fail, it silently makes streamed audio differ from one-shot.
    """

    upsample_rates: list[_Rate] = Field(min_length=1, max_length=8)
    upsample_kernel_sizes: list[_Kernel] = Field(min_length=1, max_length=8)
    resblock: Literal["1", "2"]
    resblock_kernel_sizes: list[_Kernel] = Field(min_length=1, max_length=8)
    resblock_dilation_sizes: list[_Dilations] = Field(min_length=1, max_length=8)

    @model_validator(mode="after")
    def _consistent(self) -> DecoderInfo:
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes differ in length")
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes, strict=True):
            if kernel < rate or (kernel - rate) % 2:
                raise ValueError(f"upsample kernel {kernel} does not fit rate {rate}")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        return self

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_rates)

    def context_frames(self) -> int:
        """Frames of context per side that make a windowed decode equal the one-shot decode."""
        return decoder_context_frames(self.upsample_rates, self.upsample_kernel_sizes, self.resblock,
                                      self.resblock_kernel_sizes, self.resblock_dilation_sizes)


class FlowInfo(_Strict):
    """A WaveNet-coupling flow's layer layout (original VITS; Bert-VITS2 with ``use_transformer_flow`` false).

    Recorded so that a loader can recompute ``flow_context_frames`` instead of trusting it. A voice with it
    has its flow run per decode window; a voice without it (transformer flow, older bundles) on whole sentences.
    """

    kind: Literal["residual_coupling"] = "residual_coupling"
    n_flows: int = Field(ge=1, le=16, description="coupling layers (each followed by a channel flip)")
    kernel_size: int = Field(ge=1, le=31, description="the WaveNet stacks' conv kernel (odd)")
    dilation_rate: int = Field(ge=1, le=4, description="layer i of a stack dilates by dilation_rate ** i")
    n_layers: int = Field(ge=1, le=16, description="WaveNet layers per coupling")

    @model_validator(mode="after")
    def _odd_kernel(self) -> FlowInfo:
        if self.kernel_size % 2 != 1:
            raise ValueError(f"the flow's kernel_size must be odd, got {self.kernel_size}")
        return self

    def context_frames(self) -> int:
        """Frames of context per side that make a windowed flow equal the whole-utterance flow."""
        return coupling_flow_context_frames(self.n_flows, self.kernel_size, self.dilation_rate, self.n_layers)


class VoiceManifest(_Strict):
    """The whole ``voice.json``."""

    format_version: str = FORMAT_VERSION
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: ModelInfo
    sample_rate: int = Field(gt=0, le=MAX_SAMPLE_RATE)
    hop_length: int = Field(gt=0, le=MAX_HOP_LENGTH)
    latent_channels: int = Field(ge=1, le=MAX_CHANNELS, description="channels C of m_p/logs_p/z_p/z (the prior noise)")
    num_speakers: int = Field(ge=1, le=MAX_TABLE_ROWS, description="rows of the speaker embedding table")
    speakers: dict[str, int] = Field(min_length=1)
    front_end: FrontEnd
    inference: Sampling = Field(default_factory=Sampling, description="sampling values a request does not set")
    decoder_context_frames: int = Field(
        ge=0, le=MAX_CONTEXT_FRAMES, description="decoder receptive field, one side, in frames")
    decoder: DecoderInfo | None = Field(
        default=None, description="the decoder layout that decoder_context_frames is checked against (1.2+)")
    flow_context_frames: int | None = Field(
        default=None, ge=0, le=MAX_CONTEXT_FRAMES,
        description="the flow's receptive field, one side, in frames; unset: the flow runs on whole sentences (1.3+)")
    flow: FlowInfo | None = Field(
        default=None, description="the flow layout that flow_context_frames is checked against (1.3+)")
    graphs: Graphs
    weights: Literal["fp32", "fp16"] = Field(
        default="fp32", description="how the graphs store their weights; fp16: rounded once, computed in float32")
    parity: ParityReport | None = None
    engines: list[TensorRTEngine] = Field(default_factory=list)
    emotion: EmotionInfo | None = Field(default=None, description="Bert-VITS2 2.2: the emo input's sources")

    @model_validator(mode="before")
    @classmethod
    def _known_format(cls, data: Any) -> Any:
        if isinstance(data, dict) and "format_version" in data:
            check_format_version(data["format_version"])
        return data

    @model_validator(mode="after")
    def _consistent(self) -> VoiceManifest:
        for name, sid in self.speakers.items():
            if not name:
                raise ValueError("speaker names must be non-empty")
            if not 0 <= sid < self.num_speakers:
                raise ValueError(f"speaker {clip(name)} has id {sid}, outside 0..{self.num_speakers - 1}")
        self._check_decoder()
        self._check_flow()
        self._check_family()
        encoder_inputs = {spec.name for spec in self.graphs.encoder.inputs}
        missing = [b for b in self.front_end.bert_inputs if b not in encoder_inputs]
        if missing:
            raise ValueError(f"front_end.bert_inputs lists {missing} but the encoder graph lacks them")
        if self.emotion is not None and "emo" not in encoder_inputs:
            raise ValueError("'emotion' is set but the encoder graph has no emo input")
        weights = self.graphs.encoder.input("speaker_weights")  # weights over the speaker table: one per row
        if weights is not None and weights.shape[1:] != [self.num_speakers]:
            raise ValueError(f"the encoder's speaker_weights has shape {weights.shape}, expected ['B', "
                             f"{self.num_speakers}] (num_speakers)")
        seen: set[tuple[str, str, str, str, str]] = set()
        for engine in self.engines:
            k = engine.key
            ident = (engine.stage, k.gpu_name, k.compute_capability, k.trt_version, k.precision)
            if ident in seen:
                raise ValueError(f"two TensorRT engines for the same stage and key: {ident}")
            seen.add(ident)
            if getattr(self.graphs, engine.stage, None) is None:
                raise ValueError(f"a TensorRT engine is listed for {engine.stage!r} but that graph is not")
        return self

    def _check_family(self) -> None:
        """The graphs are the stages of the voice's family: its required ones, and none it does not have."""
        contract = FAMILIES.get(self.model.family)
        if contract is None:
            return  # a family without a stage contract yet (backends refuse it by name)
        present = [stage for stage, _ in self.graphs.items()]
        missing = [stage for stage in contract.required if stage not in present]
        foreign = [stage for stage in present if stage not in contract.names]
        if missing or foreign:
            problem = f"lacks the {missing[0]!r} graph" if missing else f"has a {foreign[0]!r} graph"
            raise ValueError(f"a {contract.name} voice {problem} (its stages: {', '.join(contract.names)})")

    def _check_decoder(self) -> None:
        """The stored context must be the one the decoder layout needs (bundles before 1.2 have no layout)."""
        if self.decoder is None:
            return
        if self.decoder.hop_length != self.hop_length:
            raise ValueError(f"the decoder's upsample_rates multiply to {self.decoder.hop_length} "
                             f"but hop_length is {self.hop_length}")
        needed = self.decoder.context_frames()
        if needed != self.decoder_context_frames:
            raise ValueError(f"decoder_context_frames is {self.decoder_context_frames} but the decoder described "
                             f"in {MANIFEST_NAME} needs {needed}")

    def _check_flow(self) -> None:
        """A windowed flow's context must be the one its recorded layout needs; neither is set without the other."""
        if self.flow is None and self.flow_context_frames is None:
            return
        if self.flow is None or self.flow_context_frames is None:
            given, lacking = ("flow_context_frames", "flow") if self.flow is None else ("flow", "flow_context_frames")
            raise ValueError(f"{given} is set but {lacking} is not: the flow's context is checked against its layout")
        needed = self.flow.context_frames()
        if needed != self.flow_context_frames:
            raise ValueError(f"flow_context_frames is {self.flow_context_frames} but the flow described "
                             f"in {MANIFEST_NAME} needs {needed}")

    @property
    def speaker_curves(self) -> bool:
        """Whether the flow and decoder take a speaker vector per frame (their g's last axis is symbolic: a speaker
        blend that changes over the utterance); bundles exported before speaker curves take one vector per item."""
        specs = [graph.input("g") if graph is not None else None for graph in (self.graphs.flow, self.graphs.decoder)]
        return all(spec is not None and isinstance(spec.shape[-1], str) for spec in specs)

    @property
    def sdp_skippable(self) -> bool:
        """Whether a batch whose requests all have sdp_ratio 0 can skip the stochastic predictor."""
        return self.graphs.duration_dp_only is not None

    def engines_for(self, key: EngineKey) -> dict[StageName, TensorRTEngine]:
        """TensorRT plans built for exactly this GPU / TensorRT version / precision, by stage."""
        return {e.stage: e for e in self.engines if e.key == key}

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> VoiceManifest:
        """Same as :func:`read_manifest`: parse one voice.json strictly, VoiceError on any problem."""
        return read_manifest(path)

    def to_json(self) -> str:
        """The manifest as written to disk (stable key order, trailing newline)."""
        return self.model_dump_json(indent=2, exclude_none=False) + "\n"

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically to `path` (a file, or a directory to get ``voice.json`` in it).

        Written to a temporary file in the same directory, flushed to disk, then renamed over the
        target, so readers (a server reloading voices) never see a half-written manifest.
        """
        target = Path(path)
        if target.is_dir():
            target = target / MANIFEST_NAME
        text = self.to_json()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return target


def check_format_version(value: object) -> tuple[int, int]:
    """Parse a ``format_version`` and refuse majors this vitsrt cannot read."""
    match = _FORMAT_VERSION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"format_version must be a string 'MAJOR.MINOR', got {value!r}")
    major, minor = int(match.group(1)), int(match.group(2))
    if major != SUPPORTED_FORMAT_MAJOR:
        raise ValueError(
            f"voice format_version {value} is not supported: this vitsrt reads format "
            f"{SUPPORTED_FORMAT_MAJOR}.x (re-export it with this vitsrt, or use the vitsrt that wrote it)"
        )
    return major, minor


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a regular file, read in chunks (graphs can be hundreds of MB)."""
    digest = hashlib.sha256()
    with _open_regular(Path(path)) as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _open_regular(path: Path) -> BinaryIO:
    """Open `path` for reading only if it is a regular file (vitsrt.files); VoiceError for anything else."""
    try:
        return open_regular(path)
    except NotRegularFileError as exc:
        raise VoiceError(f"{clip(os.fspath(path), 200)}: is {exc.kind}, not a regular file") from None


def _summarize(err: ValidationError, limit: int = 5) -> str:
    parts = []
    for item in err.errors()[:limit]:
        where = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    more = len(err.errors()) - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def _read_text(path: Path) -> str:
    """The manifest's text, refusing what is not a small regular UTF-8 file before reading much of it."""
    try:
        return read_small_text(path, MAX_MANIFEST_BYTES)
    except SmallFileError as exc:
        raise VoiceError(_manifest_refusal(path, exc)) from None


def _manifest_refusal(path: Path, exc: SmallFileError) -> str:
    """The one-line refusal of an unreadable voice.json, in the manifest's own words."""
    if exc.problem == "missing":
        return f"{path}: not found (a voice directory must contain {MANIFEST_NAME})"
    if exc.problem == "irregular":
        return f"{clip(os.fspath(path), 200)}: {exc.reason}"
    if exc.problem == "too large":
        return f"{path}: {exc.reason}; not a voice manifest (those are KBs)"
    if exc.problem == "not UTF-8":
        return f"{path}: cannot be read (not UTF-8: {exc.detail})"
    return f"{path}: {exc.reason}"


# A JSON string, escapes included; brackets inside strings do not nest.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _nests_deeper_than(text: str, depth: int) -> bool:
    """Whether JSON brackets nest more than `depth` levels (roughly: up to 2 x `depth` may pass).

    json.loads recurses once per level, so 100,000 nested brackets end in a RecursionError; this looks
    at the bracket skeleton with string operations only. Each round removes the innermost pairs, at
    least one level; pairs left after `depth` rounds mean deeper nesting. Unbalanced brackets stop
    reducing and are left for json.loads to report.
    """
    skeleton = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    for _ in range(depth):
        reduced = skeleton.replace("[]", "").replace("{}", "")
        if reduced == skeleton:
            return False
        skeleton = reduced
    return "[]" in skeleton or "{}" in skeleton


def _parse_json(path: Path, text: str) -> Any:
    if _nests_deeper_than(text, MAX_JSON_DEPTH):
        raise VoiceError(f"{path}: JSON nested more than {MAX_JSON_DEPTH} levels deep; not a voice manifest")
    try:
        return json.loads(text)
    except RecursionError:  # unbalanced deep nesting gets past the skeleton check
        raise VoiceError(f"{path}: JSON nested too deeply; not a voice manifest") from None
    except json.JSONDecodeError as exc:
        raise VoiceError(f"{path}: not valid JSON ({exc})") from None
    except ValueError:  # int() refuses numbers of more than 4300 digits
        raise VoiceError(f"{path}: not valid JSON (a number with thousands of digits)") from None


def read_manifest(path: str | os.PathLike[str]) -> VoiceManifest:
    """Parse and validate one ``voice.json`` file; every failure is a one-line VoiceError."""
    path = Path(path)
    raw = _read_text(path)
    data = _parse_json(path, raw)
    if not isinstance(data, dict):
        raise VoiceError(f"{path}: the top level must be a JSON object")
    if "format_version" not in data:
        raise VoiceError(f"{path}: no format_version; this is not a vitsrt voice manifest")
    try:
        check_format_version(data["format_version"])
    except ValueError as exc:
        raise VoiceError(f"{path}: {exc}") from None
    try:
        # Validate the JSON text (not the parsed dict) so strict mode applies JSON rules.
        manifest = VoiceManifest.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise VoiceError(f"{path}: invalid voice manifest: {_summarize(exc)}") from None
    if manifest.decoder is None:
        logger.warning(
            "%s: format %s records no decoder layout, so decoder_context_frames (%d) cannot be checked; "
            "re-export the voice to have it checked", path, manifest.format_version, manifest.decoder_context_frames)
    return manifest


def _bundle_file(root: Path, relative: str, what: str) -> Path | None:
    """``root / relative`` for a file named in voice.json; None if it does not exist.

    VoiceError if it is not a regular file, or if a symlink (of the file or of a directory on its
    way) leads out of the voice directory: a bundle must not make a server read arbitrary files. A
    symlinked voice directory itself is fine: containment is checked against its resolved path.
    """
    path = root / relative
    named = f"{root}: the {what} {clip(relative)} named in {MANIFEST_NAME}"
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        raise VoiceError(f"{named} cannot be resolved (a symlink loop?)") from None
    if not real.is_relative_to(root.resolve()):
        raise VoiceError(f"{named} leads outside the voice directory (to {clip(real, 120)}); refusing to follow it")
    try:
        kind = irregular(os.stat(real).st_mode)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise VoiceError(f"{named} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if kind is not None:
        raise VoiceError(f"{named} is {kind}, not a regular file")
    return path


@dataclass(frozen=True)
class Voice:
    """A loaded voice: the validated manifest plus the directory its relative paths refer to."""

    root: Path
    manifest: VoiceManifest

    @property
    def name(self) -> str:
        return self.manifest.name

    def graph_path(self, stage: StageName) -> Path:
        """Absolute path of a stage graph."""
        return self.root / self.manifest.graphs.get(stage).file

    def engine_paths(self, key: EngineKey) -> dict[StageName, Path]:
        """Existing TensorRT plans for `key`, by stage (missing plan files are left out)."""
        found = {}
        for stage, engine in self.manifest.engines_for(key).items():
            path = _bundle_file(self.root, engine.file, f"{stage} TensorRT plan")
            if path is not None:
                found[stage] = path
        return found


def _check_graph(root: Path, stage: StageName, spec: GraphSpec, verify_sha256: bool) -> None:
    path = _bundle_file(root, spec.file, f"{stage} graph")
    if path is None:
        raise VoiceError(f"{root}: the {stage} graph {clip(spec.file)} named in {MANIFEST_NAME} is missing")
    if verify_sha256:
        actual = sha256_file(path)
        if actual != spec.sha256:
            raise VoiceError(
                f"{root}: SHA-256 mismatch for the {stage} graph {clip(spec.file)} (manifest {spec.sha256[:12]}..., "
                f"file {actual[:12]}...); the file is corrupted or was replaced: re-export or re-copy it"
            )


def _check_engine(root: Path, engine: TensorRTEngine, verify_sha256: bool) -> None:
    path = _bundle_file(root, engine.file, f"{engine.stage} TensorRT plan")
    if path is None:
        logger.warning("%s: TensorRT plan %s (%s) is listed but missing", root, clip(engine.file), engine.stage)
    elif verify_sha256 and engine.sha256 is not None and sha256_file(path) != engine.sha256:
        raise VoiceError(f"{root}: SHA-256 mismatch for the {engine.stage} TensorRT plan {clip(engine.file)}; "
                         "rebuild it")


def load_voice(voice_dir: str | os.PathLike[str], *, verify_sha256: bool = True) -> Voice:
    """Load and check a voice directory.

    Validates ``voice.json``, checks that every graph file exists inside the voice directory as a
    regular file and (by default) that its SHA-256 matches the manifest, naming the file on a
    mismatch. TensorRT plans are optional extras: a listed plan that is missing only logs a warning,
    so a bundle copied without ``engines/`` still serves on other backends.
    """
    root = Path(voice_dir)
    if not root.is_dir():
        raise VoiceError(f"{root}: not a directory (expected a voice directory containing {MANIFEST_NAME})")
    manifest = read_manifest(root / MANIFEST_NAME)
    for stage, spec in manifest.graphs.items():
        _check_graph(root, stage, spec, verify_sha256)
    for engine in manifest.engines:
        _check_engine(root, engine, verify_sha256)
    return Voice(root=root, manifest=manifest)
