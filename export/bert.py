"""Export a Hugging Face BERT (the Bert-VITS2 text feature model) to a shared, content-addressed ONNX graph.

Bert-VITS2 2.3 feeds its encoder ``hidden_states[-3]`` of a language's BERT: chinese-roberta-wwm-ext-large
(``bert``), deberta-v2-large-japanese-char-wwm and deberta-v3-large (``deberta-v2``). :func:`export_bert`
reads such a model from a LOCAL directory (``local_files_only``, nothing is downloaded) and writes
``out_root/<key[:16]>/`` with ``bert.onnx``, ``tokenizer.json`` and ``bert.json``
(:class:`vitsrt.text.bert.BertManifest`; the serving side is :mod:`vitsrt.text.bert`).

Design choices, and why:

* **Only the layers that matter.** ``hidden_states[-3]`` of an L-layer encoder is the output of layer
  ``L - 2``: the model is loaded with ``num_hidden_layers = L - 2`` (the checkpoint's later layers and the
  MLM head are not even read), so the graph is the embeddings plus L - 2 layers and its output
  (``last_hidden_state``) IS the full model's ``hidden_states[-3]``. Weights missing for a kept layer are an
  error (transformers would initialise them at random and warn); missing later layers are fine.
* **float32, eager attention, TorchScript exporter** (as :mod:`vitsrt.export.onnx_export`), traced at a
  padded batch of two distinct lengths with dynamic batch and token axes. ``--fp16`` stores the large
  weights as float16 (:mod:`vitsrt.export.weight_storage`); the arithmetic stays float32.
* **The tokenizer becomes a ``tokenizers`` JSON**, so serving needs neither transformers nor sentencepiece:
  a fast tokenizer's backend as transformers builds it; a DeBERTa-v2/v3 ``spm.model`` rebuilt from the
  SentencePiece model itself (BPE or Unigram; transformers 5 turns a BPE ``spm.model`` into a Unigram
  model, which tokenizes differently); the Japanese ``BertJapaneseTokenizer`` with the basic word
  tokenizer and character subwords (no fast version exists) rebuilt as an equivalent pipeline. Each
  rebuilt tokenizer is checked against its source (SentencePiece, or the transformers tokenizer) on probe
  text at export time. BPE and character tokenizers reproduce their source exactly; a Unigram model can
  split differently at near-ties, since SentencePiece adds piece scores in float32 and tokenizers in
  float64 (then ours is the segmentation with the higher exact score; tests/test_bert_stage.py).
* **Content-addressed.** The key is the SHA-256 of the source files that define the result (config,
  weights, tokenizer files) and the export options, so voices that use the same BERT share one directory
  and exporting the same model again reuses it (after checking the stored files' hashes). The directory is
  built under a temporary name and renamed into place.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from vitsrt.errors import VitsrtError, clip
from vitsrt.export.hf_export import publish, quiet_transformers, read_json, source_key, unaltered, weight_files
from vitsrt.export.hf_export import where as _where
from vitsrt.export.onnx_checks import DEFAULT_IR_VERSION, finalize_onnx
from vitsrt.export.onnx_export import DEFAULT_OPSET, ExportError, check_graph, check_opset
from vitsrt.export.weight_storage import store_weights_fp16
from vitsrt.text.bert import (
    GRAPH_NAME,
    MANIFEST_NAME,
    OUTPUT_NAME,
    TOKENIZER_NAME,
    BertManifest,
    SpecialToken,
    batch_feeds,
    read_bert_manifest,
)
from vitsrt.voice import sha256_file

__all__ = ["EXPORT_VERSION", "KEY_LENGTH", "SUPPORTED_MODEL_TYPES", "BertGraph", "build_tokenizer", "export_bert"]

log = logging.getLogger(__name__)

EXPORT_VERSION = 1  # part of the key: a changed exporter never reuses an older export
KEY_LENGTH = 16  # hex digits of the key that name the directory
SUPPORTED_MODEL_TYPES = ("bert", "roberta", "deberta-v2")
_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "spm.model", "sentencepiece.bpe.model",
)
_SPM_FILES = ("spm.model", "sentencepiece.bpe.model")
_TRACE_LENGTHS = (11, 6)
_SELF_CHECK_TOLERANCE = 1e-3  # ORT vs torch on the trace batch (float32 graphs agree to ~1e-5)
# A placeholder that no vocabulary holds (a Unicode noncharacter): stands for a space that NFKC creates
# inside a word in BertJapaneseTokenizer's pipeline (see _nfkc_space_guards).
_NOT_A_SPACE = "\ufdd0"
_PROBES = (
    "Hello, world! This is a test of 42 tokens: café, naïve, résumé... OK?",
    "  Leading and   repeated   spaces\tand a tab\nand a newline  ",
    "今天是二零二三年十二月十九日,天气晴朗.",
    "こんにちは、世界！ハンカクｶﾀｶﾅと全角ＡＢＣ、①㍿。",
    "Ünïcödé ﬁ ligatures, — dashes – and “quotes”; mp3 10am U.S.A. 3.14%",
    "",
)


@dataclass(frozen=True)
class BertGraph:
    """One exported BERT: its directory, manifest, and whether an earlier export was reused."""

    directory: Path
    manifest: BertManifest
    reused: bool
    seconds: float

    @property
    def graph(self) -> Path:
        return self.directory / GRAPH_NAME

    @property
    def tokenizer(self) -> Path:
        return self.directory / TOKENIZER_NAME

    @property
    def key(self) -> str:
        return self.manifest.key


# ----- the source directory ----------------------------------------------------------------------------



def _source_config(model_dir: Path) -> dict[str, Any]:
    """config.json of a supported BERT model, or ExportError saying why the directory is not one."""
    shown = _where(model_dir)
    if not model_dir.is_dir():
        raise ExportError(f"{shown}: not a directory (expected a local Hugging Face BERT model directory)")
    if not (model_dir / "config.json").is_file():
        raise ExportError(f"{shown}: no config.json, not a Hugging Face model directory")
    config = read_json(model_dir / "config.json", "config.json")
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ExportError(
            f"{shown}: model_type {clip(model_type, 40)} is not a supported BERT "
            f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    layers = config.get("num_hidden_layers")
    if not isinstance(layers, int) or layers < 2:
        raise ExportError(f"{shown}: num_hidden_layers {layers!r}: hidden_states[-3] needs at least 2 layers")
    for name in ("hidden_size", "vocab_size"):
        if not isinstance(config.get(name), int) or config[name] < 1:
            raise ExportError(f"{shown}: config.json has no usable {name} ({clip(config.get(name), 40)})")
    return config


def _source_key(model_dir: Path, weights: Sequence[Path], *, fp16: bool, opset: int) -> str:
    """The export's content key: its options and every source file that defines the result."""
    header = {"format": "vitsrt-bert", "exporter": EXPORT_VERSION, "fp16": fp16, "opset": opset}
    return source_key(model_dir, header, ["config.json", *_TOKENIZER_FILES], weights)


