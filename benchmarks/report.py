"""Turning measured levels into a report: the JSON file, the terminal table, the plot, comparisons.

The table uses `rich` when it is installed (the `bench` extra) and plain aligned text otherwise; the
plot needs matplotlib (also in the extra) and says so if it is missing.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from vitsrt import __version__
from vitsrt.benchmarks.schema import BenchReport, Environment, LevelResult
from vitsrt.errors import VitsrtError

log = logging.getLogger(__name__)


# ----- environment --------------------------------------------------------------------------------


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    """GPU names from nvidia-smi when there is one (no CUDA library is imported for this)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def git_revision() -> str | None:
    """The checkout's commit when vitsrt runs from a git work tree (an installed wheel has none)."""
    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit


def environment(versions: dict[str, str], load_start: list[float]) -> Environment:
    return Environment(
        cpu=cpu_name(),
        cpu_cores=os.cpu_count() or 0,
        gpu=gpu_names(),
        platform=platform.platform(),
        python=platform.python_version(),
        versions={"vitsrt": __version__, **versions},
        load_avg_start=load_start,
        load_avg_end=load_average(),
        hostname=socket.gethostname(),
        git=git_revision(),
    )


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


# ----- JSON -----------------------------------------------------------------------------------------


def write_report(report: BenchReport, path: str | Path) -> None:
    Path(path).write_text(report.model_dump_json(indent=2) + "\n")


def read_report(path: str | Path) -> BenchReport:
    """Load and validate a report written by `vitsrt bench --json` (any 1.x schema)."""
    try:
        raw = Path(path).read_text()
    except OSError as exc:
        raise VitsrtError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return BenchReport.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise VitsrtError(f"{path} is not a vitsrt bench report: {where}: {first['msg']}") from None


# ----- tables ---------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def level_rows(levels: Sequence[LevelResult]) -> tuple[list[str], list[list[str]]]:
    headers = ["load", "ok/err", "TTFA p50", "p90", "p95", "p99", "latency p50", "p95", "p99",
               "gap p99", "underruns", "RTF p50", "RTFX", "req/s"]
    rows = []
    for lv in levels:
        t, lat = lv.ttfa_ms, lv.latency_ms
        rows.append([
            lv.label, f"{lv.ok}/{lv.errors}", _fmt(t.p50), _fmt(t.p90), _fmt(t.p95), _fmt(t.p99),
            _fmt(lat.p50), _fmt(lat.p95), _fmt(lat.p99), _fmt(lv.inter_chunk_gap_ms.p99),
            f"{lv.underruns} ({lv.underrun_requests} req)", _fmt(lv.rtf.p50, 3), _fmt(lv.rtfx, 2),
            _fmt(lv.requests_per_s, 2),
        ])
    return headers, rows


