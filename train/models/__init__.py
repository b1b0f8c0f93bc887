"""Bert-VITS2 2.3 / VITS2 synthesizer modules, state_dict-compatible with upstream checkpoints."""