# ----- tokenizer ---------------------------------------------------------------------------------------


def _token_text(value: object, default: str) -> str:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else default


def _special_texts(tok_config: dict[str, Any]) -> dict[str, str]:
    defaults = {"cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]", "unk": "[UNK]"}
    return {role: _token_text(tok_config.get(f"{role}_token"), text) for role, text in defaults.items()}


def _declared_added_tokens(model_dir: Path, tok_config: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """id -> AddedToken fields, from tokenizer_config.json's added_tokens_decoder and added_tokens.json."""
    declared: dict[int, dict[str, Any]] = {}
    if (model_dir / "added_tokens.json").is_file():
        for content, index in read_json(model_dir / "added_tokens.json", "added_tokens.json").items():
            declared[int(index)] = {"content": content, "special": True}
    for index, fields in (tok_config.get("added_tokens_decoder") or {}).items():
        if isinstance(fields, dict) and isinstance(fields.get("content"), str):
            declared[int(index)] = fields
    return declared


def _add_tokens(tokenizer: Any, declared: dict[int, dict[str, Any]], model_dir: Path) -> None:
    """Add the declared tokens with their ids (in the model vocabulary already, or appended in order)."""
    from tokenizers import AddedToken

    for index in sorted(declared):
        fields = declared[index]
        token = AddedToken(
            fields["content"],
            single_word=bool(fields.get("single_word", False)),
            lstrip=bool(fields.get("lstrip", False)),
            rstrip=bool(fields.get("rstrip", False)),
            normalized=bool(fields.get("normalized", False)),
            special=bool(fields.get("special", True)),
        )
        if token.special:
            tokenizer.add_special_tokens([token])
        else:
            tokenizer.add_tokens([token])
        if tokenizer.token_to_id(fields["content"]) != index:
            raise ExportError(
                f"{_where(model_dir)}: added token {clip(fields['content'], 40)} should have id {index} "
                f"but gets {tokenizer.token_to_id(fields['content'])} (ids not consecutive after the vocabulary)"
            )


def _wrap_cls_sep(tokenizer: Any, specials: dict[str, str], model_dir: Path) -> None:
    from tokenizers import processors

    ids = {role: tokenizer.token_to_id(text) for role, text in specials.items()}
    missing = [specials[role] for role in ("cls", "sep") if ids[role] is None]
    if missing:
        raise ExportError(f"{_where(model_dir)}: the tokenizer has no {' or '.join(missing)} token")
    cls, sep = specials["cls"], specials["sep"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, ids["cls"]), (sep, ids["sep"])],
    )


