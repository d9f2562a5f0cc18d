"""Studies declared in experiment files (YAML): ``taskrel run experiments/NAME.yaml``.

A study file states everything needed to reproduce it::

    name: table2-pooling
    description: single-task vs 4-task with cls/mean/max pooling
    kind: runs                     # or: grid
    corpora: [NCBI-disease]        # corpus names under $TASKREL_DATA (or folders)
    seeds: [1, 2]
    defaults:                      # RunConfig sections applied to every run
      model: {encoder: minilm}
      train: {epochs: 3}
    per_corpus:                    # then these, for one corpus
      NCBI-disease: {train: {lr: 1.0e-5}}
    variants:                      # kind runs: one run per variant x corpus x seed
      single: {model: {tasks: [ner]}}
      mt-max: {model: {tasks: [ner, mtcls, bcls, mcls], pooling: max}}
    grid: {tasks: [ner, mtcls, bcls, mcls], pair_weights: [1.0, 1.0]}   # kind grid

Runs land in ``OUT/VARIANT/CORPUS/seedS`` (kind runs) or ``OUT/CORPUS/`` (one
grid per corpus); ``study.json`` records the study, ``results.csv`` one row
per run and ``summary.csv`` the mean and standard deviation over seeds.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from . import __version__, plots
from .config import DEFAULT_TASKS, ConfigError, GridConfig, RunConfig
from .tasks import main_metric_of

KINDS = ("runs", "grid")


@dataclass
class Study:
    name: str
    kind: str = "runs"
    description: str = ""
    corpora: list = field(default_factory=list)
    seeds: list = field(default_factory=lambda: [1])
    defaults: dict = field(default_factory=dict)
    per_corpus: dict = field(default_factory=dict)
    variants: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    baseline: str | None = None  # kind runs: the variant every other is compared with (compare.py)

    def _base(self, corpus: str) -> dict:
        return _merge(copy.deepcopy(self.defaults), copy.deepcopy(self.per_corpus.get(corpus) or {}))

    def run_configs(self, out: Path) -> list[tuple[str, str, int, RunConfig]]:
        """``(variant, corpus, seed, config)`` for every run of a ``runs`` study."""
        items = []
        for variant, overrides in self.variants.items():
            for corpus in self.corpora:
                for seed in self.seeds:
                    d = _merge(self._base(corpus), overrides or {})
                    d.setdefault("data", {})["data"] = corpus
                    d.setdefault("train", {})["seed"] = seed
                    d["out"] = str(out / variant / Path(corpus).name / f"seed{seed}")
                    items.append((variant, corpus, seed, RunConfig.from_dict(d)))
        return items

    def grid_configs(self) -> list[tuple[str, GridConfig]]:
        items = []
        for corpus in self.corpora:
            base = _merge(self._base(corpus), {"data": {"data": corpus}})
            g = dict(self.grid)
            g["tasks"] = list(g.get("tasks", DEFAULT_TASKS))
            base.setdefault("model", {})["tasks"] = g["tasks"]
            base_cfg = RunConfig.from_dict(base)
            g["seeds"] = self.seeds
            unknown = sorted(set(g) - ({f.name for f in dataclasses.fields(GridConfig)} - {"base"}))
            if unknown:
                raise ConfigError(f"study {self.name}: unknown grid key(s) {unknown}")
            items.append((corpus, GridConfig(base_cfg, **g)))
        return items


def _merge(base: dict, over: dict) -> dict:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


SAFE_NAME = re.compile(r"^[\w][\w.+-]*$")


def _check_names(path: Path, study: Study) -> None:
    """Every folder a study writes must lie under its output folder, one per corpus."""
    bad = [v for v in study.variants if not SAFE_NAME.match(str(v)) or ".." in str(v)]
    if bad or not SAFE_NAME.match(str(study.name)) or ".." in str(study.name):
        raise ConfigError(
            f"{path}: study and variant names must be plain folder names (letters, digits, . + - _), "
            f"got {[study.name, *bad] if bad else study.name!r}"
        )
    names = [Path(str(c)).name for c in study.corpora]
    if any(n in ("", ".", "..") for n in names):
        raise ConfigError(f"{path}: corpus {study.corpora} must end in a folder name (not '..')")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: two corpora share the folder name {dupes}; their runs would collide")


def load_study(path) -> Study:
    """Read and validate a study file; errors name the file (and line for YAML syntax)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such study file")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of study settings")
    names = set(Study.__dataclass_fields__)
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {sorted(names)}")
    if "name" not in raw:
        raise ConfigError(f"{path}: the study needs a name")
    study = Study(**raw)
    _check_names(path, study)
    if study.kind not in KINDS:
        raise ConfigError(f"{path}: kind must be one of {KINDS}, got {study.kind!r}")
    if not study.corpora:
        raise ConfigError(f"{path}: list the corpora of the study")
    stray = sorted(set(study.per_corpus) - set(study.corpora))
    if stray:
        raise ConfigError(f"{path}: per_corpus names corpora not in the study: {stray}")
    if study.kind == "runs" and not study.variants:
        raise ConfigError(f"{path}: a study of kind 'runs' needs variants")
    if study.baseline is not None and study.baseline not in study.variants:
        raise ConfigError(f"{path}: baseline {study.baseline!r} is not one of the variants {list(study.variants)}")
    try:  # build every configuration now, so a typo fails before hours of training
        study.run_configs(Path("out")) if study.kind == "runs" else study.grid_configs()
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"{path}: {e}") from None
    return study


