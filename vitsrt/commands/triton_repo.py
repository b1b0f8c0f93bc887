"""`vitsrt triton-repo VOICE_DIR -o REPO`: a Triton model repository for a voice bundle."""

from __future__ import annotations

import argparse
import shlex

from vitsrt.serve.engine.windows import WindowPolicy, add_window_arguments, window_fields

HELP = "write a Triton model repository (stage models + streaming BLS model) for a voice bundle"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("voice", help="voice bundle directory (voice.json + graphs [+ engines/])")
    parser.add_argument("-o", "--output", required=True, help="repository directory to write")
    parser.add_argument("--stage-backend", choices=("onnxruntime", "tensorrt", "python"), default="onnxruntime",
                        help="how stage models run: Triton's onnxruntime backend, TensorRT plans from "
                             "`vitsrt build-engines`, or Python-backend ONNX Runtime wrappers (servers with the "
                             "Python backend only, e.g. the one in the nvidia-pytriton wheel)")
    parser.add_argument("--kind", choices=("cpu", "gpu"), default=None,
                        help="instance kind of the stage models (default: gpu; cpu for --stage-backend python)")
    parser.add_argument("--instances", type=int, default=1, help="instances per stage model (default 1)")
    parser.add_argument("--max-batch", type=int, default=8, help="max_batch_size of the stage models (default 8)")
    parser.add_argument("--max-queue-delay-us", type=int, default=2000,
                        help="dynamic batcher: longest a request waits for batch partners (default 2000 us)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads per instance")
    parser.add_argument("--precision", default="fp32", help="tensorrt: which recorded plans (fp32, fp16, bf16)")
    parser.add_argument("--gpu", default=None, help="tensorrt: GPU name (substring) when plans for several exist")
    parser.add_argument("--prefix", default="vitsrt", help="model name prefix (default vitsrt: vitsrt_tts, ...)")
    parser.add_argument("--max-concurrent-streams", type=int, default=16,
                        help="BLS: streams synthesised at once per instance (default 16)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty output directory")
    add_window_arguments(parser, "the BLS model's decode windows")


def run(args: argparse.Namespace) -> int:
    from vitsrt.export.triton_repo import RepoOptions, write_triton_repo

    options = RepoOptions(
        stage_backend=args.stage_backend, kind=args.kind, instances=args.instances, max_batch=args.max_batch,
        max_queue_delay_us=args.max_queue_delay_us, prefix=args.prefix, threads=args.threads,
        precision=args.precision, gpu=args.gpu, windows=WindowPolicy(**window_fields(args)),
        max_concurrent_streams=args.max_concurrent_streams,
    )
    models = write_triton_repo(args.voice, args.output, options, force=args.force)
    print(f"wrote {args.output}: {', '.join(models)}")
    # `vitsrt triton-serve` rather than a bare `tritonserver`: the wheel's server is not on PATH and needs
    # its Python backend and library paths set up (vitsrt.serve.triton.launcher).
    print(f"start it with: vitsrt triton-serve {shlex.quote(str(args.output))}  (streaming model: {models[-2]})")
    return 0
