"""What a study will cost before it starts: ``taskrel estimate STUDY.yaml``.

The runs of a study file (a ``runs`` study's variants x corpora x seeds, or a
grid's cells for each corpus), and its wall time from a probe measured on this
machine: a few training steps (timed on their second pass, after the kernels
for their shapes are compiled) and a dev pass of the study's first run on each
corpus, with the device and precision the runs will use. With early stopping
the number of epochs is not known in advance, so the estimate is a range:
from ``min_epochs + patience`` evaluations (a run that peaks at once) to the
maximum budget. Finished runs are not counted.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import RunConfig

BUSY_LOAD = 0.5  # a 1-minute load average at or above this before a probe: other work is running


@dataclass
class Probe:
    seconds_per_step: float
    seconds_per_dev_sentence: float
    device: str
    precision: str
    load: float = 0.0  # the 1-minute load average before the probe (other work on the machine slows it)


@dataclass
class Estimate:
    runs: int
    done: int
    probes: dict = field(default_factory=dict)  # corpus -> Probe
    waiting: list = field(default_factory=list)  # variants waiting for a tuning study or budget decision (not counted)
    low_seconds: float = 0.0
    high_seconds: float = 0.0
    # corpus -> (finished runs here, their mean seconds, runs left, their projected seconds): the study's own
    # measured pace, each run left projected from finished runs with the same settings but the seed
    measured: dict = field(default_factory=dict)
    unmeasured: dict = field(default_factory=dict)  # corpus -> runs left there, where none has finished yet

    def lines(self, workers: int = 1, probed: bool = True) -> list[str]:
        """What ``taskrel estimate`` prints; without ``probed``, the counts, what waits and the measured pace."""
        todo = self.runs - self.done
        w = max(1, workers)  # runs trained at once: each finished run's time was measured beside the others
        at_once = f", {w} at a time" if w > 1 else ""
        out = [f"{self.runs} runs, {self.done} already finished, {todo} to train"]
        out += [f"  not counted, waiting: {v}" for v in self.waiting]
        for corpus, (n, mean, left, projected) in self.measured.items():
            out.append(
                f"  measured on {corpus}: {n} finished run(s) of this study took {hours(mean)} each on average "
                f"(as the machine was then); its {left} run(s) left at the pace of finished runs with the same "
                f"settings (this average where there are none){at_once}: {hours(projected / w)}"
            )
        for corpus, left in self.unmeasured.items() if self.measured else ():  # where nothing has finished, said above
            out.append(
                f"  on {corpus}: {left} run(s) left and none finished here yet, so no pace measured "
                f"(`taskrel estimate` probes one)"
            )
        if len(self.measured) > 1 or (self.measured and self.unmeasured):
            total = sum(projected for *_, projected in self.measured.values())
            without = f" (without {', '.join(self.unmeasured)}, not measured)" if self.unmeasured else ""
            out.append(f"  at the measured pace, the runs left on those corpora: about {hours(total / w)}{without}")
        if not probed:
            return out
        for corpus, p in self.probes.items():
            busy = p.load >= BUSY_LOAD
            out.append(
                f"  probe on {corpus}: {p.seconds_per_step:.3f} s a training step, "
                f"{1000 * p.seconds_per_dev_sentence:.1f} ms a dev sentence ({p.device}, {p.precision}; "
                + (
                    f"load average {p.load:.1f} before the probe: other work slowed it, the estimate is too long)"
                    if busy
                    else "idle machine)"
                )
            )
        out.append(
            f"expected wall time: {hours(self.low_seconds / w)} to {hours(self.high_seconds / w)}"
            + (f" with {w} workers (if they do not slow each other down)" if w > 1 else "")
        )
        return out


def queue_lines(queue: list, probed: bool = True) -> list[str]:
    """The total of several studies' estimates ``[(Estimate, workers)]``, run one after the other: the runs left,
    those projected at their study's measured pace, and (``probed``) the probes' range for the others."""
    left = sum(e.runs - e.done for e, _ in queue)
    waiting = sum(len(e.waiting) for e, _ in queue)
    measured = sum(left for e, _ in queue for _, _, left, _ in e.measured.values())
    paced = sum(projected / max(1, w) for e, w in queue for *_, projected in e.measured.values())
    out = [f"queue of {len(queue)} studies: {left} runs to train"]
    if waiting:
        out[0] += f" ({waiting} variant-corpus pairs wait for a tuning study or budget decision, not counted)"
    if measured:
        out.append(f"  {measured} of them at their study's measured pace: about {hours(paced)}")
    if probed:
        low = sum(e.low_seconds / max(1, w) for e, w in queue)
        high = sum(e.high_seconds / max(1, w) for e, w in queue)
        out.append(f"  every run left by the probes: {hours(low)} to {hours(high)}")
    else:
        out.append(f"  {left - measured} runs with no measured pace yet (drop --no-probe for the probes' range)")
    return out


def _shape(cfg: RunConfig) -> str:
    """A run's settings but its seed and folder: runs that should take about as long."""
    d = cfg.to_dict()
    d.pop("out", None)
    d["train"].pop("seed", None)
    return json.dumps(d, sort_keys=True, default=str)