@lru_cache(maxsize=1)
def _nfkc_space_chars() -> tuple[tuple[str, str], ...]:
    """(char, its NFKC form) for the characters that are not whitespace but whose NFKC form holds some
    (U+309B ゛ -> ' ゙', U+00A8 ¨ -> ' ̈', ...): 52 of them in Unicode 14."""
    found = []
    for code in range(0x110000):
        char = chr(code)
        if char.isspace() or 0xD800 <= code <= 0xDFFF:
            continue
        folded = unicodedata.normalize("NFKC", char)
        if folded != char and any(c.isspace() for c in folded):
            found.append((char, folded))
    return tuple(found)


def _nfkc_space_guards(vocab: dict[str, int]) -> list[Any]:
    """BertJapaneseTokenizer splits words at whitespace BEFORE its per-word NFKC, so a space that NFKC
    creates is a character of the word (one [UNK] token). A tokenizers pipeline normalises before it
    splits; these rules write such a character's NFKC form with the space replaced by a placeholder that
    is no vocabulary entry, which gives the same [UNK] in the same place."""
    from tokenizers import normalizers

    if " " in vocab or _NOT_A_SPACE in vocab:
        return []
    return [
        normalizers.Replace(char, "".join(_NOT_A_SPACE if c.isspace() else c for c in folded))
        for char, folded in _nfkc_space_chars()
    ]


def _read_vocab_txt(path: Path) -> dict[str, int]:
    """vocab.txt as transformers' load_vocab reads it: one token a line, a repeated token keeps its last id."""
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            vocab[line.rstrip("\n")] = index
    return vocab


