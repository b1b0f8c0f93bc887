"""`vitsrt client TEXT -o out.wav [--stream]`: call a vitsrt gRPC server, save the audio, report timings."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from vitsrt.commands import add_sampling_arguments, sampling_arguments

HELP = "synthesise TEXT on a vitsrt gRPC server; prints time to first audio and real-time factor"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", help="text to speak ('-' reads standard input)")
    parser.add_argument("--ids", default=None, metavar="P,P,...",
                        help="send phone ids instead of text (voices with the 'ids' front end)")
    parser.add_argument("--tones", default=None, metavar="T,T,...", help="tone ids for --ids (default zeros)")
    parser.add_argument("--language-ids", default=None, metavar="L,L,...",
                        help="language ids for --ids (default zeros)")
    parser.add_argument("-o", "--output", type=Path, help="write the audio here as WAV")
    parser.add_argument("--server", default="127.0.0.1:50051", help="HOST:PORT of the server")
    parser.add_argument("--stream", action="store_true", help="use SynthesizeStream (audio as it is decoded)")
    parser.add_argument("--voice", default="", help="voice name (default: the server's default voice)")
    parser.add_argument("--speaker", default="", help="speaker name (default: the voice's default)")
    parser.add_argument("--language", default="", help="language code for the front end")
    parser.add_argument("--seed", type=int, default=None, help="noise seed (same seed, same audio)")
    add_sampling_arguments(parser, "sampling (unset: the voice's defaults)")
    parser.add_argument("--list-voices", action="store_true", help="print the server's voices and exit")
    parser.add_argument("--token", default=None, help="bearer token (default: $VITSRT_AUTH_TOKEN)")
    parser.add_argument("--tls", action="store_true", help="connect with TLS (system roots unless --tls-ca)")
    parser.add_argument("--tls-ca", type=Path, default=None, help="PEM root certificate(s) to trust")
    parser.add_argument("--timeout", type=float, default=None, help="deadline for the call in seconds")


def _int_list(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(part) for part in value.replace(" ", "").split(",") if part]
    except ValueError:
        raise SystemExit(f"vitsrt client: error: expected comma-separated integers, got {value!r}") from None


def run(args: argparse.Namespace) -> int:
    import grpc

    from vitsrt.serve.grpc.client import TtsClient, build_request

    token = args.token or os.environ.get("VITSRT_AUTH_TOKEN") or None
    client = TtsClient(args.server, token=token, root_certificates=args.tls_ca, tls=args.tls, timeout=args.timeout)
    try:
        if args.list_voices:
            reply = client.list_voices()
            for voice in reply.voices:
                marker = " (default)" if voice.name == reply.default_voice else ""
                print(f"{voice.name}{marker}: {voice.sample_rate} Hz, frontend {voice.frontend}, "
                      f"speakers {', '.join(voice.speakers)}, languages {', '.join(voice.languages) or '-'}")
            return 0
        if (args.text is None) == (args.ids is None):
            print("vitsrt client: error: give TEXT or --ids (or --list-voices)", file=sys.stderr)
            return 2
        text = sys.stdin.read() if args.text == "-" else args.text
        request = build_request(text, phone_ids=_int_list(args.ids), tone_ids=_int_list(args.tones),
                                language_ids=_int_list(args.language_ids), voice=args.voice, speaker=args.speaker,
                                language=args.language, seed=args.seed, **sampling_arguments(args))
        audio = client.call_streaming(request) if args.stream else client.call_unary(request)
    except grpc.RpcError as exc:
        print(f"vitsrt client: error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    finally:
        client.close()
    if args.output is not None:
        args.output.write_bytes(audio.wav())
    mode = f"stream, {audio.chunks} chunks" if args.stream else "unary"
    print(f"{audio.duration_seconds:.2f} s of audio at {audio.sample_rate} Hz ({mode}); "
          f"time to first audio {audio.first_audio_seconds * 1000:.1f} ms; total {audio.total_seconds * 1000:.1f} ms; "
          f"real-time factor {audio.real_time_factor:.3f}" + (f"; wrote {args.output}" if args.output else ""))
    return 0
