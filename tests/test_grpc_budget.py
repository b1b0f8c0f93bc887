"""Hostile requests against a real `vitsrt serve` process (shipped default voice, 127.0.0.1): absurd scales are
refused at the wire within milliseconds, requests over the audio budget fail with RESOURCE_EXHAUSTED before
their flow runs, the server's resident memory stays within a stated bound, and it keeps serving."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from grpc_support import ServerProcess
from vitsrt.serve.grpc.client import TtsClient, build_request

pytest.importorskip("phonemizer", reason="the default voice speaks text through the ipa extra")

# The bounds this test states for the server's resident memory, over its size after serving a normal concurrent
# load. onnxruntime's arenas grow once to the largest step shape they meet and are reused; the budgets bound
# those shapes, so the attack may grow the server once (measured: ~150 MB, from the slowest allowed text's flow
# and decode batches), and running the same attack again must add next to nothing.
RSS_BOUND_MB = 300
RSS_REPEAT_BOUND_MB = 30
NORMAL = "The quick brown fox jumps over the lazy dog."
LONG = " ".join(["It was a bright cold day in April, and the clocks were striking thirteen."] * 6)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server():
    process = ServerProcess(None, "--max-audio-seconds", "60", "--max-sentence-seconds", "30")
    yield process
    process.close()


def hostile_requests() -> list[tuple[str, object, grpc.StatusCode]]:
    rng = np.random.default_rng(0)
    longest = rng.integers(1, 100, 768).tolist()  # the default --max-phonemes
    invalid, exhausted = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED
    return [
        ("length_scale 1e6", build_request(phone_ids=[1, 2, 3, 4, 5], length_scale=1e6), invalid),
        ("length_scale 1e4", build_request(phone_ids=[1, 2, 3, 4, 5], length_scale=1e4), invalid),
        ("length_scale 3.4e38", build_request(phone_ids=[1, 2, 3, 4, 5], length_scale=3.4e38), invalid),
        ("longest ids, slowest", build_request(phone_ids=longest, length_scale=10.0), exhausted),
        ("5000 characters, slowest", build_request(text=("All work and no play. " * 230)[:5000],
                                                   length_scale=10.0), exhausted),
        ("too many ids", build_request(phone_ids=longest * 8), invalid),
    ]


def test_hostile_requests_fail_fast_and_memory_stays_bounded(server):
    with TtsClient(server.target, timeout=120) as client:
        with ThreadPoolExecutor(8) as pool:  # warm up: a normal concurrent load sets the working size
            for _ in range(2):
                warm = list(pool.map(lambda seed: client.call_unary(build_request(text=LONG, seed=seed)), range(8)))
                assert min(reply.duration_seconds for reply in warm) > 10
        before = rss_mb(server.process.pid)

        def attack(case: tuple[str, object, grpc.StatusCode]) -> tuple[str, grpc.StatusCode, float, str]:
            name, request, _ = case
            started = time.perf_counter()
            try:
                client.call_unary(request)
            except grpc.RpcError as exc:
                return name, exc.code(), time.perf_counter() - started, exc.details()
            return name, grpc.StatusCode.OK, time.perf_counter() - started, ""

        cases = hostile_requests() * 4
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(attack, cases))
            first_round = rss_mb(server.process.pid)
            results += list(pool.map(attack, cases))
        normal = client.call_unary(build_request(text=NORMAL, seed=1))
        after = rss_mb(server.process.pid)
    for (name, _, expected), (_, code, seconds, details) in zip(cases * 2, results, strict=True):
        assert code is expected, (name, code, details)
        if expected is grpc.StatusCode.INVALID_ARGUMENT:
            assert seconds < 1.0, (name, seconds)  # refused at the wire (the pool runs 8 at once)
        else:
            assert "audio" in details, (name, details)
    assert normal.duration_seconds > 1
    assert server.process.poll() is None
    assert after - before <= RSS_BOUND_MB, f"RSS grew {after - before:.0f} MB ({before:.0f} -> {after:.0f})"
    assert after - first_round <= RSS_REPEAT_BOUND_MB, f"the repeated attack grew RSS {after - first_round:.0f} MB"