def _character_tokenizer(model_dir: Path, tok_config: dict[str, Any]) -> Any:
    """BertJapaneseTokenizer(word_tokenizer_type="basic", subword_tokenizer_type="character") as a
    tokenizers pipeline: BERT text cleaning (lower-casing and accent stripping only with do_lower_case),
    NFKC, whitespace split, one token per character, [UNK] for characters outside vocab.txt."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    wanted = {"word_tokenizer_type": "basic", "subword_tokenizer_type": "character",
              "do_word_tokenize": True, "do_subword_tokenize": True}
    for name, value in wanted.items():
        if tok_config.get(name, value) != value:
            raise ExportError(
                f"{_where(model_dir)}: BertJapaneseTokenizer with {name}={tok_config.get(name)!r} is "
                "not supported (only the basic word tokenizer with character subwords)"
            )
    if not (model_dir / "vocab.txt").is_file():
        raise ExportError(f"{_where(model_dir)}: BertJapaneseTokenizer without vocab.txt")
    vocab = _read_vocab_txt(model_dir / "vocab.txt")
    specials = _special_texts(tok_config)
    if specials["unk"] not in vocab:
        raise ExportError(f"{_where(model_dir)}: vocab.txt has no {specials['unk']} token")
    lower = bool(tok_config.get("do_lower_case", False))
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=specials["unk"]))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=None, lowercase=lower),
        *_nfkc_space_guards(vocab),
        normalizers.NFKC(),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex("."), behavior="isolated"),
    ])
    _add_tokens(tokenizer, _declared_added_tokens(model_dir, tok_config), model_dir)
    _wrap_cls_sep(tokenizer, specials, model_dir)
    return tokenizer


def _spm_proto(path: Path) -> Any:
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf's DecodeError
        raise ExportError(f"{_where(path)}: not a SentencePiece model ({type(exc).__name__})") from None
    if not proto.pieces:
        raise ExportError(f"{_where(path)}: a SentencePiece model without pieces")
    return proto


_SPM_NORMAL, _SPM_UNKNOWN, _SPM_CONTROL, _SPM_USER, _SPM_UNUSED, _SPM_BYTE = 1, 2, 3, 4, 5, 6
_SPM_UNIGRAM, _SPM_BPE = 1, 2


def _bpe_merges(pieces: Sequence[Any]) -> list[tuple[str, str]]:
    """The merges that reproduce SentencePiece BPE: a piece is made from any two pieces that spell it; a
    merge's priority is its result's score (higher first; SentencePiece BPE scores are distinct)."""
    ids = {p.piece: i for i, p in enumerate(pieces) if p.type in (_SPM_NORMAL, _SPM_USER)}
    found = []
    for piece, index in ids.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in ids and right in ids:
                found.append((-pieces[index].score, index, ids[left], ids[right], left, right))
    found.sort()
    return [(left, right) for *_, left, right in found]


def _spm_normalizer(proto: Any, lower: bool) -> Any:
    """SentencePiece's normaliser: the compiled character map (e.g. nmt_nfkc), then, with
    remove_extra_whitespaces, runs of spaces collapsed and the ends stripped."""
    from tokenizers import Regex, normalizers

    steps = [normalizers.Lowercase()] if lower else []
    spec = proto.normalizer_spec
    if spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex(" {2,}"), " "), normalizers.Replace(Regex(r"\A | \z"), "")]
    return normalizers.Sequence(steps)


def _sentencepiece_tokenizer(model_dir: Path, spm_path: Path, tok_config: dict[str, Any]) -> Any:
    """A SentencePiece model (DebertaV2Tokenizer's spm.model) as a tokenizers pipeline."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE, Unigram

    proto = _spm_proto(spm_path)
    trainer, spec = proto.trainer_spec, proto.normalizer_spec
    shown = _where(spm_path)
    if tok_config.get("split_by_punct"):
        raise ExportError(f"{shown}: split_by_punct=true is not supported")
    if trainer.treat_whitespace_as_suffix or not spec.escape_whitespaces:
        raise ExportError(f"{shown}: a SentencePiece model with suffix or unescaped whitespace is not supported")
    pieces = list(proto.pieces)
    unk_id = next((i for i, p in enumerate(pieces) if p.type == _SPM_UNKNOWN), None)
    if unk_id is None:
        raise ExportError(f"{shown}: a SentencePiece model without an unknown piece")
    if trainer.model_type == _SPM_UNIGRAM:
        model = Unigram([(p.piece, p.score) for p in pieces], unk_id, trainer.byte_fallback)
    elif trainer.model_type == _SPM_BPE:
        vocab = {p.piece: i for i, p in enumerate(pieces)}
        model = BPE(vocab, _bpe_merges(pieces), unk_token=pieces[unk_id].piece, fuse_unk=True,
                    byte_fallback=trainer.byte_fallback)
    else:
        raise ExportError(f"{shown}: SentencePiece model type {trainer.model_type} is not supported (BPE, Unigram)")
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = _spm_normalizer(proto, bool(tok_config.get("do_lower_case", False)))
    prepend = "always" if spec.add_dummy_prefix else "never"
    split = bool(trainer.split_by_whitespace)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend, split=split)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=prepend, split=split)
    declared = _declared_added_tokens(model_dir, tok_config)
    declared.update({i: {"content": p.piece, "special": True} for i, p in enumerate(pieces)
                     if p.type == _SPM_CONTROL and i not in declared})
    _add_tokens(tokenizer, declared, model_dir)
    _wrap_cls_sep(tokenizer, _special_texts(tok_config), model_dir)
    return tokenizer, proto


def _auto_tokenizer(model_dir: Path) -> Any:
    """transformers' own tokenizer for the directory (what upstream Bert-VITS2 loads)."""
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(os.fspath(model_dir), local_files_only=True, use_fast=True)
    except Exception as exc:  # transformers raises many types for unusable tokenizer files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(f"{_where(model_dir)}: the tokenizer cannot be loaded ({clip(reason, 160)})") from None


