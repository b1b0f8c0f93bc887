"""Training settings vitsrt adds to upstream's `train` section, with their defaults.

They live in the same `train` section of config.json (upstream ignores keys it does not know),
so one file describes a run. Upstream keys (learning_rate, betas, eps, batch_size, lr_decay,
segment_size, c_mel, c_kl, log_interval, eval_interval, seed, epochs, bf16_run, skip_optimizer,
freeze_*_bert) keep their upstream meaning and are read from `TrainSection` directly.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vitsrt.config import BertVits2Config
from vitsrt.errors import ConfigError
from vitsrt.train.data import UPSTREAM_BUCKETS
from vitsrt.train.discriminators import UPSTREAM_PERIODS


class TrainOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    keep_ckpts: int = Field(3, ge=0)  # newest checkpoints kept per kind (0 = keep all); *_0.pth never deleted
    bucket_boundaries: list[int] = Field(default_factory=lambda: list(UPSTREAM_BUCKETS))
    num_workers: int = Field(2, ge=0)
    # Mixed precision: "auto" = bf16 on a GPU that supports it, off on CPU; upstream bf16_run=true means "bf16".
    amp: Literal["auto", "bf16", "off"] = "auto"
    tf32: bool = True
    compile: bool = False
    grad_clip_g: float | None = 500.0  # max grad norm (None = no clipping; upstream clips only under bf16)
    grad_clip_d: float | None = 200.0
    # Discriminator size: upstream's is periods 2,3,5,7,11 at full width (loads upstream D_0.pth).
    mpd_periods: list[int] = Field(default_factory=lambda: list(UPSTREAM_PERIODS))
    mpd_channel_divisor: int = Field(1, ge=1)
    # Reconstruction first: adversarial and feature-matching losses (and discriminator updates) from this step on.
    adversarial_start_step: int = Field(0, ge=0)
    # Extra module prefixes of the generator to freeze, e.g. ["dec", "enc_p.emb"] (plus upstream's freeze_*_bert).
    freeze: list[str] = Field(default_factory=list)
    eval_audio_items: int = Field(2, ge=0)  # validation items synthesised into tensorboard at each eval

    @classmethod
    def from_config(cls, config: BertVits2Config) -> TrainOptions:
        try:
            return cls.model_validate(config.train.model_extra or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"invalid train.{where}: {first['msg']}") from None

    def frozen_prefixes(self, config: BertVits2Config) -> list[str]:
        prefixes = list(self.freeze)
        upstream = {
            "freeze_ZH_bert": "enc_p.bert_proj",
            "freeze_JP_bert": "enc_p.ja_bert_proj",
            "freeze_EN_bert": "enc_p.en_bert_proj",
        }
        for key, prefix in upstream.items():
            if getattr(config.train, key, False):
                prefixes.append(prefix)
        return prefixes
