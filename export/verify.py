"""Export-time parity: every stage graph on ONNX Runtime (CPU) against our PyTorch stage methods.

The reference is the *unfolded* model the checkpoint loaded into (weight norm still active), so this
also checks the folding. Inputs are random but shaped like real traffic: batch sizes 1..4, text
lengths including 1, 2 and 3 tokens (shorter than the relative-attention window and the conv
kernels), and padded batches whose items have very different lengths. A Bert-VITS2 encoder that takes
``speaker_weights`` gets a one-hot row (a plain request) and random blends; one that takes ``sid`` (bundles
exported before speaker weights) the same items' ids. Token-side stages (duration,
duration_dp_only) are fed the reference encoder's outputs for the case, so their inputs have realistic
scale; flow and decoder get standard-normal latents.

Each stage is summarised as the largest absolute difference over all its outputs and all cases (the
whole tensors, padding included: both sides compute the padding with the same masks), with the case
that produced it, against a tolerance ``atol + rtol * max |reference|`` (see DEFAULT_TOLERANCES). A
stage over its tolerance fails the export with :class:`ParityError`.

ONNX Runtime sessions here do not busy-wait between runs: with spinning on, idle ORT worker threads
compete with the torch reference for the same cores and verification got ~5x slower on 2 cores.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from vitsrt.errors import VitsrtError
from vitsrt.export.onnx_export import Generator, has_emotion, model_family, speaker_count
from vitsrt.serve.backends.ort_runner import OrtRunner
from vitsrt.stages import BERT_FEATURES, BERT_VITS2, StageName
from vitsrt.train.models.vits import VitsSynthesizer
from vitsrt.voice import ParityReport, StageParity

__all__ = [
    "DEFAULT_CASES",
    "DEFAULT_TOLERANCES",
    "FP16_WEIGHT_TOLERANCES",
    "ParityError",
    "VerifyCase",
    "check_parity",
    "graph_paths",
    "parity_report",
    "render_parity_table",
    "verify_and_report",
    "verify_graphs",
]

log = logging.getLogger(__name__)


class ParityError(VitsrtError):
    """An exported graph disagrees with the PyTorch reference beyond its tolerance."""


@dataclass(frozen=True)
class VerifyCase:
    """Per-item text lengths (token-side stages) and frame counts (flow, decoder) of one batch."""

    tokens: tuple[int, ...]
    frames: tuple[int, ...]

    def label(self, side: str) -> str:
        lengths = self.tokens if side == "tokens" else self.frames
        name = "T" if side == "tokens" else "F"
        return f"B={len(lengths)} {name}={list(lengths)}"


DEFAULT_CASES: tuple[VerifyCase, ...] = (
    VerifyCase((1,), (1,)),
    VerifyCase((2,), (2,)),
    VerifyCase((3,), (3,)),
    VerifyCase((3, 1), (3, 1)),
    VerifyCase((8, 2), (21, 4)),
    VerifyCase((17, 1, 9), (45, 2, 24)),
    VerifyCase((30, 5, 12, 23), (80, 9, 33, 61)),
)

# Per stage (atol, rtol), from the stage contract: a stage passes when
# max |onnx - torch| <= atol + rtol * max |torch output| over all cases.
DEFAULT_TOLERANCES: Mapping[str, tuple[float, float]] = {s.name: s.tolerance for s in BERT_VITS2.stages}


# The same check for graphs that store their weights in float16 (`vitsrt export --weights fp16`):
# rounding every weight once (relative error <= 2**-11) moves outputs by ~1e-3 of their scale. The encoder's
# attention and BERT projections compound it: 0.4 % of the output scale measured on the tiny upstream fixture
# (0.0161 at max |enc| 4.0), so its relative tolerance is 1e-2.
FP16_WEIGHT_TOLERANCES: Mapping[str, tuple[float, float]] = {
    stage: (1e-3, 1e-2 if stage == "encoder" else 3e-3) for stage in BERT_VITS2.names
}


def _mask(lengths: Sequence[int]) -> torch.Tensor:
    size = max(lengths)
    return (torch.arange(size)[None, :] < torch.tensor(lengths)[:, None]).float().unsqueeze(1)


def _encoder_inputs(model: Generator, tokens: Sequence[int], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random ids/BERT features, zero (id 0, features 0) in padding like a real padded batch."""
    batch, t_max = len(tokens), max(tokens)
    mask = _mask(tokens)  # [B,1,T]
    valid_ids = mask[:, 0].long()

    def ids(high: int) -> torch.Tensor:
        return torch.randint(0, high, (batch, t_max), generator=gen) * valid_ids

    if isinstance(model, VitsSynthesizer):
        return {
            "phone_ids": ids(model.n_vocab),
            "lengths": torch.tensor(tokens, dtype=torch.long),
            "sid": torch.randint(0, model.n_speakers, (batch,), generator=gen),
        }
    sizes = model.symbols
    bert_dim = model.enc_p.bert_proj.in_channels

    def feats() -> torch.Tensor:
        return torch.randn(batch, bert_dim, t_max, generator=gen) * mask

    inputs = {
        "phone_ids": ids(sizes.n_vocab),
        "tone_ids": ids(sizes.num_tones),
        "language_ids": ids(sizes.num_languages),
        "lengths": torch.tensor(tokens, dtype=torch.long),
        **{name: feats() for name in BERT_FEATURES},  # drawn in this order: the cases stay reproducible
        "sid": torch.randint(0, model.emb_g.num_embeddings, (batch,), generator=gen),
    }
    if has_emotion(model):  # 2.2: a unit-length CLAP-like embedding per item, drawn last (2.3 cases unchanged)
        emo = torch.randn(batch, model.enc_p.in_feature_net[0].in_features, generator=gen)
        inputs["emo"] = emo / emo.norm(dim=1, keepdim=True)
    inputs["speaker_weights"] = _speaker_weights(inputs["sid"], model.emb_g.num_embeddings, gen)
    return inputs


