"""Exact chunked decoding: which frames each decoder call sees and which samples it keeps.

A window emits frames [start, end). It is decoded with up to `context` frames on each side (clipped at
the utterance edges) and cropped back to (end - start) * hop samples. When `context` is at least the
decoder's receptive field (in frames), the concatenated windows equal a one-shot decode; there is no
crossfade. Windows grow: a small first window keeps time-to-first-audio low; after it they double
from `frames` up to `max_frames`, because every window pays 2*context frames of overlap (40% extra work
at 64 frames with 13 frames of context, 10% at 256) and once a stream has audio buffered, bigger
windows cost no latency. The few distinct sizes still batch across streams.

A convolutional flow (WaveNet couplings) runs in windows too: a flow window gets `flow_context` more frames
of the prior sample on each side of the decoder input it serves (clipped at the edges), and the decoder reads
the flow's output for its own frames, so a window waits for one flow window, never for the whole sentence.
The first decode window has a flow window of its own (time to first audio); the later ones share flow
windows of up to `flow_frames` emitted frames, because each flow window pays 2 * (context + flow_context)
frames of overlap (piper's joe: 86 frames, a third of a 256-frame window), while a second window is due only
when the first one's audio has played.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


@dataclass(frozen=True)
class DecodeWindow:
    index: int
    start: int  # first frame emitted
    end: int  # one past the last frame emitted
    ctx_start: int  # first frame fed to the decoder
    ctx_end: int  # one past the last frame fed
    is_last: bool
    flow_start: int  # first prior-sample frame fed to its windowed flow (ctx_start when the flow is not windowed)
    flow_end: int  # one past the last one; windows sharing a flow window have the same flow_start and flow_end

    @property
    def input_frames(self) -> int:
        return self.ctx_end - self.ctx_start

    @property
    def flow_frames(self) -> int:
        return self.flow_end - self.flow_start

    @property
    def flow_span(self) -> tuple[int, int]:
        """Its flow window: the windows that share one have the same span."""
        return self.flow_start, self.flow_end

    def flow_crop(self) -> slice:
        """Frames of the windowed flow's output (for frames [flow_start, flow_end)) that the decoder reads."""
        return slice(self.ctx_start - self.flow_start, self.ctx_end - self.flow_start)

    def crop(self, hop: int) -> slice:
        """Samples of the decoder output (for frames [ctx_start, ctx_end)) that belong to this window."""
        return slice((self.start - self.ctx_start) * hop, (self.end - self.ctx_start) * hop)


class WindowPolicy(BaseModel):
    """How an utterance is cut into decode windows: the one definition the engine, the CLI flags, TensorRT
    profiles and the Triton BLS model read. Each field's alias is its name in flags (`--first-window-frames`),
    Triton model parameters and bench reports."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True)

    first_frames: int = Field(16, ge=1, alias="first_window_frames",
                              description="frames of the first streaming window (time to first audio)")
    frames: int = Field(64, ge=1, alias="window_frames",
                        description="frames of the second window; later ones double up to max_window_frames")
    # Utterances up to this many frames decode in one call (streaming them buys nothing).
    one_shot_frames: int = Field(32, ge=0, alias="one_shot_frames",
                                 description="utterances up to this many frames decode in one call")
    max_frames: int = Field(256, ge=1, alias="max_window_frames", description="the largest window, in frames")
    flow_frames: int = Field(512, ge=1, alias="flow_window_frames",
                             description="frames emitted by the decode windows after the first that share one "
                                         "windowed-flow call")

    @model_validator(mode="before")
    @classmethod
    def _widest_follows_frames(cls, data: Any) -> Any:
        """A second window wider than the default largest one, with no largest given, is the largest."""
        if isinstance(data, dict) and not {"max_frames", "max_window_frames"} & data.keys():
            frames = data.get("frames", data.get("window_frames"))
            if isinstance(frames, int) and frames > cls.model_fields["max_frames"].default:
                data = {**data, "max_frames": frames}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> WindowPolicy:
        if self.max_frames < self.frames:
            raise ValueError("max_frames must be >= frames")
        return self


def add_window_arguments(parser: argparse.ArgumentParser, title: str = "decode windows") -> None:
    """One flag per WindowPolicy field, named by its alias (`--first-window-frames`, ...), for every command
    that plans windows; unset flags keep the policy's defaults."""
    group = parser.add_argument_group(title)
    for field in WindowPolicy.model_fields.values():
        group.add_argument("--" + field.alias.replace("_", "-"), dest=field.alias, type=int, default=None,
                           help=f"{field.description} (default {field.default})")


