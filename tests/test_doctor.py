"""`vitsrt doctor`: what it says about this machine matches what the runtimes themselves report, each voice's
usable backends follow from the machine and the bundle, and every missing piece comes with a hint."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import onnxruntime as ort
import pytest

from vitsrt.cli import main
from vitsrt.commands import doctor


def _report(capsys, *args: str) -> dict:
    assert main(["-q", "doctor", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _finding(report: dict, name: str) -> dict:
    return next(f for f in report["machine"]["findings"] if f["name"] == name)


def _voice(report: dict, name: str) -> dict:
    return next(v for v in report["voices"] if v["name"] == name)


@pytest.fixture(scope="module")
def weighted_voice(request) -> Path:
    pytest.importorskip("torch", reason="exporting a voice needs the 'torch' extra")
    return request.getfixturevalue("small_22k_voice")


def test_the_machine_is_reported_as_the_runtimes_see_it(capsys, weighted_voice):
    report = _report(capsys, "-v", str(weighted_voice))
    providers = ort.get_available_providers()
    assert report["machine"]["onnxruntime_providers"] == providers
    assert _finding(report, "onnxruntime")["ok"]
    assert _finding(report, "onnxruntime-cuda")["ok"] == ("CUDAExecutionProvider" in providers)
    assert _finding(report, "onnxruntime-tensorrt")["ok"] == ("TensorrtExecutionProvider" in providers)
    assert _finding(report, "tensorrt")["ok"] == (importlib.util.find_spec("tensorrt") is not None)
    import torch

    assert torch.__version__ in _finding(report, "torch")["detail"]
    assert _finding(report, "cuda")["ok"] == torch.cuda.is_available()
    assert len(report["machine"]["cuda_devices"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    for name in ("onnxruntime-cuda", "tensorrt", "cuda"):
        finding = _finding(report, name)
        assert finding["ok"] or finding["hint"], name  # every missing piece says how to get it


def test_each_voice_lists_the_backends_it_can_use(capsys, weighted_voice):
    import torch

    report = _report(capsys, "-v", str(weighted_voice))
    cuda = torch.cuda.is_available()
    exported = _voice(report, "small22k")
    assert exported["family"] == "bert-vits2" and exported["front_end"] == "ids"
    assert exported["backends"]["onnxruntime"] == "ok"
    assert exported["backends"]["torch"] == "ok"  # the bundle carries weights.safetensors
    assert (exported["backends"]["torch-cuda"] == "ok") == cuda
    shipped = _voice(report, "vitsrt-default")  # exported before bundles carried weights
    assert shipped["backends"]["onnxruntime"] == "ok"
    assert "no weights.safetensors" in shipped["backends"]["torch"]
    cuda_ep = "CUDAExecutionProvider" in ort.get_available_providers()
    assert (exported["backends"]["onnxruntime-cuda"] == "ok") == cuda_ep


def test_the_text_report_names_usable_backends_and_hints(capsys, weighted_voice):
    assert main(["-q", "doctor", "-v", str(weighted_voice)]) == 0
    text = capsys.readouterr().out
    assert "voice small22k (bert-vits2, text ready)" in text
    assert "usable backends: onnxruntime, torch" in text
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "hint: pip uninstall -y onnxruntime && pip install --force-reinstall --no-deps onnxruntime-gpu" in text


def test_a_gpu_machine_would_be_reported_as_one(monkeypatch, capsys, weighted_voice):
    """Negative control: the same code reports providers and TensorRT when they are there."""
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    real_found = doctor._found
    monkeypatch.setattr(doctor, "_found", lambda m: m in ("tensorrt", "cuda") or real_found(m))
    report = _report(capsys, "-v", str(weighted_voice))
    assert _finding(report, "onnxruntime-cuda")["ok"] and _finding(report, "onnxruntime-tensorrt")["ok"]
    assert _finding(report, "tensorrt")["ok"]
    exported = _voice(report, "small22k")["backends"]
    assert exported["onnxruntime-cuda"] == "ok" and exported["onnxruntime-tensorrt"] == "ok"


def test_weights_that_do_not_fit_the_graphs_are_not_usable(tmp_path, capsys, weighted_voice):
    import torch
    from safetensors.torch import save

    copy = tmp_path / "copy"
    shutil.copytree(weighted_voice, copy)
    metadata = {"format": "vitsrt-generator/1", "family": "bert-vits2", "graphs": json.dumps({"decoder": "0" * 64})}
    (copy / "weights.safetensors").write_bytes(save({"x": torch.zeros(1)}, metadata=metadata))
    report = _report(capsys, "-v", str(copy))
    assert "written for other graphs" in _voice(report, "small22k")["backends"]["torch"]
    (copy / "weights.safetensors").write_bytes(b"not a safetensors file")
    report = _report(capsys, "-v", str(copy))
    assert "unreadable" in _voice(report, "small22k")["backends"]["torch"]
    (copy / "weights.safetensors").unlink()
    report = _report(capsys, "-v", str(copy))
    assert "re-export" in _voice(report, "small22k")["backends"]["torch"]


def test_front_end_data_is_checked_on_disk(monkeypatch):
    ready = {f.name: f for f in doctor.frontend_findings()}
    assert ready["ids"].ok
    for kind, module in (("ipa", "espeakng_loader"), ("piper", "piper"), ("bv2-ja", "pyopenjtalk")):
        assert ready[kind].ok == (importlib.util.find_spec(module) is not None), kind
    # a package present without its data, and a package missing: both not ready, both with a hint
    monkeypatch.setattr(doctor, "_FRONT_ENDS", {"ipa": (("json",), "espeak-ng-data/phontab", "ipa"),
                                                "bv2-zh": (("no_such_module_here",), "", "bv2")})
    broken = {f.name: f for f in doctor.frontend_findings()}
    assert not broken["ipa"].ok and "no espeak-ng-data/phontab" in broken["ipa"].detail
    assert "reinstall" in broken["ipa"].hint
    assert not broken["bv2-zh"].ok and broken["bv2-zh"].hint == "pip install 'vitsrt[bv2]'"


def test_an_unloadable_voice_is_reported_not_raised(tmp_path, capsys):
    (tmp_path / "voice.json").write_text("{}")
    report = _report(capsys, "-v", str(tmp_path))
    broken = next(v for v in report["voices"] if v["path"] == str(tmp_path))
    assert broken["error"] and not broken["backends"]
