"""Regenerate the committed gRPC stubs from `protos/vitsrt/v1/tts.proto` (`make protos`).

Why a script rather than a bare protoc line: grpcio-tools writes `from vitsrt.v1 import tts_pb2` into
`tts_pb2_grpc.py` (the import mirrors the proto's path), but the stubs live in the package
`vitsrt.serve.proto`. The script rewrites that import to a relative one, so the stubs work wherever the
package is installed, and it does so the same way every time so that a staleness test can compare bytes.

The output depends on the grpcio-tools version (it stamps its protobuf and grpc versions into the files),
hence the exact pin in pyproject's dev extra and the check below.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

# Keep equal to the pin in pyproject.toml ([project.optional-dependencies] dev).
GRPCIO_TOOLS_VERSION = "1.85.1"
PROTO_ROOT = Path(__file__).resolve().parents[2] / "protos"
PROTO_FILE = "vitsrt/v1/tts.proto"
STUB_DIR = Path(__file__).resolve().parent
GENERATED = ("tts_pb2.py", "tts_pb2.pyi", "tts_pb2_grpc.py")

# grpcio-tools imports the message module by the proto's directory path; make it package-relative.
_ABSOLUTE_IMPORT = re.compile(r"^from vitsrt\.v1 import tts_pb2 as ", re.MULTILINE)


def installed_tools_version() -> str | None:
    try:
        return metadata.version("grpcio-tools")
    except metadata.PackageNotFoundError:
        return None


def generate(out_dir: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Write the stubs for `proto_root/vitsrt/v1/tts.proto` into `out_dir` (flat) and return their paths."""
    from grpc_tools import protoc  # dev dependency: only needed to regenerate

    version = installed_tools_version()
    if version != GRPCIO_TOOLS_VERSION:
        raise RuntimeError(f"stubs are generated with grpcio-tools=={GRPCIO_TOOLS_VERSION}, found {version}; "
                           f"run `pip install grpcio-tools=={GRPCIO_TOOLS_VERSION}` (or `make install`)")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        args = ["grpc_tools.protoc", f"-I{proto_root}", f"--python_out={scratch}", f"--pyi_out={scratch}",
                f"--grpc_python_out={scratch}", str(proto_root / PROTO_FILE)]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto_root / PROTO_FILE}")
        written = []
        for name in GENERATED:
            source = Path(scratch) / "vitsrt" / "v1" / name
            text = source.read_text()
            if name == "tts_pb2_grpc.py":
                text, count = _ABSOLUTE_IMPORT.subn("from . import tts_pb2 as ", text)
                if count != 1:
                    raise RuntimeError("grpcio-tools output changed: could not find the tts_pb2 import to rewrite")
            target = out_dir / name
            target.write_text(text)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=STUB_DIR, help="where to write the stubs (default: in place)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in generate(args.out):
        logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
