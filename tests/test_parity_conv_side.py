"""Parity of the convolutional half (dp, sdp, dec, enc_q, residual flow) with upstream Bert-VITS2 2.3.

References come from the upstream-produced fixture (../shared/fixtures/bertvits2-2.3-tiny). Every
comparison has a negative control: a perturbed weight (or disabled masking) must break it.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from vitsrt.train.models.common import fused_add_tanh_sigmoid_multiply, sequence_mask
from vitsrt.train.models.duration import DurationPredictor, StochasticDurationPredictor
from vitsrt.train.models.generator import Generator
from vitsrt.train.models.posterior import PosteriorEncoder
from vitsrt.train.models.residual_flow import ResidualCouplingBlock

log = logging.getLogger(__name__)

TOL = 1e-4
HOP = 512
N_CASES = 6
# Hard-coded in upstream SynthesizerTrn (see the fixture README), not taken from config.json.
DP_FILTER, DP_KERNEL, DP_DROPOUT = 256, 3, 0.5
SDP_KERNEL, SDP_DROPOUT, SDP_FLOWS = 3, 0.5, 4
ENC_Q_KERNEL, ENC_Q_DILATION, ENC_Q_LAYERS = 5, 1, 16


def _sub(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v.clone() for k, v in state.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def fx(fixture_dir: Path, fixture_config_dict: dict) -> dict:
    state = torch.load(fixture_dir / "G_0.pth", map_location="cpu", weights_only=True)["model"]
    cases = dict(np.load(fixture_dir / "cases.npz"))
    m = fixture_config_dict["model"]
    spec_channels = fixture_config_dict["data"]["filter_length"] // 2 + 1
    return {"state": state, "cases": cases, "model": m, "spec_channels": spec_channels}


def _build_dp(fx: dict) -> DurationPredictor:
    m = fx["model"]
    dp = DurationPredictor(m["hidden_channels"], DP_FILTER, DP_KERNEL, DP_DROPOUT, gin_channels=m["gin_channels"])
    dp.load_state_dict(_sub(fx["state"], "dp."), strict=True)
    return dp.eval()


def _build_sdp(fx: dict) -> StochasticDurationPredictor:
    m = fx["model"]
    sdp = StochasticDurationPredictor(
        m["hidden_channels"], 192, SDP_KERNEL, SDP_DROPOUT, SDP_FLOWS, gin_channels=m["gin_channels"]
    )
    sdp.load_state_dict(_sub(fx["state"], "sdp."), strict=True)
    return sdp.eval()


def _build_dec(fx: dict) -> Generator:
    m = fx["model"]
    dec = Generator(
        m["inter_channels"],
        m["resblock"],
        m["resblock_kernel_sizes"],
        m["resblock_dilation_sizes"],
        m["upsample_rates"],
        m["upsample_initial_channel"],
        m["upsample_kernel_sizes"],
        gin_channels=m["gin_channels"],
    )
    dec.load_state_dict(_sub(fx["state"], "dec."), strict=True)
    return dec.eval()


def _case(fx: dict, k: int) -> dict[str, torch.Tensor]:
    prefix = f"case{k}_"
    out = {n[len(prefix) :]: torch.from_numpy(np.asarray(v)) for n, v in fx["cases"].items() if n.startswith(prefix)}
    enc_x = out["enc_x"]
    out["x_mask"] = sequence_mask(out["x_lengths"], enc_x.size(2)).unsqueeze(1).to(enc_x.dtype)
    out["y_mask"] = sequence_mask(out["y_lengths"], out["z"].size(2)).unsqueeze(1).to(enc_x.dtype)
    out["g"] = fx["state"]["emb_g.weight"][out["sid"]].unsqueeze(-1)
    return out


def _max_dp_diff(fx: dict, dp: DurationPredictor) -> float:
    worst = 0.0
    with torch.no_grad():
        for k in range(N_CASES):
            c = _case(fx, k)
            worst = max(worst, (dp(c["enc_x"], c["x_mask"], c["g"]) - c["logw_dp"]).abs().max().item())
    return worst


def _max_sdp_diff(fx: dict, sdp: StochasticDurationPredictor) -> float:
    worst = 0.0
    with torch.no_grad():
        for k in range(N_CASES):
            c = _case(fx, k)
            assert float(c["noise_scale_w"]) == 0.0
            noise = torch.zeros(c["enc_x"].size(0), 2, c["enc_x"].size(2))
            logw = sdp.infer(c["enc_x"], c["x_mask"], c["g"], noise)
            worst = max(worst, (logw - c["logw_sdp"]).abs().max().item())
    return worst


def _max_single_audio_diff(fx: dict, dec: Generator) -> float:
    worst = 0.0
    with torch.no_grad():
        for k in range(N_CASES):
            c = _case(fx, k)
            if c["z"].size(0) != 1:
                continue
            audio = dec(c["z"] * c["y_mask"], c["g"])
            assert audio.shape == c["audio"].shape
            worst = max(worst, (audio - c["audio"]).abs().max().item())
    return worst


# ---------------------------------------------------------------- duration predictors


def test_dp_matches_upstream(fx: dict) -> None:
    diff = _max_dp_diff(fx, _build_dp(fx))
    log.info("dp max abs diff over %d cases: %.3g", N_CASES, diff)
    assert diff < TOL


def test_dp_negative_control(fx: dict) -> None:
    dp = _build_dp(fx)
    with torch.no_grad():
        dp.conv_2.weight[3, 7, 1] += 0.05
    assert _max_dp_diff(fx, dp) > TOL


def test_sdp_matches_upstream(fx: dict) -> None:
    diff = _max_sdp_diff(fx, _build_sdp(fx))
    log.info("sdp.infer max abs diff over %d cases: %.3g", N_CASES, diff)
    assert diff < TOL


def test_sdp_negative_control(fx: dict) -> None:
    sdp = _build_sdp(fx)
    with torch.no_grad():
        sdp.flows[7].proj.weight[2, 5, 0] += 0.5  # a spline parameter of the last coupling
    assert _max_sdp_diff(fx, sdp) > TOL


def test_sdp_skips_first_coupling_like_upstream(fx: dict) -> None:
    """Upstream's inverse pass drops flows[1]; changing it must not move logw, changing flows[3] must."""
    sdp = _build_sdp(fx)
    with torch.no_grad():
        sdp.flows[1].proj.weight.mul_(3.0)
    assert _max_sdp_diff(fx, sdp) < TOL
    with torch.no_grad():
        sdp.flows[3].proj.weight.mul_(3.0)
    assert _max_sdp_diff(fx, sdp) > TOL


