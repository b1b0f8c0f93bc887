"""Training building blocks: spectrograms, discriminator layouts, losses, bucket sampler, checkpoint housekeeping,
filelist round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vitsrt.train.checkpoint import checkpoint_steps, latest_complete_step, prune_checkpoints, save_checkpoint
from vitsrt.train.data import LengthBucketSampler
from vitsrt.train.discriminators import DurationDiscriminator, MultiPeriodDiscriminator
from vitsrt.train.losses import discriminator_loss, feature_loss, generator_loss, kl_loss
from vitsrt.train.mel import SpectrogramTransform, mel_filterbank
from vitsrt.train.tokens import FilelistEntry, SymbolTable


def test_spectrogram_has_one_frame_per_hop_and_finds_a_tone():
    transform = SpectrogramTransform(16000, 512, 128, 512, 40, 0.0, 8000.0)
    t = torch.arange(128 * 50) / 16000
    audio = torch.sin(2 * torch.pi * 1000.0 * t)
    spec = transform.linear(audio)
    assert spec.shape == (257, 50)
    assert int(spec[:, 25].argmax()) == 32  # 1000 Hz / (16000 / 512) Hz per bin
    mel = transform.mel(audio.unsqueeze(0))
    assert mel.shape == (1, 40, 50) and torch.isfinite(mel).all()


def test_mel_filterbank_is_slaney_normalised():
    bank = mel_filterbank(16000, 512, 40, 0.0, 8000.0)
    assert bank.shape == (40, 257) and (bank >= 0).all()
    # Each triangle peaks at its centre; Slaney normalisation gives each band area ~1 in Hz x weight / (bin width)...
    # equivalently peak height 2 / (upper - lower edge in Hz): narrow low bands are taller than wide high ones.
    peaks = bank.max(axis=1)
    assert peaks[0] > peaks[-1] * 3
    # Below 1 kHz the Slaney scale is linear: the first bands are equally wide, hence equally tall.
    assert peaks[1] == pytest.approx(peaks[2], rel=0.2)


def test_full_size_discriminator_has_upstream_keys_and_size():
    mpd = MultiPeriodDiscriminator()
    state = mpd.state_dict()
    for key in (
        "discriminators.0.convs.0.weight_g",
        "discriminators.0.convs.5.weight_v",
        "discriminators.0.conv_post.bias",
        "discriminators.1.convs.0.weight_v",
        "discriminators.5.convs.4.weight_g",
        "discriminators.5.conv_post.weight_v",
    ):
        assert key in state, key
    assert len(mpd.discriminators) == 6
    n_params = sum(p.numel() for p in mpd.parameters())
    assert 46_000_000 < n_params < 47_500_000  # upstream's MPD is ~46.7M


def test_small_discriminator_runs_and_returns_matching_features():
    mpd = MultiPeriodDiscriminator(periods=[2, 3], channel_divisor=16)
    assert sum(p.numel() for p in mpd.parameters()) < 200_000
    real, fake = torch.randn(2, 1, 1000), torch.randn(2, 1, 1000)
    scores_r, scores_f, feats_r, feats_f = mpd(real, fake)
    assert len(scores_r) == len(scores_f) == 3
    for fr, ff in zip(feats_r, feats_f, strict=True):
        assert [f.shape for f in fr] == [f.shape for f in ff]
    # Batched real+fake equals running each alone (no cross-item statistics).
    alone, _ = mpd.discriminators[1](fake)
    torch.testing.assert_close(scores_f[1], alone)


def test_duration_discriminator_keys_and_tracks():
    disc = DurationDiscriminator(16, 16, 3, 0.1, gin_channels=8).eval()
    keys = set(disc.state_dict())
    assert {"conv_1.weight", "norm_1.gamma", "dur_proj.weight", "LSTM.weight_ih_l0_reverse", "cond.weight",
            "output_layer.0.weight"} <= keys
    x, mask, g = torch.randn(2, 16, 7), torch.ones(2, 1, 7), torch.randn(2, 8, 1)
    tracks = [torch.randn(2, 1, 7) for _ in range(3)]
    probs = disc(x, mask, tracks, g)
    assert len(probs) == 3 and all(p.shape == (2, 7, 1) for p in probs)
    # One batched call equals one call per track.
    torch.testing.assert_close(probs[2], disc(x, mask, [tracks[2]], g)[0])


def test_losses_match_their_definitions():
    real = [torch.tensor([1.0, 0.5])]
    fake = [torch.tensor([0.0, 0.5])]
    assert discriminator_loss(real, fake).item() == pytest.approx(0.125 + 0.125)
    assert generator_loss(fake).item() == pytest.approx((1 + 0.25) / 2)
    fm = feature_loss([[torch.ones(3)]], [[torch.zeros(3)]])
    assert fm.item() == pytest.approx(2.0)
    # KL of identical unit Gaussians at the mean is -0.5 per element (the sampled-z estimator), masked mean.
    z = torch.zeros(1, 2, 4)
    mask = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    assert kl_loss(z, z, z, z, mask).item() == pytest.approx(2 * 2 * -0.5 / 2)


def test_bucket_sampler_splits_ranks_evenly_and_resumes_mid_epoch():
    lengths = [10, 12, 50, 55, 60, 70, 90, 95, 99, 300, 5]
    make = lambda rank: LengthBucketSampler(lengths, 2, [8, 64, 128], rank=rank, world_size=2, seed=3)  # noqa: E731
    s0, s1 = make(0), make(1)
    assert s0.dropped == 2  # 300 and 5 frames are outside the bounds
    b0, b1 = s0.epoch_batches(), s1.epoch_batches()
    assert len(b0) == len(b1) == len(s0)
    for batch in b0 + b1:
        spans = {0 if lengths[i] <= 64 else 1 for i in batch}
        assert len(spans) == 1  # one bucket per batch
    assert {i for b in b0 + b1 for i in b} == {i for i, n in enumerate(lengths) if 8 < n <= 128}
    s0.set_position(0, 1)
    assert list(s0) == b0[1:] and len(s0) == len(b0) - 1
    assert make(0).epoch_batches() == b0  # the order depends only on (seed, epoch)
    s0.set_epoch(2)
    assert list(s0) != b0


def test_checkpoint_housekeeping(tmp_path):
    model = nn.Linear(2, 2)
    for step in (0, 10, 20, 30):
        for kind in ("G", "D"):
            save_checkpoint(tmp_path / f"{kind}_{step}.pth", model, iteration=step)
    save_checkpoint(tmp_path / "G_40.pth", model)  # a crash before D_40 was written
    assert latest_complete_step(tmp_path, ("G", "D")) == 30
    removed = prune_checkpoints(tmp_path, ("G", "D"), keep=2)
    assert sorted(p.name for p in removed) == ["D_10.pth", "G_10.pth", "G_20.pth"]
    assert checkpoint_steps(tmp_path, "G") == [0, 30, 40] and checkpoint_steps(tmp_path, "D") == [0, 20, 30]
    assert not list(tmp_path.glob("*.tmp"))


def test_filelist_round_trip_and_symbol_table():
    entry = FilelistEntry("wavs/a/1.wav", "a", "en-us", "hi you", ["h", "a", "ɪ", " ", "j", "u"], [0] * 6, [1] * 6)
    line = entry.to_line()
    assert line.count("|") == 6 and "▁" in line
    assert FilelistEntry.from_line(line) == entry
    table = SymbolTable({"kind": "ids", "symbols": ["_", " ", "a", "h"], "languages": {"en": 0}, "add_blank": True})
    tokens = table.encode(["h", "a", " "], [], "en")
    np.testing.assert_array_equal(tokens.phone_ids, [0, 3, 0, 2, 0, 1, 0])
    with pytest.raises(ValueError, match="missing"):
        table.encode(["z"], [], "en")
