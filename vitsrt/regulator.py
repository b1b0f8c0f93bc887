"""Host-side length regulation and per-request noise, shared by every backend (numpy only).

Between the duration graph and the flow graph, VITS turns per-token log-durations into integer frame
counts and repeats each token's prior statistics that many times. Upstream does this inside the model
with a boolean path matrix and ``randn_like``; here it runs on the host so that

* graphs stay free of data-dependent shapes (the frame count F is only known after this step), and
* all randomness comes from a per-request seed, so a request's audio never depends on which other
  requests happened to share its batch, and every backend (ORT, TensorRT, torch) sees identical noise.

Everything is vectorised over batch and time; the only Python loops are per-item array copies when
padding ragged items into a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from vitsrt.errors import InputError
from vitsrt.sampling import check_sampling

__all__ = [
    "RequestNoise",
    "batch_prior_eps",
    "batch_sdp_noise",
    "durations_from_logw",
    "expand_by_durations",
    "frame_lengths",
    "frame_to_token",
    "length_mask",
    "pad_batch",
    "sample_prior",
]

ScaleLike = float | npt.ArrayLike

# A single token lasting more than this many frames (~6 hours at 44.1 kHz / hop 512) can only come from
# a broken duration predictor; refusing it beats trying to allocate the result.
_MAX_TOKEN_FRAMES: Final = 1 << 24

# Sub-stream tags for the two noise sources of one request segment.
_SDP_STREAM: Final = 0
_PRIOR_STREAM: Final = 1
_BERT_FILLER_STREAM: Final = 2  # + slot index: Bert-VITS2's BERT inputs of the other languages
_UINT64_LIMIT: Final = 1 << 64


def _exp_f32(values: np.ndarray) -> np.ndarray:
    """float32 exp, correctly rounded: computed in float64 then rounded once.

    numpy's own float32 exp is a SIMD approximation that differs between CPUs by up to 2 ulp; the
    float64 route is platform-stable and agrees with PyTorch's CPU float32 exp to within 1 ulp (bitwise
    on ~99% of inputs), which matters because ``ceil`` turns a 1-ulp difference at an integer boundary
    into a whole frame.
    """
    return np.exp(values.astype(np.float64)).astype(np.float32)


def _per_item_scale(value: ScaleLike, batch: int, field: str) -> np.ndarray:
    """A scalar or per-item sampling value as float32 of shape [] or [B,1,1].

    Each value must lie in the field's range, the one requests have (vitsrt.sampling): InputError otherwise,
    so a caller that bypasses SynthesisRequest (a harness, a benchmark) still cannot ask for unbounded work.
    """
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == batch:
        arr = arr.reshape(batch, 1, 1)
    elif arr.ndim != 0:
        raise ValueError(f"{field} must be a scalar or have shape [{batch}], got {arr.shape}")
    for item in arr.flat:
        check_sampling(field, item)
    return arr.astype(np.float32)


def _check_mask_like(name: str, arr: np.ndarray, like: tuple[int, ...]) -> None:
    if arr.shape != like:
        raise ValueError(f"{name} has shape {arr.shape}, expected {like}")


def durations_from_logw(logw: npt.ArrayLike, x_mask: npt.ArrayLike, length_scale: ScaleLike) -> np.ndarray:
    """Integer frames per token, ``ceil(exp(logw) * x_mask * length_scale)``, as int64 [B,T].

    Mirrors upstream's float32 arithmetic (exp, times the mask, times the scale as a float32, each
    product rounded to float32) so durations agree with PyTorch except when ``exp(logw)*length_scale``
    lies within about one float32 ulp of an integer. ``length_scale`` may be a scalar or one value per
    item. Padding positions (mask 0) are 0 even if ``logw`` holds garbage there.
    """
    logw = np.asarray(logw, dtype=np.float32)
    x_mask = np.asarray(x_mask, dtype=np.float32)
    if logw.ndim != 3 or logw.shape[1] != 1:
        raise ValueError(f"logw must have shape [B,1,T], got {logw.shape}")
    _check_mask_like("x_mask", x_mask, logw.shape)
    scale = _per_item_scale(length_scale, logw.shape[0], "length_scale")
    valid = x_mask > 0
    with np.errstate(over="ignore", invalid="ignore"):
        frames = (_exp_f32(logw) * x_mask) * scale
        frames = np.where(valid, np.ceil(frames), np.float32(0))
    if not np.isfinite(frames).all():
        raise ValueError("durations are not finite: logw contains NaN or values too large for exp")
    if (frames > _MAX_TOKEN_FRAMES).any():
        raise ValueError(f"a token lasts more than {_MAX_TOKEN_FRAMES} frames: the duration predictor output is broken")
    return frames[:, 0, :].astype(np.int64)


def frame_lengths(durations: npt.ArrayLike) -> np.ndarray:
    """Frames per item, ``max(sum(durations), 1)`` as int64 [B] (upstream never produces 0 frames)."""
    d = np.asarray(durations)
    return np.maximum(d.sum(axis=-1, dtype=np.int64), 1)


def frame_to_token(durations: npt.ArrayLike, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Which token each output frame repeats.

    Returns ``(index [B,F] int64, covered [B,F] bool)``: frame f of item b belongs to token t with
    ``cumsum[t-1] <= f < cumsum[t]``; frames at or past the item's total duration are not covered
    (their index is clamped to a valid token so it can still be used for gathering).

    One ``searchsorted`` handles the whole batch: each row's cumulative sums are shifted by
    ``row * K`` (K larger than any row's values or frame index), which keeps the flattened array
    sorted and makes every query land in its own row.
    """
    d = _as_durations(durations)
    batch, tokens = d.shape
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    cum = np.cumsum(d, axis=1)
    totals = cum[:, -1]
    stride = int(max(num_frames, int(totals.max(initial=0)))) + 1
    row_offset = np.arange(batch, dtype=np.int64)[:, None] * stride
    frames = np.arange(num_frames, dtype=np.int64)[None, :]
    flat_index = np.searchsorted((cum + row_offset).ravel(), (frames + row_offset).ravel(), side="right")
    index = flat_index.reshape(batch, num_frames) - np.arange(batch, dtype=np.int64)[:, None] * tokens
    covered = frames < totals[:, None]
    return np.minimum(index, tokens - 1), covered


