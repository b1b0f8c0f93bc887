"""The BERT stage of Bert-VITS2 voices: one exported BERT graph (``bert.onnx`` in a content-addressed directory of
the bundle, written by ``vitsrt export --bert``) run on a batch of sentences from any requests.

Sentences are padded to the longest one with an attention mask, so a sentence's features do not depend on its
batch partners. Each sentence's token features are repeated per id by its word2ph (host side) into the
``[bert_dim, T]`` array its encoder input takes. Voices that share a BERT model share one session
(:func:`shared_stage`, keyed by the graph's directory name, which is its hash).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vitsrt.serve.backends.ort_runner import OrtRunner
from vitsrt.serve.engine.shared import DirectoryCache
from vitsrt.text.bert import GRAPH_NAME, batch_feeds, expand_by_word2ph, read_bert_manifest
from vitsrt.text.sequence import BertTokens

__all__ = ["BertStage", "shared_stage"]


class BertStage:
    """One BERT graph on onnxruntime: token ids of several sentences -> each sentence's [dim, T] features."""

    def __init__(self, directory: Path, *, intra_op_threads: int | None = None):
        self.directory = directory
        self.manifest = read_bert_manifest(directory)
        self._runner = OrtRunner({"bert": directory / GRAPH_NAME}, intra_op_threads=intra_op_threads, quiet=True)

    def features(self, items: Sequence[BertTokens]) -> list[np.ndarray]:
        """Per item, float32 [dim, T] (T = the item's word2ph sum), from one padded batch."""
        feeds = batch_feeds([item.input_ids for item in items], self.manifest.inputs, pad_id=self.manifest.pad.id)
        hidden = self._runner.run("bert", feeds)[self.manifest.output]
        return [expand_by_word2ph(hidden[row, : len(item.input_ids)], item.word2ph) for row, item in enumerate(items)]


_SHARED: DirectoryCache[BertStage] = DirectoryCache(lambda directory, threads: BertStage(
    directory, intra_op_threads=threads))


def shared_stage(directory: Path, intra_op_threads: int | None = None) -> BertStage:
    """The process's one session for the BERT graph in `directory` (voices naming the same hash share it)."""
    return _SHARED.get(directory, intra_op_threads)
