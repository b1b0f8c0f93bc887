"""Check the import contracts in pyproject.toml ([tool.importlinter]) on the working tree, wings included.

pyproject maps `train/`, `export/`, `serve/` and `benchmarks/` into `vitsrt` with setuptools `package-dir`.
import-linter (grimp) finds a package by walking the one folder its `__init__.py` is in, so a bare
`lint-imports` sees `vitsrt/` and none of the wings. This script links the installed layout into a
temporary folder (`vitsrt/`'s entries plus one link per wing, made fresh on every run, so new files are
always seen) and runs lint-imports there. Arguments are passed on: `tools/lint_imports.py --verbose`.

docs/architecture.md explains the contracts.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

log = logging.getLogger("lint_imports")


def package_dirs(pyproject: Path) -> dict[str, Path]:
    """Package name -> source folder, from [tool.setuptools] package-dir."""
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    mapping = config["tool"]["setuptools"]["package-dir"]
    return {name: (pyproject.parent / folder).resolve() for name, folder in mapping.items()}


def link_tree(dirs: dict[str, Path], tree: Path) -> None:
    """The installed layout as links under `tree`: the root package is a real folder holding links to its
    entries, and each mapped subpackage is one link to its folder (grimp follows linked folders)."""
    roots = [name for name in dirs if "." not in name]
    if len(roots) != 1:
        raise SystemExit(f"lint_imports: expected one top-level package in package-dir, got {roots}")
    top = tree / roots[0]
    top.mkdir()
    for entry in dirs[roots[0]].iterdir():
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    for name, folder in dirs.items():
        link = tree.joinpath(*name.split("."))
        if name == roots[0]:
            continue
        if link.exists():
            raise SystemExit(f"lint_imports: {name} is mapped to {folder} and is also a folder of {roots[0]}")
        link.symlink_to(folder, target_is_directory=True)


def lint_args(argv: list[str]) -> list[str]:
    """argv for lint-imports run in another folder: files named keep their meaning, and no cache (grimp's
    cache is keyed by module and mtime, and would keep imports resolved against an older layout)."""
    args = [str(Path(a).resolve()) if Path(a).is_file() else a for a in argv]
    if not any(a == "--no-cache" or a.startswith("--cache-dir") for a in args):
        args.append("--no-cache")
    return args


def main() -> None:
    log.addHandler(logging.StreamHandler())
    log.setLevel(logging.INFO)
    args = lint_args(sys.argv[1:])
    from importlinter.cli import lint_imports_command

    with tempfile.TemporaryDirectory(prefix="vitsrt-import-graph-") as tree:
        link_tree(package_dirs(REPO / "pyproject.toml"), Path(tree))
        (Path(tree) / "pyproject.toml").symlink_to(REPO / "pyproject.toml")
        log.info("lint_imports: the package-dir layout of %s, linked in %s", REPO, tree)
        # lint-imports puts its working folder first on the import path: there `vitsrt` is the linked layout,
        # not the checkout's vitsrt/ (the editable install's finder comes after the path).
        os.chdir(tree)
        try:
            lint_imports_command.main(args=args, prog_name="lint-imports")
        finally:
            os.chdir(REPO)


if __name__ == "__main__":
    main()
