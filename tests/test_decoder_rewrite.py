"""The decoder graph rewritten for onnxruntime's CPU provider (vitsrt.serve.backends.decoder_rewrite) and the runner
that routes calls to its two copies: the unpadded copy equal to the graph as written for every unpadded call (both
families, both layouts, a speaker vector per frame), a padded batch given the padded copy, each row of it the same
bits as the row alone, the transposed-conv rewrite equal to onnxruntime's ConvTranspose for the strides and paddings
HiFi-GANs use. Negative controls: the unpadded copy on a padded batch, the graph as written for the padded batch
(not the same bits), a polyphase weight off by one tap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from test_decoder_layout import FAMILIES, _feeds  # noqa: E402
from torch import nn  # noqa: E402

from vitsrt.export.onnx_export import export_stage, folded_copy  # noqa: E402
from vitsrt.export.planar import planar_conv  # noqa: E402
from vitsrt.serve.backends import decoder_rewrite  # noqa: E402
from vitsrt.serve.backends.ort_runner import OrtRunner  # noqa: E402

TOLERANCE = 1e-5  # polyphase sums in another order (measured ~1e-7 on audio in [-1, 1])


def _session(graph: Path | bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(graph if isinstance(graph, bytes) else str(graph), options,
                                providers=["CPUExecutionProvider"])


def _worst(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


@pytest.fixture(scope="module")
def decoders(tmp_path_factory) -> dict[tuple[str, str], tuple[object, Path]]:
    """(family, layout) -> the folded model and its exported decoder graph."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("rewrite")
    built = {}
    for family, make in FAMILIES.items():
        folded = folded_copy(make())
        for layout in ("1d", "2d"):
            path = export_stage(folded, "decoder", base / f"{family}-{layout}.onnx", decoder_layout=layout)
            built[family, layout] = (folded, path)
    return built


def _ops(graph: bytes) -> list[str]:
    return [n.op_type for n in onnx.load_from_string(graph).graph.node]


