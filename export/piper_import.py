"""``vitsrt import-piper``: a piper voice (``VOICE.onnx`` + ``VOICE.onnx.json``) -> a vitsrt voice bundle.

The piper graph is read back into a :class:`~vitsrt.train.models.vits.VitsSynthesizer` (weights and architecture
by :mod:`vitsrt.export.piper_format`), the model is exported as our split graphs like any VITS checkpoint, and
voice.json gets piper's phoneme-id map, espeak-ng voice, sampling defaults, sample rate and speaker map (front
end kind ``piper``, so text becomes the ids piper-tts itself would make).

Verification compares against the piper graph itself, not against our own model: with both noise scales 0 the
piper graph is deterministic, so for each case (an id sequence, a speaker) the rebuilt model and the exported
bundle must give the piper graph's audio sample for sample, within :data:`PIPER_TOLERANCE` (max abs). The cases
are piper's own ids for a few sentences (when piper-tts's phonemizer is installed) plus generated sequences
that reach every id of the map, the shortest possible one included.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from pydantic import ValidationError

from vitsrt.config import VitsConfig, parse_config
from vitsrt.errors import VitsrtError
from vitsrt.export.bundle import _check_target, _make_staging, _publish, _voice_name, export_voice
from vitsrt.export.piper_format import (
    PiperFormatError,
    PiperVoiceConfig,
    RecoveredWeights,
    infer_hyperparameters,
    read_piper_config,
    recover_weights,
)
from vitsrt.export.verify import check_parity, render_parity_table
from vitsrt.sampling import Sampling
from vitsrt.train.models.vits import VitsSynthesizer
from vitsrt.voice import StageParity, load_voice

__all__ = [
    "PIPER_TOLERANCE",
    "ImportedPiper",
    "ParityCase",
    "PiperGraph",
    "bundle_synthesizer",
    "default_cases",
    "import_piper",
    "inference_defaults",
    "load_piper_voice",
    "piper_parity",
    "rebuild_model",
    "torch_synthesizer",
    "vits_config_for",
    "write_checkpoint",
]

log = logging.getLogger(__name__)

# Max abs difference per audio sample allowed between the piper graph and what vitsrt rebuilt (audio in [-1, 1]).
PIPER_TOLERANCE = 1e-4

# Parameters a piper graph cannot hold because inference never reads them: the posterior encoder (training
# only) and, with the stochastic duration predictor, its posterior flows and the first ConvFlow (upstream's
# inverse pass skips it: it only moves the channel that is thrown away).
_TRAINING_ONLY = ("enc_q.",)
_SDP_UNUSED = ("dp.post_pre.", "dp.post_proj.", "dp.post_convs.", "dp.post_flows.", "dp.flows.1.")

_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "How much wood would a woodchuck chuck, if a woodchuck could chuck wood?",
    "On the 3rd of May, Dr. Smith paid $12.50 for two tickets!",
    "Yes.",
)


# ----- reading the piper voice back into a model ---------------------------------------------------------------


def vits_config_for(params: Mapping[str, object], piper: PiperVoiceConfig | None) -> VitsConfig:
    """A VitsConfig for the architecture `params` (:func:`infer_hyperparameters`) and piper's audio settings."""
    rates = [int(r) for r in params["upsample_rates"]]  # type: ignore[union-attr]
    hop = math.prod(rates)
    if piper is not None and piper.hop_length is not None and piper.hop_length != hop:
        raise PiperFormatError(f"the .onnx.json says hop_length {piper.hop_length} but the decoder's upsample rates "
                               f"{rates} multiply to {hop}")
    model = {key: value for key, value in params.items() if key != "n_speakers"}
    data: dict[str, object] = {"hop_length": hop, "n_speakers": params["n_speakers"]}
    if piper is not None:
        data["sampling_rate"] = piper.audio.sample_rate
        if piper.speaker_id_map:
            data["spk2id"] = dict(piper.speaker_id_map)
    try:
        return parse_config({"family": "vits", "data": data, "model": model}, source="the piper graph's architecture")
    except VitsrtError as exc:
        raise PiperFormatError(str(exc)) from None


def _inference_unused(name: str, use_sdp: bool) -> bool:
    return name.startswith(_TRAINING_ONLY) or (use_sdp and name.startswith(_SDP_UNUSED))