def stage_rows(levels: Sequence[LevelResult]) -> tuple[list[str], list[list[str]]] | None:
    if not any(lv.stages or lv.batch_sizes for lv in levels):
        return None
    stage_names = sorted({k for lv in levels if lv.stages for k in lv.stages.per_request_ms})
    busy_names = sorted({k for lv in levels if lv.stages for k in lv.stages.worker_busy_s})
    headers = (["load"] + [f"{k} ms/req" for k in stage_names] + [f"busy {k} s" for k in busy_names]
               + ["busy %", "batch sizes (size x steps)"])
    rows = []
    for lv in levels:
        st = lv.stages
        per = st.per_request_ms if st else {}
        busy = st.worker_busy_s if st else {}
        fraction = st.worker_busy_fraction if st else None
        batches = "; ".join(
            f"{stage} " + " ".join(f"{size}x{n}" for size, n in hist.items()) for stage, hist in lv.batch_sizes.items()
        )
        rows.append([lv.label] + [_fmt(per.get(k), 1) for k in stage_names] + [_fmt(busy.get(k), 2) for k in busy_names]
                    + [_fmt(None if fraction is None else fraction * 100, 0), batches or "-"])
    return headers, rows


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    out = io.StringIO()
    if title:
        out.write(title + "\n")
    out.write("  ".join(str(h).rjust(w) for h, w in zip(headers, widths, strict=True)) + "\n")
    for row in rows:
        out.write("  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)) + "\n")
    return out.getvalue()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(plain_table(headers, rows, title))  # the CLI's output, not a log line
        return
    table = Table(title=title or None, title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*[str(c) for c in row])
    # Piped output (a file, CI log) gets a wide console instead of rich's 80-column default.
    Console(width=None if sys.stdout.isatty() else 220).print(table)


def summary_lines(report: BenchReport) -> list[str]:
    env, target, wl = report.environment, report.target, report.workload
    versions = " ".join(f"{k} {v}" for k, v in env.versions.items())
    gpu = f", GPU {', '.join(env.gpu)}" if env.gpu else ""
    lines = [
        f"target: {target.label} ({target.kind}{', backend ' + target.backend if target.backend else ''}, "
        f"{'streaming' if target.stream else 'one-shot'}, threads {target.threads or 'default'})",
        f"machine: {env.cpu} x{env.cpu_cores}{gpu}; load avg {env.load_avg_start} -> {env.load_avg_end}",
        f"workload: {wl.source}, {wl.texts} texts of {wl.words_min}-{wl.words_max} words"
        f"{' (stand-in ids)' if wl.stand_in_ids else ''}, warm-up {wl.warmup}/level, seed {wl.seed}",
        f"versions: {versions}",
    ]
    errors = [f"{lv.label}: {msg}" for lv in report.levels for msg in lv.error_samples]
    lines += [f"error: {e}" for e in errors]
    return lines


def print_report(report: BenchReport) -> None:
    headers, rows = level_rows(report.levels)
    print_table(headers, rows, title=f"vitsrt bench - {report.target.label} (times in ms)")
    stages = stage_rows(report.levels)
    if stages is not None:
        print_table(*stages, title="engine stages and batching")
    for line in summary_lines(report):
        print(line)


# ----- comparisons ----------------------------------------------------------------------------------

# (label, getter, higher_is_better)
COMPARE_METRICS = (
    ("TTFA p50 ms", lambda lv: lv.ttfa_ms.p50, False),
    ("TTFA p95 ms", lambda lv: lv.ttfa_ms.p95, False),
    ("latency p50 ms", lambda lv: lv.latency_ms.p50, False),
    ("latency p95 ms", lambda lv: lv.latency_ms.p95, False),
    ("RTF p50", lambda lv: lv.rtf.p50, False),
    ("RTFX (audio s / wall s)", lambda lv: lv.rtfx, True),
    ("requests/s", lambda lv: lv.requests_per_s, True),
)


def _gain(base: float | None, other: float | None, higher_is_better: bool) -> str:
    if base is None or other is None or base <= 0 or other <= 0:
        return "-"
    return f"{(other / base) if higher_is_better else (base / other):.2f}x"


def _shared_levels(reports: Sequence[BenchReport]) -> tuple[list[dict[str, LevelResult]], list[str]]:
    """Each report's levels by label, and the labels all reports have (in the baseline's order)."""
    if len(reports) < 2:
        raise VitsrtError("--compare needs at least two reports")
    by_label = [{lv.label: lv for lv in r.levels} for r in reports]
    shared = [lv.label for lv in reports[0].levels if all(lv.label in m for m in by_label[1:])]
    if not shared:
        raise VitsrtError("the reports share no load level (compare runs made with the same --concurrency/--rate)")
    return by_label, shared


def compare_rows(reports: Sequence[BenchReport]) -> tuple[list[str], list[list[str]]]:
    """Side by side, the first report is the baseline. Ratio columns read "how many times better than the
    baseline" whatever the metric's direction (>1: better, <1: worse)."""
    names = [r.target.label for r in reports]
    headers = ["load", "metric", *names, *[f"{n} vs {names[0]}" for n in names[1:]]]
    by_label, shared = _shared_levels(reports)
    rows = []
    for label in shared:
        levels = [m[label] for m in by_label]
        for metric, get, higher in COMPARE_METRICS:
            values = [get(lv) for lv in levels]
            digits = 3 if metric.startswith("RTF p") else 2 if "RTFX" in metric or "/s" in metric else 0
            rows.append([label, metric, *[_fmt(v, digits) for v in values],
                         *[_gain(values[0], v, higher) for v in values[1:]]])
    return headers, rows


def print_compare(reports: Sequence[BenchReport], markdown: bool = False) -> None:
    headers, rows = compare_rows(reports)
    if markdown:
        print(markdown_table(headers, rows))
        return
    print_table(headers, rows, title="comparison (ratios: times better than the first report; >1 is better)")
    for r in reports:
        env = r.environment
        print(f"{r.target.label}: {r.created}, {env.cpu} x{env.cpu_cores}, load avg {env.load_avg_start}")


# ----- plot -----------------------------------------------------------------------------------------


def _series(levels: Sequence[LevelResult], get) -> list[float]:
    return [float("nan") if (v := get(lv)) is None else float(v) for lv in levels]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise VitsrtError("--plot needs matplotlib: pip install 'vitsrt[bench]'") from None
    return plt


def plot_compare(reports: Sequence[BenchReport], path: str | Path) -> None:
    """One panel per compared metric (the rows of `compare_rows`): bars per shared load level, one colour
    per report, the first report being the baseline."""
    by_label, shared = _shared_levels(reports)
    plt = _pyplot()
    width = 0.8 / len(reports)
    fig, axes = plt.subplots(2, 4, figsize=(18, 8.5))
    for ax, (metric, get, higher) in zip(axes.flat, COMPARE_METRICS, strict=False):
        for i, (report, levels) in enumerate(zip(reports, by_label, strict=True)):
            values = _series([levels[label] for label in shared], get)
            ax.bar([x + i * width for x in range(len(shared))], values, width, label=report.target.label)
        ax.set_title(f"{metric} ({'higher' if higher else 'lower'} is better)")
        ax.set_xticks([x + width * (len(reports) - 1) / 2 for x in range(len(shared))], shared)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(COMPARE_METRICS):]:
        ax.axis("off")
    fig.suptitle(f"vitsrt bench: {' vs '.join(r.target.label for r in reports)}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_report(report: BenchReport, path: str | Path) -> None:
    """Six panels over the load levels: TTFA and latency percentiles, throughput, RTF, stream smoothness,
    and the engine's stage time (or per-request RTF spread for other targets)."""
    plt = _pyplot()
    levels = report.levels
    x = list(range(len(levels)))
    labels = [lv.label for lv in levels]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))

    def percentile_panel(ax, get_stats, title: str) -> None:
        for p, style in (("p50", "o-"), ("p90", "s--"), ("p95", "^--"), ("p99", "v:")):
            ax.plot(x, _series(levels, lambda lv, p=p: getattr(get_stats(lv), p)), style, label=p)
        ax.plot(x, _series(levels, lambda lv: get_stats(lv).avg), "k.", label="avg")
        ax.set_title(title)
        ax.set_ylabel("ms")
        ax.legend(fontsize=8)

    percentile_panel(axes[0, 0], lambda lv: lv.ttfa_ms, "time to first audio")
    percentile_panel(axes[0, 1], lambda lv: lv.latency_ms, "total latency")

    ax = axes[0, 2]
    ax.bar(x, _series(levels, lambda lv: lv.rtfx), color="tab:green", alpha=0.7, label="RTFX")
    ax.set_title("throughput")
    ax.set_ylabel("audio s per wall s (RTFX)")
    ax.set_ylim(0, max([v for v in _series(levels, lambda lv: lv.rtfx) if v == v] + [1e-9]) * 1.3)
    twin = ax.twinx()
    twin.plot(x, _series(levels, lambda lv: lv.requests_per_s), "o-", color="tab:purple", label="requests/s")
    twin.set_ylabel("requests/s")
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)

    ax = axes[1, 0]
    for p, style in (("p50", "o-"), ("p95", "^--"), ("p99", "v:")):
        ax.plot(x, _series(levels, lambda lv, p=p: getattr(lv.rtf, p)), style, label=f"RTF {p}")
    ax.axhline(1.0, color="red", linewidth=0.8, label="real time")
    ax.set_title("real-time factor per request (wall / audio)")
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    ax.bar(x, _series(levels, lambda lv: lv.inter_chunk_gap_ms.p99), color="tab:orange", alpha=0.7,
           label="inter-chunk gap p99 (ms)")
    ax.set_ylabel("ms")
    for i, lv in enumerate(levels):
        ax.annotate(f"{lv.underruns} underruns\n{lv.errors} errors", (i, 0), xytext=(0, 4),
                    textcoords="offset points", ha="center", fontsize=8)
    ax.set_title("stream smoothness")
    ax.legend(fontsize=8)

    ax = axes[1, 2]
    stage_names = sorted({k for lv in levels if lv.stages for k in lv.stages.worker_busy_s})
    if stage_names:
        bottom = [0.0] * len(levels)
        for name in stage_names:
            heights = [(lv.stages.worker_busy_s.get(name, 0.0) if lv.stages else 0.0) for lv in levels]
            ax.bar(x, heights, bottom=bottom, label=name)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.plot(x, [lv.wall_s for lv in levels], "k_", markersize=40, markeredgewidth=2.5, label="wall time")
        means = [_mean_batch(lv.batch_sizes.get("decode", {})) for lv in levels]
        for i, m in enumerate(means):
            if m is not None:
                ax.annotate(f"decode batch {m:.1f}", (i, bottom[i]), xytext=(0, 3), textcoords="offset points",
                            ha="center", fontsize=8)
        ax.set_title("engine worker time by stage (measured part)")
        ax.set_ylabel("s")
        ax.set_ylim(0, max([*bottom, *(lv.wall_s for lv in levels), 1e-9]) * 1.35)  # room for the legend
        ax.legend(fontsize=8, loc="upper left", ncol=4)
    else:
        ax.bar(x, [lv.audio_s for lv in levels], color="tab:gray", alpha=0.7)
        ax.set_title("audio produced per level")
        ax.set_ylabel("s of audio")

    for ax in axes.flat:
        ax.set_xticks(x, labels)
        ax.grid(alpha=0.3)
    env = report.environment
    fig.suptitle(
        f"vitsrt bench: {report.target.label} - {env.cpu} x{env.cpu_cores}"
        f"{' / ' + ', '.join(env.gpu) if env.gpu else ''} - {report.created}\n"
        f"{report.workload.source}, {'streaming' if report.target.stream else 'one-shot'}, "
        f"load avg at start {env.load_avg_start}",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _mean_batch(hist: dict[str, int]) -> float | None:
    steps = sum(hist.values())
    if not steps:
        return None
    return sum(int(size) * n for size, n in hist.items()) / steps

