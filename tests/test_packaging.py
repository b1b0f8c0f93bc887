"""The distribution layout promised in ARCHITECTURE.md: one `vitsrt` namespace, serve without torch."""

import subprocess
import sys
import tomllib

from conftest import REPO_ROOT

ROOTS = {"vitsrt": "vitsrt", "train": "vitsrt.train", "export": "vitsrt.export", "serve": "vitsrt.serve",
         "benchmarks": "vitsrt.benchmarks"}


def test_every_package_directory_is_listed_in_pyproject():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = set()
    for folder, dotted in ROOTS.items():
        for init in (REPO_ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO_ROOT / folder)
            found.add(".".join([dotted, *relative.parts]))
    assert found == listed


def test_core_and_serve_do_not_import_torch():
    code = (
        "import sys, vitsrt, vitsrt.config, vitsrt.errors, vitsrt.cli, vitsrt.serve, vitsrt.text, vitsrt.voice\n"
        "import vitsrt.regulator, vitsrt.serve.engine.engine, vitsrt.serve.backends.onnxruntime_backend\n"
        "from vitsrt.cli import build_parser\n"
        "build_parser()\n"
        "leaked = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not leaked, leaked\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr


def test_negative_control_torch_import_is_detected():
    code = "import sys, vitsrt.train.checkpoint\nassert 'torch' not in sys.modules\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode != 0