def _as_durations(durations: npt.ArrayLike) -> np.ndarray:
    d = np.asarray(durations)
    if d.ndim != 2:
        raise ValueError(f"durations must have shape [B,T], got {d.shape}")
    if d.shape[1] == 0:
        raise ValueError("durations must cover at least one token (T >= 1)")
    if d.dtype.kind not in "iu":
        raise ValueError(f"durations must be integers, got dtype {d.dtype}")
    if (d < 0).any():
        raise ValueError("durations must not be negative")
    return d.astype(np.int64, copy=False)


def length_mask(lengths: npt.ArrayLike, size: int | None = None, dtype: npt.DTypeLike = np.float32) -> np.ndarray:
    """Validity mask [B,1,size]: 1 where position < length (size defaults to max(lengths))."""
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if size is None:
        size = int(lengths.max(initial=0))
    return (np.arange(size, dtype=np.int64)[None, :] < lengths[:, None]).astype(dtype)[:, None, :]


def expand_by_durations(
    durations: npt.ArrayLike, *arrays: npt.ArrayLike, max_frames: int | None = None
) -> tuple[np.ndarray, ...]:
    """Repeat each token's column of every ``[B,C,T]`` array by its duration.

    Returns ``(*expanded, y_mask, y_lengths)``: each expanded array is ``[B,C,F]`` in its input dtype,
    ``y_mask`` is float32 ``[B,1,F]`` and ``y_lengths`` int64 ``[B]`` (``max(sum(durations), 1)``).
    F is ``max(y_lengths)`` or ``max_frames`` when given (for a fixed padded size; it must not be
    smaller than the longest item). Frames past an item's durations are 0, which also covers the
    single frame upstream keeps for an item whose durations are all 0.

    Example: ``m, logs, y_mask, y_lengths = expand_by_durations(d, m_p, logs_p)``.
    """
    d = _as_durations(durations)
    batch, tokens = d.shape
    y_lengths = frame_lengths(d)
    longest = int(y_lengths.max(initial=1))
    if max_frames is None:
        num_frames = longest
    elif max_frames < longest:
        raise ValueError(f"max_frames={max_frames} is shorter than the longest item ({longest} frames)")
    else:
        num_frames = int(max_frames)
    index, covered = frame_to_token(d, num_frames)
    gather = index[:, None, :]
    keep = covered[:, None, :]
    expanded = []
    for position, array in enumerate(arrays):
        arr = np.asarray(array)
        if arr.ndim != 3 or arr.shape[0] != batch or arr.shape[2] != tokens:
            raise ValueError(f"array {position} has shape {arr.shape}, expected [{batch}, C, {tokens}]")
        picked = np.take_along_axis(arr, gather, axis=2)
        expanded.append(np.where(keep, picked, np.zeros((), dtype=arr.dtype)))
    y_mask = length_mask(y_lengths, num_frames)
    return (*expanded, y_mask, y_lengths)


