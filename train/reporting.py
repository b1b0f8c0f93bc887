"""What a run tells its user: a one-line console summary per log interval, tensorboard when installed.

Only rank 0 creates a `RunReporter` that writes anything; tensorboard is optional (the `train`
extra installs it), and without it the run goes on with console logging only.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

log = logging.getLogger("vitsrt.train")


class RunReporter:
    def __init__(self, run_dir: Path, enabled: bool, sampling_rate: int):
        self.enabled = enabled
        self.sampling_rate = sampling_rate
        self.writer = None
        self._window_start = time.perf_counter()
        self._window_steps = 0
        self._window_audio_seconds = 0.0
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.warning("tensorboard is not installed: console logging only (pip install 'vitsrt[train]')")
            return
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def count(self, steps: int, audio_seconds: float) -> None:
        self._window_steps += steps
        self._window_audio_seconds += audio_seconds

    def throughput(self) -> tuple[float, float]:
        """(steps/s, audio seconds/s) since the last summary; starts a new window."""
        elapsed = max(time.perf_counter() - self._window_start, 1e-9)
        rates = self._window_steps / elapsed, self._window_audio_seconds / elapsed
        self._window_start = time.perf_counter()
        self._window_steps = 0
        self._window_audio_seconds = 0.0
        return rates

    def summary(self, step: int, epoch: int, scalars: dict[str, float]) -> dict[str, float]:
        """Logs the console line and the scalars; returns the throughput figures it measured."""
        steps_per_s, audio_per_s = self.throughput()
        if not self.enabled:
            return {"steps_per_s": steps_per_s, "audio_s_per_s": audio_per_s}
        losses = " ".join(f"{k.removeprefix('loss/')} {v:.3f}" for k, v in scalars.items() if k.startswith("loss/"))
        lr = scalars.get("lr/g", float("nan"))
        log.info(
            "step %d epoch %d | %s | lr %.2e | %.2f step/s %.1f audio-s/s",
            step,
            epoch,
            losses,
            lr,
            steps_per_s,
            audio_per_s,
        )
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(key, value, step)
            self.writer.add_scalar("speed/steps_per_s", steps_per_s, step)
            self.writer.add_scalar("speed/audio_seconds_per_s", audio_per_s, step)
        return {"steps_per_s": steps_per_s, "audio_s_per_s": audio_per_s}

    def image(self, tag: str, matrix: torch.Tensor, step: int) -> None:
        """A [H, W] tensor as a grey image (min-max scaled, row 0 at the bottom like a spectrogram)."""
        if self.writer is None:
            return
        data = matrix.detach().float().cpu()
        data = (data - data.min()) / (data.max() - data.min() + 1e-9)
        self.writer.add_image(tag, torch.flip(data, [0]).unsqueeze(0), step, dataformats="CHW")

    def audio(self, tag: str, samples: torch.Tensor, step: int) -> None:
        if self.writer is None:
            return
        self.writer.add_audio(tag, samples.detach().float().cpu().reshape(1, -1), step, self.sampling_rate)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
