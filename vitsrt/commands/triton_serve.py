"""`vitsrt triton-serve REPO`: run tritonserver on a repository from `vitsrt triton-repo`, in the foreground.

Uses the tritonserver inside the nvidia-pytriton wheel (with its Python backend set up the way
:mod:`vitsrt.serve.triton.launcher` explains) or one on PATH. SIGINT / SIGTERM shut it down; exit 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from vitsrt.errors import VitsrtError

HELP = "serve a Triton model repository (from `vitsrt triton-repo`) with tritonserver until SIGINT/SIGTERM"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repository", help="model repository directory (written by `vitsrt triton-repo`)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for every interface)")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP/REST port (default 8000)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    parser.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (default 8002)")
    parser.add_argument("--startup-timeout", type=float, default=300.0,
                        help="seconds to wait for every model to load (default 300)")


def _check(args: argparse.Namespace) -> Path:
    repo = Path(args.repository)
    if not repo.is_dir():
        raise VitsrtError(f"model repository {repo} is not a directory")
    ports = (args.http_port, args.grpc_port, args.metrics_port)
    if any(not 0 < port < 65536 for port in ports) or len(set(ports)) != 3:
        raise VitsrtError(f"--http-port, --grpc-port and --metrics-port must be 3 different ports in 1..65535, "
                          f"not {ports}")
    return repo.absolute()


def run(args: argparse.Namespace) -> int:
    from vitsrt.serve.triton.launcher import TritonServerProcess, find_tritonserver

    repo = _check(args)
    find_tritonserver()  # no server anywhere: one-line error before anything else happens
    server = TritonServerProcess(repo, host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                                 metrics_port=args.metrics_port, startup_timeout=args.startup_timeout, console=True)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()
        server.terminate()  # tritonserver runs in its own session: a terminal's Ctrl-C does not reach it

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server.start()
        except VitsrtError:
            if stopping.is_set():
                return 0  # told to stop while the models were still loading
            raise
        log.info("tritonserver ready: gRPC %s, HTTP %s, metrics port %d", server.grpc_url, server.http_url,
                 server.metrics_port)
        status = server.wait()
        if not stopping.is_set():
            raise VitsrtError(f"tritonserver exited with status {status}")
        log.info("tritonserver stopped")
        return 0
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
