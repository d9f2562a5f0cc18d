"""Use a trained tagger: CoNLL files get a predicted-tag column, raw text gets JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

from .corpus import Sentence, entity_spans, is_docstart, read_conll, read_lines, split_words
from .data import encode
from .evaluate import predict
from .machine import resolve_device
from .model import load

CONLL_SUFFIXES = (".tsv", ".conll", ".iob", ".bio")


def tag_task(tasks: dict) -> str:
    """The token task whose tags a model writes out: ``ner`` if present, else its first token task."""
    token_tasks = [n for n, t in tasks.items() if t.is_token]
    if not token_tasks:
        raise ValueError("this model has no token-level task to tag with")
    return "ner" if "ner" in token_tasks else token_tasks[0]


class Tagger:
    """A loaded model folder: ``Tagger(path).tag(sentences)`` gives every task's predictions."""

    def __init__(self, model_dir, device: str = "auto", batch_size: int = 64, precision: str = "auto"):
        self.device = resolve_device(device)
        self.precision = precision
        self.model, self.tokenizer, self.meta = load(model_dir, self.device)
        self.batch_size = batch_size

    @property
    def tasks(self):
        return self.model.tasks

    @property
    def tag_task(self) -> str:
        return tag_task(self.tasks)

    def tag(self, sentences, progress: str | None = None) -> dict:
        enc = encode(sentences, self.tokenizer, self.tasks, self.meta["max_length"], with_labels=False)
        pad_id = self.tokenizer.pad_token_id or 0
        return predict(self.model, enc, pad_id, self.batch_size, self.device, progress, precision=self.precision)

    def tag_text(self, lines, progress: str | None = None) -> list[dict]:
        """One result per line of raw text: tokens, tags, entities with character offsets."""
        words = [split_words(line) for line in lines]
        todo = [i for i, w in enumerate(words) if w]
        preds = self.tag([Sentence(tuple(w for w, _, _ in words[i])) for i in todo], progress)
        results = [{"text": line, "tokens": [], "entities": []} for line in lines]
        for k, i in enumerate(todo):
            res, offsets = results[i], words[i]
            res["tokens"] = [w for w, _, _ in offsets]
            for name in self.tasks:
                res[name] = preds[name][k]
            tags = preds[self.tag_task][k]
            for start, end, kind in entity_spans(tags):
                a, b = offsets[start][1], offsets[end - 1][2]
                res["entities"].append({"text": lines[i][a:b], "type": kind, "start": a, "end": b})
        return results


def predict_file(
    model_dir,
    input_path,
    output_path,
    fmt: str = "auto",
    device: str = "auto",
    batch_size: int = 64,
    progress: bool = True,
    precision: str = "auto",
) -> int:
    """Tag a file; returns the number of sentences. ``fmt``: auto, conll or text."""
    input_path, output_path = Path(input_path), Path(output_path)
    if fmt == "auto":
        fmt = "conll" if input_path.suffix.lower() in CONLL_SUFFIXES else "text"
    tagger = Tagger(model_dir, device, batch_size, precision)
    bar = "predict" if progress else None
    if fmt == "text":
        lines = read_lines(input_path)
        results = tagger.tag_text(lines, bar)
        output_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results), encoding="utf-8")
        return sum(1 for r in results if r["tokens"])
    if fmt != "conll":
        raise ValueError(f"format must be auto, conll or text, got {fmt!r}")
    sentences = read_conll(input_path, labelled=False)
    tags = iter(t for sent in tagger.tag(sentences, bar)[tagger.tag_task] for t in sent)
    out = []
    for line in read_lines(input_path):
        if not line.strip() or is_docstart(line):
            out.append(line)
        else:
            sep = "\t" if "\t" in line else " "
            out.append(line + sep + next(tags))
    output_path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return len(sentences)
