"""The emotion input of Bert-VITS2 2.2 voices: each request's CLAP embedding, fed to the encoder as ``emo``.

A request names its emotion as a text prompt, a reference clip or a ready embedding
(:class:`~vitsrt.serve.engine.types.EmotionPrompt`). Admission (:meth:`EmotionStage.admit`, in the caller) checks
it and does the host work: the prompt is tokenized, the clip decoded, resampled to 48 kHz and turned into its
log-mel features (:mod:`vitsrt.text.clap`), an embedding checked for size and finite values. The towers run in
prefill (:meth:`EmotionStage.inputs`): text prompts of a batch in one padded call of the text graph, clips in one
call of the audio graph; the result is kept on the request's :class:`EmotionJob`, which all its sentences share,
so a request's embedding is computed once. Voices that use the same CLAP export share its sessions.

A request without an emotion gets the voice's ``emotion.default_prompt`` (voice.json) when it has one, else a
zero embedding (upstream has no "no emotion" path: its 2.2 inference requires a prompt).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitsrt.errors import InputError, VitsrtError
from vitsrt.serve.backends.ort_runner import OrtRunner
from vitsrt.serve.engine.shared import DirectoryCache
from vitsrt.serve.engine.types import EmotionPrompt
from vitsrt.text.clap import (
    AUDIO_GRAPH,
    OUTPUT_NAME,
    TEXT_GRAPH,
    ClapManifest,
    ClapTokenizer,
    audio_features,
    decode_clip,
    read_clap_manifest,
    read_mel_filters,
)
from vitsrt.voice import Voice

__all__ = ["EMOTION_INPUT", "ClapTowers", "EmotionJob", "EmotionStage", "emotion_stage", "shared_towers"]

EMOTION_INPUT = "emo"  # the encoder graph's input (vitsrt.stages: the "emotion" feature)


@dataclass(eq=False)  # compared (and hashed) by identity: a request's sentences share one job
class EmotionJob:
    """One request's emotion: what to run (ids of a prompt or a clip's features) and, once run, its embedding."""

    ids: np.ndarray | None = None  # a text prompt's ids
    features: np.ndarray | None = None  # a clip's audio-tower input [4, frames, mel]
    embedding: np.ndarray | None = None  # [dim] float32, once known
    seconds: float = field(default=0.0)  # time spent on the towers for this request

    @classmethod
    def of(cls, embedding: np.ndarray) -> EmotionJob:
        return cls(embedding=np.ascontiguousarray(embedding, dtype=np.float32))


class ClapTowers:
    """An exported CLAP directory on onnxruntime: tokenizer, feature extractor, text and audio graphs."""

    def __init__(self, directory: Path, *, intra_op_threads: int | None = None):
        self.directory = directory
        self.manifest: ClapManifest = read_clap_manifest(directory)
        self.tokenizer = ClapTokenizer(directory, self.manifest)
        self.mel_filters = read_mel_filters(directory, self.manifest)
        self._runner = OrtRunner({"text": directory / TEXT_GRAPH, "audio": directory / AUDIO_GRAPH},
                                 intra_op_threads=intra_op_threads, quiet=True)
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self.manifest.embedding_dim

    def text_ids(self, prompt: str) -> np.ndarray:
        try:
            return self.tokenizer.encode(prompt)
        except InputError as exc:
            raise InputError("emotion.text", exc.reason) from None

    def clip_features(self, data: bytes) -> np.ndarray:
        wave = decode_clip(data, self.manifest.sampling_rate)
        return audio_features(wave, self.manifest, self.mel_filters)

    def embed_texts(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """[B, dim] for token id rows (one padded call)."""
        feeds = {"input_ids": _pad(rows, self.manifest.pad.id),
                 "attention_mask": _pad([np.ones_like(r) for r in rows], 0)}
        with self._lock:
            return self._runner.run("text", feeds)[OUTPUT_NAME]

    def embed_clips(self, features: Sequence[np.ndarray]) -> np.ndarray:
        """[B, dim] for audio-tower inputs [4, frames, mel] each (one call)."""
        with self._lock:
            return self._runner.run("audio", {"input_features": np.stack(features).astype(np.float32)})[OUTPUT_NAME]


def _pad(rows: Sequence[np.ndarray], value: int) -> np.ndarray:
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for b, row in enumerate(rows):
        out[b, : len(row)] = row
    return out


_SHARED: DirectoryCache[ClapTowers] = DirectoryCache(lambda directory, threads: ClapTowers(
    directory, intra_op_threads=threads))


def shared_towers(directory: Path, intra_op_threads: int | None = None) -> ClapTowers:
    """The process's one set of sessions for the CLAP export in `directory` (voices naming it share them)."""
    return _SHARED.get(directory, intra_op_threads)


