"""Sentences to model inputs: sub-word windows, aligned labels, bucketed batches.

Each word is represented by its first sub-word; its other sub-words carry no
label. A sentence with more sub-words than the encoder takes is cut, at word
boundaries, into consecutive windows (rows): every word is predicted once, and
sentence heads pool over all of a sentence's windows, so no gold entity is
dropped at evaluation. A word that the tokenizer maps to no sub-word at all
(e.g. a lone zero-width space) has no vector and is predicted ``O``.

Batches are lists of sentence indices; ``collate`` pads them dynamically to
the longest row of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .heads import IGNORE


@dataclass
class Encoded:
    """One sentence ready for the model."""

    rows: list  # per window: list of sub-word ids, [CLS] and [SEP] included
    positions: list  # per window: position in the row of each predicted word's first sub-word
    words: list  # per window: which sentence words (indices) the row predicts
    n_words: int
    labels: dict  # task -> list of label ids per word (token) or one id (sentence)

    @property
    def length(self) -> int:
        return sum(len(r) for r in self.rows)


def _special_ids(tokenizer):
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return cls, sep


def encode(sentences, tokenizer, tasks: dict, max_length: int, with_labels: bool = True) -> list[Encoded]:
    """Tokenise sentences (all at once, fast tokenizer) and align task labels to words."""
    if not sentences:
        return []
    cls_id, sep_id = _special_ids(tokenizer)
    budget = max_length - 2
    # verbose=False: long sentences are cut into windows below, so the tokenizer's "longer than the maximum
    # sequence length" warning would be false
    enc = tokenizer(
        [list(s.tokens) for s in sentences], is_split_into_words=True, add_special_tokens=False, verbose=False
    )
    index = {name: {lab: j for j, lab in enumerate(task.labels)} for name, task in tasks.items()}
    out = []
    for i, s in enumerate(sentences):
        ids, word_ids = enc["input_ids"][i], enc.word_ids(i)
        pieces = [[] for _ in s.tokens]  # sub-word ids of each word
        for tok, w in zip(ids, word_ids):
            if w is not None:
                pieces[w].append(tok)
        rows, positions, words = [], [], []
        row, pos, wds = [], [], []
        for w, p in enumerate(pieces):
            if not p:
                continue
            p = p[:budget]  # a single word longer than a window keeps its first sub-words
            if len(row) + len(p) > budget:
                rows.append([cls_id] + row + [sep_id]), positions.append(pos), words.append(wds)
                row, pos, wds = [], [], []
            pos.append(len(row) + 1)
            wds.append(w)
            row.extend(p)
        if row or not rows:
            rows.append([cls_id] + row + [sep_id]), positions.append(pos), words.append(wds)
        labels = {}
        if with_labels:
            for name, task in tasks.items():
                derived = task.derive(s.tags)
                labels[name] = [index[name][x] for x in derived] if task.is_token else index[name][derived]
        out.append(Encoded(rows, positions, words, len(s.tokens), labels))
    return out


def bucket_batches(lengths, batch_size: int, rng: np.random.Generator | None, pool_batches: int = 50):
    """Batches of indices of similar length.

    With ``rng``: shuffle, sort by length within pools of ``pool_batches``
    batches, cut into batches, shuffle the batches. Without: sort all by length
    (evaluation order, longest first).
    """
    n = len(lengths)
    lengths = np.asarray(lengths)
    if rng is None:
        order = np.argsort(-lengths, kind="stable")
        return [order[i : i + batch_size].tolist() for i in range(0, n, batch_size)]
    order = rng.permutation(n)
    pool = batch_size * pool_batches
    batches = []
    for start in range(0, n, pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size].tolist() for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(items: list[Encoded], tasks: dict, pad_id: int, with_labels: bool = True) -> dict:
    """Pad a batch of sentences to its longest row; tensors on the CPU."""
    rows = [(k, r) for k, item in enumerate(items) for r in range(len(item.rows))]
    R = len(rows)
    T = max(len(items[k].rows[r]) for k, r in rows)
    W = max(max(len(items[k].positions[r]) for k, r in rows), 1)
    input_ids = torch.full((R, T), pad_id, dtype=torch.long)
    attention = torch.zeros((R, T), dtype=torch.long)
    word_index = torch.zeros((R, W), dtype=torch.long)
    word_mask = torch.zeros((R, W), dtype=torch.bool)
    row_sentence = torch.tensor([k for k, _ in rows], dtype=torch.long)
    first_row = torch.tensor(np.cumsum([0] + [len(it.rows) for it in items[:-1]]), dtype=torch.long)
    for j, (k, r) in enumerate(rows):
        ids, pos = items[k].rows[r], items[k].positions[r]
        input_ids[j, : len(ids)] = torch.tensor(ids)
        attention[j, : len(ids)] = 1
        word_index[j, : len(pos)] = torch.tensor(pos, dtype=torch.long)
        word_mask[j, : len(pos)] = True
    batch = {
        "input_ids": input_ids,  # (R, T)
        "attention_mask": attention,  # (R, T)
        "word_index": word_index,  # (R, W)
        "word_mask": word_mask,  # (R, W)
        "row_sentence": row_sentence,  # (R,)
        "first_row": first_row,  # (S,)
        "n_sentences": len(items),
        "rows": rows,
    }
    if with_labels:
        labels = {}
        for name, task in tasks.items():
            if task.is_token:
                lab = torch.full((R, W), IGNORE, dtype=torch.long)
                for j, (k, r) in enumerate(rows):
                    words = items[k].words[r]
                    lab[j, : len(words)] = torch.tensor([items[k].labels[name][w] for w in words], dtype=torch.long)
                labels[name] = lab  # (R, W)
            else:
                labels[name] = torch.tensor([it.labels[name] for it in items], dtype=torch.long)  # (S,)
        batch["labels"] = labels
    return batch


def to_device(batch: dict, device) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device, non_blocking=True)
        elif k == "labels":
            out[k] = {n: t.to(device, non_blocking=True) for n, t in v.items()}
        else:
            out[k] = v
    return out
