"""Prediction over encoded sentences, and the scores of every task.

Token tasks (``ner``, ``mtcls``): entity-level strict precision, recall and F1
(seqeval ``mode="strict"``, IOB2), micro-averaged, and per entity type.
Sentence tasks (``bcls``, ``mcls``): accuracy and macro-F1.
"""

from __future__ import annotations

import warnings

import torch
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2
from sklearn.metrics import accuracy_score, f1_score
from tqdm.auto import tqdm

from .data import bucket_batches, collate, to_device
from .precision import autocast


@torch.no_grad()
def predict(
    model,
    encoded,
    pad_id: int,
    batch_size: int = 64,
    device=None,
    progress: str | None = None,
    tasks=None,
    precision: str = "auto",
) -> dict:
    """Label strings per sentence: ``{task: [labels per word | label]}``, in input order.

    ``tasks`` (names) limits the heads that run: a corpus is scored on its own tasks only.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    tasks = {n: model.tasks[n] for n in (tasks or model.tasks)}
    preds = {n: [None] * len(encoded) for n in tasks}
    batches = bucket_batches([e.length for e in encoded], batch_size, rng=None)
    for idx in tqdm(batches, desc=progress or "predict", disable=True if progress is None else None, leave=False):
        items = [encoded[i] for i in idx]
        batch = to_device(collate(items, tasks, pad_id, with_labels=False), device)
        with autocast(device, precision):
            out = model(batch, tasks=list(tasks), with_loss=False)
        for name, task in tasks.items():
            head = model.head(name)
            if task.is_token:
                rows = head.decode(out[name]["logits"], batch["word_mask"])
                for k, it in enumerate(items):
                    preds[name][idx[k]] = ["O"] * it.n_words
                for (k, r), ids in zip(batch["rows"], rows):
                    words = items[k].words[r]
                    for w, label_id in zip(words, ids):
                        preds[name][idx[k]][w] = task.labels[label_id]
            else:
                for k, label_id in enumerate(head.decode(out[name]["logits"])):
                    preds[name][idx[k]] = task.labels[label_id]
    model.train(was_training)
    return preds


def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """Strict entity-level micro P/R/F1 and per-type scores (seqeval, IOB2)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = classification_report(gold, pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    micro = report.pop("micro avg")
    per_type = {
        k: {"precision": v["precision"], "recall": v["recall"], "f1": v["f1-score"], "support": int(v["support"])}
        for k, v in report.items()
        if not k.endswith(" avg")
    }
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "support": int(micro["support"]),
        "per_type": per_type,
    }


def sentence_scores(gold: list[str], pred: list[str], labels) -> dict:
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=list(labels), average="macro", zero_division=0)),
        "support": len(gold),
    }


def score(task, gold: list, pred: list) -> dict:
    if task.is_token:
        return entity_scores(gold, pred)
    return sentence_scores(gold, pred, task.labels)


def gold_labels(task, sentences) -> list:
    return [task.derive(s.tags) for s in sentences]


def evaluate(
    model,
    encoded,
    sentences,
    pad_id: int,
    batch_size: int = 64,
    device=None,
    progress=None,
    tasks=None,
    precision: str = "auto",
) -> dict:
    """``{task: scores}`` of a model on labelled sentences (encoded with ``data.encode``)."""
    preds = predict(model, encoded, pad_id, batch_size, device, progress, tasks, precision)
    return score_all({n: model.tasks[n] for n in preds}, sentences, preds)


def score_all(tasks: dict, sentences, preds: dict) -> dict:
    """``{task: scores}`` of predictions (as ``predict`` returns them) against the sentences' tags."""
    return {n: score(t, gold_labels(t, sentences), preds[n]) for n, t in tasks.items()}


def main_score(task, scores: dict) -> float:
    return scores[task.main_metric]


def evaluate_split(
    model_dir,
    data,
    split: str = "test",
    output=None,
    unseen_tags: str = "error",
    batch_size: int = 64,
    device: str = "auto",
    precision: str = "auto",
    progress: bool = True,
):
    """Score a model folder on one split of a corpus, on the tasks of its main task's corpus.

    Writes ``{model, data, split, scores}`` to ``output`` (default:
    ``eval_<corpus>_<split>.json`` beside the model folder); returns
    ``(scores, output path, corpus name)``.
    """
    from pathlib import Path

    from .corpus import apply_unseen_policy, find_split, read_conll, resolve_data
    from .data import encode
    from .predict import Tagger
    from .rundir import write_json
    from .tasks import TaskSpec

    root = resolve_data(data)
    tagger = Tagger(model_dir, device, batch_size, precision)
    sents = read_conll(find_split(root, split))
    main = tagger.meta["tasks"][0]
    corpus = TaskSpec.parse(main).corpus
    tasks = {n: t for n, t in tagger.tasks.items() if TaskSpec.parse(n).corpus == corpus}
    sents = apply_unseen_policy(sents, set(tagger.meta["ner_labels"][main]), unseen_tags)
    enc = encode(sents, tagger.tokenizer, tasks, tagger.meta["max_length"])
    pad_id = tagger.tokenizer.pad_token_id or 0
    bar = split if progress else None
    scores = evaluate(tagger.model, enc, sents, pad_id, batch_size, tagger.device, bar, list(tasks), precision)
    out = Path(output) if output else Path(model_dir).resolve().parent / f"eval_{root.name}_{split}.json"
    write_json(out, {"model": str(model_dir), "data": str(root), "split": split, "scores": scores})
    return scores, out, root.name
