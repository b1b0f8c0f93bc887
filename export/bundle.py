"""``vitsrt export``: checkpoint + config -> a voice bundle (``voice.json`` + stage graphs).

The bundle is assembled in a hidden staging directory beside the target and renamed into place only
after every graph exported, passed the TensorRT checks, (optionally) matched PyTorch and the manifest
validated by loading it back. So a failed or interrupted export never leaves a partial bundle where a
server could pick it up. An existing non-empty target is refused unless ``force=True``; then the old
bundle is swapped out in one rename and deleted afterwards.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from vitsrt.errors import VitsrtError
from vitsrt.export.bv2_voice import with_bv2_front_end
from vitsrt.export.clap import with_emotion
from vitsrt.export.onnx_export import (
    DEFAULT_OPSET,
    EMOTION_FP32_SCOPES,
    ExportError,
    check_decoder_layout,
    check_graph,
    check_opset,
    export_stages,
    speaker_count,
    stage_io,
)
from vitsrt.export.planar import DEFAULT_DECODER_LAYOUT, DecoderLayout
from vitsrt.export.verify import FP16_WEIGHT_TOLERANCES, verify_and_report
from vitsrt.export.weight_storage import store_weights_fp16
from vitsrt.sampling import Sampling
from vitsrt.serve.backends.torch_backend import WEIGHTS_NAME
from vitsrt.stages import BERT_FEATURES
from vitsrt.text.bv2 import STANDARD_LANGUAGES, standard_symbols
from vitsrt.train.loading import LoadedGenerator, load_generator
from vitsrt.train.models.residual_flow import ResidualCouplingBlock
from vitsrt.train.models.vits import VitsSynthesizer
from vitsrt.train.stage_runner import save_bundle_weights
from vitsrt.voice import (
    MANIFEST_NAME,
    DecoderInfo,
    FlowInfo,
    FrontEnd,
    Graphs,
    GraphSpec,
    ModelInfo,
    ParityReport,
    StageName,
    VoiceManifest,
    load_voice,
    sha256_file,
)

__all__ = ["build_manifest", "export_voice"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

def _symbols_for(n_vocab: int) -> list[str]:
    standard = standard_symbols()  # Bert-VITS2 2.0-2.3's table (names the ids in voice.json)
    if n_vocab == len(standard):
        return standard
    log.warning("the model has %d symbols, not Bert-VITS2's %d: symbol names are placeholders", n_vocab, len(standard))
    return [f"#{i}" for i in range(n_vocab)]


def build_manifest(
    loaded: LoadedGenerator,
    graph_files: Mapping[StageName, str | os.PathLike[str]],
    *,
    name: str,
    opset: int,
    parity: ParityReport | None = None,
    inference: Sampling | None = None,
    weights: Literal["fp32", "fp16"] = "fp32",
) -> VoiceManifest:
    """The voice.json for `loaded` whose graphs were written to `graph_files` (files named as the
    bundle will hold them: the manifest stores the base names)."""
    model, config = loaded.model, loaded.config
    graphs: dict[str, GraphSpec] = {}
    for stage, path in graph_files.items():
        io = stage_io(model, stage)
        graphs[stage] = GraphSpec(
            file=Path(path).name,
            sha256=sha256_file(path),
            inputs=list(io.inputs),
            outputs=list(io.outputs),
            opset=opset,
        )
    return VoiceManifest(
        name=name,
        model=ModelInfo(family=loaded.family, version=loaded.version),
        sample_rate=config.sampling_rate,
        hop_length=config.hop_length,
        latent_channels=config.model.inter_channels,
        num_speakers=speaker_count(model),
        speakers=config.speakers(),
        front_end=_vits_front_end(loaded) if isinstance(model, VitsSynthesizer) else _front_end(loaded),
        inference=inference or Sampling(),
        decoder_context_frames=model.decoder_context_frames(),
        decoder=_decoder_info(loaded),
        **_flow_fields(loaded),
        graphs=Graphs(**graphs),
        weights=weights,
        parity=parity,
    )


def _decoder_info(loaded: LoadedGenerator) -> DecoderInfo:
    """The decoder's layout as built, so loaders can recompute (not trust) decoder_context_frames."""
    dec = loaded.model.dec
    return DecoderInfo(
        upsample_rates=list(dec.upsample_rates),
        upsample_kernel_sizes=list(dec.upsample_kernel_sizes),
        resblock=dec.resblock,
        resblock_kernel_sizes=list(dec.resblock_kernel_sizes),
        resblock_dilation_sizes=[list(d) for d in dec.resblock_dilation_sizes],
    )


