"""The Bert-VITS2 BERT stage at serve time: tokenizer, batch feeds and word2ph expansion.

An exported BERT (``vitsrt.export.bert``) is a directory ``<key>/`` with ``bert.onnx`` (inputs
``input_ids``, ``attention_mask`` and, for models with token-type embeddings, ``token_type_ids``, all
``[B, N]`` int64; output ``hidden [B, N, H]`` = the source model's ``hidden_states[-3]``), ``tokenizer.json``
(a ``tokenizers`` library file that reproduces the source tokenizer, ``[CLS]``/``[SEP]`` included) and
``bert.json`` (:class:`BertManifest`). Several voices share one directory: its name is the key.

Per-token features become per-phone features as upstream's ``get_bert_feature`` does it: row ``i`` of the
token features repeated ``word2ph[i]`` times, then transposed to ``[H, T]`` (:func:`expand_by_word2ph`).

Numpy, pydantic and ``tokenizers`` only (no torch, no transformers): the serving engine imports this.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vitsrt.errors import TooManyIdsError, VitsrtError, clip
from vitsrt.files import read_small_text

__all__ = [
    "BERT_FORMAT",
    "GRAPH_NAME",
    "INPUT_NAMES",
    "MANIFEST_NAME",
    "MAX_SMALL_FILE_BYTES",
    "OUTPUT_NAME",
    "TOKENIZER_NAME",
    "BertManifest",
    "BertTokenizer",
    "SpecialToken",
    "batch_feeds",
    "expand_by_word2ph",
    "read_bert_manifest",
]

BERT_FORMAT = "vitsrt-bert"
GRAPH_NAME = "bert.onnx"
TOKENIZER_NAME = "tokenizer.json"
MANIFEST_NAME = "bert.json"
OUTPUT_NAME = "hidden"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
MAX_SMALL_FILE_BYTES = 64 << 20  # bert.json is a few KB, a tokenizer.json a few MB (a 250k-piece vocabulary ~20 MB)


class SpecialToken(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str
    id: int = Field(ge=0)


class BertManifest(BaseModel):
    """``bert.json``: what was exported from which kind of model, and how to feed it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["vitsrt-bert"] = BERT_FORMAT
    format_version: Literal[1] = 1
    key: str = Field(pattern=r"^[0-9a-f]{64}$")  # sha256 of the source files and export options
    model_type: str  # the source config's model_type: "bert", "roberta", "deberta-v2"
    architecture: str  # the source config's architectures[0] (informational)
    source_name: str  # the source directory's name (informational)
    hidden_size: int = Field(ge=1)
    num_layers: int = Field(ge=1)  # encoder layers of the source model
    layer: int = Field(ge=0)  # the hidden_states index the graph returns (num_layers - 2: hidden_states[-3])
    max_tokens: int = Field(ge=2)  # the longest id sequence the model takes, [CLS] and [SEP] included
    vocab_size: int = Field(ge=1)
    inputs: list[Literal["input_ids", "attention_mask", "token_type_ids"]]
    output: Literal["hidden"] = OUTPUT_NAME
    opset: int
    fp16_weights: bool  # weights stored as float16 in the file, computed in float32
    tokenizer_kind: Literal["fast", "sentencepiece", "character"]  # how tokenizer.json was obtained
    cls: SpecialToken
    sep: SpecialToken
    pad: SpecialToken
    unk: SpecialToken
    files: dict[str, str]  # file name -> sha256 of bert.onnx and tokenizer.json


def read_bert_manifest(bert_dir: str | os.PathLike[str]) -> BertManifest:
    """The :class:`BertManifest` of an exported BERT directory; VitsrtError with one line if unusable."""
    path = Path(bert_dir) / MANIFEST_NAME
    text = read_small_text(path, MAX_SMALL_FILE_BYTES)
    try:
        return BertManifest.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        shown = clip(os.fspath(path), 200)
        raise VitsrtError(f"{shown}: not a vitsrt BERT manifest ({where}: {first['msg']})") from None