# ---------------------------------------------------------------- decoder


def test_decoder_matches_upstream_single_items(fx: dict) -> None:
    diff = _max_single_audio_diff(fx, _build_dec(fx))
    log.info("dec (B=1 cases) max abs audio diff: %.3g", diff)
    assert diff < TOL


def test_decoder_negative_control(fx: dict) -> None:
    dec = _build_dec(fx)
    with torch.no_grad():
        dec.resblocks[4].convs1[1].weight_v[2, 3, 1] += 0.3
    assert _max_single_audio_diff(fx, dec) > TOL


def test_unmasked_batched_decoder_matches_upstream_batch(fx: dict) -> None:
    """Without y_mask the decoder is upstream's: same padded-batch audio, tails included."""
    c = _case(fx, 4)
    with torch.no_grad():
        audio = _build_dec(fx)(c["z"] * c["y_mask"], c["g"])
    diff = (audio - c["audio"]).abs().max().item()
    log.info("dec case4 unmasked batch vs upstream batch: %.3g", diff)
    assert diff < TOL


def _masked_batch_diffs(fx: dict, dec: Generator, use_mask: bool) -> tuple[list[float], list[float]]:
    c = _case(fx, 4)
    with torch.no_grad():
        audio = dec(c["z"] * c["y_mask"], c["g"], y_mask=c["y_mask"] if use_mask else None)
    inside, beyond = [], []
    for i, frames in enumerate(c["y_lengths"].tolist()):
        n = frames * HOP
        single = c[f"audio_single_{i}"][0, 0, :n]
        inside.append((audio[i, 0, :n] - single).abs().max().item())
        beyond.append(audio[i, 0, n:].abs().max().item() if n < audio.size(2) else 0.0)
    return inside, beyond


def test_masked_batched_decoder_equals_single_item_decodes(fx: dict) -> None:
    inside, beyond = _masked_batch_diffs(fx, _build_dec(fx), use_mask=True)
    log.info("dec case4 masked batch vs single items: inside %s, beyond-end max %s", inside, beyond)
    assert max(inside) < TOL
    assert max(beyond) == 0.0
    # The shorter item really has a tail to zero (otherwise the check above is vacuous).
    assert _case(fx, 4)["y_lengths"].min() * HOP < _case(fx, 4)["z"].size(2) * HOP


