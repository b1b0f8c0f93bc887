"""Bert-VITS2 voices that speak text: the ``bv2`` front end and, per language, an exported BERT graph.

``vitsrt export ... --bert zh=DIR --bert ja=DIR --bert en=DIR`` exports each local Hugging Face BERT directory
(`vitsrt.export.bert`) into the bundle's ``bert/<key>/`` and writes a ``bv2`` front end whose ``bert_models``
name them; ``--front-end bv2`` alone gives text without BERT features (the encoder then gets zeros there,
as for ids requests).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from vitsrt.export.bert import export_bert
from vitsrt.export.onnx_export import ExportError
from vitsrt.text.bv2 import (
    LANGUAGE_ALIASES,
    STANDARD_BERT_SLOTS,
    STANDARD_LANGUAGES,
    STANDARD_TONE_OFFSETS,
    standard_symbols,
)
from vitsrt.voice import FrontEnd, VoiceManifest

__all__ = ["bert_language", "with_bv2_front_end"]

log = logging.getLogger(__name__)

BERT_FOLDER = "bert"


def bert_language(name: str) -> str:
    """Upstream's name (ZH, JP, EN) for a ``--bert`` language (zh, ja, en, ZH ...)."""
    language = LANGUAGE_ALIASES.get(name.strip().lower(), name.strip().upper())
    if language not in STANDARD_LANGUAGES:
        raise ExportError(f"--bert {name!r}: unknown language; use zh, ja or en")
    return language


def with_bv2_front_end(manifest: VoiceManifest, bundle_dir: Path, bert: Mapping[str, str | Path],
                       *, fp16: bool = False) -> VoiceManifest:
    """`manifest` with the ``bv2`` text front end; each ``bert`` entry (language -> model directory) exported
    into ``bundle_dir/bert/<key>`` and feeding its language's BERT input."""
    front = manifest.front_end
    if manifest.model.family != "bert-vits2" or front.symbols != standard_symbols() \
            or front.languages != STANDARD_LANGUAGES:
        raise ExportError("the bv2 text front end needs a Bert-VITS2 voice with upstream's 112 symbols and "
                          "its three languages ZH, JP, EN")
    models: dict[str, str] = {}
    for name, directory in bert.items():
        language = bert_language(name)
        graph = export_bert(directory, bundle_dir / BERT_FOLDER, fp16=fp16)
        if graph.manifest.hidden_size != front.bert_dim:
            raise ExportError(f"--bert {name}: the model's hidden size is {graph.manifest.hidden_size}, the voice's "
                              f"BERT inputs take {front.bert_dim}")
        models[language] = f"{BERT_FOLDER}/{graph.directory.name}"
        log.info("BERT for %s: %s (%s)", language, models[language], "reused" if graph.reused else "exported")
    text = front.model_dump(exclude={"kind"})
    text.update(kind="bv2", tone_offsets=STANDARD_TONE_OFFSETS, bert_slots=STANDARD_BERT_SLOTS, bert_models=models,
                default_language=next(iter(models), "ZH"))
    return manifest.model_copy(update={"front_end": FrontEnd.model_validate(text)})
