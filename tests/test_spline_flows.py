"""Rational-quadratic spline and the SDP flow blocks: invertibility, exact log-determinants, tails."""

from __future__ import annotations

import pytest
import torch

from vitsrt.train.models.duration import StochasticDurationPredictor
from vitsrt.train.models.sdp_flows import ConvFlow, ElementwiseAffine, LogFlow
from vitsrt.train.models.spline import rational_quadratic_spline

BOUND = 5.0


def _params(shape: tuple[int, ...], bins: int = 10, seed: int = 0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    w = 2 * torch.randn(*shape, bins, generator=gen, dtype=dtype)
    h = 2 * torch.randn(*shape, bins, generator=gen, dtype=dtype)
    d = 2 * torch.randn(*shape, bins - 1, generator=gen, dtype=dtype)
    return w, h, d


def _inputs(n: int, dtype=torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(11)
    x = 4 * torch.randn(n, generator=gen, dtype=dtype)  # about a quarter outside [-5, 5]
    x[:4] = torch.tensor([-BOUND, BOUND, 0.0, BOUND + 1], dtype=dtype)
    return x


def test_spline_roundtrip_and_opposite_logdets() -> None:
    x = _inputs(4000)
    w, h, d = _params((4000,))
    y, lad = rational_quadratic_spline(x, w, h, d, tail_bound=BOUND)
    back, lad_inv = rational_quadratic_spline(y, w, h, d, inverse=True, tail_bound=BOUND)
    assert (back - x).abs().max().item() < 1e-9
    assert (lad + lad_inv).abs().max().item() < 1e-9
    inside = x.abs() <= BOUND
    assert bool(inside.any()) and bool((~inside).any())
    assert torch.equal(y[~inside], x[~inside]) and torch.all(lad[~inside] == 0)
    assert torch.all(y[inside].abs() <= BOUND)
    # Negative control: the map is not the identity inside.
    assert (y[inside] - x[inside]).abs().max().item() > 0.1


@pytest.mark.parametrize("inverse", [False, True])
def test_spline_logdet_equals_autograd_derivative(inverse: bool) -> None:
    x = _inputs(2000).requires_grad_(True)
    w, h, d = _params((2000,), seed=1)
    y, lad = rational_quadratic_spline(x, w, h, d, inverse=inverse, tail_bound=BOUND)
    (grad,) = torch.autograd.grad(y.sum(), x)  # elementwise map: the gradient is the derivative
    assert torch.all(grad > 0)  # monotone
    assert (torch.log(grad) - lad).abs().max().item() < 1e-8
    assert torch.isfinite(grad).all()


def test_spline_float32_matches_float64() -> None:
    x = _inputs(3000)
    w, h, d = _params((3000,), seed=2)
    y64, lad = rational_quadratic_spline(x, w, h, d, inverse=True, tail_bound=BOUND)
    y32, _ = rational_quadratic_spline(x.float(), w.float(), h.float(), d.float(), inverse=True, tail_bound=BOUND)
    error = (y32.double() - y64).abs()
    assert torch.quantile(error, 0.999).item() < 1e-4
    # Where the inverse is steep, float32 rounding (of x, and in the quadratic root solve) is magnified by dy/dx
    # (up to ~80 here): the bound follows the conditioning, 128 ulps of the input's scale times the slope. (A
    # flat 1e-4 held with AVX2 kernels and failed by 10% with AVX-512 ones; the worst point uses 64 ulps.)
    slope = lad.exp().clamp(min=1.0)
    bound = 1e-5 + 128 * torch.finfo(torch.float32).eps * (1 + x.abs()) * slope
    assert bool((error <= bound).all())
    assert not bool((error + 1e-3 <= bound).all())  # negative control: a 1e-3 error anywhere would fail


def _randomised(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module.eval()


def test_sdp_flow_blocks_invert() -> None:
    # float64: with random (untrained) spline parameters some bins are very steep, and float32 rounding
    # of the forward output is then magnified by up to 1/min_slope in the inverse.
    gen = torch.Generator().manual_seed(3)
    mask = (torch.arange(30)[None, :] < torch.tensor([30, 17])[:, None]).unsqueeze(1).double()
    x = 3 * torch.randn(2, 2, 30, generator=gen, dtype=torch.float64) * mask
    g = torch.randn(2, 16, 30, generator=gen, dtype=torch.float64)
    for flow in (_randomised(ConvFlow(2, 16, 3, 3), 0), _randomised(ElementwiseAffine(2), 1)):
        flow = flow.double()
        with torch.no_grad():
            y, logdet = flow(x, mask, g=g)
            back = flow(y, mask, g=g, reverse=True)
        assert logdet.shape == (2,)
        assert (back - x).abs().max().item() < 1e-9
        assert (y - x).abs().max().item() > 1e-2
    positive = torch.rand(2, 1, 30, generator=gen, dtype=torch.float64) + 0.1
    y, _ = LogFlow()(positive, mask)
    assert (LogFlow()(y, mask, reverse=True) - positive * mask).abs().max().item() < 1e-12


def test_sdp_training_forward_is_finite_injectable_and_detached() -> None:
    sdp = _randomised(StochasticDurationPredictor(16, 16, 3, 0.0, 4, gin_channels=8), 4)
    gen = torch.Generator().manual_seed(5)
    mask = (torch.arange(20)[None, :] < torch.tensor([20, 12])[:, None]).unsqueeze(1).float()
    x = torch.randn(2, 16, 20, generator=gen, requires_grad=True)
    g = torch.randn(2, 8, 1, generator=gen)
    w = torch.randint(1, 6, (2, 1, 20), generator=gen).float() * mask
    noise = torch.randn(2, 2, 20, generator=gen)
    nll = sdp(x, mask, w, g=g, noise=noise)
    assert nll.shape == (2,) and torch.isfinite(nll).all()
    assert torch.equal(nll, sdp(x, mask, w, g=g, noise=noise))
    assert not torch.equal(nll, sdp(x, mask, w, g=g, noise=noise + 0.5))
    nll.sum().backward()
    assert x.grad is None  # the text-encoder output is detached, as upstream
    assert sdp.post_flows[1].proj.weight.grad.abs().sum() > 0 and sdp.flows[1].proj.weight.grad.abs().sum() > 0
    # Inference path: zero noise is deterministic and masked.
    logw = sdp.infer(x, mask, g)
    assert logw.shape == (2, 1, 20) and torch.all(logw[1, :, 12:] == 0)
