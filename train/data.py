"""Training data: filelist items -> padded batches, grouped by length, split across ranks.

The length-bucketed sampler is upstream's idea (similar lengths in a batch waste less padding)
with three fixes: its bounds come from the config (``train.bucket_boundaries``, in spectrogram
frames) instead of being hard-coded; it can start in the middle of an epoch, which exact resume
needs; and it reports what it dropped instead of silently losing items.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset, Sampler

from vitsrt.config import BERT_DIM, BertVits2Config
from vitsrt.errors import ConfigError
from vitsrt.train.checkpoint import read_checkpoint
from vitsrt.train.mel import SpectrogramTransform
from vitsrt.train.models.emotion import CLAP_DIM
from vitsrt.train.models.synthesizer import emotion_version
from vitsrt.train.tokens import FilelistEntry, SymbolTable, read_filelist

log = logging.getLogger(__name__)

# Upstream train_ms.py's bucket bounds (spectrogram frames), used when the config names none.
UPSTREAM_BUCKETS = (32, 300, 400, 500, 600, 700, 800, 900, 1000)
# Bert-VITS2 2.2: each recording's CLAP embedding, written beside it by `vitsrt clap-features`.
EMOTION_SUFFIX = ".emo.npy"


def emotion_path(recording: Path) -> Path:
    """``x.wav`` -> ``x.emo.npy`` (what `vitsrt clap-features` writes)."""
    return recording.with_name(recording.stem + EMOTION_SUFFIX)


def read_emotion(path: Path) -> torch.Tensor:
    """A recording's [512] CLAP embedding; ConfigError naming the file when it is unreadable or misshapen."""
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable .npy file ({exc})") from None
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if values.size != CLAP_DIM or not np.isfinite(values).all():
        raise ConfigError(f"{path}: expected {CLAP_DIM} finite values (a CLAP embedding), got {values.size}")
    return torch.from_numpy(values)


@dataclass
class Example:
    phone_ids: torch.Tensor  # [T] int64
    tone_ids: torch.Tensor
    language_ids: torch.Tensor
    spec: torch.Tensor  # [n_fft/2+1, F]
    audio: torch.Tensor  # [1, F*hop]
    speaker: int
    bert: torch.Tensor | None  # [1024, T] when a .bert.pt file exists
    emo: torch.Tensor | None = None  # [512] CLAP embedding (Bert-VITS2 2.2 configs)


@dataclass
class Batch:
    phone_ids: torch.Tensor  # [B, T]
    phone_lengths: torch.Tensor  # [B]
    spec: torch.Tensor  # [B, n_fft/2+1, F]
    spec_lengths: torch.Tensor
    audio: torch.Tensor  # [B, 1, F*hop]
    audio_lengths: torch.Tensor
    speakers: torch.Tensor  # [B]
    tone_ids: torch.Tensor
    language_ids: torch.Tensor
    bert: torch.Tensor  # [B, 1024, T]
    ja_bert: torch.Tensor
    en_bert: torch.Tensor
    emo: torch.Tensor | None = None  # [B, 512] (Bert-VITS2 2.2 configs)

    def to(self, device: torch.device) -> Batch:
        return Batch(**{k: None if v is None else v.to(device, non_blocking=True) for k, v in self.__dict__.items()})

    @property
    def size(self) -> int:
        return int(self.phone_ids.size(0))


def resolve(base: Path, path: str) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else base / candidate