def _speaker_weights(sid: torch.Tensor, speakers: int, gen: torch.Generator) -> torch.Tensor:
    """[B, speakers]: the first item one-hot at its sid (a plain request), the others random blends (sum 1)."""
    weights = torch.rand(len(sid), speakers, generator=gen)
    weights = weights / weights.sum(dim=1, keepdim=True)
    weights[0] = torch.nn.functional.one_hot(sid[0], speakers).float()
    return weights


_TOKEN_STAGES = {s.name for s in BERT_VITS2.stages if s.length_axis == "T"}


def _token_stages(
    model: Generator, enc_in: dict[str, torch.Tensor], noise: torch.Tensor, ratio: torch.Tensor, stages: Sequence[str],
    by_weights: bool = True,
) -> dict[str, tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]]:
    """Encoder and duration references; the duration stages are fed the reference encoder's outputs. A Bert-VITS2
    encoder gets its speaker as `speaker_weights` (`by_weights`) or, an older graph, as `sid`."""
    out: dict[str, tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]] = {}
    if isinstance(model, VitsSynthesizer):
        encoded = model.encode(enc_in["phone_ids"], enc_in["lengths"], enc_in["sid"])
        enc, _m_p, _logs_p, x_mask, g = encoded
        out["encoder"] = (enc_in, tuple(t for t in encoded if t is not None))
        duration_in = {"enc": enc, "x_mask": x_mask, "sdp_noise": noise, **({"g": g} if g is not None else {})}
        out["duration"] = (duration_in, (model.predict_logw(enc, x_mask, g, noise),))
        return out
    order = ("phone_ids", "lengths", "tone_ids", "language_ids", *BERT_FEATURES)  # encode()'s arguments
    if by_weights:
        g_in = model.speaker_mix(enc_in["speaker_weights"])
        encoded = model.encode_with_g(*(enc_in[k] for k in order), g_in, enc_in.get("emo"))
    else:
        encoded = model.encode(*(enc_in[k] for k in order), enc_in["sid"], enc_in.get("emo"))
    enc, _m_p, _logs_p, x_mask, g = encoded
    out["encoder"] = (enc_in, encoded)
    duration_in = {"enc": enc, "x_mask": x_mask, "g": g, "sdp_noise": noise, "sdp_ratio": ratio}
    if "duration" in stages:
        out["duration"] = (duration_in, (model.predict_logw(enc, x_mask, g, noise, ratio),))
    if "duration_dp_only" in stages:
        out["duration_dp_only"] = (duration_in, (model.predict_logw_dp(enc, x_mask, g),))
    return out


@torch.no_grad()
def _case_tensors(
    model: Generator, case: VerifyCase, gen: torch.Generator, stages: Sequence[str], by_weights: bool = True
) -> dict[str, tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]]:
    """For each requested stage: (named inputs, reference outputs) from the torch stage methods.

    Random draws happen in a fixed order whatever `stages` holds, so a stage sees the same inputs
    whether it is verified alone or with the others.
    """
    out: dict[str, tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]] = {}
    batch = len(case.tokens)
    enc_in = _encoder_inputs(model, case.tokens, gen)
    noise = torch.randn(batch, 2, max(case.tokens), generator=gen) * 0.8
    # Mix ratios 0 and 1 in with random ones: the two ends exercise each predictor alone.
    ratio = torch.rand(batch, generator=gen)
    ratio[0] = 0.0 if batch % 2 else 1.0
    y_mask = _mask(case.frames)
    frame_sid = torch.randint(0, speaker_count(model), (batch,), generator=gen)
    z_p = torch.randn(batch, model.inter_channels, max(case.frames), generator=gen) * y_mask
    z = torch.randn(batch, model.inter_channels, max(case.frames), generator=gen)

    if _TOKEN_STAGES & set(stages):  # they all need the reference encoder's outputs
        out.update(_token_stages(model, enc_in, noise, ratio, stages, by_weights))
    g_frames = model.speaker_embedding(frame_sid)
    frame_in = {"y_mask": y_mask, **({"g": g_frames} if g_frames is not None else {})}
    if "flow" in stages:
        out["flow"] = ({"z_p": z_p, **frame_in}, (model.flow_reverse(z_p, y_mask, g_frames),))
    if "decoder" in stages:
        out["decoder"] = ({"z": z, **frame_in}, (model.decode(z, y_mask, g_frames),))
    return out


