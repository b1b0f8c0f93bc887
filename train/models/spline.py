"""Monotone piecewise rational-quadratic spline on [-B, B] with identity (linear) tails.

Same maths as the neural-spline-flow transform upstream uses in the stochastic duration predictor,
but branch-free: the spline is evaluated for every element (on inputs clamped into the interval, so
nothing overflows or turns NaN in the unused branch) and ``torch.where`` picks spline or identity.
There is no boolean-mask indexing and no in-place write, so it traces to static ONNX ops
(Softmax, CumSum, GatherElements, Where) with any batch/time size.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3
# Outward nudge of the last knot in the bin search, so a value sitting exactly on it stays in range.
_SEARCH_EPS = 1e-6


def _knots(unnormalized: torch.Tensor, low: float, high: float, min_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin sizes from logits -> (knot positions [..., K+1] pinned to low/high, bin sizes [..., K])."""
    num_bins = unnormalized.shape[-1]
    sizes = min_size + (1 - min_size * num_bins) * F.softmax(unnormalized, dim=-1)
    inner = (high - low) * torch.cumsum(sizes, dim=-1)[..., :-1] + low
    edge = torch.ones_like(inner[..., :1])
    knots = torch.cat([edge * low, inner, edge * high], dim=-1)
    return knots, knots[..., 1:] - knots[..., :-1]


def _bin_index(knots: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Index of the bin holding each value: count of knots <= value, minus one, kept in [0, K-1]."""
    # The last knot is nudged outward so a value equal to the upper bound lands in the last bin.
    nudge = torch.zeros_like(knots[..., :1])
    nudged = torch.cat([knots[..., :-1], knots[..., -1:] + (nudge + _SEARCH_EPS)], dim=-1)
    count = torch.sum((values.unsqueeze(-1) >= nudged).to(torch.int64), dim=-1)
    return torch.clamp(count - 1, 0, knots.shape[-1] - 2).unsqueeze(-1)


def _pick(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(table, -1, index).squeeze(-1)


def rational_quadratic_spline(
    inputs: torch.Tensor,
    unnormalized_widths: torch.Tensor,
    unnormalized_heights: torch.Tensor,
    unnormalized_derivatives: torch.Tensor,
    inverse: bool = False,
    tail_bound: float = 1.0,
    min_bin_width: float = MIN_BIN_WIDTH,
    min_bin_height: float = MIN_BIN_HEIGHT,
    min_derivative: float = MIN_DERIVATIVE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise spline transform with linear tails outside [-tail_bound, tail_bound].

    inputs [...]; widths/heights [..., K]; derivatives [..., K-1] (interior knots only; the two
    boundary slopes are fixed to 1). Returns (outputs, log|d out / d in|), both shaped like inputs.
    ``inverse=True`` applies the inverse map and returns the log-derivative of the inverse.
    """
    num_bins = unnormalized_widths.shape[-1]
    if min_bin_width * num_bins > 1.0 or min_bin_height * num_bins > 1.0:
        raise ValueError("minimal bin width/height too large for the number of bins")
    low, high = -tail_bound, tail_bound
    inside = (inputs >= low) & (inputs <= high)
    x = torch.clamp(inputs, low, high)

    # Pre-softplus value that makes the boundary slopes exactly 1: the spline joins the identity tails C1.
    boundary = math.log(math.expm1(1 - min_derivative))
    pad = torch.full_like(unnormalized_derivatives[..., :1], boundary)
    slopes = min_derivative + F.softplus(torch.cat([pad, unnormalized_derivatives, pad], dim=-1))

    cum_w, widths = _knots(unnormalized_widths, low, high, min_bin_width)
    cum_h, heights = _knots(unnormalized_heights, low, high, min_bin_height)

    index = _bin_index(cum_h if inverse else cum_w, x)
    x_k, w_k = _pick(cum_w, index), _pick(widths, index)
    y_k, h_k = _pick(cum_h, index), _pick(heights, index)
    s_k = _pick(heights / widths, index)
    d_k, d_k1 = _pick(slopes, index), _pick(slopes[..., 1:], index)
    curvature = d_k + d_k1 - 2 * s_k

    if inverse:
        # Solve the bin's rational quadratic for theta: a*theta^2 + b*theta + c = 0, stable root form.
        dy = x - y_k
        a = dy * curvature + h_k * (s_k - d_k)
        b = h_k * d_k - dy * curvature
        c = -s_k * dy
        theta = (2 * c) / (-b - torch.sqrt(b.pow(2) - 4 * a * c))
        out = theta * w_k + x_k
        t1mt = theta * (1 - theta)
        denominator = s_k + curvature * t1mt
    else:
        theta = (x - x_k) / w_k
        t1mt = theta * (1 - theta)
        denominator = s_k + curvature * t1mt
        out = y_k + h_k * (s_k * theta.pow(2) + d_k * t1mt) / denominator

    slope_numerator = s_k.pow(2) * (d_k1 * theta.pow(2) + 2 * s_k * t1mt + d_k * (1 - theta).pow(2))
    logabsdet = torch.log(slope_numerator) - 2 * torch.log(denominator)
    if inverse:
        logabsdet = -logabsdet

    outputs = torch.where(inside, out, inputs)
    logabsdet = torch.where(inside, logabsdet, torch.zeros_like(logabsdet))
    return outputs, logabsdet