def test_masked_batch_negative_control_without_mask(fx: dict) -> None:
    """Upstream behaviour (no mask): the shorter item's last frames and its tail differ."""
    inside, beyond = _masked_batch_diffs(fx, _build_dec(fx), use_mask=False)
    assert max(inside) > TOL
    assert max(beyond) > TOL


def test_all_ones_mask_is_bitwise_unmasked(fx: dict) -> None:
    dec = _build_dec(fx)
    c = _case(fx, 0)
    with torch.no_grad():
        plain = dec(c["z"], c["g"])
        ones = dec(c["z"], c["g"], y_mask=torch.ones_like(c["y_mask"]))
    assert torch.equal(plain, ones)


def _chunked_decode(dec: Generator, z: torch.Tensor, g: torch.Tensor, context: int) -> torch.Tensor:
    pieces, start, size = [], 0, 16  # a small first window, then larger ones (the engine's plan)
    while start < z.size(2):
        end = min(z.size(2), start + size)
        lo, hi = max(0, start - context), min(z.size(2), end + context)
        audio = dec(z[:, :, lo:hi], g)
        pieces.append(audio[:, :, (start - lo) * HOP : (end - lo) * HOP])
        start, size = end, 32
    return torch.cat(pieces, 2)


def test_fixture_decoder_streams_exactly_with_its_receptive_field(fx: dict) -> None:
    dec = _build_dec(fx)
    context = dec.receptive_field_frames()
    assert context == 13  # the upstream default HiFi-GAN layout (fixture config)
    c = _case(fx, 3)
    z = c["z"] * c["y_mask"]
    with torch.no_grad():
        one_shot = dec(z, c["g"])
        diff = (_chunked_decode(dec, z, c["g"], context) - one_shot).abs().max().item()
        fewer = (_chunked_decode(dec, z, c["g"], context - 3) - one_shot).abs().max().item()
        upstream = (_chunked_decode(dec, z, c["g"], context) - c["audio"]).abs().max().item()
    log.info(
        "fixture dec chunked (C=%d) vs one-shot %.3g, vs upstream audio %.3g; C-3: %.3g", context, diff, upstream, fewer
    )
    assert diff < 1e-5 and upstream < TOL
    assert fewer > 1e-5  # negative control: too little context breaks the 1e-5 contract


# ---------------------------------------------------------------- posterior encoder


def _reference_wn_conv(state: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """weight = g * v / ||v|| with the norm over every dim but the output channel (weight_norm dim=0)."""
    v, g = state[f"{name}.weight_v"], state[f"{name}.weight_g"]
    return g * v / v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))