def _fast_tokenizer(model_dir: Path) -> Any:
    """The backend of the fast tokenizer transformers builds for the directory (BertTokenizerFast, ...)."""
    from tokenizers import Tokenizer

    source = _auto_tokenizer(model_dir)
    backend = getattr(source, "backend_tokenizer", None)
    if backend is None:
        raise ExportError(
            f"{_where(model_dir)}: {type(source).__name__} has no fast (tokenizers) version and is not "
            "one vitsrt rebuilds (BertJapaneseTokenizer basic/character, DebertaV2Tokenizer spm.model)"
        )
    tokenizer = Tokenizer.from_str(backend.to_str())
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _check_tokenizer(
    tokenizer: Any,
    reference: Callable[[str], list[int]],
    probes: Sequence[str],
    where: str,
    tolerated: Callable[[list[int], list[int]], bool] | None = None,
) -> None:
    """The rebuilt tokenizer must give the source's ids on every probe text (or a `tolerated` difference)."""
    for text in probes:
        got, want = tokenizer.encode(text).ids, list(reference(text))
        if got != want and not (tolerated and tolerated(got, want)):
            raise ExportError(f"{where}: the rebuilt tokenizer disagrees with its source on {clip(text, 60)} "
                              f"({len(got)} vs {len(want)} ids)")


def _unigram_near_tie(processor: Any) -> Callable[[list[int], list[int]], bool]:
    """Two Unigram segmentations of the same text whose score totals differ by less than float32 resolution
    (SentencePiece's arithmetic), ours the higher: a tie SentencePiece resolved by rounding."""

    def near_tie(got: list[int], want: list[int]) -> bool:
        if processor.decode(got[1:-1]) != processor.decode(want[1:-1]):
            return False
        ours = sum(processor.get_score(i) for i in got[1:-1])
        theirs = sum(processor.get_score(i) for i in want[1:-1])
        return theirs <= ours <= theirs + len(want) * float(np.spacing(np.float32(abs(theirs))))

    return near_tie


def _vocab_probe(pieces: Sequence[str], count: int = 400) -> str:
    """A probe text made of vocabulary entries spread over the whole vocabulary."""
    step = max(1, len(pieces) // count)
    return " ".join(p.replace("▁", " ").strip() for p in pieces[::step] if not p.startswith("["))


def build_tokenizer(model_dir: str | os.PathLike[str]) -> tuple[Any, str]:
    """``(tokenizers.Tokenizer, kind)`` reproducing the directory's tokenizer, [CLS]/[SEP] included; kind is
    "character" (BertJapaneseTokenizer), "sentencepiece" (DebertaV2Tokenizer's spm.model) or "fast"."""
    model_dir = Path(model_dir)
    tok_path = model_dir / "tokenizer_config.json"
    tok_config = read_json(tok_path, "tokenizer_config.json") if tok_path.is_file() else {}
    tok_class = str(tok_config.get("tokenizer_class") or "")
    where = _where(model_dir)
    if tok_class == "BertJapaneseTokenizer":
        tokenizer = _character_tokenizer(model_dir, tok_config)
        source = _auto_tokenizer(model_dir)
        probe = "".join(sorted(t for t in _read_vocab_txt(model_dir / "vocab.txt") if len(t) == 1))
        _check_tokenizer(tokenizer, lambda t: source(t)["input_ids"], [*_PROBES, probe], where)
        return tokenizer, "character"
    spm_path = next((model_dir / n for n in _SPM_FILES if (model_dir / n).is_file()), None)
    # Upstream Bert-VITS2 reads DeBERTa-v3 with DebertaV2Tokenizer, whose tokenizer_config may not name it.
    deberta = tok_class.startswith("DebertaV2Tokenizer") or (not tok_class and _model_type(model_dir) == "deberta-v2")
    if deberta and spm_path is not None:
        import sentencepiece

        tokenizer, proto = _sentencepiece_tokenizer(model_dir, spm_path, tok_config)
        processor = sentencepiece.SentencePieceProcessor(model_proto=proto.SerializeToString())
        cls_id, sep_id = _cls_sep_ids(tokenizer, where)
        lower = bool(tok_config.get("do_lower_case", False))

        def wrap(text: str) -> list[int]:
            return [cls_id, *processor.encode(text.lower() if lower else text), sep_id]

        probe = _vocab_probe([p.piece for p in proto.pieces])
        unigram = proto.trainer_spec.model_type == _SPM_UNIGRAM
        _check_tokenizer(tokenizer, wrap, [*_PROBES, probe], where, _unigram_near_tie(processor) if unigram else None)
        return tokenizer, "sentencepiece"
    tokenizer = _fast_tokenizer(model_dir)
    _cls_sep_ids(tokenizer, where)
    return tokenizer, "fast"


def _model_type(model_dir: Path) -> str | None:
    path = model_dir / "config.json"
    return read_json(path, "config.json").get("model_type") if path.is_file() else None


def _cls_sep_ids(tokenizer: Any, where: str) -> tuple[int, int]:
    """The ids the tokenizer wraps every text in; ExportError unless it adds exactly two (BERT's [CLS], [SEP])."""
    ids = tokenizer.encode("").ids
    if len(ids) != 2:
        raise ExportError(f"{where}: the tokenizer does not wrap text in [CLS] ... [SEP] (empty text gives {ids})")
    return ids[0], ids[1]


# ----- model -------------------------------------------------------------------------------------------


def _load_truncated(model_dir: Path, keep: int) -> nn.Module:
    """The base model with only its first `keep` encoder layers, float32, eval mode; ExportError when a
    weight those layers (or the embeddings) need is absent from the checkpoint."""
    import transformers
    from transformers import AutoConfig, AutoModel

    shown = _where(model_dir)
    dtype_arg = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    try:
        with quiet_transformers():
            hf_config = AutoConfig.from_pretrained(os.fspath(model_dir), local_files_only=True)
            hf_config.num_hidden_layers = keep
            model, info = AutoModel.from_pretrained(
                os.fspath(model_dir), config=hf_config, local_files_only=True, output_loading_info=True,
                attn_implementation="eager", **{dtype_arg: torch.float32},
            )
    except Exception as exc:  # transformers, safetensors and torch each raise their own types for a bad checkpoint
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(f"{shown}: the model cannot be loaded ({clip(reason, 160)})") from None
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith("pooler."))
    if missing or info.get("mismatched_keys"):
        names = missing or [str(k) for k in info["mismatched_keys"]]
        raise ExportError(f"{shown}: the checkpoint lacks or mis-shapes {len(names)} weights the graph needs "
                          f"(e.g. {clip(names[0], 80)})")
    return model.float().eval()


