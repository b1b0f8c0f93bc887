"""The bad-input table (issue "Hardening", item 6): every way a caller can get an input wrong gets the right
status (gRPC) or exit status 2 (CLI) and ONE short line saying what is wrong, never a traceback, a hang, a
huge allocation or a message that echoes megabytes back. Four areas, each a list of case records:

* gRPC requests, sent as bytes over real gRPC on 127.0.0.1 to one real `vitsrt serve` process per module
  (the fixture voice 'tiny' with the ids front end, and the shipped default voice with the IPA front end);
  after every case the same server still serves a normal request;
* CLI invocations (`vitsrt.cli.main` in-process; a subprocess only where a case could block or allocate);
* voice bundles: a copy of the fixture voice broken one way per case, then `vitsrt synth -v DIR --ids ...`;
* checkpoints and configs: `vitsrt info CKPT -c CFG`.

The gRPC server and the isolated CLI cases run in their own process under an address-space limit, so a
regression that tries to allocate gigabytes fails there instead of taking the test machine down.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import zipfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from conftest import REPO_ROOT
from grpc_support import ids_request, phone_ids
from vitsrt.serve.grpc.client import build_request
from vitsrt.serve.proto import tts_pb2
from vitsrt.voices import DEFAULT_VOICE_DIR

MAX_TEXT = 5000
MAX_AUDIO_SECONDS = 20  # the server's --max-audio-seconds: a slow sentence of text is already over it
MEMORY_LIMIT = 6 << 30  # address-space limit of every child process (server, isolated CLI cases)
MESSAGE_LIMIT = 400
ERROR_DEADLINE = 8.0  # a refusal takes milliseconds; an accepted heavy request is cut off here

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
OK = grpc.StatusCode.OK

TEXT_VOICE = json.loads((DEFAULT_VOICE_DIR / "voice.json").read_text())["name"]  # the shipped IPA voice
SYNTH = "/vitsrt.v1.TextToSpeech/Synthesize"
STREAM = "/vitsrt.v1.TextToSpeech/SynthesizeStream"


# `vitsrt ARGS` in a child whose address space is limited by the child itself, first thing: a preexec_fn would
# run Python between fork and exec in a copy of this process, whose gRPC threads once aborted it there (SIGABRT,
# "epoll_wait error: Bad file descriptor").
_LIMITED_CLI = (
    f"import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT})); "
    "sys.argv[0] = 'vitsrt'; runpy.run_module('vitsrt.cli', run_name='__main__')"
)


def limited_cli(*args: str) -> list[str]:
    """The command line of `vitsrt ARGS` with the memory limit."""
    return [sys.executable, "-c", _LIMITED_CLI, *args]


def _one_line(message: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """What is wrong with `message` as a user-facing error line (empty list: nothing)."""
    problems = []
    if "\n" in message or "\r" in message:
        problems.append("spans several lines")
    if "Traceback" in message:
        problems.append("holds a traceback")
    if len(message) >= limit:
        problems.append(f"is {len(message)} characters long (limit {limit})")
    if not message.strip():
        problems.append("is empty")
    return problems


# ======================================================================================================
# gRPC requests
# ======================================================================================================


@dataclass(frozen=True)
class GrpcCase:
    id: str
    build: Callable[[], Any]  # -> a SynthesizeRequest or raw bytes
    code: grpc.StatusCode | tuple[grpc.StatusCode, ...]  # OK: the request must be served; a tuple: any of them
    mention: str = ""  # regex the status message must match
    within: float | None = None  # the refusal must come within this many seconds


def _ids(tokens: int = 20, seed: int = 1, **overrides: Any) -> dict[str, list[int]]:
    ids = phone_ids(tokens, seed)
    ids.update(overrides)
    return ids


def _req(tokens: int = 20, **fields: Any) -> Callable[[], Any]:
    """A builder of an ids request to the fixture voice (the server's default voice)."""
    return lambda: ids_request(tokens, 1, **fields)


def _text(text: str, **fields: Any) -> Callable[[], Any]:
    """A builder of a text request to the shipped default voice."""
    return lambda: build_request(text, voice=TEXT_VOICE, **fields)


def _raw(builder: Callable[[], Any], *extra: tuple[int, bytes]) -> Callable[[], bytes]:
    """Serialized `builder()` followed by length-delimited fields (number, bytes) a protobuf library would not
    write (invalid UTF-8, a second member of the oneof)."""

    def build() -> bytes:
        data = builder().SerializeToString()
        for number, value in extra:
            data += _varint(number << 3 | 2) + _varint(len(value)) + value
        return data

    return build


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _empty_phonemes() -> Any:
    message = tts_pb2.SynthesizeRequest()
    message.phonemes.SetInParent()
    return message


def _text_then_phonemes() -> bytes:
    """A request whose bytes hold a text and then a phonemes member of the oneof: the last one wins."""
    return _varint(3 << 3 | 2) + _varint(5) + b"hello" + ids_request(20, 1).SerializeToString()


def _range(field: str) -> str:
    """The message names the field and the range it must lie in (the bounds themselves are the server's)."""
    return rf"\b{field}\b.*(between|\d\s*(\.\.|to|-|,)\s*\d)"


BAD_UTF8 = b"\xff\xfe\xc3"
LONG_TEXT = ("This sentence is spoken again and again, slowly. " * 100)[:MAX_TEXT]
NAN, INF = float("nan"), float("inf")

GRPC_CASES = [
    # voice / speaker / language
    GrpcCase("unknown voice", _req(voice="nobody"), NOT_FOUND, "nobody"),
    GrpcCase("900 KB voice name", _req(voice="v" * 900_000), NOT_FOUND, "voice"),
    GrpcCase("unknown speaker", _req(speaker="carol"), NOT_FOUND, "carol"),
    GrpcCase("900 KB speaker name", _req(speaker="s" * 900_000), NOT_FOUND, "speaker"),
    GrpcCase("unknown language for text", _text("Hello there.", language="xx-nowhere"), INVALID, "language"),
    # text
    GrpcCase("empty text", _text(""), INVALID, "text"),
    GrpcCase("whitespace text", _text(" \n\t\u3000 "), INVALID, "text"),
    GrpcCase("control characters only", _text("\x00\x01\x07\x1b\x7f"), INVALID, "text"),
    GrpcCase("punctuation only", _text("?!... --- ;;"), INVALID, "text"),
    GrpcCase("text over the limit", _text("a" * (MAX_TEXT + 1)), INVALID, "text"),
    GrpcCase("100k-char text", _text("word " * 20_000), INVALID, "text"),
    GrpcCase("text for an ids-only voice", lambda: build_request("hello there"), INVALID, "text"),
    GrpcCase("no input at all", lambda: build_request(), INVALID, "input"),
    GrpcCase("empty message", lambda: b"", INVALID, "input"),
    GrpcCase("both text and phonemes (text last)",
             _raw(lambda: ids_request(20, 1), (3, b"hello there")), INVALID, "text|input"),
    # phoneme ids
    GrpcCase("empty phonemes message", _empty_phonemes, INVALID, "phone_ids"),
    GrpcCase("phone id out of range", lambda: build_request(**_ids(phone_ids=[0, 112] + [0] * 18)),
             INVALID, "phone_ids"),
    GrpcCase("negative phone id", lambda: build_request(**_ids(phone_ids=[0, -1] + [0] * 18)), INVALID, "phone_ids"),
    GrpcCase("phone id 2**62", lambda: build_request(**_ids(phone_ids=[0, 2**62] + [0] * 18)),
             INVALID, "phone_ids"),
    GrpcCase("tone id out of range", lambda: build_request(**_ids(tone_ids=[0, 99] + [0] * 18)), INVALID, "tone_ids"),
    GrpcCase("negative tone id", lambda: build_request(**_ids(tone_ids=[0, -3] + [0] * 18)), INVALID, "tone_ids"),
    GrpcCase("language id out of range", lambda: build_request(**_ids(language_ids=[7] * 20)),
             INVALID, "language_ids"),
    GrpcCase("negative language id", lambda: build_request(**_ids(language_ids=[-1] * 20)), INVALID, "language_ids"),
    GrpcCase("tone ids of the wrong length", lambda: build_request(**_ids(tone_ids=[0, 1, 0])), INVALID, "tone_ids"),
    GrpcCase("language ids of the wrong length", lambda: build_request(**_ids(language_ids=[0] * 21)),
             INVALID, "language_ids"),
    GrpcCase("5000 phone ids", _req(5000), INVALID, r"phonemes\.phone_ids"),
    GrpcCase("100k phone ids", _req(100_000), INVALID, r"phonemes\.phone_ids"),
    # sampling scales: refused naming the field and its range, before any work (within milliseconds)
    GrpcCase("NaN length_scale", _req(length_scale=NAN), INVALID, _range("length_scale")),
    GrpcCase("inf noise_scale", _req(noise_scale=INF), INVALID, _range("noise_scale")),
    GrpcCase("-inf noise_scale_w", _req(noise_scale_w=-INF), INVALID, _range("noise_scale_w")),
    GrpcCase("NaN sdp_ratio", _req(sdp_ratio=NAN), INVALID, _range("sdp_ratio")),
    GrpcCase("negative length_scale", _req(length_scale=-1.0), INVALID, _range("length_scale")),
    GrpcCase("zero length_scale", _req(length_scale=0.0), INVALID, _range("length_scale")),
    GrpcCase("negative noise_scale", _req(noise_scale=-0.1), INVALID, _range("noise_scale")),
    GrpcCase("negative noise_scale_w", _req(noise_scale_w=-0.5), INVALID, _range("noise_scale_w")),
    GrpcCase("length_scale 1e6", _req(length_scale=1e6), INVALID, _range("length_scale"), within=0.5),
    GrpcCase("length_scale 1e4", _req(length_scale=1e4), INVALID, _range("length_scale"), within=0.5),
    GrpcCase("length_scale 3.4e38", _req(length_scale=3.4e38), INVALID, _range("length_scale"), within=0.5),
    GrpcCase("length_scale 1e-30", _req(length_scale=1e-30), INVALID, _range("length_scale"), within=0.5),
    GrpcCase("noise_scale 1e6", _req(noise_scale=1e6), INVALID, _range("noise_scale"), within=0.5),
    GrpcCase("noise_scale_w 100", _req(noise_scale_w=100.0), INVALID, _range("noise_scale_w"), within=0.5),
    GrpcCase("sdp_ratio 2", _req(sdp_ratio=2.0), INVALID, _range("sdp_ratio")),
    GrpcCase("sdp_ratio -0.1", _req(sdp_ratio=-0.1), INVALID, _range("sdp_ratio")),
    # the audio budget: a request whose durations add up to too much audio is refused before flow and decoder
    # (300 ids of the fixture voice at length_scale 10 are about a minute of audio, three times the server's limit)
    GrpcCase("300 ids at length_scale 10", _req(300, length_scale=10.0), EXHAUSTED, "audio", within=3.0),
    GrpcCase("4000 ids at length_scale 10", _req(4000, length_scale=10.0), (EXHAUSTED, INVALID),
             r"audio|phonemes\.phone_ids", within=3.0),
    GrpcCase("5000 characters of text at length_scale 10", _text(LONG_TEXT, length_scale=10.0), EXHAUSTED, "audio",
             within=3.0),
    # encoding and the bytes themselves
    GrpcCase("unknown encoding", _req(encoding=7), INVALID, "encoding"),
    GrpcCase("negative encoding", _req(encoding=-1), INVALID, "encoding"),
    GrpcCase("truncated protobuf", lambda: ids_request(20, 1).SerializeToString()[:-3], INVALID, "request"),
    GrpcCase("garbage bytes", lambda: b"\xff" * 16, INVALID, "request"),
    GrpcCase("invalid UTF-8 in voice", _raw(lambda: ids_request(20, 1), (1, BAD_UTF8)), INVALID, "request"),
    GrpcCase("invalid UTF-8 in speaker", _raw(lambda: ids_request(20, 1), (2, BAD_UTF8)), INVALID, "request"),
    GrpcCase("invalid UTF-8 in text", _raw(lambda: ids_request(20, 1), (3, BAD_UTF8)), INVALID, "request"),
    GrpcCase("invalid UTF-8 in language", _raw(lambda: ids_request(20, 1), (5, BAD_UTF8)), INVALID, "request"),
    # must be served: odd but speakable input is never fatal
    GrpcCase("text with a 400-dash run is served", _text("Hello " + "-" * 400 + " world"), OK),
    GrpcCase("text with control characters is served", _text("Hel\x00lo\x07 wor\x1bld."), OK),
    GrpcCase("text with emoji and zero-width spaces is served", _text("Hello \U0001f600 wo\u200brld!"), OK),
    GrpcCase("largest seed is served", lambda: build_request(**_ids(), seed=2**64 - 1), OK),
    GrpcCase("both text and phonemes (phonemes last) is served",
             _text_then_phonemes, OK),
]


class ServeProcess:
    """`vitsrt serve` in a child process (address space limited), its port read from its log line."""

    def __init__(self, voices: list[Path]):
        from vitsrt.commands import serve

        parser = argparse.ArgumentParser()
        serve.add_arguments(parser)
        self.has_audio_limit = "--max-audio-seconds" in parser._option_string_actions
        args = limited_cli("serve", "--port", "0", "--threads", "1", "--max-wait-ms", "2", "--max-text-chars",
                           str(MAX_TEXT), "--grace", "1")
        for voice in voices:
            args += ["-v", str(voice)]
        if self.has_audio_limit:
            args += ["--max-audio-seconds", str(MAX_AUDIO_SECONDS)]
        self.log: deque[str] = deque(maxlen=200)
        self._port: list[int] = []
        self._ready = threading.Event()
        self.process = subprocess.Popen(args, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._ready.wait(120) or not self._port:
            self.close()
            raise RuntimeError("vitsrt serve did not start:\n" + "\n".join(self.log))
        self.target = f"127.0.0.1:{self._port[0]}"

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line.rstrip())
            found = re.search(r"serving .* on 127\.0\.0\.1:(\d+)", line)
            if found and not self._port:
                self._port.append(int(found.group(1)))
                self._ready.set()
        self._ready.set()  # the process ended

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture(scope="module")
def server(fixture_voice):
    running = ServeProcess([fixture_voice, DEFAULT_VOICE_DIR])
    yield running
    running.close()


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.target) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        yield channel


