"""ONNX Runtime stage graphs vs PyTorch eager ``infer``, same checkpoint, same machine, one run.

    python -m vitsrt.benchmarks.export_vs_torch [--threads N] [--repeats R] [--seconds S] [--out FILE]

Two voices: a random default-size Bert-VITS2 2.3 generator (built and exported into a temporary
directory by vitsrt.benchmarks.voices) and the tiny upstream parity fixture. For each, one utterance of
about ``--seconds`` of audio (blank-interspersed random ids, random BERT features; length_scale tuned
so the frame count lands on the target) is synthesised

* by torch eager: ``SynthesizerTrn.infer`` end to end, plus each stage method timed separately;
  once with the checkpoint as loaded (weight norm recomputed on every forward, as upstream runs it)
  and once with weight norm folded (what the graphs contain), to separate the runtime from that;
* by onnxruntime CPU: the exported graphs + numpy length regulation (vitsrt.export.ort_pipeline).

Both use the same thread count; noise_scale_w is 0 so both sides get identical durations and hence the
same frame count (noise_scale stays 0.667: the prior sample does not change shapes), sdp_ratio 0.5 so
the full duration graph (both predictors) runs. Reported: median wall time per stage and end to end
over ``--repeats`` runs after a warm-up, and the torch/ORT ratio. Torch runs all happen before the ORT
sessions exist, so idle ORT worker threads never compete with torch for cores.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from vitsrt import regulator
from vitsrt.benchmarks.voices import BenchVoice, exported_voice, random_default_voice
from vitsrt.export.ort_pipeline import synthesize_batch
from vitsrt.sampling import SAMPLING_RANGES, Sampling
from vitsrt.serve.backends.ort_runner import OrtRunner
from vitsrt.stages import BERT_VITS2
from vitsrt.train.loading import load_generator
from vitsrt.train.models.common import sequence_mask
from vitsrt.train.models.synthesizer import (
    SynthesizerTrn,
    as_batch_vector,
    durations_from_logw,
    expand_by_durations,
)
from vitsrt.train.models.wavenet import fold_weight_norm

log = logging.getLogger("vitsrt.benchmarks.export_vs_torch")

# Timing phases: the contract's required stages in pipeline order, with the host's length regulation timed
# between the token side (encoder, duration) and the frame side (flow, decoder).
STAGES = (*BERT_VITS2.required[:2], "regulate", *BERT_VITS2.required[2:])
# length_scale is tuned per voice (tune_length_scale); noise_scale_w 0 gives both sides the same durations.
SAMPLING = Sampling(noise_scale=0.667, noise_scale_w=0.0, sdp_ratio=0.5)
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURE = REPO_ROOT.parent / "shared" / "fixtures" / "bertvits2-2.3-tiny"


@dataclass
class Timings:
    """Per-run wall times in seconds, by stage and end to end."""

    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    total: list[float] = field(default_factory=list)

    def median_ms(self, stage: str | None = None) -> float:
        values = self.total if stage is None else self.stages[stage]
        return 1e3 * statistics.median(values) if values else float("nan")


@dataclass
class VoiceResult:
    name: str
    params_m: float
    tokens: int
    frames: int
    audio_s: float
    torch_as_loaded: Timings
    torch_folded: Timings
    onnx: Timings
    agreement: str


# ----- the utterance ----------------------------------------------------------------------------------


def make_inputs(model: SynthesizerTrn, tokens: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One utterance in the encoder graph's feed names: blank-interspersed ids like a real add_blank
    front end, random tones/language 0, unit-normal BERT features."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((1, tokens), dtype=np.int64)
    ids[0, 1::2] = rng.integers(1, model.symbols.n_vocab, tokens // 2)
    tones = np.zeros((1, tokens), dtype=np.int64)
    tones[0, 1::2] = rng.integers(1, 6, tokens // 2)
    bert_dim = model.enc_p.bert_proj.in_channels
    return {
        "phone_ids": ids,
        "tone_ids": tones,
        "language_ids": np.zeros((1, tokens), dtype=np.int64),
        "lengths": np.array([tokens], dtype=np.int64),
        **{k: rng.standard_normal((1, bert_dim, tokens), dtype=np.float32) for k in ("bert", "ja_bert", "en_bert")},
        "sid": np.array([0], dtype=np.int64),
    }


def _torch_feeds(inputs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in inputs.items()}


@torch.no_grad()
def tune_length_scale(model: SynthesizerTrn, inputs: dict[str, np.ndarray], frames: int) -> float:
    """A length_scale that makes this utterance last about `frames` frames (bisection on the numpy
    regulator with the model's own logw), away from any rounding boundary."""
    t = _torch_feeds(inputs)
    enc, _, _, x_mask, g = model.encode(
        t["phone_ids"], t["lengths"], t["tone_ids"], t["language_ids"], t["bert"], t["ja_bert"], t["en_bert"], t["sid"]
    )
    noise = torch.zeros(1, 2, enc.size(2))
    logw = model.predict_logw(enc, x_mask, g, noise, torch.tensor([SAMPLING.sdp_ratio])).numpy()
    mask = x_mask.numpy()

    def total(scale: float) -> int:
        return int(regulator.durations_from_logw(logw, mask, scale).sum())

    def first_scale_reaching(count: int) -> float:
        low, high = SAMPLING_RANGES["length_scale"]
        for _ in range(80):
            mid = (low * high) ** 0.5
            low, high = (mid, high) if total(mid) < count else (low, mid)
        return high

    # Bisection ends exactly on a ceil() boundary, where float rounding decides the frame count;
    # take the middle of the interval that gives this count instead, so both runtimes agree.
    start = first_scale_reaching(frames)
    end = first_scale_reaching(total(start) + 1)
    return (start * end) ** 0.5


# ----- torch eager ------------------------------------------------------------------------------------


@torch.no_grad()
def torch_staged(model: SynthesizerTrn, t: dict[str, torch.Tensor], sampling: Sampling, gen: torch.Generator):
    """infer's computation with a clock between stages; returns (audio, {stage: seconds})."""
    marks = [time.perf_counter()]
    enc, m_p, logs_p, x_mask, g = model.encode(
        t["phone_ids"], t["lengths"], t["tone_ids"], t["language_ids"], t["bert"], t["ja_bert"], t["en_bert"], t["sid"]
    )
    marks.append(time.perf_counter())
    noise = torch.randn(1, 2, enc.size(2), generator=gen) * sampling.noise_scale_w
    logw = model.predict_logw(enc, x_mask, g, noise, torch.tensor([sampling.sdp_ratio]))
    marks.append(time.perf_counter())
    durations = durations_from_logw(logw, x_mask, as_batch_vector(sampling.length_scale, 1, enc))
    y_lengths, (m_frames, logs_frames) = expand_by_durations(durations, m_p, logs_p)
    y_mask = sequence_mask(y_lengths, m_frames.size(2)).unsqueeze(1).to(enc.dtype)
    z_p = m_frames + torch.randn(m_frames.shape, generator=gen) * torch.exp(logs_frames) * sampling.noise_scale
    marks.append(time.perf_counter())
    z = model.flow_reverse(z_p, y_mask, g)
    marks.append(time.perf_counter())
    audio = model.decode(z, y_mask, g)
    marks.append(time.perf_counter())
    return audio, {s: marks[i + 1] - marks[i] for i, s in enumerate(STAGES)}


def bench_torch(model: SynthesizerTrn, inputs: dict[str, np.ndarray], sampling: Sampling, repeats: int) -> Timings:
    t = _torch_feeds(inputs)
    gen = torch.Generator().manual_seed(0)
    timings = Timings()

    def infer() -> torch.Tensor:
        return model.infer(
            t["phone_ids"], t["lengths"], t["sid"], t["tone_ids"], t["language_ids"], t["bert"], t["ja_bert"],
            t["en_bert"], **sampling.model_dump(), generator=gen,
        ).audio

    infer()  # warm-up (allocator, oneDNN primitive caches)
    torch_staged(model, t, sampling, gen)
    for _ in range(repeats):
        start = time.perf_counter()
        infer()
        timings.total.append(time.perf_counter() - start)
        _, per_stage = torch_staged(model, t, sampling, gen)
        for stage, seconds in per_stage.items():
            timings.stages[stage].append(seconds)
    return timings


# ----- onnxruntime ------------------------------------------------------------------------------------


def bench_onnx(runner: OrtRunner, inputs: dict[str, np.ndarray], sampling: Sampling, repeats: int) -> Timings:
    timings = Timings()

    def run():
        return synthesize_batch(runner, inputs, seeds=[0], **sampling.model_dump())

    run()
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        timings.total.append(time.perf_counter() - start)
        for stage in STAGES:
            timings.stages[stage].append(result.timings.get(stage, 0.0))
    return timings


# ----- one voice --------------------------------------------------------------------------------------


def bench_voice(voice: BenchVoice, seconds: float, threads: int, repeats: int) -> VoiceResult:
    loaded = load_generator(voice.checkpoint, voice.config)
    model = loaded.model
    hop, rate = loaded.config.hop_length, loaded.config.sampling_rate
    target_frames = round(seconds * rate / hop)
    tokens = 2 * round(target_frames / 6) + 1  # ~3 frames per token, odd length (blanks at both ends)
    inputs = make_inputs(model, tokens)
    sampling = SAMPLING.model_copy(update={"length_scale": tune_length_scale(model, inputs, target_frames)})
    params_m = sum(p.numel() for n, p in model.state_dict().items() if not n.startswith("enc_q")) / 1e6
    log.info("%s: %d tokens, length_scale %.3f, %.1fM inference parameters", voice.name, tokens,
             sampling.length_scale, params_m)

    torch.set_num_threads(threads)
    as_loaded = bench_torch(model, inputs, sampling, repeats)
    folded = SynthesizerTrn(loaded.config, model.symbols)
    folded.load_state_dict(model.state_dict())
    fold_weight_norm(folded)
    folded.eval()
    folded_t = bench_torch(folded, inputs, sampling, repeats)

    runner = OrtRunner.from_voice(voice.voice_dir, intra_op_threads=threads, spinning=True, quiet=True)
    onnx_t = bench_onnx(runner, inputs, sampling, repeats)

    # Same durations on both sides, and how close the audio is with every noise scale at 0.
    quiet = sampling.model_copy(update={"noise_scale": 0.0, "noise_scale_w": 0.0})
    t = _torch_feeds(inputs)
    with torch.no_grad():
        ref = model.infer(
            t["phone_ids"], t["lengths"], t["sid"], t["tone_ids"], t["language_ids"], t["bert"], t["ja_bert"],
            t["en_bert"], **quiet.model_dump(),
        )
    ours = synthesize_batch(runner, inputs, seeds=[0], **quiet.model_dump())
    same_durations = bool(np.array_equal(ours.durations, ref.durations[:, 0].long().numpy()))
    frames = int(ours.y_lengths[0])
    diff = float(np.abs(ours.audio - ref.audio.numpy()).max()) if same_durations else float("nan")
    agreement = f"durations equal: {same_durations}; audio max abs diff (noise 0): {diff:.2g}"
    log.info("%s: %s", voice.name, agreement)
    return VoiceResult(
        voice.name, params_m, tokens, frames, frames * hop / rate, as_loaded, folded_t, onnx_t, agreement
    )


# ----- report -----------------------------------------------------------------------------------------


def _lscpu() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    keep = ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "L2 cache", "L3 cache", "Hypervisor")
    lines = [line.strip() for line in text.splitlines() if line.split(":")[0].strip() in keep]
    return "; ".join(" ".join(line.split()) for line in lines)


