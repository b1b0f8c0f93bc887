"""`vitsrt serve -v VOICE_DIR [-v ...]`: the text-to-speech server, one engine behind up to three doors.

--grpc-port (alias --port): vitsrt.v1.TextToSpeech; --http-port: OpenAI's /v1/audio/speech and a web page;
--wyoming-port: the Wyoming protocol (Home Assistant). With none of the three, gRPC on 50051 as before.
Every door shares the engine, the token, the limits and the shutdown (vitsrt.serve.doors)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

HELP = ("serve voices over gRPC (vitsrt.v1.TextToSpeech), HTTP (OpenAI's speech API, web page) and/or Wyoming, "
        "with health and Prometheus metrics")
DEFAULT_GRPC_PORT = 50051
AUTH_TOKEN_ENV = "VITSRT_AUTH_TOKEN"  # same name as vitsrt.serve.grpc.server.AUTH_TOKEN_ENV (kept import-light)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--voice", dest="voices", action="append", metavar="VOICE_DIR",
                        help="a voice bundle directory (repeat for more voices; the first is the default; "
                        "default: the shipped default voice)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for every interface)")
    parser.add_argument("--grpc-port", "--port", dest="grpc_port", type=int, default=None,
                        help=f"gRPC port (0: pick a free one; default {DEFAULT_GRPC_PORT} when no other door is "
                        "given); --port is the older name")
    parser.add_argument("--http-port", type=int, default=None,
                        help="HTTP port: OpenAI-compatible POST /v1/audio/speech, /v1/models, /v1/audio/voices, "
                        "/healthz, /readyz, /metrics and a web page at / (0: pick a free one)")
    parser.add_argument("--wyoming-port", type=int, default=None,
                        help="Wyoming protocol port (Home Assistant and other Wyoming clients; 0: a free one)")
    parser.add_argument("--backend", default="onnxruntime", help="stage backend (onnxruntime, onnxruntime-cuda, ...)")
    parser.add_argument("--threads", "--lane-threads", dest="threads", type=int, default=None,
                        help="intra-op threads per backend session, i.e. per lane (default: from the core count)")
    parser.add_argument("--lanes", type=int, default=None,
                        help="execution lanes, each a worker with its own sessions (default: from the core count "
                        "for CPU backends, 1 for GPU backends, 2 for torch-cuda)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None,
                        help="--backend torch[-cuda]: autocast flow and decoder to bf16/fp16 (default fp32)")
    parser.add_argument("--triton-url", default=None,
                        help="with --backend triton: the Triton gRPC endpoint running the stage models (HOST:PORT)")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="largest batch per engine stage (default: 1 on CPU, where lanes run streams side by "
                        "side, 8 on GPU)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="longest a stage waits to fill a batch")
    parser.add_argument("--max-concurrent-streams", type=int, default=64,
                        help="synthesis calls in flight at once; more get RESOURCE_EXHAUSTED")
    parser.add_argument("--max-text-chars", type=int, default=5000, help="longest text accepted (INVALID_ARGUMENT)")
    parser.add_argument("--max-message-bytes", type=int, default=1 << 20,
                        help="largest request message accepted (RESOURCE_EXHAUSTED)")
    parser.add_argument("--max-audio-seconds", type=float, default=300.0,
                        help="longest audio one request may produce; longer requests get RESOURCE_EXHAUSTED")
    parser.add_argument("--max-sentence-seconds", type=float, default=60.0,
                        help="longest audio one sentence may produce (its prior sample, and a transformer flow, "
                        "cover the whole sentence); longer ones get RESOURCE_EXHAUSTED")
    parser.add_argument("--max-phonemes", type=int, default=768,
                        help="most ids per sentence (phoneme input is one sentence; longer text sentences are "
                        "split); more get INVALID_ARGUMENT")
    parser.add_argument("--request-timeout", type=float, default=10.0,
                        help="seconds a call may take to deliver its request (and a connection its HTTP/2 "
                        "handshake); slower calls get DEADLINE_EXCEEDED")
    parser.add_argument("--max-call-seconds", type=float, default=600.0,
                        help="longest any call may run; longer calls get DEADLINE_EXCEEDED")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--auth-token-file", type=Path, default=None, metavar="PATH",
                       help="require 'authorization: Bearer TOKEN', the token read from this file (first line); "
                       f"or set ${AUTH_TOKEN_ENV}. Health stays open; /metrics needs the token too")
    token.add_argument("--auth-token", default=None,
                       help="the token itself; visible to other local users in `ps`, prefer --auth-token-file "
                       f"or ${AUTH_TOKEN_ENV}")
    parser.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate chain (enables TLS)")
    parser.add_argument("--tls-key", type=Path, default=None, help="PEM private key for --tls-cert")
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port")
    parser.add_argument("--metrics-host", default=None,
                        help="address for the metrics endpoint (default: --host; 127.0.0.1 keeps it local)")
    parser.add_argument("--metrics-auth", action=argparse.BooleanOptionalAction, default=True,
                        help="with a token set, /metrics answers 401 without 'Authorization: Bearer TOKEN' "
                        "(default: on)")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds in-flight calls get to finish after SIGTERM before being cancelled")
    parser.add_argument("--drain", type=float, default=0.0,
                        help="seconds to keep serving with health NOT_SERVING before refusing new calls")


def _token(args: argparse.Namespace) -> str | None:
    """--auth-token-file, else --auth-token, else $VITSRT_AUTH_TOKEN, else None (no auth)."""
    from vitsrt.serve.grpc.server import ServerSetupError

    if args.auth_token_file is None:
        return args.auth_token or os.environ.get(AUTH_TOKEN_ENV) or None
    try:
        lines = args.auth_token_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ServerSetupError(f"--auth-token-file {args.auth_token_file}: cannot read it ({reason})") from None
    token = lines[0].strip() if lines else ""
    if not token:
        raise ServerSetupError(f"--auth-token-file {args.auth_token_file}: the first line is empty")
    return token


def run(args: argparse.Namespace) -> int:
    from vitsrt.serve.doors import ServeConfig, run_doors
    from vitsrt.serve.engine.engine import EngineOptions
    from vitsrt.serve.grpc.server import ServerConfig
    from vitsrt.voices import default_voice_dir

    engine = EngineOptions(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                           max_active_streams=args.max_concurrent_streams, max_text_chars=args.max_text_chars,
                           threads=args.threads, lanes=args.lanes, max_audio_seconds=args.max_audio_seconds,
                           max_sentence_seconds=args.max_sentence_seconds, max_phonemes=args.max_phonemes)
    only_others = args.grpc_port is None and (args.http_port is not None or args.wyoming_port is not None)
    config = ServerConfig(
        host=args.host, port=DEFAULT_GRPC_PORT if args.grpc_port is None else args.grpc_port,
        max_message_bytes=args.max_message_bytes,
        max_concurrent_streams=args.max_concurrent_streams, engine=engine,
        auth_token=_token(args), tls_cert=args.tls_cert, tls_key=args.tls_key, metrics_port=args.metrics_port,
        metrics_host=args.metrics_host, metrics_auth=args.metrics_auth, grace_seconds=args.grace,
        drain_seconds=args.drain, request_timeout=args.request_timeout, max_call_seconds=args.max_call_seconds,
    )
    doors = ServeConfig(server=config, grpc=not only_others, http_port=args.http_port, wyoming_port=args.wyoming_port)
    backend_options: dict | None = {"url": args.triton_url} if args.triton_url else None
    if args.precision:
        backend_options = {**(backend_options or {}), "precision": args.precision}
    voices = args.voices or [default_voice_dir()]
    run_doors(voices, doors, backend=args.backend, backend_options=backend_options)
    return 0
