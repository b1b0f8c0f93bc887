"""Host length regulation and per-request noise (vitsrt.regulator) against slow references and the
upstream Bert-VITS2 2.3 fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitsrt.errors import InputError
from vitsrt.regulator import (
    RequestNoise,
    batch_prior_eps,
    batch_sdp_noise,
    durations_from_logw,
    expand_by_durations,
    frame_lengths,
    frame_to_token,
    length_mask,
    pad_batch,
    sample_prior,
)

CASES = [f"case{k}" for k in range(6)]


# ---------------------------------------------------------------- slow references (one element at a time)


def reference_durations(logw: np.ndarray, x_mask: np.ndarray, length_scale: float) -> np.ndarray:
    batch, _, tokens = logw.shape
    out = np.zeros((batch, tokens), dtype=np.int64)
    scale = np.float32(length_scale)
    for b in range(batch):
        for t in range(tokens):
            if x_mask[b, 0, t] > 0:
                w = np.float32(np.exp(np.float64(logw[b, 0, t])))
                out[b, t] = int(np.ceil(np.float32(w * x_mask[b, 0, t]) * scale))
    return out


def reference_expand(durations: np.ndarray, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    batch, channels, tokens = arr.shape
    lengths = np.array([max(int(durations[b].sum()), 1) for b in range(batch)], dtype=np.int64)
    frames = int(lengths.max())
    out = np.zeros((batch, channels, frames), dtype=arr.dtype)
    mask = np.zeros((batch, 1, frames), dtype=np.float32)
    for b in range(batch):
        f = 0
        for t in range(tokens):
            for _ in range(int(durations[b, t])):
                out[b, :, f] = arr[b, :, t]
                f += 1
        mask[b, 0, : lengths[b]] = 1
    return out, mask, lengths


def random_batch(rng: np.random.Generator, lengths: list[int], channels: int = 4):
    tokens = max(lengths)
    x_mask = length_mask(lengths, tokens)
    logw = rng.normal(0.3, 0.9, size=(len(lengths), 1, tokens)).astype(np.float32) * x_mask
    arr = rng.normal(size=(len(lengths), channels, tokens)).astype(np.float32) * x_mask
    return logw, x_mask, arr


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize("lengths", [[1], [7], [5, 1, 9], [12, 12], [3, 8, 1, 6]])
@pytest.mark.parametrize("length_scale", [1.0, 0.7, 1.3])
def test_durations_match_reference(lengths, length_scale):
    rng = np.random.default_rng(len(lengths) * 100 + int(length_scale * 10))
    logw, x_mask, _ = random_batch(rng, lengths)
    got = durations_from_logw(logw, x_mask, length_scale)
    assert got.dtype == np.int64 and got.shape == (len(lengths), max(lengths))
    np.testing.assert_array_equal(got, reference_durations(logw, x_mask, length_scale))
    # padding is zero whatever logw holds there
    assert (got[x_mask[:, 0] == 0] == 0).all()


def test_durations_ignore_garbage_in_padding():
    logw = np.array([[[0.1, 0.2, 1e6, np.nan]]], dtype=np.float32)
    x_mask = length_mask([2], 4)
    np.testing.assert_array_equal(durations_from_logw(logw, x_mask, 1.0), [[2, 2, 0, 0]])


def test_per_item_length_scale_equals_scalar_runs():
    rng = np.random.default_rng(5)
    logw, x_mask, _ = random_batch(rng, [6, 9, 4])
    scales = np.array([0.8, 1.0, 1.4])
    together = durations_from_logw(logw, x_mask, scales)
    for b, s in enumerate(scales):
        np.testing.assert_array_equal(together[b], durations_from_logw(logw[b : b + 1], x_mask[b : b + 1], s)[0])


def test_durations_match_torch_formula():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    logw = rng.uniform(-3, 3, size=(4, 1, 5000)).astype(np.float32)
    x_mask = np.ones_like(logw)
    for scale in (1.0, 0.9, 1.3):
        expected = torch.ceil(torch.exp(torch.from_numpy(logw)) * torch.from_numpy(x_mask) * scale)
        np.testing.assert_array_equal(durations_from_logw(logw, x_mask, scale), expected[:, 0].long().numpy())


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_length_scale_names_the_field(bad):
    with pytest.raises(InputError) as info:
        durations_from_logw(np.zeros((1, 1, 3), np.float32), np.ones((1, 1, 3), np.float32), bad)
    assert info.value.field == "length_scale"


def test_non_finite_durations_are_refused():
    x_mask = np.ones((1, 1, 2), np.float32)
    with pytest.raises(ValueError, match="not finite"):
        durations_from_logw(np.array([[[0.0, np.nan]]], np.float32), x_mask, 1.0)
    with pytest.raises(ValueError, match="not finite"):
        durations_from_logw(np.array([[[0.0, 200.0]]], np.float32), x_mask, 1.0)
    with pytest.raises(ValueError, match="shape"):
        durations_from_logw(np.zeros((1, 2), np.float32), np.ones((1, 2), np.float32), 1.0)


# ---------------------------------------------------------------- expansion


@pytest.mark.parametrize(
    "durations",
    [
        [[3]],
        [[0]],
        [[0, 0, 0]],
        [[1, 0, 2, 0, 3]],
        [[2, 3, 1], [0, 0, 0], [4, 0, 0]],
        [[0, 5], [1, 1]],
    ],
)
def test_expand_matches_reference_on_edge_cases(durations):
    d = np.array(durations, dtype=np.int64)
    rng = np.random.default_rng(d.size)
    arr = rng.normal(size=(d.shape[0], 3, d.shape[1])).astype(np.float32)
    out, y_mask, y_lengths = expand_by_durations(d, arr)
    ref, ref_mask, ref_lengths = reference_expand(d, arr)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(y_mask, ref_mask)
    np.testing.assert_array_equal(y_lengths, ref_lengths)
    assert y_mask.dtype == np.float32 and y_lengths.dtype == np.int64


def test_expand_random_batches_against_reference():
    rng = np.random.default_rng(2024)
    for trial in range(20):
        lengths = rng.integers(1, 30, size=rng.integers(1, 6)).tolist()
        logw, x_mask, arr = random_batch(rng, lengths, channels=5)
        logw[rng.random(logw.shape) < 0.2] = -20.0  # force some zero-duration tokens
        d = durations_from_logw(logw, x_mask, 1.0 + 0.1 * (trial % 3))
        second = (arr * 2 + 1).astype(np.float64)  # another array, another dtype
        out, out2, y_mask, y_lengths = expand_by_durations(d, arr, second)
        ref, ref_mask, ref_lengths = reference_expand(d, arr)
        np.testing.assert_array_equal(out, ref)
        np.testing.assert_array_equal(out2, reference_expand(d, second)[0])
        assert out2.dtype == np.float64
        np.testing.assert_array_equal(y_mask, ref_mask)
        np.testing.assert_array_equal(y_lengths, ref_lengths)


def test_expand_item_is_independent_of_batch():
    rng = np.random.default_rng(7)
    logw, x_mask, arr = random_batch(rng, [9, 4, 15])
    d = durations_from_logw(logw, x_mask, 1.0)
    out, y_mask, _ = expand_by_durations(d, arr)
    for b, length in enumerate([9, 4, 15]):
        alone, _, alone_len = expand_by_durations(d[b : b + 1, :length], arr[b : b + 1, :, :length])
        frames = int(alone_len[0])
        np.testing.assert_array_equal(out[b, :, :frames], alone[0])
        assert (out[b, :, frames:] == 0).all() and (y_mask[b, 0, frames:] == 0).all()


def test_expand_max_frames_pads_and_checks():
    d = np.array([[1, 2], [3, 0]])
    arr = np.arange(8, dtype=np.float32).reshape(2, 2, 2) + 1
    out, y_mask, y_lengths = expand_by_durations(d, arr, max_frames=6)
    assert out.shape == (2, 2, 6) and y_mask.shape == (2, 1, 6)
    np.testing.assert_array_equal(out[0, 0], [1, 2, 2, 0, 0, 0])
    np.testing.assert_array_equal(out[1, 1], [7, 7, 7, 0, 0, 0])
    np.testing.assert_array_equal(y_lengths, [3, 3])
    with pytest.raises(ValueError, match="max_frames"):
        expand_by_durations(d, arr, max_frames=2)


def test_expand_rejects_bad_durations():
    arr = np.zeros((1, 2, 2), np.float32)
    with pytest.raises(ValueError, match="negative"):
        expand_by_durations(np.array([[1, -1]]), arr)
    with pytest.raises(ValueError, match="integers"):
        expand_by_durations(np.array([[1.0, 2.0]]), arr)
    with pytest.raises(ValueError, match="array 0"):
        expand_by_durations(np.array([[1, 2, 3]]), arr)


def test_frame_to_token_index():
    index, covered = frame_to_token(np.array([[2, 0, 1], [0, 0, 0]]), 4)
    np.testing.assert_array_equal(index[0, :3], [0, 0, 2])
    np.testing.assert_array_equal(covered, [[True, True, True, False], [False] * 4])
    assert ((index >= 0) & (index < 3)).all()


def test_frame_lengths_never_zero():
    np.testing.assert_array_equal(frame_lengths(np.array([[0, 0], [2, 3]])), [1, 5])


# ---------------------------------------------------------------- upstream fixture


@pytest.fixture(scope="module")
def cases(fixture_dir: Path):
    path = fixture_dir / "cases.npz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def _case(cases: dict, case: str, name: str) -> np.ndarray:
    return cases[f"{case}_{name}"]


@pytest.mark.parametrize("case", CASES)
def test_fixture_durations_and_expansion(cases, case):
    logw = _case(cases, case, "logw")
    x_mask = length_mask(_case(cases, case, "x_lengths"), logw.shape[2])
    durations = durations_from_logw(logw, x_mask, float(_case(cases, case, "length_scale")))
    np.testing.assert_array_equal(durations, _case(cases, case, "durations")[:, 0].astype(np.int64))

    m_p = _case(cases, case, "m_p")
    m, logs, y_mask, y_lengths = expand_by_durations(durations, m_p, _case(cases, case, "logs_p"))
    np.testing.assert_array_equal(y_lengths, _case(cases, case, "y_lengths"))
    z_p = sample_prior(m, logs, np.zeros_like(m), 0.0, y_mask)  # the fixture uses noise_scale = 0
    ref = _case(cases, case, "z_p")
    assert z_p.shape == ref.shape
    # upstream's z_p is not masked past y_length (it is exactly m_p expanded, i.e. 0 there); compare all
    assert np.abs(z_p - ref).max() <= 1e-6


@pytest.mark.parametrize("case", ["case0", "case3", "case4"])
def test_fixture_negative_controls(cases, case):
    logw = _case(cases, case, "logw")
    lengths = _case(cases, case, "x_lengths")
    x_mask = length_mask(lengths, logw.shape[2])
    scale = float(_case(cases, case, "length_scale"))
    ref_d = _case(cases, case, "durations")[:, 0].astype(np.int64)

    # a predictor off by log(1.6) on its longest token gives different durations
    bad_logw = logw.copy()
    bad_logw[0, 0, int(np.argmax(logw[0, 0, : int(lengths[0])]))] += np.log(1.6)
    assert not np.array_equal(durations_from_logw(bad_logw, x_mask, scale), ref_d)

    # moving one frame from one token to its neighbour keeps the length but breaks z_p
    moved = ref_d.copy()
    t = int(np.argmax(moved[0] >= 2))
    moved[0, t] -= 1
    moved[0, t + 1] += 1
    m = expand_by_durations(moved, _case(cases, case, "m_p"))[0]
    assert np.abs(m - _case(cases, case, "z_p")).max() > 1e-3


# ---------------------------------------------------------------- noise


def test_same_seed_same_noise_different_seed_different():
    a, b, c = RequestNoise(42), RequestNoise(42), RequestNoise(43)
    np.testing.assert_array_equal(a.sdp_noise(17, 0.8), b.sdp_noise(17, 0.8))
    np.testing.assert_array_equal(a.prior_eps(8, 33), b.prior_eps(8, 33))
    assert not np.allclose(a.prior_eps(8, 33), c.prior_eps(8, 33))
    assert not np.allclose(a.sdp_noise(17, 0.8), c.sdp_noise(17, 0.8))
    # sentences of one request get their own noise
    assert not np.allclose(RequestNoise(42, segment=1).prior_eps(8, 33), a.prior_eps(8, 33))


def test_noise_is_pure_and_streams_independent():
    noise = RequestNoise(7)
    first = noise.prior_eps(4, 10)
    noise.sdp_noise(100, 1.0)  # drawing SDP noise in between must not shift the prior stream
    np.testing.assert_array_equal(noise.prior_eps(4, 10), first)
    assert not np.allclose(noise.sdp_noise(5, 1.0)[:, :5], noise.prior_eps(2, 5))


def test_noise_shapes_dtypes_and_scale():
    noise = RequestNoise(3)
    sdp = noise.sdp_noise(9, 0.5)
    assert sdp.shape == (2, 9) and sdp.dtype == np.float32
    np.testing.assert_array_equal(sdp, noise.sdp_noise(9, 1.0) * np.float32(0.5))
    assert not noise.sdp_noise(9, 0.0).any()
    eps = noise.prior_eps(6, 21)
    assert eps.shape == (6, 21) and eps.dtype == np.float32
    assert 0.5 < eps.std() < 1.5


def test_batched_noise_depends_only_on_own_seed_and_size():
    seeds, lengths = [1, 2, 3, 4], [5, 12, 1, 8]
    noises = [RequestNoise(s) for s in seeds]
    eps = batch_prior_eps(noises, 3, lengths)
    sdp = batch_sdp_noise(noises, lengths, [0.8, 0.9, 1.0, 0.5])
    assert eps.shape == (4, 3, 12) and sdp.shape == (4, 2, 12)
    # item 1 in another batch (different partners, order and padding) gets the same noise
    other_eps = batch_prior_eps([RequestNoise(9), noises[1]], 3, [30, 12], max_frames=40)
    np.testing.assert_array_equal(other_eps[1, :, :12], eps[1])
    other_sdp = batch_sdp_noise([noises[1]], [12], 0.9, max_tokens=16)
    np.testing.assert_array_equal(other_sdp[0, :, :12], sdp[1])
    for b, length in enumerate(lengths):
        np.testing.assert_array_equal(eps[b], np.pad(noises[b].prior_eps(3, length), ((0, 0), (0, 12 - length))))
        assert not sdp[b, :, length:].any()


def test_naive_batched_noise_would_fail_the_invariance_check():
    # negative control: one generator drawing for the padded batch makes item 1 depend on its partners
    def naive(seed_batch, frames):
        return np.random.default_rng(seed_batch).standard_normal((len(frames), 3, max(frames)), dtype=np.float32)

    assert not np.array_equal(naive(1, [5, 12])[1, :, :12], naive(1, [30, 12])[1, :, :12])


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, "7", True])
def test_bad_seed_names_the_field(seed):
    with pytest.raises(InputError) as info:
        RequestNoise(seed)
    assert info.value.field == "seed"


def test_sample_prior_formula_and_mask():
    rng = np.random.default_rng(0)
    m, logs, eps = (rng.normal(size=(2, 3, 5)).astype(np.float32) for _ in range(3))
    y_mask = length_mask([5, 2], 5)
    z = sample_prior(m, logs, eps, [0.6, 0.3], y_mask)
    expected = (m + eps * np.exp(logs.astype(np.float64)) * np.array([0.6, 0.3])[:, None, None]) * y_mask
    np.testing.assert_allclose(z, expected, rtol=1e-6, atol=1e-6)
    assert not z[1, :, 2:].any()
    with pytest.raises(InputError) as info:
        sample_prior(m, logs, eps, -0.1)
    assert info.value.field == "noise_scale"


# ---------------------------------------------------------------- padding helpers


def test_pad_batch_and_length_mask():
    items = [np.ones((2, 3)), np.full((2, 1), 2.0), np.full((2, 5), 3.0)]
    batch, lengths = pad_batch(items, axis=-1, value=-1)
    assert batch.shape == (3, 2, 5)
    np.testing.assert_array_equal(lengths, [3, 1, 5])
    np.testing.assert_array_equal(batch[1, 0], [2, -1, -1, -1, -1])
    mask = length_mask(lengths)
    assert mask.shape == (3, 1, 5) and mask.dtype == np.float32
    np.testing.assert_array_equal(mask[1, 0], [1, 0, 0, 0, 0])

    ids, id_lengths = pad_batch([np.arange(4), np.arange(2)], axis=0, size=6)
    np.testing.assert_array_equal(ids, [[0, 1, 2, 3, 0, 0], [0, 1, 0, 0, 0, 0]])
    assert ids.dtype == np.arange(1).dtype
    np.testing.assert_array_equal(id_lengths, [4, 2])

    with pytest.raises(ValueError, match="differ"):
        pad_batch([np.ones((2, 3)), np.ones((3, 3))])
    with pytest.raises(ValueError, match="size"):
        pad_batch([np.ones(4)], size=3)
