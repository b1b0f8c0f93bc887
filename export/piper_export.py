"""``vitsrt export --format piper``: a vits-family checkpoint -> one piper voice (``VOICE.onnx`` + ``.onnx.json``).

Piper's format is one graph doing all of inference with piper's interface (``input`` [B, T] int64 ids,
``input_lengths`` [B], ``scales`` [3] = noise_scale, length_scale, noise_w, and ``sid`` [B] for multi-speaker
voices; audio out as [B, 1, N]) plus a JSON config piper-tts reads (sample rate, espeak-ng voice, phoneme-id
map, sampling defaults, speakers). That is what piper-tts, sherpa-onnx and Home Assistant load, so a voice
trained with vitsrt can run there.

Unlike our split graphs this one must draw its own noise (piper passes only the scales), so it holds
``RandomNormalLike`` nodes, and it regulates lengths inside the graph (a cumulative-sum path matrix, as
upstream). The arithmetic is the model's own stage methods (encode, predict_logw, flow_reverse, decode), so
with both noise scales 0 the graph must equal the PyTorch model's ``infer``: that is checked before the files
are put in place (:data:`~vitsrt.export.piper_import.PIPER_TOLERANCE` per sample). Parameter names are kept
(weight norm is folded first), so ``vitsrt import-piper`` reads the file back by name.

The graph is written at opset 15 with IR version 8 (what piper's own exporter writes), so older onnxruntime
builds inside other players load it too.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from pydantic import ValidationError

from vitsrt import __version__
from vitsrt.config import VitsConfig
from vitsrt.export.onnx_checks import finalize_onnx
from vitsrt.export.onnx_export import ExportError
from vitsrt.export.piper_format import PiperVoiceConfig
from vitsrt.export.piper_import import PiperGraph, default_cases, piper_parity, torch_synthesizer
from vitsrt.export.verify import check_parity, render_parity_table
from vitsrt.sampling import Sampling
from vitsrt.train.loading import load_generator
from vitsrt.train.models.common import sequence_mask
from vitsrt.train.models.vits import VitsSynthesizer
from vitsrt.voice import FrontEnd, StageParity

__all__ = [
    "PIPER_IR_VERSION",
    "PIPER_OPSET",
    "PIPER_SAMPLING",
    "export_piper_graph",
    "export_piper_voice",
    "piper_infer",
    "piper_voice_config",
    "verify_piper_graph",
]

log = logging.getLogger(__name__)

PIPER_OPSET = 15
PIPER_IR_VERSION = 8
# The format of the .onnx.json written (piper's voices of 1.x all say 1.0.0).
PIPER_CONFIG_VERSION = "1.0.0"
# piper's own sampling defaults (piper.config), for what `--format piper` leaves unset; VITS has no sdp/dp mix.
PIPER_SAMPLING = Sampling(noise_scale=0.667, noise_scale_w=0.8, length_scale=1.0, sdp_ratio=1.0)
_TRACE_IDS = 23  # a length equal to no channel count, so no dimension gets folded into a constant


def piper_infer(
    model: VitsSynthesizer, ids: torch.Tensor, lengths: torch.Tensor, scales: torch.Tensor,
    sid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Piper's interface over a (folded) VitsSynthesizer: ids [B, T] + scales [3] (+ sid [B]) -> audio [B, 1, N]."""
    noise_scale, length_scale, noise_w = scales[0], scales[1], scales[2]
    enc, m_p, logs_p, x_mask, g = model.encode(ids, lengths, sid)
    sdp_noise = torch.randn_like(torch.cat([x_mask, x_mask], 1)) * noise_w if model.use_sdp else None
    logw = model.predict_logw(enc, x_mask, g, sdp_noise)
    w_ceil = torch.ceil(torch.exp(logw) * x_mask * length_scale)  # [B, 1, T]
    y_lengths = torch.clamp_min(torch.sum(w_ceil, [1, 2]), 1).long()
    y_mask = sequence_mask(y_lengths).unsqueeze(1).to(enc.dtype)  # [B, 1, F]
    # Frame f belongs to token t when start_t <= f < end_t (ends: cumulative durations).
    ends = torch.cumsum(w_ceil, -1)  # [B, 1, T]
    frames = torch.arange(y_mask.size(2), dtype=enc.dtype, device=enc.device).reshape(1, -1, 1)  # [1, F, 1]
    path = ((frames < ends) & (frames >= ends - w_ceil)).to(enc.dtype) * y_mask.transpose(1, 2)  # [B, F, T]
    m_frames = torch.matmul(path, m_p.transpose(1, 2)).transpose(1, 2)  # [B, C, F]
    logs_frames = torch.matmul(path, logs_p.transpose(1, 2)).transpose(1, 2)
    z_p = m_frames + torch.randn_like(m_frames) * torch.exp(logs_frames) * noise_scale
    z = model.flow_reverse(z_p, y_mask, g)
    return model.decode(z, y_mask, g)