def verify_graphs(
    model: Generator,
    graphs: Mapping[StageName, str | os.PathLike[str]],
    *,
    cases: Sequence[VerifyCase] = DEFAULT_CASES,
    tolerances: Mapping[str, tuple[float, float]] | None = None,
    seed: int = 0,
    threads: int | None = None,
) -> dict[str, StageParity]:
    """Run every graph in `graphs` on onnxruntime CPU and on the torch stage methods; figures per stage.

    Does not raise on a mismatch (see :func:`check_parity`); raises ValueError for an unknown stage.
    """
    contract = model_family(model)
    tolerances = {**{s.name: s.tolerance for s in contract.stages}, **(tolerances or {})}
    model = model.eval()
    # Sessions do not busy-wait between runs: verification alternates ORT with torch on the same cores. The graphs
    # are checked as written (what GPU backends, TensorRT and Triton run), not as the CPU backend rewrites the
    # decoder (tests/test_decoder_rewrite.py holds that to the graph as written).
    runner = OrtRunner(graphs, intra_op_threads=threads, quiet=True, rewrite_decoder=False)
    worst: dict[str, tuple[float, str]] = {stage: (0.0, "") for stage in runner.stages}
    scale: dict[str, float] = dict.fromkeys(runner.stages, 0.0)
    gen = torch.Generator().manual_seed(seed)
    by_weights = runner.has("encoder") and "speaker_weights" in runner.input_names("encoder")
    for case in cases:
        tensors = _case_tensors(model, case, gen, list(runner.stages), by_weights)
        for stage in runner.stages:
            if stage not in tensors:
                raise ValueError(f"no reference for stage {stage!r}")
            feeds_t, reference = tensors[stage]
            got = runner.run(stage, {name: feeds_t[name].numpy() for name in runner.input_names(stage)})
            side = "frames" if contract.stage(stage).length_axis == "F" else "tokens"
            for (name, ours), ref in zip(got.items(), reference, strict=True):
                expected = ref.numpy()
                if expected.size:
                    scale[stage] = max(scale[stage], float(np.abs(expected).max()))
                if ours.shape != expected.shape:
                    diff, where = math.inf, f"{case.label(side)} {name}: shape {ours.shape} != {expected.shape}"
                else:
                    diff = float(np.abs(ours - expected).max()) if expected.size else 0.0
                    diff = diff if not math.isnan(diff) else math.inf
                    where = f"{case.label(side)} {name}"
                if diff > worst[stage][0] or not worst[stage][1]:
                    worst[stage] = (diff, where)
    return {
        stage: StageParity(
            max_abs_diff=diff,
            tolerance=tolerances[stage][0] + tolerances[stage][1] * scale[stage],
            worst_case=where,
            cases=len(cases),
        )
        for stage, (diff, where) in worst.items()
    }


def render_parity_table(parity: Mapping[str, StageParity]) -> str:
    """A plain-text table: stage, max abs diff, tolerance, result, worst case (for logs and the CLI)."""
    rows = [("stage", "max abs diff", "tolerance", "ok", "worst case")]
    for stage, figures in parity.items():
        verdict = "yes" if figures.passed else "NO"
        rows.append((stage, f"{figures.max_abs_diff:.3g}", f"{figures.tolerance:.2g}", verdict, figures.worst_case))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def check_parity(parity: Mapping[str, StageParity]) -> None:
    """Raise ParityError naming the first stage over tolerance."""
    for stage, figures in parity.items():
        if not figures.passed:
            raise ParityError(
                f"{stage} graph differs from PyTorch by {figures.max_abs_diff:.3g} (tolerance {figures.tolerance:g}) "
                f"at {figures.worst_case}"
            )


def parity_report(parity: Mapping[str, StageParity], threads: int | None = None) -> ParityReport:
    """The manifest's parity record for figures from :func:`verify_graphs`."""
    where = f", {threads} threads" if threads else ""
    return ParityReport(
        reference=f"torch {torch.__version__} cpu (unfolded stage methods)",
        runtime=f"onnxruntime {ort.__version__} CPUExecutionProvider{where}",
        stages=dict(parity),
    )


def verify_and_report(
    model: Generator,
    graphs: Mapping[StageName, str | os.PathLike[str]],
    *,
    cases: Sequence[VerifyCase] = DEFAULT_CASES,
    threads: int | None = None,
    tolerances: Mapping[str, tuple[float, float]] | None = None,
) -> ParityReport:
    """verify_graphs, log the table (also when it fails), raise ParityError over tolerance; returns the
    manifest's parity record."""
    parity = verify_graphs(model, graphs, cases=cases, threads=threads, tolerances=tolerances)
    for line in render_parity_table(parity).splitlines():
        log.info("%s", line)
    check_parity(parity)
    return parity_report(parity, threads)


def graph_paths(root: str | os.PathLike[str], stages: Sequence[StageName]) -> dict[StageName, Path]:
    """``<root>/<stage>.onnx`` for each stage (the bundle's file naming)."""
    return {stage: Path(root) / f"{stage}.onnx" for stage in stages}