class _HiddenStates(nn.Module):
    """Graph-facing wrapper: (input_ids, attention_mask[, token_type_ids]) -> the last kept layer's output."""

    def __init__(self, model: nn.Module, token_types: bool):
        super().__init__()
        self.model = model
        self.token_types = token_types

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        extra = {"token_type_ids": rest[0]} if self.token_types else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state


def _max_tokens(config: dict[str, Any]) -> int:
    positions = int(config.get("max_position_embeddings") or 512)
    if config["model_type"] == "roberta":  # positions start after the padding index
        pad = config.get("pad_token_id")
        return positions - (1 if pad is None else int(pad)) - 1
    return positions


def _trace_feeds(vocab_size: int, inputs: Sequence[str], pad_id: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    low = min(5, vocab_size - 1)
    rows = [rng.integers(low, vocab_size, size=n) for n in _TRACE_LENGTHS]
    return batch_feeds(rows, inputs, pad_id=pad_id)


def _export_graph(module: nn.Module, feeds: dict[str, np.ndarray], path: Path, opset: int) -> None:
    names = list(feeds)
    axes = {name: {0: "B", 1: "N"} for name in [*names, OUTPUT_NAME]}
    args = tuple(torch.from_numpy(feeds[name]) for name in names)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript exporter deprecation and tracer warnings
        torch.onnx.export(module, args, os.fspath(path), input_names=names, output_names=[OUTPUT_NAME],
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)
    finalize_onnx(path, ir_version=DEFAULT_IR_VERSION)
    os.chmod(path, 0o644)
    check_graph(path, "bert")
    with torch.no_grad():
        want = module(*args).numpy()
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], feeds)[0]
    worst = float(np.abs(got - want).max())
    if worst > _SELF_CHECK_TOLERANCE:
        raise ExportError(f"bert graph differs from the torch model by {worst:.3g} on the trace batch")


# ----- directory ---------------------------------------------------------------------------------------


def _reusable(directory: Path, key: str) -> BertManifest | None:
    """The manifest of a complete earlier export with this key, or None (absent, partial or altered)."""
    if not (directory / MANIFEST_NAME).is_file():
        return None
    try:
        manifest = read_bert_manifest(directory)
    except VitsrtError as exc:
        log.warning("re-exporting over an unreadable BERT export: %s", exc)
        return None
    return manifest if unaltered(directory, key, manifest.key, manifest.files, "BERT") else None