def _folded_copy(model: VitsSynthesizer) -> VitsSynthesizer:
    copy = VitsSynthesizer(model.config, n_vocab=model.n_vocab)
    copy.load_state_dict(model.state_dict(), strict=True)
    copy.fold_weight_norm()
    return copy.eval()


def export_piper_graph(model: VitsSynthesizer, path: str | os.PathLike[str]) -> Path:
    """Trace `model` (weight norm folded on a copy) into a piper-interface graph at `path`."""
    path = Path(path)
    # The model itself is traced, its forward replaced (as piper's exporter does), so the graph's initializers
    # carry the state-dict names (a wrapper module would prefix them).
    traced = _folded_copy(model)
    traced.forward = functools.partial(piper_infer, traced)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.n_vocab, (1, _TRACE_IDS), generator=gen)
    args: tuple[torch.Tensor, ...] = (ids, torch.tensor([_TRACE_IDS]), torch.tensor([0.667, 1.0, 0.8]))
    names = ["input", "input_lengths", "scales"]
    axes: dict[str, dict[int, str]] = {"input": {0: "batch_size", 1: "phonemes"}, "input_lengths": {0: "batch_size"},
                                       "output": {0: "batch_size", 2: "time"}}
    if model.multi_speaker:
        args += (torch.tensor([0]),)
        names.append("sid")
        axes["sid"] = {0: "batch_size"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer warnings
        torch.onnx.export(traced, args, str(path), input_names=names, output_names=["output"], dynamic_axes=axes,
                          opset_version=PIPER_OPSET, do_constant_folding=False, dynamo=False)
    finalize_onnx(path, ir_version=PIPER_IR_VERSION)
    os.chmod(path, 0o644)
    return path


# ----- the .onnx.json ------------------------------------------------------------------------------------------


def _front_end(config: VitsConfig, n_vocab: int) -> FrontEnd:
    """The config's ``frontend`` section (written by `vitsrt prepare`): it must map phonemes to ids."""
    section = (config.model_extra or {}).get("frontend")
    if section is None:
        raise ExportError("the config has no 'frontend' section: piper needs the phoneme-id map and espeak-ng voice "
                          "the model was trained with (vitsrt prepare writes it)")
    try:
        front = FrontEnd.model_validate(section)
    except ValidationError as exc:
        raise ExportError(f"config 'frontend' section is invalid: {exc.errors()[0]['msg']}") from None
    if front.kind not in ("ipa", "piper") or not front.phoneme_id_map:
        raise ExportError(f"piper speaks espeak-ng phonemes through a phoneme-id map; this voice's front end is kind "
                          f"{front.kind!r}")
    if front.num_symbols > n_vocab:
        raise ExportError(f"config frontend.num_symbols = {front.num_symbols} exceeds the model's table ({n_vocab})")
    return front


def _espeak_voice(front: FrontEnd) -> tuple[str, str]:
    """(language name, espeak-ng voice) piper will phonemize with: piper voices have exactly one."""
    if front.kind == "piper" and front.espeak_voice:
        return next(iter(front.languages)), front.espeak_voice
    language = front.default_language or next(iter(front.languages))
    voice = front.espeak_voices.get(language)
    if voice is None:
        raise ExportError(f"config frontend.espeak_voices names no espeak-ng voice for language {language!r}")
    if len(front.languages) > 1:
        log.warning("piper voices speak one language: the piper config uses %s (%s); other languages are dropped",
                    language, voice)
    return language, voice


def piper_voice_config(config: VitsConfig, n_vocab: int, inference: Sampling, *, dataset: str) -> dict[str, Any]:
    """The ``VOICE.onnx.json`` piper-tts reads, for a vits config (with its ``frontend`` section)."""
    front = _front_end(config, n_vocab)
    language, voice = _espeak_voice(front)
    if (front.bos, front.eos, front.pad) != ("^", "$", "_"):
        raise ExportError(f"piper's ids are '^' ... '$' with '_' between phonemes; this front end uses "
                          f"{front.bos!r} ... {front.eos!r} with {front.pad!r}")
    speakers = config.speakers() if config.multi_speaker else {}
    body: dict[str, Any] = {
        "audio": {"sample_rate": config.sampling_rate},
        "espeak": {"voice": voice},
        "inference": {"noise_scale": inference.noise_scale, "length_scale": inference.length_scale,
                      "noise_w": inference.noise_scale_w},
        "phoneme_type": "espeak",
        "phoneme_map": {},
        "phoneme_id_map": front.phoneme_id_map,
        "num_symbols": n_vocab,
        "num_speakers": config.n_speakers,
        "speaker_id_map": speakers,
        "hop_length": config.hop_length,
        "language": {"code": language},
        "dataset": dataset,
        "piper_version": PIPER_CONFIG_VERSION,
        "vitsrt_version": __version__,
    }
    if front.vowel_clusters:
        body["vowel_clusters"] = front.vowel_clusters
    PiperVoiceConfig.model_validate(body)  # what import-piper (and piper) will read back
    return body


# ----- checking and writing ------------------------------------------------------------------------------------


def verify_piper_graph(model: VitsSynthesizer, graph_path: str | os.PathLike[str], piper: PiperVoiceConfig, *,
                       threads: int | None = None) -> dict[str, StageParity]:
    """The written graph against the model's own ``infer`` with both noise scales 0, per sample."""
    graph = PiperGraph(graph_path, threads=threads)
    reference = torch_synthesizer(model.eval())
    parity = piper_parity(reference, {"piper graph vs torch": lambda case: graph(case.ids, case.speaker)},
                          default_cases(piper))
    for line in render_parity_table(parity).splitlines():
        log.info("%s", line)
    return parity


def _add_metadata(path: Path, body: dict[str, Any]) -> None:
    """Model metadata that sherpa-onnx reads from a piper graph (piper-tts ignores it): what kind of VITS this is,
    its espeak-ng voice, speakers and rate. (sherpa-onnx also wants the id map as tokens.txt, which it makes
    from the .onnx.json.)"""
    model = onnx.load(str(path))
    facts = {"model_type": "vits", "comment": "piper", "language": body["language"]["code"],
             "voice": body["espeak"]["voice"], "has_espeak": 1, "n_speakers": body["num_speakers"],
             "sample_rate": body["audio"]["sample_rate"], "add_blank": 1, "producer": f"vitsrt {__version__}"}
    del model.metadata_props[:]
    for key, value in facts.items():
        model.metadata_props.add(key=key, value=str(value))
    onnx.save(model, str(path))


def _target(output: Path, name: str | None) -> Path:
    """``-o VOICE.onnx``, or a directory to hold ``<name>.onnx``."""
    if output.suffix == ".onnx":
        return output
    return output / f"{name or output.resolve().name or 'voice'}.onnx"


def _write_json(path: Path, body: dict[str, Any]) -> None:
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.chmod(path, 0o644)


def export_piper_voice(
    checkpoint: str | os.PathLike[str],
    config: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    name: str | None = None,
    inference: Sampling | None = None,
    verify: bool = True,
    force: bool = False,
    threads: int | None = None,
) -> Path:
    """Write ``VOICE.onnx`` + ``VOICE.onnx.json`` for a vits-family checkpoint; returns the .onnx path.

    `output` is the .onnx path, or a directory (then ``<name>.onnx`` in it). Both files are written beside
    the target under temporary names and renamed into place only after the graph matched the model
    (`verify`); existing files are replaced only with `force`.
    """
    target = _target(Path(output), name)
    config_target = target.with_name(target.name + ".json")
    for path in (target, config_target):
        if path.exists() and not force:
            raise ExportError(f"{path} exists (use --force to replace it)")
    loaded = load_generator(checkpoint, config)
    if not isinstance(loaded.model, VitsSynthesizer) or not isinstance(loaded.config, VitsConfig):
        raise ExportError(f"--format piper exports vits-family voices; {checkpoint} is {loaded.family}")
    model = loaded.model.eval()
    body = piper_voice_config(loaded.config, model.n_vocab, inference or PIPER_SAMPLING, dataset=target.stem)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.export-", dir=target.parent))
    except OSError as exc:
        raise ExportError(f"cannot write to {target.parent}: {exc.strerror or exc}") from None
    try:
        graph = export_piper_graph(model, staging / target.name)
        _add_metadata(graph, body)
        _write_json(staging / config_target.name, body)
        if verify:
            check_parity(verify_piper_graph(model, graph, PiperVoiceConfig.model_validate(body), threads=threads))
        os.replace(staging / config_target.name, config_target)
        os.replace(graph, target)
    except OSError as exc:
        raise ExportError(f"cannot write the piper voice ({exc.filename or target}): {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = target.stat().st_size / 1e6
    log.info("wrote piper voice %s (%.1f MB) and %s", target, size, config_target.name)
    return target
