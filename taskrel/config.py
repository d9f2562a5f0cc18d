"""Dataclass configurations: one per concern, validated on creation.

``RunConfig.to_dict()`` is written to every run directory as ``config.json``
and ``RunConfig.from_dict`` reads it back; unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

from .errors import TaskrelError
from .tasks import TASKS, TaskSpec

DEFAULT_TASKS = ("ner", "mtcls", "bcls", "mcls")
# The authors' released run: alpha, beta, gamma, delta for ner, mtcls, bcls, mcls.
AUTHORS_WEIGHTS = {"ner": 0.8, "mtcls": 0.1, "bcls": 0.05, "mcls": 0.05}
POOLINGS = ("cls", "mean", "max")
STRATEGIES = ("joint", "alternating")
DEVICES = ("auto", "cpu", "cuda")
WEIGHTINGS = ("static", "uncertainty", "gradnorm", "pcgrad")  # see weighting.py
PRECISIONS = ("auto", "fp32", "bf16")  # see precision.py
SCHEDULES = ("linear", "constant")  # after warm-up: linear decay to 0 at the maximum budget, or constant
# token losses: mean over a batch's labelled words, or the sum over each sentence's words averaged over sentences
# (the paper's Eq. 3; about 25x larger relative to the sentence losses on these corpora)
TOKEN_LOSSES = ("word-mean", "sentence-sum")
# what grad_clip bounds: the summed gradient of all tasks, or each task's gradient before the sum
CLIPS = ("summed", "per-task")
ADAMW = ("foreach", "fused")  # torch.optim.AdamW's implementations
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
# Work queues (grid --storage): a worker beats every HEARTBEAT seconds; one silent for GRACE has its cell put back
HEARTBEAT, GRACE = 60, 180


# Keys that config.json records about a run but that are not settings.
RECORD_ONLY = {"command", "taskrel_version", "resolved", "resumed", "format"}


class ConfigError(TaskrelError):
    pass


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


_KINDS = {  # annotation -> (accepted types, how the message names them)
    "str": ((str,), "a string"),
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "bool": ((bool,), "true or false"),
    "list": ((list, tuple), "a list"),
    "dict": ((dict,), "a mapping"),
    "None": ((type(None),), "null"),
}


def check_types(obj) -> None:
    """Refuse a setting whose value has the wrong type (a YAML ``epochs: "3"``, ``seeds: 1``, ``epochs: 1.5``),
    naming the setting; ``true``/``false`` are not numbers."""
    for f in dataclasses.fields(obj):
        if f.type == "RunConfig":
            continue
        value = getattr(obj, f.name)
        parts = [part.strip() for part in str(f.type).split("|")]
        ok = any(
            isinstance(value, _KINDS[part][0]) and not (isinstance(value, bool) and part in ("int", "float"))
            for part in parts
            if part in _KINDS
        )
        if not ok and all(part in _KINDS for part in parts):
            want = " or ".join(_KINDS[part][1] for part in parts)
            raise ConfigError(f"{f.name} must be {want}, got {value!r} ({type(value).__name__})")


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


def setting(
    default=dataclasses.MISSING, help: str = "", *, factory=None, choices=None, parse=None, group=None, flag=None
):
    """A config field that also defines its command-line option (``cli.add_config_args``).

    ``help`` is the option's help (its default is shown after it), ``choices`` the allowed values, ``parse``
    how the option's text becomes the value (default: the field's type), ``group`` the help section, ``flag``
    the option's name where it is not ``--field-name``.
    """
    meta = {"help": help, "choices": choices, "parse": parse, "group": group, "flag": flag}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# ---- how option text becomes a setting (used by the settings' `parse`)


def parse_csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_floats(text: str) -> list[float]:
    try:
        return [float(x) for x in parse_csv(text)]
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None


def parse_ints(text: str) -> list[int]:
    try:
        return [int(x) for x in parse_csv(text)]
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None


def parse_contrasts(text: str) -> list[list[str]]:
    """``"bcls|mcls vs mcls|bcls, mtcls|ner vs ner|mtcls"`` -> ``[["bcls|mcls", "mcls|bcls"], ...]``."""
    out = []
    for item in parse_csv(text):
        parts = [p.strip() for p in item.split(" vs ")]
        if len(parts) != 2:
            raise ValueError(f"expected 'MAIN|SECONDARY vs MAIN|SECONDARY', got {item!r}")
        out.append(parts)
    return out


def parse_positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"expected a positive integer, got {text!r}")
    return value


def parse_positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:
        raise ValueError(f"expected a positive number, got {text!r}")
    return value


def parse_subset_seed(text: str):
    if text == "vary":
        return text
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer or 'vary', got {text!r}") from None


CONVERGENCE = "convergence"


@dataclass
class DataConfig(_Dict):
    data: str = setting("", "corpus folder, or a name under $TASKREL_DATA")
    train_fraction: float = setting(1.0, "fraction of train used (a seeded subset, see --subset-seed)")
    merge_dev: bool = setting(False, "train on train+devel and keep the last epoch (the paper's protocol)")
    max_length: int = setting(256, "sub-words per window, [CLS] and [SEP] included")
    unseen_tags: str = setting("error", "devel/test tags never seen in train: stop with an error, or map to O",
                               choices=("error", "o"))  # fmt: skip
    mcls_cap: int = setting(3, "mCLS counts entities 0, 1, ..., this many or more")
    subset_seed: int | str = setting(
        1,
        "seed of the --train-fraction subset, shared by every training seed; 'vary': the training seed",
        parse=parse_subset_seed,
    )
    dev_max_sentences: int | None = setting(
        None, "a fixed, seeded subset of devel for selection and early stopping (test is never subsampled)",
        group=CONVERGENCE,
    )  # fmt: skip

    def __post_init__(self):
        check_types(self)
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
    encoder: str = setting("minilm", "minilm, tiny, a local model folder or a hub id")
    tasks: list = setting(
        help="comma-separated task specs, the first is the main task: TASK on --data, or CORPUS:TASK",
        factory=lambda: list(DEFAULT_TASKS),
        parse=parse_csv,
    )
    pooling: str = setting("max", "how sentence heads pool the encoder's states", choices=POOLINGS)
    crf: bool = setting(False, "a CRF on the NER head")
    dropout: float = setting(0.1, "dropout before every head")

    def __post_init__(self):
        check_types(self)
        self.tasks = list(self.tasks)
        _check(len(self.tasks) > 0, "at least one task is needed")
        unknown = [t for t in self.tasks if TaskSpec.parse(t).task not in TASKS]
        _check(not unknown, f"unknown task(s) {unknown}; known: {sorted(TASKS)}")
        _check(len(set(self.tasks)) == len(self.tasks), f"tasks repeated in {self.tasks}")
        _check(self.pooling in POOLINGS, f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        _check(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def main_task(self) -> str:
        return self.tasks[0]


@dataclass
class TrainConfig(_Dict):
    strategy: str = setting("joint", "one summed loss per batch, or MT-DNN-style alternating batches",
                            choices=STRATEGIES)  # fmt: skip
    weights: dict | list | None = setting(
        None,
        "loss weights in task order (default: 0.8,0.1,0.05,0.05 for the four paper tasks, else 1 each)",
        parse=parse_floats,
    )
    epochs: int = setting(3, "the maximum budget in epochs (the linear schedule's horizon)")
    batch_size: int = setting(32, "sentences per training batch")
    eval_batch_size: int = setting(64, "sentences per evaluation batch")
    lr: float = setting(5e-5, "peak learning rate (AdamW)")
    weight_decay: float = setting(0.01, "AdamW weight decay on matrices (not biases or LayerNorm)")
    warmup: float = setting(0.1, "fraction of the maximum budget's steps of linear warm-up")
    grad_clip: float = setting(1.0, "clip the gradient to this norm (see --clip)")
    adamw: str = setting(
        "foreach",
        "AdamW's implementation: fused is about 10% faster a step on the CPU but not bit-identical to foreach "
        "(the default, so runs started before this setting continue unchanged)",
        choices=ADAMW,
    )
    clip: str = setting(
        "summed",
        "clip the summed gradient of all tasks, or each task's weighted gradient before the sum (static weights)",
        choices=CLIPS,
    )
    seed: int = setting(1, "training seed (initialisation, batch order, dropout)")
    device: str = setting("auto", "auto: CUDA when there is a GPU", choices=DEVICES)
    threads: int | None = setting(None, "CPU threads (torch.set_num_threads)", parse=parse_positive_int)
    weighting: str = setting(
        "static",
        "static loss weights, or a dynamic method that starts from them (see weighting.py)",
        choices=WEIGHTINGS,
    )
    weighting_lr: float = setting(0.025, "learning rate of learnable task weights (uncertainty, gradnorm)")
    gradnorm_alpha: float = setting(1.5, "GradNorm's asymmetry")
    patience: int | None = setting(
        None, "stop after this many evaluations without a better main dev score", group=CONVERGENCE
    )
    min_epochs: int = setting(1, "never stop by patience before this many epochs", group=CONVERGENCE)
    eval_every: int | None = setting(
        None, "evaluate on dev every N optimizer steps (default: at the end of each epoch)", group=CONVERGENCE
    )
    schedule: str = setting(
        "linear",
        "after warm-up: linear decay to 0 at the maximum budget, or constant",
        choices=SCHEDULES,
        group=CONVERGENCE,
    )
    precision: str = setting(
        "auto", "auto: bf16 autocast on CUDA and on CPUs with AVX512-BF16 or AMX, else fp32", choices=PRECISIONS
    )
    converge_tol: float = setting(
        CONVERGE_TOL,
        "a run stopped by --epochs counts as converged if its last evaluations gained less than this",
        group=CONVERGENCE,
    )
    token_loss: str = setting(
        "word-mean",
        "token losses: mean over labelled words, or sum over a sentence's words averaged over sentences (Eq. 3)",
        choices=TOKEN_LOSSES,
    )
    alternating_updates: str = setting(
        "per-task",
        "alternating: every task's batches each epoch (T times joint's steps), or as many steps as joint",
        choices=("per-task", "matched"),
    )

    def __post_init__(self):
        check_types(self)
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
        _check(self.adamw in ADAMW, f"adamw must be one of {ADAMW}, got {self.adamw!r}")
        _check(self.clip in CLIPS, f"clip must be one of {CLIPS}, got {self.clip!r}")
        _check(
            self.clip == "summed" or self.weighting == "static",
            f"clip 'per-task' works with static weights; weighting {self.weighting!r} shapes the gradients itself",
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
        check_types(self)
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
    """``to_dict``/``from_dict`` for a study whose ``base`` is a ``RunConfig``; record-only keys are skipped.
    ``from_record`` reads a study folder's record back: a setting added since the record was written takes the
    value the study ran with (``RECORDED_BEFORE``) where that is not the setting's default."""

    RECORDED_BEFORE: ClassVar[dict] = {}

    @classmethod
    def from_record(cls, d: dict):
        return cls.from_dict({**cls.RECORDED_BEFORE, **d})

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