@pytest.mark.parametrize("layout", ["1d", "2d"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_rewritten_decoder_equals_the_graph_as_written_on_an_unpadded_call(decoders, family, layout):
    model, path = decoders[family, layout]
    rewritten = decoder_rewrite.rewritten_decoder(path, unpadded=True)
    ops = _ops(rewritten)
    assert "Mul" not in ops  # every mask multiply gone (the decoders multiply by nothing else)
    assert ("ConvTranspose" in ops) == (layout == "1d")  # polyphase for the planar graph only
    feeds = _feeds(model, lengths=(37,))
    expected = _session(path).run(None, feeds)[0]
    got = _session(rewritten).run(None, feeds)[0]
    assert got.shape == expected.shape
    assert _worst(got, expected) <= (0.0 if layout == "1d" else TOLERANCE)  # masks alone: the same bits


@pytest.mark.parametrize("family", list(FAMILIES))
def test_negative_control_the_rewritten_decoder_is_wrong_for_a_padded_batch(decoders, family):
    model, path = decoders[family, "2d"]
    feeds = _feeds(model)
    expected = _session(path).run(None, feeds)[0]
    got = _session(decoder_rewrite.rewritten_decoder(path, unpadded=True)).run(None, feeds)[0]
    assert _worst(got, expected) > 1e-3


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_runner_gives_padded_calls_their_own_copy_and_opens_it_only_then(decoders, family):
    model, path = decoders[family, "2d"]
    runner = OrtRunner({"decoder": path}, intra_op_threads=1, quiet=True)
    plain = OrtRunner({"decoder": path}, intra_op_threads=1, quiet=True, rewrite_decoder=False)
    assert set(runner._unpadded) == {"decoder"} and not runner._sessions  # one session until a padded call
    alone = _feeds(model, lengths=(29,), seed=3)
    assert _worst(runner.run("decoder", alone)["audio"], plain.run("decoder", alone)["audio"]) <= TOLERANCE
    assert not runner._sessions
    padded = _feeds(model, seed=4)
    assert _worst(runner.run("decoder", padded)["audio"], plain.run("decoder", padded)["audio"]) <= TOLERANCE
    assert set(runner._sessions) == {"decoder"}
    assert "ConvTranspose" not in _ops(decoder_rewrite.rewritten_decoder(path, unpadded=False))
    assert runner.input_names("decoder") == plain.input_names("decoder")


def _rows_alone(runner: OrtRunner, feeds: dict[str, np.ndarray], lengths: tuple[int, ...], hop: int) -> list:
    """Each row of a padded batch decoded alone (its own frames, its own speaker vectors)."""
    rows = []
    for row, frames in enumerate(lengths):
        mine = {name: value[row : row + 1] for name, value in feeds.items()}
        mine = {name: value[..., :frames] if value.shape[-1] > 1 else value for name, value in mine.items()}
        rows.append(runner.run("decoder", mine)["audio"][0, 0, : frames * hop])
    return rows


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_padded_batch_row_gets_the_bits_it_gets_alone(decoders, family):
    """Batch invariance on CPU: padded rows run the padded copy, a lone row the unpadded one; they differ only by
    multiplications by 1.0 on the row's frames. Negative control: the graph as written for the padded batch."""
    model, path = decoders[family, "2d"]
    runner = OrtRunner({"decoder": path}, intra_op_threads=1, quiet=True)
    plain = OrtRunner({"decoder": path}, intra_op_threads=1, quiet=True, rewrite_decoder=False)
    lengths = (41, 23, 7)
    feeds = _feeds(model, lengths=lengths, seed=5)
    hop = runner.run("decoder", feeds)["audio"].shape[-1] // max(lengths)
    batch, as_written = runner.run("decoder", feeds)["audio"], plain.run("decoder", feeds)["audio"]
    alone = _rows_alone(runner, feeds, lengths, hop)
    for row, frames in enumerate(lengths):
        assert np.array_equal(batch[row, 0, : frames * hop], alone[row])
    assert not all(np.array_equal(as_written[row, 0, : f * hop], alone[row]) for row, f in enumerate(lengths))


def test_the_runner_keeps_the_graph_as_written_off_cpu_and_when_asked(decoders):
    _, path = decoders["vits", "2d"]
    assert not OrtRunner({"decoder": path}, quiet=True, rewrite_decoder=False)._unpadded
    assert not OrtRunner({"flow": path}, quiet=True)._unpadded  # only the decoder stage is rewritten


# ----- the polyphase transposed conv --------------------------------------------------------------------------


def _transposed_graph(conv: nn.ConvTranspose1d, path: Path) -> Path:
    """A graph with one planar ConvTranspose (the decoder's upsampler shape) fed by y_mask-shaped inputs."""

    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = planar_conv(conv)

        def forward(self, z, y_mask):
            return self.up((z * y_mask).unsqueeze(2)).select(2, 0)

    torch.onnx.export(Up().eval(), (torch.randn(1, conv.in_channels, 9), torch.ones(1, 1, 9)), str(path),
                      input_names=["z", "y_mask"], output_names=["audio"], opset_version=17, dynamo=False,
                      dynamic_axes={"z": {0: "B", 2: "F"}, "y_mask": {0: "B", 2: "F"}})
    return path


@pytest.mark.parametrize(
    ("stride", "kernel", "padding", "bias"),
    [(8, 16, 4, True), (4, 8, 2, True), (2, 4, 1, False), (5, 10, 0, True), (3, 9, 4, True), (2, 2, 0, True)],
)
def test_a_polyphase_transposed_conv_equals_onnxruntime_s_convtranspose(tmp_path, stride, kernel, padding, bias):
    torch.manual_seed(stride * 10 + kernel)
    conv = nn.ConvTranspose1d(6, 5, kernel, stride, padding=padding, bias=bias)
    path = _transposed_graph(conv, tmp_path / "up.onnx")
    rewritten = decoder_rewrite.rewritten_decoder(path, unpadded=True)
    assert "ConvTranspose" not in _ops(rewritten)
    feeds = {"z": np.random.default_rng(0).standard_normal((2, 6, 23)).astype(np.float32),
             "y_mask": np.ones((2, 1, 23), np.float32)}
    expected = _session(path).run(None, feeds)[0]
    got = _session(rewritten).run(None, feeds)[0]
    assert got.shape == expected.shape == (2, 5, (23 - 1) * stride + kernel - 2 * padding)
    assert _worst(got, expected) <= 1e-5


def test_negative_control_a_polyphase_weight_one_tap_off_differs(tmp_path):
    torch.manual_seed(0)
    path = _transposed_graph(nn.ConvTranspose1d(6, 5, 16, 8, padding=4), tmp_path / "up.onnx")
    model = onnx.load_from_string(decoder_rewrite.rewritten_decoder(path, unpadded=True))
    weight = next(i for i in model.graph.initializer if i.name.endswith("polyphase/weight"))
    array = onnx.numpy_helper.to_array(weight)
    weight.CopyFrom(onnx.numpy_helper.from_array(np.roll(array, 1, axis=0), weight.name))  # phases shifted by one
    feeds = {"z": np.random.default_rng(0).standard_normal((1, 6, 23)).astype(np.float32),
             "y_mask": np.ones((1, 1, 23), np.float32)}
    expected = _session(path).run(None, feeds)[0]
    assert _worst(_session(model.SerializeToString()).run(None, feeds)[0], expected) > 1e-3


def test_a_transposed_conv_the_rewrite_cannot_express_stays(tmp_path):
    path = _transposed_graph(nn.ConvTranspose1d(4, 4, 5, 3, padding=1, output_padding=2), tmp_path / "up.onnx")
    assert "ConvTranspose" in _ops(decoder_rewrite.rewritten_decoder(path, unpadded=True))


def test_a_graph_without_a_mask_input_is_not_rewritten(tmp_path):
    conv = nn.Conv1d(3, 3, 3, padding=1)
    path = tmp_path / "plain.onnx"
    torch.onnx.export(conv.eval(), (torch.randn(1, 3, 5),), str(path), input_names=["z"], opset_version=17,
                      dynamo=False)
    assert decoder_rewrite.rewritten_decoder(path, unpadded=True) is None
