"""What the Bert-VITS2 language modules (bv2_zh, bv2_ja, bv2_en) hand to the Bert-VITS2 front end."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["G2P"]


@dataclass(frozen=True)
class G2P:
    """One normalised sentence as upstream's g2p returns it.

    `phones` and `tones` (language-local, before the voice's tone offset) start and end with the boundary
    pad ``_``; `word2ph` gives the phones of each BERT token, the [CLS] and [SEP] entries (1 each) included,
    so ``sum(word2ph) == len(phones)``; `bert_text` is the string the language's BERT tokenizer reads.
    """

    phones: list[str]
    tones: list[int]
    word2ph: list[int]
    bert_text: str

    def __post_init__(self) -> None:
        if len(self.phones) != len(self.tones):
            raise ValueError(f"{len(self.phones)} phones but {len(self.tones)} tones")
        if sum(self.word2ph) != len(self.phones):
            raise ValueError(f"word2ph sums to {sum(self.word2ph)} for {len(self.phones)} phones")