def ordered_pairs(tasks: list[str], pairs: list[str] | None = None) -> list[tuple[str, str]]:
    """A grid's (main, secondary) pairs: ``pairs`` ('MAIN|SECONDARY' each) where given, else every ordered pair of
    ``tasks`` (main first, in the tasks' order)."""
    if pairs:
        return [tuple(p.split("|", 1)) for p in pairs]
    return [(m, x) for m in tasks for x in tasks if x != m]


def main_tasks(pairs: list[tuple[str, str]]) -> list[str]:
    """The tasks a grid trains alone: the main tasks of its (main, secondary) pairs, in order."""
    return list(dict.fromkeys(m for m, _ in pairs))


@dataclass
class GridConfig(_WithBase):
    """A pairwise transfer grid: ``base`` gives every cell's data, model and training settings."""

    base: RunConfig
    tasks: list = field(default_factory=lambda: list(DEFAULT_TASKS))
    seeds: list = setting(help="training seeds of every cell", factory=lambda: [1, 2, 3], parse=parse_ints)
    pair_weights: list = setting(
        help="loss weights of a pair's main and secondary task", factory=lambda: [1.0, 1.0], parse=parse_floats
    )
    workers: int = setting(1, "cells trained in parallel on this machine")
    bootstrap_samples: int = setting(1000, "paired bootstrap samples", flag="--bootstrap")
    alpha: float = setting(0.05, "significance level of the verdicts (Holm-adjusted)")
    noise_threads: int | None = setting(
        None,
        "also train every task alone at the first seed with this many threads: the numerical noise floor "
        "(same seed, another thread count) beside the seed spread, in noise.csv",
        parse=parse_positive_int,
    )
    contrasts: list = setting(
        help="transfers to compare with each other, each 'MAIN|SECONDARY vs MAIN|SECONDARY' (e.g. 'bcls|mcls vs "
        "mcls|bcls': does bCLS gain more from mCLS than mCLS from bCLS?), in contrasts.csv; analysis only",
        factory=list,
        parse=parse_contrasts,
    )
    bootstrap_unit: str = setting(
        "block:10",
        "test units the bootstrap resamples: 'sentence', 'document' (needs -DOCSTART- lines in test), or "
        "'block:N' consecutive sentences (the benchmark files keep no document boundaries; abstracts are about "
        "10 sentences)",
    )
    pairs: list = setting(
        help="the ordered pairs to train, each 'MAIN|SECONDARY' (e.g. 'bcls|ner, bcls|mtcls': a confirmation of "
        "chosen transfers on new seeds); only their main tasks are trained alone, and Holm runs over these pairs; "
        "empty: every ordered pair of the tasks",
        factory=list,
        parse=parse_csv,
    )

    @property
    def ordered_pairs(self) -> list[tuple[str, str]]:
        """The (main, secondary) pairs the grid trains and tests, in order."""
        return ordered_pairs(self.tasks, self.pairs)

    @property
    def pair_names(self) -> list[str]:
        """The pairs as their names, 'MAIN|SECONDARY' (how contrasts and claims name them)."""
        return [f"{m}|{x}" for m, x in self.ordered_pairs]

    @property
    def mains(self) -> list[str]:
        """The tasks trained alone: the main tasks of the pairs, in order."""
        return main_tasks(self.ordered_pairs)

    def __post_init__(self):
        check_types(self)
        _check(
            self.bootstrap_unit in ("sentence", "document")
            or (
                self.bootstrap_unit.startswith("block:")
                and self.bootstrap_unit[6:].isdigit()
                and int(self.bootstrap_unit[6:]) >= 1
            ),
            f"bootstrap_unit must be 'sentence', 'document' or 'block:N', got {self.bootstrap_unit!r}",
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
        self.pairs = [str(p).strip() for p in self.pairs]
        for p in self.pairs:
            m, _, x = p.partition("|")
            _check(
                m in self.tasks and x in self.tasks and m != x,
                f"pairs: each is 'MAIN|SECONDARY', two different tasks of the grid's {self.tasks}, got {p!r}",
            )
        _check(len(set(self.pairs)) == len(self.pairs), f"pairs: each pair once, got {self.pairs}")
        trained = self.pair_names
        self.contrasts = [list(c) for c in self.contrasts]
        for c in self.contrasts:
            pairs = [str(x).split("|") for x in c] if len(c) == 2 else []
            _check(
                len(pairs) == 2 and all(len(p) == 2 and "|".join(p) in trained for p in pairs) and c[0] != c[1],
                f"a contrast is two different transfers 'MAIN|SECONDARY' among the grid's pairs {trained}, got {c}",
            )
        if self.base.train.threads is None:
            self.base.train.threads = CELL_THREADS
        _check(
            self.noise_threads is None or (self.noise_threads >= 1 and self.noise_threads != self.base.train.threads),
            f"noise_threads must be a positive thread count other than the cells' {self.base.train.threads}, "
            f"got {self.noise_threads}",
        )
        if self.base.model.tasks != self.tasks:  # the base run reads every task of the grid
            model = dataclasses.replace(self.base.model, tasks=self.tasks)
            train = dataclasses.replace(self.base.train, weights=None)
            self.base = RunConfig(self.base.data, model, train, self.base.out)


PRUNERS = ("median", "hyperband", "none")
# when a trial may first be pruned: only where its own early stopping could have stopped it (its patience + 1
# evaluations and min_epochs), or from its first evaluation on (taskrel before 2026-11-28: at 10% of
# NCBI-disease a trial's dev F1 is about 0 in its first epochs, and 18 of 20 trials were pruned by the third)
PRUNE_FROM = ("stopping", "first")


@dataclass
class TuneConfig(_WithBase):
    """A loss-weight tuning study: ``base`` gives the data, model and training settings."""

    base: RunConfig
    trials: int = setting(20, "total trials of the study (a resumed study runs only the missing ones)")
    timeout: float | None = setting(None, "seconds for this invocation", parse=parse_positive_float)
    pruner: str = setting("median", "prunes a trial on its evaluations' dev scores", choices=PRUNERS)
    prune_startup: int = setting(5, "completed trials before the pruner may prune one (its reference)")
    prune_from: str = setting(
        "stopping",
        "a trial may be pruned from where its early stopping could stop it, or from its first evaluation",
        choices=PRUNE_FROM,
    )
    prune_margin: float = setting(
        0.0,
        "the median pruner stops a trial only when its best dev score so far is below the median by more than this "
        "(0: by any amount); set it to the seed noise at the first prunable evaluation, so noise does not prune",
    )
    seed: int = setting(1, "TPE sampler seed", flag="--sampler-seed")
    min_weight: float = setting(1e-3, "secondary weights are log-uniform in [min, max]; the main weight is 1")
    max_weight: float = setting(1.0, "the top of the secondary weights' range")
    tune_pooling: bool = setting(False, "also tune the sentence heads' pooling")
    tune_lr: bool = setting(False, "also tune the learning rate")

    RECORDED_BEFORE: ClassVar[dict] = {"prune_startup": 2, "prune_from": "first"}  # before 2026-11-28

    def __post_init__(self):
        check_types(self)
        _check(self.trials >= 1, "trials must be at least 1")
        _check(self.timeout is None or self.timeout > 0, f"timeout must be positive seconds, got {self.timeout}")
        _check(not self.base.data.merge_dev, "tuning selects on devel: merge_dev (training on devel) is refused")
        _check(self.pruner in PRUNERS, f"pruner must be one of {PRUNERS}, got {self.pruner!r}")
        _check(self.prune_startup >= 1, f"prune_startup must be at least 1, got {self.prune_startup}")
        _check(self.prune_from in PRUNE_FROM, f"prune_from must be one of {PRUNE_FROM}, got {self.prune_from!r}")
        _check(self.prune_margin >= 0, f"prune_margin must be 0 or more, got {self.prune_margin}")
        _check(
            self.prune_margin == 0 or self.pruner == "median",
            f"prune_margin applies to the median pruner only, not {self.pruner!r}",
        )
        _check(0 < self.min_weight < self.max_weight, "need 0 < min_weight < max_weight")
        _check(len(self.base.model.tasks) >= 2 or self.tune_pooling or self.tune_lr, "nothing to tune")


@dataclass
class EmbedConfig(_WithBase):
    """``base`` gives the data, encoder and training settings of the single-task models trained here."""

    base: RunConfig
    tasks: list = field(default_factory=list)
    examples: int = setting(1000, "training sentences per task")
    components: list = setting(
        help="layer_outputs, encoder, head", factory=lambda: ["layer_outputs", "head"], parse=parse_csv
    )
    label_mode: str = setting(
        "empirical", "gradients of the gold labels, or of labels sampled from the model", choices=("empirical", "true")
    )
    seed: int = setting(1, "which sentences, and the labels sampled for the true Fisher")
    method: str = setting("vmap", "per-example gradients: vectorised, or one by one", choices=("vmap", "loop"))
    batch_size: int = setting(8, "sentences per vectorised chunk", flag="--fisher-batch")
    models: dict = field(default_factory=dict)  # spec -> existing model folder
    style: str = setting(
        "taskrel",
        "taskrel: per-example squared gradients in eval mode; taskemb: the TaskEmb reference's squared batch "
        "gradients in train mode (fisher.py says how they differ)",
        choices=("taskrel", "taskemb"),
        flag="--fisher-style",
    )
    also_styles: list = setting(
        help="further Fisher styles computed on the same models and sentences in the same pass, each into its "
        "own embeddings folder OUT/STYLE (a model trained once serves every style)",
        factory=list,
        parse=parse_csv,
    )
    sentences: str = setting(
        "trained",
        "where the Fisher's sentences come from: the training subset the task's model was trained on, or all of "
        "train (with a train fraction below 1, most of those were never seen in training)",
        choices=("trained", "all"),
    )
    layer_reduce: str = setting(
        "concat",
        "how layer_outputs' per-layer vectors become one: concatenated, or averaged (the paper's Figure 6)",
        choices=("concat", "mean"),
    )
    control: bool = setting(
        True, "also embed every task with its labels shuffled among the same sentences: the control a finding must beat"
    )

    def __post_init__(self):
        check_types(self)
        from .fisher import COMPONENTS, LABEL_MODES, METHODS, STYLES

        self.tasks, self.components = list(self.tasks), list(self.components)
        self.also_styles = list(self.also_styles)
        _check(len(self.tasks) >= 1, "embed needs at least one task")
        bad = [s for s in self.also_styles if s not in STYLES or s == self.style]
        _check(
            not bad and len(set(self.also_styles)) == len(self.also_styles),
            f"also_styles {self.also_styles}: each one of {STYLES} at most once, and not the style itself "
            f"({self.style})",
        )
        _check(len(set(self.tasks)) == len(self.tasks), f"tasks repeated in {self.tasks}")
        bad = [c for c in self.components if c not in COMPONENTS]
        _check(not bad and self.components, f"components must be among {COMPONENTS}, got {self.components}")
        _check(self.label_mode in LABEL_MODES, f"label_mode must be one of {LABEL_MODES}")
        _check(self.method in METHODS, f"method must be one of {METHODS}")
        _check(self.examples >= 1 and self.batch_size >= 1, "examples and batch_size must be positive")
        unknown = sorted(set(self.models) - set(self.tasks))
        _check(not unknown, f"models given for tasks not embedded: {unknown}")


@dataclass
class AffinityConfig(_WithBase):
    """A TAG study: one joint run of ``base`` (into ``base.out``) with a look-ahead every ``every`` steps."""

    base: RunConfig
    every: int = setting(10, "a look-ahead every this many steps", parse=parse_positive_int)
    normalise_lr: bool = setting(
        False, "divide each look-ahead's affinity by the learning rate of its step (as the TAG reference does)"
    )

    def __post_init__(self):
        check_types(self)
        _check(self.every >= 1, f"every must be a positive number of steps, got {self.every}")
        _check(
            self.base.train.strategy == "joint" and self.base.train.weighting == "static",
            "TAG affinities need the joint strategy with static weights",
        )


@dataclass
class PredictionConfig(_WithBase):
    """Scoring estimators against a finished grid (``taskrel predict-transfer``) as a study file section.

    ``grid``, the ``embeddings`` folders (label -> folder; the label prefixes the estimators' names, "" for
    none) and ``affinity`` may hold ``{corpus}``; ``base`` only gives the output folder (nothing is trained).
    """

    base: RunConfig
    grid: str = ""
    embeddings: dict = field(default_factory=dict)
    affinity: str | None = None
    samples: int = 1000

    def __post_init__(self):
        check_types(self)
        _check(bool(self.grid), "prediction needs the grid folder whose transfers it scores (grid: FOLDER)")
        _check(self.samples >= 1, f"samples must be positive, got {self.samples}")
        _check(bool(self.embeddings) or bool(self.affinity), "prediction needs embeddings, an affinity, or both")
