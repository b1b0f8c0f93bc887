"""Export a local Hugging Face CLAP model (laion/clap-htsat-fused layout) to ONNX towers for Bert-VITS2 2.2 emotion.

Upstream 2.2 (``clap_wrapper.py``) gets its emotion embedding from ``ClapModel.get_audio_features`` of a 48 kHz
reference clip, or ``get_text_features`` of a prompt such as "Happy", L2-normalised. :func:`export_clap` reads a
model from a LOCAL directory (``local_files_only``; nothing is downloaded) and writes ``out_root/<key[:16]>/``
with ``text.onnx``, ``audio.onnx``, ``tokenizer.json``, ``mel_filters.npy`` and ``clap.json`` (the serving side,
torch-free, is :mod:`vitsrt.text.clap`).

Design choices, and why:

* **Fusion always on.** With ``truncation="fusion"`` the feature extractor marks a random clip of a batch
  ``is_longer`` when none is longer than 10 s; upstream always passes one clip, so its clip is always marked and
  the audio tower's fusion branch (``mel_conv2d`` over the three local mel copies, AFF block) always runs. The
  graph runs it for every row, without the ``is_longer`` input: transformers selects the rows with
  ``torch.where`` (a NonZero, a value-dependent shape that TensorRT cannot build), so the patch embedding is
  replaced, for the export only, by one that applies the same modules to all rows.
* **Fixed time axis.** The audio tower takes exactly ``max_samples // hop + 1`` frames (10 s); only the batch is
  dynamic. The text graph has dynamic batch and token axes.
* **float32, TorchScript exporter**, like every vitsrt graph; each graph is checked for TensorRT-hostile ops and
  value-dependent shapes, then against the torch model on onnxruntime. The rebuilt tokenizer and the numpy
  features are checked against transformers' own tokenizer and feature extractor on probes.
* **Content-addressed** like :mod:`vitsrt.export.bert`: voices that use the same CLAP share one directory, and
  exporting it again reuses it after checking the stored files' hashes.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from torch.nn import functional as F

from vitsrt.errors import VitsrtError, clip
from vitsrt.export.hf_export import publish, quiet_transformers, read_json, source_key, unaltered, weight_files
from vitsrt.export.hf_export import where as _where
from vitsrt.export.onnx_checks import DEFAULT_IR_VERSION, finalize_onnx
from vitsrt.export.onnx_export import DEFAULT_OPSET, ExportError, check_graph, check_opset
from vitsrt.text.bert import SpecialToken
from vitsrt.text.clap import (
    AUDIO_GRAPH,
    MANIFEST_NAME,
    MEL_FILTERS_NAME,
    OUTPUT_NAME,
    TEXT_GRAPH,
    TOKENIZER_NAME,
    ClapManifest,
    ClapTokenizer,
    audio_features,
    read_clap_manifest,
)
from vitsrt.voice import EmotionInfo, VoiceManifest, sha256_file

__all__ = ["CLAP_FOLDER", "EXPORT_VERSION", "ClapGraphs", "export_clap", "with_emotion"]

log = logging.getLogger(__name__)

EXPORT_VERSION = 1  # part of the key: a changed exporter never reuses an older export
KEY_LENGTH = 16
CLAP_FOLDER = "clap"  # the bundle directory that holds CLAP exports (clap/<key>)
EMOTION_INPUT = "emo"  # the 2.2 encoder's emotion input (vitsrt.stages)
_SOURCE_FILES = (
    "config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "vocab.json", "merges.txt", "added_tokens.json",
)
_SELF_CHECK_TOLERANCE = 1e-4  # ORT vs torch on the check batch (float32 graphs agree to ~1e-6)
_FEATURE_TOLERANCE = 1e-3  # numpy log-mel vs the feature extractor, in dB (float64 sums in another order)
_PROBE_PROMPTS = ("Happy", "Sad", "Angry voice", "a calm, quiet and slightly sad voice", "", "  spaces  and\ttabs")
_GRAPHS = (TEXT_GRAPH, AUDIO_GRAPH, TOKENIZER_NAME, MEL_FILTERS_NAME)


@dataclass(frozen=True)
class ClapGraphs:
    """One exported CLAP: its directory, manifest, and whether an earlier export was reused."""

    directory: Path
    manifest: ClapManifest
    reused: bool
    seconds: float


# ----- the source directory ----------------------------------------------------------------------------



def _check_source(model_dir: Path) -> None:
    """A CLAP directory with the fused audio tower and the fusion/repeatpad feature extractor, or ExportError."""
    shown = _where(model_dir)
    if not model_dir.is_dir():
        raise ExportError(f"{shown}: not a directory (expected a local Hugging Face CLAP model directory)")
    for name in ("config.json", "preprocessor_config.json"):
        if not (model_dir / name).is_file():
            raise ExportError(f"{shown}: no {name}, not a Hugging Face CLAP model directory")
    config = read_json(model_dir / "config.json", "config.json")
    if config.get("model_type") != "clap":
        raise ExportError(f"{shown}: model_type {clip(config.get('model_type'), 40)} is not 'clap'")
    if not (config.get("audio_config") or {}).get("enable_fusion", False):
        raise ExportError(f"{shown}: the audio tower is not the fused one (Bert-VITS2 2.2 uses laion/clap-htsat-fused)")
    prep = read_json(model_dir / "preprocessor_config.json", "preprocessor_config.json")
    if prep.get("truncation", "fusion") != "fusion" or prep.get("padding", "repeatpad") != "repeatpad":
        raise ExportError(f"{shown}: the feature extractor must use truncation 'fusion' and padding 'repeatpad' "
                          f"(found {clip(prep.get('truncation'), 20)} / {clip(prep.get('padding'), 20)})")


def _source_key(model_dir: Path, weights: Sequence[Path], opset: int) -> str:
    header = {"format": "vitsrt-clap", "exporter": EXPORT_VERSION, "opset": opset}
    return source_key(model_dir, header, _SOURCE_FILES, weights)


def _load(model_dir: Path) -> tuple[nn.Module, Any]:
    """(ClapModel in float32 eval mode, ClapProcessor) from the local directory; ExportError if unusable."""
    import transformers
    from transformers import ClapModel, ClapProcessor

    dtype_arg = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    try:
        with quiet_transformers():
            model, info = ClapModel.from_pretrained(os.fspath(model_dir), local_files_only=True,
                                                    output_loading_info=True, **{dtype_arg: torch.float32})
            processor = ClapProcessor.from_pretrained(os.fspath(model_dir), local_files_only=True)
    except Exception as exc:  # transformers, safetensors and torch raise their own types for a bad directory
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(f"{_where(model_dir)}: the CLAP model cannot be loaded ({clip(reason, 160)})") from None
    missing = [k for k in info.get("missing_keys", ()) if not k.endswith("position_ids")]
    if missing or info.get("mismatched_keys"):
        names = missing or [str(k) for k in info["mismatched_keys"]]
        raise ExportError(f"{_where(model_dir)}: the checkpoint lacks or mis-shapes {len(names)} weights "
                          f"(e.g. {clip(names[0], 80)})")
    return model.float().eval(), processor


# ----- graph-facing towers --------------------------------------------------------------------------------


class _TextTower(nn.Module):
    """(input_ids, attention_mask) -> the normalised text embedding (transformers' get_text_features)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.model.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return F.normalize(self.model.text_projection(pooled), dim=-1)


class _FusedPatchEmbed(nn.Module):
    """ClapAudioPatchEmbed's fusion path for every row (what its is_longer rows get), without row selection."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, hidden_states: torch.Tensor, is_longer_idx: torch.Tensor | None = None) -> torch.Tensor:
        inner = self.inner
        global_states = inner.proj(hidden_states[:, 0:1])
        width = global_states.size(-1)
        local = hidden_states[:, 1:]
        copies, height, length = local.shape[1], local.shape[2], local.shape[3]
        local = inner.mel_conv2d(local.reshape(-1, 1, height, length))
        features, out_height, out_width = local.shape[1], local.shape[2], local.shape[3]
        local = local.reshape(-1, copies, features, out_height, out_width).permute(0, 2, 3, 1, 4).flatten(3)
        local = F.pad(local, (0, width - local.size(-1)), "constant", 0.0)
        states = inner.fusion_model(global_states, local)
        if inner.flatten:
            states = states.flatten(2).transpose(1, 2)
        return inner.norm(states)


class _AudioTower(nn.Module):
    """input_features [B, 4, frames, mel] -> the normalised audio embedding, fusion on for every row."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        encoder = model.audio_model.audio_encoder
        encoder.patch_embed = _FusedPatchEmbed(encoder.patch_embed)
        # transformers still computes its row selection from is_longer; a constant makes it fold away.
        self.register_buffer("is_longer", torch.ones(1, 1, dtype=torch.bool), persistent=False)

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        pooled = self.model.audio_model(input_features=input_features, is_longer=self.is_longer).pooler_output
        return F.normalize(self.model.audio_projection(pooled), dim=-1)


def _reference_audio(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """transformers' own get_audio_features with every row marked longer (before the patch embed is replaced)."""
    with torch.no_grad():
        longer = torch.ones(features.shape[0], 1, dtype=torch.bool)
        return model.get_audio_features(input_features=features, is_longer=longer).pooler_output.clone()


def _export(module: nn.Module, feeds: dict[str, np.ndarray], axes: dict[str, dict[int, str]], path: Path,
            opset: int, stage: str) -> None:
    names = list(feeds)
    args = tuple(torch.from_numpy(feeds[name]) for name in names)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript exporter deprecation and tracer warnings
        torch.onnx.export(module, args, os.fspath(path), input_names=names, output_names=[OUTPUT_NAME],
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)
    finalize_onnx(path, ir_version=DEFAULT_IR_VERSION)
    os.chmod(path, 0o644)
    check_graph(path, stage)


def _self_check(path: Path, feeds: dict[str, np.ndarray], want: np.ndarray, stage: str) -> None:
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], feeds)[0]
    worst = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
    if worst > _SELF_CHECK_TOLERANCE:
        raise ExportError(f"clap {stage} graph differs from the torch model by {worst:.3g} on the check batch")


