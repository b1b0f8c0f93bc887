"""Original-VITS voices end to end: `vitsrt export` of a VITS checkpoint (split graphs with exactly the
contract's tensors, parity against PyTorch), and the engine serving them (streaming == one-shot, the same
audio as the PyTorch stage chain, the torch backend from the bundle's weights)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from test_vits_model import randomized, tiny_vits  # noqa: E402

from vitsrt import regulator  # noqa: E402
from vitsrt.errors import CheckpointError, NotFoundError  # noqa: E402
from vitsrt.export.bundle import export_voice  # noqa: E402
from vitsrt.export.verify import ParityError, check_parity, graph_paths, verify_graphs  # noqa: E402
from vitsrt.serve.engine.engine import Engine, EngineOptions  # noqa: E402
from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest  # noqa: E402
from vitsrt.train.checkpoint import save_checkpoint  # noqa: E402
from vitsrt.train.loading import load_generator  # noqa: E402
from vitsrt.train.models.vits import VitsSynthesizer  # noqa: E402
from vitsrt.voice import load_voice  # noqa: E402

VARIANTS = {"single": (1, True), "multi": (3, True), "dp": (1, False)}  # (speakers, stochastic predictor)

# The graphs' tensors per variant, as the VITS contract (vitsrt.stages.VITS) must give them: no tones,
# languages or BERT; a speaker input/vector only with several speakers; SDP noise only with the SDP.
EXPECTED_IO = {
    "single": {
        "encoder": (["phone_ids", "lengths"], ["enc", "m_p", "logs_p", "x_mask"]),
        "duration": (["enc", "x_mask", "sdp_noise"], ["logw"]),
        "flow": (["z_p", "y_mask"], ["z"]),
        "decoder": (["z", "y_mask"], ["audio"]),
    },
    "multi": {
        "encoder": (["phone_ids", "lengths", "sid"], ["enc", "m_p", "logs_p", "x_mask", "g"]),
        "duration": (["enc", "x_mask", "g", "sdp_noise"], ["logw"]),
        "flow": (["z_p", "y_mask", "g"], ["z"]),
        "decoder": (["z", "y_mask", "g"], ["audio"]),
    },
    "dp": {
        "encoder": (["phone_ids", "lengths"], ["enc", "m_p", "logs_p", "x_mask"]),
        "duration": (["enc", "x_mask"], ["logw"]),
        "flow": (["z_p", "y_mask"], ["z"]),
        "decoder": (["z", "y_mask"], ["audio"]),
    },
}


def _checkpoint(root: Path, variant: str) -> tuple[Path, Path]:
    n_speakers, use_sdp = VARIANTS[variant]
    config = tiny_vits(n_speakers, use_sdp)
    model = randomized(VitsSynthesizer(config), seed=len(variant))
    root.mkdir(parents=True, exist_ok=True)
    save_checkpoint(root / "G_100.pth", model, iteration=100)
    (root / "config.json").write_text(config.to_json(), encoding="utf-8")
    return root / "G_100.pth", root / "config.json"


@pytest.fixture(scope="module")
def vits_voices(tmp_path_factory) -> dict[str, tuple[Path, Path, Path]]:
    """variant -> (voice dir, checkpoint, config), each exported once with verification on."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("vits")
    voices = {}
    for variant in VARIANTS:
        checkpoint, config = _checkpoint(base / variant, variant)
        voices[variant] = (export_voice(checkpoint, config, base / variant / "voice", name=f"vits-{variant}"),
                           checkpoint, config)
    return voices


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_export_writes_the_vits_contract(vits_voices, variant):
    voice_dir = vits_voices[variant][0]
    voice = load_voice(voice_dir)
    m = voice.manifest
    assert (m.model.family, m.model.version) == ("vits", "1")
    assert m.num_speakers == VARIANTS[variant][0] and len(m.speakers) == m.num_speakers
    assert m.front_end.bert_inputs == [] and m.graphs.duration_dp_only is None
    io = {stage: ([t.name for t in spec.inputs], [t.name for t in spec.outputs]) for stage, spec in m.graphs.items()}
    assert io == EXPECTED_IO[variant]
    assert m.hop_length == 64 and m.latent_channels == 8
    assert m.parity is not None and set(m.parity.stages) == set(EXPECTED_IO[variant])
    assert all(figures.passed and figures.max_abs_diff < 1e-4 for figures in m.parity.stages.values())
    assert (voice_dir / "weights.safetensors").is_file()