def _fmt(ms: float) -> str:
    return f"{ms:,.1f}"


def render(results: list[VoiceResult], args: argparse.Namespace, command: str, load: tuple[str, str]) -> str:
    out = [
        "# ONNX Runtime stage graphs vs PyTorch eager (CPU)",
        "",
        f"- command: `{command}`",
        f"- machine: {_lscpu()}",
        f"- software: Python {platform.python_version()}, torch {torch.__version__}, onnxruntime {ort.__version__}, "
        f"numpy {np.__version__}",
        f"- threads: torch.set_num_threads({args.threads}) and onnxruntime intra_op_num_threads={args.threads} "
        "(inter-op 1)",
        f"- median of {args.repeats} runs after one warm-up; batch 1; noise_scale {SAMPLING.noise_scale}, "
        f"noise_scale_w {SAMPLING.noise_scale_w} (identical durations on both sides), sdp_ratio {SAMPLING.sdp_ratio} "
        "(full duration graph)",
        f"- load average before / after: {load[0]} / {load[1]} (the machine is shared with other jobs)",
        "- torch columns: `infer` end to end, and the stage methods timed one by one (`regulate` = durations, "
        "expansion and prior sample; for ORT it is the numpy regulator plus host noise)",
        "",
    ]
    for r in results:
        out += [
            f"## {r.name}: {r.params_m:.1f}M inference parameters, {r.tokens} tokens -> {r.frames} frames = "
            f"{r.audio_s:.2f} s of audio",
            "",
            "| stage | torch eager, as loaded (ms) | torch eager, weight norm folded (ms) | ONNX Runtime (ms) "
            "| torch / ORT | torch folded / ORT |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for stage in (*STAGES, None):
            a, f, o = r.torch_as_loaded.median_ms(stage), r.torch_folded.median_ms(stage), r.onnx.median_ms(stage)
            label = stage or "**end to end** (torch: `infer`)"
            out.append(f"| {label} | {_fmt(a)} | {_fmt(f)} | {_fmt(o)} | {a / o:.2f}x | {f / o:.2f}x |")
        onnx_total = r.onnx.median_ms()
        decoder_share = r.onnx.median_ms("decoder") / onnx_total
        flow_share = r.onnx.median_ms("flow") / onnx_total
        torch_decoder_share = r.torch_as_loaded.median_ms("decoder") / sum(
            r.torch_as_loaded.median_ms(s) for s in STAGES
        )
        out += [
            "",
            f"- real-time factor (end to end / audio): torch {r.torch_as_loaded.median_ms() / 1e3 / r.audio_s:.3f}, "
            f"ONNX Runtime {onnx_total / 1e3 / r.audio_s:.3f}",
            f"- share of the ORT end-to-end time: decoder {decoder_share:.0%}, flow {flow_share:.0%}; "
            f"decoder share in torch: {torch_decoder_share:.0%}",
            f"- agreement check: {r.agreement}",
            "",
        ]
    return "\n".join(out)


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=5.0, help="target audio length per utterance")
    parser.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE, help="the tiny parity fixture directory")
    parser.add_argument("--cache", type=Path, default=None, help="reuse built voices here (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "export-vs-torch.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    command = "python -m vitsrt.benchmarks.export_vs_torch " + " ".join(argv if argv is not None else sys.argv[1:])
    load_before = _load_average()

    with tempfile.TemporaryDirectory(prefix="vitsrt-bench-") as tmp:
        cache = args.cache or Path(tmp)
        voices = [random_default_voice(cache)]
        if (args.fixture / "G_0.pth").is_file():
            voices.append(exported_voice(args.fixture / "G_0.pth", args.fixture / "config.json", cache, "tiny-fixture"))
        else:
            log.warning("fixture not found at %s; benchmarking the default-size voice only", args.fixture)
        results = [bench_voice(v, args.seconds, args.threads, args.repeats) for v in voices]

    report = render(results, args, command.strip(), (load_before, _load_average()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report + "\n", encoding="utf-8")
    log.info("wrote %s", args.out)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
