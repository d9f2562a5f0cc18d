"""Dataclass configurations: one per concern, validated on creation.

``RunConfig.to_dict()`` is written to every run directory as ``config.json``
and ``RunConfig.from_dict`` reads it back; unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .errors import TaskrelError
from .tasks import TASKS

DEFAULT_TASKS = ("ner", "mtcls", "bcls", "mcls")
# The authors' released run: alpha, beta, gamma, delta for ner, mtcls, bcls, mcls.
AUTHORS_WEIGHTS = {"ner": 0.8, "mtcls": 0.1, "bcls": 0.05, "mcls": 0.05}
POOLINGS = ("cls", "mean", "max")
STRATEGIES = ("joint", "alternating")
DEVICES = ("auto", "cpu", "cuda")
WEIGHTINGS = ("static", "uncertainty", "gradnorm", "pcgrad")  # see weighting.py
PRECISIONS = ("auto", "fp32", "bf16")  # see precision.py
SCHEDULES = ("linear", "constant")
# token losses: mean over a batch's labelled words, or the sum over each sentence's words averaged over sentences
# (the paper's Eq. 3; about 25x larger relative to the sentence losses on these corpora)
TOKEN_LOSSES = ("word-mean", "sentence-sum")  # after warm-up: linear decay to 0 at the maximum budget, or constant
# A run that the maximum budget stopped counts as converged when its best main dev score of the last
# `patience` evaluations (CONVERGE_WINDOW without patience) beats the best before them by less than this.
CONVERGE_TOL = 0.002
CONVERGE_WINDOW = 3
# Studies measure transfer at convergence: `taskrel grid` stops each run after this many evaluations without a
# better main dev score, within this maximum budget (plain `train` has no early stopping unless asked)
STUDY_PATIENCE = 5
STUDY_MAX_EPOCHS = 40
# Threads per cell of a study (grid): thread counts change the numbers, so every cell of a study runs with the
# same count, whatever --workers; a study that sets train.threads uses its own.
CELL_THREADS = 2


# Keys that config.json records about a run but that are not settings.
RECORD_ONLY = {"command", "taskrel_version", "resolved"}


class ConfigError(TaskrelError):
    pass


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


class _Dict:
    """``to_dict``/``from_dict`` for flat dataclasses; unknown keys are errors."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        _check(not unknown, f"{cls.__name__}: unknown key(s) {unknown}; known: {sorted(names)}")
        return cls(**d)


@dataclass
class DataConfig(_Dict):
    data: str = ""  # corpus folder, or a name under $TASKREL_DATA
    train_fraction: float = 1.0
    merge_dev: bool = False  # train on train+devel, report the last epoch (the paper's protocol)
    max_length: int = 256  # sub-words per window, [CLS] and [SEP] included
    unseen_tags: str = "error"  # devel/test tags never seen in train: "error" or "o"
    mcls_cap: int = 3
    # which sentences train_fraction keeps: a fixed seed shared by every training seed, or "vary" (the training seed)
    subset_seed: int | str = 1
    dev_max_sentences: int | None = None  # a seeded, fixed subset of devel for selection and early stopping

    def __post_init__(self):
        _check(
            self.subset_seed == "vary"
            or (isinstance(self.subset_seed, int) and not isinstance(self.subset_seed, bool)),
            f"subset_seed must be an integer or 'vary', got {self.subset_seed!r}",
        )
        _check(
            self.dev_max_sentences is None or self.dev_max_sentences >= 1,
            f"dev_max_sentences must be positive, got {self.dev_max_sentences}",
        )
        _check(
            not (self.merge_dev and self.train_fraction < 1),
            "merge_dev with train_fraction < 1 would add the whole devel set to a subset of train: refused",
        )
        _check(0 < self.train_fraction <= 1, f"train_fraction must be in (0, 1], got {self.train_fraction}")
        _check(self.max_length >= 8, f"max_length must be at least 8, got {self.max_length}")
        _check(self.unseen_tags in ("error", "o"), f"unseen_tags must be 'error' or 'o', got {self.unseen_tags!r}")
        _check(self.mcls_cap >= 1, f"mcls_cap must be at least 1, got {self.mcls_cap}")