def _flow_fields(loaded: LoadedGenerator) -> dict[str, object]:
    """A WaveNet-coupling flow's layout and context (the engine then runs the flow per window); none for a
    transformer flow, which runs on whole sentences."""
    flow = loaded.model.flow
    if not isinstance(flow, ResidualCouplingBlock):
        return {}
    return {"flow_context_frames": flow.receptive_field_frames(), "flow": FlowInfo(**flow.layout())}


def _front_end(loaded: LoadedGenerator) -> FrontEnd:
    """The config's `frontend` section (written by `vitsrt prepare` for our own voices), else the
    Bert-VITS2 ids front end. Either way its tables must fit the model's embedding tables."""
    model, config = loaded.model, loaded.config
    assert not isinstance(model, VitsSynthesizer)
    sizes = model.symbols
    languages = (
        dict(STANDARD_LANGUAGES)
        if sizes.num_languages == len(STANDARD_LANGUAGES)
        else {f"L{i}": i for i in range(sizes.num_languages)}
    )
    bert = {"bert_inputs": list(BERT_FEATURES), "bert_dim": model.enc_p.bert_proj.in_channels}
    section = (config.model_extra or {}).get("frontend")
    if section is None:
        return FrontEnd(
            kind="ids",
            num_symbols=sizes.n_vocab,
            symbols=_symbols_for(sizes.n_vocab),
            add_blank=config.data.add_blank,
            blank_id=0,
            languages=languages,
            num_languages=sizes.num_languages,
            num_tones=sizes.num_tones,
            **bert,
        )
    try:
        front = FrontEnd.model_validate({**section, **bert})
    except ValidationError as exc:
        raise ExportError(f"config 'frontend' section is invalid: {exc.errors()[0]['msg']}") from None
    for field, table in (("num_symbols", sizes.n_vocab), ("num_tones", sizes.num_tones),
                         ("num_languages", sizes.num_languages)):
        if getattr(front, field) > table:
            raise ExportError(f"config frontend.{field} = {getattr(front, field)} exceeds the model's table ({table})")
    return front


def _vits_front_end(loaded: LoadedGenerator) -> FrontEnd:
    """An original-VITS voice's front end: the config's `frontend` section (`vitsrt prepare`, a piper import),
    else ids with placeholder symbol names. VITS reads phone ids only, so only the symbol table must fit."""
    model, config = loaded.model, loaded.config
    assert isinstance(model, VitsSynthesizer)
    section = (config.model_extra or {}).get("frontend")
    if section is None:
        return FrontEnd(kind="ids", num_symbols=model.n_vocab, symbols=[f"#{i}" for i in range(model.n_vocab)],
                        add_blank=config.data.add_blank, blank_id=0, languages={"L0": 0}, num_languages=1,
                        num_tones=1)
    try:
        front = FrontEnd.model_validate(section)
    except ValidationError as exc:
        raise ExportError(f"config 'frontend' section is invalid: {exc.errors()[0]['msg']}") from None
    if front.num_symbols > model.n_vocab:
        raise ExportError(f"config frontend.num_symbols = {front.num_symbols} exceeds the model's table "
                          f"({model.n_vocab})")
    return front


def _store_fp16(loaded: LoadedGenerator, graphs: Mapping[StageName, Path], parity: ParityReport | None,
                threads: int | None) -> ParityReport | None:
    """Rewrite the verified float32 graphs with float16-stored weights; check and (if `parity`) verify them."""
    for stage, path in graphs.items():
        stored = store_weights_fp16(path, keep_scopes=EMOTION_FP32_SCOPES if stage == "encoder" else ())
        check_graph(path, stage)
        log.info("%s: %d weights stored as fp16, %.2f -> %.2f MB", stage, stored.converted,
                 stored.bytes_before / 1e6, stored.bytes_after / 1e6)
    if parity is None:
        return None
    fp16 = verify_and_report(loaded.model, graphs, threads=threads, tolerances=FP16_WEIGHT_TOLERANCES)
    stages = {**parity.stages, **{f"{stage}+fp16-weights": figures for stage, figures in fp16.stages.items()}}
    return parity.model_copy(update={"stages": stages})


# ----- the directory dance ----------------------------------------------------------------------------


def _voice_name(name: str | None, out_dir: Path) -> str:
    if name is not None:
        if not _NAME.match(name) or len(name) > 128:
            raise ExportError(f"invalid voice name {name!r}: use letters, digits, '.', '_' and '-'")
        return name
    derived = re.sub(r"[^A-Za-z0-9._-]+", "-", out_dir.resolve().name).lstrip("._-")[:128]
    return derived or "voice"


