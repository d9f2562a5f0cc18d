"""Export one token head of a taskrel model as a Hugging Face token classifier.

``export_hf(model_dir, out)`` writes a folder that
``AutoModelForTokenClassification`` and ``pipeline("token-classification",
model=out, aggregation_strategy="first")`` load: the shared encoder, the NER
head as the ``classifier`` and ``id2label`` from the head's labels.

The pipeline then tags as ``taskrel predict`` does (each word takes the
label predicted at its first sub-word), with three documented differences:

- **Words.** taskrel's words are the corpus's tokens (whitespace-separated in
  raw text). The pipeline's words are the tokenizer's pre-tokens: a word with
  punctuation inside (``insulin-dependent``) is three pipeline words, and the
  labels of the inner pieces come from positions taskrel never trained or
  reads. Entities agree on text whose words have no inner punctuation.
- **Length.** taskrel splits a sentence longer than its window into
  overlapping windows; the pipeline truncates at the tokenizer's
  ``model_max_length`` unless called with ``stride``.
- **Grouping.** taskrel reads entities from the tag sequence with the
  conlleval convention (an ``I-`` after ``O`` opens an entity); the pipeline
  groups consecutive words with ``B-``/``I-`` tags of one type. They agree when
  the tags are valid BIO.

A CRF head is refused: its Viterbi decoding has no counterpart in
``AutoModelForTokenClassification``.
"""

from __future__ import annotations

from pathlib import Path

from .errors import TaskrelError
from .rundir import write_json

EXPORT_RECORD = "taskrel_export.json"


class ExportError(TaskrelError):
    pass


def export_hf(model_dir, out, task: str | None = None) -> Path:
    """Write ``out`` as an ``AutoModelForTokenClassification`` folder for one token task (NER by default)."""
    import torch
    from transformers import AutoModelForTokenClassification

    from .model import load
    from .predict import tag_task

    model_dir, out = Path(model_dir), Path(out)
    model, tokenizer, meta = load(model_dir)
    task = task or tag_task(model.tasks)
    if task not in model.tasks:
        raise ExportError(f"{model_dir}: no task {task!r}; it has {list(model.tasks)}")
    if not model.tasks[task].is_token:
        raise ExportError(f"{model_dir}: {task!r} is a sentence task; only token tasks export as a token classifier")
    head = model.head(task)
    if head.crf is not None:
        raise ExportError(
            f"{model_dir}: the {task!r} head decodes with a CRF, which AutoModelForTokenClassification cannot; "
            "tag with `taskrel predict`, or train without --crf to export"
        )
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out} exists and is not empty; export into a new folder")

    labels = list(model.tasks[task].labels)
    config = model.encoder.config.__class__.from_dict(model.encoder.config.to_dict())
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    hf = AutoModelForTokenClassification.from_config(config)
    missing, unexpected = hf.base_model.load_state_dict(model.encoder.state_dict(), strict=False)
    classifier = getattr(hf, "classifier", None)
    if missing or unexpected or not isinstance(classifier, torch.nn.Linear):
        raise ExportError(
            f"{model_dir}: the {config.model_type} token classifier does not have the encoder-plus-linear layout "
            f"taskrel's head has (missing {missing[:3]}, unexpected {unexpected[:3]}); it cannot be exported"
        )
    classifier.load_state_dict(head.classifier.state_dict())
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out)
    tokenizer.model_max_length = meta["max_length"]  # the window the model was trained on
    tokenizer.save_pretrained(out)
    record = {"source": str(model_dir.resolve()), "task": task, "labels": labels}
    write_json(out / EXPORT_RECORD, {**record, "taskrel_version": meta["taskrel_version"]})
    return out
