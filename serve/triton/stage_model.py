"""Triton Python-backend model that runs one stage graph with ONNX Runtime (``--stage-backend python``).

The repository generator copies this file as ``<prefix>_<stage>/1/model.py`` next to ``model.onnx``. It
exists for Triton servers that have only the Python backend (the one inside the ``nvidia-pytriton``
wheel, used in CI); on a full Triton install the generator writes ``onnxruntime_onnx`` or
``tensorrt_plan`` models instead.

The dynamic batcher hands this model several requests at once. Requests whose inputs have equal
non-batch shapes (decoder windows of the same size, the common case in streaming) are concatenated into
one ONNX Runtime call; the masked graphs make each item's result independent of its batch partners.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from vitsrt.serve.backends.ort_runner import OrtRunner
from vitsrt.serve.triton.pb_tensors import from_pb_tensor, to_pb_tensor


class TritonPythonModel:
    """One stage graph in an OrtRunner; the parameters come from config.pbtxt."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        model_dir = Path(args["model_repository"]) / str(args["model_version"])
        graph = model_dir / params.get("graph_file", "model.onnx")
        device = params.get("device", "cpu")
        threads = int(params.get("intra_op_threads", "0")) or None
        device_id = int(args.get("model_instance_device_id", 0) or 0)
        self.stage = params.get("stage", args["model_name"])
        self.runner = OrtRunner({self.stage: graph}, device=device, device_id=device_id, intra_op_threads=threads)
        self.inputs = list(self.runner.input_ranks(self.stage).items())
        self.outputs = self.runner.output_names(self.stage)
        pb_utils.Logger.log_info(f"vitsrt stage {self.stage}: {graph.name} on {device}")

    def _feeds(self, request) -> dict[str, np.ndarray]:
        feeds = {}
        for name, rank in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"{self.stage}: input {name!r} is missing")
            value = from_pb_tensor(tensor)
            feeds[name] = value.reshape(-1) if rank == 1 else value  # [B, 1] per-item scalars -> [B]
        return feeds

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, dict[str, np.ndarray]]]] = {}
        for index, request in enumerate(requests):
            try:
                feeds = self._feeds(request)
            except ValueError as exc:
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
                continue
            key = tuple((name, value.shape[1:], value.dtype.str) for name, value in feeds.items())
            groups.setdefault(key, []).append((index, feeds))
        for members in groups.values():
            sizes = [len(next(iter(feeds.values()))) for _, feeds in members]
            batch = {name: np.concatenate([feeds[name] for _, feeds in members]) for name, _ in self.inputs}
            try:
                values = list(self.runner.run(self.stage, batch).values())
            except Exception as exc:  # onnxruntime raises its own exception types; fail these requests only
                for index, _ in members:
                    message = f"{self.stage}: {str(exc).splitlines()[0]}"
                    responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
                continue
            start = 0
            for (index, _), size in zip(members, sizes, strict=True):
                tensors = [
                    to_pb_tensor(pb_utils, name, value[start : start + size])
                    for name, value in zip(self.outputs, values, strict=True)
                ]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += size
        return responses

    def finalize(self) -> None:
        self.runner.close()