def _reference_enc_q(
    state: dict[str, torch.Tensor], spec: torch.Tensor, lengths: torch.Tensor, g: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Straight functional transcription of the posterior encoder from raw ``enc_q.`` tensors."""
    mask = sequence_mask(lengths, spec.size(2)).unsqueeze(1).to(spec.dtype)
    h = F.conv1d(spec, state["enc_q.pre.weight"], state["enc_q.pre.bias"]) * mask
    hidden = h.size(1)
    cond = F.conv1d(g, _reference_wn_conv(state, "enc_q.enc.cond_layer"), state["enc_q.enc.cond_layer.bias"])
    skip = torch.zeros_like(h)
    for i in range(ENC_Q_LAYERS):
        name = f"enc_q.enc.in_layers.{i}"
        dilation = ENC_Q_DILATION**i
        weight = _reference_wn_conv(state, name)
        x_in = F.conv1d(h, weight, state[f"{name}.bias"], padding=(ENC_Q_KERNEL - 1) // 2 * dilation, dilation=dilation)
        acts = fused_add_tanh_sigmoid_multiply(x_in, cond[:, 2 * hidden * i : 2 * hidden * (i + 1)], hidden)
        name = f"enc_q.enc.res_skip_layers.{i}"
        rs = F.conv1d(acts, _reference_wn_conv(state, name), state[f"{name}.bias"])
        if i < ENC_Q_LAYERS - 1:
            h = (h + rs[:, :hidden]) * mask
            skip = skip + rs[:, hidden:]
        else:
            skip = skip + rs
    stats = F.conv1d(skip * mask, state["enc_q.proj.weight"], state["enc_q.proj.bias"]) * mask
    m, logs = stats.chunk(2, dim=1)
    return (m + noise * torch.exp(logs)) * mask


def _enc_q(fx: dict) -> PosteriorEncoder:
    m = fx["model"]
    enc_q = PosteriorEncoder(
        fx["spec_channels"],
        m["inter_channels"],
        m["hidden_channels"],
        ENC_Q_KERNEL,
        ENC_Q_DILATION,
        ENC_Q_LAYERS,
        gin_channels=m["gin_channels"],
    )
    enc_q.load_state_dict(_sub(fx["state"], "enc_q."), strict=True)
    return enc_q.eval()


def _enc_q_inputs(fx: dict) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(7)
    spec = torch.rand(2, fx["spec_channels"], 37, generator=gen)
    lengths = torch.tensor([37, 22])
    g = fx["state"]["emb_g.weight"][torch.tensor([0, 1])].unsqueeze(-1)
    noise = torch.randn(2, fx["model"]["inter_channels"], 37, generator=gen)
    return spec, lengths, g, noise


def test_posterior_encoder_loads_and_matches_functional_reference(fx: dict) -> None:
    spec, lengths, g, noise = _enc_q_inputs(fx)
    with torch.no_grad():
        z, _, _, mask = _enc_q(fx)(spec, lengths, g=g, noise=noise)
        ref = _reference_enc_q(fx["state"], spec, lengths, g, noise)
    diff = (z - ref).abs().max().item()
    log.info("enc_q vs functional reference: %.3g", diff)
    assert diff < 1e-5
    assert mask[1, 0, 22:].abs().sum() == 0 and z[1, :, 22:].abs().sum() == 0
    # Zero noise gives the mean; a seeded generator replays exactly.
    with torch.no_grad():
        z0, m0, _, _ = _enc_q(fx)(spec, lengths, g=g, noise=torch.zeros_like(noise))
        za = _enc_q(fx)(spec, lengths, g=g, generator=torch.Generator().manual_seed(3))[0]
        zb = _enc_q(fx)(spec, lengths, g=g, generator=torch.Generator().manual_seed(3))[0]
    assert torch.equal(z0, m0 * mask)
    assert torch.equal(za, zb)


def test_posterior_encoder_negative_control(fx: dict) -> None:
    spec, lengths, g, noise = _enc_q_inputs(fx)
    enc_q = _enc_q(fx)
    with torch.no_grad():
        enc_q.enc.in_layers[9].weight_g[4] *= 1.5
        z = enc_q(spec, lengths, g=g, noise=noise)[0]
        ref = _reference_enc_q(fx["state"], spec, lengths, g, noise)
    assert (z - ref).abs().max().item() > 1e-4


# ---------------------------------------------------------------- residual coupling flow


def _residual_flow(seed: int) -> ResidualCouplingBlock:
    torch.manual_seed(seed)
    flow = ResidualCouplingBlock(32, 32, 5, 1, 4, n_flows=4, gin_channels=32)
    with torch.no_grad():  # the zero-initialised post convs would make the flow a bare permutation
        for layer in flow.flows[::2]:
            layer.post.weight.normal_(0.0, 0.1)
            layer.post.bias.normal_(0.0, 0.1)
    return flow.eval()


def test_residual_flow_state_dict_roundtrip_and_invertibility() -> None:
    source = _residual_flow(0)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    couplings = {k.split(".")[1] for k in state}
    assert couplings == {"0", "2", "4", "6"}
    assert {k.split(".")[2] for k in state} == {"pre", "enc", "post"}
    assert "flows.0.enc.in_layers.0.weight_g" in state and "flows.6.enc.cond_layer.weight_v" in state

    flow = ResidualCouplingBlock(32, 32, 5, 1, 4, n_flows=4, gin_channels=32)
    flow.load_state_dict(state, strict=True)
    flow.eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 32, 40, generator=gen)
    mask = sequence_mask(torch.tensor([40, 29]), 40).unsqueeze(1).float()
    x = x * mask
    g = torch.randn(2, 32, 1, generator=gen)
    with torch.no_grad():
        z = flow(x, mask, g=g)
        back = flow(z, mask, g=g, reverse=True)
        other_g = flow(z, mask, g=g.flip(0), reverse=True)
    roundtrip = (back - x).abs().max().item()
    moved = (z - x).abs().max().item()  # an even number of flips: without couplings z would equal x
    log.info("residual flow forward->reverse max abs error: %.3g (forward moved x by %.3g)", roundtrip, moved)
    assert roundtrip < 1e-5
    assert moved > 1e-2
    # Negative control: inverting with another speaker's vector does not give x back.
    assert (other_g - x).abs().max().item() > 1e-3
