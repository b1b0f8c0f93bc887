"""`vitsrt synth`: text or ids -> WAV through the engine (onnxruntime by default; no torch needed)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vitsrt.commands import add_sampling_arguments, sampling_arguments
from vitsrt.errors import InputError, NotFoundError, clip, name_list

HELP = "synthesise text or phoneme ids with a voice bundle and write a WAV file"

log = logging.getLogger(__name__)

# Output suffix -> soundfile format. Both hold the 16-bit PCM the engine's audio is written as.
AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
TORCH_BACKENDS = ("torch", "torch-cuda")
MAX_SEED = 2**64 - 1


def _int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by spaces or commas, got {value!r}") from None


def seed_value(value: str) -> int:
    """argparse type of --seed: the request's range, so -1 is a usage error and not a validation traceback."""
    try:
        seed: int | None = int(value)
    except ValueError:
        seed = None
    if seed is None or not 0 <= seed <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**64-1, got {value!r}")
    return seed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", help="text to speak (voices with a text front end)")
    parser.add_argument("-v", "--voice", help="voice bundle directory (default: the shipped default voice)")
    parser.add_argument("--ids", type=_int_list, help="phone ids instead of text, e.g. '0 12 0 45 0'")
    parser.add_argument("--tones", type=_int_list, help="tone ids for --ids (default zeros)")
    parser.add_argument("--languages", type=_int_list, help="language ids for --ids (default zeros)")
    parser.add_argument("--language", default="", help="language of the text (voice's default if empty)")
    parser.add_argument("--speaker", default="",
                        help="speaker name (voice's first speaker if empty), or a blend of the voice's speakers as "
                             "NAME:WEIGHT,... (e.g. slt:0.7,rms:0.3; weights normalised to sum 1)")
    parser.add_argument("--speaker-curve", default=None, metavar="POS=NAME:WEIGHT,...;...",
                        help="a speaker blend that changes over the utterance: blends at positions 0..1, interpolated "
                             "per frame, e.g. '0=slt:1;1=rms:1' (slt turning into rms); instead of --speaker")
    emotion = parser.add_mutually_exclusive_group()
    emotion.add_argument("--emotion", metavar="TEXT", default=None,
                         help="Bert-VITS2 2.2 voices: the emotion as a text prompt for CLAP, e.g. 'Happy'")
    emotion.add_argument("--emotion-audio", metavar="FILE", default=None,
                         help="Bert-VITS2 2.2 voices: the emotion of a reference clip (WAV/FLAC/Ogg, any rate)")
    parser.add_argument("--seed", type=seed_value, default=0, help="noise seed (same seed, same audio)")
    add_sampling_arguments(parser, "sampling (unset: the voice's defaults)")
    parser.add_argument("--stream", action="store_true", help="stream (chunked decoding) and report first-audio time")
    parser.add_argument("--backend", default="onnxruntime",
                        help="onnxruntime (default), onnxruntime-cuda, onnxruntime-tensorrt, tensorrt, "
                             "torch or torch-cuda (these two run the bundle's weights.safetensors)")
    parser.add_argument("--checkpoint", help="--backend torch: a G_*.pth checkpoint instead of the bundle's weights")
    parser.add_argument("--config", help="--backend torch: the checkpoint's config.json")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None,
                        help="--backend torch[-cuda]: autocast flow and decoder to bf16/fp16 (default fp32)")
    parser.add_argument("--threads", "--lane-threads", dest="threads", type=int,
                        help="intra-op threads per lane (default: from the core count)")
    parser.add_argument("--lanes", type=int, help="execution lanes (default: from the core count)")
    parser.add_argument("-o", "--output", required=True,
                        help=f"output file: {', '.join(AUDIO_FORMATS)} (16-bit PCM), or - for WAV on standard output")