def _still_serves(channel: grpc.Channel, server: ServeProcess) -> None:
    assert server.process.poll() is None, "the server process died:\n" + "\n".join(server.log)
    reply = tts_pb2.SynthesizeResponse.FromString(
        channel.unary_unary(SYNTH)(ids_request(12, seed=1).SerializeToString(), timeout=30))
    assert reply.duration_seconds > 0 and reply.audio


def _call(channel: grpc.Channel, method: str, payload: bytes, deadline: float) -> tuple[grpc.StatusCode, str, Any]:
    """(status code, message, what came back) of one call; a stream is read to its end only if it succeeds
    the first chunk (for a request that must be refused, one chunk already says it was accepted)."""
    try:
        if method == "unary":
            reply = channel.unary_unary(SYNTH)(payload, timeout=deadline)
            return OK, "", tts_pb2.SynthesizeResponse.FromString(reply)
        call = channel.unary_stream(STREAM)(payload, timeout=deadline)
        chunks = [tts_pb2.AudioChunk.FromString(raw) for raw in call]
        return OK, "", chunks
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or "", None


@pytest.mark.parametrize("method", ["unary", "stream"])
@pytest.mark.parametrize("case", GRPC_CASES, ids=[c.id for c in GRPC_CASES])
def test_grpc_bad_request(channel, server, case: GrpcCase, method: str):
    built = case.build()
    payload = built if isinstance(built, bytes) else built.SerializeToString()
    started = time.perf_counter()
    code, message, reply = _call(channel, method, payload, 60.0 if case.code is OK else ERROR_DEADLINE)
    elapsed = time.perf_counter() - started
    try:
        if case.code is OK:
            assert code is OK, f"must be served, got {code.name}: {message}"
            if method == "unary":
                assert reply.duration_seconds > 0 and reply.audio
            else:
                assert reply and reply[-1].is_last and sum(len(c.audio) for c in reply) > 0
            return
        shown = message if len(message) < 300 else f"{message[:300]}...(+{len(message) - 300} chars)"
        expected = case.code if isinstance(case.code, tuple) else (case.code,)
        assert code in expected, (f"expected {'/'.join(c.name for c in expected)}, got {code.name} after "
                                  f"{elapsed:.2f} s: {shown!r}")
        assert not _one_line(message), f"{_one_line(message)}: {shown!r}"
        assert re.search(case.mention, message), f"message does not match {case.mention!r}: {message!r}"
        if case.within is not None:
            assert elapsed < case.within, f"refused after {elapsed:.2f} s (limit {case.within} s)"
    finally:
        _still_serves(channel, server)


