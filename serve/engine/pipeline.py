"""One voice's synthesis pipeline as batched steps over `Segment`s (one sentence of one request).

  prefill  encoder + duration (padded to the longest text in the batch) -> durations, per-item tensors
  flow     host length regulation + prior sample per item; a transformer flow then runs on whole sentences
           (padded frames) -> z per item, a convolutional flow (voice.json's flow_context_frames) waits for:
  decode   per window: [a windowed flow on the prior sample with its receptive field as context ->] the
           decoder (exact chunked decoding), each graph padded to the longest window in the batch

`run(batch)` is the one entry: it executes a `Batch` the scheduler handed out and returns a `StepOutput`:
each item's follow-up work (prefill -> flow; flow -> its decode windows, then the next sentence's prefill)
and any decoded audio. Admission, ordering, delivery and cancel stay with the engine.
Every step takes items from any number of requests and runs one backend call per graph:
the graphs are masked, so an item's result does not depend on its batch partners. All randomness comes
from each request's seed (`RequestNoise`), never from the batch.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np

from vitsrt import regulator
from vitsrt.errors import InputError, NotFoundError, NothingToSpeakError, TooManyIdsError, VitsrtError, clip, name_list
from vitsrt.sampling import Sampling, check_sampling
from vitsrt.serve.backends.base import StageBackend
from vitsrt.serve.engine.bert_stage import shared_stage
from vitsrt.serve.engine.clap_stage import EMOTION_INPUT, EmotionJob, emotion_stage
from vitsrt.serve.engine.scheduler import Batch, Step
from vitsrt.serve.engine.types import SpeakerMix, SynthesisRequest, VoiceInfo
from vitsrt.serve.engine.windows import DEFAULT_POLICY, DecodeWindow, WindowPolicy, plan_windows
from vitsrt.text import DEFAULT_MAX_IDS, make_frontend, prepare_text, split_sentences
from vitsrt.text.sequence import PhonemeSequence
from vitsrt.text.ssml import Pause, is_ssml, parse_ssml
from vitsrt.voice import Voice

MAX_SENTENCE_CHARS = 300

log = logging.getLogger(__name__)


@dataclass
class Segment:
    """One sentence of one request, carried through the stages. Filled in as it goes."""

    stream_id: int
    index: int
    ids: PhonemeSequence
    sid: int
    scales: Sampling  # the request's values, the voice's defaults where it set none
    noise: regulator.RequestNoise
    policy: WindowPolicy  # how this request's audio is cut into decode windows (streaming or one-shot)
    following: Segment | None = None  # the request's next sentence: prefilled as soon as this one has flowed
    # Exact silence around this segment's audio, in samples (SSML <break>): zeros the engine puts before its
    # first chunk's audio (`pause`) and after its last (`tail`, only on the request's last segment).
    pause: int = 0
    tail: int = 0
    # Per-token encoder features of this sentence by graph input name ([dim, T] each, e.g. BERT features);
    # a feature the voice's encoder takes and a segment lacks is fed as zeros.
    features: dict[str, np.ndarray] = field(default_factory=dict)
    emotion: EmotionJob | None = None  # Bert-VITS2 2.2: the request's CLAP embedding (one job, shared by its segments)
    # A speaker blend (SpeakerMix, shared by the request's segments) and this sentence's part [start, end] of the
    # utterance, which its speaker curve is read over (sentences take parts in proportion to their ids).
    blend: SpeakerMix | None = None
    span: tuple[float, float] = (0.0, 1.0)
    timings: dict[str, float] = field(default_factory=dict)
    # after prefill
    m_p: np.ndarray | None = None  # [C, T]
    logs_p: np.ndarray | None = None
    g: np.ndarray | None = None  # [G, 1], or [G, F] for a speaker curve (one vector per frame)
    durations: np.ndarray | None = None  # [T] int64
    frames: int = 0
    # after flow
    z_p: np.ndarray | None = None  # [C, F], the prior sample: kept for a windowed flow, which runs per window
    z: np.ndarray | None = None  # [C, F], the whole-sentence flow's output (None: the flow is windowed)
    flows: FlowOutputs | None = None  # a windowed flow's outputs, for the decode windows that share them
    windows: list[DecodeWindow] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return len(self.ids.phone_ids)

    def add_time(self, stage: str, seconds: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + seconds


@dataclass(frozen=True)
class _Planned:
    """One segment-to-be: its ids, its sampling values (an SSML rate changes length_scale), the silence before."""

    ids: PhonemeSequence
    scales: Sampling
    pause: int = 0


@dataclass
class DecodeJob:
    segment: Segment
    window: DecodeWindow

    @property
    def stream_id(self) -> int:
        return self.segment.stream_id


Work = Segment | DecodeJob  # what the scheduler queues: segments for prefill and flow, windows for decode


@dataclass
class StepOutput:
    """What one executed batch produced: follow-up work per item, and decoded windows' audio."""

    follow_ups: list[tuple[Step, Work]] = field(default_factory=list)
    audio: list[tuple[DecodeJob, np.ndarray]] = field(default_factory=list)


