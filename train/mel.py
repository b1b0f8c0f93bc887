"""Spectrograms exactly as upstream VITS / Bert-VITS2 compute them (mel_processing.py semantics).

* Linear spectrogram: reflect-pad (n_fft - hop) / 2 on each side, STFT with ``center=False`` and a
  periodic Hann window of ``win_length``, magnitude ``sqrt(re^2 + im^2 + 1e-6)``. With that
  padding an input of ``k * hop`` samples gives exactly ``k`` frames, which is what lets the loop
  slice audio at ``frame * hop``.
* Mel: a Slaney-style filterbank (librosa's default: Slaney mel scale, area-normalised
  triangles), then ``log(clamp(x, 1e-5))``.

The filterbank is written here in numpy (no librosa dependency). Windows and filterbanks are kept
per (device, dtype) inside a `SpectrogramTransform` object, not in module-level caches.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["SpectrogramTransform", "dynamic_range_compression", "mel_filterbank"]

# Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels per factor 6.4).
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = math.log(6.4) / 27.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    with np.errstate(divide="ignore"):
        logarithmic = _MIN_LOG_MEL + np.log(np.maximum(hz, 1e-10) / _MIN_LOG_HZ) / _LOG_STEP
    return np.where(hz >= _MIN_LOG_HZ, logarithmic, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _F_SP
    logarithmic = _MIN_LOG_HZ * np.exp(_LOG_STEP * (mel - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, logarithmic, linear)


def mel_filterbank(
    sampling_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] float32 triangles, equal to librosa.filters.mel(norm='slaney')."""
    fmax = sampling_rate / 2.0 if fmax is None else float(fmax)
    bins = np.linspace(0.0, sampling_rate / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    distance = edges[:, None] - bins[None, :]  # [n_mels + 2, n_bins]
    rising = -distance[:-2] / widths[:-1, None]
    falling = distance[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # equal area per band
    return weights.astype(np.float32)


def dynamic_range_compression(x: torch.Tensor, clip: float = 1e-5) -> torch.Tensor:
    return torch.log(torch.clamp(x, min=clip))


class SpectrogramTransform:
    """Linear and mel spectrograms for one STFT setup (a config's ``data`` section)."""

    def __init__(
        self,
        sampling_rate: int,
        n_fft: int,
        hop_length: int,
        win_length: int,
        n_mels: int,
        fmin: float = 0.0,
        fmax: float | None = None,
    ):
        if (n_fft - hop_length) % 2:
            raise ValueError(f"n_fft - hop_length must be even for symmetric padding ({n_fft} - {hop_length})")
        self.sampling_rate = sampling_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.n_mels = n_mels
        self._filterbank = torch.from_numpy(mel_filterbank(sampling_rate, n_fft, n_mels, fmin, fmax))
        self._windows: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._banks: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    @classmethod
    def from_config(cls, data) -> SpectrogramTransform:
        """From a `DataSection` (or anything with the same attribute names)."""
        return cls(
            data.sampling_rate,
            data.filter_length,
            data.hop_length,
            data.win_length,
            data.n_mel_channels,
            data.mel_fmin,
            data.mel_fmax,
        )

    def _window(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.device, like.dtype)
        if key not in self._windows:
            self._windows[key] = torch.hann_window(self.win_length, device=like.device, dtype=like.dtype)
        return self._windows[key]

    def _bank(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.device, like.dtype)
        if key not in self._banks:
            self._banks[key] = self._filterbank.to(device=like.device, dtype=like.dtype)
        return self._banks[key]

    def linear(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, L] or [L] in [-1, 1] -> magnitude [B, n_fft/2+1, L // hop] (or without B)."""
        squeeze = audio.dim() == 1
        audio = audio.unsqueeze(0) if squeeze else audio
        audio = audio.float()
        pad = (self.n_fft - self.hop_length) // 2
        padded = torch.nn.functional.pad(audio.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        stft = torch.stft(
            padded,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self._window(padded),
            center=False,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        magnitude = torch.sqrt(stft.real.pow(2) + stft.imag.pow(2) + 1e-6)
        return magnitude.squeeze(0) if squeeze else magnitude

    def linear_to_mel(self, magnitude: torch.Tensor) -> torch.Tensor:
        """[..., n_fft/2+1, T] magnitude -> [..., n_mels, T] log-mel."""
        return dynamic_range_compression(torch.matmul(self._bank(magnitude), magnitude))

    def mel(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, L] -> log-mel [B, n_mels, L // hop]."""
        return self.linear_to_mel(self.linear(audio))
