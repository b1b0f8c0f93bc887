"""`vitsrt synth`: text or ids -> WAV through the engine (onnxruntime by default; no torch needed)."""

from __future__ import annotations

import argparse
import logging

from vitsrt.commands import add_sampling_arguments, sampling_arguments

HELP = "synthesise text or phoneme ids with a voice bundle and write a WAV file"

log = logging.getLogger(__name__)


def _int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by spaces or commas, got {value!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", help="text to speak (voices with a text front end)")
    parser.add_argument("-v", "--voice", help="voice bundle directory (default: the shipped default voice)")
    parser.add_argument("--ids", type=_int_list, help="phone ids instead of text, e.g. '0 12 0 45 0'")
    parser.add_argument("--tones", type=_int_list, help="tone ids (default zeros)")
    parser.add_argument("--languages", type=_int_list, help="language ids (default zeros)")
    parser.add_argument("--language", default="", help="language of the text (voice's default if empty)")
    parser.add_argument("--speaker", default="", help="speaker name (voice's first speaker if empty)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (same seed, same audio)")
    add_sampling_arguments(parser, "sampling (unset: the voice's defaults)")
    parser.add_argument("--stream", action="store_true", help="stream (chunked decoding) and report first-audio time")
    parser.add_argument("--backend", default="onnxruntime", help="onnxruntime | onnxruntime-cuda | torch ...")
    parser.add_argument("--threads", type=int, help="intra-op threads")
    parser.add_argument("-o", "--output", required=True, help="output .wav path")


def run(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    import soundfile

    from vitsrt.errors import InputError
    from vitsrt.serve.engine.engine import Engine, EngineOptions
    from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest
    from vitsrt.voices import default_voice_dir

    if (args.text is None) == (args.ids is None):
        raise InputError("input", "give either TEXT or --ids")
    phonemes = None
    if args.ids is not None:
        phonemes = PhonemeIds(phone_ids=args.ids, tone_ids=args.tones, language_ids=args.languages)
    request = SynthesisRequest(
        text=args.text,
        phonemes=phonemes,
        language=args.language,
        speaker=args.speaker,
        seed=args.seed,
        **sampling_arguments(args),
    )
    voice = args.voice or default_voice_dir()
    with Engine.open([voice], backend=args.backend, options=EngineOptions(threads=args.threads)) as engine:
        info = engine.voices[engine.default_voice]
        sample_rate = info.sample_rate
        speaker = args.speaker or engine.pipeline().default_speaker
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
    soundfile.write(args.output, audio, sample_rate, subtype="PCM_16")
    seconds = len(audio) / sample_rate
    summary = (f"wrote {args.output} (voice {info.name}, speaker {speaker}): {seconds:.2f} s of audio at "
               f"{sample_rate} Hz in {elapsed * 1000:.0f} ms")
    if first_audio is not None:
        summary += f", first audio after {first_audio * 1000:.0f} ms"
    print(f"{summary}, real-time factor {elapsed / max(seconds, 1e-9):.3f}")
    return 0