# ----- tokenizer and features ------------------------------------------------------------------------------


def _tokenizer_json(processor: Any, model_dir: Path) -> str:
    """The text tokenizer as a tokenizers JSON (the fast tokenizer's backend), padding and truncation off."""
    from tokenizers import Tokenizer

    backend = getattr(processor.tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportError(f"{_where(model_dir)}: {type(processor.tokenizer).__name__} has no tokenizers backend")
    tokenizer = Tokenizer.from_str(backend.to_str())
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer.to_str()


def _special(processor: Any, role: str) -> SpecialToken:
    text, index = getattr(processor.tokenizer, f"{role}_token", None), getattr(processor.tokenizer, f"{role}_token_id")
    if text is None or index is None:
        raise ExportError(f"the CLAP tokenizer has no {role} token")
    return SpecialToken(token=str(text), id=int(index))


def _probe_clip(rate: int) -> np.ndarray:
    """1.3 s of a chirp plus noise, quantised like a PCM16 file."""
    rng = np.random.default_rng(0)
    t = np.arange(int(1.3 * rate)) / rate
    wave = 0.4 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(t.size)
    return (np.round(wave * 32767) / 32768).astype(np.float32)


def _check_features(processor: Any, manifest: ClapManifest, filters: np.ndarray, where: str) -> np.ndarray:
    """Our numpy features must equal the feature extractor's on the probe clip; returns them [4, frames, mel]."""
    wave = _probe_clip(manifest.sampling_rate)
    ours = audio_features(wave, manifest, filters)
    theirs = processor.feature_extractor(wave, sampling_rate=manifest.sampling_rate, return_tensors="np")
    theirs = np.asarray(theirs["input_features"])[0]
    if ours.shape != theirs.shape or float(np.abs(ours - theirs).max()) > _FEATURE_TOLERANCE:
        raise ExportError(f"{where}: vitsrt's CLAP audio features differ from the feature extractor's on a probe clip")
    return ours


def _check_prompts(directory: Path, manifest: ClapManifest, processor: Any, where: str) -> None:
    tokenizer = ClapTokenizer(directory, manifest)
    for prompt in _PROBE_PROMPTS:
        want = list(processor.tokenizer(prompt)["input_ids"])
        if list(tokenizer.encode(prompt)) != want:
            raise ExportError(f"{where}: the rebuilt CLAP tokenizer disagrees with its source on {clip(prompt, 40)}")


# ----- writing ------------------------------------------------------------------------------------------------


def _manifest(model: nn.Module, processor: Any, model_dir: Path, key: str, opset: int) -> dict[str, Any]:
    extractor, text_config = processor.feature_extractor, model.config.text_config
    positions = int(text_config.max_position_embeddings)
    pad = _special(processor, "pad")
    return {
        "key": key, "source_name": model_dir.resolve().name, "embedding_dim": int(model.config.projection_dim),
        "sampling_rate": int(extractor.sampling_rate), "fft_window_size": int(extractor.fft_window_size),
        "hop_length": int(extractor.hop_length), "max_samples": int(extractor.nb_max_samples),
        "num_mel_bins": int(extractor.feature_size),
        "frames": int(extractor.nb_max_samples) // int(extractor.hop_length) + 1,
        "max_tokens": positions - pad.id - 1,  # RoBERTa positions start after the padding index
        "pad": pad, "unk": _special(processor, "unk"), "opset": opset,
    }


def _write_export(model_dir: Path, staging: Path, *, key: str, opset: int) -> ClapManifest:
    where = _where(model_dir)
    model, processor = _load(model_dir)
    fields = _manifest(model, processor, model_dir, key, opset)
    (staging / TOKENIZER_NAME).write_text(_tokenizer_json(processor, model_dir), encoding="utf-8")
    filters = np.asarray(processor.feature_extractor.mel_filters, dtype=np.float64)
    np.save(staging / MEL_FILTERS_NAME, filters, allow_pickle=False)
    draft = ClapManifest(**fields, files={})
    features = _check_features(processor, draft, filters, where)

    # Text tower: two prompts of different lengths (padding traced), dynamic batch and token axes.
    text = _TextTower(model).eval()
    text_feeds = ClapTokenizer(staging, draft).feeds(["Angry voice", "Sad"])
    with torch.no_grad():
        want = text(*(torch.from_numpy(v) for v in text_feeds.values())).numpy()
    _export(text, text_feeds, {n: {0: "B", 1: "N"} for n in text_feeds} | {OUTPUT_NAME: {0: "B"}},
            staging / TEXT_GRAPH, opset, "clap text")
    _self_check(staging / TEXT_GRAPH, text_feeds, want, "text")

    # Audio tower: the probe clip's features and a perturbed copy (two rows), dynamic batch.
    batch = np.stack([features, features[:, ::-1] * np.float32(0.9)]).astype(np.float32)
    audio_feeds = {"input_features": np.ascontiguousarray(batch)}
    want = _reference_audio(model, torch.from_numpy(batch)).numpy()
    _export(_AudioTower(model).eval(), audio_feeds, {"input_features": {0: "B"}, OUTPUT_NAME: {0: "B"}},
            staging / AUDIO_GRAPH, opset, "clap audio")
    _self_check(staging / AUDIO_GRAPH, audio_feeds, want, "audio")

    manifest = ClapManifest(**fields, files={name: sha256_file(staging / name) for name in _GRAPHS})
    _check_prompts(staging, manifest, processor, where)
    (staging / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return manifest


def _reusable(directory: Path, key: str) -> ClapManifest | None:
    if not (directory / MANIFEST_NAME).is_file():
        return None
    try:
        manifest = read_clap_manifest(directory)
    except VitsrtError as exc:
        log.warning("re-exporting over an unreadable CLAP export: %s", exc)
        return None
    files = {name: manifest.files.get(name) for name in _GRAPHS}
    return manifest if unaltered(directory, key, manifest.key, files, "CLAP") else None


def export_clap(
    model_dir: str | os.PathLike[str],
    out_root: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
) -> ClapGraphs:
    """Export the CLAP model in `model_dir` (a local Hugging Face directory) to ``out_root/<key[:16]>/``, or reuse
    an identical earlier export there. ExportError (one line) when the directory is not a usable fused CLAP."""
    started = time.perf_counter()
    model_dir, out_root = Path(model_dir), Path(out_root)
    _check_source(model_dir)
    key = _source_key(model_dir, weight_files(model_dir), check_opset(opset))
    final = out_root / key[:KEY_LENGTH]
    manifest = _reusable(final, key)
    if manifest is not None:
        log.info("clap %s: reusing %s", model_dir.name, final)
        return ClapGraphs(final, manifest, reused=True, seconds=time.perf_counter() - started)
    out_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key[:KEY_LENGTH]}-", dir=out_root))
    try:
        manifest = _write_export(model_dir, staging, key=key, opset=opset)
        os.chmod(staging, 0o755)
        if not publish(staging, final, lambda d: _reusable(d, key)):
            log.info("clap %s: a concurrent export finished first; using %s", model_dir.name, final)
            manifest = read_clap_manifest(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - started
    log.info("clap %s -> %s (%.1f s)", model_dir.name, final, seconds)
    return ClapGraphs(final, manifest, reused=False, seconds=seconds)


def with_emotion(manifest: VoiceManifest, bundle_dir: Path, clap: str | os.PathLike[str] | None,
                 default_prompt: str | None = None) -> VoiceManifest:
    """`manifest` with its ``emotion`` sources for a Bert-VITS2 2.2 voice: the CLAP model in `clap` (a local Hugging
    Face directory) exported into ``bundle_dir/clap/<key>``, and the text prompt of requests without one. Other
    voices are returned unchanged (ExportError when `clap` or `default_prompt` is given for them)."""
    encoder = manifest.graphs.get("encoder").input(EMOTION_INPUT)
    if encoder is None:
        if clap is not None or default_prompt is not None:
            raise ExportError("--clap and --emotion-prompt apply to Bert-VITS2 2.2 voices only (this voice's "
                              f"encoder takes no emotion; it is {manifest.model.tag})")
        return manifest
    if default_prompt is not None and clap is None:
        raise ExportError("--emotion-prompt needs --clap (the CLAP text tower embeds the prompt)")
    clap_model = None
    if clap is not None:
        graphs = export_clap(clap, bundle_dir / CLAP_FOLDER)
        if graphs.manifest.embedding_dim != encoder.shape[-1]:
            raise ExportError(f"--clap {clip(os.fspath(clap), 80)}: embeds in {graphs.manifest.embedding_dim} "
                              f"dimensions, the voice's emo input takes {encoder.shape[-1]}")
        if default_prompt is not None:
            try:
                ClapTokenizer(graphs.directory, graphs.manifest).encode(default_prompt)
            except VitsrtError as exc:
                raise ExportError(f"--emotion-prompt: {exc}") from None
        clap_model = f"{CLAP_FOLDER}/{graphs.directory.name}"
        log.info("CLAP for emotion prompts: %s (%s)", clap_model, "reused" if graphs.reused else "exported")
    emotion = EmotionInfo(clap_model=clap_model, default_prompt=default_prompt)
    return manifest.model_copy(update={"emotion": emotion})