def _mean(values: list | None) -> float | None:
    return sum(values) / len(values) if values else None


def hours(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


class Pace:
    """``3 of 65 runs done in 1.2 h; about 25 h left at that pace`` (for logs without a progress bar; the pace is
    the mean over the runs finished so far, so runs of another size or a busier machine make it drift): the
    progress line of a study's runs, ``folders`` (the run folders still to finish, or those of them resumed with
    ``total`` the number of runs), ``workers`` at a time.
    A run resumed from a checkpoint finishes in a fraction of a run's time, so it counts with the training and
    evaluation time its folder recorded before (shared by the workers): the first run after a restart no
    longer makes the time left look minutes when it is hours."""

    def __init__(self, folders, unit: str = "runs", workers: int = 1, clock=time.monotonic, total=None):
        from .rundir import RunDir

        self.before = {str(f): RunDir(f).seconds for f in folders}
        self.total = len(self.before) if total is None else total  # given: runs whose folders are not known yet
        self.unit, self.workers, self.done, self.earlier = unit, workers, 0, 0.0
        self.clock, self.started, self.lengths = clock, clock(), []

    def line(self, folder) -> str:
        """The line once the run in ``folder`` has finished.

        With several workers, the runs still under way when one finishes have done part of their work, so
        finished runs over elapsed time would count too few at first (about half with two workers); there the
        pace is the finished runs' mean training and evaluation time, ``workers`` of them at a time."""
        from .rundir import RunDir

        self.done += 1
        self.earlier += self.before.get(str(folder), 0.0) / self.workers
        run = RunDir(folder)
        if (run.path / "metrics.jsonl").is_file() and run.seconds > 0:
            self.lengths.append(run.seconds)
        spent, total = self.clock() - self.started, self.total
        line = f"{self.done} of {total} {self.unit} done in {hours(spent)}"
        if self.done < total and self.workers > 1 and self.lengths:
            mean = sum(self.lengths) / len(self.lengths)
            left = mean * (total - self.done) / min(self.workers, total - self.done)
            line += f"; about {hours(left)} left at {hours(mean)} a run, {self.workers} at a time"
        elif self.done < total:
            line += f"; about {hours((spent + self.earlier) / self.done * (total - self.done))} left at that pace"
            line += f" (counting the {hours(self.earlier)} resumed runs took before)" if self.earlier else ""
        return line


def study_runs(study, out: Path) -> list[RunConfig]:
    """Every run a study file would train, as run configurations."""
    if study.kind == "runs":
        return [cfg for _, _, _, cfg in study.run_configs(out)]
    if study.kind == "grid":
        from .grid import all_cells, cell_config

        return [
            cell_config(grid, cell, out / Path(corpus).name)
            for corpus, grid in study.grid_configs()
            for cell in all_cells(grid)
        ]
    from .kinds import KINDS

    kind, runs = KINDS[study.kind], []
    for corpus, settings, steps in study.section_configs(out):
        folder = out / Path(corpus).name
        runs += kind.call("trains", settings, steps, folder) if kind.trains else [settings.base]
    return runs


def study_retrains(study, out: Path) -> set[Path]:
    """The folders of a study's runs that finished but will train again (``StudyKind.retrains``: an embedding
    study's model restored without its weights): still to train, for ``estimate`` and ``taskrel status``."""
    from .kinds import KINDS

    kind = KINDS.get(study.kind)
    if kind is None or not kind.retrains:
        return set()
    again = set()
    for corpus, settings, steps in study.section_configs(Path(out)):
        again |= {Path(cfg.out) for cfg in kind.call("retrains", settings, steps, Path(out) / Path(corpus).name)}
    return again


def probe(cfg: RunConfig, steps: int = 4, dev_sentences: int = 64) -> Probe:
    """Time ``steps`` training steps (after one discarded) and a dev pass of one run's set-up."""
    import torch  # here, not at the top: ``taskrel status`` reads the estimate without loading the trainer

    from .data import bucket_batches, collate, encode, to_device
    from .evaluate import predict
    from .machine import resolve_device
    from .precision import autocast, resolve_precision
    from .train import param_groups, prepare

    load = os.getloadavg()[0]  # before our own work raises it
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    precision = resolve_precision(device, cfg.train.precision)
    sources, model, tokenizer = prepare(cfg, ("train", "devel"))
    model.to(device).train()
    src = next(iter(sources.values()))
    enc = encode(src.train[: cfg.train.batch_size * steps], tokenizer, src.tasks, cfg.data.max_length)
    batches = bucket_batches([e.length for e in enc], cfg.train.batch_size, np.random.default_rng(0))
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr, fused=cfg.train.adamw == "fused"
    )
    pad = tokenizer.pad_token_id or 0
    times = []
    batches = (batches * steps)[:steps]
    for timed in (False, True):  # a first, untimed pass: kernels are compiled per batch shape on first sight
        for idx in batches:
            t0 = time.perf_counter()
            batch = to_device(collate([enc[i] for i in idx], src.tasks, pad), device)
            with autocast(device, precision):
                out = model(batch)
            sum(o["loss"] for o in out.values()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if timed:
                times.append(time.perf_counter() - t0)
    dev = encode(src.dev[:dev_sentences], tokenizer, src.tasks, cfg.data.max_length)
    predict(model, dev, pad, cfg.train.eval_batch_size, device, None, list(src.tasks), cfg.train.precision)  # warm-up
    t0 = time.perf_counter()
    predict(model, dev, pad, cfg.train.eval_batch_size, device, None, list(src.tasks), cfg.train.precision)
    per_sentence = (time.perf_counter() - t0) / max(len(dev), 1)
    return Probe(float(np.median(times)), per_sentence, str(device), precision, load)


def run_seconds(cfg: RunConfig, p: Probe, train_sentences: int, dev_sentences: int, test_sentences: int):
    """(low, high) seconds of one run from a probe."""
    steps = math.ceil(train_sentences / cfg.train.batch_size)
    if cfg.train.strategy == "alternating" and cfg.train.alternating_updates == "per-task":
        steps *= len(cfg.model.tasks)
    evals_per_epoch = max(1, steps // cfg.train.eval_every) if cfg.train.eval_every else 1
    dev_used = min(dev_sentences, cfg.data.dev_max_sentences or dev_sentences)
    epoch = steps * p.seconds_per_step + evals_per_epoch * dev_used * p.seconds_per_dev_sentence
    final = (dev_sentences + test_sentences) * p.seconds_per_dev_sentence
    high_epochs = cfg.train.epochs
    low_epochs = (
        min(cfg.train.epochs, cfg.train.min_epochs + math.ceil(cfg.train.patience / evals_per_epoch))
        if cfg.train.patience
        else cfg.train.epochs
    )
    return low_epochs * epoch + final, high_epochs * epoch + final


def estimate(study, out: Path, steps: int = 4, do_probe: bool = True) -> Estimate:
    """The runs of a study and, with ``do_probe``, their expected wall time on this machine."""
    from .rundir import RunDir
    from .sources import load_sources

    runs = study_runs(study, Path(out))
    finished = [RunDir(cfg.out) for cfg in runs]
    # each run folder read once; a pruned tuning trial is over: it costs what it ran, and nothing is left to train;
    # a finished run that will train again (``study_retrains``) is not
    again = study_retrains(study, Path(out))
    finished = [run if run.over and Path(run.path) not in again else None for run in finished]
    todo = [cfg for cfg, run in zip(runs, finished) if run is None]
    est = Estimate(len(runs), len(runs) - len(todo), waiting=study.waiting() if study.kind == "runs" else [])
    shapes = {}  # the finished runs' seconds by their settings but the seed: a variant's own pace
    for cfg, run in zip(runs, finished):
        if run:
            shapes.setdefault(_shape(cfg), []).append(run.seconds)
    for corpus in dict.fromkeys(Path(cfg.data.data).name for cfg in runs):
        seconds = [run.seconds for cfg, run in zip(runs, finished) if run and Path(cfg.data.data).name == corpus]
        left = [cfg for cfg in todo if Path(cfg.data.data).name == corpus]
        if seconds:
            mean = sum(seconds) / len(seconds)
            projected = sum(_mean(shapes.get(_shape(cfg))) or mean for cfg in left)
            est.measured[corpus] = (len(seconds), mean, len(left), projected)
        elif left:
            est.unmeasured[corpus] = len(left)
    if not do_probe:
        return est
    sizes = {}
    for cfg in todo:
        key = cfg.data.data
        if key not in est.probes:
            est.probes[key] = probe(cfg, steps)
        size_key = (key, cfg.data.train_fraction)
        if size_key not in sizes:
            src = next(iter(load_sources(cfg).values()))
            sizes[size_key] = (len(src.train), len(src.corpus.splits["devel"]), len(src.test))
        low, high = run_seconds(cfg, est.probes[key], *sizes[size_key])
        est.low_seconds += low
        est.high_seconds += high
    return est
