"""Which corpus each task reads: task specs ``TASK`` or ``CORPUS:TASK``.

``ner`` is a task on the run's ``--data`` corpus; ``BC5CDR-disease:ner`` is NER
on another corpus. Tasks of one corpus share its sentences, and a training
batch always comes from one corpus, so one code path serves one corpus and
several.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import RunConfig
from .corpus import Corpus, Sentence, load_corpus, subsample, take
from .tasks import Task, TaskSpec


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
        groups.setdefault(TaskSpec.parse(spec).corpus_key(cfg.data.data), []).append(spec)
    sources = {}
    for key, specs in groups.items():
        corpus = load_corpus(key, splits, unseen_tags=cfg.data.unseen_tags)
        tasks = {s: TaskSpec.parse(s).build(corpus.tag_set, cfg.data.mcls_cap) for s in specs}
        train = subsample(corpus.splits["train"], cfg.data.train_fraction, subset_seed(cfg))
        dev = take(corpus.splits["devel"], cfg.data.dev_max_sentences, subset_seed(cfg))
        if cfg.data.merge_dev:
            train, dev = train + dev, []
        sources[key] = Source(key, corpus, tasks, train, dev)
    return sources


def all_tasks(sources: dict[str, Source]) -> dict[str, Task]:
    return {spec: task for src in sources.values() for spec, task in src.tasks.items()}
