"""Which corpus each task reads: task specs ``TASK`` or ``CORPUS:TASK``.

``ner`` is a task on the run's ``--data`` corpus; ``BC5CDR-disease:ner`` is NER
on another corpus. Tasks of one corpus share its sentences, and a training
batch always comes from one corpus, so one code path serves one corpus and
several.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError, RunConfig
from .corpus import Corpus, Sentence, load_corpus, subsample, take
from .tasks import TASKS, Task


def split_spec(spec: str) -> tuple[str | None, str]:
    """``"NCBI-disease:ner"`` -> ``("NCBI-disease", "ner")``; ``"ner"`` -> ``(None, "ner")``."""
    corpus, _, base = spec.rpartition(":")
    return corpus or None, base


def spec_label(spec: str) -> str:
    """A short, file-name-safe label of a spec: ``../data/BC2GM:ner`` -> ``BC2GM.ner``."""
    corpus, base = split_spec(spec)
    return f"{Path(corpus).name}.{base}" if corpus else base


def build_task(spec: str, ner_labels, mcls_cap: int) -> Task:
    _, base = split_spec(spec)
    if base not in TASKS:
        raise ConfigError(f"unknown task {base!r} in {spec!r}; known: {sorted(TASKS)}")
    return TASKS[base](list(ner_labels), {"mcls_cap": mcls_cap})


@dataclass
class Source:
    """One corpus and the tasks that read it."""

    key: str  # the corpus as named in the configuration
    corpus: Corpus
    tasks: dict  # spec -> Task
    train: list[Sentence]
    dev: list[Sentence]

    @property
    def test(self) -> list[Sentence]:
        return self.corpus.splits["test"]


def corpus_key(spec: str, default: str) -> str:
    corpus, _ = split_spec(spec)
    key = corpus or default
    if not key:
        raise ConfigError(f"task {spec!r} names no corpus (CORPUS:TASK) and no --data corpus is given")
    return key


def subset_seed(cfg: RunConfig) -> int:
    """The seed of the training subset: fixed across training seeds unless ``subset_seed`` is "vary"."""
    return cfg.train.seed if cfg.data.subset_seed == "vary" else int(cfg.data.subset_seed)


def load_sources(cfg: RunConfig, splits=("train", "devel", "test")) -> dict[str, Source]:
    """The corpora of a run's tasks, the main task's first; train subsets are seeded and nested.

    ``Source.dev`` is the devel set used for selection and early stopping:
    capped at ``dev_max_sentences`` (a fixed, seeded subset, the same for
    every training seed). Test is never subsampled. Without ``"test"`` in
    ``splits`` no test file is opened (tuning never reads test).
    """
    groups: dict[str, list[str]] = {}
    for spec in cfg.model.tasks:
        groups.setdefault(corpus_key(spec, cfg.data.data), []).append(spec)
    sources = {}
    for key, specs in groups.items():
        corpus = load_corpus(key, splits, unseen_tags=cfg.data.unseen_tags)
        tasks = {s: build_task(s, corpus.tag_set, cfg.data.mcls_cap) for s in specs}
        train = subsample(corpus.splits["train"], cfg.data.train_fraction, subset_seed(cfg))
        dev = take(corpus.splits["devel"], cfg.data.dev_max_sentences, subset_seed(cfg))
        if cfg.data.merge_dev:
            train, dev = train + dev, []
        sources[key] = Source(key, corpus, tasks, train, dev)
    return sources


def all_tasks(sources: dict[str, Source]) -> dict[str, Task]:
    return {spec: task for src in sources.values() for spec, task in src.tasks.items()}