class EmotionStage:
    """A 2.2 voice's emotion input: admission of requests' prompts and the batched tower calls in prefill."""

    def __init__(self, voice: Voice, dim: int):
        self.voice_name = voice.name
        self.dim = dim
        info = voice.manifest.emotion
        self.towers = shared_towers(voice.root / info.clap_model) if info and info.clap_model else None
        if self.towers is not None and self.towers.dim != dim:
            raise VitsrtError(f"voice {voice.name!r}: its CLAP model embeds in {self.towers.dim} dimensions, "
                              f"the encoder's emo input takes {dim}")
        self.default_prompt = info.default_prompt if info else None
        self._default: EmotionJob | None = None

    def admit(self, prompt: EmotionPrompt | None) -> EmotionJob:
        """The request's job; InputError (in the caller) for anything wrong with its prompt."""
        if prompt is None:
            return self._default_job()
        if prompt.embedding is not None:
            return EmotionJob.of(self._checked_embedding(prompt.embedding))
        towers = self._towers("text prompts" if prompt.text is not None else "reference clips")
        if prompt.text is not None:
            return EmotionJob(ids=towers.text_ids(prompt.text))
        assert prompt.audio is not None
        return EmotionJob(features=towers.clip_features(prompt.audio))

    def inputs(self, jobs: Sequence[EmotionJob]) -> np.ndarray:
        """The encoder's ``emo`` [B, dim] for a batch's jobs (running the towers for those not yet embedded)."""
        pending = [job for job in dict.fromkeys(jobs) if job.embedding is None]  # shared jobs once
        if pending:
            self._run(pending)
        return np.stack([job.embedding for job in jobs]).astype(np.float32)

    # ----- helpers ---------------------------------------------------------------------------------------

    def _towers(self, what: str) -> ClapTowers:
        if self.towers is None:
            raise InputError("emotion", f"voice {self.voice_name!r} has no CLAP model for {what} (export it with "
                             "--clap); send a ready embedding instead")
        return self.towers

    def _checked_embedding(self, values: Sequence[float]) -> np.ndarray:
        embedding = np.asarray(values, dtype=np.float32).reshape(-1)
        if embedding.size != self.dim:
            raise InputError("emotion.embedding", f"has {embedding.size} values, voice {self.voice_name!r} takes "
                             f"{self.dim}")
        if not np.isfinite(embedding).all():
            raise InputError("emotion.embedding", "holds NaN or infinite values")
        return embedding

    def _default_job(self) -> EmotionJob:
        if self._default is None:
            if self.default_prompt is not None and self.towers is not None:
                job = EmotionJob(ids=self.towers.text_ids(self.default_prompt))
                self._run([job])
            else:
                job = EmotionJob.of(np.zeros(self.dim, np.float32))
            self._default = job
        return self._default

    def _run(self, jobs: Sequence[EmotionJob]) -> None:
        towers = self._towers("prompts")
        texts = [job for job in jobs if job.ids is not None]
        clips = [job for job in jobs if job.features is not None]
        for group, run in ((texts, lambda g: towers.embed_texts([j.ids for j in g])),
                           (clips, lambda g: towers.embed_clips([j.features for j in g]))):
            if not group:
                continue
            started = time.perf_counter()
            embeddings = run(group)
            elapsed = time.perf_counter() - started
            for job, embedding in zip(group, embeddings, strict=True):
                job.embedding = np.ascontiguousarray(embedding, dtype=np.float32)
                job.features = None  # the clip's features are not needed any more
                job.seconds += elapsed
        if any(job.embedding is None for job in jobs):
            raise VitsrtError(f"voice {self.voice_name!r}: an emotion job had neither a prompt nor a clip to run")


def emotion_stage(voice: Voice) -> EmotionStage | None:
    """The voice's emotion stage, or None when its encoder takes no ``emo`` (every voice but Bert-VITS2 2.2)."""
    spec = voice.manifest.graphs.get("encoder").input(EMOTION_INPUT)
    if spec is None:
        return None
    dim = spec.shape[-1]
    if not isinstance(dim, int):
        raise VitsrtError(f"voice {voice.name!r}: the encoder's emo input has no fixed width ({dim})")
    return EmotionStage(voice, dim)
