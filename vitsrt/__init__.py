"""vitsrt: an inference-first deployment engine for VITS-family text-to-speech."""

__version__ = "0.1.0"