def window_fields(values: argparse.Namespace | Mapping[str, object]) -> dict[str, int]:
    """The window settings among `values` (parsed flags, or Triton model parameters as strings), by alias;
    absent or unset ones are left out, so the policy's defaults apply."""
    given = vars(values) if isinstance(values, argparse.Namespace) else values
    aliases = [field.alias for field in WindowPolicy.model_fields.values()]
    return {alias: int(value) for alias in aliases if (value := given.get(alias)) is not None}


DEFAULT_POLICY = WindowPolicy()
ONE_SHOT = WindowPolicy(first_frames=1 << 30, frames=1 << 30, one_shot_frames=1 << 30, max_frames=1 << 30)
# A whole-utterance request on CPU: 256-frame windows, no small first one (so a WaveNet flow runs on the whole
# sentence in the flow step: VoicePipeline._windowed_flow). Exact like streaming; the windows of one sentence run
# on every lane at once and a call's tensors stay small: in an in-process probe with two lanes the decoder cost
# 393 us per frame in whole-sentence calls and 356 in these windows, overlap included (piper's joe, 4 clients,
# 2 lanes x 1 thread, 2-vCPU EPYC); benchmarks/results/2026-12-02-peers-concurrent-rewrite.md.
CPU_ONE_SHOT = WindowPolicy(first_frames=256, frames=256, one_shot_frames=256, max_frames=256)


def plan_windows(total_frames: int, context: int, policy: WindowPolicy = DEFAULT_POLICY,
                 flow_context: int = 0) -> list[DecodeWindow]:
    """Split [0, total_frames) into decode windows with `context` frames of decoder context each side, and
    `flow_context` frames more of flow input beyond those (0: the flow is not windowed)."""
    if total_frames < 1:
        raise ValueError("an utterance has at least one frame")
    if context < 0 or flow_context < 0:
        raise ValueError("context must be >= 0")
    bounds: list[tuple[int, int]] = []
    if total_frames <= policy.one_shot_frames:
        bounds.append((0, total_frames))
    else:
        start, size, following = 0, policy.first_frames, policy.frames
        while start < total_frames:
            end = min(start + size, total_frames)
            bounds.append((start, end))
            start, size, following = end, following, min(following * 2, policy.max_frames)
    spans = _flow_spans(bounds, policy.flow_frames) if flow_context else bounds
    reach = context + flow_context
    return [
        DecodeWindow(
            index=i,
            start=s,
            end=e,
            ctx_start=max(0, s - context),
            ctx_end=min(total_frames, e + context),
            is_last=i == len(bounds) - 1,
            flow_start=max(0, span[0] - reach),
            flow_end=min(total_frames, span[1] + reach),
        )
        for i, ((s, e), span) in enumerate(zip(bounds, spans, strict=True))
    ]


def _flow_spans(bounds: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """Per window, the frames its flow window emits for: the first window's own; each later window joins the
    previous one's flow window while that emits at most `limit` frames with it."""
    groups: list[list[tuple[int, int]]] = []
    for i, (start, end) in enumerate(bounds):
        if i > 1 and end - groups[-1][0][0] <= limit:
            groups[-1].append((start, end))
        else:
            groups.append([(start, end)])
    return [(group[0][0], group[-1][1]) for group in groups for _ in group]
