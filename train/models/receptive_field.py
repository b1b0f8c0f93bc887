"""The decoder's receptive field: the maths lives in :mod:`vitsrt.receptive_field`.

It moved to core so that loading a voice (serving, which must not import torch) can recompute a
bundle's ``decoder_context_frames`` from its decoder layout; this module keeps train's import path.
"""

from __future__ import annotations

from vitsrt.receptive_field import decoder_context_frames, decoder_edge_samples

__all__ = ["decoder_context_frames", "decoder_edge_samples"]
