"""Time to the first HTTP body byte of `POST /v1/audio/speech` vs the engine's own time to first audio.

The HTTP door (uvicorn on 127.0.0.1) and the engine it wraps run in this process; runs are interleaved (HTTP,
engine, HTTP, engine, ...) with the same request and seed, so both see the same machine load. The door's
overhead is request parsing, one event-loop hop, the encoder and one TCP write.

    python -m vitsrt.benchmarks.http_first_byte --runs 15 --threads 2 --markdown out.md
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from vitsrt.serve.engine.engine import Engine, EngineOptions
from vitsrt.serve.engine.types import SynthesisRequest
from vitsrt.voices import default_voice_dir

log = logging.getLogger(__name__)

TEXTS = {
    "one sentence (9 words)": "The quick brown fox jumps over the lazy dog today.",
    "three sentences (30 words)": (
        "It was a bright cold day in April, and the clocks were striking thirteen. The hallway smelt of boiled "
        "cabbage and old rag mats. At one end of it a coloured poster had been tacked to the wall."
    ),
}


@dataclass
class Row:
    text: str
    response_format: str
    http_ms: list[float] = field(default_factory=list)
    engine_ms: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(self.http_ms) / statistics.median(self.engine_ms)


class DoorThread:
    """An HttpDoor serving in its own thread's event loop, as `vitsrt serve` runs it."""

    def __init__(self, engine: Engine):
        from vitsrt.serve.http.app import HttpConfig
        from vitsrt.serve.http.door import HttpDoor

        self.loop = asyncio.new_event_loop()
        self.door = HttpDoor(engine, HttpConfig(port=0, page=False))
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        port = asyncio.run_coroutine_threadsafe(self.door.start(), self.loop).result(30)
        self.url = f"http://127.0.0.1:{port}/v1/audio/speech"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.door.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


def first_body_byte_ms(client, url: str, body: dict) -> float:
    started = time.perf_counter()
    with client.stream("POST", url, json=body) as reply:
        reply.raise_for_status()
        pieces = reply.iter_raw()
        next(pieces)
        elapsed = (time.perf_counter() - started) * 1000
        for _ in pieces:
            pass
    return elapsed


def engine_first_audio_ms(engine: Engine, text: str, seed: int) -> float:
    started = time.perf_counter()
    chunks = engine.stream(SynthesisRequest(text=text, speaker="slt", seed=seed))
    next(chunks)
    elapsed = (time.perf_counter() - started) * 1000
    for _ in chunks:
        pass
    return elapsed


def measure(engine: Engine, door: DoorThread, runs: int, formats: list[str]) -> list[Row]:
    import httpx

    rows = [Row(name, fmt) for name in TEXTS for fmt in formats]
    with httpx.Client(timeout=60) as client:
        for row in rows:  # warm-up: sessions, arenas, the codec
            first_body_byte_ms(client, door.url, _body(TEXTS[row.text], row.response_format))
        for run in range(runs):
            for row in rows:
                row.http_ms.append(first_body_byte_ms(client, door.url, _body(TEXTS[row.text], row.response_format)))
                row.engine_ms.append(engine_first_audio_ms(engine, TEXTS[row.text], seed=1))
            log.info("run %d/%d done", run + 1, runs)
    return rows


def _body(text: str, response_format: str) -> dict:
    return {"model": "tts-1", "voice": "slt", "input": text, "response_format": response_format, "seed": 1}


def markdown(rows: list[Row], command: str, threads: int) -> str:
    lines = [
        f"Command: `{command}` (engine: {threads} intra-op threads; HTTP and engine runs interleaved, same "
        "request and seed; median and p90 over the runs)",
        "",
        "| text | format | HTTP first body byte p50 / p90 | engine first audio p50 / p90 | ratio (p50) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row.text} | {row.response_format} | {_p(row.http_ms, 50):.1f} / {_p(row.http_ms, 90):.1f} ms"
                     f" | {_p(row.engine_ms, 50):.1f} / {_p(row.engine_ms, 90):.1f} ms | {row.ratio:.2f}x |")
    return "\n".join(lines) + "\n"


def _p(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitsrt.benchmarks.http_first_byte",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="interleaved runs per text and format (default 15)")
    parser.add_argument("--threads", type=int, default=2, help="engine intra-op threads (default 2)")
    parser.add_argument("--formats", default="pcm,mp3", help="response formats (default pcm,mp3)")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with Engine.open([default_voice_dir()], options=EngineOptions(threads=args.threads)) as engine:
        door = DoorThread(engine)
        try:
            rows = measure(engine, door, args.runs, args.formats.split(","))
        finally:
            door.close()
    command = "python -m vitsrt.benchmarks.http_first_byte " + " ".join(sys.argv[1:] if argv is None else argv)
    table = markdown(rows, command.strip(), args.threads)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