def test_grpc_negative_control(channel, server):
    """The table's requests differ from served ones only in the broken part."""
    for request in (ids_request(20, 1), ids_request(20, 1, length_scale=2.0, noise_scale=0.0, noise_scale_w=0.0,
                                                    sdp_ratio=1.0, speaker="bob", encoding=2),
                    build_request("Hello there.", voice=TEXT_VOICE)):
        for method in ("unary", "stream"):
            code, message, _ = _call(channel, method, request.SerializeToString(), 60.0)
            assert code is OK, (request, message)


def test_serve_has_a_max_audio_seconds_option(server):
    """The per-request audio cap the '4000 ids at length_scale 10' case needs is a server option."""
    assert server.has_audio_limit, "vitsrt serve has no --max-audio-seconds option"


# ======================================================================================================
# CLI invocations
# ======================================================================================================


@dataclass
class Outcome:
    rc: int | None  # None: timed out
    stdout: str
    stderr: str


def run_cli(args: list[str], *, isolate: bool = False, timeout: float = 60.0) -> Outcome:
    """`vitsrt ARGS`: in-process through `vitsrt.cli.main` (what a user sees: a SystemExit message is printed,
    an uncaught exception prints its traceback), or in a child process with limited memory and a timeout."""
    if isolate:
        try:
            done = subprocess.run(limited_cli(*args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            return Outcome(None, str(exc.stdout or ""), f"(timed out after {timeout:.0f} s) {exc.stderr or ''}")
        return Outcome(done.returncode, done.stdout, done.stderr)
    from vitsrt.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(args)
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                rc = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                rc = 1
        except Exception:
            traceback.print_exc()
            rc = 1
    return Outcome(rc, out.getvalue(), err.getvalue())


_LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING) [\w.]+: ")


def assert_one_line_error(outcome: Outcome, command: str, mention: str, *, forbid: str | None = None,
                          limit: int = MESSAGE_LIMIT) -> str:
    """Exit status 2 and one line 'vitsrt COMMAND: error: ...' matching `mention`; returns that line.
    An argparse usage error (argparse's own exit 2: the usage block, then the error line) is accepted too:
    then the error is the last line. Log lines of a child process (INFO/WARNING ...) are not counted."""
    err = outcome.stderr
    lines = [line for line in err.splitlines() if line.strip() and not _LOG_LINE.match(line)]
    summary = f"exit {outcome.rc}, stderr {err[-1500:]!r}"
    assert outcome.rc == 2, summary
    assert "Traceback" not in err, summary
    assert lines, summary
    if lines[0].startswith("usage: "):  # argparse: 'usage: ...' and its indented continuation lines
        assert all(line.startswith(" ") for line in lines[1:-1]), f"not a usage error: {summary}"
    else:
        assert len(lines) == 1, f"not one line: {summary}"
    line = lines[-1]
    assert line.startswith(f"vitsrt {command}: error:" if command else "vitsrt: error:"), summary
    assert len(line) < limit, f"{len(line)} characters: {line!r}"
    assert re.search(mention, line), f"does not match {mention!r}: {line!r}"
    if forbid is not None:
        assert not re.search(forbid, line), f"matches {forbid!r}: {line!r}"
    return line


@dataclass(frozen=True)
class CliCase:
    id: str
    args: Callable[[dict[str, Path]], list[str]]  # from the paths in the `env` fixture
    mention: str
    isolate: bool = False  # run in a child process (could block or allocate if the defect came back)
    after: Callable[[dict[str, Path]], None] | None = None  # more checks once the command failed

    @property
    def command(self) -> str:
        first = next(arg for arg in self.args(_PLACEHOLDERS) if not arg.startswith("-"))
        return "" if first == "nosuch" else first


_PLACEHOLDERS: dict[str, Path] = {k: Path(k) for k in ("tiny", "out", "tmp", "ckpt", "config", "nonempty")}
IDS = "0 5 0 7 0"


def _synth(*extra: str) -> Callable[[dict[str, Path]], list[str]]:
    return lambda p: ["synth", "-v", str(p["tiny"]), *extra]


def _no_file(name: str) -> Callable[[dict[str, Path]], None]:
    def check(p: dict[str, Path]) -> None:
        assert not (p["tmp"] / name).exists(), f"{name} was written by a failed command"

    return check


CLI_CASES = [
    CliCase("top-level unknown command", lambda p: ["nosuch"], "invalid choice"),
    # synth
    CliCase("synth ids 'a b'", _synth("--ids", "a b", "-o", "OUT"), "--ids"),
    CliCase("synth negative seed", lambda p: ["synth", "-v", str(p["tiny"]), "--ids", IDS, "--seed", "-1",
                                              "-o", str(p["tmp"] / "seed.wav")], "seed", after=_no_file("seed.wav")),
    CliCase("synth seed 2**64", _synth("--ids", IDS, "--seed", str(2**64), "-o", "OUT"), "seed"),
    CliCase("synth -o into a missing directory", lambda p: ["synth", "-v", str(p["tiny"]), "--ids", IDS,
                                                            "-o", str(p["tmp"] / "nodir" / "x.wav")],
            r"nodir|output|-o"),
    CliCase("synth -o x.mp3", lambda p: ["synth", "-v", str(p["tiny"]), "--ids", IDS, "-o", str(p["tmp"] / "x.mp3")],
            r"mp3|wav|WAV", after=_no_file("x.mp3")),
    CliCase("synth unknown speaker", _synth("--ids", IDS, "--speaker", "nobody", "-o", "OUT"), "nobody"),
    CliCase("synth NaN length scale", _synth("--ids", IDS, "--length-scale", "nan", "-o", "OUT"), "length"),
    CliCase("synth length scale 50", _synth("--ids", IDS, "--length-scale", "50", "-o", "OUT"), "length"),
    CliCase("synth negative noise scale", _synth("--ids", IDS, "--noise-scale", "-1", "-o", "OUT"), "noise"),
    CliCase("synth sdp ratio 2", _synth("--ids", IDS, "--sdp-ratio", "2", "-o", "OUT"), "sdp"),
    CliCase("synth neither text nor ids", _synth("-o", "OUT"), "TEXT|ids|input"),
    CliCase("synth both text and ids", _synth("hello", "--ids", IDS, "-o", "OUT"), "TEXT|ids|input"),
    CliCase("synth text on an ids-only voice", _synth("hello there", "-o", "OUT"), "text"),
    CliCase("synth id out of range", _synth("--ids", "0 999 0", "-o", "OUT"), "phone_ids|ids"),
    CliCase("synth tones of the wrong length", _synth("--ids", IDS, "--tones", "1 2", "-o", "OUT"), "tone"),
    CliCase("synth unknown backend", _synth("--ids", IDS, "--backend", "nosuch", "-o", "OUT"), "nosuch|backend"),
    CliCase("synth zero threads", _synth("--ids", IDS, "--threads", "0", "-o", "OUT"), "threads"),
    CliCase("synth missing voice directory", lambda p: ["synth", "-v", str(p["tmp"] / "novoice"), "--ids", IDS,
                                                        "-o", str(p["out"])], "novoice"),
    CliCase("synth without -o", _synth("--ids", IDS), "-o|--output"),
    # info
    CliCase("info missing checkpoint", lambda p: ["info", str(p["tmp"] / "G_404.pth"), "-c", str(p["config"])],
            "G_404"),
    CliCase("info without -c", lambda p: ["info", str(p["ckpt"])], "-c|--config"),
    # export
    CliCase("export into a non-empty directory without --force",
            lambda p: ["export", str(p["ckpt"]), "-c", str(p["config"]), "-o", str(p["nonempty"]), "--no-verify"],
            "force|not empty", after=lambda p: _unchanged(p["nonempty"])),
    CliCase("export opset 5", lambda p: ["export", str(p["ckpt"]), "-c", str(p["config"]),
                                         "-o", str(p["tmp"] / "v5"), "--opset", "5", "--no-verify"], "opset"),
    CliCase("export sdp ratio 2", lambda p: ["export", str(p["ckpt"]), "-c", str(p["config"]),
                                             "-o", str(p["tmp"] / "vs"), "--sdp-ratio", "2"], "sdp"),
    CliCase("export missing checkpoint", lambda p: ["export", str(p["tmp"] / "G_404.pth"), "-c", str(p["config"]),
                                                    "-o", str(p["tmp"] / "vm")], "G_404"),
    # serve (a child process: a serve that does not fail would serve forever)
    CliCase("serve missing voice", lambda p: ["serve", "-v", str(p["tmp"] / "novoice"), "--port", "0"], "novoice",
            isolate=True),
    CliCase("serve max batch 0", lambda p: ["serve", "-v", str(p["tiny"]), "--port", "0", "--max-batch", "0"],
            "max.batch", isolate=True),
    CliCase("serve port 70000", lambda p: ["serve", "-v", str(p["tiny"]), "--port", "70000"], "port|70000",
            isolate=True),
    CliCase("serve TLS cert without key", lambda p: ["serve", "-v", str(p["tiny"]), "--port", "0",
                                                     "--tls-cert", str(p["config"])], "tls", isolate=True),
    # client
    CliCase("client ids 'a b'", lambda p: ["client", "--ids", "a b", "--server", "127.0.0.1:9"], "ids|integers"),
    CliCase("client neither text nor ids", lambda p: ["client", "--server", "127.0.0.1:9"], "TEXT|ids"),
    CliCase("client missing TLS root file", lambda p: ["client", "hi", "--tls-ca", str(p["tmp"] / "ca.pem"),
                                                       "--server", "127.0.0.1:9", "--timeout", "2"], "ca.pem|tls"),
    CliCase("client negative timeout", lambda p: ["client", "hi", "--server", "127.0.0.1:9", "--timeout", "-1"],
            "timeout"),
    # bench / eval
    CliCase("bench missing voice", lambda p: ["-q", "bench", "--no-progress", "--voice", str(p["tmp"] / "novoice")],
            "novoice"),
    CliCase("bench concurrency 'a,b'", lambda p: ["bench", "--concurrency", "a,b"], "concurrency"),
    CliCase("eval missing held-out file", lambda p: ["eval", str(p["tiny"]), "--heldout", str(p["tmp"] / "h.txt")],
            r"h\.txt|heldout"),
    CliCase("eval negative limit", lambda p: ["eval", str(p["tiny"]), "--limit", "-1"], "limit"),
]


def _unchanged(directory: Path) -> None:
    assert sorted(p.name for p in directory.iterdir()) == ["keep.txt"]
    assert (directory / "keep.txt").read_text() == "precious"


@pytest.fixture(scope="module")
def env(fixture_voice, fixture_dir, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    nonempty = tmp / "existing-voice"
    nonempty.mkdir()
    (nonempty / "keep.txt").write_text("precious")
    return {"tiny": fixture_voice, "out": tmp / "out.wav", "tmp": tmp, "ckpt": fixture_dir / "G_0.pth",
            "config": fixture_dir / "config.json", "nonempty": nonempty}


def _resolve(args: list[str], paths: dict[str, Path]) -> list[str]:
    return [str(paths["out"]) if a == "OUT" else a for a in args]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_bad_invocation(env, case: CliCase):
    outcome = run_cli(_resolve(case.args(env), env), isolate=case.isolate)
    assert_one_line_error(outcome, case.command, case.mention)
    if case.after is not None:
        case.after(env)


def test_cli_negative_control(env):
    """The synth the table breaks works when nothing is broken."""
    outcome = run_cli(["synth", "-v", str(env["tiny"]), "--ids", IDS, "-o", str(env["tmp"] / "good.wav")])
    assert outcome.rc == 0, outcome.stderr
    assert (env["tmp"] / "good.wav").stat().st_size > 44


# ======================================================================================================
# voice bundles
# ======================================================================================================


def _manifest(edit: Callable[[dict], None]) -> Callable[[Path, Path], None]:
    def apply(voice: Path, tmp: Path) -> None:
        data = json.loads((voice / "voice.json").read_text())
        edit(data)
        (voice / "voice.json").write_text(json.dumps(data))

    return apply


def _write(text: str | bytes) -> Callable[[Path, Path], None]:
    def apply(voice: Path, tmp: Path) -> None:
        path = voice / "voice.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())

    return apply


def _fifo_manifest(voice: Path, tmp: Path) -> None:
    (voice / "voice.json").unlink()
    os.mkfifo(voice / "voice.json")


def _manifest_dir(voice: Path, tmp: Path) -> None:
    (voice / "voice.json").unlink()
    (voice / "voice.json").mkdir()


def _symlink_outside(voice: Path, tmp: Path) -> None:
    outside = tmp / "outside"
    outside.mkdir()
    shutil.move(voice / "encoder.onnx", outside / "encoder.onnx")
    (voice / "encoder.onnx").symlink_to(outside / "encoder.onnx")


def _tamper(stage: str) -> Callable[[Path, Path], None]:
    def apply(voice: Path, tmp: Path) -> None:
        with (voice / f"{stage}.onnx").open("r+b") as f:
            f.seek(-1, os.SEEK_END)
            last = f.read(1)
            f.seek(-1, os.SEEK_END)
            f.write(bytes([last[0] ^ 1]))

    return apply


def _remove(name: str) -> Callable[[Path, Path], None]:
    return lambda voice, tmp: (voice / name).unlink()


def _garbage_graph_with_matching_digest(voice: Path, tmp: Path) -> None:
    import hashlib

    data = b"this is not an onnx model" * 10
    (voice / "flow.onnx").write_bytes(data)
    _manifest(lambda d: d["graphs"]["flow"].update(sha256=hashlib.sha256(data).hexdigest()))(voice, tmp)


def _set(*path_and_value: Any) -> Callable[[Path, Path], None]:
    *keys, value = path_and_value

    def edit(data: dict) -> None:
        node = data
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return _manifest(edit)


@dataclass(frozen=True)
class VoiceCase:
    id: str
    breaks: Callable[[Path, Path], None]  # (voice copy, scratch dir)
    mention: str
    isolate: bool = False


VOICE_CASES = [
    VoiceCase("missing voice.json", _remove("voice.json"), r"voice\.json"),
    VoiceCase("empty voice.json", _write(b""), "JSON"),
    VoiceCase("invalid JSON", _write('{"format_version": "1.1", '), "JSON"),
    VoiceCase("100,000 nested brackets", _write("[" * 100_000 + "]" * 100_000), r"JSON|nest|deep"),
    VoiceCase("voice.json not UTF-8", _write(b'{"name": "\xff\xfe"}'), r"voice\.json"),
    VoiceCase("voice.json is a list", _write("[1, 2, 3]"), "object"),
    VoiceCase("voice.json is a directory", _manifest_dir, r"voice\.json"),
    VoiceCase("voice.json is a FIFO", _fifo_manifest, r"voice\.json", isolate=True),
    VoiceCase("graph is a symlink outside the directory", _symlink_outside, r"encoder|symlink|outside"),
    VoiceCase("sha256 mismatch", _tamper("decoder"), "SHA-256"),
    VoiceCase("graph file missing", _remove("flow.onnx"), r"flow.*missing"),
    VoiceCase("graph that is not ONNX (digest matches)", _garbage_graph_with_matching_digest, "flow"),
    VoiceCase("unknown format_version", _set("format_version", "9.0"), "format_version"),
    VoiceCase("format_version a number", _set("format_version", 1.1), "format_version|MAJOR"),
    VoiceCase("decoder_context_frames wrong", _set("decoder_context_frames", 2), "decoder_context_frames"),
    VoiceCase("absurd num_speakers", _set("num_speakers", 10**12), "num_speakers"),
    VoiceCase("negative num_speakers", _set("num_speakers", -1), "num_speakers"),
    VoiceCase("sample_rate a string", _set("sample_rate", "44100"), "sample_rate"),
    VoiceCase("sample_rate zero", _set("sample_rate", 0), "sample_rate"),
    VoiceCase("speakers a list", _set("speakers", ["alice"]), "speakers"),
    VoiceCase("graph file outside via ..", _set("graphs", "encoder", "file", "../encoder.onnx"),
              r"graphs\.encoder\.file"),
]


@pytest.mark.parametrize("case", VOICE_CASES, ids=[c.id for c in VOICE_CASES])
def test_broken_voice(fixture_voice, tmp_path, case: VoiceCase):
    voice = tmp_path / "voice"
    shutil.copytree(fixture_voice, voice)
    case.breaks(voice, tmp_path)
    out = tmp_path / "out.wav"
    outcome = run_cli(["synth", "-v", str(voice), "--ids", IDS, "-o", str(out)], isolate=case.isolate, timeout=30)
    assert_one_line_error(outcome, "synth", case.mention)
    assert not out.exists()


def test_voice_negative_control(fixture_voice, tmp_path):
    """An unbroken copy of the bundle synthesises: each case fails because of its one break."""
    voice = tmp_path / "voice"
    shutil.copytree(fixture_voice, voice)
    _set("name", "tiny")(voice, tmp_path)  # a rewrite of voice.json alone breaks nothing
    outcome = run_cli(["synth", "-v", str(voice), "--ids", IDS, "-o", str(tmp_path / "out.wav")])
    assert outcome.rc == 0, outcome.stderr


# ======================================================================================================
# checkpoints and configs
# ======================================================================================================


class _Exploit:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@dataclass(frozen=True)
class CheckpointCase:
    id: str
    make: Callable[[Path, Path], tuple[Path, Path]]  # (fixture dir, scratch dir) -> (checkpoint, config)
    mention: str
    isolate: bool = False
    forbid: str | None = None
    limit: int = MESSAGE_LIMIT  # of the line with the file paths taken out
    after: Callable[[Path], None] | None = None  # (scratch dir)


def _ckpt(builder: Callable[[Path, Path], Path]) -> Callable[[Path, Path], tuple[Path, Path]]:
    """A broken checkpoint with the fixture's config."""
    return lambda fixture, tmp: (builder(fixture, tmp), fixture / "config.json")


def _cfg(builder: Callable[[Path, Path], Path]) -> Callable[[Path, Path], tuple[Path, Path]]:
    """The fixture's checkpoint with a broken config."""
    return lambda fixture, tmp: (fixture / "G_0.pth", builder(fixture, tmp))


def _bytes_file(name: str, data: Callable[[Path], bytes]) -> Callable[[Path, Path], Path]:
    def build(fixture: Path, tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(data(fixture))
        return path

    return build


def _hostile(fixture: Path, tmp: Path) -> Path:
    import torch

    path = tmp / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _Exploit(str(tmp / "pwned"))}, path)
    return path


def _not_torch_zip(fixture: Path, tmp: Path) -> Path:
    path = tmp / "G_zip.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "not a torch archive")
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    return path


def _non_tensor_state(fixture: Path, tmp: Path) -> Path:
    import torch

    path = tmp / "G_dict.pth"
    torch.save({"model": {"enc_p.emb.weight": "not a tensor"}}, path)
    return path


def _edited_config(name: str, edit: Callable[[dict], None]) -> Callable[[Path, Path], Path]:
    def build(fixture: Path, tmp: Path) -> Path:
        data = json.loads((fixture / "config.json").read_text())
        edit(data)
        path = tmp / name
        path.write_text(json.dumps(data))
        return path

    return build


def _huge_hidden_channels(fixture: Path, tmp: Path) -> Path:
    """The fixture's config with `"hidden_channels": 1e6` as written in the file (a model that size would need
    terabytes: it must be refused before anything is allocated)."""
    text = (fixture / "config.json").read_text()
    text, count = re.subn(r'"hidden_channels":\s*\d+', '"hidden_channels": 1e6', text)
    assert count == 1
    path = tmp / "cfg_huge.json"
    path.write_text(text)
    return path


def _fifo_config(fixture: Path, tmp: Path) -> Path:
    path = tmp / "config.json"
    os.mkfifo(path)
    return path


def _directory(fixture: Path, tmp: Path) -> Path:
    path = tmp / "G_dir.pth"
    path.mkdir()
    return path


def _text_file(name: str, text: str) -> Callable[[Path, Path], Path]:
    return _bytes_file(name, lambda fixture: text.encode())


def _no_marker(tmp: Path) -> None:
    assert not (tmp / "pwned").exists(), "the pickle's os.system call ran"


def _few_keys(line: str) -> None:
    keys = re.findall(r"\b[a-z_]+\.\d*\.?[a-z_0-9]+\.[a-z_0-9.]+", line)
    assert len(keys) <= 2, f"lists {len(keys)} state-dict keys: {line!r}"


CHECKPOINT_CASES = [
    CheckpointCase("pickle calling os.system", _ckpt(_hostile), r"refus|unsafe|not allowed|system",
                   forbid="weights_only", after=_no_marker),
    CheckpointCase("truncated checkpoint", _ckpt(_bytes_file("G_trunc.pth", lambda f: (f / "G_0.pth").read_bytes()[
        :100_000])), r"truncated|corrupt", limit=160),
    CheckpointCase("empty checkpoint", _ckpt(_bytes_file("G_empty.pth", lambda f: b"")), r"empty|G_empty"),
    CheckpointCase("checkpoint is a directory", _ckpt(_directory), r"G_dir"),
    CheckpointCase("garbage checkpoint", _ckpt(_bytes_file("G_garbage.pth", lambda f: bytes(range(256)) * 64)),
                   r"G_garbage|checkpoint"),
    CheckpointCase("zip that is not a torch file", _ckpt(_not_torch_zip), r"G_zip|checkpoint|torch"),
    CheckpointCase("checkpoint that is JSON text", _ckpt(_text_file("G_text.pth", '{"model": {}}')),
                   r"G_text|checkpoint"),
    CheckpointCase("state dict holding a string", _ckpt(_non_tensor_state), r"tensor"),
    CheckpointCase("missing checkpoint", lambda f, tmp: (tmp / "G_404.pth", f / "config.json"), "G_404"),
    CheckpointCase("config that does not match", _cfg(_edited_config("cfg_small.json", lambda d: d["model"].update(
        hidden_channels=64, filter_channels=128))), r"match|shape|hidden_channels"),
    CheckpointCase("config with other speakers", _cfg(_edited_config("cfg_spk.json", lambda d: d["data"].update(
        n_speakers=7))), r"match|shape|speaker"),
    CheckpointCase("hidden_channels 1e6", _cfg(_huge_hidden_channels), "hidden_channels", isolate=True),
    CheckpointCase("negative n_heads", _cfg(_edited_config("cfg_heads.json", lambda d: d["model"].update(n_heads=-2))),
                   "n_heads"),
    CheckpointCase("missing config", lambda f, tmp: (f / "G_0.pth", tmp / "nocfg.json"), "nocfg"),
    CheckpointCase("config is a FIFO", _cfg(_fifo_config), r"config\.json", isolate=True),
    CheckpointCase("config invalid JSON", _cfg(_text_file("cfg_bad.json", '{"model": ')), r"JSON|cfg_bad"),
    CheckpointCase("config is a list", _cfg(_text_file("cfg_list.json", "[1, 2]")), r"object|cfg_list"),
    CheckpointCase("config is a directory", lambda f, tmp: (f / "G_0.pth", _directory(f, tmp)), r"G_dir"),
]


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=[c.id for c in CHECKPOINT_CASES])
def test_bad_checkpoint_or_config(fixture_dir, tmp_path, case: CheckpointCase):
    checkpoint, config = case.make(fixture_dir, tmp_path)
    outcome = run_cli(["info", str(checkpoint), "-c", str(config)], isolate=case.isolate, timeout=60)
    line = assert_one_line_error(outcome, "info", case.mention, forbid=case.forbid)
    without_paths = line.replace(str(checkpoint), "CKPT").replace(str(config), "CFG")
    assert len(without_paths) <= case.limit, f"{len(without_paths)} characters without the paths: {line!r}"
    _few_keys(line)
    if case.after is not None:
        case.after(tmp_path)


def test_checkpoint_negative_control(fixture_dir):
    outcome = run_cli(["info", str(fixture_dir / "G_0.pth"), "-c", str(fixture_dir / "config.json")])
    assert outcome.rc == 0, outcome.stderr
    assert "Bert-VITS2 2.3" in outcome.stdout


def test_table_size():
    counts = {"grpc": len(GRPC_CASES), "cli": len(CLI_CASES), "voice": len(VOICE_CASES),
              "checkpoint": len(CHECKPOINT_CASES)}
    assert sum(counts.values()) >= 60, counts
    for cases in (GRPC_CASES, CLI_CASES, VOICE_CASES, CHECKPOINT_CASES):
        assert len({c.id for c in cases}) == len(cases)

