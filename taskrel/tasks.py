"""The task registry: NER and the auxiliary tasks derived from its tags.

Every task is built by one function in ``TASKS`` from the corpus's NER label
set and the task options; adding a fifth task is one more entry. A task's
``derive`` maps one sentence's IOB2 tags to its labels: a list (one label per
word) for token tasks, a single label for sentence tasks.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


_PROBE_LABELS = ("O", "B-X", "I-X")  # any NER label set: a task's level does not depend on it


@dataclass(frozen=True)
class TaskSpec:
    """A task as a configuration names it: ``TASK`` on the run's corpus, or ``CORPUS:TASK``.

    The one place that splits, names and builds specs: ``str(spec)`` is the
    text the user wrote (and the key of tasks in configs and results);
    ``key`` is its ``ModuleDict`` name; ``label`` is short and file-name safe;
    ``canonical`` names the task alike in grids, embeddings and affinities.
    """

    task: str
    corpus: str | None = None

    @classmethod
    def parse(cls, spec) -> TaskSpec:
        if isinstance(spec, TaskSpec):
            return spec
        corpus, _, task = str(spec).rpartition(":")
        return cls(task, corpus or None)

    def __str__(self) -> str:
        return f"{self.corpus}:{self.task}" if self.corpus else self.task

    @property
    def key(self) -> str:
        """The spec as a ``ModuleDict`` key (a corpus path may hold dots, which module names cannot)."""
        return re.sub(r"[^\w:-]", "_", str(self))

    @property
    def label(self) -> str:
        """Short and file-name safe: ``../data/BC2GM:ner`` -> ``BC2GM.ner``."""
        return f"{Path(self.corpus).name}.{self.task}" if self.corpus else self.task

    def corpus_key(self, default: str | None) -> str:
        """The corpus this task reads, as configured: its own, else the run's ``--data``."""
        key = self.corpus or default
        if not key:
            raise TaskError(f"task {str(self)!r} names no corpus (CORPUS:TASK) and no --data corpus is given")
        return key

    def canonical(self, default_corpus: str) -> tuple[str, str]:
        """``(corpus name, task)``: the same task named alike whichever run's corpus was the default."""
        return Path(self.corpus or default_corpus).name, self.task

    def build(self, ner_labels, mcls_cap: int = 3) -> Task:
        if self.task not in TASKS:
            raise TaskError(f"unknown task {self.task!r} in {str(self)!r}; known: {sorted(TASKS)}")
        return TASKS[self.task](list(ner_labels), {"mcls_cap": mcls_cap})

    @property
    def level(self) -> str:
        return self.build(_PROBE_LABELS).level

    @property
    def main_metric(self) -> str:
        return self.build(_PROBE_LABELS).main_metric


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
