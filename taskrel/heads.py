"""Task heads, keyed by task level: ``HEADS = {"token": ..., "sentence": ...}``.

Contract (as transformers' ``BertForTokenClassification``):
``forward(hidden, mask, labels=None)`` returns ``{"logits": ...}`` and adds
``"loss"`` only when labels are given; ``decode(logits, mask)`` gives label ids.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .crf import CRF

IGNORE = -100


class TokenHead(nn.Module):
    """A linear layer over each word's vector (its first sub-word), optionally with a CRF."""

    def __init__(self, hidden: int, num_labels: int, crf: bool = False):
        super().__init__()
        self.classifier = nn.Linear(hidden, num_labels)
        self.crf = CRF(num_labels) if crf else None

    def forward(self, hidden, mask, labels=None, sentences: int | None = None):
        """hidden (R, W, H) word vectors; mask (R, W) bool; labels (R, W) with -100 off-word.

        The loss is a mean over the batch's labelled words (``word-mean``; with a CRF, a mean over rows of
        each row's sequence NLL), or, given ``sentences`` (the batch's sentence count), the sum over every
        word divided by the number of sentences (``sentence-sum``, the paper's Eq. 3).
        """
        logits = self.classifier(hidden)  # (R, W, L)
        out = {"logits": logits}
        if labels is not None:
            if self.crf is not None:
                loss = self.crf.neg_log_likelihood(logits.float(), labels, mask)  # mean over rows
                out["loss"] = loss if sentences is None else loss * logits.shape[0] / sentences
            elif sentences is None:
                out["loss"] = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)
            else:
                total = F.cross_entropy(
                    logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE, reduction="sum"
                )
                out["loss"] = total / sentences
        return out

    def decode(self, logits, mask) -> list[list[int]]:
        if self.crf is not None:
            return self.crf.decode(logits.float(), mask)
        ids = logits.argmax(-1).tolist()
        return [row[: int(n)] for row, n in zip(ids, mask.sum(1).tolist())]


class SentenceHead(nn.Module):
    """A linear layer over a pooled sentence vector (pooling is done by the model)."""

    def __init__(self, hidden: int, num_labels: int, crf: bool = False):
        super().__init__()
        if crf:
            raise ValueError("a CRF applies to token tasks only")
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, hidden, mask=None, labels=None):
        """hidden (S, H) pooled vectors; labels (S,)."""
        logits = self.classifier(hidden)  # (S, L)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits.float(), labels)
        return out

    def decode(self, logits, mask=None) -> list[int]:
        return logits.argmax(-1).tolist()


HEADS = {"token": TokenHead, "sentence": SentenceHead}


def pool(hidden, attention_mask, row_sentence, first_row, n_sentences: int, mode: str):
    """One vector per sentence from the token states of all its windows.

    hidden (R, T, H); attention_mask (R, T); row_sentence (R,) the sentence of
    each row; first_row (S,) each sentence's first row. ``max`` and ``mean``
    see real tokens only, across every window of a sentence; ``cls`` takes the
    first window's first token.
    """
    if mode == "cls":
        return hidden[first_row, 0]  # (S, H)
    mask = attention_mask.unsqueeze(-1).to(torch.bool)  # (R, T, 1)
    H = hidden.shape[-1]
    index = row_sentence.unsqueeze(1).expand(-1, H)  # (R, H)
    if mode == "max":
        row = hidden.masked_fill(~mask, torch.finfo(hidden.dtype).min).amax(1)  # (R, H)
        out = hidden.new_zeros(n_sentences, H)
        return out.scatter_reduce(0, index, row, reduce="amax", include_self=False)  # (S, H)
    if mode == "mean":
        row_sum = (hidden * mask).sum(1)  # (R, H)
        count = mask.sum(1).to(hidden.dtype)  # (R, 1)
        total = hidden.new_zeros(n_sentences, H).index_add(0, row_sentence, row_sum)
        n = hidden.new_zeros(n_sentences, 1).index_add(0, row_sentence, count)
        return total / n.clamp(min=1)
    raise ValueError(f"unknown pooling {mode!r}")
