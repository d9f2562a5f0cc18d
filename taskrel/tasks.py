"""The task registry: NER and the auxiliary tasks derived from its tags.

Every task is built by one function in ``TASKS`` from the corpus's NER label
set and the task options; adding a fifth task is one more entry. A task's
``derive`` maps one sentence's IOB2 tags to its labels: a list (one label per
word) for token tasks, a single label for sentence tasks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from .corpus import entity_spans
from .errors import TaskError

TOKEN, SENTENCE = "token", "sentence"


@dataclass(frozen=True)
class Task:
    name: str
    level: str  # TOKEN or SENTENCE
    labels: tuple[str, ...]
    derive: Callable[[tuple[str, ...]], object]

    @property
    def is_token(self) -> bool:
        return self.level == TOKEN

    @property
    def main_metric(self) -> str:
        """The score a task is selected and compared on: entity F1 or accuracy."""
        return "f1" if self.is_token else "accuracy"


def _ner(ner_labels, options) -> Task:
    return Task("ner", TOKEN, tuple(ner_labels), lambda tags: list(tags))


def mtcls_tags(tags) -> list[str]:
    """Per word: ``B-Multi``/``I-Multi`` in a multi-word entity, ``B-Single`` in a one-word one."""
    out = ["O"] * len(tags)
    for start, end, _ in entity_spans(tags):
        if end - start == 1:
            out[start] = "B-Single"
        else:
            out[start] = "B-Multi"
            out[start + 1 : end] = ["I-Multi"] * (end - start - 1)
    return out


def _mtcls(ner_labels, options) -> Task:
    return Task("mtcls", TOKEN, ("O", "B-Multi", "I-Multi", "B-Single"), mtcls_tags)


def _bcls(ner_labels, options) -> Task:
    return Task("bcls", SENTENCE, ("0", "1"), lambda tags: str(int(bool(entity_spans(tags)))))


def _mcls(ner_labels, options) -> Task:
    cap = int(options.get("mcls_cap", 3))
    if cap < 1:
        raise TaskError(f"mcls_cap must be at least 1, got {cap}")
    labels = tuple(str(i) for i in range(cap + 1))
    return Task("mcls", SENTENCE, labels, lambda tags: str(min(len(entity_spans(tags)), cap)))


TASKS: dict[str, Callable[[list[str], dict], Task]] = {
    "ner": _ner,
    "mtcls": _mtcls,
    "bcls": _bcls,
    "mcls": _mcls,
}


def main_metric_of(spec: str) -> str:
    """The main metric of a task spec (``TASK`` or ``CORPUS:TASK``), from the registry."""
    return TASKS[spec.rpartition(":")[2]](["O", "B-X", "I-X"], {"mcls_cap": 3}).main_metric


def build_tasks(names, ner_labels, options: dict | None = None) -> dict[str, Task]:
    """The named tasks, in the given order (the first is the main task)."""
    options = options or {}
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise TaskError(f"unknown task(s) {unknown}; known: {sorted(TASKS)}")
    if len(set(names)) != len(names):
        raise TaskError(f"tasks repeated in {list(names)}")
    return {n: TASKS[n](list(ner_labels), options) for n in names}


def label_counts(task: Task, sentences) -> dict[str, int]:
    """Counts of each label: per word for token tasks, per sentence otherwise."""
    counts = Counter()
    for s in sentences:
        derived = task.derive(s.tags)
        counts.update(derived if task.is_token else [derived])
    return {label: counts.get(label, 0) for label in task.labels}


def corpus_stats(corpus, names=tuple(TASKS), options=None) -> dict:
    """``{split: {task: {label: count}}}`` for every split of a corpus."""
    tasks = build_tasks(list(names), corpus.tag_set, options)
    return {
        split: {name: label_counts(task, sents) for name, task in tasks.items()}
        for split, sents in corpus.splits.items()
    }
