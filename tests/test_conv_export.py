"""ONNX export of the conv-side graphs with dynamic batch and time, checked in onnxruntime.

Exports sdp.infer, dp, the residual flow's reverse pass and the masked decoder once at one shape,
then runs them at other batch sizes and lengths against torch. The graphs must be static:
no data-dependent ops (NonZero), control flow (If/Loop) or scatter/gather-ND left behind.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from vitsrt.train.models.duration import DurationPredictor, StochasticDurationPredictor
from vitsrt.train.models.generator import Generator
from vitsrt.train.models.residual_flow import ResidualCouplingBlock
from vitsrt.train.models.wavenet import fold_weight_norm

log = logging.getLogger(__name__)

FORBIDDEN_OPS = {"NonZero", "Loop", "If", "Scan", "ScatterND", "GatherND", "SequenceConstruct"}
H, GIN, INTER = 32, 16, 16


def _perturbed(module: nn.Module, seed: int) -> nn.Module:
    """Random init plus noise on every tensor (zero-initialised projections would hide whole paths).

    Weight-normed convs get effective weights of std 1/sqrt(taps per output) (the fixture's decoder
    gain step): PyTorch's default init makes an untrained decoder nearly ignore its input.
    """
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for m in module.modules():
            if hasattr(m, "weight_g"):
                taps = m.in_channels * m.kernel_size[0] / m.stride[0]
                m.weight_g.mul_((3 * m.weight_v.size(1) * m.weight_v.size(2) / taps) ** 0.5)
    fold_weight_norm(module)
    return module.eval()


class SdpInfer(nn.Module):
    def __init__(self, sdp: StochasticDurationPredictor):
        super().__init__()
        self.sdp = sdp

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.sdp.infer(x, x_mask, g, noise)


class FlowReverse(nn.Module):
    def __init__(self, flow: ResidualCouplingBlock):
        super().__init__()
        self.flow = flow

    def forward(self, z_p: torch.Tensor, y_mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.flow(z_p, y_mask, g=g, reverse=True)


class MaskedDecoder(nn.Module):
    def __init__(self, dec: Generator):
        super().__init__()
        self.dec = dec

    def forward(self, z: torch.Tensor, g: torch.Tensor, y_mask: torch.Tensor) -> torch.Tensor:
        return self.dec(z, g, y_mask=y_mask)


def _mask(lengths: list[int], total: int) -> torch.Tensor:
    return (torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]).unsqueeze(1).float()


def _export(
    module: nn.Module, args: tuple[torch.Tensor, ...], names: list[str], time_axes: dict[str, int], path: Path
) -> ort.InferenceSession:
    # The exporter restores the wrapper's train/eval flag recursively afterwards; a wrapper left in
    # training mode would silently switch the dropout layers inside back on for the torch reference.
    module.eval()
    dynamic = {name: {0: "batch", **({time_axes[name]: "time"} if name in time_axes else {})} for name in names}
    dynamic["out"] = {0: "batch", 2: "samples"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names,
            output_names=["out"],
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )
    model = onnx.load(str(path))
    model.ir_version = min(model.ir_version, 10)  # onnxruntime 1.31 refuses newer IR versions
    onnx.checker.check_model(model)
    ops = {node.op_type for node in model.graph.node}
    assert not ops & FORBIDDEN_OPS, f"forbidden ops in {path.name}: {sorted(ops & FORBIDDEN_OPS)}"
    onnx.save(model, str(path))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _compare(
    session: ort.InferenceSession, module: nn.Module, args: tuple[torch.Tensor, ...], names: list[str], tol: float
) -> float:
    with torch.no_grad():
        expected = module(*args).numpy()
    (got,) = session.run(None, {n: a.numpy() for n, a in zip(names, args, strict=True)})
    assert got.shape == expected.shape
    diff = float(np.abs(got - expected).max())
    assert diff < tol, diff
    return diff


def _assert_notices_change(
    session: ort.InferenceSession,
    module: nn.Module,
    param: torch.Tensor,
    args: tuple[torch.Tensor, ...],
    names: list[str],
) -> None:
    """Negative control: after nudging one entry of ``param`` the torch/onnx comparison must fail."""
    with torch.no_grad():
        param.view(-1)[param.numel() // 3] += 0.5
    with pytest.raises(AssertionError):
        _compare(session, module, args, names, 1e-4)


def _text_args(lengths: list[int], total: int, seed: int, noise_scale: float) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    b = len(lengths)
    mask = _mask(lengths, total)
    x = torch.randn(b, H, total, generator=gen) * mask
    g = torch.randn(b, GIN, 1, generator=gen)
    noise = noise_scale * torch.randn(b, 2, total, generator=gen)
    return x, mask, g, noise


SHAPES = [([17, 9], 17), ([40], 40), ([5, 31, 12], 31)]  # (lengths, padded length); export uses the first


def test_sdp_infer_exports(tmp_path: Path) -> None:
    module = SdpInfer(_perturbed(StochasticDurationPredictor(H, H, 3, 0.5, 4, gin_channels=GIN), 0))
    names = ["x", "x_mask", "g", "noise"]
    session = _export(
        module, _text_args(*SHAPES[0], 0, 0.8), names, {"x": 2, "x_mask": 2, "noise": 2}, tmp_path / "sdp.onnx"
    )
    diffs = [_compare(session, module, _text_args(*shape, i + 1, 0.8), names, 1e-4) for i, shape in enumerate(SHAPES)]
    log.info("sdp.infer onnx vs torch: %s", diffs)
    _assert_notices_change(session, module, module.sdp.flows[5].proj.bias, _text_args(*SHAPES[1], 2, 0.8), names)


def test_dp_exports(tmp_path: Path) -> None:
    module = _perturbed(DurationPredictor(H, 64, 3, 0.5, gin_channels=GIN), 1)
    names = ["x", "x_mask", "g"]
    session = _export(module, _text_args(*SHAPES[0], 0, 0)[:3], names, {"x": 2, "x_mask": 2}, tmp_path / "dp.onnx")
    diffs = [_compare(session, module, _text_args(*shape, i + 1, 0)[:3], names, 1e-4) for i, shape in enumerate(SHAPES)]
    log.info("dp onnx vs torch: %s", diffs)
    _assert_notices_change(session, module, module.conv_2.weight, _text_args(*SHAPES[1], 2, 0)[:3], names)


def test_residual_flow_reverse_exports(tmp_path: Path) -> None:
    flow = ResidualCouplingBlock(INTER, H, 5, 1, 4, n_flows=4, gin_channels=GIN)
    module = FlowReverse(_perturbed(flow, 2))

    def args(lengths: list[int], total: int, seed: int) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(seed)
        mask = _mask(lengths, total)
        return torch.randn(len(lengths), INTER, total, generator=gen) * mask, mask, torch.randn(len(lengths), GIN, 1)

    names = ["z_p", "y_mask", "g"]
    session = _export(module, args(*SHAPES[0], 0), names, {"z_p": 2, "y_mask": 2}, tmp_path / "flow.onnx")
    diffs = [_compare(session, module, args(*shape, i + 1), names, 1e-4) for i, shape in enumerate(SHAPES)]
    log.info("flow reverse onnx vs torch: %s", diffs)
    _assert_notices_change(session, module, module.flow.flows[4].post.weight, args(*SHAPES[1], 2), names)


@pytest.mark.parametrize("resblock", ["1", "2"])
def test_masked_generator_exports(tmp_path: Path, resblock: str) -> None:
    dec = Generator(INTER, resblock, [3, 7, 11], [[1, 3, 5]] * 3, [8, 8, 2, 2], 32, [16, 16, 4, 4], gin_channels=GIN)
    module = MaskedDecoder(_perturbed(dec, 3))

    def args(lengths: list[int], total: int, seed: int) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(seed)
        return (
            torch.randn(len(lengths), INTER, total, generator=gen),
            torch.randn(len(lengths), GIN, 1, generator=gen),
            _mask(lengths, total),
        )

    names = ["z", "g", "y_mask"]
    session = _export(module, args(*SHAPES[0], 0), names, {"z": 2, "y_mask": 2}, tmp_path / f"dec{resblock}.onnx")
    diffs = [_compare(session, module, args(*shape, i + 1), names, 1e-4) for i, shape in enumerate(SHAPES)]
    log.info("masked decoder (resblock %s) onnx vs torch: %s", resblock, diffs)
    # The exported mask still zeroes the tails.
    (audio,) = session.run(None, {n: a.numpy() for n, a in zip(names, args([5, 31, 12], 31, 9), strict=True)})
    assert np.all(audio[0, :, 5 * 256 :] == 0) and np.abs(audio[0, :, : 5 * 256]).max() > 0
    _assert_notices_change(session, module, module.dec.ups[1].weight, args(*SHAPES[1], 2), names)