def _check_conv_layout(model: torch.nn.Module, weights: RecoveredWeights) -> None:
    """Each graph convolution's stride, dilation and groups must be the rebuilt module's."""
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Conv1d | torch.nn.ConvTranspose1d):
            continue
        attrs = weights.conv_attributes.get(f"{name}.weight")
        if attrs is None:
            continue
        # Padding is left out: some upstream layers pad explicitly before a conv, ours inside it.
        ours = {"strides": list(module.stride), "dilations": list(module.dilation), "group": module.groups}
        for key, value in ours.items():
            theirs = attrs.get(key)
            if theirs is not None and theirs != value:
                raise PiperFormatError(f"tensor '{name}.weight': the graph's {attrs['op']} has {key} {theirs}, the "
                                       f"VITS model rebuilt from the graph's shapes has {value}")


def rebuild_model(weights: RecoveredWeights, config: VitsConfig) -> VitsSynthesizer:
    """A folded, eval-mode VitsSynthesizer holding the recovered weights.

    Every parameter inference reads must have been recovered, with its exact shape; a recovered tensor the
    model has no place for is an error too (the architecture was inferred wrong, or the graph is not VITS).
    """
    model = VitsSynthesizer(config, n_vocab=config.model.n_vocab)
    model.fold_weight_norm()
    state = model.state_dict()
    for name, value in weights.tensors.items():
        if name not in state:
            raise PiperFormatError(f"tensor {name!r} ({weights.origins[name]}) has no place in the VITS model rebuilt "
                                   "from the graph's shapes")
        if tuple(value.shape) != tuple(state[name].shape):
            raise PiperFormatError(f"tensor {name!r} has shape {list(value.shape)} but the VITS model rebuilt from "
                                   f"the graph needs {list(state[name].shape)}")
    missing = [n for n in state if n not in weights.tensors and not _inference_unused(n, model.use_sdp)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise PiperFormatError(f"tensor {missing[0]!r}{more} was not found in the graph (by name or structure); "
                               "inference needs it")
    _check_conv_layout(model, weights)
    loaded = {name: torch.from_numpy(np.array(value, dtype=np.float32)) for name, value in weights.tensors.items()}
    model.load_state_dict(loaded, strict=False)
    return model.eval()


@dataclass
class ImportedPiper:
    """A piper voice read back: its config, the recovered weights and the rebuilt model."""

    onnx_path: Path
    piper: PiperVoiceConfig
    weights: RecoveredWeights
    config: VitsConfig
    model: VitsSynthesizer


def _load_onnx(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise PiperFormatError(f"{path}: not found (expected a piper VOICE.onnx)")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, ValidationError, OSError, ... for a non-ONNX file
        raise PiperFormatError(f"{path}: not an ONNX model ({type(exc).__name__})") from None


def load_piper_voice(onnx_path: str | os.PathLike[str], config_path: str | os.PathLike[str] | None = None
                     ) -> ImportedPiper:
    """Read a piper voice and rebuild its VITS model (PiperFormatError naming the tensor or field on failure)."""
    onnx_path = Path(onnx_path)
    config_path = Path(config_path) if config_path is not None else onnx_path.with_name(onnx_path.name + ".json")
    piper = read_piper_config(config_path)
    weights = recover_weights(_load_onnx(onnx_path))
    params = infer_hyperparameters(weights)
    if params["n_vocab"] < piper.num_symbols:
        raise PiperFormatError(f"tensor 'enc_p.emb.weight' has {params['n_vocab']} rows but {config_path.name} "
                               f"says num_symbols {piper.num_symbols}")
    if params["n_speakers"] != piper.num_speakers:
        raise PiperFormatError(f"the graph has {params['n_speakers']} speakers (tensor 'emb_g.weight') but "
                               f"{config_path.name} says num_speakers {piper.num_speakers}")
    config = vits_config_for(params, piper)
    model = rebuild_model(weights, config)
    counts = weights.count_by_origin()
    log.info("recovered %d tensors (%s), %.2f M parameters", len(weights.tensors),
             ", ".join(f"{n} by {k}" for k, n in counts.items()),
             sum(v.size for v in weights.tensors.values()) / 1e6)
    return ImportedPiper(onnx_path, piper, weights, config, model)


# ----- verification against the piper graph ---------------------------------------------------------------------


@dataclass(frozen=True)
class ParityCase:
    """One verification input: piper-style phoneme ids and a speaker."""

    label: str
    ids: tuple[int, ...]
    speaker: int = 0


class PiperGraph:
    """The piper graph on onnxruntime CPU, run exactly as piper-tts runs it (one utterance at a time)."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None):
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.takes_sid = any(i.name == "sid" for i in self.session.get_inputs())

    def __call__(self, ids: Sequence[int], speaker: int, noise_scale: float = 0.0, length_scale: float = 1.0,
                 noise_w: float = 0.0) -> np.ndarray:
        feeds = {
            "input": np.asarray([ids], dtype=np.int64),
            "input_lengths": np.asarray([len(ids)], dtype=np.int64),
            "scales": np.asarray([noise_scale, length_scale, noise_w], dtype=np.float32),
        }
        if self.takes_sid:
            feeds["sid"] = np.asarray([speaker], dtype=np.int64)
        return np.asarray(self.session.run(None, feeds)[0], dtype=np.float32).reshape(-1)


def torch_synthesizer(model: VitsSynthesizer, length_scale: float = 1.0) -> Callable[[ParityCase], np.ndarray]:
    """The rebuilt model's noise-free audio for a case (upstream `infer` semantics)."""

    @torch.no_grad()
    def run(case: ParityCase) -> np.ndarray:
        x = torch.tensor([case.ids], dtype=torch.long)
        sid = torch.tensor([case.speaker]) if model.multi_speaker else None
        result = model.infer(x, torch.tensor([len(case.ids)]), sid, noise_scale=0.0, length_scale=length_scale,
                             noise_scale_w=0.0)
        return result.audio.reshape(-1).numpy()

    return run


def _phoneme_ids(piper: PiperVoiceConfig, phonemes: Iterable[str]) -> tuple[int, ...]:
    """piper's layout: BOS PAD p1 PAD p2 PAD ... pn PAD EOS (each through the map)."""
    id_map = piper.phoneme_id_map
    ids = [*id_map["^"], *id_map["_"]]
    for phoneme in phonemes:
        ids += [*id_map[phoneme], *id_map["_"]]
    return (*ids, *id_map["$"])


def _sentence_cases(piper: PiperVoiceConfig, speakers: Sequence[int]) -> list[ParityCase]:
    """piper's own ids for a few sentences, when piper-tts's phonemizer is installed (else none)."""
    try:
        from vitsrt.text.piper import PiperFrontEnd

        front = PiperFrontEnd(piper.phoneme_id_map, espeak_voice=piper.espeak.voice)
        sequences = [seq for text in _SENTENCES for seq in front.sentences(text)]
    except (ImportError, VitsrtError, OSError, TypeError, ValueError) as exc:
        log.info("sentences not phonemized (%s); verifying on generated id sequences only", exc)
        return []
    return [ParityCase(f"sentence {i} (T={len(seq.phone_ids)})", tuple(int(v) for v in seq.phone_ids), speaker)
            for i, seq in enumerate(sequences) for speaker in speakers]


def _generated_cases(piper: PiperVoiceConfig, speakers: Sequence[int], seed: int) -> list[ParityCase]:
    """The shortest input (BOS PAD EOS), and random phoneme strings that together use every map entry."""
    markers = {"^", "$", "_"}
    phonemes = [p for p in piper.phoneme_id_map if p not in markers]
    rng = np.random.default_rng(seed)
    order = [phonemes[i] for i in rng.permutation(len(phonemes))]
    chunks = [order[i : i + 40] for i in range(0, len(order), 40)] or [[]]
    cases = [ParityCase("empty (T=3)", _phoneme_ids(piper, []), speakers[0])]
    for i in range(max(len(chunks), len(speakers))):  # every chunk, and every speaker at least once
        ids = _phoneme_ids(piper, chunks[i % len(chunks)])
        cases.append(ParityCase(f"generated {i % len(chunks)} (T={len(ids)})", ids, speakers[i % len(speakers)]))
    return cases


def default_cases(piper: PiperVoiceConfig, speakers: Sequence[int] | None = None, seed: int = 0) -> list[ParityCase]:
    """Verification cases for a voice: sentences (if phonemizable) and generated sequences, for `speakers`
    (default: every speaker of a voice with up to 8, else the first, a middle and the last)."""
    if speakers is None:
        n = piper.num_speakers
        speakers = list(range(n)) if n <= 8 else sorted({0, n // 2, n - 1})
    return _sentence_cases(piper, speakers[:1]) + _generated_cases(piper, list(speakers), seed)


def piper_parity(
    reference: Callable[[ParityCase], np.ndarray],
    candidates: Mapping[str, Callable[[ParityCase], np.ndarray]],
    cases: Sequence[ParityCase],
    tolerance: float = PIPER_TOLERANCE,
) -> dict[str, StageParity]:
    """For each candidate, the largest per-sample difference from `reference` over all cases.

    A different audio length is an infinite difference (the durations disagree)."""
    worst = {name: (0.0, "") for name in candidates}
    for case in cases:
        expected = reference(case)
        for name, candidate in candidates.items():
            got = candidate(case)
            where = f"{case.label}, speaker {case.speaker}"
            if got.shape != expected.shape:
                diff, where = math.inf, f"{where}: {got.size} samples, piper {expected.size}"
            else:
                diff = float(np.abs(got - expected).max()) if expected.size else 0.0
                diff = math.inf if math.isnan(diff) else diff
            log.debug("%s %s: max abs diff %.3g", name, where, diff)
            if diff > worst[name][0] or not worst[name][1]:
                worst[name] = (diff, where)
    return {name: StageParity(max_abs_diff=diff, tolerance=tolerance, worst_case=where, cases=len(cases))
            for name, (diff, where) in worst.items()}


# ----- the bundle ------------------------------------------------------------------------------------------------


def _front_end_section(piper: PiperVoiceConfig) -> dict[str, object]:
    """voice.json's front end for the voice: kind ``piper`` (piper-tts's own phonemes and ids) for espeak voices;
    other phoneme types (text, pinyin, ...) get an ids front end whose symbols are the map's phonemes."""
    id_map = piper.phoneme_id_map
    code = (piper.language or {}).get("code")
    language = code if isinstance(code, str) and code else piper.espeak.voice
    common = {"num_symbols": piper.num_symbols, "languages": {language: 0}, "num_languages": 1, "num_tones": 1}
    if piper.phoneme_type == "espeak":
        clusters = (piper.model_extra or {}).get("vowel_clusters")
        return {"kind": "piper", "phoneme_id_map": id_map, "add_blank": True, "blank_id": id_map["_"][0],
                "espeak_voice": piper.espeak.voice, "vowel_clusters": clusters or None, **common}
    log.warning("phoneme_type %r: vitsrt cannot phonemize this voice's text; it takes phoneme ids only",
                piper.phoneme_type)
    symbols = [f"#{i}" for i in range(piper.num_symbols)]
    for phoneme, ids in id_map.items():
        if len(ids) == 1:
            symbols[ids[0]] = phoneme
    return {"kind": "ids", "symbols": symbols, "add_blank": False, **common}


def _unfolded_state(model: VitsSynthesizer) -> dict[str, torch.Tensor]:
    """The folded model's weights in checkpoint form: each weight-normed ``X.weight`` as ``X.weight_v`` = the
    weight and ``X.weight_g`` = its norm per output channel (so g * v / ||v|| gives the weight back)."""
    fresh = VitsSynthesizer(model.config, n_vocab=model.n_vocab).state_dict()
    folded = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    for key, like in fresh.items():
        if key.endswith(".weight_g"):
            weight = folded[key.removesuffix("_g")]
            dims = tuple(range(1, weight.dim()))
            state[key] = torch.linalg.vector_norm(weight.double(), dim=dims, keepdim=True).float().reshape(like.shape)
        elif key.endswith(".weight_v"):
            state[key] = folded[key.removesuffix("_v")].clone()
        else:
            state[key] = folded[key].clone()
    return state


def write_checkpoint(imported: ImportedPiper, directory: Path) -> tuple[Path, Path]:
    """The rebuilt model as a vitsrt checkpoint (a bare state dict) and config.json (with its front end)."""
    checkpoint, config_path = directory / "G_piper.pth", directory / "config.json"
    torch.save(_unfolded_state(imported.model), checkpoint)
    body = json.loads(imported.config.to_json())
    body["frontend"] = _front_end_section(imported.piper)
    config_path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return checkpoint, config_path


def inference_defaults(piper: PiperVoiceConfig) -> Sampling:
    """piper's sampling defaults as vitsrt's (``noise_w`` is ``noise_scale_w``; VITS has no sdp/dp mix, so
    ``sdp_ratio`` says what piper does: the stochastic predictor alone)."""
    scales = piper.inference
    try:
        return Sampling(noise_scale=scales.noise_scale, noise_scale_w=scales.noise_w,
                        length_scale=scales.length_scale, sdp_ratio=1.0)
    except ValidationError as exc:
        raise PiperFormatError(f"inference.{exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from None


def bundle_synthesizer(voice_dir: Path, threads: int | None = None) -> Callable[[ParityCase], np.ndarray]:
    """A bundle's noise-free audio for a case, through the serving engine's own chain on onnxruntime."""
    from vitsrt.export.ort_pipeline import synthesize_batch
    from vitsrt.serve.backends.ort_runner import OrtRunner

    runner = OrtRunner.from_voice(load_voice(voice_dir), intra_op_threads=threads, quiet=True)

    def run(case: ParityCase) -> np.ndarray:
        ids = np.asarray([case.ids], dtype=np.int64)
        feeds = {"phone_ids": ids, "tone_ids": np.zeros_like(ids), "language_ids": np.zeros_like(ids),
                 "lengths": np.asarray([ids.shape[1]], dtype=np.int64), "sid": np.asarray([case.speaker])}
        result = synthesize_batch(runner, feeds, seeds=[0], noise_scale=0.0, noise_scale_w=0.0, length_scale=1.0,
                                  sdp_ratio=1.0)
        return result.audio[0, 0, : int(result.y_lengths[0]) * runner.voice.manifest.hop_length]

    return run


def _record_parity(voice_dir: Path, parity: Mapping[str, StageParity]) -> None:
    """Add the piper comparison to the bundle's parity record (voice.json only; the graphs are unchanged)."""
    manifest = load_voice(voice_dir).manifest
    if manifest.parity is None:
        return
    stages = {**manifest.parity.stages, **parity}
    manifest.model_copy(update={"parity": manifest.parity.model_copy(update={"stages": stages})}).write(voice_dir)
    load_voice(voice_dir)


def import_piper(
    onnx_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    config_path: str | os.PathLike[str] | None = None,
    name: str | None = None,
    force: bool = False,
    verify: bool = True,
    threads: int | None = None,
    cases: Sequence[ParityCase] | None = None,
) -> tuple[Path, dict[str, StageParity]]:
    """Rebuild a piper voice as a vitsrt bundle at `out_dir`; returns it and the parity against the piper graph.

    The bundle is exported like any VITS checkpoint (split graphs checked against the rebuilt model); with
    `verify` the rebuilt model and the bundle must then both reproduce the piper graph per sample
    (noise 0, `cases` or :func:`default_cases`), else ParityError and nothing is written at `out_dir`.
    """
    out_dir = Path(out_dir)
    _check_target(out_dir, force)
    imported = load_piper_voice(onnx_path, config_path)
    staging = _make_staging(out_dir)
    try:
        checkpoint, config = write_checkpoint(imported, staging)
        bundle = export_voice(checkpoint, config, staging / "voice", name=name or _voice_name(None, out_dir),
                              verify=verify, threads=threads, inference=inference_defaults(imported.piper))
        parity: dict[str, StageParity] = {}
        if verify:
            reference = PiperGraph(imported.onnx_path, threads=threads)
            candidates = {"torch vs piper graph": torch_synthesizer(imported.model),
                          "bundle vs piper graph": bundle_synthesizer(bundle, threads)}
            parity = piper_parity(lambda case: reference(case.ids, case.speaker), candidates,
                                  cases if cases is not None else default_cases(imported.piper))
            for line in render_parity_table(parity).splitlines():
                log.info("%s", line)
            check_parity(parity)
            _record_parity(bundle, parity)
        _publish(bundle, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("imported piper voice %s -> %s", Path(onnx_path).name, out_dir)
    return out_dir, parity