class BertTokenizer:
    """A BERT tokenizer from a ``tokenizer.json`` (the ``tokenizers`` library): text -> ids with [CLS]/[SEP].

    ``max_tokens`` bounds the ids of one text (the model's position limit); a longer text raises
    :class:`~vitsrt.errors.TooManyIdsError`, so the engine can split the sentence.
    """

    def __init__(self, tokenizer_json: str | os.PathLike[str], *, max_tokens: int, pad_id: int = 0,
                 unk_id: int | None = None):
        from tokenizers import Tokenizer  # the bv2 extra; imported when a BERT voice is loaded

        if max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2 ([CLS] and [SEP]), got {max_tokens}")
        path = Path(tokenizer_json)
        try:
            self._tokenizer = Tokenizer.from_str(read_small_text(path, MAX_SMALL_FILE_BYTES))
        except Exception as exc:  # the library raises its own Exception subclass for a bad file
            if isinstance(exc, VitsrtError):
                raise
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise VitsrtError(f"{clip(os.fspath(path), 200)}: not a tokenizers file ({clip(reason, 120)})") from None
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.max_tokens = int(max_tokens)
        self.pad_id = int(pad_id)
        self.unk_id = self._tokenizer.token_to_id("[UNK]") if unk_id is None else int(unk_id)

    @classmethod
    def from_dir(cls, bert_dir: str | os.PathLike[str]) -> BertTokenizer:
        """The tokenizer of an exported BERT directory, limited to its manifest's ``max_tokens``."""
        manifest = read_bert_manifest(bert_dir)
        return cls(Path(bert_dir) / TOKENIZER_NAME, max_tokens=manifest.max_tokens, pad_id=manifest.pad.id,
                   unk_id=manifest.unk.id)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> tuple[np.ndarray, list[str]]:
        """``(ids, tokens)`` of `text` with [CLS] first and [SEP] last; ids are a 1-D int64 array."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        encoding = self._tokenizer.encode(text, add_special_tokens=True)
        ids = np.asarray(encoding.ids, dtype=np.int64)
        if ids.size > self.max_tokens:
            raise TooManyIdsError(
                "text", f"gives {ids.size} BERT tokens, over this BERT's limit of {self.max_tokens}: {clip(text)}"
            )
        return ids, list(encoding.tokens)

    def pieces(self, text: str) -> list[str]:
        """The tokens of `text` without [CLS]/[SEP], an unknown token as the text it stands for (upstream's
        English front end groups words by these pieces and reads an unknown character as itself)."""
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        return [text[start:end] if token_id == self.unk_id else token
                for token, token_id, (start, end) in zip(encoding.tokens, encoding.ids, encoding.offsets, strict=True)]


def batch_feeds(
    sequences: Sequence[np.ndarray | Sequence[int]],
    inputs: Sequence[str] = INPUT_NAMES[:2],
    *,
    pad_id: int = 0,
) -> dict[str, np.ndarray]:
    """The graph's feeds for a batch of id sequences: ``input_ids`` right-padded with `pad_id`,
    ``attention_mask`` 1 on real tokens, and (when `inputs` names it) ``token_type_ids`` all 0, each
    ``[B, N]`` int64 with N the longest sequence. Row ``b``'s first ``len(sequences[b])`` hidden rows are
    its features; the padded rows are to be ignored."""
    if not sequences:
        raise ValueError("batch_feeds needs at least one sequence")
    unknown = [name for name in inputs if name not in INPUT_NAMES]
    if unknown:
        raise ValueError(f"unknown BERT graph inputs {unknown}: expected some of {list(INPUT_NAMES)}")
    rows = [np.asarray(seq, dtype=np.int64).reshape(-1) for seq in sequences]
    width = max(row.size for row in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for b, row in enumerate(rows):
        ids[b, : row.size] = row
        mask[b, : row.size] = 1
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {name: values[name] for name in inputs}


def expand_by_word2ph(hidden: np.ndarray, word2ph: Sequence[int] | np.ndarray) -> np.ndarray:
    """Per-phone features ``[H, T]`` from per-token features ``hidden [N, H]``: row ``i`` repeated
    ``word2ph[i]`` times (0 drops it), then transposed; ``T = sum(word2ph)``. float32, C-contiguous."""
    hidden = np.asarray(hidden)
    counts = np.asarray(word2ph, dtype=np.int64).reshape(-1)
    if hidden.ndim != 2:
        raise VitsrtError(f"BERT features must be [tokens, hidden], got shape {list(hidden.shape)}")
    if counts.size != hidden.shape[0]:
        raise VitsrtError(f"word2ph has {counts.size} entries for {hidden.shape[0]} BERT tokens")
    if counts.size and counts.min() < 0:
        raise VitsrtError(f"word2ph has a negative entry ({int(counts.min())})")
    return np.ascontiguousarray(np.repeat(hidden.astype(np.float32, copy=False), counts, axis=0).T)

