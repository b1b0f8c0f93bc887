"""Bert-VITS2 2.2 (CLAP emotion branch): our generator and our exported graphs reproduce the upstream 2.2 fixture.

Per case: durations and y_lengths exact, audio within 1e-4 of upstream's (per item, the single-item reference over
its own length), encoder/duration/flow tensors within 1e-4, and the emotion branch's intermediates (emo_feat,
emo_vq_in, the 32 code indices, emo_vq_out, emo_emb) as the fixture README asks: the branch is piecewise constant,
so small errors before the quantizer show only there (negative controls below show both sides of that).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import torch  # noqa: E402
from bv22_helpers import (  # noqa: E402
    CASES22,
    audio_errors,
    case_scales,
    encoder_feeds,
    exported_voice22,
    fixture22,
    load_npz,
    single_references,
)
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from conftest import FIXTURE_DIR, REPO_ROOT  # noqa: E402
from vitsrt.errors import CheckpointError, ConfigError  # noqa: E402
from vitsrt.export.ort_pipeline import synthesize_batch  # noqa: E402
from vitsrt.serve.backends.ort_runner import OrtRunner  # noqa: E402
from vitsrt.train.checkpoint import read_checkpoint  # noqa: E402
from vitsrt.train.loading import load_generator  # noqa: E402
from vitsrt.voice import load_voice  # noqa: E402

TOL = 1e-4  # audio and the encoder/duration/flow tensors
BRANCH_TOL = 1e-5  # the emotion branch's float intermediates (fp32 vs fp64 upstream: ~1e-6)


@pytest.fixture(scope="module")
def cases() -> dict[str, np.ndarray]:
    return load_npz("cases.npz")


@pytest.fixture(scope="module")
def model():
    root = fixture22()
    torch.set_num_threads(1)
    return load_generator(root / "G_0.pth", root / "config.json")


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    return exported_voice22(tmp_path_factory)


@pytest.fixture(scope="module")
def runner(voice):
    return OrtRunner.from_voice(voice, intra_op_threads=1, quiet=True)


def _torch_infer(model, cases, name: str, emo: np.ndarray | None = None):
    t = {k: torch.from_numpy(v) for k, v in encoder_feeds(cases, name, emo).items()}
    scales = case_scales(cases, name)
    return model.infer(t["phone_ids"], t["lengths"], t["sid"], t["tone_ids"], t["language_ids"], t["bert"],
                       t["ja_bert"], t["en_bert"], emo=t["emo"], **scales)


def _branch_errors(trace: dict[str, np.ndarray], cases, name: str) -> dict[str, float]:
    """Max abs diff of each float intermediate of the emotion branch against the fixture's."""
    return {key: float(np.abs(trace[key].reshape(cases[f"{name}_{key}"].shape) - cases[f"{name}_{key}"]).max())
            for key in ("emo_feat", "emo_vq_in", "emo_vq_out", "emo_emb")}


