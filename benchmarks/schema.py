"""The benchmark result format (`vitsrt bench --json`), versioned.

`BenchReport` *is* the schema: `vitsrt bench --print-schema` writes it as JSON Schema, and reading a report
back validates it (`read_report`). Compatibility rule: `schema_version` is "vitsrt.bench/MAJOR.MINOR";
a minor bump only adds optional fields, so readers accept any minor of their major.

Units are in the field names: `_ms` milliseconds, `_s`/`_seconds` seconds. Percentiles are over the
measured (non-warm-up, successful) requests of one load level; a statistic with no data is null.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = "vitsrt.bench/1.0"
SCHEMA_MAJOR = SCHEMA_VERSION.split("/")[1].split(".")[0]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Stats(_Record):
    """Distribution of one per-request quantity at one load level."""

    count: int = Field(ge=0)
    avg: float | None = None
    min: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None


class StageBreakdown(_Record):
    """Where the time went (engine target only).

    `per_request_ms`: mean over requests of the time each request spent in each stage (one-shot requests
    report it; a batched call counts fully for every request in it). `worker_busy_s`: seconds the engine's
    worker spent in each scheduler step (prefill = encoder + duration, flow = regulator + flow, decode)
    during the measured part of the level; `worker_busy_fraction` = their sum / wall time.
    """

    per_request_ms: dict[str, float] = Field(default_factory=dict)
    worker_busy_s: dict[str, float] = Field(default_factory=dict)
    worker_busy_fraction: float | None = None


class LevelResult(_Record):
    """All metrics for one load level: a closed loop of N clients, or an open loop at R requests/s."""

    mode: Literal["closed", "open"]
    concurrency: int | None = Field(default=None, ge=1, description="closed loop: clients in flight")
    rate: float | None = Field(default=None, gt=0, description="open loop: offered requests per second")
    requests: int = Field(ge=0, description="measured requests (warm-up excluded), errors included")
    ok: int = Field(ge=0)
    errors: int = Field(ge=0)
    error_samples: list[str] = Field(default_factory=list, description="up to 5 distinct error messages")
    wall_s: float = Field(ge=0, description="first measured request sent -> last one finished")
    audio_s: float = Field(ge=0, description="audio produced by successful requests")
    ttfa_ms: Stats = Field(description="time to first audio (one-shot: = total latency)")
    latency_ms: Stats = Field(description="request sent -> last audio received")
    rtf: Stats = Field(description="per request: latency / audio duration (< 1: faster than real time)")
    inter_chunk_gap_ms: Stats = Field(description="gaps between consecutive chunks of a stream")
    chunks_per_request: float | None = None
    underruns: int = Field(ge=0, description="chunks that arrived after the audio before them finished playing")
    underrun_requests: int = Field(ge=0, description="requests with at least one underrun")
    stall_s: float = Field(ge=0, description="total playback stall time over all requests")
    rtfx: float | None = Field(default=None, description="aggregate throughput: audio seconds per wall second")
    requests_per_s: float | None = None
    stages: StageBreakdown | None = None
    batch_sizes: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="engine target: stage -> {batch size: steps} during the level"
    )

    @property
    def label(self) -> str:
        return f"c={self.concurrency}" if self.mode == "closed" else f"rate={self.rate:g}/s"


class TargetInfo(_Record):
    kind: str = Field(description="engine | grpc | triton | torch | ...")
    label: str = Field(description="a short name for tables and comparisons")
    backend: str | None = None
    voice: str | None = None
    server: str | None = None
    stream: bool
    threads: int | None = None
    options: dict[str, object] = Field(default_factory=dict, description="target settings, e.g. engine options")
    notes: list[str] = Field(default_factory=list)


class Environment(_Record):
    cpu: str
    cpu_cores: int
    gpu: list[str] = Field(default_factory=list)
    platform: str
    python: str
    versions: dict[str, str] = Field(default_factory=dict)
    load_avg_start: list[float] = Field(default_factory=list, description="1/5/15-minute load averages")
    load_avg_end: list[float] = Field(default_factory=list)
    hostname: str | None = None
    git: str | None = Field(default=None, description="commit of the vitsrt checkout ('+dirty': uncommitted changes)")


class WorkloadInfo(_Record):
    source: str = Field(description="'builtin:<mix>' or the --texts file")
    texts: int = Field(ge=1)
    words_min: int
    words_max: int
    words_mean: float
    stand_in_ids: bool = Field(description="True: the voice takes ids only; ids were derived from the text")
    tokens_mean: float | None = None
    speaker: str = ""
    seed: int
    warmup: int = Field(ge=0, description="warm-up requests per level, excluded from the metrics")
    requests: int | None = Field(default=None, description="--requests per level (None: --duration)")
    duration_s: float | None = None


class BenchReport(_Record):
    schema_version: str = SCHEMA_VERSION
    created: str = Field(description="ISO 8601 UTC time the run started")
    command: str
    target: TargetInfo
    environment: Environment
    workload: WorkloadInfo
    levels: list[LevelResult] = Field(min_length=1)

    @field_validator("schema_version")
    @classmethod
    def _known_major(cls, value: str) -> str:
        prefix, _, number = value.partition("/")
        if prefix != "vitsrt.bench" or number.split(".")[0] != SCHEMA_MAJOR:
            raise ValueError(f"unsupported schema_version {value!r}; this reader understands {SCHEMA_VERSION}")
        return value


def json_schema() -> dict:
    """The JSON Schema of `BenchReport` (what `--print-schema` writes)."""
    schema = BenchReport.model_json_schema()
    schema["title"] = f"vitsrt bench report ({SCHEMA_VERSION})"
    return schema