@dataclass
class ModelConfig(_Dict):
    encoder: str = "minilm"  # "minilm", "tiny", a local model folder or a hub id
    # the first is the main task; "ner" reads the run's corpus, "BC5CDR-disease:ner" another one
    tasks: list = field(default_factory=lambda: list(DEFAULT_TASKS))
    pooling: str = "max"
    crf: bool = False
    dropout: float = 0.1

    def __post_init__(self):
        self.tasks = list(self.tasks)
        _check(len(self.tasks) > 0, "at least one task is needed")
        unknown = [t for t in self.tasks if t.rpartition(":")[2] not in TASKS]  # specs: TASK or CORPUS:TASK
        _check(not unknown, f"unknown task(s) {unknown}; known: {sorted(TASKS)}")
        _check(len(set(self.tasks)) == len(self.tasks), f"tasks repeated in {self.tasks}")
        _check(self.pooling in POOLINGS, f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        _check(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def main_task(self) -> str:
        return self.tasks[0]


@dataclass
class TrainConfig(_Dict):
    strategy: str = "joint"
    weights: dict | None = None  # task -> loss weight; None: see resolve_weights
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 64
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1
    grad_clip: float = 1.0
    seed: int = 1
    device: str = "auto"
    threads: int | None = None
    weighting: str = "static"  # how task losses combine: static weights or a dynamic method (weighting.py)
    weighting_lr: float = 0.025  # learning rate of learnable task weights (uncertainty, gradnorm)
    gradnorm_alpha: float = 1.5
    patience: int | None = None  # stop after this many evaluations without a better main dev score
    min_epochs: int = 1  # never stop by patience before this many epochs
    eval_every: int | None = None  # evaluate on dev every N optimizer steps (None: at the end of each epoch)
    schedule: str = "linear"  # after warm-up; the horizon of "linear" is the maximum budget
    precision: str = "auto"
    converge_tol: float = CONVERGE_TOL
    token_loss: str = "word-mean"
    # alternating strategy: every task sees all its batches each epoch ("per-task": T times joint's optimizer
    # steps), or the epoch keeps joint's number of steps ("matched")
    alternating_updates: str = "per-task"

    def __post_init__(self):
        _check(
            self.alternating_updates in ("per-task", "matched"),
            f"alternating_updates must be 'per-task' or 'matched', got {self.alternating_updates!r}",
        )
        _check(self.token_loss in TOKEN_LOSSES, f"token_loss must be one of {TOKEN_LOSSES}, got {self.token_loss!r}")
        _check(self.patience is None or self.patience >= 1, f"patience must be positive, got {self.patience}")
        _check(1 <= self.min_epochs <= self.epochs, f"min_epochs must be in [1, epochs], got {self.min_epochs}")
        _check(self.eval_every is None or self.eval_every >= 1, f"eval_every must be positive, got {self.eval_every}")
        _check(self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        _check(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        _check(self.converge_tol >= 0, f"converge_tol must be non-negative, got {self.converge_tol}")
        _check(self.weighting in WEIGHTINGS, f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        _check(
            self.strategy == "joint" or self.weighting not in ("gradnorm", "pcgrad"),
            f"weighting {self.weighting!r} compares tasks within a step: it needs the joint strategy",
        )
        _check(self.weighting_lr > 0, f"weighting_lr must be positive, got {self.weighting_lr}")
        _check(self.strategy in STRATEGIES, f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        _check(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        _check(self.batch_size >= 1 and self.eval_batch_size >= 1, "batch sizes must be positive")
        _check(self.lr > 0, f"lr must be positive, got {self.lr}")
        _check(0 <= self.warmup < 1, f"warmup must be in [0, 1), got {self.warmup}")
        _check(self.device in DEVICES, f"device must be one of {DEVICES}, got {self.device!r}")
        _check(self.threads is None or self.threads >= 1, "threads must be positive")


def resolve_weights(tasks: list[str], weights) -> dict[str, float]:
    """Loss weight per task.

    ``weights`` may be a dict, a list in task order, or None: None gives the
    authors' 0.8/0.1/0.05/0.05 when the tasks are exactly the four paper tasks,
    and 1.0 for every task otherwise.
    """
    if weights is None:
        if sorted(tasks) == sorted(DEFAULT_TASKS):
            return {t: AUTHORS_WEIGHTS[t] for t in tasks}
        return {t: 1.0 for t in tasks}
    if not isinstance(weights, dict):
        weights = list(weights)
        _check(len(weights) == len(tasks), f"{len(weights)} weights given for {len(tasks)} tasks {tasks}")
        weights = dict(zip(tasks, weights))
    _check(sorted(weights) == sorted(tasks), f"weights {sorted(weights)} do not match tasks {sorted(tasks)}")
    _check(
        all(math.isfinite(float(w)) and float(w) >= 0 for w in weights.values()),
        f"weights must be finite and non-negative, got {weights}",
    )
    return {t: float(weights[t]) for t in tasks}


@dataclass
class RunConfig:
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    out: str = ""

    def __post_init__(self):
        self.train.weights = resolve_weights(self.model.tasks, self.train.weights)

    def to_dict(self) -> dict:
        return {
            "data": self.data.to_dict(),
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
            "out": self.out,
        }

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        known = {"data", "model", "train", "out"}
        unknown = sorted(set(d) - known - RECORD_ONLY)
        _check(not unknown, f"RunConfig: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(
            DataConfig.from_dict(d.get("data", {})),
            ModelConfig.from_dict(d.get("model", {})),
            TrainConfig.from_dict(d.get("train", {})),
            d.get("out", ""),
        )


class _WithBase:
    """``to_dict``/``from_dict`` for a study whose ``base`` is a ``RunConfig``; record-only keys are skipped."""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["base"] = self.base.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names - RECORD_ONLY)
        _check(not unknown, f"{cls.__name__}: unknown key(s) {unknown}; known: {sorted(names)}")
        kwargs = {k: v for k, v in d.items() if k in names}
        kwargs["base"] = RunConfig.from_dict(d["base"])
        return cls(**kwargs)


@dataclass
class GridConfig(_WithBase):
    """A pairwise transfer grid: ``base`` gives every cell's data, model and training settings."""

    base: RunConfig
    tasks: list = field(default_factory=lambda: list(DEFAULT_TASKS))
    seeds: list = field(default_factory=lambda: [1, 2, 3])
    pair_weights: list = field(default_factory=lambda: [1.0, 1.0])  # main, secondary
    workers: int = 1
    bootstrap_samples: int = 1000
    alpha: float = 0.05
    # test units the bootstrap resamples: "sentence", or "block:N" consecutive sentences (the benchmark files keep
    # no document boundaries; abstracts are about 10 sentences)
    bootstrap_unit: str = "block:10"

    def __post_init__(self):
        _check(
            self.bootstrap_unit == "sentence"
            or (
                self.bootstrap_unit.startswith("block:")
                and self.bootstrap_unit[6:].isdigit()
                and int(self.bootstrap_unit[6:]) >= 1
            ),
            f"bootstrap_unit must be 'sentence' or 'block:N', got {self.bootstrap_unit!r}",
        )
        self.tasks, self.seeds = list(self.tasks), [int(s) for s in self.seeds]
        self.pair_weights = [float(w) for w in self.pair_weights]
        ModelConfig(tasks=self.tasks)  # validates the task names
        _check(len(self.tasks) >= 2, f"a grid needs at least two tasks, got {self.tasks}")
        _check(len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds), f"bad seeds {self.seeds}")
        _check(len(self.pair_weights) == 2 and min(self.pair_weights) >= 0, "pair_weights: two non-negative numbers")
        _check(self.workers >= 1, "workers must be at least 1")
        _check(self.bootstrap_samples >= 100, "bootstrap_samples must be at least 100")
        _check(0 < self.alpha < 1, "alpha must be in (0, 1)")
        if self.base.train.threads is None:
            self.base.train.threads = CELL_THREADS
        if self.base.model.tasks != self.tasks:  # the base run reads every task of the grid
            model = dataclasses.replace(self.base.model, tasks=self.tasks)
            train = dataclasses.replace(self.base.train, weights=None)
            self.base = RunConfig(self.base.data, model, train, self.base.out)


PRUNERS = ("median", "hyperband", "none")


@dataclass
class TuneConfig(_WithBase):
    """A loss-weight tuning study: ``base`` gives the data, model and training settings."""

    base: RunConfig
    trials: int = 20  # total trials of the study (a resumed study runs only the missing ones)
    timeout: float | None = None  # seconds for this invocation
    pruner: str = "median"
    seed: int = 1  # TPE sampler seed
    min_weight: float = 1e-3  # secondary weights are log-uniform in [min_weight, max_weight]; main weight 1
    max_weight: float = 1.0
    tune_pooling: bool = False
    tune_lr: bool = False

    def __post_init__(self):
        _check(self.trials >= 1, "trials must be at least 1")
        _check(self.timeout is None or self.timeout > 0, f"timeout must be positive seconds, got {self.timeout}")
        _check(not self.base.data.merge_dev, "tuning selects on devel: merge_dev (training on devel) is refused")
        _check(self.pruner in PRUNERS, f"pruner must be one of {PRUNERS}, got {self.pruner!r}")
        _check(0 < self.min_weight < self.max_weight, "need 0 < min_weight < max_weight")
        _check(len(self.base.model.tasks) >= 2 or self.tune_pooling or self.tune_lr, "nothing to tune")
