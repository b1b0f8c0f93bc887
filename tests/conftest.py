"""Shared test helpers: where the upstream parity fixture lives, and skipping cleanly without it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = REPO_ROOT.parent / "shared" / "fixtures" / "bertvits2-2.3-tiny"


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    if not (FIXTURE_DIR / "G_0.pth").is_file():
        pytest.skip(f"upstream parity fixture not found at {FIXTURE_DIR} (../shared beside the checkout)")
    return FIXTURE_DIR


@pytest.fixture(scope="session")
def fixture_config_dict(fixture_dir: Path) -> dict:
    return json.loads((fixture_dir / "config.json").read_text())
