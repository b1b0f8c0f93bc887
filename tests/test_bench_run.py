"""`vitsrt bench` end to end on the fixture voice: the JSON validates against the schema, every metric is
there, the plot is written; the gRPC target against a real server. Numbers are not asserted (the machine
is shared and slow): only that they were measured."""

from __future__ import annotations

import json

import pytest

from vitsrt.benchmarks.cli import main
from vitsrt.benchmarks.report import read_report
from vitsrt.benchmarks.schema import SCHEMA_VERSION, BenchReport, json_schema
from vitsrt.errors import VitsrtError


@pytest.fixture(scope="module")
def stream_report(fixture_voice, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    args = ["-q", "--target", "engine", "--voice", str(fixture_voice), "--concurrency", "1,2", "--requests", "3",
            "--warmup", "1", "--lengths", "short", "--threads", "1", "--no-progress", "--json", str(out / "r.json")]
    try:
        import matplotlib  # noqa: F401

        args += ["--plot", str(out / "r.png")]
    except ImportError:
        pass
    assert main(args) == 0
    return out


def test_report_validates_against_the_schema_and_has_every_metric(stream_report):
    raw = json.loads((stream_report / "r.json").read_text())
    assert raw["schema_version"] == SCHEMA_VERSION
    report = BenchReport.model_validate(raw)
    assert report.target.kind == "engine" and report.target.stream
    assert report.workload.stand_in_ids  # the fixture voice takes ids only
    assert report.environment.cpu and report.environment.cpu_cores >= 1
    assert {"vitsrt", "onnxruntime"} <= set(report.environment.versions)
    assert [lv.concurrency for lv in report.levels] == [1, 2]
    for level in report.levels:
        assert (level.requests, level.ok, level.errors) == (3, 3, 0)
        for dist in (level.ttfa_ms, level.latency_ms, level.rtf):
            assert dist.count == 3
            assert all(getattr(dist, p) is not None and getattr(dist, p) > 0 for p in ("avg", "p50", "p90", "p95",
                                                                                         "p99"))
        assert level.ttfa_ms.p50 <= level.latency_ms.p50
        assert level.rtfx > 0 and level.requests_per_s > 0 and level.audio_s > 0
        assert level.chunks_per_request >= 1
        assert level.underruns >= 0 and level.stall_s >= 0
        assert level.stages is not None and set(level.stages.worker_busy_s) == {"prefill", "flow", "decode"}
        assert sum(level.batch_sizes["prefill"].values()) >= 1  # the batch-size histogram was recorded


def test_plot_is_a_png(stream_report):
    path = stream_report / "r.png"
    if not path.exists():
        pytest.skip("matplotlib is not installed (the bench extra)")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_schema_rejects_a_broken_report(stream_report, tmp_path):
    raw = json.loads((stream_report / "r.json").read_text())
    for mutate, expected in (
        (lambda r: r["levels"][0].pop("ttfa_ms"), "ttfa_ms"),
        (lambda r: r.update(schema_version="vitsrt.bench/2.0"), "schema_version"),
        (lambda r: r["levels"][0].update(errors=-1), "errors"),
        (lambda r: r.update(levels=[]), "levels"),
    ):
        broken = json.loads(json.dumps(raw))
        mutate(broken)
        path = tmp_path / "broken.json"
        path.write_text(json.dumps(broken))
        with pytest.raises(VitsrtError, match=expected):
            read_report(path)
    # Control: the unmodified report reads back.
    path.write_text(json.dumps(raw))
    assert read_report(path).levels[0].ok == 3


def test_one_shot_run_reports_per_request_stage_times(fixture_voice, tmp_path):
    path = tmp_path / "oneshot.json"
    assert main(["-q", "--voice", str(fixture_voice), "--no-stream", "--requests", "2", "--warmup", "0",
                 "--lengths", "short", "--threads", "1", "--no-progress", "--json", str(path)]) == 0
    level = read_report(path).levels[0]
    assert level.chunks_per_request == 1 and level.ttfa_ms.p50 == level.latency_ms.p50
    assert level.inter_chunk_gap_ms.count == 0 and level.underruns == 0
    assert {"encoder", "duration", "regulator", "flow", "decode"} <= set(level.stages.per_request_ms)


def test_print_schema_is_json_schema(capsys):
    assert main(["--print-schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == json.loads(json.dumps(json_schema()))
    assert SCHEMA_VERSION in schema["title"] and "levels" in schema["required"]


def test_compare_prints_ratios(stream_report, capsys):
    path = str(stream_report / "r.json")
    assert main(["--compare", path, path, "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| c=1 | TTFA p50 ms |" in out and "1.00x" in out


def test_grpc_target_against_a_real_server(fixture_voice, tmp_path):
    from grpc_support import RunningServer, open_engine
    from vitsrt.serve.grpc.server import ServerConfig

    engine = open_engine(fixture_voice)
    try:
        with RunningServer(engine, ServerConfig(port=0)) as server:
            path = tmp_path / "grpc.json"
            # --voice DIR: the bundle gives the server-side voice name and its id tables.
            assert main(["-q", "--target", "grpc", "--server", server.target, "--voice", str(fixture_voice),
                         "--concurrency", "2", "--requests", "2", "--warmup", "0", "--lengths", "short",
                         "--no-progress", "--json", str(path)]) == 0
            report = read_report(path)
            assert report.target.kind == "grpc" and report.target.voice == "tiny"
            level = report.levels[0]
            assert level.ok == 2 and level.errors == 0 and level.audio_s > 0
            assert {"grpcio", "protobuf"} <= set(report.environment.versions)
    finally:
        engine.close()


def test_engine_streaming_benchmark_runs_on_the_fixture(fixture_voice, tmp_path):
    from vitsrt.benchmarks import engine_streaming

    path = tmp_path / "es.json"
    assert engine_streaming.main(["--voice", str(fixture_voice), "--repeats", "1", "--concurrency", "1,2",
                                  "--rounds", "1", "--warmup", "0", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    (voice,) = result["voices"]
    assert [row["tokens"] for row in voice["ttfa"]] == [225, 677]  # the ~20- and ~60-word sentences
    for row in voice["ttfa"]:
        assert 0 < row["stream_ttfa_s"] <= row["stream_total_s"] and row["one_shot_latency_s"] > 0
    runs = {(e["max_batch"], e["level"]["concurrency"]) for e in voice["throughput"]}
    assert runs == {(16, 1), (16, 2), (1, 1), (1, 2)}  # batching on and off at every level
    assert all(e["level"]["rtfx"] > 0 for e in voice["throughput"])


def test_headline_interleaves_three_targets_on_the_fixture(fixture_dir, fixture_voice, tmp_path, capsys):
    from vitsrt.benchmarks import headline

    assert headline.main(["--voice", str(fixture_voice), "--checkpoint", str(fixture_dir / "G_0.pth"),
                          "--config", str(fixture_dir / "config.json"), "--lengths", "short", "--concurrency", "2",
                          "--rounds", "2", "--torch-threads", "1", "--engine-threads", "1",
                          "--out-dir", str(tmp_path), "--prefix", "h"]) == 0
    reports = {name: read_report(tmp_path / f"h-{name}.json") for name in ("torch", "engine-oneshot", "engine-stream")}
    for report in reports.values():
        (level,) = report.levels
        assert level.requests == 4 and level.ok == 4  # 2 rounds x 2 clients
    assert not reports["torch"].target.stream and reports["engine-stream"].target.stream
    table = (tmp_path / "h.md").read_text()
    assert "engine stream (1 thr) vs torch eager (1 thr)" in table
