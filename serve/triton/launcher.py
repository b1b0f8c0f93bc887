"""Start and stop a local ``tritonserver`` (tests, benchmarks, trying a generated repository).

The ``nvidia-pytriton`` wheel ships a complete tritonserver with the Python backend, which runs on a
machine without a GPU. Using it outside pytriton takes three things, all done here:

* a backend directory holding ``python/libtriton_python.so``, ``triton_python_backend_utils.py`` and the
  Python-backend stub built for *this* interpreter's minor version (the wheel keeps one stub per Python
  version under ``tritonserver/python_backend_stubs/``; pytriton copies the right one at run time too);
* ``LD_LIBRARY_PATH`` containing this interpreter's ``libpython`` directory (the stub links to it);
* this interpreter's ``bin`` directory first on ``PATH``: the stub embeds Python and finds its
  ``sys.prefix`` from the ``python3`` on ``PATH``, so the models see this virtual environment's
  site-packages (``vitsrt``, numpy, onnxruntime) without ``PYTHONPATH`` or an ``EXECUTION_ENV_PATH``.

A full Triton install (``tritonserver`` on PATH, e.g. the NGC container) is used as is.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from vitsrt.errors import VitsrtError

__all__ = ["TritonServerError", "TritonServerProcess", "find_tritonserver", "free_port"]

log = logging.getLogger(__name__)


class TritonServerError(VitsrtError):
    """tritonserver is missing, failed to start or did not become ready."""


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    pytriton_root: Path | None  # set when the binary comes from the nvidia-pytriton wheel


def find_tritonserver() -> TritonInstall:
    """The tritonserver from the nvidia-pytriton wheel, else one on PATH; TritonServerError if neither."""
    spec = importlib.util.find_spec("pytriton")
    if spec is not None and spec.origin:
        root = Path(spec.origin).parent / "tritonserver"
        binary = root / "bin" / "tritonserver"
        if binary.is_file():
            return TritonInstall(binary, root)
    found = shutil.which("tritonserver")
    if found:
        return TritonInstall(Path(found), None)
    raise TritonServerError(
        "no tritonserver found: pip install nvidia-pytriton (ships one) or put tritonserver on PATH"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A currently unused TCP port on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _prepare_backends(root: Path, into: Path) -> Path:
    """A backend directory with the Python backend and the stub matching this interpreter."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonServerError(f"the pytriton wheel has no Python-backend stub for Python {version}")
    python_dir = into / "python"
    shutil.copytree(root / "backends" / "python", python_dir, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(stub, python_dir / "triton_python_backend_stub")
    return into


def server_environment(pytriton_root: Path | None) -> dict[str, str]:
    """The environment for tritonserver: this venv's bin first on PATH, libpython on LD_LIBRARY_PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    libs = [sysconfig.get_config_var("LIBDIR") or ""]
    if pytriton_root is not None:
        bundled = pytriton_root.parent.parent / "nvidia_pytriton.libs"
        if bundled.is_dir():
            libs.append(str(bundled))
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
    return env


class TritonServerProcess:
    """A tritonserver child process on loopback with free ports; use as a context manager.

    ``stop()`` (or leaving the ``with`` block) terminates it and waits; the process runs in its own
    session so nothing it spawned (Python-backend stubs) outlives it.
    """

    def __init__(
        self,
        model_repository: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        log_file: str | os.PathLike[str] | None = None,
        startup_timeout: float = 180.0,
        extra_args: tuple[str, ...] = (),
        grpc_port: int | None = None,
        http_port: int | None = None,
        metrics_port: int | None = None,
        console: bool = False,
    ):
        self.model_repository = Path(model_repository)
        self.host = host
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args
        self.grpc_port = grpc_port or free_port(host)
        self.http_port = http_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self._workdir = Path(tempfile.mkdtemp(prefix="vitsrt-triton-"))
        self._own_log = log_file is None
        self.console = console  # the server writes to our stdout/stderr instead of the log file
        self.log_path = Path(log_file) if log_file else self._workdir / "tritonserver.log"
        self._process: subprocess.Popen | None = None
        self._log_handle = None

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def command(self, install: TritonInstall) -> list[str]:
        args = [
            str(install.binary),
            f"--model-repository={self.model_repository}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--disable-auto-complete-config",
            "--model-control-mode=none",
            "--exit-on-error=true",
            "--exit-timeout-secs=10",
            "--log-verbose=0",
        ]
        if install.pytriton_root is not None:
            backends = _prepare_backends(install.pytriton_root, self._workdir / "backends")
            args += [f"--backend-directory={backends}", f"--cache-directory={install.pytriton_root / 'caches'}"]
        return [*args, *self.extra_args]

    def start(self) -> TritonServerProcess:
        install = find_tritonserver()
        command = self.command(install)
        if not self.console:
            self._log_handle = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        log.info("starting %s", " ".join(command))
        self._process = subprocess.Popen(
            command,
            stdout=self._log_handle,
            stderr=None if self.console else subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_environment(install.pytriton_root),
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self) -> int:
        """Block until the server exits on its own; its exit status."""
        if self._process is None:
            raise TritonServerError("tritonserver is not running")
        return self._process.wait()

    def terminate(self) -> None:
        """Ask the server to shut down (SIGTERM) without waiting; safe from a signal handler."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)

    def log_tail(self, lines: int = 40) -> str:
        if self.console:
            return "(its output is above)"
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise TritonServerError(f"tritonserver exited during startup:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise TritonServerError(f"tritonserver not ready after {self.startup_timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver did not stop in %.0f s; killing its process group", timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if process is not None:
            # Stubs are children of the server; kill any that a crash left behind (same session/group).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        # The backend copy always goes; the log stays only where the caller asked for it.
        shutil.rmtree(self._workdir if self._own_log else self._workdir / "backends", ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> TritonServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
