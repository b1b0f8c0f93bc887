"""The import graph of docs/architecture.md, as `make lint` checks it (tools/lint_imports.py, import-linter)."""

import subprocess
import sys

import pytest

from conftest import REPO_ROOT

pytest.importorskip("importlinter", reason="import-linter is in the dev extra")

SCRIPT = REPO_ROOT / "tools" / "lint_imports.py"


def lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--no-logo", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)


def test_the_contracts_in_pyproject_are_kept():
    result = lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_negative_control_the_wings_are_in_the_graph(tmp_path):
    """serve imports core, so this contract must break: proof that the linked layout shows the wings."""
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["vitsrt"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "upside down"\ntype = "layers"\ncontainers = ["vitsrt"]\n'
        'layers = ["errors", "serve"]\n',
        encoding="utf-8",
    )
    result = lint(str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "vitsrt.serve is not allowed to import vitsrt.errors" in result.stdout
