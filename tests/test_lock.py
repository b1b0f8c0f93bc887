"""The locks in requirements/ (what `make demo` / `make test` install) still satisfy pyproject's ranges.

pyproject keeps open ranges for users; the Makefile installs exact, hashed versions from the locks. When
someone widens or narrows a range, or adds a dependency, without `make lock`, these tests fail.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCKS = {"test": "TEST_EXTRAS", "demo": "DEMO_EXTRAS"}


def makefile_extras(variable: str) -> list[str]:
    match = re.search(rf"^{variable} := (.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"Makefile defines no {variable}"
    return match.group(1).split()


def read_lock(path: Path) -> dict[str, Version]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s\\;]+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def requirements(project: dict, extras: list[str]) -> list[Requirement]:
    """The project's requirements for `extras`, with self-references (`vitsrt[torch]`) expanded."""
    optional = project["optional-dependencies"]
    found = [Requirement(r) for r in project["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in optional[extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == canonicalize_name(project["name"]):
                todo.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


def unsatisfied(reqs: list[Requirement], pins: dict[str, Version]) -> list[str]:
    environment = default_environment()
    problems = []
    for requirement in reqs:
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{requirement} is not in the lock")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{requirement} but the lock has {pinned}")
    return problems


def pyproject() -> dict:
    """[project], with the build backend added to the base dependencies: the locks carry it, because the
    Makefile installs vitsrt without build isolation."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = data["project"]
    project["dependencies"] = [*project["dependencies"], *data["build-system"]["requires"]]
    return project


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_satisfies_pyproject(lock: str):
    reqs = requirements(pyproject(), makefile_extras(LOCKS[lock]))
    pins = read_lock(ROOT / "requirements" / f"{lock}.lock")
    assert unsatisfied(reqs, pins) == [], f"requirements/{lock}.lock is stale: run `make lock`"
    pinned_by_us = [Requirement(line) for line in (ROOT / "requirements/pins.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    if lock == "test":
        assert unsatisfied(pinned_by_us, pins) == []


def test_demo_lock_agrees_with_test_lock():
    """One virtual environment holds both sets: a package in both locks has one version."""
    demo = read_lock(ROOT / "requirements/demo.lock")
    test = read_lock(ROOT / "requirements/test.lock")
    assert {name: v for name, v in demo.items() if test.get(name) != v} == {}


def test_every_locked_line_is_hashed():
    for lock in LOCKS:
        text = (ROOT / "requirements" / f"{lock}.lock").read_text()
        entries = re.findall(r"^([A-Za-z0-9._-]+==\S+)( \\\n\s+--hash=sha256:[0-9a-f]{64})?", text, re.MULTILINE)
        assert entries, lock
        assert [name for name, hashed in entries if not hashed] == []
        assert "file://" not in text, "a lock must not name a path of the machine that wrote it"


def test_the_check_notices_a_range_the_lock_does_not_meet():
    """Negative control: a pyproject whose numpy range the lock's numpy cannot meet, and a new dependency."""
    project = pyproject()
    project["dependencies"] = [*project["dependencies"], "numpy>=999", "a-package-nobody-locked>=1"]
    pins = read_lock(ROOT / "requirements/test.lock")
    problems = unsatisfied(requirements(project, makefile_extras("TEST_EXTRAS")), pins)
    assert len(problems) == 2
    assert problems[0].startswith("numpy>=999 but the lock has") and "not in the lock" in problems[1]


def test_this_environment_was_installed_from_the_lock():
    """Run by `make test`: what is installed is what the test lock says (skips outside the Makefile's venv)."""
    if not (Path(sys.prefix) / ".installed-test").exists():
        pytest.skip("not the Makefile's virtual environment (no .installed-test marker)")
    pins = read_lock(ROOT / "requirements/test.lock")
    differ = {}
    for name, version in pins.items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            differ[name] = "missing"
            continue
        if installed != version:
            differ[name] = f"{installed} installed, {version} locked"
    assert differ == {}