def _check_target(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"output {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise ExportError(f"output directory {out_dir} is not empty (use --force to replace it)")


def _make_staging(out_dir: Path) -> Path:
    """A fresh hidden directory beside the target (same filesystem, so the final rename is atomic)."""
    parent = out_dir.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export-", dir=parent))
    except OSError as exc:
        raise ExportError(f"cannot write to {parent}: {exc.strerror or exc}") from None
    return staging


def _publish(staging: Path, out_dir: Path) -> None:
    """Move the finished bundle into place; an existing target (empty, or forced) is replaced."""
    os.chmod(staging, 0o755)  # mkdtemp made it private
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    retired = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(out_dir, retired)
    try:
        os.rename(staging, out_dir)
    except OSError:
        os.rename(retired, out_dir)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def export_voice(
    checkpoint: str | os.PathLike[str],
    config: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    force: bool = False,
    threads: int | None = None,
    inference: Sampling | None = None,
    weights: Literal["fp32", "fp16"] = "fp32",
    bert: Mapping[str, str | os.PathLike[str]] | None = None,
    clap: str | os.PathLike[str] | None = None,
    emotion_prompt: str | None = None,
    decoder_layout: DecoderLayout = DEFAULT_DECODER_LAYOUT,
) -> Path:
    """Export a generator checkpoint (Bert-VITS2, or original VITS: the config's family) to a voice directory;
    returns its path.

    Raises a VitsrtError subclass with a one-line reason on bad input (CheckpointError, ConfigError),
    an unusable output location or a failed TensorRT check (ExportError), or a parity failure
    (ParityError); nothing is left at `out_dir` in that case. `threads` limits onnxruntime's intra-op
    threads during verification. `inference` sets the voice's sampling defaults in voice.json (default:
    upstream's web UI values). `weights="fp16"` stores the weights as float16 (half the size, computed in
    float32; :mod:`vitsrt.export.weight_storage`); with `verify` the parity record then holds both the
    float32 graphs' figures and the stored-fp16 graphs' (stages suffixed ``+fp16-weights``). `bert` (Bert-VITS2
    only) gives the voice the ``bv2`` text front end, with a BERT graph per language named in it (language ->
    local Hugging Face model directory; empty: text without BERT features); :mod:`vitsrt.export.bv2_voice`.
    `clap` (Bert-VITS2 2.2 only) exports a local Hugging Face CLAP directory into the bundle so requests can give
    an emotion as a text prompt or a reference clip; `emotion_prompt` is the prompt of requests that give none
    (:func:`vitsrt.export.clap.with_emotion`). `decoder_layout` "2d" (the default) writes the decoder graph in 2-D
    layout, which onnxruntime's CPU provider runs faster; "1d" the plain one. The graph's interface is the same
    either way (:mod:`vitsrt.export.planar`).
    """
    out_dir = Path(out_dir)
    check_opset(opset)
    check_decoder_layout(decoder_layout)
    voice_name = _voice_name(name, out_dir)
    _check_target(out_dir, force)
    staging = _make_staging(out_dir)
    try:
        loaded = load_generator(checkpoint, config)
        log.info("loaded %s %s generator (%s)", loaded.family, loaded.version, checkpoint)
        graphs = export_stages(loaded.model, staging, opset=opset, decoder_layout=decoder_layout)
        parity = verify_and_report(loaded.model, graphs, threads=threads) if verify else None
        if weights == "fp16":
            parity = _store_fp16(loaded, graphs, parity, threads)
        manifest = build_manifest(loaded, graphs, name=voice_name, opset=opset, parity=parity, inference=inference,
                                  weights=weights)
        if bert is not None:  # Bert-VITS2 text (the bv2 front end), with these languages' BERT graphs
            manifest = with_bv2_front_end(manifest, staging, bert, fp16=weights == "fp16")
        manifest = with_emotion(manifest, staging, clap, emotion_prompt)  # Bert-VITS2 2.2: emotion sources
        manifest.write(staging / MANIFEST_NAME)
        # The generator itself, for the torch backends (the voice directory alone runs `--backend torch-cuda`).
        save_bundle_weights(staging / WEIGHTS_NAME, loaded.model, family_name=manifest.model.family,
                            version=loaded.version, config_json=loaded.config.to_json(),
                            graphs={stage: spec.sha256 for stage, spec in manifest.graphs.items()})
        load_voice(staging)  # what a server will do: the bundle must load and its hashes match
        _publish(staging, out_dir)
    except VitsrtError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        where = exc.filename or out_dir
        raise ExportError(f"cannot write the bundle ({where}): {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("wrote voice %r to %s", voice_name, out_dir)
    return out_dir