def output_format(output: str, formats: Mapping[str, str] = AUDIO_FORMATS) -> str:
    """The soundfile format for `output` ("-": WAV on stdout). Checked before synthesis, so a path that
    cannot be written fails at once instead of after the audio is made."""
    if output == "-":
        return "WAV"
    path = Path(output)
    fmt = formats.get(path.suffix.lower())
    if fmt is None:
        raise InputError("output", f"{clip(output)}: unsupported file type; use {', '.join(formats)} "
                                   "or - (WAV on standard output)")
    parent = path.parent
    if not parent.is_dir():
        raise InputError("output", f"{clip(output)}: folder {clip(parent)} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError("output", f"{clip(output)}: folder {clip(parent)} is not writable")
    return fmt


def check_speaker(speaker: str, voice: str, speakers: Sequence[str]) -> None:
    """Refuse an unknown speaker and say which exist (the engine's own error does not list them)."""
    if speaker and speaker not in speakers:
        raise NotFoundError(
            f"unknown speaker {clip(speaker)} for voice {voice!r}; available: {name_list(list(speakers))}"
        )


def backend_options(args: argparse.Namespace) -> Mapping[str, Any] | None:
    """The torch backends run the bundle's weights, or a training checkpoint given with its config."""
    wants_torch = args.backend in TORCH_BACKENDS
    if not wants_torch and (args.checkpoint or args.config or args.precision):
        raise InputError("checkpoint", "--checkpoint, --config and --precision go with --backend torch or torch-cuda")
    if not wants_torch:
        return None
    if bool(args.checkpoint) != bool(args.config):
        raise InputError("checkpoint", "--checkpoint and --config go together")
    options: dict[str, Any] = {"precision": args.precision} if args.precision else {}
    if args.checkpoint:
        options.update(checkpoint=args.checkpoint, config=args.config)
    return options


def emotion_prompt(args: argparse.Namespace) -> dict[str, Any]:
    """The request's `emotion` from --emotion / --emotion-audio (none: {}); the engine refuses it for voices
    other than Bert-VITS2 2.2 ones."""
    if args.emotion is not None:
        return {"text": args.emotion}
    if args.emotion_audio is None:
        return {}
    path = Path(args.emotion_audio)
    if not path.is_file():
        raise InputError("emotion_audio", f"{clip(args.emotion_audio)}: no such file")
    try:
        return {"audio": path.read_bytes()}
    except OSError as exc:
        raise InputError("emotion_audio", f"{clip(args.emotion_audio)}: cannot read ({exc.strerror})") from None


def build_request(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from vitsrt.serve.engine.types import (
        EmotionPrompt,
        PhonemeIds,
        SynthesisRequest,
        parse_speaker_curve,
        parse_speaker_weights,
    )

    if (args.text is None) == (args.ids is None):
        raise InputError("input", "give either TEXT or --ids")
    if args.ids is None and (args.tones or args.languages):
        raise InputError("input", "--tones and --languages go with --ids")
    phonemes = None
    if args.ids is not None:
        phonemes = PhonemeIds(phone_ids=args.ids, tone_ids=args.tones, language_ids=args.languages)
    speaker = {"speaker": args.speaker}
    if ":" in args.speaker:  # a blend (run() turns it back into a name if the voice has a speaker called so)
        speaker = {"speakers": parse_speaker_weights(args.speaker)}
    if args.speaker_curve is not None:
        speaker["speaker_curve"] = parse_speaker_curve(args.speaker_curve)
    prompt = emotion_prompt(args)
    try:
        emotion = EmotionPrompt(**prompt) if prompt else None
        return SynthesisRequest(text=args.text, phonemes=phonemes, language=args.language, seed=args.seed,
                                emotion=emotion, **speaker, **sampling_arguments(args))
    except ValidationError as exc:  # a safety net: the flags' own types catch the usual mistakes first
        first = exc.errors()[0]
        raise InputError(".".join(map(str, first["loc"])) or "request", first["msg"]) from None


def write_audio(output: str, fmt: str, audio: Any, sample_rate: int) -> None:
    import io

    import soundfile

    if output != "-":
        soundfile.write(output, audio, sample_rate, subtype="PCM_16", format=fmt)
        return
    # The WAV header holds the length, so the file is built in memory and then written in one go.
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, sample_rate, subtype="PCM_16", format="WAV")
    sys.stdout.buffer.write(buffer.getvalue())
    sys.stdout.buffer.flush()


def run(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from vitsrt.serve.engine.engine import Engine, EngineOptions
    from vitsrt.voices import default_voice_dir

    fmt = output_format(args.output)
    request = build_request(args)
    extra = backend_options(args)
    voice = args.voice or default_voice_dir()
    options = EngineOptions(threads=args.threads, lanes=args.lanes)
    with Engine.open([voice], backend=args.backend, options=options, backend_options=extra) as engine:
        info = engine.voices[engine.default_voice]
        if request.speakers and args.speaker in info.speakers:  # a speaker whose name looks like a blend
            request = request.model_copy(update={"speaker": args.speaker, "speakers": []})
        if not (request.speakers or request.speaker_curve):
            check_speaker(args.speaker, info.name, info.speakers)
        sample_rate = info.sample_rate
        speaker = args.speaker_curve or args.speaker or engine.pipeline().default_speaker
        started = time.perf_counter()
        first_audio = None
        if args.stream:
            pieces = []
            for chunk in engine.stream(request):
                if first_audio is None:
                    first_audio = time.perf_counter() - started
                pieces.append(chunk.audio)
            audio = np.concatenate(pieces)
        else:
            audio = engine.synthesize(request).audio
        elapsed = time.perf_counter() - started
    write_audio(args.output, fmt, audio, sample_rate)
    seconds = len(audio) / sample_rate
    where = "WAV to standard output" if args.output == "-" else args.output
    summary = (f"wrote {where} (voice {info.name}, speaker {speaker}): {seconds:.2f} s of audio at "
               f"{sample_rate} Hz in {elapsed * 1000:.0f} ms")
    if first_audio is not None:
        summary += f", first audio after {first_audio * 1000:.0f} ms"
    # With -o - standard output carries the audio, so the summary goes to standard error.
    print(f"{summary}, real-time factor {elapsed / max(seconds, 1e-9):.3f}",
          file=sys.stderr if args.output == "-" else sys.stdout)
    return 0
