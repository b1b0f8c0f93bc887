"""The training loop: Bert-VITS2 2.3 / VITS2 GAN training (and original VITS, as piper trains it, for a
``"family": "vits"`` config), readable top to bottom.

One `Trainer` holds everything a run has (models, optimizers, schedulers, data, position); there
are no module globals. A step is: generator forward (posterior, flow, alignment search, duration
losses, random latent window decoded) -> discriminator updates on the detached output -> generator
update on reconstruction + adversarial losses. The learning rate decays once per epoch
(ExponentialLR), as upstream does.

Exact resume: every checkpoint holds the optimizer, the schedulers and the position (epoch and
batches done in it); the global RNG is re-seeded from (seed, step, rank) before every step, and
the sampler's order depends only on (seed, epoch). So stopping after step k and resuming gives the
same parameters as never stopping. SIGTERM/SIGINT stop the run at the next step boundary with a
checkpoint (train/stopping.py), so a scheduler's stop is an exact pause.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import warnings
from collections import deque
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from vitsrt.config import ModelConfig, VitsConfig
from vitsrt.errors import CheckpointError, ConfigError
from vitsrt.train.checkpoint import (
    extract_state_dict,
    latest_complete_step,
    load_state_dict_checked,
    prune_checkpoints,
    read_checkpoint,
    save_checkpoint,
)
from vitsrt.train.data import Batch, LengthBucketSampler, TextAudioDataset, collate
from vitsrt.train.discriminators import DurationDiscriminator, MultiPeriodDiscriminator
from vitsrt.train.distributed import DistContext, unwrap
from vitsrt.train.losses import discriminator_loss, feature_loss, generator_loss, kl_loss
from vitsrt.train.mel import SpectrogramTransform
from vitsrt.train.models.segments import slice_segments
from vitsrt.train.models.synthesizer import SymbolSizes, SynthesizerTrn, TrainOutput
from vitsrt.train.models.vits import VitsSynthesizer
from vitsrt.train.options import TrainOptions
from vitsrt.train.prepare import load_prepared_config
from vitsrt.train.reporting import RunReporter
from vitsrt.train.stopping import StopSignals, ignore_terminal_interrupt, signal_name
from vitsrt.train.tokens import SymbolTable

log = logging.getLogger("vitsrt.train")


@dataclass
class RunSettings:
    """What the command line decides (the config decides everything else)."""

    config: Path
    run_dir: Path
    max_steps: int | None = None  # stop after this global step (None: train.epochs)
    init_generator: Path | None = None  # fine-tuning base; default RUN_DIR/G_0.pth when present
    init_discriminator: Path | None = None
    init_duration_discriminator: Path | None = None
    backend: str | None = None
    device: str | None = None
    progress: bool = True
    allow_partial_init: bool = False  # start from a base generator even if only some of its tensors fit
    param_digest: bool = False  # tests: each rank writes a digest of its parameters at the end
    overrides: dict[str, Any] = field(default_factory=dict)  # train-section keys set from the CLI


@dataclass
class Position:
    step: int = 0  # optimizer steps done
    epoch: int = 1  # upstream counts epochs from 1
    epoch_batches: int = 0  # batches of `epoch` already trained on (per rank)
    stopped_by: str | None = None  # the signal that ended the run early ("SIGTERM"); None: ran to the end


# The speaker table is sized by the speaker count, which a fine-tune usually changes: it may start fresh.
SPEAKER_TABLE = "emb_g.weight"


def _seed_for(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**63 - 1)


class Trainer:
    def __init__(self, settings: RunSettings, dist: DistContext):
        self.settings = settings
        self.dist = dist
        self.run_dir = settings.run_dir
        self.config = self._load_config()
        self.options = TrainOptions.from_config(self.config)
        t = self.config.train
        if t.segment_size % self.config.data.hop_length:
            raise ConfigError(
                f"train.segment_size ({t.segment_size}) must be a multiple of data.hop_length "
                f"({self.config.data.hop_length})"
            )
        self.device = dist.device
        self.amp_dtype = self._amp_dtype()
        if self.device.type == "cuda" and self.options.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(t.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)

        self.transform = SpectrogramTransform.from_config(self.config.data)
        self.train_set = TextAudioDataset(self.config.data.training_files, self.config, self.config_dir)
        self.sampler = LengthBucketSampler(
            self.train_set.frames,
            t.batch_size,
            self.options.bucket_boundaries,
            rank=dist.rank,
            world_size=dist.world_size,
            seed=t.seed,
        )
        if self.sampler.dropped and dist.is_main:
            log.warning(
                "%d of %d training items are outside train.bucket_boundaries %s and are not used",
                self.sampler.dropped,
                len(self.train_set),
                self.options.bucket_boundaries,
            )
        self.loader = DataLoader(
            self.train_set,
            batch_sampler=self.sampler,
            collate_fn=collate,
            num_workers=self.options.num_workers,
            worker_init_fn=ignore_terminal_interrupt,
            pin_memory=self.device.type == "cuda",
        )

        table = SymbolTable.from_config(self.config)
        m = self.config.model
        self.generator = self._build_generator(table).to(self.device)
        self.discriminator = MultiPeriodDiscriminator(
            m.use_spectral_norm, self.options.mpd_periods, self.options.mpd_channel_divisor
        ).to(self.device)
        self.duration_discriminator = (
            DurationDiscriminator(m.hidden_channels, m.hidden_channels, 3, 0.1, gin_channels=m.gin_channels).to(
                self.device
            )
            if getattr(m, "use_duration_discriminator", False)  # Bert-VITS2 only
            else None
        )
        self._freeze(self.options.frozen_prefixes(self.config))

        def adamw(module: nn.Module) -> torch.optim.AdamW:
            params = [p for p in module.parameters() if p.requires_grad]
            return torch.optim.AdamW(params, t.learning_rate, betas=t.betas, eps=t.eps)

        self.optim_g = adamw(self.generator)
        self.optim_d = adamw(self.discriminator)
        self.optim_dur = adamw(self.duration_discriminator) if self.duration_discriminator else None
        self.position = Position()
        scheduler_states = self._restore()
        self.schedulers = {
            name: torch.optim.lr_scheduler.ExponentialLR(optim, gamma=t.lr_decay)
            for name, optim in self._optimizers().items()
        }
        for name, state in scheduler_states.items():
            self.schedulers[name].load_state_dict(state)

        self.net_g = dist.wrap(self.generator)
        self.net_d = dist.wrap(self.discriminator)
        self.net_dur = dist.wrap(self.duration_discriminator) if self.duration_discriminator else None
        if self.options.compile:
            self.net_g = torch.compile(self.net_g)
            self.net_d = torch.compile(self.net_d)
        self.eval_set = (
            TextAudioDataset(self.config.data.validation_files, self.config, self.config_dir)
            if dist.is_main and self.options.eval_audio_items > 0
            else None
        )
        self.reporter = RunReporter(self.run_dir, dist.is_main, self.config.data.sampling_rate)
        self.last_attn: torch.Tensor | None = None
        self.last_scalars: dict[str, float] = {}
        self.history: deque[dict[str, float]] = deque(maxlen=1000)  # recent steps' scalars (tests, debugging)
        self.last_rates: dict[str, float] = {}

    # ----- setup ---------------------------------------------------------------------------------

    @property
    def config_dir(self) -> Path:
        """Where relative filelist and audio paths start: the prepared dataset folder."""
        recorded = ((self.config.model_extra or {}).get("vitsrt") or {}).get("dataset_dir")
        return Path(recorded) if recorded else self.settings.config.resolve().parent

    def _build_generator(self, table: SymbolTable) -> SynthesizerTrn | VitsSynthesizer:
        if isinstance(self.config, VitsConfig):
            return VitsSynthesizer(self.config, n_vocab=table.num_symbols)
        return SynthesizerTrn(self.config, SymbolSizes(table.num_symbols, table.num_tones, table.num_languages))

    def _load_config(self) -> ModelConfig:
        config = load_prepared_config(self.settings.config)
        if self.settings.overrides:
            raw = json.loads(config.to_json())
            raw["train"].update(self.settings.overrides)
            config = type(config).model_validate(raw)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            saved = self.run_dir / "config.json"
            # The run folder is self-describing: the exporter reads the config next to the checkpoints.
            # Filelist/audio paths are made absolute so the copy works from the run folder.
            raw = json.loads(config.to_json())
            recorded = (raw.get("vitsrt") or {}).get("dataset_dir")
            base = Path(recorded) if recorded else self.settings.config.resolve().parent
            for key in ("training_files", "validation_files"):
                raw["data"][key] = str((base / raw["data"][key]).resolve())
            raw.setdefault("vitsrt", {})["dataset_dir"] = str(base)
            text = json.dumps(raw, indent=2, ensure_ascii=False) + "\n"
            if not saved.is_file() or saved.read_text(encoding="utf-8") != text:
                tmp = saved.with_name(".config.json.tmp")
                tmp.write_text(text, encoding="utf-8")
                tmp.replace(saved)
        return config

    def _amp_dtype(self) -> torch.dtype | None:
        mode = "bf16" if self.config.train.bf16_run else self.options.amp
        if mode == "off":
            return None
        if mode == "auto":
            supported = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
            return torch.bfloat16 if supported else None
        return torch.bfloat16

    def _freeze(self, prefixes: list[str]) -> None:
        if not prefixes:
            return
        frozen = 0
        for name, param in self.generator.named_parameters():
            if any(name == p or name.startswith(p + ".") for p in prefixes):
                param.requires_grad_(False)
                frozen += param.numel()
        unknown = [
            p
            for p in prefixes
            if not any(n == p or n.startswith(p + ".") for n, _ in self.generator.named_parameters())
        ]
        if unknown:
            raise ConfigError(f"train.freeze names no generator parameters: {unknown}")
        if self.dist.is_main:
            log.info("frozen: %s (%d parameters)", ", ".join(prefixes), frozen)

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers: dict[str, torch.optim.Optimizer] = {"g": self.optim_g, "d": self.optim_d}
        if self.optim_dur is not None:
            optimizers["dur"] = self.optim_dur
        return optimizers

    def _kinds(self) -> dict[str, tuple[nn.Module, torch.optim.Optimizer]]:
        kinds: dict[str, tuple[nn.Module, torch.optim.Optimizer]] = {
            "G": (self.generator, self.optim_g),
            "D": (self.discriminator, self.optim_d),
        }
        if self.duration_discriminator is not None and self.optim_dur is not None:
            kinds["DUR"] = (self.duration_discriminator, self.optim_dur)
        return kinds

    # ----- checkpoints ---------------------------------------------------------------------------

    def _restore(self) -> dict[str, dict[str, Any]]:
        """Resume from the newest complete checkpoint, else start from base weights if given.

        Returns scheduler states to load once the schedulers exist.
        """
        kinds = self._kinds()
        step = latest_complete_step(self.run_dir, tuple(kinds))
        if step is not None and step > 0:
            return self._resume(step, kinds)
        self._load_base_weights(kinds)
        return {}

    def _resume(
        self, step: int, kinds: dict[str, tuple[nn.Module, torch.optim.Optimizer]]
    ) -> dict[str, dict[str, Any]]:
        """Load every kind's checkpoint of `step` and the position it records; returns the scheduler states."""
        extra: dict[str, Any] = {}
        for kind, (module, optimizer) in kinds.items():
            raw = self._load_resume_checkpoint(self.run_dir / f"{kind}_{step}.pth", module, optimizer)
            if kind == "G":
                extra = raw.get("vitsrt") or {}
                self.position = Position(step, int(raw.get("iteration", 1)), 0)
        if extra:
            self._adopt_position(extra)
        elif self.dist.is_main:
            log.warning(
                "step %d was not written by vitsrt: resuming at the start of epoch %d", step, self.position.epoch
            )
        if self.dist.is_main:
            log.info(
                "resumed from step %d (epoch %d, %d batches into it)",
                self.position.step,
                self.position.epoch,
                self.position.epoch_batches,
            )
        return dict(extra.get("schedulers", {}))

    @staticmethod
    def _load_resume_checkpoint(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer) -> Any:
        """Load one checkpoint's weights and optimizer state, which must fit exactly; returns the raw checkpoint."""
        raw = read_checkpoint(path)
        source = str(path)
        load_state_dict_checked(module, extract_state_dict(raw, source), source)
        try:
            optimizer.load_state_dict(raw["optimizer"])
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"{source}: optimizer state does not fit this run ({exc})") from None
        return raw

    def _adopt_position(self, extra: dict[str, Any]) -> None:
        """The exact position vitsrt recorded in the generator checkpoint."""
        self.position = Position(int(extra["step"]), int(extra["epoch"]), int(extra["epoch_batches"]))
        if int(extra.get("world_size", 1)) != self.dist.world_size and self.dist.is_main:
            log.warning(
                "checkpoint was written by %d processes, resuming with %d: batches differ, so the resume "
                "is not exact (the epoch's remaining batches are taken from the new split)",
                extra.get("world_size"),
                self.dist.world_size,
            )

    def _load_base_weights(self, kinds: dict[str, tuple[nn.Module, torch.optim.Optimizer]]) -> None:
        """Fine-tuning: copy every tensor whose name and shape match (others keep their fresh init).

        The generator must fit entirely (see `_check_generator_fit`); the discriminators may fit in part.
        """
        explicit = {
            "G": self.settings.init_generator,
            "D": self.settings.init_discriminator,
            "DUR": self.settings.init_duration_discriminator,
        }
        for kind, (module, optimizer) in kinds.items():
            path = Path(explicit[kind] or (self.run_dir / f"{kind}_0.pth"))
            if not path.is_file():
                if explicit[kind]:
                    raise CheckpointError(f"base checkpoint not found: {path}")
                continue
            raw = read_checkpoint(path)
            state = extract_state_dict(raw, str(path))
            own = module.state_dict()
            fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
            if kind == "G":
                self._check_generator_fit(f"--init-g {path}" if explicit[kind] else str(path), own, state)
            module.load_state_dict({**own, **fitting})
            if not self.config.train.skip_optimizer and isinstance(raw, dict) and raw.get("optimizer", {}).get("state"):
                try:
                    optimizer.load_state_dict(raw["optimizer"])
                except ValueError as exc:
                    log.warning("%s: optimizer state not used (%s)", path, exc)
            if self.dist.is_main:
                self._log_base_fit(kind, path, own, state, len(fitting))

    def _check_generator_fit(self, source: str, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
        """Refuse a base generator that leaves any tensor at its fresh init, unless --allow-partial-init.

        A partial fit is nearly always the wrong file or config (another model size, version or symbol
        set), and training from it quietly starts mostly from scratch. The one exception is the speaker
        table (SPEAKER_TABLE): its size follows the speaker count, which fine-tuning changes.
        """
        mismatched = [k for k in own if k in state and own[k].shape != state[k].shape and k != SPEAKER_TABLE]
        missing = [k for k in own if k not in state and k != SPEAKER_TABLE]
        if not (mismatched or missing) or self.settings.allow_partial_init:
            return
        fitting = sum(1 for k in own if k in state and own[k].shape == state[k].shape)
        details = []
        if mismatched:
            key = mismatched[0]
            details.append(
                f"{len(mismatched)} shape mismatches, e.g. {key}: checkpoint {list(state[key].shape)}, "
                f"this config {list(own[key].shape)}"
            )
        if missing:
            details.append(f"{len(missing)} missing, e.g. {missing[0]}")
        raise CheckpointError(
            f"{source} matches {fitting} of {len(own)} generator tensors ({'; '.join(details)}); "
            "pass --allow-partial-init to start from it anyway"
        )

    def _log_base_fit(
        self, kind: str, path: Path, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], fitting: int
    ) -> None:
        mismatched = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
        missing = sorted(k for k in own if k not in state)
        log.info("%s: initialised from %s (%d of %d tensors)", kind, path, fitting, len(own))
        if mismatched or missing:
            log.warning(
                "%s: %d tensors keep their fresh init (shape differs: %s; absent: %s)",
                path,
                len(mismatched) + len(missing),
                ", ".join(mismatched[:5]) or "-",
                ", ".join(missing[:5]) or "-",
            )

    def save(self) -> None:
        """Upstream-format G_/D_/DUR_{step}.pth (rank 0), atomically; then keep the newest N."""
        if not self.dist.is_main:
            return
        p = self.position
        extra = {
            "step": p.step,
            "epoch": p.epoch,
            "epoch_batches": p.epoch_batches,
            "world_size": self.dist.world_size,
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
        }
        kinds = self._kinds()
        # G_ last: a crash in between leaves an incomplete step that resume skips.
        for kind in sorted(kinds, key=lambda k: k == "G"):
            module, optimizer = kinds[kind]
            save_checkpoint(
                self.run_dir / f"{kind}_{p.step}.pth",
                module,
                optimizer,
                # Upstream semantics: learning_rate is the configured base rate, iteration is the epoch.
                learning_rate=self.config.train.learning_rate,
                iteration=p.epoch,
                extra=extra if kind == "G" else None,
            )
        removed = prune_checkpoints(self.run_dir, tuple(kinds), self.options.keep_ckpts)
        log.info("saved step %d to %s%s", p.step, self.run_dir, f" (removed {len(removed)} old)" if removed else "")

    # ----- one optimisation step -----------------------------------------------------------------

    def _autocast(self) -> AbstractContextManager:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _clip(self, module: nn.Module, max_norm: float | None) -> float:
        params = [p for p in module.parameters() if p.grad is not None]
        if not params:
            return 0.0
        return float(nn.utils.clip_grad_norm_(params, max_norm if max_norm is not None else math.inf))

    def train_step(self, batch: Batch) -> dict[str, float]:
        t = self.config.train
        step = self.position.step
        torch.manual_seed(_seed_for(t.seed, step, self.dist.rank))
        adversarial = step >= self.options.adversarial_start_step
        segment_frames = t.segment_size // self.config.data.hop_length
        self.net_g.train()
        self.net_d.train()

        with self._autocast():
            out = self._generator_forward(batch, segment_frames, step)
        # Mel targets and mel of the output, in float32 outside autocast.
        y_mel = slice_segments(self.transform.linear_to_mel(batch.spec), out.slice_starts, segment_frames)
        y_hat_mel = self.transform.mel(out.audio.squeeze(1).float())
        hop = self.config.data.hop_length
        y = slice_segments(batch.audio, out.slice_starts * hop, t.segment_size)
        scalars: dict[str, float] = {}

        # Discriminators, on the detached generator output.
        if adversarial:
            with self._autocast():
                d_real, d_fake, _, _ = self.net_d(y, out.audio.detach())
            loss_d = discriminator_loss(d_real, d_fake)
            self.optim_d.zero_grad(set_to_none=True)
            loss_d.backward()
            scalars["grad_norm/d"] = self._clip(self.net_d, self.options.grad_clip_d)
            self.optim_d.step()
            scalars["loss/d"] = loss_d.item()
            if self.net_dur is not None and self.optim_dur is not None:
                tracks = [out.logw_target.detach(), out.logw.detach(), out.logw_sdp.detach()]
                with self._autocast():
                    real, fake_dp, fake_sdp = self.net_dur(
                        out.enc.detach(), out.x_mask.detach(), tracks, out.g.detach()
                    )
                # Upstream scores (real, dp) and (real, sdp) in two calls and sums each side.
                loss_dur_d = discriminator_loss([real * 2], [fake_dp + fake_sdp])
                self.optim_dur.zero_grad(set_to_none=True)
                loss_dur_d.backward()
                scalars["grad_norm/dur"] = self._clip(self.net_dur, self.options.grad_clip_d)
                self.optim_dur.step()
                scalars["loss/dur_d"] = loss_dur_d.item()

        # Generator.
        loss_mel = F.l1_loss(y_mel, y_hat_mel) * t.c_mel
        loss_kl = kl_loss(out.z_p, out.logs_q, out.m_p, out.logs_p, out.y_mask) * t.c_kl
        loss_dur = torch.sum(out.duration_loss.float())
        total = loss_mel + loss_kl + loss_dur
        if out.commit_loss is not None:  # Bert-VITS2 2.2's emotion quantizer, weighted as upstream
            loss_commit = out.commit_loss * t.c_commit
            total = total + loss_commit
            scalars["loss/commit"] = loss_commit.item()
        if adversarial:
            with DistContext.no_sync(self.net_d), self._autocast():
                _, d_fake, f_real, f_fake = self.net_d(y, out.audio)
            loss_fm = feature_loss(f_real, f_fake)
            loss_adv = generator_loss(d_fake)
            total = total + loss_fm + loss_adv
            scalars["loss/fm"], scalars["loss/adv"] = loss_fm.item(), loss_adv.item()
            if self.net_dur is not None:
                with DistContext.no_sync(self.net_dur), self._autocast():
                    fake_dp, fake_sdp = self.net_dur(out.enc, out.x_mask, [out.logw, out.logw_sdp], out.g)
                loss_dur_adv = generator_loss([fake_dp + fake_sdp])
                total = total + loss_dur_adv
                scalars["loss/dur_adv"] = loss_dur_adv.item()
        self.optim_g.zero_grad(set_to_none=True)
        total.backward()
        scalars["grad_norm/g"] = self._clip(self.net_g, self.options.grad_clip_g)
        self.optim_g.step()

        scalars.update(
            {
                "loss/g": total.item(),
                "loss/mel": loss_mel.item(),
                "loss/kl": loss_kl.item(),
                "loss/dur": loss_dur.item(),
            }
        )
        for name, optim in self._optimizers().items():
            scalars[f"lr/{name}"] = optim.param_groups[0]["lr"]
        self.last_attn = out.attn[0, 0].detach()
        return scalars

    def _generator_forward(self, batch: Batch, segment_frames: int, step: int) -> TrainOutput:
        """The generator's training pass on `batch` (each family's own inputs)."""
        if isinstance(self.config, VitsConfig):  # phone ids alone; the model ignores sid without a speaker table
            return self.net_g(batch.phone_ids, batch.phone_lengths, batch.spec, batch.spec_lengths, batch.speakers,
                              segment_frames)
        m = self.config.model
        mas_noise = max(m.mas_noise_scale_initial - m.noise_scale_delta * step, 0.0) if m.use_noise_scaled_mas else 0.0
        return self.net_g(
            batch.phone_ids,
            batch.phone_lengths,
            batch.spec,
            batch.spec_lengths,
            batch.speakers,
            batch.tone_ids,
            batch.language_ids,
            batch.bert,
            batch.ja_bert,
            batch.en_bert,
            segment_frames,
            mas_noise,
            emo=batch.emo,
        )

    # ----- the loop ------------------------------------------------------------------------------

    def _finished(self) -> bool:
        if self.position.stopped_by is not None:
            return True
        if self.settings.max_steps is not None and self.position.step >= self.settings.max_steps:
            return True
        return self.position.epoch > self.config.train.epochs

    def _stop_requested(self, stop: StopSignals) -> bool:
        """At a step boundary: was any rank sent SIGTERM/SIGINT? Every rank calls this after every step, so
        all of them stop after the same step (a rank that stopped alone would hang the others' all-reduce)."""
        signum = self.dist.max_over_ranks(stop.received)
        if signum and self.position.stopped_by is None:
            self.position.stopped_by = signal_name(signum)
        return bool(signum)

    def train(self) -> Position:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        total = self.settings.max_steps or self.config.train.epochs * len(self.sampler.epoch_batches())
        bar = tqdm(
            total=total,
            initial=self.position.step,
            unit="step",
            disable=not (self.dist.is_main and self.settings.progress) or None,
            dynamic_ncols=True,
        )
        # While the bar is drawn, log records go through tqdm.write (clear the bar, print the line, redraw):
        # the console handler alone would append each record to the bar's unfinished line.
        redirect = nullcontext() if bar.disable else logging_redirect_tqdm()
        # Under torchrun a second signal is torchrun forwarding the first, not an impatient user.
        stop = StopSignals(repeated_interrupt_aborts=not self.dist.distributed)
        try:
            with redirect, stop:
                self._run_epochs(bar, stop)
                if self.position.step % self.config.train.eval_interval != 0:
                    self.save()
        finally:
            bar.close()
            self.reporter.close()
        if self.position.stopped_by and self.dist.is_main:
            log.info(
                "%s: stopped after step %d with a checkpoint; the same command resumes from it",
                self.position.stopped_by,
                self.position.step,
            )
        if self.settings.param_digest:
            self._write_param_digest()
        self.dist.barrier()
        return self.position

    def _run_epochs(self, bar: Any, stop: StopSignals) -> None:
        t = self.config.train
        sr = self.config.data.sampling_rate
        while not self._finished():
            self.sampler.set_position(self.position.epoch, self.position.epoch_batches)
            for batch in self.loader:
                batch = batch.to(self.device)
                scalars = self.train_step(batch)
                self.position.step += 1
                self.position.epoch_batches += 1
                bar.update(1)
                audio_seconds = float(batch.audio_lengths.sum()) / sr * self.dist.world_size
                self.reporter.count(1, audio_seconds)
                self._check_finite(scalars)
                self.last_scalars = scalars
                self.history.append(scalars)
                step = self.position.step
                if step % t.log_interval == 0:
                    self.last_rates = self.reporter.summary(step, self.position.epoch, scalars)
                if step % t.eval_interval == 0:
                    self.evaluate()
                    self.save()
                # The collective first: every rank must take part in it at every step.
                if self._stop_requested(stop) or self._finished():
                    break
            else:
                with warnings.catch_warnings():
                    # A run resumed exactly at an epoch's end decays before its first optimizer step.
                    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
                    for scheduler in self.schedulers.values():
                        scheduler.step()
                self.position.epoch += 1
                self.position.epoch_batches = 0

    def _check_finite(self, scalars: dict[str, float]) -> None:
        bad = {k: v for k, v in scalars.items() if k.startswith("loss/") and not math.isfinite(v)}
        if bad:
            log.warning("rank %d step %d: non-finite losses %s", self.dist.rank, self.position.step, bad)

    # ----- evaluation ----------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> None:
        """Rank 0: synthesise a few validation items into tensorboard (audio, mel images, alignment)."""
        if not self.dist.is_main:
            return
        if self.last_attn is not None:
            self.reporter.image("train/alignment", self.last_attn.transpose(0, 1), self.position.step)
        if self.eval_set is None or self.reporter.writer is None:
            return
        generator = unwrap(self.net_g)
        generator.eval()
        for index in range(min(self.options.eval_audio_items, len(self.eval_set))):
            batch = collate([self.eval_set[index]]).to(self.device)
            seeded = torch.Generator(device=self.device).manual_seed(index)
            if isinstance(generator, VitsSynthesizer):
                result = generator.infer(batch.phone_ids, batch.phone_lengths, batch.speakers, generator=seeded)
            else:
                result = generator.infer(
                    batch.phone_ids,
                    batch.phone_lengths,
                    batch.speakers,
                    batch.tone_ids,
                    batch.language_ids,
                    batch.bert,
                    batch.ja_bert,
                    batch.en_bert,
                    generator=seeded,
                    emo=batch.emo,
                )
            audio = result.audio[0, 0, : int(result.y_lengths[0]) * self.config.data.hop_length]
            step = self.position.step
            self.reporter.audio(f"eval/{index}/generated", audio, step)
            self.reporter.image(f"eval/{index}/mel_generated", self.transform.mel(audio.unsqueeze(0))[0], step)
            if step == self.config.train.eval_interval:
                self.reporter.audio(f"eval/{index}/ground_truth", batch.audio[0, 0], step)
                self.reporter.image(f"eval/{index}/mel_ground_truth", self.transform.linear_to_mel(batch.spec)[0], step)
        generator.train()

    def _write_param_digest(self) -> None:
        """Per-rank fingerprint of every parameter (tests compare ranks after DDP steps)."""
        digest = {}
        for name, module in (("G", self.generator), ("D", self.discriminator)):
            h = hashlib.sha256()
            for key, tensor in sorted(module.state_dict().items()):
                h.update(key.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            digest[name] = h.hexdigest()
        digest["step"] = self.position.step
        target = self.run_dir / "param_digest"
        target.mkdir(exist_ok=True)
        (target / f"rank{self.dist.rank}.json").write_text(json.dumps(digest), encoding="utf-8")


def run_training(settings: RunSettings) -> Position:
    """Entry point shared by `vitsrt train` and `python -m vitsrt.train` (torchrun)."""
    dist = DistContext.from_env(settings.backend, settings.device)
    try:
        trainer = Trainer(settings, dist)
        return trainer.train()
    finally:
        dist.close()


def copy_base_checkpoints(run_dir: Path, generator: Path, discriminator: Path | None = None) -> None:
    """Place a base G_0/D_0 pair in a run folder (upstream's fine-tuning convention)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(generator, run_dir / "G_0.pth")
    if discriminator is not None:
        shutil.copyfile(discriminator, run_dir / "D_0.pth")