def _torch_trace(model, emo: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        trace = model.model.enc_p.emotion_trace(torch.from_numpy(emo))
    return {"emo_feat": trace.emo_feat.numpy(), "emo_vq_in": trace.emo_vq_in.numpy(), "codes": trace.codes.numpy(),
            "emo_vq_out": trace.emo_vq_out.numpy(), "emo_emb": trace.emo_emb.numpy()}


# ----- loading -----------------------------------------------------------------------------------------------


def test_info_reports_22():
    root = fixture22()
    result = subprocess.run([sys.executable, "-m", "vitsrt.cli", "info", str(root / "G_0.pth"), "-c",
                             str(root / "config.json"), "--json"], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["version"] == "2.2"


def test_loads_as_22_with_upstream_keys(model):
    assert model.version == "2.2" and model.family == "bert-vits2"
    state = read_checkpoint(fixture22() / "G_0.pth")["model"]
    ours = model.model.state_dict()
    assert set(ours) == set(state)  # strict: all 1018 upstream tensors, nothing else
    assert len(state) == 1018 and sum(v.numel() for v in ours.values()) == 4_911_500


def test_version_told_by_the_keys_when_the_config_has_none(tmp_path, cases):
    config = json.loads((fixture22() / "config.json").read_text())
    del config["version"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load_generator(fixture22() / "G_0.pth", tmp_path / "config.json")
    assert (loaded.version, loaded.version_source, loaded.config.version) == ("2.2", "checkpoint keys", "2.2")


@pytest.mark.parametrize("version", ["2.3", "2.0"])
def test_config_and_checkpoint_disagreeing_about_emotion_is_refused(tmp_path, version):
    config = json.loads((fixture22() / "config.json").read_text())
    config["version"] = version
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=rf"says version {version} but the checkpoint has 2.2's emotion"):
        load_generator(fixture22() / "G_0.pth", tmp_path / "config.json")


def test_22_config_on_a_23_checkpoint_is_refused(tmp_path):
    if not (FIXTURE_DIR / "G_0.pth").is_file():
        pytest.skip("the 2.3 fixture is not available")
    with pytest.raises(CheckpointError, match=r"says version 2\.2 but the checkpoint lacks 2\.2.s emotion branch"):
        load_generator(FIXTURE_DIR / "G_0.pth", fixture22() / "config.json")


@pytest.mark.parametrize("version", ["2.1", "1.1.1"])
def test_21_and_1x_keep_their_refusal(tmp_path, version):
    config = json.loads((fixture22() / "config.json").read_text())
    config["version"] = version
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=rf"unsupported version {version}: "):
        load_generator(fixture22() / "G_0.pth", tmp_path / "config.json")


def test_newer_quantizer_flag_layout_loads(tmp_path, model, cases):
    """vector-quantize-pytorch >= 1.27 saves `initted` as a 0-d bool; the checkpoint still loads, same output."""
    raw = read_checkpoint(fixture22() / "G_0.pth")
    raw["model"]["enc_p.emo_vq._codebook.initted"] = torch.tensor(True)
    torch.save(raw, tmp_path / "G_0.pth")
    again = load_generator(tmp_path / "G_0.pth", fixture22() / "config.json")
    with torch.no_grad():
        a, b = _torch_infer(model.model, cases, "case1"), _torch_infer(again.model, cases, "case1")
    assert torch.equal(a.audio, b.audio)


# ----- PyTorch ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASES22)
def test_torch_matches_upstream(model, cases, name):
    result = _torch_infer(model.model, cases, name)
    np.testing.assert_array_equal(result.durations.numpy(), cases[f"{name}_durations"])
    np.testing.assert_array_equal(result.y_lengths.numpy(), cases[f"{name}_y_lengths"])
    trace = _torch_trace(model, cases[f"{name}_emo"])
    np.testing.assert_array_equal(trace["codes"], cases[f"{name}_emo_vq_indices"][:, 0])
    errors = _branch_errors(trace, cases, name)
    assert max(errors.values()) <= BRANCH_TOL, errors
    for key, ours in (("m_p", result.m_p), ("logs_p", result.logs_p), ("logw", result.logw), ("enc_x", result.enc),
                      ("z", result.z)):
        assert float(np.abs(ours.numpy() - cases[f"{name}_{key}"]).max()) <= TOL, key
    errors = audio_errors(result.audio.numpy(), single_references(cases, name))
    assert max(errors) <= TOL, errors


def test_negative_control_emotion_of_another_case(model, cases):
    """Case0 with case1's emotion: other codes, other durations (the comparison would catch a wrong emo)."""
    result = _torch_infer(model.model, cases, "case0", emo=cases["case1_emo"])
    assert not np.array_equal(result.durations.numpy(), cases["case0_durations"])


def test_negative_control_a_flipped_code_changes_the_durations(model, cases):
    """One head given its runner-up code (head 20's chosen code vector replaced by code 10's, the fixture README's
    probe) changes case0's durations: a single code-selection error is visible in the audio cases."""
    codebook = model.model.enc_p.emo_vq._codebook.embed
    code = int(cases["case0_emo_vq_indices"][0, 0, 20])
    assert code != 10
    saved = codebook[20].clone()
    try:
        with torch.no_grad():
            codebook[20, code] = codebook[20, 10]
        result = _torch_infer(model.model, cases, "case0")
    finally:
        with torch.no_grad():
            codebook[20] = saved
    assert not np.array_equal(result.durations.numpy(), cases["case0_durations"])


def test_negative_control_errors_before_the_quantizer_show_only_in_the_intermediates(model, cases):
    """emo x 1.001 keeps every code (so durations and audio are unchanged) but moves emo_feat and emo_vq_in past
    their tolerance: the intermediate comparison is what catches small errors in front of the quantizer."""
    emo = cases["case0_emo"] * np.float32(1.001)
    trace = _torch_trace(model, emo)
    np.testing.assert_array_equal(trace["codes"], cases["case0_emo_vq_indices"][:, 0])
    result = _torch_infer(model.model, cases, "case0", emo=emo)
    assert max(audio_errors(result.audio.numpy(), single_references(cases, "case0"))) <= TOL
    errors = _branch_errors(trace, cases, "case0")
    assert errors["emo_feat"] > BRANCH_TOL and errors["emo_vq_in"] > BRANCH_TOL, errors
    assert errors["emo_emb"] <= BRANCH_TOL  # after the quantizer nothing moved


# ----- exported graphs -------------------------------------------------------------------------------------------


def test_voice_has_the_emotion_input(voice):
    manifest = load_voice(voice).manifest
    assert manifest.model.version == "2.2"
    emo = manifest.graphs.encoder.input("emo")
    assert emo is not None and emo.shape == ["B", 512] and emo.dtype == "float32"
    assert manifest.emotion is not None and manifest.emotion.clap_model is not None
    assert all(figures.passed for figures in manifest.parity.stages.values())


@pytest.mark.parametrize("name", CASES22)
def test_graphs_match_upstream(runner, cases, name):
    result = synthesize_batch(runner, encoder_feeds(cases, name), seeds=[7] * len(cases[f"{name}_sid"]),
                              **case_scales(cases, name))
    np.testing.assert_array_equal(result.durations, cases[f"{name}_durations"][:, 0, :].astype(np.int64))
    np.testing.assert_array_equal(result.y_lengths, cases[f"{name}_y_lengths"])
    for key, ref_key in (("m_p", "m_p"), ("logs_p", "logs_p"), ("logw", "logw"), ("enc", "enc_x")):
        assert float(np.abs(result.tensors[key] - cases[f"{name}_{ref_key}"]).max()) <= TOL, key
    errors = audio_errors(result.audio, single_references(cases, name))
    assert max(errors) <= TOL, errors


# The encoder graph's emotion-branch tensors, named by the exporter after the module that made them.
_PROBES = {
    "emo_feat": ("/enc_p/in_feature_net/", TensorProto.FLOAT),
    "emo_vq_in": ("/enc_p/emo_vq/project_in/", TensorProto.FLOAT),
    "codes": ("/enc_p/emo_vq/ArgMin", TensorProto.INT64),  # [heads, B]
    "emo_vq_out": ("/enc_p/emo_vq/project_out/", TensorProto.FLOAT),
    "emo_emb": ("/enc_p/out_feature_net/", TensorProto.FLOAT),
}


def _probed_encoder(path, tmp_path, scale_initializer: str | None = None) -> tuple[Path, dict[str, str]]:
    """The encoder graph with its emotion-branch tensors as extra outputs (the last node of each module's scope),
    and their tensor names; `scale_initializer` multiplies the weight of that scope's MatMul by 1.0005."""
    graph_model = onnx.load(str(path))
    nodes = list(graph_model.graph.node)
    found = {}
    for key, (prefix, dtype) in _PROBES.items():
        last = [n for n in nodes if n.name.startswith(prefix)][-1]
        graph_model.graph.output.append(helper.make_tensor_value_info(last.output[0], dtype, None))
        found[key] = last.output[0]
    if scale_initializer is not None:
        matmul = next(n for n in nodes if n.name.startswith(scale_initializer) and n.op_type == "MatMul")
        weights = {t.name: t for t in graph_model.graph.initializer}
        target = weights[next(i for i in matmul.input if i in weights)]
        target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target) * np.float32(1.0005), target.name))
    out = tmp_path / "encoder_probed.onnx"
    onnx.save(graph_model, str(out))
    return out, found