class TextAudioDataset(Dataset):
    """Items of one filelist. Audio is read as stored (prepare already resampled and trimmed it)."""

    def __init__(self, filelist: str | Path, config: BertVits2Config, base_dir: str | Path):
        self.base = Path(base_dir)
        self.path = resolve(self.base, str(filelist))
        if not self.path.is_file():
            raise ConfigError(f"filelist not found: {self.path}")
        self.config = config
        self.symbols = SymbolTable.from_config(config)
        self.transform = SpectrogramTransform.from_config(config.data)
        self.hop = config.data.hop_length
        speakers = config.data.spk2id
        self.entries: list[FilelistEntry] = []
        self.frames: list[int] = []
        self.emotion = isinstance(config, BertVits2Config) and emotion_version(config)
        for entry in read_filelist(self.path):
            if entry.speaker not in speakers:
                raise ConfigError(f"{self.path}: speaker {entry.speaker!r} is not in data.spk2id")
            audio = resolve(self.base, entry.audio)
            try:
                info = sf.info(str(audio))
            except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                raise ConfigError(f"{self.path}: cannot read {audio}: {exc}") from None
            if info.samplerate != config.data.sampling_rate:
                raise ConfigError(
                    f"{audio} is {info.samplerate} Hz but the config says {config.data.sampling_rate}; "
                    "run `vitsrt prepare`"
                )
            self.entries.append(entry)
            self.frames.append(info.frames // self.hop)
        if self.emotion:
            self._check_emotion_files()

    def _check_emotion_files(self) -> None:
        """2.2 trains on each recording's CLAP embedding: refuse at once, naming the first one missing."""
        for entry in self.entries:
            path = emotion_path(resolve(self.base, entry.audio))
            if not path.is_file():
                raise ConfigError(f"{path} not found: a Bert-VITS2 2.2 config trains on each recording's CLAP "
                                  f"embedding; run `vitsrt clap-features` on {self.path}")

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Example:
        entry = self.entries[index]
        tokens = self.symbols.encode(entry.phonemes, entry.tones, entry.language)
        wav_path = resolve(self.base, entry.audio)
        samples, _ = sf.read(str(wav_path), dtype="float32")
        frames = len(samples) // self.hop
        audio = torch.from_numpy(np.ascontiguousarray(samples[: frames * self.hop])).unsqueeze(0)
        spec_path = wav_path.with_suffix(".spec.pt")
        spec = read_checkpoint(spec_path) if spec_path.is_file() else self.transform.linear(audio.squeeze(0))
        if not isinstance(spec, torch.Tensor) or spec.size(-1) != frames:
            spec = self.transform.linear(audio.squeeze(0))  # stale cache: recompute rather than misalign
        bert_path = wav_path.with_suffix(".bert.pt")
        bert = read_checkpoint(bert_path) if bert_path.is_file() else None
        if bert is not None and bert.shape != (BERT_DIM, len(tokens.phone_ids)):
            raise ConfigError(f"{bert_path}: shape {list(bert.shape)} does not match {len(tokens.phone_ids)} tokens")
        return Example(
            torch.from_numpy(tokens.phone_ids),
            torch.from_numpy(tokens.tone_ids),
            torch.from_numpy(tokens.language_ids),
            spec.float(),
            audio,
            self.config.data.spk2id[entry.speaker],
            bert,
            read_emotion(emotion_path(wav_path)) if self.emotion else None,
        )


def collate(examples: Sequence[Example]) -> Batch:
    """Zero-padded batch, longest spectrogram first (upstream order). BERT features are zeros unless
    a ``.bert.pt`` file was found (IPA voices have none; the encoder then only sees the projection bias)."""
    order = sorted(range(len(examples)), key=lambda i: -examples[i].spec.size(1))
    items = [examples[i] for i in order]
    batch = len(items)
    max_t = max(len(e.phone_ids) for e in items)
    max_f = max(e.spec.size(1) for e in items)
    max_l = max(e.audio.size(1) for e in items)
    phone = torch.zeros(batch, max_t, dtype=torch.long)
    tone = torch.zeros_like(phone)
    language = torch.zeros_like(phone)
    spec = torch.zeros(batch, items[0].spec.size(0), max_f)
    audio = torch.zeros(batch, 1, max_l)
    bert = torch.zeros(batch, BERT_DIM, max_t)
    for b, e in enumerate(items):
        t = len(e.phone_ids)
        phone[b, :t], tone[b, :t], language[b, :t] = e.phone_ids, e.tone_ids, e.language_ids
        spec[b, :, : e.spec.size(1)] = e.spec
        audio[b, :, : e.audio.size(1)] = e.audio
        if e.bert is not None:
            bert[b, :, :t] = e.bert
    return Batch(
        phone,
        torch.tensor([len(e.phone_ids) for e in items]),
        spec,
        torch.tensor([e.spec.size(1) for e in items]),
        audio,
        torch.tensor([e.audio.size(1) for e in items]),
        torch.tensor([e.speaker for e in items]),
        tone,
        language,
        bert,
        torch.zeros_like(bert),
        torch.zeros_like(bert),
        torch.stack([e.emo for e in items]) if all(e.emo is not None for e in items) else None,
    )


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of similar length, the same number of batches on every rank, resumable mid-epoch.

    Items with ``bounds[i-1] < frames <= bounds[i]`` share bucket i; items outside all buckets are
    dropped (counted in `dropped`). Each bucket is padded by repeating its own items to a multiple
    of ``batch_size * world_size``, so every rank gets whole batches and DDP steps stay in lockstep.
    The order depends only on (seed, epoch): `set_position(epoch, skip)` reproduces an epoch and
    skips the batches already trained on.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        bounds: Sequence[int],
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ):
        if sorted(bounds) != list(bounds) or len(bounds) < 2:
            raise ConfigError(f"bucket bounds must be at least two increasing numbers, got {list(bounds)}")
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.skip = 0, 0
        buckets: list[list[int]] = [[] for _ in range(len(bounds) - 1)]
        self.dropped = 0
        edges = np.asarray(bounds)
        for index, length in enumerate(lengths):
            slot = int(np.searchsorted(edges, length, side="left")) - 1
            if 0 <= slot < len(buckets) and length > edges[0]:
                buckets[slot].append(index)
            else:
                self.dropped += 1
        self.buckets = [b for b in buckets if b]
        if not self.buckets:
            raise ConfigError(
                f"no training item fits the bucket bounds {list(bounds)} (lengths {min(lengths, default=0)}.."
                f"{max(lengths, default=0)} frames); set train.bucket_boundaries"
            )
        total = batch_size * world_size
        self.per_rank_batches = sum(math.ceil(len(b) / total) for b in self.buckets)

    def set_position(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def set_epoch(self, epoch: int) -> None:
        self.set_position(epoch, 0)

    def epoch_batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        total = self.batch_size * self.world_size
        batches: list[list[int]] = []
        for bucket in self.buckets:
            order = torch.randperm(len(bucket), generator=generator).tolist() if self.shuffle else range(len(bucket))
            items = [bucket[i] for i in order]
            padded_size = math.ceil(len(items) / total) * total
            items = (items * math.ceil(padded_size / len(items)))[:padded_size]
            mine = items[self.rank :: self.world_size]
            batches.extend(mine[i : i + self.batch_size] for i in range(0, len(mine), self.batch_size))
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_batches()[self.skip :]

    def __len__(self) -> int:
        return self.per_rank_batches - self.skip