def test_parity_check_catches_a_changed_model(vits_voices):
    """Negative control for the export's parity gate: graphs against a model that differs in one bias."""
    voice_dir, checkpoint, config = vits_voices["multi"]
    model = load_generator(checkpoint, config).model
    graphs = graph_paths(voice_dir, ["encoder", "flow"])
    check_parity(verify_graphs(model, graphs))
    with torch.no_grad():
        model.enc_p.proj.bias[0] += 1e-2
        model.flow.flows[0].post.bias[0] += 1e-2
    parity = verify_graphs(model, graphs)
    assert not parity["encoder"].passed and not parity["flow"].passed
    with pytest.raises(ParityError, match="encoder graph differs"):
        check_parity(parity)


def _request(tokens: int, seed: int, **kwargs) -> SynthesisRequest:
    rng = np.random.default_rng(seed)
    phones = [0 if i % 2 == 0 else int(rng.integers(1, 40)) for i in range(tokens)]
    return SynthesisRequest(phonemes=PhonemeIds(phone_ids=phones), seed=seed, noise_scale=0.6, noise_scale_w=0.7,
                            length_scale=1.2, **kwargs)


@pytest.fixture(scope="module")
def vits_engine(vits_voices):
    options = EngineOptions(max_batch=8, max_wait_ms=2.0, threads=1, max_active_streams=16)
    with Engine.open([v[0] for v in vits_voices.values()], options=options) as engine:
        yield engine


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_engine_streams_a_vits_voice_exactly(vits_engine, variant):
    request = _request(121, seed=5, voice=f"vits-{variant}")
    chunks = list(vits_engine.stream(request))
    streamed = np.concatenate([c.audio for c in chunks])
    one_shot = vits_engine.synthesize(request).audio
    assert len(chunks) > 1 and chunks[-1].is_last
    assert streamed.shape == one_shot.shape and float(np.abs(one_shot).max()) > 1e-3
    assert float(np.abs(streamed - one_shot).max()) <= 1e-5
    # Reproducible by seed; another seed is other audio (the noise reaches the output).
    again = vits_engine.synthesize(request).audio
    other = vits_engine.synthesize(_request(121, seed=6, voice=f"vits-{variant}")).audio
    assert np.array_equal(again, one_shot)
    assert other.shape != one_shot.shape or float(np.abs(other - one_shot).max()) > 1e-3


def test_engine_speakers_of_a_multi_speaker_vits_voice(vits_engine):
    audio = {name: vits_engine.synthesize(_request(41, seed=3, voice="vits-multi", speaker=name)).audio
             for name in ("speaker_0", "speaker_2")}
    assert audio["speaker_0"].shape != audio["speaker_2"].shape or (
        float(np.abs(audio["speaker_0"] - audio["speaker_2"]).max()) > 1e-3)
    with pytest.raises(NotFoundError, match="unknown speaker"):
        vits_engine.synthesize(_request(41, seed=3, voice="vits-single", speaker="speaker_1"))


def _torch_chain(model: VitsSynthesizer, segment, sid: int) -> np.ndarray:
    """The engine's computation for one segment, done with the PyTorch stage methods and the same noise."""
    scales = segment.scales
    x = torch.from_numpy(np.asarray(segment.ids.phone_ids, dtype=np.int64))[None]
    with torch.no_grad():
        enc, m_p, logs_p, x_mask, g = model.encode(x, torch.tensor([x.size(1)]), torch.tensor([sid]))
        noise = torch.from_numpy(segment.noise.sdp_noise(x.size(1), scales.noise_scale_w))[None]
        logw = model.predict_logw(enc, x_mask, g, noise)
        durations = regulator.durations_from_logw(logw.numpy(), x_mask.numpy(), scales.length_scale)
        m, logs, y_mask, _ = regulator.expand_by_durations(durations, m_p.numpy(), logs_p.numpy())
        eps = segment.noise.prior_eps(model.inter_channels, m.shape[-1])[None]
        z_p = regulator.sample_prior(m, logs, eps, scales.noise_scale, y_mask)
        y = torch.from_numpy(y_mask)
        z = model.flow_reverse(torch.from_numpy(z_p), y, g)
        return model.decode(z, y, g)[0, 0].numpy()


