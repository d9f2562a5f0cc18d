"""A run folder, read through one place; and the one atomic JSON writer.

A run folder (written by ``train.train``) holds ``config.json`` (settings,
command, provenance), ``metrics.jsonl`` (one record per evaluation),
``metrics.json`` (the selected model's final scores, written last: its
presence means the run is done), ``test_predictions.jsonl`` and ``model/``;
a tuning trial its pruner stopped holds ``pruned.json`` instead of ``metrics.json``.
Every study, report and notebook reads runs through ``RunDir``, so what a
run's "score", "seconds" or "converged" means is decided here once.
"""

from __future__ import annotations

import json
import math
import os
import sys
from functools import cached_property
from pathlib import Path

from . import __version__
from .config import ConfigError
from .tasks import TaskSpec

# The version of the records a study folder holds (``record_study``): a folder whose record has a higher
# version was written by a newer taskrel; one without any predates versioning and is read as version 1.
FORMAT = 1

# the record of a study folder (``experiments.run_study``); the keys it holds besides the study's settings
STUDY_RECORD = "study.json"
RECORD_KEYS = ("format", "taskrel_version", "command")

CONFIG, RECORDS, METRICS, PREDICTIONS, MODEL, CHECKPOINT, PRUNED = (
    "config.json",
    "metrics.jsonl",
    "metrics.json",
    "test_predictions.jsonl",
    "model",
    "checkpoint",  # what ``resume`` needs; it exists only while the run is unfinished
    "pruned.json",  # a tuning trial its study's pruner stopped (``tune``): over, never resumed, never finished
)


