"""`vitsrt g2p`: what a front end makes of a text — normalised text, phones, tones, word2ph and the final ids."""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = "show how a voice's text front end reads a text: normalised text, phones, tones, word2ph, ids"

# --front-end without a voice: the Bert-VITS2 front end with upstream's tables, or the espeak-ng ones.
FRONT_ENDS = ("bv2-zh", "bv2-ja", "bv2-en", "ipa")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", help="the text to analyse (one sentence or several)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-v", "--voice", help="voice bundle directory: its own front end and tables")
    source.add_argument("--front-end", choices=FRONT_ENDS,
                        help="a front end without a voice (Bert-VITS2's standard tables, or the ipa inventory)")
    parser.add_argument("--language", default="", help="language of the text (voice's default if empty)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per sentence")


def run(args: argparse.Namespace) -> int:
    frontend, language = _frontend(args)
    for row in _rows(frontend, args.text, language):
        print(json.dumps(row, ensure_ascii=False) if args.json else _render(row))
    return 0


def _frontend(args: argparse.Namespace) -> tuple[Any, str | None]:
    from vitsrt.text import make_frontend

    if args.front_end in (None, "ipa"):
        from vitsrt.voice import load_voice
        from vitsrt.voices import default_voice_dir

        if args.front_end == "ipa":
            return make_frontend({"kind": "ipa"}), args.language or None
        voice = load_voice(args.voice or default_voice_dir())
        return make_frontend(voice.manifest.front_end, root=voice.root), args.language or None
    from vitsrt.text.bv2 import standard_frontend

    return standard_frontend(), args.language or args.front_end.split("-")[1]


def _rows(frontend: Any, text: str, language: str | None) -> list[dict[str, Any]]:
    from vitsrt.text import prepare_text, split_sentences

    text = prepare_text(text, 5000)
    if hasattr(frontend, "analyse"):  # Bert-VITS2: every intermediate
        return [_bv2_row(frontend.analyse(s, language=language)) for s in split_sentences(text)]
    whole = getattr(frontend, "sentences", None)
    sequences = whole(text, language=language) if whole else [frontend.from_text(s, language=language)
                                                                for s in split_sentences(text)]
    return [_sequence_row(seq) for seq in sequences]


def _sequence_row(seq: Any) -> dict[str, Any]:
    return {"phonemes": list(seq.phonemes), "symbols": list(seq.symbols), "phone_ids": seq.phone_ids.tolist(),
            "tone_ids": seq.tone_ids.tolist(), "language_ids": seq.language_ids.tolist()}


def _bv2_row(analysis: Any) -> dict[str, Any]:
    seq = analysis.sequence
    row = {"language": analysis.language, "norm_text": analysis.norm_text, "phones": analysis.g2p.phones,
           "tones": analysis.g2p.tones, "word2ph": analysis.g2p.word2ph, **_sequence_row(seq)}
    if seq.bert is not None:
        row["bert_tokens"] = list(seq.bert.tokens)
        row["bert_input_ids"] = seq.bert.input_ids.tolist()
    return row


def _render(row: dict[str, Any]) -> str:
    width = max(len(key) for key in row)
    lines = []
    for key, value in row.items():
        shown = value if isinstance(value, str) else " ".join(str(v) for v in value)
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines) + "\n"
