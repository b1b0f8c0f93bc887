"""`vitsrt client TEXT -o out.wav [--stream]`: call a vitsrt gRPC server, save the audio, report timings."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

from vitsrt.commands import add_sampling_arguments, sampling_arguments
from vitsrt.commands.synth import output_format, seed_value
from vitsrt.errors import InputError, VitsrtError, clip

HELP = "synthesise TEXT on a vitsrt gRPC server; prints time to first audio and real-time factor"

# The server sends WAV-able PCM; the client writes WAV only.
WAV_ONLY = {".wav": "WAV"}


class ServerUnreachableError(VitsrtError):
    """Nothing answers at --server: a usage problem (wrong address, server not started), not a server error."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", help="text to speak ('-' reads standard input)")
    parser.add_argument("--ids", default=None, metavar="P,P,...",
                        help="send phone ids instead of text (voices with the 'ids' front end)")
    parser.add_argument("--tones", default=None, metavar="T,T,...", help="tone ids for --ids (default zeros)")
    parser.add_argument("--language-ids", default=None, metavar="L,L,...",
                        help="language ids for --ids (default zeros)")
    parser.add_argument("-o", "--output", help="write the audio here as WAV (- for standard output)")
    parser.add_argument("--server", default="127.0.0.1:50051", help="HOST:PORT of the server")
    parser.add_argument("--stream", action="store_true", help="use SynthesizeStream (audio as it is decoded)")
    parser.add_argument("--voice", default="", help="voice name (default: the server's default voice)")
    parser.add_argument("--speaker", default="", help="speaker name (default: the voice's default)")
    parser.add_argument("--language", default="", help="language code for the front end")
    parser.add_argument("--seed", type=seed_value, default=None, help="noise seed (same seed, same audio)")
    parser.add_argument("--sample-rate", type=int, default=None, metavar="HZ",
                        help="ask the server to resample to HZ (8000..48000; default: the voice's rate)")
    add_sampling_arguments(parser, "sampling (unset: the voice's defaults)")
    parser.add_argument("--list-voices", action="store_true", help="print the server's voices and exit")
    parser.add_argument("--token", default=None, help="bearer token (default: $VITSRT_AUTH_TOKEN)")
    parser.add_argument("--tls", action="store_true", help="connect with TLS (system roots unless --tls-ca)")
    parser.add_argument("--tls-ca", type=Path, default=None, help="PEM root certificate(s) to trust")
    parser.add_argument("--timeout", type=_seconds, default=None, help="deadline for the call in seconds")


def _seconds(value: str) -> float:
    """argparse type of --timeout: a positive, finite number of seconds (a negative deadline has always passed)."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return seconds


def _int_list(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(part) for part in value.replace(" ", "").split(",") if part]
    except ValueError:
        raise InputError("ids", f"expected comma-separated integers, got {clip(value)}") from None


def _request(args: argparse.Namespace) -> Any:
    from vitsrt.serve.grpc.client import build_request

    if (args.text is None) == (args.ids is None):
        raise InputError("input", "give TEXT or --ids (or --list-voices)")
    text = sys.stdin.read() if args.text == "-" else args.text
    request = build_request(text, phone_ids=_int_list(args.ids), tone_ids=_int_list(args.tones),
                            language_ids=_int_list(args.language_ids), voice=args.voice, speaker=args.speaker,
                            language=args.language, seed=args.seed, **sampling_arguments(args))
    if args.sample_rate is not None:
        request.sample_rate = _sample_rate(args.sample_rate)
    return request


def _sample_rate(rate: int) -> int:
    """--sample-rate checked here against the server's own bounds, so a typo fails before the call."""
    from vitsrt.serve.grpc.convert import SAMPLE_RATE_RANGE

    low, high = SAMPLE_RATE_RANGE
    if not low <= rate <= high:
        raise InputError("sample-rate", f"{rate} Hz is outside {low}..{high}")
    return rate


def _print_voices(reply: Any) -> None:
    for voice in reply.voices:
        marker = " (default)" if voice.name == reply.default_voice else ""
        print(f"{voice.name}{marker}: {voice.sample_rate} Hz, frontend {voice.frontend}, "
              f"speakers {', '.join(voice.speakers)}, languages {', '.join(voice.languages) or '-'}")


def _write(output: str, wav: bytes) -> None:
    if output == "-":
        sys.stdout.buffer.write(wav)
        sys.stdout.buffer.flush()
    else:
        Path(output).write_bytes(wav)


def run(args: argparse.Namespace) -> int:
    import grpc

    from vitsrt.serve.grpc.client import TtsClient

    # Everything local is checked before the call, so a typo fails at once and not after the synthesis.
    if args.output is not None:
        output_format(args.output, WAV_ONLY)
    if args.tls_ca is not None and not args.tls_ca.is_file():
        raise InputError("tls-ca", f"{clip(args.tls_ca)} is not a file")
    request = None if args.list_voices else _request(args)
    token = args.token or os.environ.get("VITSRT_AUTH_TOKEN") or None
    client = TtsClient(args.server, token=token, root_certificates=args.tls_ca, tls=args.tls, timeout=args.timeout)
    try:
        if args.list_voices:
            _print_voices(client.list_voices())
            return 0
        audio = client.call_streaming(request) if args.stream else client.call_unary(request)
    except grpc.RpcError as exc:
        if exc.code() is grpc.StatusCode.UNAVAILABLE:
            raise ServerUnreachableError(f"no vitsrt server answers at {clip(args.server)} "
                                         f"(UNAVAILABLE: {exc.details()})") from None
        # The server refused the request: exit 1, told apart from the local usage errors (exit 2).
        print(f"vitsrt client: error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    finally:
        client.close()
    if args.output is not None:
        _write(args.output, audio.wav())
    mode = f"stream, {audio.chunks} chunks" if args.stream else "unary"
    # With -o - standard output carries the audio, so the summary goes to standard error.
    print(f"{audio.duration_seconds:.2f} s of audio at {audio.sample_rate} Hz ({mode}); "
          f"time to first audio {audio.first_audio_seconds * 1000:.1f} ms; total {audio.total_seconds * 1000:.1f} ms; "
          f"real-time factor {audio.real_time_factor:.3f}" + (f"; wrote {args.output}" if args.output else ""),
          file=sys.stderr if args.output == "-" else sys.stdout)
    return 0