def write_json(path: Path, obj) -> None:
    """Write atomically: a kill never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


class SettingsDiffer(ConfigError):
    pass


def settings_diff(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    """``key: saved -> wanted`` for every setting that differs (nested keys dotted)."""
    out = []
    for key in sorted(set(saved) | set(wanted)):
        a, b = saved.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "weights":
            out += settings_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def check_same_settings(cfg, out) -> None:
    """Refuse to continue or reuse the run in ``out`` if it was made under other settings (``RunDir.check``);
    nothing to check where the folder has no run yet."""
    if (Path(out) / CONFIG).is_file():
        RunDir(out).check(cfg)


def check_study_record(path, config, free=()) -> None:
    """Refuse ``config`` (a study's settings dataclass, ``to_dict``/``from_dict``) for the folder whose record is
    ``path`` if it was made under other settings, naming the keys that differ; the saved record is read back
    through the dataclass, so a setting added since it was written takes its default, or the value the study ran
    with (``from_record``). ``free`` keys may differ (workers, a total trial count that grows). Nothing to check
    where there is no record yet."""
    path = Path(path)
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    if saved.get("format", 1) > FORMAT:
        raise ConfigError(f"{path} was written by a newer taskrel (format {saved['format']}); upgrade taskrel")
    read = getattr(type(config), "from_record", type(config).from_dict)
    saved = read(saved).to_dict()
    keep = lambda d: {k: v for k, v in d.items() if k not in free}  # noqa: E731
    diff = settings_diff(keep(saved), keep(config.to_dict()))
    if diff:
        raise SettingsDiffer(
            f"{path.parent} holds a study made with other settings ({'; '.join(diff)}): "
            "choose another --out, or remove the folder to start again"
        )


def record_study(path, config, free=(), keep_command: bool = False) -> None:
    """Write a study folder's record (its settings, the command, the format version) after checking the one
    there (``check_study_record``): continuing a study under other settings is refused. ``keep_command``
    (re-analysing the folder, not training it): the record keeps the command that made the study."""
    check_study_record(path, config, free)
    command = sys.argv
    if keep_command and Path(path).is_file():
        command = json.loads(Path(path).read_text()).get("command", command)
    record = dict(zip(RECORD_KEYS, (FORMAT, __version__, command)))
    write_json(path, {**record, **config.to_dict()})


def read_records(run_dir) -> list[dict]:
    """A run's per-evaluation records (``metrics.jsonl``); empty if it has none yet."""
    path = Path(run_dir) / RECORDS
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def aulc(curve: list[tuple[float, float]], horizon: float | None = None) -> float:
    """Area under a dev curve ``[(epochs done, score)]`` over ``[0, horizon]`` epochs, divided by ``horizon``.

    The curve is a step function: 0 before the first evaluation, then each
    evaluation's score until the next; after the run's last evaluation (an
    early-stopped run) its last score is carried forward to ``horizon``
    (default: the run's own length). A run that learns faster scores higher.
    """
    if not curve:
        return math.nan
    horizon = horizon or curve[-1][0]
    area = 0.0
    for (x, y), nxt in zip(curve, curve[1:] + [(horizon, None)]):
        area += y * max(0.0, min(nxt[0], horizon) - min(x, horizon))
    return area / horizon


class RunDir:
    """One run folder. Files are read when first asked for, then kept."""

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def done(self) -> bool:
        """Finished: ``metrics.json`` is written last, atomically."""
        return (self.path / METRICS).is_file()

    @cached_property
    def config(self) -> dict:
        """``config.json`` as written (``resolved`` holds what the run found: sizes, threads, versions)."""
        return json.loads((self.path / CONFIG).read_text())

    @cached_property
    def run_config(self):
        from .config import RunConfig

        return RunConfig.from_dict(self.config)

    def differences(self, cfg) -> list[str]:
        """``key: saved -> wanted`` for every setting of this run that ``cfg`` gives otherwise (``check``)."""
        saved, wanted = self.run_config.to_dict(), cfg.to_dict()
        if wanted["train"]["threads"] is None:
            wanted["train"]["threads"] = saved["train"]["threads"]
        sections = ("data", "model", "train")
        return settings_diff({k: saved[k] for k in sections}, {k: wanted[k] for k in sections})

    def check(self, cfg) -> None:
        """Refuse this run for ``cfg`` if it was made under other settings, naming them (``SettingsDiffer``).

        Settings are ``data``, ``model`` and ``train`` as ``RunConfig`` resolves them (a folder written before
        a setting existed is read with its default); the folder's location (``out``) may differ, and so may
        the threads where ``cfg`` leaves them to the runner (None: the cores, or cores / workers in parallel).
        """
        diff = self.differences(cfg)
        if diff:
            raise SettingsDiffer(
                f"{self.path} holds a run made with other settings ({'; '.join(diff)}): choose another --out, "
                "or remove the folder to train again"
            )

    @property
    def pruned(self) -> dict | None:
        """A tuning trial stopped by its study's pruner: ``{"trial", "epoch", "evaluation"}``, since 2026-11-29
        with the ``median`` of the completed trials it fell below (``tune``); None for every other run. Such a
        run is over without ``metrics.json``: nothing resumes it, and it costs what its records say."""
        path = self.path / PRUNED
        return json.loads(path.read_text()) if path.is_file() else None

    @property
    def over(self) -> bool:
        """Nothing more to train: finished, or a tuning trial its pruner stopped."""
        return self.done or (self.path / PRUNED).is_file()

    @cached_property
    def metrics(self) -> dict:
        return json.loads((self.path / METRICS).read_text())

    @cached_property
    def records(self) -> list[dict]:
        return read_records(self.path)

    @property
    def main(self) -> str:
        """The main task's spec (the first task: selection and early stopping follow it)."""
        if self.done:
            return self.metrics["main_task"]
        return self.config["model"]["tasks"][0]

    def metric(self, task: str | None = None) -> str:
        """The metric a task is compared on (entity F1 or accuracy), from the task registry."""
        return TaskSpec.parse(task or self.main).main_metric

    def scores(self, split: str) -> dict:
        """``{task: {metric: value}}`` of the selected model on ``dev`` or ``test``; empty if not scored."""
        return self.metrics.get(split) or {}

    def score(self, split: str = "test", task: str | None = None) -> float:
        """A task's main score on a split (the main task's by default); NaN where it was not scored."""
        task = task or self.main
        scored = self.scores(split).get(task)
        return float(scored[self.metric(task)]) if scored else math.nan

    @property
    def best_epoch(self):
        return self.metrics["best_epoch"]

    @property
    def stopped(self) -> str | None:
        """``patience`` or ``max_epochs``; None for runs made before early stopping."""
        return self.metrics.get("stopped")

    @property
    def converged(self) -> bool | None:
        """Stopped by patience, or flat at the maximum budget (``train.run_outcome``); None if unknown."""
        return self.metrics.get("converged")

    @property
    def steps(self):
        return self.metrics.get("steps")

    @property
    def threads(self):
        return self.config.get("resolved", {}).get("threads")

    @property
    def dev_sentences(self) -> int | None:
        """How many dev sentences the run evaluated on per epoch (after ``dev_max_sentences``); None: a folder
        without its config, or one from before it was recorded."""
        try:
            return int(self.config["resolved"]["dev_sentences"])
        except (OSError, KeyError, TypeError, ValueError):
            return None

    @property
    def precision(self) -> str | None:
        """The precision the run trained at (``bf16`` or ``fp32``, what ``auto`` resolved to); None if unrecorded."""
        return self.config.get("resolved", {}).get("precision")

    @property
    def sessions(self) -> list[dict]:
        """Where the run trained: its start's record (``resolved``), then one per resumption (``resumed``), each
        with the machine (``machine.describe``'s keys), ``git_commit`` and ``started`` where recorded."""
        return [self.config.get("resolved", {})] + list(self.config.get("resumed", []))

    @property
    def train_seconds(self) -> float:
        return sum(r["train_seconds"] for r in self.records)

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds of training and evaluation over every evaluation, all threads (NaN for runs recorded before
        taskrel counted them): the cost of a run that pauses and other work on the machine do not inflate."""
        try:
            return sum(r["train_cpu_seconds"] + r["eval_cpu_seconds"] for r in self.records)
        except KeyError:
            return math.nan

    @property
    def seconds(self) -> float:
        """Training plus evaluation time over every evaluation (the final test pass not counted)."""
        return sum(r["train_seconds"] + r["eval_seconds"] for r in self.records)

    @property
    def epochs_run(self) -> float:
        if not self.records:
            return math.nan
        last = self.records[-1]
        return last.get("epochs_done", last["epoch"])

    @property
    def stop_gap(self) -> float:
        """How far below its best dev score (in the metric's units) the main task stayed over the evaluations
        after the selected one: small for a run that stopped on a plateau (a longer patience might still have
        moved it), large for one that declined. NaN when no evaluation followed the selected one."""
        points = self.dev_curve()
        curve = [score for _, score, _ in points]
        chosen = [i for i, (_, _, selected) in enumerate(points) if selected]
        if not chosen or chosen[-1] + 1 >= len(curve):
            return float("nan")
        return curve[chosen[-1]] - max(curve[chosen[-1] + 1 :])

    def dev_curve(self, task: str | None = None) -> list[tuple[float, float, bool]]:
        """``(epochs done, dev score, selected)`` at every evaluation that scored dev."""
        task = task or self.main
        metric = self.metric(task)
        return [
            (r.get("epochs_done", r["epoch"]), r["dev"][task][metric], bool(r.get("selected")))
            for r in self.records
            if r.get("dev") and task in r["dev"]
        ]

    def aulc(self, horizon: float | None = None, task: str | None = None) -> float:
        """``aulc`` of the task's dev curve (the main task's by default)."""
        return aulc([(x, y) for x, y, _ in self.dev_curve(task)], horizon)

    @property
    def predictions(self) -> Path:
        return self.path / PREDICTIONS

    @property
    def model(self) -> Path:
        return self.path / MODEL
