"""The report behind `vitsrt info`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pydantic import BaseModel

from vitsrt.train.loading import load_generator
from vitsrt.train.models.vits import VitsSynthesizer

_FAMILY_NAMES = {"bert-vits2": "Bert-VITS2", "vits": "VITS"}

MODULE_NAMES = {
    "enc_p": "text encoder",
    "dp": "duration predictor",
    "sdp": "stochastic duration predictor",
    "flow": "flow",
    "dec": "decoder (HiFi-GAN)",
    "enc_q": "posterior encoder (training only)",
    "emb_g": "speaker embedding",
}


class CheckpointReport(BaseModel):
    checkpoint: str
    family: str = "bert-vits2"
    version: str
    version_source: str
    sample_rate: int
    hop_length: int
    speakers: dict[str, int]
    n_symbols: int
    num_tones: int  # 0: the model has no tone table (VITS)
    num_languages: int
    flow: str
    decoder_resblock: str
    decoder_context_frames: int
    iteration: int | None
    learning_rate: float | None
    parameters: dict[str, int]
    total_parameters: int
    inference_parameters: int

    def render(self) -> str:
        family = _FAMILY_NAMES.get(self.family, self.family)
        lines = [
            f"checkpoint      {self.checkpoint}",
            f"version         {family} {self.version} (from {self.version_source})",
            f"sample rate     {self.sample_rate} Hz, hop {self.hop_length}",
            f"speakers        {len(self.speakers)}: " + ", ".join(f"{n}={i}" for n, i in self.speakers.items()),
            f"symbols         {self.n_symbols} phones"
            + (f", {self.num_tones} tones, {self.num_languages} languages" if self.num_tones else ""),
            f"flow            {self.flow}",
            f"decoder         resblock {self.decoder_resblock}, context {self.decoder_context_frames} frames",
            f"iteration       {self.iteration if self.iteration is not None else '-'}",
            "parameters:",
        ]
        for prefix, count in self.parameters.items():
            lines.append(f"  {prefix:<6} {count:>12,}  {MODULE_NAMES.get(prefix, '')}")
        lines.append(f"  {'total':<6} {self.total_parameters:>12,}  (inference: {self.inference_parameters:,})")
        return "\n".join(lines)


def describe_checkpoint(checkpoint: str | Path, config: str | Path) -> CheckpointReport:
    loaded = load_generator(checkpoint, config)
    counts: Counter[str] = Counter()
    for key, tensor in loaded.state_dict.items():
        counts[key.split(".", 1)[0]] += tensor.numel()
    model = loaded.model
    total = sum(counts.values())
    if isinstance(model, VitsSynthesizer):
        tables, flow = (model.n_vocab, 0, 0), "residual coupling"
    else:
        tables = (model.symbols.n_vocab, model.symbols.num_tones, model.symbols.num_languages)
        flow = "transformer coupling" if model.config.model.use_transformer_flow else "residual coupling"
    return CheckpointReport(
        checkpoint=str(checkpoint),
        family=loaded.family,
        version=loaded.version,
        version_source=loaded.version_source,
        sample_rate=loaded.config.sampling_rate,
        hop_length=loaded.config.hop_length,
        speakers=loaded.config.speakers(),
        n_symbols=tables[0],
        num_tones=tables[1],
        num_languages=tables[2],
        flow=flow,
        decoder_resblock=loaded.config.model.resblock,
        decoder_context_frames=model.decoder_context_frames(),
        iteration=loaded.iteration,
        learning_rate=loaded.learning_rate,
        parameters=dict(counts),
        total_parameters=total,
        inference_parameters=total - counts.get("enc_q", 0),
    )
