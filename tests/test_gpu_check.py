"""`scripts/gpu_check.sh --dry-run` (what `make gpu-check DRY_RUN=1` runs) passes on a CPU machine: the wheels
it needs are known, the linked package layout imports, the GPU tests collect and the bench command parses. A
needed distribution that is neither installed nor carried as a wheel fails it (negative control)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="the GPU check is a bash script using coreutils' timeout")


def _dry_run(out: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHON": sys.executable, "VITSRT_GPU_WHEELS": str(tmp_path / "wheels"),
                   "VITSRT_BENCH_CACHE": str(tmp_path / "cache"), **env}
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", str(out)], env=environment, capture_output=True,
                          text=True, timeout=300, cwd=REPO_ROOT)


def test_the_dry_run_finds_the_check_complete(tmp_path):
    done = _dry_run(tmp_path / "out", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    (step,) = plan["steps"]
    assert plan["mode"] == "dry" and step["rc"] == 0
    assert step["collected"] >= 10  # test_gpu_torch.py and the TensorRT tests, all collected
    assert step["to_install"] == 0  # this machine has every needed distribution
    assert "dry run: complete" in done.stderr
    assert not (tmp_path / "cache").exists()  # nothing heavy ran: no voice was built


def test_a_needed_distribution_without_a_wheel_fails_the_dry_run(tmp_path):
    done = _dry_run(tmp_path / "out", tmp_path, VITSRT_GPU_NEEDED="pydantic no-such-dist-vitsrt")
    assert done.returncode == 1
    assert "missing no-such-dist-vitsrt and no wheel for it" in done.stderr
    assert json.loads((tmp_path / "out" / "plan.json").read_text())["steps"][0]["rc"] > 0


def test_usage_is_refused_without_an_output_folder():
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "usage:" in done.stderr