def _run_probed(probed: tuple[Path, dict[str, str]], cases, name: str) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    path, found = probed
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]
    feeds = {k: v for k, v in encoder_feeds(cases, name).items() if k in wanted}
    values = dict(zip(found, session.run(list(found.values()), feeds), strict=True))
    values["codes"] = values["codes"].T
    return values


def test_graph_intermediates_match_upstream(voice, cases, tmp_path):
    probed = _probed_encoder(voice / "encoder.onnx", tmp_path)
    for name in CASES22:
        trace = _run_probed(probed, cases, name)
        np.testing.assert_array_equal(trace["codes"], cases[f"{name}_emo_vq_indices"][:, 0])
        errors = _branch_errors(trace, cases, name)
        assert max(errors.values()) <= BRANCH_TOL, (name, errors)


def test_negative_control_graph_intermediates_catch_a_feature_net_error(voice, cases, tmp_path):
    """The last feature-net weight off by 0.05%: emo_feat fails its tolerance (the codes may well not move)."""
    probed = _probed_encoder(voice / "encoder.onnx", tmp_path,
                             scale_initializer="/enc_p/in_feature_net/in_feature_net.4/")
    errors = _branch_errors(_run_probed(probed, cases, "case0"), cases, "case0")
    assert errors["emo_feat"] > BRANCH_TOL, errors


