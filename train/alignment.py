"""Monotonic alignment search (MAS): the most likely monotonic, surjective text-to-frame path.

VITS trains its duration predictors on the durations this search finds. Every frame belongs to
exactly one token, tokens appear in order, none is skipped, so the path through the
[tokens x frames] log-likelihood grid moves one frame right per step and either stays on its
token or moves to the next one.

Upstream compiles a per-element loop (Cython / numba). Here the dynamic programme runs one frame
column at a time, vectorised over batch and tokens with numpy: a column depends only on the
column before it, so T_frames small array operations replace B * T_tokens * T_frames scalar
steps, and no compiler or extra package is needed. Ties and edge rules equal upstream's:
staying on a token wins a tie; the search is confined to the band of cells from which the last
token can still be reached at the last frame.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["maximum_path", "maximum_path_numpy", "maximum_path_reference"]

_NEG_INF = np.float32(-np.inf)


@torch.compiler.disable  # numpy inside: torch.compile must not trace it (it would try to, and fail)
def maximum_path(neg_cent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Best monotonic path for a batch.

    neg_cent [B, T_frames, T_tokens]: log-likelihood of frame j under token i (upstream layout);
    mask [B, T_frames, T_tokens]: 1 inside each item's (frames x tokens) rectangle.
    Returns a 0/1 tensor like ``neg_cent`` (same dtype and device) with one 1 per valid frame.
    """
    values = neg_cent.detach().float().cpu().numpy()
    mask_np = mask.detach().cpu().numpy() > 0
    frame_lengths = mask_np[:, :, 0].sum(axis=1).astype(np.int64)
    token_lengths = mask_np[:, 0, :].sum(axis=1).astype(np.int64)
    path = maximum_path_numpy(np.swapaxes(values, 1, 2), token_lengths, frame_lengths)
    return torch.from_numpy(np.swapaxes(path, 1, 2).copy()).to(device=neg_cent.device, dtype=neg_cent.dtype)


def maximum_path_numpy(values: np.ndarray, token_lengths: np.ndarray, frame_lengths: np.ndarray) -> np.ndarray:
    """values [B, T_tokens, T_frames] float32 -> path [B, T_tokens, T_frames] float32 (0/1).

    Column-wise dynamic programme: ``score[i, j] = values[i, j] + max(score[i, j-1], score[i-1, j-1])``
    inside the reachable band, -inf outside it. Only the choice made at each cell is kept
    (one bool per cell) for the backtrack, which then also runs one column at a time.
    """
    values = np.ascontiguousarray(values, dtype=np.float32)
    batch, n_tokens, n_frames = values.shape
    token_lengths = np.asarray(token_lengths, dtype=np.int64).reshape(batch)
    frame_lengths = np.asarray(frame_lengths, dtype=np.int64).reshape(batch)
    path = np.zeros_like(values)
    if n_tokens == 0 or n_frames == 0:
        return path

    token_index = np.arange(n_tokens)[None, :, None]  # [1, T_tokens, 1]
    frame_index = np.arange(n_frames)[None, None, :]  # [1, 1, T_frames]
    # The band: token i can hold frame j only if i <= j (earlier tokens each need a frame) and the
    # remaining tokens still fit into the remaining frames; padding is outside every band.
    in_band = (
        (token_index < token_lengths[:, None, None])
        & (frame_index < frame_lengths[:, None, None])
        & (token_index <= frame_index)
        & (token_index - frame_index >= (token_lengths - frame_lengths)[:, None, None])
    )
    # Frame-major copies so each column is one contiguous [B, T_tokens] block.
    banded = np.ascontiguousarray(np.where(in_band, values, _NEG_INF).transpose(2, 0, 1))
    # took_previous[j, b, i]: the best path into (i, j) came from token i-1 (the diagonal move).
    took_previous = np.zeros((n_frames, batch, n_tokens), dtype=bool)
    score = banded[0].copy()
    score[:, 1:] = _NEG_INF  # a path starts on the first token
    shifted = np.full_like(score, _NEG_INF)
    for j in range(1, n_frames):
        shifted[:, 1:] = score[:, :-1]
        from_previous = np.less(score, shifted, out=took_previous[j])  # strict: ties stay, as upstream
        np.copyto(score, shifted, where=from_previous)
        score += banded[j]

    # Backtrack from the last token at each item's last frame.
    rows = np.arange(batch)
    index = token_lengths - 1
    for j in range(n_frames - 1, -1, -1):
        active = j < frame_lengths
        path[rows[active], index[active], j] = 1.0
        step_down = active & (index > 0) & ((index == j) | took_previous[j, rows, index])
        index = index - step_down.astype(np.int64)
    return path


def maximum_path_reference(values: np.ndarray, token_lengths: np.ndarray, frame_lengths: np.ndarray) -> np.ndarray:
    """Plain per-cell loops of the same search (slow): the yardstick for tests and benchmarks."""
    values = np.array(values, dtype=np.float32)
    path = np.zeros_like(values)
    for b in range(values.shape[0]):
        t_x, t_y = int(token_lengths[b]), int(frame_lengths[b])
        score = values[b]
        for y in range(t_y):
            for x in range(max(0, t_x + y - t_y), min(t_x, y + 1)):
                stay = _NEG_INF if x == y else score[x, y - 1]
                start = np.float32(0.0) if y == 0 else _NEG_INF
                move = start if x == 0 else score[x - 1, y - 1]
                score[x, y] = score[x, y] + max(stay, move)
        index = t_x - 1
        for y in range(t_y - 1, -1, -1):
            path[b, index, y] = 1.0
            if index != 0 and (index == y or score[index, y - 1] < score[index - 1, y - 1]):
                index -= 1
    return path