def pad_batch(
    arrays: Sequence[npt.ArrayLike], axis: int = -1, value: float = 0, size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged items into one padded batch.

    Items must agree on every dimension except ``axis`` (counted on the item, before the new batch
    axis is prepended). Returns ``(batch, lengths)``: ``batch`` has shape ``[B, ...]`` with ``axis``
    padded to ``size`` (default: the longest item) with ``value``, ``lengths`` is int64 [B].
    Combine with :func:`length_mask` for the matching mask.
    """
    items = [np.asarray(a) for a in arrays]
    if not items:
        raise ValueError("pad_batch needs at least one array")
    ndim = items[0].ndim
    if ndim == 0:
        raise ValueError("pad_batch needs arrays with at least one dimension")
    if any(a.ndim != ndim for a in items):
        raise ValueError(f"all arrays must have the same rank, got {[a.ndim for a in items]}")
    ax = axis % ndim
    other = [tuple(np.delete(np.array(a.shape), ax)) for a in items]
    if any(o != other[0] for o in other):
        raise ValueError(f"arrays differ outside axis {axis}: {[a.shape for a in items]}")
    lengths = np.array([a.shape[ax] for a in items], dtype=np.int64)
    longest = int(lengths.max())
    if size is None:
        size = longest
    elif size < longest:
        raise ValueError(f"size={size} is shorter than the longest item ({longest})")
    shape = list(items[0].shape)
    shape[ax] = size
    out = np.full((len(items), *shape), value, dtype=np.result_type(*items))
    for row, item in enumerate(items):
        target = [slice(None)] * ndim
        target[ax] = slice(0, item.shape[ax])
        out[(row, *target)] = item
    return out, lengths


def sample_prior(
    m_p: npt.ArrayLike,
    logs_p: npt.ArrayLike,
    eps: npt.ArrayLike,
    noise_scale: ScaleLike,
    y_mask: npt.ArrayLike | None = None,
) -> np.ndarray:
    """``z_p = m_p + eps * exp(logs_p) * noise_scale`` (float32, upstream's operation order), times
    ``y_mask`` when given. All arrays are expanded ``[B,C,F]``; ``noise_scale`` is a scalar or per item.
    """
    m = np.asarray(m_p, dtype=np.float32)
    logs = np.asarray(logs_p, dtype=np.float32)
    noise = np.asarray(eps, dtype=np.float32)
    if m.ndim != 3:
        raise ValueError(f"m_p must have shape [B,C,F], got {m.shape}")
    _check_mask_like("logs_p", logs, m.shape)
    _check_mask_like("eps", noise, m.shape)
    scale = _per_item_scale(noise_scale, m.shape[0], "noise_scale")
    z_p = m + (noise * _exp_f32(logs)) * scale
    if y_mask is not None:
        mask = np.asarray(y_mask, dtype=np.float32)
        _check_mask_like("y_mask", mask, (m.shape[0], 1, m.shape[2]))
        z_p = z_p * mask
    return z_p


class RequestNoise:
    """Reproducible noise for one request segment (one sentence).

    Each draw is a pure function of ``(seed, segment, purpose, size)``: a fresh PCG64 generator is
    seeded from ``SeedSequence(seed, spawn_key=(segment, purpose))`` on every call. So the noise an item
    gets does not depend on call order, on retries, or on the batch it is padded into, and the SDP noise
    and the prior noise are independent streams. Use ``segment`` to give each sentence of a long text
    its own noise under one request seed.
    """

    __slots__ = ("_seed", "_segment")

    def __init__(self, seed: int, segment: int = 0) -> None:
        self._seed = _check_seed(seed, "seed")
        self._segment = _check_seed(segment, "segment")

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def segment(self) -> int:
        return self._segment

    def __repr__(self) -> str:
        return f"RequestNoise(seed={self._seed}, segment={self._segment})"

    def _generator(self, purpose: int) -> np.random.Generator:
        sequence = np.random.SeedSequence(entropy=self._seed, spawn_key=(self._segment, purpose))
        return np.random.Generator(np.random.PCG64(sequence))

    def sdp_noise(self, tokens: int, noise_scale_w: float) -> np.ndarray:
        """Stochastic-duration-predictor input noise ``randn(2, T) * noise_scale_w`` as float32 [2,T]."""
        tokens = _check_size(tokens, "tokens")
        scale = _per_item_scale(noise_scale_w, 1, "noise_scale_w")
        return self._generator(_SDP_STREAM).standard_normal((2, tokens), dtype=np.float32) * scale

    def prior_eps(self, channels: int, frames: int) -> np.ndarray:
        """Unit normal noise for the prior sample, float32 [C,F] (scale it with :func:`sample_prior`)."""
        channels = _check_size(channels, "channels")
        frames = _check_size(frames, "frames")
        return self._generator(_PRIOR_STREAM).standard_normal((channels, frames), dtype=np.float32)

    def bert_filler(self, slot: int, dim: int, tokens: int) -> np.ndarray:
        """Unit normal noise float32 [dim, T] for BERT input number `slot` when the sentence is in another
        language: Bert-VITS2 2.3 fills those inputs with randn, in training and in inference, not zeros."""
        dim, tokens, slot = _check_size(dim, "dim"), _check_size(tokens, "tokens"), _check_size(slot, "slot")
        return self._generator(_BERT_FILLER_STREAM + slot).standard_normal((dim, tokens), dtype=np.float32)


def _check_seed(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(field, f"must be an integer, got {type(value).__name__}")
    value = int(value)
    if not 0 <= value < _UINT64_LIMIT:
        raise InputError(field, "must be in 0 .. 2**64-1")
    return value


def _check_size(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def batch_sdp_noise(
    noises: Sequence[RequestNoise],
    token_lengths: npt.ArrayLike,
    noise_scale_w: ScaleLike,
    max_tokens: int | None = None,
) -> np.ndarray:
    """The ``sdp_noise`` input for a padded batch, float32 [B,2,T]: item b's own noise for its own
    length, zero in padding. ``noise_scale_w`` is a scalar or one value per item."""
    lengths = np.asarray(token_lengths, dtype=np.int64).reshape(-1)
    if len(noises) != lengths.shape[0]:
        raise ValueError(f"{len(noises)} noise sources for {lengths.shape[0]} items")
    scales = np.broadcast_to(np.asarray(noise_scale_w, dtype=np.float64), lengths.shape)
    parts = [n.sdp_noise(int(t), float(s)) for n, t, s in zip(noises, lengths, scales, strict=True)]
    return pad_batch(parts, axis=-1, size=max_tokens)[0]


def batch_prior_eps(
    noises: Sequence[RequestNoise], channels: int, y_lengths: npt.ArrayLike, max_frames: int | None = None
) -> np.ndarray:
    """Prior noise for a padded batch, float32 [B,C,F]: item b's own eps for its own frame count,
    zero in padding (so padded frames of ``z_p`` stay exactly ``m_p`` = 0)."""
    lengths = np.asarray(y_lengths, dtype=np.int64).reshape(-1)
    if len(noises) != lengths.shape[0]:
        raise ValueError(f"{len(noises)} noise sources for {lengths.shape[0]} items")
    parts = [n.prior_eps(channels, int(f)) for n, f in zip(noises, lengths, strict=True)]
    return pad_batch(parts, axis=-1, size=max_frames)[0]

