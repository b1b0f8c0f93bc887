"""Parity of our text encoder and transformer flow with upstream Bert-VITS2 2.3 (tiny fixture).

The fixture's ``G_0.pth`` is loaded strictly into our modules and every case's upstream
intermediates are reproduced: text-encoder outputs (enc_x, m_p, logs_p) and the inverse flow
``z = flow(z_p, y_mask, g, reverse=True)``. ``z_p`` is the length-expanded m_p (noise_scale 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vitsrt.train.models.common import sequence_mask
from vitsrt.train.models.text_encoder import TextEncoder
from vitsrt.train.models.transformer_flow import TransformerCouplingBlock

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "bertvits2-2.3-tiny"
TOLERANCE = 1e-4
# Upstream hard-codes these for the transformer flow (not in the config).
FLOW_KERNEL_SIZE = 5
N_FLOWS = 4

pytestmark = pytest.mark.skipif(
    not (FIXTURE / "G_0.pth").is_file(),
    reason=f"parity fixture not found at {FIXTURE} (expected ../shared beside the checkout)",
)


def _sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


@pytest.fixture(scope="module")
def fixture():
    state = torch.load(FIXTURE / "G_0.pth", map_location="cpu", weights_only=True)["model"]
    cfg = json.loads((FIXTURE / "config.json").read_text())["model"]
    with np.load(FIXTURE / "cases.npz") as npz:
        cases = {key: npz[key] for key in npz.files}
    return state, cfg, cases


def _build(state: dict[str, torch.Tensor], cfg: dict) -> tuple[TextEncoder, TransformerCouplingBlock]:
    # Symbol / tone / language table sizes come from the symbol set, not the config.
    encoder = TextEncoder(
        n_vocab=state["enc_p.emb.weight"].shape[0],
        out_channels=cfg["inter_channels"],
        hidden_channels=cfg["hidden_channels"],
        filter_channels=cfg["filter_channels"],
        n_heads=cfg["n_heads"],
        n_layers=cfg["n_layers"],
        kernel_size=cfg["kernel_size"],
        p_dropout=cfg["p_dropout"],
        gin_channels=cfg["gin_channels"] if cfg["use_spk_conditioned_encoder"] else 0,
        num_tones=state["enc_p.tone_emb.weight"].shape[0],
        num_languages=state["enc_p.language_emb.weight"].shape[0],
    )
    flow = TransformerCouplingBlock(
        channels=cfg["inter_channels"],
        hidden_channels=cfg["hidden_channels"],
        filter_channels=cfg["filter_channels"],
        n_heads=cfg["n_heads"],
        n_layers=cfg["n_layers_trans_flow"],
        kernel_size=FLOW_KERNEL_SIZE,
        p_dropout=cfg["p_dropout"],
        n_flows=N_FLOWS,
        gin_channels=cfg["gin_channels"],
    )
    encoder.load_state_dict(_sub_state(state, "enc_p."), strict=True)
    flow.load_state_dict(_sub_state(state, "flow."), strict=True)
    return encoder.eval(), flow.eval()


def _case_ids(cases: dict[str, np.ndarray]) -> list[int]:
    return sorted({int(key[4:].split("_", 1)[0]) for key in cases if key.startswith("case")})


def _max_diffs(encoder, flow, state, cases) -> dict[str, float]:
    """Worst absolute difference per output over all cases (each case run as one batch)."""
    worst = {"enc_x": 0.0, "m_p": 0.0, "logs_p": 0.0, "z": 0.0}
    for k in _case_ids(cases):
        case = {
            key.split("_", 1)[1]: torch.from_numpy(value) for key, value in cases.items() if key.startswith(f"case{k}_")
        }
        g = state["emb_g.weight"][case["sid"]].unsqueeze(-1)
        with torch.no_grad():
            enc_x, m_p, logs_p, x_mask = encoder(
                case["x"],
                case["x_lengths"],
                case["tone"],
                case["language"],
                case["bert"],
                case["ja_bert"],
                case["en_bert"],
                g=g,
            )
            z_p = case["z_p"]
            y_mask = sequence_mask(case["y_lengths"], z_p.shape[2]).unsqueeze(1).to(z_p.dtype)
            z = flow(z_p, y_mask, g=g, reverse=True)
        assert torch.equal(x_mask[:, 0], sequence_mask(case["x_lengths"], case["x"].shape[1]).float())
        for name, ours in (("enc_x", enc_x), ("m_p", m_p), ("logs_p", logs_p), ("z", z)):
            reference = case[name]
            assert ours.shape == reference.shape, (k, name)
            worst[name] = max(worst[name], float((ours - reference).abs().max()))
    return worst


def test_state_dict_keys_match_upstream_exactly(fixture):
    state, cfg, _ = fixture
    encoder, flow = _build(state, cfg)  # strict loads inside
    ours = {f"enc_p.{k}" for k in encoder.state_dict()} | {f"flow.{k}" for k in flow.state_dict()}
    theirs = {k for k in state if k.startswith(("enc_p.", "flow."))}
    assert ours == theirs


def test_encoder_and_flow_match_upstream(fixture):
    state, cfg, cases = fixture
    encoder, flow = _build(state, cfg)
    worst = _max_diffs(encoder, flow, state, cases)
    assert all(value <= TOLERANCE for value in worst.values()), worst


@pytest.mark.parametrize(
    ("key", "delta", "outputs"),
    [
        # The flow is fed the reference z_p, so an encoder change shows only in the encoder outputs.
        ("enc_p.encoder.attn_layers.1.emb_rel_v", 0.01, ("enc_x", "m_p", "logs_p")),
        # The fixture's flow output convs are small (zero init + noise), so z needs a larger nudge.
        ("flow.flows.0.enc.attn_layers.1.emb_rel_v", 0.05, ("z",)),
    ],
)
def test_negative_control_perturbed_weight_breaks_parity(fixture, key, delta, outputs):
    """A small change to one relative-position embedding (embedding entries are ~0.25) must push the
    compared outputs well past the tolerance, so the parity test above can fail."""
    state, cfg, cases = fixture
    perturbed = dict(state)
    perturbed[key] = state[key].clone()
    perturbed[key][0, 3, :] += delta  # relative distance -1, every channel
    encoder, flow = _build(perturbed, cfg)
    worst = _max_diffs(encoder, flow, perturbed, cases)
    for name in outputs:
        assert worst[name] > 5 * TOLERANCE, (name, worst)
    untouched = set(worst) - set(outputs)
    assert all(worst[name] <= TOLERANCE for name in untouched), worst


def test_flow_forward_inverts_reverse(fixture):
    """Training runs the flow forward (z -> z_p); it must be the exact inverse of inference."""
    state, cfg, cases = fixture
    _, flow = _build(state, cfg)
    z = torch.from_numpy(cases["case4_z"])
    y_mask = sequence_mask(torch.from_numpy(cases["case4_y_lengths"]), z.shape[2]).unsqueeze(1).float()
    g = state["emb_g.weight"][torch.from_numpy(cases["case4_sid"])].unsqueeze(-1)
    with torch.no_grad():
        z_p = flow(z, y_mask, g=g, reverse=False)
        back = flow(z_p, y_mask, g=g, reverse=True)
    assert float((z_p - torch.from_numpy(cases["case4_z_p"])).abs().max()) < TOLERANCE
    assert float((back - z).abs().max()) < 1e-5
