"""The `triton` backend: every stage is a model on a Triton server, called over gRPC (tritonclient).

``vitsrt serve --backend triton --triton-url HOST:PORT`` keeps our gRPC front door, scheduler and host
steps in-process and sends each batched stage call to ``<prefix>_<stage>`` on Triton (a repository
written by ``vitsrt triton-repo``). One call per stage step; a step larger than the model's
``max_batch_size`` is split into several calls. The server address is the ``url`` option, else
``$VITSRT_TRITON_URL``, else 127.0.0.1:8001. Tensor layout (per-item scalars as ``[B, 1]``) comes
from :mod:`vitsrt.serve.triton.layout`, the module the repository generator uses.
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vitsrt.errors import VitsrtError, VoiceError
from vitsrt.serve.backends.base import backend_options
from vitsrt.serve.triton.layout import DEFAULT_PREFIX, TritonTensor, from_wire, stage_layouts, stage_model_name, to_wire
from vitsrt.stages import family
from vitsrt.voice import Voice

log = logging.getLogger(__name__)

URL_ENV = "VITSRT_TRITON_URL"  # default server when no url option is given (e.g. `vitsrt serve --backend triton`)


def _client_module() -> Any:
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as exc:
        raise VoiceError("the triton backend needs tritonclient: pip install 'vitsrt[triton]'") from exc
    return grpcclient


class TritonOptions(BaseModel):
    """``--backend triton``: where the stage models are (see the module docstring for the url default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    model_prefix: str = DEFAULT_PREFIX
    timeout_s: float | None = Field(default=60.0, gt=0)
    ssl: bool = False


class TritonBackend:
    """StageBackend whose stages run on a remote Triton server."""

    Options: ClassVar[type[TritonOptions]] = TritonOptions

    def __init__(self, voice: Voice, options: TritonOptions | None = None, **fields: Any):
        options = backend_options(TritonOptions, options, fields, "the triton backend")
        model_prefix, timeout_s, ssl = options.model_prefix, options.timeout_s, options.ssl
        url = options.url or os.environ.get(URL_ENV) or "127.0.0.1:8001"
        grpcclient = _client_module()
        from tritonclient.utils import InferenceServerException

        self._grpc = grpcclient
        self._error = InferenceServerException
        self.name = f"triton({url})"
        self.url = url
        self.timeout_s = timeout_s
        self._client = grpcclient.InferenceServerClient(url=url, ssl=ssl)
        self._layouts = stage_layouts(voice.manifest)
        self._models: dict[str, str] = {}
        self._max_batch: dict[str, int] = {}
        for stage in self._layouts:
            model = stage_model_name(model_prefix, stage)
            try:
                ready = self._client.is_model_ready(model)
            except InferenceServerException as exc:
                raise VoiceError(f"Triton at {url} is unreachable: {exc.message()}") from None
            if not ready:
                if family(voice.manifest.model.family).stage(stage).optional:
                    continue  # optional stage (duration_dp_only): the pipeline falls back to `duration`
                raise VoiceError(f"Triton at {url} has no ready model {model!r} (load the repository from triton-repo)")
            config = self._client.get_model_config(model, as_json=True)["config"]
            self._models[stage] = model
            self._max_batch[stage] = int(config.get("max_batch_size", 0))
        log.info("triton backend %s: %s", url, ", ".join(self._models.values()))

    def has_stage(self, stage: str) -> bool:
        return stage in self._models

    def _call(self, stage: str, tensors_in: list[TritonTensor], tensors_out: list[TritonTensor],
              arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wire = to_wire(tensors_in, arrays)
        inputs = []
        for tensor in tensors_in:
            value = wire[tensor.name]
            item = self._grpc.InferInput(tensor.name, list(value.shape), tensor.wire_type)
            item.set_data_from_numpy(value)
            inputs.append(item)
        outputs = [self._grpc.InferRequestedOutput(t.name) for t in tensors_out]
        try:
            result = self._client.infer(self._models[stage], inputs, outputs=outputs, client_timeout=self.timeout_s)
        except self._error as exc:
            raise VitsrtError(f"{self._models[stage]} on Triton failed: {exc.message()}") from None
        return {t.name: from_wire(t, result.as_numpy(t.name)) for t in tensors_out}

    def run(self, stage: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors_in, tensors_out = self._layouts[stage]
        batch = len(np.asarray(inputs[tensors_in[0].name]))
        limit = self._max_batch.get(stage, 0) or batch
        if batch <= limit:
            return self._call(stage, tensors_in, tensors_out, inputs)
        parts = [
            self._call(stage, tensors_in, tensors_out, {k: np.asarray(v)[s : s + limit] for k, v in inputs.items()})
            for s in range(0, batch, limit)
        ]
        return {t.name: np.concatenate([p[t.name] for p in parts]) for t in tensors_out}

    def close(self) -> None:
        self._client.close()