@pytest.mark.parametrize("variant", ["multi", "dp"])
def test_engine_audio_equals_the_torch_stage_chain(vits_voices, vits_engine, variant):
    _, checkpoint, config = vits_voices[variant]
    model = load_generator(checkpoint, config).model
    request = _request(57, seed=9, voice=f"vits-{variant}", speaker="speaker_0")
    pipeline = vits_engine.pipeline(f"vits-{variant}")
    segment = pipeline.segments_for(request, stream_id=0, seed=9)[0]
    reference = _torch_chain(model, segment, sid=0)
    served = vits_engine.synthesize(request).audio
    assert served.shape == reference.shape
    assert float(np.abs(served - reference).max()) <= 1e-4
    with torch.no_grad():  # negative control: a changed decoder is seen
        model.dec.conv_post.weight.mul_(1.1)
    assert float(np.abs(served - _torch_chain(model, segment, sid=0)).max()) > 1e-4


def test_torch_backend_serves_a_vits_voice_from_the_bundle(vits_voices):
    voice_dir = vits_voices["multi"][0]
    options = EngineOptions(max_batch=4, max_wait_ms=1.0, threads=1, max_active_streams=4)
    request = _request(33, seed=2, voice="vits-multi", speaker="speaker_1")
    with Engine.open([voice_dir], options=options) as ort_engine:
        expected = ort_engine.synthesize(request).audio
    with Engine.open([voice_dir], backend="torch", options=options) as torch_engine:
        served = torch_engine.synthesize(request).audio
    assert served.shape == expected.shape and float(np.abs(served - expected).max()) <= 1e-4


def test_upstream_vits_config_without_family_loads_by_checkpoint_layout(tmp_path):
    """An upstream VITS config.json says no family: a checkpoint with a phone table and no tone table is VITS."""
    checkpoint, config_path = _checkpoint(tmp_path, "single")
    raw = json.loads(config_path.read_text())
    del raw["family"]
    config_path.write_text(json.dumps(raw))
    loaded = load_generator(checkpoint, config_path)
    assert loaded.family == "vits" and isinstance(loaded.model, VitsSynthesizer) and loaded.iteration == 100
    raw["model"]["use_sdp"] = False  # a config that does not describe the checkpoint is named
    config_path.write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=r"model\.use_sdp = false but the checkpoint has dp\.flows"):
        load_generator(checkpoint, config_path)


def test_voice_json_graphs_must_be_the_family_stages(vits_voices, tmp_path):
    """A VITS voice.json listing a graph of a stage VITS does not have (Bert-VITS2's duration_dp_only) is refused."""
    import shutil

    from vitsrt.errors import VoiceError

    voice_dir = shutil.copytree(vits_voices["single"][0], tmp_path / "voice")
    manifest = json.loads((voice_dir / "voice.json").read_text())
    load_voice(voice_dir)  # as exported: fine
    extra = json.loads(json.dumps(manifest))
    extra["graphs"]["duration_dp_only"] = extra["graphs"]["duration"]
    (voice_dir / "voice.json").write_text(json.dumps(extra))
    with pytest.raises(VoiceError, match="a vits voice has a 'duration_dp_only' graph"):
        load_voice(voice_dir)
    (voice_dir / "voice.json").write_text(json.dumps({**manifest, "model": {"family": "bert-vits2", "version": "2.3"}}))
    load_voice(voice_dir)  # the same graphs are a complete Bert-VITS2 stage set (duration_dp_only is optional)
