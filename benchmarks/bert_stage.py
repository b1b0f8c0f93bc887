"""What BERT costs a Bert-VITS2 voice (issue 16, part 5): the same random voice with and without a BERT stage.

    python -m vitsrt.benchmarks.bert_stage --json out.json --markdown out.md
    python -m vitsrt.benchmarks.bert_stage --size tiny --repeats 1     # a quick run (tests use this)

Two arms, one generator: a random default-size Bert-VITS2 2.3 voice (the weights of
`vitsrt.benchmarks.voices`) exported twice with the ``bv2`` text front end, once with ``--bert zh=DIR`` for a
random BERT of chinese-roberta-wwm-ext-large's shape (24 layers, hidden 1024, 16 heads, intermediate 4096, a
21128-token vocabulary; the export keeps the 22 layers up to ``hidden_states[-3]``) and once without (the
encoder then gets zeros for BERT). Speed depends on shapes, not on learned values, so a seeded random BERT
costs what the real one costs. Its vocab.txt is written here: the special tokens, the characters of the test
sentences and punctuation, then placeholder tokens up to the real size. The BERT directory and both bundles
are built once and cached (`--cache-dir`, default: `vitsrt.benchmarks.voices.default_cache_dir()`).

Measured in one run, the arms interleaved (the order flips every repeat or pass), on Chinese sentences of
about 10, 30 and 80 characters (one sentence each, so each request is one segment):

latency     per sentence and arm, `--repeats` times: one-shot latency (`Engine.synthesize`) and streaming
            (`Engine.stream`: first audio, end), with the engine's per-request stage times (``bert``,
            ``frontend``, ``encoder`` ...). BERT's share of first audio = the stream's ``bert`` seconds over its
            time to first audio (the BERT stage runs inside the first sentence's prefill, so all of it comes
            before the first audio); also what BERT adds: the median over repeats of (BERT arm - no-BERT arm),
            the two runs back to back.
throughput  closed loops of `--clients` streaming clients (default 1 and 4) cycling through the three
            sentences, `--passes` passes of `--requests-per-client` requests per client, per arm. A request's
            ``bert`` time is its batch's BERT call (shared by the sentences batched with it).

The 1/5/15-minute load averages at the start and end of each part are recorded: on a shared machine they
say which numbers other work disturbed.

Engine: onnxruntime, one lane, `--threads` intra-op threads (default 2). The BERT graph runs in its own
onnxruntime session that the engine opens with onnxruntime's default intra-op threads (one per physical
core); the record says so. Needs torch and transformers (building and exporting the models).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vitsrt.benchmarks.load import LevelRun, LoadLevel, run_level
from vitsrt.benchmarks.metrics import EngineCounters, RequestTiming, stats, summarize
from vitsrt.benchmarks.report import cpu_name, git_revision, load_average, markdown_table, utc_now
from vitsrt.benchmarks.targets import EngineTarget, TargetOptions, package_versions
from vitsrt.benchmarks.workload import WorkItem, Workload
from vitsrt.errors import VitsrtError

log = logging.getLogger("vitsrt.benchmarks.bert_stage")

BENCHMARK = "bert_stage/1"
ARMS = ("bert", "no-bert")  # the voice with the BERT stage, the same voice without


@dataclass(frozen=True)
class BertShape:
    """The sizes of a BERT encoder (transformers' BertConfig fields)."""

    name: str
    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int = 512


# hfl/chinese-roberta-wwm-ext-large, Bert-VITS2's Chinese BERT (model_type "bert").
LARGE_BERT = BertShape("large", layers=24, hidden=1024, heads=16, intermediate=4096, vocab=21128)
# For quick runs: the hidden size must stay 1024, the width of the voice's BERT inputs.
TINY_BERT = BertShape("tiny", layers=3, hidden=1024, heads=4, intermediate=64, vocab=256, max_positions=128)

# Our own test sentences, about 10, 30 and 80 characters, each one sentence (commas only inside).
TEXTS: tuple[tuple[str, str], ...] = (
    ("~10 chars", "今天天气很好，我们去散步。"),
    ("~30 chars", "春天来了，河边的柳树长出了嫩绿的新芽，孩子们在草地上开心地放风筝。"),
    ("~80 chars", "这座城市的老街保留着许多传统的木结构房屋，每到傍晚，街边的小店就会亮起温暖的灯光，老人们坐在门口"
                  "聊天喝茶，年轻人骑着自行车穿过狭窄的巷子，空气里飘着刚出炉的烧饼的香味。"),
)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PUNCTUATION = ",.!?;:'\"-()，。！？、；：“”‘’（）…—"

# A small voice for quick runs (a 22.05 kHz generator with a residual-coupling flow, the bv2 symbol table).
TINY_VOICE_CONFIG: dict[str, Any] = {
    "version": "2.3",
    "train": {"segment_size": 8192},
    "data": {"sampling_rate": 22050, "filter_length": 1024, "hop_length": 256, "win_length": 1024,
             "n_speakers": 2, "spk2id": {"s0": 0, "s1": 1}},
    "model": {"inter_channels": 24, "hidden_channels": 32, "filter_channels": 64, "n_heads": 2, "n_layers": 3,
              "gin_channels": 16, "upsample_initial_channel": 64, "upsample_rates": [8, 8, 2, 2],
              "upsample_kernel_sizes": [16, 16, 4, 4], "resblock": "2", "resblock_kernel_sizes": [3, 5, 7],
              "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]], "use_transformer_flow": False},
}


# ----- building the models ----------------------------------------------------------------------------


def vocabulary(size: int, texts: Sequence[str]) -> list[str]:
    """vocab.txt's tokens: the specials, every character of `texts` and common punctuation, then placeholders."""
    chars = sorted({c for text in texts for c in text if not c.isspace()} | set(PUNCTUATION))
    tokens = [*SPECIAL_TOKENS, *chars]
    if len(tokens) > size:
        raise VitsrtError(f"a {size}-token vocabulary cannot hold the {len(tokens)} tokens the texts need")
    return tokens + [f"placeholder{i}" for i in range(size - len(tokens))]


def _bert_config(shape: BertShape) -> dict[str, Any]:
    return {"vocab_size": shape.vocab, "hidden_size": shape.hidden, "num_hidden_layers": shape.layers,
            "num_attention_heads": shape.heads, "intermediate_size": shape.intermediate,
            "max_position_embeddings": shape.max_positions, "type_vocab_size": 2, "pad_token_id": 0}


def build_random_bert(directory: Path, shape: BertShape, seed: int = 0, texts: Sequence[str] = ()) -> Path:
    """A seeded, randomly initialised BERT of `shape` saved as a local Hugging Face directory (config.json,
    model.safetensors, vocab.txt, tokenizer_config.json); an existing complete directory is reused."""
    if (directory / "model.safetensors").is_file() and (directory / "config.json").is_file():
        return directory
    import torch
    from transformers import BertConfig, BertModel

    log.info("building a random %s BERT (%d layers, hidden %d, seed %d) in %s", shape.name, shape.layers,
             shape.hidden, seed, directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        torch.manual_seed(seed)
        model = BertModel(BertConfig(**_bert_config(shape)), add_pooling_layer=False).eval()
        model.save_pretrained(staging)
        del model
        (staging / "vocab.txt").write_text("\n".join(vocabulary(shape.vocab, texts)) + "\n", encoding="utf-8")
        tokenizer = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": shape.max_positions}
        (staging / "tokenizer_config.json").write_text(json.dumps(tokenizer, indent=2) + "\n")
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def _bert_dir_name(shape: BertShape, seed: int, texts: Sequence[str]) -> str:
    """Names the BERT directory after everything that defines it, so changed sizes or texts build a new one."""
    digest = hashlib.sha256(json.dumps([asdict(shape), seed, list(texts)], ensure_ascii=False).encode()).hexdigest()
    return f"hf-bert-{shape.name}-seed{seed}-{digest[:10]}"


def _checkpoint(cache_dir: Path, size: str, seed: int) -> tuple[Path, Path]:
    """The random generator's checkpoint: the default-size one `vitsrt.benchmarks.voices` keeps, or a tiny one."""
    from vitsrt.benchmarks.voices import build_random_checkpoint, default_size_config

    folder = f"default23-seed{seed}" if size == "large" else f"bert-stage-tiny-seed{seed}"
    root = cache_dir / folder / "checkpoint"
    checkpoint, config = root / "G_0.pth", root / "config.json"
    if not (checkpoint.is_file() and config.is_file()):
        raw = default_size_config() if size == "large" else TINY_VOICE_CONFIG
        build_random_checkpoint(root, raw, seed=seed)
    return checkpoint, config


def build_voices(cache_dir: Path, size: str = "large", seed: int = 0) -> tuple[dict[str, Path], Path]:
    """({"bert": bundle, "no-bert": bundle}, the BERT's source directory), built on first use then reused."""
    from vitsrt.export.bundle import export_voice
    from vitsrt.voice import MANIFEST_NAME

    shape = LARGE_BERT if size == "large" else TINY_BERT
    texts = [text for _, text in TEXTS]
    bert_dir = build_random_bert(cache_dir / "bert-stage" / _bert_dir_name(shape, seed, texts), shape, seed, texts)
    checkpoint, config = _checkpoint(cache_dir, size, seed)
    stamp = f"{size}-seed{seed}"
    bundles = {"bert": cache_dir / "bert-stage" / f"voice-{stamp}-{bert_dir.name}",
               "no-bert": cache_dir / "bert-stage" / f"voice-{stamp}-no-bert"}
    for arm, bundle in bundles.items():
        if (bundle / MANIFEST_NAME).is_file():
            continue
        log.info("exporting the %s arm to %s (a few minutes for the large BERT)", arm, bundle)
        export_voice(checkpoint, config, bundle, name=f"bv2-{arm}", verify=False, force=True,
                     bert={"zh": bert_dir} if arm == "bert" else {})
    return bundles, bert_dir


# ----- latency ----------------------------------------------------------------------------------------


def _request(text: str, seed: int) -> Any:
    from vitsrt.serve.engine.types import SynthesisRequest

    return SynthesisRequest(text=text, seed=seed)


def one_shot(engine: Any, text: str, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    result = engine.synthesize(_request(text, seed))
    return {"latency_s": time.perf_counter() - started, "audio_s": result.duration_seconds,
            "stages_s": dict(result.timings)}


def streamed(engine: Any, text: str, seed: int) -> dict[str, Any]:
    started, first, audio, stages = time.perf_counter(), None, 0.0, {}
    for chunk in engine.stream(_request(text, seed)):
        if first is None and len(chunk.audio):
            first = time.perf_counter() - started
        audio += len(chunk.audio) / chunk.sample_rate
        if chunk.timings:
            stages = dict(chunk.timings)
    total = time.perf_counter() - started
    return {"first_audio_s": total if first is None else first, "total_s": total, "audio_s": audio,
            "stages_s": stages}


def _stage_medians(runs: Sequence[dict[str, Any]]) -> dict[str, float]:
    names = sorted({name for run in runs for name in run["stages_s"]})
    return {name: 1000 * statistics.median(run["stages_s"].get(name, 0.0) for run in runs) for name in names}


def _arm_summary(one: list[dict[str, Any]], stream: list[dict[str, Any]]) -> dict[str, Any]:
    bert = [run["stages_s"].get("bert", 0.0) for run in stream]
    return {
        "audio_s": one[-1]["audio_s"],
        "one_shot_ms": stats([r["latency_s"] for r in one], 1000.0).model_dump(),
        "first_audio_ms": stats([r["first_audio_s"] for r in stream], 1000.0).model_dump(),
        "stream_total_ms": stats([r["total_s"] for r in stream], 1000.0).model_dump(),
        "bert_ms": stats(bert, 1000.0).model_dump(),
        "bert_share_of_first_audio": statistics.median(b / r["first_audio_s"] for b, r in zip(bert, stream,
                                                                                               strict=True)),
        "one_shot_stages_ms": _stage_medians(one),
        "stream_stages_ms": _stage_medians(stream),
        "samples": {"one_shot": one, "stream": stream},
    }


def _text_info(engine: Any, label: str, text: str) -> dict[str, Any]:
    from vitsrt.text import split_sentences

    sequence = engine.pipeline().frontend.from_text(text)
    tokens = list(sequence.bert.tokens) if sequence.bert is not None else []
    return {"label": label, "text": text, "chars": len(text), "sentences": len(split_sentences(text)),
            "ids": len(sequence.phone_ids), "bert_tokens": len(tokens), "unknown_tokens": tokens.count("[UNK]")}


def _paired_ms(pairs: Sequence[dict[str, list]], mode: str, key: str) -> float:
    first, second = pairs
    return 1000 * statistics.median(a[key] - b[key] for a, b in zip(first[mode], second[mode], strict=True))


def measure_latency(engines: dict[str, Any], texts: Sequence[tuple[str, str]], repeats: int,
                    seed: int) -> list[dict[str, Any]]:
    """Per text: both arms' one-shot and streaming runs, interleaved (arm order flips every repeat)."""
    runs: dict[tuple[str, str], dict[str, list]] = {(label, arm): {"one": [], "stream": []}
                                                      for label, _ in texts for arm in engines}
    for _label, text in texts:  # warm-up: first-call allocations and shapes, the g2p's dictionaries
        for engine in engines.values():
            one_shot(engine, text, seed)
            streamed(engine, text, seed)
    for repeat in range(repeats):
        order = list(engines) if repeat % 2 == 0 else list(engines)[::-1]
        for label, text in texts:
            for arm in order:
                runs[label, arm]["one"].append(one_shot(engines[arm], text, seed))
                runs[label, arm]["stream"].append(streamed(engines[arm], text, seed))
    rows = []
    for label, text in texts:
        row = _text_info(engines[ARMS[0]], label, text)
        row["arms"] = {arm: _arm_summary(runs[label, arm]["one"], runs[label, arm]["stream"]) for arm in engines}
        with_bert, without = row["arms"][ARMS[0]], row["arms"][ARMS[1]]
        # What BERT adds: the median over repeats of (BERT arm - no-BERT arm), runs next to each other in time
        # (less exposed to the machine's load drifting than a difference of the two medians).
        pairs = [runs[label, arm] for arm in ARMS]
        row["first_audio_added_ms"] = _paired_ms(pairs, "stream", "first_audio_s")
        row["one_shot_added_ms"] = _paired_ms(pairs, "one", "latency_s")
        log.info("%s: first audio %.0f ms with BERT (BERT %.0f ms, %.0f%%), %.0f ms without", label,
                 with_bert["first_audio_ms"]["p50"], with_bert["bert_ms"]["p50"],
                 100 * with_bert["bert_share_of_first_audio"], without["first_audio_ms"]["p50"])
        rows.append(row)
    return rows


# ----- throughput -------------------------------------------------------------------------------------


class StreamStagesTarget(EngineTarget):
    """The engine target, streaming, that also keeps the per-request stage times the last chunk carries."""

    async def run(self, item: WorkItem, seed: int) -> RequestTiming:
        timing = RequestTiming(sent_at=time.perf_counter())
        try:
            async for chunk in self.engine.astream(_request(item.text, seed)):
                timing.add_chunk(time.perf_counter() - timing.sent_at, len(chunk.audio) / chunk.sample_rate)
                if chunk.timings:
                    timing.stages_s = dict(chunk.timings)
            timing.finish()
        except Exception as exc:  # a failed request is a data point, not the end of the run
            timing.error = f"{type(exc).__name__}: {exc}"
        return timing


def _pass_wall(timings: Sequence[RequestTiming]) -> float:
    return max(t.finished_at for t in timings) - min(t.sent_at for t in timings) if timings else 0.0


def _merge(runs: Sequence[LevelRun], clients: int) -> dict[str, Any]:
    timings = [t for run in runs for t in run.timings]
    counters: EngineCounters | None = None
    for run in runs:
        if run.counters is not None:
            counters = run.counters if counters is None else counters.plus(run.counters)
    wall = sum(_pass_wall(run.timings) for run in runs)
    return summarize(timings, mode="closed", concurrency=clients, counters=counters, wall_s=wall).model_dump(
        mode="json")


async def measure_throughput(targets: dict[str, EngineTarget], workload: Workload, clients: Sequence[int],
                             requests_per_client: int, passes: int, seed: int) -> list[dict[str, Any]]:
    """Closed loops per client count; each arm runs `passes` passes, alternating with the other arm."""
    out = []
    for count in clients:
        runs: dict[str, list[LevelRun]] = {arm: [] for arm in targets}
        per_pass = count * requests_per_client
        for index in range(passes):
            order = list(targets) if index % 2 == 0 else list(targets)[::-1]
            for arm in order:
                runs[arm].append(await run_level(
                    targets[arm], workload, LoadLevel("closed", concurrency=count), requests=per_pass,
                    duration_s=None, warmup=count if index == 0 else 0, seed=seed, offset=index * per_pass))
        entry = {"clients": count, "arms": {arm: _merge(arm_runs, count) for arm, arm_runs in runs.items()}}
        for arm, level in entry["arms"].items():
            log.info("c=%d %s: %.2f req/s, RTFX %.2f, first audio p50 %.0f ms", count, arm,
                     level["requests_per_s"] or 0, level["rtfx"] or 0, level["ttfa_ms"]["p50"] or 0)
        out.append(entry)
    return out


# ----- the run ----------------------------------------------------------------------------------------


async def _measure(bundles: dict[str, Path], args: argparse.Namespace) -> dict[str, Any]:
    clients = [int(c) for c in args.clients.split(",") if c]
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max([*clients, 1]) + 4))
    targets = {arm: StreamStagesTarget(TargetOptions(voice=str(bundles[arm]), stream=True, threads=args.threads,
                                                     label=arm, engine={"lanes": 1}))
               for arm in ARMS}
    try:
        for target in targets.values():
            await target.open()
        engines = {arm: target.engine for arm, target in targets.items()}
        loads = {"latency": [load_average()]}
        latency = measure_latency(engines, TEXTS, args.repeats, args.seed)
        loads["latency"].append(load_average())
        workload = Workload([text for _, text in TEXTS], None, source="bert_stage: the three Chinese texts")
        throughput = []
        for count in clients:
            loads[f"c={count}"] = [load_average()]
            throughput += await measure_throughput(targets, workload, [count], args.requests_per_client,
                                                   args.passes, args.seed)
            loads[f"c={count}"].append(load_average())
        options = engines[ARMS[0]].options.model_dump(mode="json")
    finally:
        for target in targets.values():
            await target.close()
    # 1/5/15-minute load averages at the start and end of each part: the machine may be shared.
    return {"engine_options": options, "latency": latency, "throughput": throughput, "load_avg_parts": loads}


def _bert_record(shape: BertShape, bert_dir: Path, bundle: Path, seed: int) -> dict[str, Any]:
    from vitsrt.text.bert import GRAPH_NAME, read_bert_manifest
    from vitsrt.voice import load_voice

    folder = bundle / load_voice(bundle, verify_sha256=False).manifest.front_end.bert_models["ZH"]
    manifest = read_bert_manifest(folder)
    return {**asdict(shape), "seed": seed, "source_dir": str(bert_dir), "init": "random (transformers' BertModel)",
            "kept_layers": manifest.layer, "graph": str(folder / GRAPH_NAME),
            "graph_mb": round((folder / GRAPH_NAME).stat().st_size / 1e6, 1),
            "weights": "float16" if manifest.fp16_weights else "float32",
            "session_threads": "onnxruntime default (one per physical core); the engine's threads do not apply"}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from vitsrt.benchmarks.voices import default_cache_dir

    cache_dir = args.cache_dir or default_cache_dir()
    bundles, bert_dir = build_voices(cache_dir, args.size, args.seed)
    result: dict[str, Any] = {
        "benchmark": BENCHMARK,
        "created": utc_now(),
        "command": " ".join(["python -m vitsrt.benchmarks.bert_stage", *args.argv]),
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "threads": args.threads,
        "load_avg_start": load_average(),
        "versions": package_versions("onnxruntime", "numpy", "torch", "transformers"),
        "git": git_revision(),
        "size": args.size,
        "bert": _bert_record(LARGE_BERT if args.size == "large" else TINY_BERT, bert_dir, bundles["bert"], args.seed),
        "voices": {arm: str(path) for arm, path in bundles.items()},
        "repeats": args.repeats,
        "passes": args.passes,
        "requests_per_client": args.requests_per_client,
    }
    result.update(asyncio.run(_measure(bundles, args)))
    result["load_avg_end"] = load_average()
    return result


# ----- report -----------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def markdown(result: dict[str, Any]) -> str:
    bert = result["bert"]
    parts = [f"BERT: random, {bert['layers']} layers (graph keeps {bert['kept_layers']}), hidden {bert['hidden']}, "
             f"{bert['heads']} heads, intermediate {bert['intermediate']}, vocab {bert['vocab']}, {bert['weights']} "
             f"weights, {bert['graph_mb']} MB graph. Engine: onnxruntime, lanes 1, threads {result['threads']}; "
             f"BERT session: {bert['session_threads']}.\n",
             f"Machine: {result['cpu']} x{result['cpu_cores']}; load average {result['load_avg_start']} -> "
             f"{result['load_avg_end']}; git {result['git']}.\n"]
    loads = result.get("load_avg_parts") or {}
    if loads:
        parts.append("Load average (1/5/15 min) at the start -> end of each part: "
                     + "; ".join(f"{part} {ends[0]} -> {ends[-1]}" for part, ends in loads.items()) + ".\n")
    rows = []
    for row in result["latency"]:
        for arm, s in row["arms"].items():
            bert_cells = [_ms(s["bert_ms"]["p50"]), f"{100 * s['bert_share_of_first_audio']:.0f}%"] \
                if arm == ARMS[0] else ["-", "-"]
            rows.append([row["label"], f"{row['chars']} / {row['ids']}", arm, f"{s['audio_s']:.2f}",
                         _ms(s["one_shot_ms"]["p50"]), _ms(s["first_audio_ms"]["p50"]),
                         _ms(s["stream_total_ms"]["p50"]), _ms(s["stream_stages_ms"].get("frontend")), *bert_cells])
    parts.append(f"Latency (medians of {result['repeats']} runs each):\n")
    parts.append(markdown_table(["text", "chars / ids", "arm", "audio s", "one-shot ms", "first audio ms",
                                 "stream total ms", "frontend ms", "BERT ms", "BERT share of first audio"],
                                rows) + "\n")
    added = [[row["label"], _ms(row["one_shot_added_ms"]), _ms(row["first_audio_added_ms"])]
             for row in result["latency"]]
    parts.append("What BERT adds (median over repeats of BERT arm - no-BERT arm, the two runs back to back):\n")
    parts.append(markdown_table(["text", "one-shot ms", "first audio ms"], added) + "\n")
    if result["throughput"]:
        rows = []
        for entry in result["throughput"]:
            for arm, level in entry["arms"].items():
                per = (level.get("stages") or {}).get("per_request_ms", {})
                rows.append([str(entry["clients"]), arm, f"{level['ok']}/{level['errors']}",
                             f"{level['requests_per_s'] or 0:.2f}", f"{level['rtfx'] or 0:.2f}",
                             _ms(level["ttfa_ms"]["p50"]), _ms(level["latency_ms"]["p50"]), _ms(per.get("bert"))])
        parts.append(f"Throughput (closed loop, streaming, {result['passes']} passes x {result['requests_per_client']} "
                     "requests per client per arm):\n")
        parts.append(markdown_table(["clients", "arm", "ok/err", "req/s", "RTFX", "first audio p50 ms",
                                     "latency p50 ms", "BERT ms/req"], rows) + "\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitsrt.benchmarks.bert_stage", description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=("large", "tiny"), default="large",
                        help="large: default-size voice + BERT of the real large shape; tiny: a quick run")
    parser.add_argument("--seed", type=int, default=0, help="model seed, also the requests' seed")
    parser.add_argument("--threads", type=int, default=2, help="engine intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=4, help="latency: runs per text, arm and mode (default 4)")
    parser.add_argument("--clients", default="1,4", help="throughput: clients per level (default 1,4; '' skips)")
    parser.add_argument("--requests-per-client", type=int, default=2, help="throughput: per pass (default 2)")
    parser.add_argument("--passes", type=int, default=2, help="throughput: passes per arm, alternating (default 2)")
    parser.add_argument("--cache-dir", type=Path, help="where the models and bundles are cached")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", type=Path, help="write the markdown tables here (also printed)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.repeats < 1 or args.passes < 1 or args.requests_per_client < 1:
        parser.error("--repeats, --passes and --requests-per-client must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run(args)
    except VitsrtError as exc:
        print(f"bert_stage: error: {exc}", file=sys.stderr)
        return 2
    text = markdown(result)
    print(text)  # the benchmark's output, not a log line
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