def test_graph_end_to_end_cases_with_clap_embeddings(runner, model, cases):
    """case0's inputs with the emotion of each stored CLAP clip and prompt (fixture's e2e cases), graphs and torch."""
    clap_cases = load_npz("clap_cases.npz")
    sources = sorted({k.split("_")[1] for k in clap_cases if k.startswith("e2e_")})
    assert len(sources) == 6
    for source in sources:
        emo = clap_cases[f"e2e_{source}_emo"]
        reference = [clap_cases[f"e2e_{source}_audio"]]
        result = synthesize_batch(runner, encoder_feeds(cases, "case0", emo), seeds=[7],
                                  **case_scales(cases, "case0"))
        np.testing.assert_array_equal(result.y_lengths, clap_cases[f"e2e_{source}_y_lengths"])
        assert max(audio_errors(result.audio, reference)) <= TOL, source
        trace = _torch_trace(model, emo)
        np.testing.assert_array_equal(trace["codes"], clap_cases[f"e2e_{source}_emo_vq_indices"][:, 0])
        assert float(np.abs(trace["emo_emb"] - clap_cases[f"e2e_{source}_emo_emb"][:, 0]).max()) <= BRANCH_TOL


def test_fp16_weight_storage_keeps_the_quantizer_inputs_exact(voice, cases, tmp_path):
    """`--weights fp16` keeps the weights in front of the quantizer float32 (EMOTION_FP32_SCOPES): emo_feat and
    emo_vq_in stay within the float32 tolerance, so code choices are the float32 model's. Negative control: the
    same graph with every weight stored as float16 moves emo_vq_in far past it."""
    from vitsrt.export.onnx_export import EMOTION_FP32_SCOPES
    from vitsrt.export.weight_storage import store_weights_fp16

    worst = {}
    for label, scopes in (("kept", EMOTION_FP32_SCOPES), ("all fp16", ())):
        graph = tmp_path / label / "encoder.onnx"
        graph.parent.mkdir()
        shutil.copyfile(voice / "encoder.onnx", graph)
        stored = store_weights_fp16(graph, keep_scopes=scopes)
        assert stored.converted > 0
        errors = _branch_errors(_run_probed(_probed_encoder(graph, graph.parent), cases, "case2"), cases, "case2")
        worst[label] = max(errors["emo_feat"], errors["emo_vq_in"])
    assert worst["kept"] <= BRANCH_TOL and worst["all fp16"] > 10 * BRANCH_TOL, worst