def _special(tokenizer: Any, text: str) -> SpecialToken:
    index = tokenizer.token_to_id(text)
    if index is None:
        raise ExportError(f"the tokenizer has no {clip(text, 40)} token")
    return SpecialToken(token=text, id=index)


def _write_export(model_dir: Path, config: dict[str, Any], staging: Path, *, key: str, fp16: bool,
                  opset: int) -> BertManifest:
    tokenizer, kind = build_tokenizer(model_dir)
    tokenizer.save(os.fspath(staging / TOKENIZER_NAME))
    tok_path = model_dir / "tokenizer_config.json"
    specials = _special_texts(read_json(tok_path, "tokenizer_config.json") if tok_path.is_file() else {})
    tok_vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    model_vocab = int(config["vocab_size"])
    if max(tokenizer.get_vocab(with_added_tokens=True).values()) >= model_vocab:
        raise ExportError(f"{_where(model_dir)}: the tokenizer's ids reach past the model's "
                          f"{model_vocab}-row embedding")
    layers = int(config["num_hidden_layers"])
    token_types = int(config.get("type_vocab_size") or 0) > 0
    inputs = ["input_ids", "attention_mask", *(["token_type_ids"] if token_types else [])]
    pad = _special(tokenizer, specials["pad"])
    module = _HiddenStates(_load_truncated(model_dir, layers - 2), token_types).eval()
    _export_graph(module, _trace_feeds(model_vocab, inputs, pad.id), staging / GRAPH_NAME, opset)
    if fp16:
        stored = store_weights_fp16(staging / GRAPH_NAME)
        log.info("bert weights stored as float16: %d tensors, %.1f -> %.1f MB", stored.converted,
                 stored.bytes_before / 1e6, stored.bytes_after / 1e6)
    manifest = BertManifest(
        key=key, model_type=config["model_type"], architecture=str((config.get("architectures") or ["?"])[0]),
        source_name=model_dir.resolve().name, hidden_size=int(config["hidden_size"]), num_layers=layers,
        layer=layers - 2, max_tokens=_max_tokens(config), vocab_size=tok_vocab, inputs=inputs, opset=opset,
        fp16_weights=fp16, tokenizer_kind=kind, cls=_special(tokenizer, specials["cls"]),
        sep=_special(tokenizer, specials["sep"]), pad=pad, unk=_special(tokenizer, specials["unk"]),
        files={name: sha256_file(staging / name) for name in (GRAPH_NAME, TOKENIZER_NAME)},
    )
    (staging / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return manifest


def export_bert(
    model_dir: str | os.PathLike[str],
    out_root: str | os.PathLike[str],
    *,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
) -> BertGraph:
    """Export the BERT in `model_dir` (a local Hugging Face directory) to ``out_root/<key[:16]>/``, or reuse
    an identical earlier export there. ExportError (a VitsrtError) with one line when the directory is not a
    usable BERT (no config, another model type, no or incomplete weights, an unsupported tokenizer)."""
    started = time.perf_counter()
    model_dir, out_root = Path(model_dir), Path(out_root)
    config = _source_config(model_dir)
    key = _source_key(model_dir, weight_files(model_dir), fp16=fp16, opset=check_opset(opset))
    final = out_root / key[:KEY_LENGTH]
    manifest = _reusable(final, key)
    if manifest is not None:
        log.info("bert %s: reusing %s", model_dir.name, final)
        return BertGraph(final, manifest, reused=True, seconds=time.perf_counter() - started)
    out_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key[:KEY_LENGTH]}-", dir=out_root))
    try:
        manifest = _write_export(model_dir, config, staging, key=key, fp16=fp16, opset=opset)
        os.chmod(staging, 0o755)
        if not publish(staging, final, lambda d: _reusable(d, key)):
            log.info("bert %s: a concurrent export finished first; using %s", model_dir.name, final)
            manifest = read_bert_manifest(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - started
    log.info("bert %s -> %s (%s, layer %d of %d, %.1f s)", model_dir.name, final, manifest.model_type,
             manifest.layer, manifest.num_layers, seconds)
    return BertGraph(final, manifest, reused=False, seconds=seconds)