class VoicePipeline:
    """A loaded voice (manifest + front end + backend) and its batched stage steps."""

    def __init__(self, voice: Voice, backend: StageBackend, max_text_chars: int = 5000,
                 max_phonemes: int = DEFAULT_MAX_IDS):
        self.voice = voice
        self.manifest = voice.manifest
        self.backend = backend
        # The front end holds the one limit on ids per sentence (phoneme input is one sentence).
        self.frontend = make_frontend(self.manifest.front_end, max_length=max_phonemes, root=voice.root)
        # Bert-VITS2 text: one BERT stage per language with a model (sessions shared by voices using the same one)
        models = self.manifest.front_end.bert_models
        self.bert = {lang: shared_stage(voice.root / path) for lang, path in models.items()}
        self.emotion = emotion_stage(voice)  # Bert-VITS2 2.2 voices: the encoder's emo input, else None
        self.max_text_chars = max_text_chars
        self.hop = self.manifest.hop_length
        self.sample_rate = self.manifest.sample_rate
        self.context = self.manifest.decoder_context_frames
        # A convolutional flow runs per decode window with this many frames of context beyond the decoder's
        # (recomputed from its layout at load); None: the flow runs on whole sentences.
        self.flow_context = self.manifest.flow_context_frames
        self.bert_inputs = list(self.manifest.front_end.bert_inputs)
        self.bert_dim = self.manifest.front_end.bert_dim
        self.channels = self.manifest.latent_channels
        self.default_speaker = min(self.manifest.speakers, key=self.manifest.speakers.__getitem__)
        # Speaker vectors by id for blends, read off the encoder's g output on first use (shared by the lanes).
        self._speaker_rows: dict[int, np.ndarray] = {}
        # Whether the encoder takes its speaker as weights over the speaker table (vitsrt.stages SPEAKER_WEIGHTS);
        # bundles exported before that take `sid`.
        self.speaker_weights = self.manifest.graphs.encoder.input("speaker_weights") is not None

    @property
    def name(self) -> str:
        return self.manifest.name

    def info(self) -> VoiceInfo:
        fe = self.manifest.front_end
        return VoiceInfo(
            name=self.name,
            sample_rate=self.sample_rate,
            speakers=tuple(self.manifest.speakers),
            languages=tuple(fe.languages),
            frontend=fe.kind,
        )

    # ----- request admission: everything that can be wrong with a request fails here, in the caller ---

    def segments_for(self, request: SynthesisRequest, stream_id: int, seed: int,
                     policy: WindowPolicy = DEFAULT_POLICY) -> list[Segment]:
        speaker = request.speaker or self.default_speaker
        if speaker not in self.manifest.speakers:
            raise NotFoundError(f"unknown speaker {clip(speaker)} for voice {self.name!r}; "
                                f"available: {name_list(list(self.manifest.speakers))}")
        scales = request.resolve(self.manifest.inference)
        if request.phonemes is None and is_ssml(request.text or ""):
            planned, tail = self._ssml(request, scales)
        else:
            planned, tail = [_Planned(seq, scales) for seq in self._sequences(request)], 0
        sid = self.manifest.speakers[speaker]
        # The seed per segment index: an SSML request's sentences sound exactly as the same sentences in plain text.
        segments = [Segment(stream_id, i, p.ids, sid, p.scales, regulator.RequestNoise(seed, segment=i), policy,
                            pause=p.pause) for i, p in enumerate(planned)]
        segments[-1].tail = tail
        emotion = self._admit_emotion(request)
        for segment in segments:
            segment.emotion = emotion
        self._admit_blend(request, segments)
        for segment, following in itertools.pairwise(segments):
            segment.following = following
        return segments

    def _sequences(self, request: SynthesisRequest) -> list[PhonemeSequence]:
        if request.phonemes is not None:
            p = request.phonemes
            try:
                return [self.frontend.from_ids(p.phone_ids, p.tone_ids, p.language_ids)]
            except InputError as exc:  # the wire's name for the field, whichever door the ids came through
                raise InputError(f"phonemes.{exc.field}", exc.reason) from None
        if not self.frontend.accepts_text:
            raise InputError("text", f"voice {self.name!r} takes phoneme ids only (front end 'ids')")
        sequences = self._sentences(request.text or "", request.language or None, request.normalize_text)
        if not sequences:
            raise NothingToSpeakError("text", "contains nothing pronounceable")
        return sequences

    def _sentences(self, text: str, language: str | None, expand: bool) -> list[PhonemeSequence]:
        text = prepare_text(text, self.max_text_chars)
        whole = getattr(self.frontend, "sentences", None)  # piper voices: espeak-ng splits sentences as in piper
        if whole is not None:
            try:
                return whole(text, language=language)
            except NothingToSpeakError:
                return []
        return [seq for sentence in split_sentences(text, max_chars=MAX_SENTENCE_CHARS)
                for seq in self._spoken(sentence, language, expand)]

    def _ssml(self, request: SynthesisRequest, scales: Sampling) -> tuple[list[_Planned], int]:
        """An SSML document's segments (vitsrt.text.ssml): each run of text at one rate is split into sentences
        as plain text is; each <phoneme> is a segment of its own; breaks become exact silence, in samples,
        before the next segment (after the last one: the returned tail)."""
        if not self.frontend.accepts_text:
            raise InputError("text", f"voice {self.name!r} takes phoneme ids only (front end 'ids')")
        document = parse_ssml(request.text or "", max_chars=self.max_text_chars, language=request.language or None)
        language = request.language or self._known_language(document.language)
        planned: list[_Planned] = []
        silence = 0.0
        for part in document.parts:
            if isinstance(part, Pause):
                silence += part.seconds
                continue
            if part.ipa:
                sequences = [self._from_ipa(part.text, language)]
            else:
                sequences = self._sentences(part.text, language, request.normalize_text) if part.text.strip() else []
            for seq in sequences:
                planned.append(_Planned(seq, _at_rate(scales, part.rate), round(silence * self.sample_rate)))
                silence = 0.0
        if not planned:
            raise NothingToSpeakError("text", "contains nothing pronounceable")
        return planned, round(silence * self.sample_rate)

    def _known_language(self, language: str | None) -> str | None:
        # xml:lang is a hint: matched to the voice's languages ignoring case ("en-US"), else the voice's default.
        by_lower = {name.lower(): name for name in self.manifest.front_end.languages}
        return by_lower.get((language or "").lower())

    def _from_ipa(self, ipa: str, language: str | None) -> PhonemeSequence:
        from_ipa = getattr(self.frontend, "from_ipa", None)
        if from_ipa is None:
            raise InputError("text", f"voice {self.name!r} cannot say IPA (<phoneme>): its front end is "
                             f"{self.manifest.front_end.kind!r}")
        return from_ipa(ipa, language=language)

    def _spoken(self, sentence: str, language: str | None, expand: bool) -> list[PhonemeSequence]:
        """One sentence's ids: [] when it has nothing to say (a run of dashes is dropped, not fatal); a
        sentence whose ids pass the per-sentence limit (e.g. a long number read out) is halved at a space."""
        try:
            return [self.frontend.from_text(sentence, language=language, expand=expand)]
        except NothingToSpeakError:
            log.debug("dropped a sentence with nothing pronounceable: %s", clip(sentence))
            return []
        except TooManyIdsError:
            if len(sentence) < 2:
                raise
            cut = sentence.rfind(" ", 0, len(sentence) // 2 + 1)
            cut = cut if cut > 0 else len(sentence) // 2
            return (self._spoken(sentence[:cut], language, expand)
                    + self._spoken(sentence[cut:].lstrip(), language, expand))

    # ----- batched stage steps -------------------------------------------------------------------------

    def run(self, batch: Batch[Work]) -> StepOutput:
        """Execute one scheduled batch (all items of this voice) and say what each item leads to."""
        if batch.step == "decode":
            jobs = [item for item in batch.items if isinstance(item, DecodeJob)]
            audio = list(zip(jobs, self.decode(jobs), strict=True))
            return StepOutput(audio=audio, follow_ups=[("decode", job) for job in _followers(jobs)])
        segments = [item for item in batch.items if isinstance(item, Segment)]
        if batch.step == "prefill":
            self.prefill(segments)
            return StepOutput(follow_ups=[("flow", segment) for segment in segments])
        self.flow(segments)
        output = StepOutput()
        for segment in segments:
            output.follow_ups += [("decode", DecodeJob(segment, window)) for window in _leaders(segment)]
            if segment.following is not None:  # look ahead: prepare the next sentence while this one decodes
                output.follow_ups.append(("prefill", segment.following))
        return output

    def _run(self, stage: str, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `stage` on the inputs its graph declares (voice.json, written from the stage contract)."""
        inputs = self.manifest.graphs.get(stage).inputs
        missing = [spec.name for spec in inputs if spec.name not in values]
        if missing:
            raise VitsrtError(f"voice {self.name!r}: the {stage} graph wants {missing}, which the engine lacks")
        return self.backend.run(stage, {spec.name: values[spec.name] for spec in inputs})

    def prefill(self, segments: Sequence[Segment]) -> None:
        """Encoder + duration predictor for a batch of segments, padded to the longest text."""
        self._bert_features(segments)
        started = time.perf_counter()
        ids = [s.ids for s in segments]
        phone, lengths = regulator.pad_batch([i.phone_ids for i in ids])
        tone, _ = regulator.pad_batch([i.tone_ids for i in ids])
        language, _ = regulator.pad_batch([i.language_ids for i in ids])
        tokens = phone.shape[1]
        values = {
            "phone_ids": phone.astype(np.int64),
            "tone_ids": tone.astype(np.int64),
            "language_ids": language.astype(np.int64),
            "lengths": lengths.astype(np.int64),
            "sid": np.array([s.sid for s in segments], dtype=np.int64),
        }
        if self.speaker_weights:
            values["speaker_weights"] = self._encoder_weights(segments)
        for name in self.bert_inputs:
            # No BERT features with a request: zeros (documented; Bert-VITS2 voices then rely on phones only).
            zeros = np.zeros((self.bert_dim, 0), dtype=np.float32)
            values[name] = regulator.pad_batch([s.features.get(name, zeros) for s in segments], axis=-1,
                                               size=tokens)[0].astype(np.float32)
        values.update(self._emotion_inputs(segments))
        enc_out = self._run("encoder", values)
        self._blend_text_stage(segments, values, enc_out)
        encoded = time.perf_counter()

        ratios = np.array([s.scales.sdp_ratio for s in segments], dtype=np.float32)
        if not ratios.any() and self.backend.has_stage("duration_dp_only"):
            logw = self._run("duration_dp_only", enc_out)["logw"]
        else:
            noise = [s.noise.sdp_noise(s.tokens, s.scales.noise_scale_w) for s in segments]
            sdp_noise = regulator.pad_batch(noise, axis=-1, size=tokens)[0]
            logw = self._run("duration", {**enc_out, "sdp_noise": sdp_noise, "sdp_ratio": ratios})["logw"]
        length_scales = np.array([s.scales.length_scale for s in segments], dtype=np.float32)
        durations = regulator.durations_from_logw(logw, enc_out["x_mask"], length_scales)
        finished = time.perf_counter()
        for row, segment in enumerate(segments):
            n = segment.tokens
            segment.m_p = enc_out["m_p"][row, :, :n]
            segment.logs_p = enc_out["logs_p"][row, :, :n]
            segment.g = enc_out["g"][row] if "g" in enc_out else None  # no speaker vector: single-speaker VITS
            segment.durations = durations[row, :n]
            segment.frames = int(max(segment.durations.sum(), 1))
            if segment.blend is not None:
                segment.g = self._frame_vectors(segment)
            segment.add_time("encoder", encoded - started)
            segment.add_time("duration", finished - encoded)

    # ----- speaker blends ---------------------------------------------------------------------------------

    def _admit_blend(self, request: SynthesisRequest, segments: Sequence[Segment]) -> None:
        """Resolve the request's speaker blend (InputError / NotFoundError for one this voice cannot speak) and give
        each segment its part of the utterance, in proportion to its ids."""
        points = request.blend_points()
        if not points:
            return
        where = "speaker_curve" if request.speaker_curve else "speakers"
        if self.manifest.graphs.encoder.output("g") is None or len(self.manifest.speakers) < 2:
            raise InputError(where, f"voice {self.name!r} has one speaker: it cannot blend speakers")
        if request.speaker_curve and not self.manifest.speaker_curves:
            raise InputError(where, f"voice {self.name!r} was exported before speaker curves (its flow and decoder "
                             "take one speaker vector per sentence): re-export it, or give a static blend (speakers)")
        mix = SpeakerMix.resolve(points, self.manifest.speakers, self.name)
        ends = np.cumsum([s.tokens for s in segments]) / sum(s.tokens for s in segments)
        for segment, start, end in zip(segments, [0.0, *ends[:-1]], ends, strict=True):
            segment.blend, segment.span, segment.sid = mix, (float(start), float(end)), int(mix.sids[0])

    def _encoder_weights(self, segments: Sequence[Segment]) -> np.ndarray:
        """[B, speakers] float32 ``speaker_weights`` for the encoder: one-hot at a plain item's speaker, a blended
        item's mean weights over its sentence's part of the utterance (so the encoder computes g, and the text
        encoder and durations are conditioned on it, exactly as for that vector)."""
        weights = np.zeros((len(segments), self.manifest.num_speakers), dtype=np.float32)
        for row, segment in enumerate(segments):
            if segment.blend is None:
                weights[row, segment.sid] = 1.0
            else:
                weights[row, segment.blend.sids] = segment.blend.mean(*segment.span)
        return weights

    def _speaker_table(self, sids: np.ndarray) -> np.ndarray:
        """[S, G] float64 speaker vectors of `sids`: the encoder's own g output for each id (exactly what a plain
        request feeds the later stages), from one-token encoder calls the first time an id is blended."""
        missing = [int(sid) for sid in sids if int(sid) not in self._speaker_rows]
        for start in range(0, len(missing), 8):
            chunk = np.array(missing[start : start + 8], dtype=np.int64)
            values = {}
            for spec in self.manifest.graphs.encoder.inputs:  # one token of zeros (ids 0, zero features)
                shape = [len(chunk) if dim == "B" else 1 if isinstance(dim, str) else dim for dim in spec.shape]
                values[spec.name] = np.zeros(shape, dtype=spec.dtype)
            one_hot = np.eye(self.manifest.num_speakers, dtype=np.float32)[chunk]
            values.update(sid=chunk, speaker_weights=one_hot, lengths=np.ones(len(chunk), dtype=np.int64))
            for sid, vector in zip(chunk, self._run("encoder", values)["g"][:, :, 0], strict=True):
                self._speaker_rows[int(sid)] = vector.astype(np.float64)
        return np.stack([self._speaker_rows[int(sid)] for sid in sids])

    def _blend_text_stage(self, segments: Sequence[Segment], values: dict[str, np.ndarray],
                          enc_out: dict[str, np.ndarray]) -> None:
        """Blended items at the text level, with the blend's mean weights over the sentence's part of the utterance.
        An encoder that takes ``speaker_weights`` was fed those weights and computed g itself: its outputs are exact
        and nothing is done here. Otherwise g (for the duration stage) is the weighted sum of the speakers' vectors;
        and a Bert-VITS2 bundle exported before speaker weights (its encoder takes ``sid`` and conditions the text
        encoder on that speaker's vector inside the graph) gives an item blending several speakers the same
        weighted sum of the encoder's outputs for each of them (one more encoder call for all such items: close to,
        not exactly, the blended vector's encoding; re-export for exact blends). A VITS text encoder does not depend
        on the speaker."""
        rows = [row for row, segment in enumerate(segments) if segment.blend is not None]
        if not rows or self.speaker_weights:
            return
        means = {row: segments[row].blend.mean(*segments[row].span) for row in rows}
        g = enc_out["g"].copy()
        for row in rows:
            g[row] = self._mix_vectors(segments[row].blend, means[row][None])
        enc_out["g"] = g
        mixed = [row for row in rows if len(segments[row].blend.sids) > 1]
        if self.manifest.model.family == "vits" or not mixed:
            return
        picks = np.array([row for row in mixed for _ in segments[row].blend.sids])
        each = self._run("encoder", {**{name: value[picks] for name, value in values.items()},
                                     "sid": np.concatenate([segments[row].blend.sids for row in mixed])})
        for name in ("enc", "m_p", "logs_p"):
            enc_out[name] = enc_out[name].copy()
            start = 0
            for row in mixed:
                count = len(segments[row].blend.sids)
                mixed_out = np.tensordot(means[row], each[name][start : start + count].astype(np.float64), axes=1)
                enc_out[name][row] = mixed_out.astype(np.float32)
                start += count

    def _frame_vectors(self, segment: Segment) -> np.ndarray:
        """A blended sentence's g for the flow and decoder: [G, F] per frame, or [G, 1] where the blend is the same
        on every frame of the sentence (a static blend, or a curve that is flat there)."""
        mix = segment.blend
        weights = mix.frames(*segment.span, segment.frames)
        return self._mix_vectors(mix, weights[:1] if (weights == weights[:1]).all() else weights)

    def _mix_vectors(self, mix: SpeakerMix, weights: np.ndarray) -> np.ndarray:
        """[G, N] float32: the weighted sums of the blend's speaker vectors for `weights` [N, S] (float64 sums, so a
        weight of 1 gives that speaker's vector exactly)."""
        return (weights @ self._speaker_table(mix.sids)).T.astype(np.float32)

    def _admit_emotion(self, request: SynthesisRequest) -> EmotionJob | None:
        """The request's emotion job (Bert-VITS2 2.2 voices; InputError for a bad prompt); other voices refuse one."""
        if self.emotion is None:
            if request.emotion is not None:
                raise InputError("emotion", f"voice {self.name!r} takes no emotion (only Bert-VITS2 2.2 voices do)")
            return None
        return self.emotion.admit(request.emotion)

    def _emotion_inputs(self, segments: Sequence[Segment]) -> dict[str, np.ndarray]:
        """``{"emo": [B, dim]}`` for a 2.2 voice (the CLAP towers run here for requests not embedded yet; a segment
        made without admission gets the voice's default); empty for other voices."""
        if self.emotion is None:
            return {}
        started = time.perf_counter()
        for segment in segments:
            segment.emotion = segment.emotion or self.emotion.admit(None)
        values = {EMOTION_INPUT: self.emotion.inputs([s.emotion for s in segments])}
        for segment in segments:
            segment.add_time("emotion", time.perf_counter() - started)
        return values

    def _bert_features(self, segments: Sequence[Segment]) -> None:
        """Bert-VITS2 text: each language's BERT graph on its sentences of the batch (one padded call per model);
        the sentence's features go to its language's encoder input, the other BERT inputs get the request's
        seeded normal noise (upstream 2.3's randn). Sentences without BERT tokens keep zeros."""
        pending = [s for s in segments if s.ids.bert is not None and not s.features]
        for lang, stage in self.bert.items():
            group = [s for s in pending if s.ids.bert.language == lang]
            if not group:
                continue
            started = time.perf_counter()
            for segment, features in zip(group, stage.features([s.ids.bert for s in group]), strict=True):
                segment.features = {name: segment.noise.bert_filler(slot, self.bert_dim, segment.tokens)
                                    for slot, name in enumerate(self.bert_inputs)}
                segment.features[segment.ids.bert.slot] = features
                segment.add_time("bert", time.perf_counter() - started)

    def flow(self, segments: Sequence[Segment]) -> None:
        """Length regulation + prior sample per item (host) and the decode windows; then one whole-sentence flow
        call on the padded batch of the items that flow whole, nothing more for a windowed flow's (it runs with
        the decode windows)."""
        started = time.perf_counter()
        priors = [(segment, self._prior_sample(segment)) for segment in segments]
        regulated = time.perf_counter()
        whole = [(segment, z_p) for segment, z_p in priors if not self._windowed_flow(segment)]
        z = self._whole_flow(whole)
        finished = time.perf_counter()
        rows = {id(segment): row for row, (segment, _) in enumerate(whole)}  # Segment compares by value
        for segment, z_p in priors:
            windowed = id(segment) not in rows
            segment.windows = plan_windows(segment.frames, self.context, segment.policy,
                                           self.flow_context if windowed else 0)
            if windowed:
                segment.z_p, segment.flows = z_p, FlowOutputs(segment.windows)
            else:
                segment.z = z[rows[id(segment)], :, : segment.frames]
                segment.add_time("flow", finished - regulated)
            segment.add_time("regulator", regulated - started)

    def _windowed_flow(self, segment: Segment) -> bool:
        """A convolutional flow runs in windows for streaming (a small first window waits for its own flow
        window only); a transformer flow, and a whole-utterance request's, runs on the whole sentence."""
        policy = segment.policy
        return self.flow_context is not None and policy.first_frames < policy.frames

    def _whole_flow(self, priors: Sequence[tuple[Segment, np.ndarray]]) -> np.ndarray | None:
        """z [B, C, frames] of whole sentences from (segment, prior sample) pairs: one padded flow call; None for
        no sentence."""
        if not priors:
            return None
        segments = [segment for segment, _ in priors]
        z_p, frames = regulator.pad_batch([z_p for _, z_p in priors], axis=-1)
        y_mask = regulator.length_mask(frames, z_p.shape[-1])
        speakers = _speaker_vectors(segments, [(0, s.frames) for s in segments], z_p.shape[-1])
        return self._run("flow", {"z_p": z_p, "y_mask": y_mask, **speakers})["z"]

    def _prior_sample(self, segment: Segment) -> np.ndarray:
        """z_p [C, F] of one sentence: its prior expanded by the durations, sampled with the request's noise."""
        d = segment.durations[None, :]
        m, logs, y_mask, _ = regulator.expand_by_durations(d, segment.m_p[None], segment.logs_p[None])
        eps = segment.noise.prior_eps(self.channels, segment.frames)[None]
        return regulator.sample_prior(m, logs, eps, segment.scales.noise_scale, y_mask)[0]

    def decode(self, jobs: Sequence[DecodeJob]) -> list[np.ndarray]:
        """Decode windows from any segments as one padded batch (after one padded windowed-flow call for the
        windows whose sentence has no whole-sentence z); returns each window's cropped audio."""
        started = time.perf_counter()
        pieces = self.latents(jobs)
        flowed = time.perf_counter()
        z, frames = regulator.pad_batch(pieces, axis=-1)
        y_mask = regulator.length_mask(frames, z.shape[-1])
        speakers = _speaker_vectors([job.segment for job in jobs],
                                    [(job.window.ctx_start, job.window.ctx_end) for job in jobs], z.shape[-1])
        audio = self._run("decoder", {"z": z, "y_mask": y_mask, **speakers})["audio"]
        finished = time.perf_counter()
        out = []
        for row, job in enumerate(jobs):
            out.append(np.ascontiguousarray(audio[row, 0, job.window.crop(self.hop)], dtype=np.float32))
            if job.segment.z is None:
                job.segment.add_time("flow", flowed - started)
            job.segment.add_time("decode", finished - flowed)
        return out

    def latents(self, jobs: Sequence[DecodeJob]) -> list[np.ndarray]:
        """Each window's decoder input z [C, ctx frames]: cut from its sentence's z, or (a windowed flow) from
        its flow window's output, cropped to the decoder's frames. Flow windows not yet run run first, as one
        padded call; their locks are held meanwhile, so two lanes never run the same flow window (and a lane
        needing another flow window of the sentence does not wait)."""
        pieces = [None if (z := job.segment.z) is None else z[:, job.window.ctx_start : job.window.ctx_end]
                  for job in jobs]
        windowed = [jobs[row] for row, piece in enumerate(pieces) if piece is None]
        if not windowed:
            return pieces  # type: ignore[return-value]
        if any(job.segment.flows is None or job.segment.z_p is None for job in windowed):
            raise VitsrtError("a decode window ran before its sentence's flow step")
        needed = {(id(job.segment.flows), job.window.flow_span): job.segment.flows for job in windowed}
        with ExitStack() as locks:
            for (_, span), flows in sorted(needed.items(), key=lambda item: item[0]):  # one order for every lane
                locks.enter_context(flows.locks[span])
            self._run_flows([job for job in windowed if not job.segment.flows.has(job.window)])
            read = iter([job.segment.flows.read(job.window) for job in windowed])
            for job in windowed:
                job.segment.flows.release(job.window)
        return [piece if piece is not None else next(read) for piece in pieces]

    def _run_flows(self, jobs: Sequence[DecodeJob]) -> None:
        """One padded flow call for the distinct flow windows of `jobs`; each output kept on its segment. The
        flow's masks make each row's padding the zeros a shorter input would see: rows are independent."""
        todo = list({(id(job.segment), job.window.flow_span): job for job in jobs}.values())
        if not todo:
            return
        z_p, frames = regulator.pad_batch(
            [job.segment.z_p[:, job.window.flow_start : job.window.flow_end] for job in todo], axis=-1)
        y_mask = regulator.length_mask(frames, z_p.shape[-1])
        speakers = _speaker_vectors([job.segment for job in todo], [job.window.flow_span for job in todo],
                                    z_p.shape[-1])
        z = self._run("flow", {"z_p": z_p, "y_mask": y_mask, **speakers})["z"]
        for row, job in enumerate(todo):
            job.segment.flows.put(job.window, z[row, :, : frames[row]].copy())


def _leads(segment: Segment, window: DecodeWindow) -> bool:
    """Whether `window` is queued once its sentence has flowed: every window of a sentence-wide flow; of a windowed
    flow, the first window of each flow window (it runs the flow window, the others follow it, so no lane
    waits for another's flow)."""
    windows = segment.windows
    return segment.flows is None or window.index == 0 or windows[window.index - 1].flow_span != window.flow_span


def _leaders(segment: Segment) -> list[DecodeWindow]:
    return [window for window in segment.windows if _leads(segment, window)]


def _followers(jobs: Sequence[DecodeJob]) -> list[DecodeJob]:
    """The windows to queue after these decoded: those sharing a flow window that one of them led."""
    return [DecodeJob(job.segment, window)
            for job in jobs if job.segment.flows is not None and _leads(job.segment, job.window)
            for window in job.segment.windows[job.window.index + 1 :] if window.flow_span == job.window.flow_span]


class FlowOutputs:
    """A windowed flow's outputs for one sentence, by flow window, until every decode window that shares one
    has read it. Callers hold the flow window's lock in `locks`."""

    def __init__(self, windows: Sequence[DecodeWindow]):
        self._readers = Counter(window.flow_span for window in windows)
        self.locks = {span: threading.Lock() for span in self._readers}
        self._outputs: dict[tuple[int, int], np.ndarray] = {}

    def has(self, window: DecodeWindow) -> bool:
        return window.flow_span in self._outputs

    def put(self, window: DecodeWindow, z: np.ndarray) -> None:
        self._outputs[window.flow_span] = z

    def read(self, window: DecodeWindow) -> np.ndarray:
        """The window's decoder input, from its flow window's output."""
        return self._outputs[window.flow_span][:, window.flow_crop()]

    def release(self, window: DecodeWindow) -> None:
        """The window has read its input: the output goes once every window sharing it has (a window decoded
        again later runs its flow window again)."""
        span = window.flow_span
        self._readers[span] -= 1
        if self._readers[span] <= 0:
            self._outputs.pop(span, None)


def _speaker_vectors(segments: Sequence[Segment], frames: Sequence[tuple[int, int]],
                     width: int) -> dict[str, np.ndarray]:
    """``{"g": [B, G, 1]}`` from the items' speaker vectors; empty for a voice whose encoder has none. When an item
    has one vector per frame (a speaker curve): ``[B, G, width]``, each row its frames [start, end) (one vector
    repeated over them for the other items), zeros in the padding (every graph masks it)."""
    if any(s.g is None for s in segments):
        return {}
    if all(s.g.shape[-1] == 1 for s in segments):
        return {"g": np.stack([s.g for s in segments])}
    g = np.zeros((len(segments), segments[0].g.shape[0], width), dtype=np.float32)
    for row, (segment, (start, end)) in enumerate(zip(segments, frames, strict=True)):
        g[row, :, : end - start] = segment.g if segment.g.shape[-1] == 1 else segment.g[:, start:end]
    return {"g": g}


def _at_rate(scales: Sampling, rate: float) -> Sampling:
    """`scales` with length_scale divided by an SSML prosody rate: exact durations, no time-stretching."""
    if rate == 1.0:
        return scales
    try:
        length_scale = check_sampling("length_scale", scales.length_scale / rate)
    except InputError as exc:
        raise InputError("text", f"SSML prosody rate {rate:g} makes length_scale {exc.reason}") from None
    return scales.model_copy(update={"length_scale": length_scale})