def run_study(path, out=None, workers: int = 1, progress: bool = True, log=print) -> Path:
    """Run (or resume) every run of a study; returns its output folder."""
    from .grid import run_grid
    from .train import train

    study = load_study(path)
    out = Path(out or Path("runs") / study.name)
    out.mkdir(parents=True, exist_ok=True)
    record = {"taskrel_version": __version__, "command": sys.argv, "file": str(path), **study.__dict__}
    (out / "study.json").write_text(json.dumps(record, indent=2) + "\n")
    if study.kind == "grid":
        for corpus, grid in study.grid_configs():
            grid.workers = workers
            log(f"study {study.name}: grid on {corpus}")
            run_grid(grid, out / Path(corpus).name, progress=progress, log=log)
        return out
    runs = study.run_configs(out)
    if workers <= 1:
        for variant, corpus, seed, cfg in runs:
            log(f"study {study.name}: {variant} on {corpus}, seed {seed}")
            train(cfg, resume=True, progress=progress, log=log)
    else:
        _run_parallel(study, runs, workers, progress, log)
    summarise(out, study)
    return out


def _run_parallel(study: Study, runs: list, workers: int, progress: bool, log) -> None:
    """Runs in ``workers`` processes (spawned: CUDA-safe), seed by seed, so a study stopped half-way has
    every variant and corpus at the same number of seeds."""
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    from .grid import _run_cell, warn_oversubscribed

    seeds = {s: i for i, s in enumerate(study.seeds)}
    todo = sorted([r for r in runs if not (Path(r[3].out) / "metrics.json").is_file()], key=lambda r: seeds[r[2]])
    log(f"study {study.name}: {len(runs)} runs, {len(runs) - len(todo)} already done, {workers} workers")
    threads = max(1, (os.cpu_count() or 1) // workers)
    warn_oversubscribed(workers, max(cfg.train.threads or threads for _, _, _, cfg in runs), log)
    bar = tqdm(total=len(todo), desc=f"{study.name} runs", disable=None if progress else True)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        jobs = {pool.submit(_run_cell, cfg.to_dict(), cfg.train.threads or threads): (v, c, s) for v, c, s, cfg in todo}
        for job in as_completed(jobs):
            job.result()
            bar.update()
            log(f"study {study.name}: {' '.join(map(str, jobs[job]))} done")
    bar.close()


def finished_runs(out: Path, study: Study):
    """``(variant, corpus, seed, config, metrics, records)`` of every finished run of a ``runs`` study."""
    from .train import read_epochs

    for variant, corpus, seed, cfg in study.run_configs(out):
        metrics_path = Path(cfg.out) / "metrics.json"
        if metrics_path.is_file():
            yield variant, corpus, seed, cfg, json.loads(metrics_path.read_text()), read_epochs(cfg.out)


def results_table(out: Path, study: Study) -> pd.DataFrame:
    rows = []
    for variant, corpus, seed, cfg, metrics, epochs in finished_runs(out, study):
        main = metrics["main_task"]
        test = metrics["test"][main]
        rows.append(
            {
                "variant": variant,
                "corpus": Path(corpus).name,
                "seed": seed,
                "tasks": ",".join(cfg.model.tasks),
                "pooling": cfg.model.pooling,
                "strategy": cfg.train.strategy,
                "train_fraction": cfg.data.train_fraction,
                "main": main,
                **{k: v for k, v in test.items() if isinstance(v, (int, float)) and k != "support"},
                "best_epoch": metrics["best_epoch"],
                "stopped": metrics.get("stopped"),  # runs made before early stopping have none
                "converged": metrics.get("converged"),
                "steps": metrics.get("steps"),
                "train_seconds": sum(e["train_seconds"] for e in epochs),
                "seconds": sum(e["train_seconds"] + e["eval_seconds"] for e in epochs),
            }
        )
    return pd.DataFrame(rows)


def dev_curves_table(out: Path, study: Study) -> pd.DataFrame:
    """The main task's dev score at every evaluation of every finished run (for ``plots.dev_curves``)."""
    rows = []
    for variant, corpus, seed, _cfg, metrics, records in finished_runs(out, study):
        main = metrics["main_task"]
        metric = main_metric_of(main)
        for r in records:
            if not r.get("dev"):
                continue
            rows.append(
                {
                    "corpus": Path(corpus).name,
                    "variant": variant,
                    "seed": seed,
                    "epochs_done": r.get("epochs_done", r["epoch"]),
                    "score": r["dev"][main][metric],
                    "selected": r["selected"],
                }
            )
    return pd.DataFrame(rows)


def summarise(out: Path, study: Study) -> pd.DataFrame:
    """``results.csv`` and ``summary.csv`` (mean and std over seeds per variant and corpus)."""

    results = results_table(out, study)
    results.to_csv(out / "results.csv", index=False)
    if not len(results):
        return results
    scores = [c for c in ("precision", "recall", "f1", "accuracy", "macro_f1") if c in results]
    summary = results.groupby(["corpus", "variant"], sort=False)[scores].agg(["mean", "std", "count"])
    summary.columns = [f"{a}_{b}" for a, b in summary.columns]
    summary = summary.reset_index()
    # how many of the seeds converged: a mean over non-converged runs is marked as such wherever it appears
    converged = results.groupby(["corpus", "variant"], sort=False)["converged"].apply(lambda c: int((c == True).sum()))  # noqa: E712
    summary["converged"] = converged.to_numpy()
    if study.baseline:
        from .compare import compare_study

        comparisons = compare_study(out, study)
        if len(comparisons):
            comparisons.to_csv(out / "comparisons.csv", index=False)
            plots.comparison_forest(comparisons, out / "comparison.png")
    curves = dev_curves_table(out, study)
    if len(curves):
        plots.dev_curves(curves, out / "dev_curves.png")
    summary.to_csv(out / "summary.csv", index=False)
    return summary
