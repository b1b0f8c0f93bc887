"""The engine's voices as Wyoming sees them: the `info` answer, and a Wyoming voice choice -> engine fields.

Emotion (Bert-VITS2 2.2 voices): Wyoming's `synthesize` has no field for it, and the wyoming library's
`SynthesizeVoice` keeps only name, language and speaker. The door reads one extra key from the event's raw
`voice` object, `emotion` (a text prompt such as "Happy"), on `synthesize` and `synthesize-start`; a client
sends it by building the event itself (`Event("synthesize", {"text": ..., "voice": {"name": ..., "emotion":
...}})`). Home Assistant sends only the voice's name and speaker: there, a voice exported with
`--emotion-prompt TEXT` speaks with that prompt by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wyoming.info import Attribution, Info, TtsProgram, TtsVoice, TtsVoiceSpeaker
from wyoming.tts import SynthesizeVoice

import vitsrt
from vitsrt.errors import InputError, NotFoundError, clip, name_list
from vitsrt.serve.engine.types import MAX_EMOTION_PROMPT_CHARS, EmotionPrompt, VoiceInfo

PROGRAM_NAME = "vitsrt"
_ATTRIBUTION = Attribution(name="vitsrt", url="")


def build_info(voices: Mapping[str, VoiceInfo]) -> Info:
    """One TTS program; one Wyoming voice per engine voice with its speakers listed, as wyoming-piper does
    (Home Assistant offers the voice by name and the speaker as the `speaker` option)."""
    listed = [
        TtsVoice(
            name=info.name,
            attribution=_ATTRIBUTION,
            installed=True,  # Home Assistant drops voices that are not installed
            description=f"{info.name} ({len(info.speakers)} speakers, {info.sample_rate} Hz)",
            version=None,
            languages=list(info.languages),
            speakers=[TtsVoiceSpeaker(name=speaker) for speaker in info.speakers] or None,
        )
        for info in voices.values()
    ]
    program = TtsProgram(
        name=PROGRAM_NAME,
        attribution=_ATTRIBUTION,
        installed=True,
        description="vitsrt: VITS-family text to speech",
        version=vitsrt.__version__,
        voices=listed,
        supports_synthesize_streaming=True,
    )
    return Info(tts=[program])


def _language_matches(wanted: str, offered: str) -> bool:
    """"en", "en-US" and "en_us" all reach a voice offering "en" (or "en-US"): Home Assistant and Wyoming
    servers spell languages differently, and the voice choice should not fail on spelling."""
    def primary(code: str) -> str:
        return code.replace("_", "-").lower().split("-")[0]

    return wanted.replace("_", "-").lower() == offered.replace("_", "-").lower() or primary(wanted) == primary(offered)


def resolve_voice(voices: Mapping[str, VoiceInfo], default_voice: str,
                  wanted: SynthesizeVoice | None) -> tuple[str, str, str]:
    """(voice, speaker, language) for the engine; '' = the engine's default. Raises NotFoundError.

    A Wyoming voice names a voice (and maybe a speaker), or only a language (then the first voice offering it,
    the default voice first); a name wins over a language, as the protocol says."""
    if wanted is None:
        return default_voice, "", ""
    if wanted.name:
        info = voices.get(wanted.name)
        if info is None:
            raise NotFoundError(f"unknown voice {clip(wanted.name)}; available: {name_list(list(voices))}")
        speaker = wanted.speaker or ""
        if speaker and speaker not in info.speakers:
            raise NotFoundError(f"unknown speaker {clip(speaker)} for voice {info.name!r}; "
                                f"available: {name_list(list(info.speakers))}")
        return info.name, speaker, ""
    if wanted.language:
        ordered = sorted(voices.values(), key=lambda info: info.name != default_voice)
        for info in ordered:
            for offered in info.languages:
                if _language_matches(wanted.language, offered):
                    return info.name, "", offered
        raise NotFoundError(f"no voice speaks {clip(wanted.language)}")
    return default_voice, "", ""


def voice_emotion(data: Mapping[str, Any]) -> EmotionPrompt | None:
    """The emotion prompt of a `synthesize` / `synthesize-start` event's raw data (`voice.emotion`, see the module
    docs); None without one; InputError naming `voice.emotion` for a value that is not a usable prompt."""
    voice = data.get("voice")
    if not isinstance(voice, Mapping) or voice.get("emotion") is None:
        return None
    text = voice["emotion"]
    if not isinstance(text, str) or not text.strip():
        raise InputError("voice.emotion", "must be a non-empty text prompt, e.g. \"Happy\"")
    if len(text) > MAX_EMOTION_PROMPT_CHARS:
        raise InputError("voice.emotion", f"has {len(text)} characters, the limit is {MAX_EMOTION_PROMPT_CHARS}")
    return EmotionPrompt(text=text)
