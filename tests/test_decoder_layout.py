"""The decoder graph in 2-D layout (vitsrt.export.planar): the same function as the 1-D graph for both families
(padded batches, a speaker vector per frame or one per item), each item of a padded batch equal to its lone decode,
and onnxruntime actually running it with its blocked (NCHWc) convolutions. Negative controls: one weight's sign
flipped, the padding left unmasked, a ConvTranspose given the wrong output padding."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from test_vits_model import randomized, tiny_vits  # noqa: E402
from torch import nn  # noqa: E402

from conftest import SMALL_22K_CONFIG  # noqa: E402
from vitsrt.config import parse_config  # noqa: E402
from vitsrt.export.onnx_export import ExportError, export_stage, export_stages, folded_copy  # noqa: E402
from vitsrt.export.planar import PlanarDecoder, PlanarError, planar_conv, planar_copy  # noqa: E402
from vitsrt.train.models.synthesizer import SynthesizerTrn  # noqa: E402
from vitsrt.train.models.vits import VitsSynthesizer  # noqa: E402
from vitsrt.train.models.wavenet import weight_normed  # noqa: E402

TOLERANCE = 1e-5
LENGTHS = (41, 23, 7)  # a padded batch: the masks decide the shorter items' audio
NCHWC_DOMAIN = "com.microsoft.nchwc"


def _bert_vits2() -> SynthesizerTrn:
    """The small 22 kHz Bert-VITS2 of the engine tests, with V1 resblocks (dilated pairs) for the other block type."""
    raw = copy.deepcopy(SMALL_22K_CONFIG)
    raw["model"].update(resblock="1", resblock_kernel_sizes=[3, 7], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]])
    torch.manual_seed(0)
    return SynthesizerTrn(parse_config(raw)).eval()


def _vits() -> VitsSynthesizer:
    """A 3-speaker tiny VITS (piper's V3 decoder layout) with every weight random."""
    return randomized(VitsSynthesizer(tiny_vits(3, use_sdp=True, resblock="2")), seed=4)


FAMILIES = {"bert-vits2": _bert_vits2, "vits": _vits}


def _session(path: Path, optimized: Path | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3  # the optimized-model dump warns that NCHWc graphs are machine specific
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def decoders(tmp_path_factory) -> dict[str, dict[str, object]]:
    """family -> the folded model and its decoder exported in each layout."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("layout")
    built: dict[str, dict[str, object]] = {}
    for family, make in FAMILIES.items():
        folded = folded_copy(make())
        entry: dict[str, object] = {"model": folded}
        for layout in ("1d", "2d"):
            entry[layout] = export_stage(folded, "decoder", base / f"{family}-{layout}.onnx", decoder_layout=layout)
        built[family] = entry
    return built


def _feeds(model, lengths=LENGTHS, per_frame_g: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = max(lengths)
    mask = (np.arange(frames)[None, :] < np.array(lengths)[:, None]).astype(np.float32)[:, None, :]
    feeds = {"z": rng.standard_normal((len(lengths), model.config.model.inter_channels, frames)).astype(np.float32),
             "y_mask": mask}
    gin = model.config.model.gin_channels
    if gin:
        feeds["g"] = rng.standard_normal((len(lengths), gin, frames if per_frame_g else 1)).astype(np.float32)
    return feeds


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return _session(path).run(None, feeds)[0]


def _worst(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


# ----- the conversion itself ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv1d(6, 8, 5, padding=6, dilation=3),
        nn.Conv1d(6, 4, 3, stride=2, padding=1, groups=2, bias=False),
        nn.ConvTranspose1d(8, 4, 16, 8, padding=4),
        nn.ConvTranspose1d(4, 4, 5, 3, padding=1, output_padding=2),
    ],
    ids=["dilated", "strided-grouped", "transposed", "transposed-output-padding"],
)
def test_a_planar_conv_is_the_1d_conv_on_a_unit_height(conv):
    torch.manual_seed(1)
    x = torch.randn(2, conv.in_channels, 37)
    planar = planar_conv(conv)
    with torch.no_grad():
        expected, got = conv(x), planar(x.unsqueeze(2))
    assert got.shape == (*expected.shape[:2], 1, expected.shape[-1])
    assert _worst(got.squeeze(2).numpy(), expected.numpy()) <= 1e-6


def test_negative_control_a_transposed_conv_with_another_output_padding_differs():
    conv = nn.ConvTranspose1d(4, 4, 5, 3, padding=1, output_padding=2)
    planar = planar_conv(conv)
    planar.output_padding = (0, 1)
    with torch.no_grad():
        x = torch.randn(1, 4, 11)
        assert planar(x.unsqueeze(2)).shape[-1] != conv(x).shape[-1]


def test_planar_copy_leaves_the_original_1d_and_refuses_weight_norm():
    model = folded_copy(_vits())
    planar = planar_copy(model.dec)
    assert isinstance(model.dec.conv_pre, nn.Conv1d) and isinstance(planar.conv_pre, nn.Conv2d)
    assert isinstance(planar.ups[0], nn.ConvTranspose2d)
    with pytest.raises(PlanarError, match="weight norm"):
        planar_conv(weight_normed(nn.Conv1d(4, 4, 3)))
    with pytest.raises(PlanarError, match="no 1-D conv"):
        planar_copy(nn.Sequential(nn.ReLU()))
    with pytest.raises(PlanarError, match="weight norm"):
        planar_copy(_vits().dec)  # not folded


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_planar_decoder_equals_the_model_decode_in_torch(family):
    model = folded_copy(FAMILIES[family]())
    feeds = {k: torch.from_numpy(v) for k, v in _feeds(model).items()}
    with torch.no_grad():
        expected = model.decode(feeds["z"], feeds["y_mask"], feeds.get("g"))
        got = PlanarDecoder(model.dec)(feeds["z"], feeds["y_mask"], feeds.get("g"))
    assert got.shape == expected.shape
    assert _worst(got.numpy(), expected.numpy()) <= TOLERANCE


# ----- the exported graphs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_frame_g", [True, False], ids=["g-per-frame", "g-per-item"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_2d_decoder_graph_equals_the_1d_one(decoders, family, per_frame_g):
    entry = decoders[family]
    feeds = _feeds(entry["model"], per_frame_g=per_frame_g)
    one, two = _run(entry["1d"], feeds), _run(entry["2d"], feeds)
    assert two.shape == one.shape == (len(LENGTHS), 1, max(LENGTHS) * entry["model"].hop_length)
    assert np.abs(one).max() > 0.05  # real audio, not a silent graph
    assert _worst(one, two) <= TOLERANCE


def _signature(value) -> tuple[str, int, list[object]]:
    """Name, dtype and dims of a graph input/output; names the exporter invents for axes it could not name
    (e.g. 'Tanhaudio_dim_1') are left out."""
    tensor = value.type.tensor_type
    dims = [d.dim_value or ("?" if "_dim_" in d.dim_param else d.dim_param) for d in tensor.shape.dim]
    return value.name, tensor.elem_type, dims


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_2d_graph_keeps_the_interface(decoders, family):
    graphs = {layout: onnx.load(str(decoders[family][layout]), load_external_data=False).graph
              for layout in ("1d", "2d")}
    interfaces = {layout: [_signature(t) for t in [*g.input, *g.output]] for layout, g in graphs.items()}
    assert interfaces["2d"] == interfaces["1d"]
    assert all(len(dims) == 3 for _, _, dims in interfaces["2d"])
    conv_ranks = {len(i.dims) for i in graphs["2d"].initializer if i.name.endswith("weight")}
    assert conv_ranks == {4}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_item_of_a_padded_2d_batch_is_its_lone_decode(decoders, family):
    entry = decoders[family]
    feeds, hop = _feeds(entry["model"], seed=2), entry["model"].hop_length
    batched = _run(entry["2d"], feeds)
    for item, length in enumerate(LENGTHS):
        alone = {k: v[item : item + 1, :, : (length if v.shape[-1] > 1 else 1)] for k, v in feeds.items()}
        audio = _run(entry["2d"], alone)
        assert _worst(batched[item, :, : length * hop], audio[0]) <= TOLERANCE
        assert not batched[item, :, length * hop :].any()  # the padding decodes to silence


def test_negative_control_an_unmasked_batch_is_not_the_lone_decode(decoders):
    entry = decoders["vits"]
    feeds, hop = _feeds(entry["model"], seed=2), entry["model"].hop_length
    unmasked = {**feeds, "y_mask": np.ones_like(feeds["y_mask"])}
    length = LENGTHS[-1]
    alone = {k: v[-1:, :, :length] for k, v in feeds.items()}
    assert _worst(_run(entry["2d"], unmasked)[-1, :, : length * hop], _run(entry["2d"], alone)[0]) > 1e-3


@pytest.mark.parametrize("family", list(FAMILIES))
def test_negative_control_one_flipped_weight_sign_is_caught(decoders, family, tmp_path):
    entry = decoders[family]
    broken = copy.deepcopy(entry["model"])
    with torch.no_grad():
        weight = broken.dec.conv_post.weight.view(-1)
        weight[weight.abs().argmax()] *= -1  # the largest weight of the last conv
    path = export_stage(broken, "decoder", tmp_path / "broken.onnx", decoder_layout="2d")
    feeds = _feeds(entry["model"])
    assert _worst(_run(entry["1d"], feeds), _run(path, feeds)) > 10 * TOLERANCE


def test_an_unknown_layout_is_refused_in_one_line(tmp_path):
    with pytest.raises(ExportError, match="decoder layout '3d' is not one of 1d, 2d"):
        export_stages(_vits(), tmp_path, stages=("decoder",), decoder_layout="3d")


# ----- onnxruntime's blocked convolutions ---------------------------------------------------------------------


def _nchwc_ops(path: Path, optimized: Path) -> list[str]:
    _session(path, optimized)
    return [n.op_type for n in onnx.load(str(optimized)).graph.node if n.domain == NCHWC_DOMAIN]


def _machine_has_nchwc(tmp_path: Path) -> bool:
    """Whether this onnxruntime blocks a plain 2-D conv (x86 with AVX2 or AVX-512; not every build or CPU does)."""
    conv = onnx.helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 1, 0, 1])
    weight = onnx.numpy_helper.from_array(np.ones((32, 32, 1, 3), np.float32), "w")
    graph = onnx.helper.make_graph(
        [conv], "probe", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 32, 1, 64])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], [weight])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "probe.onnx")
    return bool(_nchwc_ops(tmp_path / "probe.onnx", tmp_path / "probe-opt.onnx"))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_onnxruntime_runs_the_2d_decoder_with_nchwc_convolutions(decoders, family, tmp_path):
    if not _machine_has_nchwc(tmp_path):
        pytest.skip("this onnxruntime/CPU does not use NCHWc convolutions (no AVX2/AVX-512 kernels)")
    two = _nchwc_ops(decoders[family]["2d"], tmp_path / "2d-opt.onnx")
    assert two.count("Conv") >= 3 and "ReorderInput" in two and "ReorderOutput" in two
    assert _nchwc_ops(decoders[family]["1d"], tmp_path / "1d-opt.onnx") == []  # a 1-D conv never is blocked


# ----- the command line ---------------------------------------------------------------------------------------


def _vits_checkpoint(root: Path) -> tuple[Path, Path]:
    from vitsrt.train.checkpoint import save_checkpoint

    model = _vits()
    root.mkdir(parents=True, exist_ok=True)
    save_checkpoint(root / "G_1.pth", model, iteration=1)
    (root / "config.json").write_text(model.config.to_json(), encoding="utf-8")
    return root / "G_1.pth", root / "config.json"


def _decoder_weight_ranks(voice: Path) -> set[int]:
    graph = onnx.load(str(voice / "decoder.onnx"), load_external_data=False).graph
    return {len(i.dims) for i in graph.initializer if i.name.endswith("weight")}


def test_vitsrt_export_writes_the_2d_decoder_by_default_and_1d_on_request(tmp_path, capsys):
    from vitsrt.cli import main

    checkpoint, config = _vits_checkpoint(tmp_path / "ckpt")
    assert main(["export", str(checkpoint), "-c", str(config), "-o", str(tmp_path / "v2"), "--no-verify"]) == 0
    assert main(["export", str(checkpoint), "-c", str(config), "-o", str(tmp_path / "v1"), "--no-verify",
                 "--decoder-layout", "1d"]) == 0
    assert _decoder_weight_ranks(tmp_path / "v2") == {4} and _decoder_weight_ranks(tmp_path / "v1") == {3}
    feeds = _feeds(folded_copy(_vits()))
    assert _worst(_run(tmp_path / "v1" / "decoder.onnx", feeds), _run(tmp_path / "v2" / "decoder.onnx", feeds)) \
        <= TOLERANCE
    code = main(["export", str(checkpoint), "-c", str(config), "-o", str(tmp_path / "p.onnx"), "--format", "piper",
                 "--decoder-layout", "2d"])
    err = capsys.readouterr().err
    assert code != 0 and "--decoder-layout" in err and "Traceback" not in err


# ----- the fp16 conversion (strongly typed TensorRT plans) ------------------------------------------------------


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_fp16_conversion_reduces_the_2d_convs_and_stays_close(decoders, family):
    from vitsrt.export.fp16 import mixed_precision_model

    path = decoders[family]["2d"]
    model = onnx.load(str(path))
    mixed, report = mixed_precision_model(model, "float16")
    assert not report.kept_ops() & {"Conv", "ConvTranspose", "LeakyRelu"}
    types = {i.name: i.data_type for i in mixed.graph.initializer}
    conv_weights = [n.input[1] for n in mixed.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert conv_weights and all(types[w] == onnx.TensorProto.FLOAT16 for w in conv_weights)
    feeds = _feeds(decoders[family]["model"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    reference = _run(path, feeds)
    converted = ort.InferenceSession(mixed.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
        None, feeds)[0]
    relative = _worst(reference, converted) / float(np.abs(reference).max())
    assert 0 < relative <= 1e-2  # really reduced, and close (the tolerance of tests/test_tensorrt_fp16.py)
