"""Monotonic alignment search: the vectorised search equals a plain per-cell reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitsrt.train.alignment import maximum_path, maximum_path_numpy, maximum_path_reference


def _random_case(rng: np.random.Generator, ties: bool):
    batch = int(rng.integers(1, 5))
    tokens = rng.integers(1, 14, size=batch)
    frames = tokens + rng.integers(0, 20, size=batch)
    values = rng.standard_normal((batch, int(tokens.max()), int(frames.max()))).astype(np.float32)
    if ties:
        values = np.round(values)  # many equal scores: the tie rule decides
    return values, tokens, frames


@pytest.mark.parametrize("ties", [False, True])
def test_vectorised_search_equals_reference(ties):
    rng = np.random.default_rng(7 if ties else 3)
    for _ in range(150):
        values, tokens, frames = _random_case(rng, ties)
        fast = maximum_path_numpy(values, tokens, frames)
        slow = maximum_path_reference(values, tokens, frames)
        np.testing.assert_array_equal(fast, slow)


def test_path_is_monotonic_and_covers_every_frame_once():
    rng = np.random.default_rng(11)
    values, tokens, frames = _random_case(rng, ties=False)
    path = maximum_path_numpy(values, tokens, frames)
    for b in range(len(tokens)):
        t_x, t_y = tokens[b], frames[b]
        item = path[b]
        assert item[:, t_y:].sum() == 0 and item[t_x:].sum() == 0  # nothing in the padding
        assert (item[:t_x, :t_y].sum(0) == 1).all()  # one token per frame
        assert (item[:t_x, :t_y].sum(1) >= 1).all()  # no token skipped
        owner = item[:t_x, :t_y].argmax(0)
        assert owner[0] == 0 and owner[-1] == t_x - 1 and (np.diff(owner) >= 0).all()
        assert (np.diff(owner) <= 1).all()


def test_search_finds_a_planted_alignment():
    """Scores that strongly prefer a known segmentation must recover exactly it."""
    durations = np.array([3, 1, 4, 2])
    owner = np.repeat(np.arange(4), durations)
    values = np.full((1, 4, owner.size), -5.0, dtype=np.float32)
    values[0, owner, np.arange(owner.size)] = 5.0
    path = maximum_path_numpy(values, np.array([4]), np.array([owner.size]))
    np.testing.assert_array_equal(path[0].sum(1), durations)


def test_negative_control_a_wrong_tie_rule_is_caught():
    """The comparison can fail: a search that moves on ties gives different paths on tied scores."""
    values = np.zeros((1, 3, 6), dtype=np.float32)
    reference = maximum_path_reference(values, np.array([3]), np.array([6]))
    flipped = maximum_path_reference(values[:, ::-1, ::-1].copy(), np.array([3]), np.array([6]))[:, ::-1, ::-1]
    assert not np.array_equal(reference, flipped)
    np.testing.assert_array_equal(maximum_path_numpy(values, np.array([3]), np.array([6])), reference)


def test_torch_wrapper_uses_the_upstream_layout():
    rng = np.random.default_rng(5)
    values, tokens, frames = _random_case(rng, ties=False)
    neg_cent = torch.from_numpy(values).transpose(1, 2).contiguous()  # [B, frames, tokens]
    mask = torch.zeros_like(neg_cent)
    for b in range(len(tokens)):
        mask[b, : frames[b], : tokens[b]] = 1
    path = maximum_path(neg_cent, mask)
    assert path.shape == neg_cent.shape and path.dtype == neg_cent.dtype
    expected = maximum_path_reference(values, tokens, frames)
    np.testing.assert_array_equal(path.transpose(1, 2).numpy(), expected)
