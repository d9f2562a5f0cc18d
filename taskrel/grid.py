"""The pairwise transfer grid: which task helps which.

Cells are every task alone and every ordered pair (M, S): M trained jointly with
S and scored on M's own metric (entity F1 for token tasks, accuracy for sentence
tasks). The run of M alone is shared by all pairs with main task M. A grid may
name its pairs (``pairs``, e.g. a confirmation of two transfers on new seeds):
then only those are trained, beside their main tasks alone. Every cell
is a core-trainer run directory under ``GRID_DIR/cells/``; a grid started again
skips finished cells and resumes killed ones from their last epoch.

Outputs: ``grid.json`` (settings and command), ``runs.csv`` (one row per cell
and seed), ``transfer.csv`` (mean Δ, std, p-values per pair), ``heatmap.png``
and ``learning_curves.png``. With ``noise_threads`` the grid also trains every
task alone at its first seed with that many threads (``cells/TASK/seed1-threadsN``):
``noise.csv`` then sets the numerical noise floor (same seed, another thread
count) beside the seed spread.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .compare import paired_stats
from .config import GRACE, ConfigError, GridConfig, RunConfig, main_tasks, ordered_pairs
from .logs import say
from .rundir import RunDir, record_study
from .significance import (
    bootstrap_summary,
    both_levels,
    combined_level,
    holm,
    prediction_stats,
    seed_level,
    verdict,
)
from .sources import all_tasks, load_sources
from .tasks import TaskSpec
from .workers import pool as worker_pool


@dataclass(frozen=True)
class Cell:
    main: str
    secondary: str | None
    seed: int
    threads: int | None = None  # a noise-floor cell: trained with this thread count instead of the grid's

    @property
    def tasks(self) -> list[str]:
        return [self.main] + ([self.secondary] if self.secondary else [])

    @property
    def name(self) -> str:
        return f"{self.main}+{self.secondary}" if self.secondary else self.main

    @property
    def folder(self) -> str:
        noise = f"-threads{self.threads}" if self.threads else ""
        return f"cells/{'+'.join(TaskSpec.parse(t).label for t in self.tasks)}/seed{self.seed}{noise}"


def grid_cells(
    tasks: list[str], seeds: list[int], noise_threads: int | None = None, pairs: list[str] | None = None
) -> list[Cell]:
    """Singles first (each main task alone: its pairs' baseline), then the ordered pairs (``pairs``, 'MAIN|SECONDARY'
    each; default every ordered pair of ``tasks``), then (with ``noise_threads``) every main task alone at the first
    seed with that thread count."""
    ordered = ordered_pairs(tasks, pairs)
    mains = main_tasks(ordered)
    singles = [Cell(m, None, s) for s in seeds for m in mains]
    cells = [Cell(m, x, s) for s in seeds for m, x in ordered]
    noise = [Cell(m, None, seeds[0], noise_threads) for m in mains] if noise_threads else []
    return singles + cells + noise


def all_cells(grid: GridConfig) -> list[Cell]:
    """Every cell the grid trains (``grid_cells`` with its noise-floor cells)."""
    return grid_cells(grid.tasks, grid.seeds, grid.noise_threads, grid.pairs)


def cell_config(grid: GridConfig, cell: Cell, out: Path) -> RunConfig:
    w_main, w_sec = grid.pair_weights
    weights = {cell.main: w_main} | ({cell.secondary: w_sec} if cell.secondary else {})
    base = grid.base
    return RunConfig(
        replace(base.data),
        replace(base.model, tasks=cell.tasks),
        replace(base.train, seed=cell.seed, weights=weights, threads=cell.threads or base.train.threads),
        str(out / cell.folder),
    )


def warn_oversubscribed(workers: int, threads: int, log=say) -> None:
    """Say so when workers x threads exceed the cores: busy-waiting threads then slow every run many times over
    (seen on 2 cores: 2 workers x 2 threads in bf16 trained several times slower than one worker alone)."""
    cores = os.cpu_count() or 1
    if workers > 1 and workers * threads > cores:
        log(
            f"warning: {workers} workers x {threads} threads on {cores} cores; expect a large slowdown. "
            f"The thread count is a study setting (it changes the numbers): use --workers {max(1, cores // threads)}"
        )


def _thread_groups(cells: list[Cell], threads: int | None) -> list[tuple[int | None, list[Cell]]]:
    """``(thread count, cells)`` runs of consecutive cells with one thread count (the grid's, ``threads``,
    unless the cell has its own), in order."""
    groups = []
    for cell in cells:
        n = cell.threads or threads
        if groups and groups[-1][0] == n:
            groups[-1][1].append(cell)
        else:
            groups.append((n, [cell]))
    return groups


def is_done(out: Path, cell: Cell) -> bool:
    return RunDir(out / cell.folder).done


def _run_cell(cfg_dict: dict, threads: int | None, test: bool = True) -> str:
    """Train one cell (in a worker process or inline); finished cells return at once. ``test`` False: the test
    split is never read (``train``)."""
    import torch

    from .train import train

    cfg = RunConfig.from_dict(cfg_dict)
    if threads:
        torch.set_num_threads(threads)
        cfg.train.threads = threads
    train(cfg, resume=True, progress=False, log=lambda *_: None, test=test)
    return cfg.out


def cell_score(out: Path, cell: Cell) -> float:
    """A finished cell's test score on its main task's own metric."""
    return RunDir(out / cell.folder).score("test", cell.main)


def _write_grid_json(grid: GridConfig, out: Path) -> None:
    record_study(out / "grid.json", grid, free=("workers", "contrasts"))


def _queue_worker(grid_dict: dict, out: str, storage: str, study: str, threads: int | None, log=None, **queue) -> int:
    """One worker on the shared queue (see ``workqueue``); returns the cells it ran."""
    from .workqueue import open_study, work

    grid, out = GridConfig.from_dict(grid_dict), Path(out)
    cells = {c.folder: c for c in all_cells(grid)}

    def run(name: str) -> float:
        cell = cells[name]
        _run_cell(cell_config(grid, cell, out).to_dict(), cell.threads or threads)
        return cell_score(out, cell)

    heartbeat = {k: queue.pop(k) for k in ("heartbeat", "grace") if k in queue}
    handle = open_study(storage, study, **heartbeat)
    log = log or (lambda *_: None)
    return work(
        handle,
        list(cells),
        run,
        out / "queue_log.jsonl",
        log=log,
        grace=heartbeat.get("grace", GRACE),
        done=lambda name: is_done(out, cells[name]),
        **queue,
    )


def run_grid(
    grid: GridConfig,
    out,
    progress: bool = True,
    log=say,
    storage: str | None = None,
    study: str | None = None,
    heartbeat: int | None = None,
    grace: int | None = None,
) -> pd.DataFrame:
    """Train every missing cell, then write the tables and figures; returns the transfer table.

    With ``storage`` (an Optuna RDB URL) the cells are taken from a queue shared
    with every other process that joins the same study (see ``workqueue``);
    ``heartbeat`` and ``grace`` (seconds) say how often a worker beats and how
    long a silent one keeps its cell.
    """
    beat = {k: v for k, v in (("heartbeat", heartbeat), ("grace", grace)) if v is not None}
    out = Path(out)
    if grid.bootstrap_unit == "document":  # checked before hours of training, not at the analysis
        for src in load_sources(grid.base).values():
            if any(sent.doc is None for sent in src.test):
                raise ConfigError(f"bootstrap unit 'document': the test file of {src.key} has no -DOCSTART- lines")
    out.mkdir(parents=True, exist_ok=True)
    _write_grid_json(grid, out)
    cells = all_cells(grid)
    todo = [c for c in cells if not is_done(out, c)]
    log(f"grid {out}: {len(cells)} cells, {len(cells) - len(todo)} already done, {len(todo)} to run")
    workers = max(1, min(grid.workers, len(todo) or 1))
    threads = grid.base.train.threads  # one count for every cell, whatever the number of workers (CELL_THREADS)
    warn_oversubscribed(workers, threads, log)
    if storage:
        name = study or f"taskrel-grid-{out.resolve().name}"
        if workers == 1:
            _queue_worker(grid.to_dict(), str(out), storage, name, threads, log, **beat)
        else:
            with worker_pool(workers) as pool:
                jobs = [
                    pool.submit(_queue_worker, grid.to_dict(), str(out), storage, name, threads, **beat)
                    for _ in range(workers)
                ]
                for job in as_completed(jobs):
                    job.result()
        return analyse(out, grid, log)
    from .estimate import Pace

    bar = tqdm(total=len(todo), desc="grid cells", disable=None if progress else True)
    pace = Pace([cell_config(grid, c, out).out for c in todo], "cells", workers)

    def done(cell: Cell, k: int) -> None:  # k cells of todo finished (a disabled bar does not count)
        bar.update()
        line = pace.line(cell_config(grid, cell, out).out)
        log(f"{cell.name} seed {cell.seed}: test {cell.main} {cell_score(out, cell):.4f} ({line})")

    if workers == 1:
        for k, cell in enumerate(todo, 1):
            bar.set_postfix_str(f"{cell.name} seed {cell.seed}")
            _run_cell(cell_config(grid, cell, out).to_dict(), cell.threads or threads)
            done(cell, k)
    else:
        k = 0
        for n, group in _thread_groups(todo, threads):
            # the noise-floor cells' other thread count: as many at once as the cores take (all cells last)
            at_once = workers if n == threads else max(1, min(workers, (os.cpu_count() or 1) // n))
            with worker_pool(at_once) as pool:
                jobs = {pool.submit(_run_cell, cell_config(grid, c, out).to_dict(), n): c for c in group}
                for job in as_completed(jobs):
                    job.result()
                    k += 1
                    done(jobs[job], k)
    bar.close()
    return analyse(out, grid, log)


# ---------------------------------------------------------------- tables


def _flat_scores(prefix: str, scores: dict | None) -> dict:
    row = {}
    for task, s in (scores or {}).items():
        for key, value in s.items():
            if isinstance(value, (int, float)):
                row[f"{prefix}_{task}_{key}"] = value
    return row


def collect_runs(out: Path, grid: GridConfig) -> pd.DataFrame:
    """``runs.csv``: one tidy row per finished cell and seed."""
    rows = []
    for cell in grid_cells(grid.tasks, grid.seeds, pairs=grid.pairs):
        run = RunDir(out / cell.folder)
        if not run.done:
            continue
        cfg = run.config
        weights = cfg["train"]["weights"]
        rows.append(
            {
                "main": cell.main,
                "secondary": cell.secondary or "",
                "seed": cell.seed,
                "main_weight": weights[cell.main],
                "secondary_weight": weights.get(cell.secondary, math.nan) if cell.secondary else math.nan,
                "train_fraction": cfg["data"]["train_fraction"],
                "epochs": cfg["train"]["epochs"],
                "encoder": cfg["model"]["encoder"],
                "metric": run.metric(cell.main),
                "score": run.score("test", cell.main),
                "dev_score": run.score("dev", cell.main),
                "best_epoch": run.best_epoch,
                "stopped": run.stopped,
                "converged": run.converged,
                "stop_gap": run.stop_gap,
                "steps": run.steps,
                "threads": run.threads,
                "aulc": run.aulc(task=cell.main),
                "epochs_run": run.epochs_run,
                "train_seconds": run.train_seconds,
                "seconds": run.seconds,
                "cpu_seconds": run.cpu_seconds,
                **_flat_scores("test", run.scores("test")),
                **_flat_scores("dev", run.scores("dev")),
                "run_dir": str(run.path.relative_to(out)),
            }
        )
    runs = pd.DataFrame(rows)
    per_task = [c for c in runs.columns if c.startswith(("test_", "dev_")) and c != "dev_score"]
    first = [c for c in runs.columns if c not in per_task and c != "run_dir"]
    scores = sorted(c for c in per_task if c.startswith("test_")) + sorted(c for c in per_task if c.startswith("dev_"))
    return runs[first + scores + ["run_dir"]] if len(runs) else runs


def transfer_table(out: Path, grid: GridConfig, runs: pd.DataFrame, boots: dict | None = None) -> pd.DataFrame:
    """``transfer.csv``: per ordered pair, final and speed transfer per seed, their means, and the verdict.

    Final transfer ``mean_delta``: Δ of the dev-selected test scores. It is
    tested at two levels, both required (``significance.both_levels``): the
    hierarchical paired bootstrap (seeds, then blocks of 10 test sentences:
    ``p_bootstrap``) and a t-test of the per-seed Δ (``p_seeds``); ``p`` is the
    larger, the interval the hull of both, and ``p_adjusted`` is Holm of ``p``
    over the grid's pairs (one family: one grid at one pair weight);
    ``verdict`` is ``helps``/``hurts`` only where the adjusted p is below
    alpha, every run of both arms converged and there are two seeds or more;
    else ``undetermined``. ``significant`` means a verdict other than
    undetermined. ``aso_eps``: Almost Stochastic Order over the seed scores, a
    second opinion the verdicts do not use. Speed transfer ``delta_aulc``: Δ of the area under the main
    task's dev curve over the longer run's epochs (``aulc``), mean over seeds. ``boots``, when given, receives
    each pair's seeds, bootstrap result and per-seed Δ (``contrast_table`` reads them).
    """
    sources = load_sources(grid.base)
    tasks = all_tasks(sources)
    test_of = {spec: src.test for src in sources.values() for spec in src.tasks}
    rows = []
    score = {(r.main, r.secondary, r.seed): r.score for r in runs.itertuples()} if len(runs) else {}
    conv = {(r.main, r.secondary, r.seed): r.converged for r in runs.itertuples()} if len(runs) else {}
    gold_of = {m: [tasks[m].derive(s.tags) for s in test_of[m]] for m in grid.mains}
    for m, x in grid.ordered_pairs:
        gold = gold_of[m]
        seeds = [s for s in grid.seeds if (m, x, s) in score and (m, "", s) in score]
        if not seeds:
            continue
        preds = lambda cell: out / cell.folder / "test_predictions.jsonl"  # noqa: E731
        st = paired_stats(
            [score[(m, x, s)] for s in seeds],
            [score[(m, "", s)] for s in seeds],
            [prediction_stats(preds(Cell(m, x, s)), m, tasks[m], gold) for s in seeds],
            [prediction_stats(preds(Cell(m, None, s)), m, tasks[m], gold) for s in seeds],
            grid.bootstrap_samples,
            grid.bootstrap_unit,
            [s.doc for s in test_of[m]],
        )
        if boots is not None and st["boot"] is not None:
            boots[(m, x)] = (seeds, st["boot"], st["deltas"])
        speed = []
        converged = True
        for s in seeds:
            run_w, run_a = RunDir(out / Cell(m, x, s).folder), RunDir(out / Cell(m, None, s).folder)
            horizon = max(p[0] for p in run_w.dev_curve(m) + run_a.dev_curve(m))
            speed.append(run_w.aulc(horizon, m) - run_a.aulc(horizon, m))
            converged &= bool(conv.get((m, x, s))) and bool(conv.get((m, "", s)))
        rows.append(
            {
                "main": m,
                "secondary": x,
                "metric": tasks[m].main_metric,
                "mean_delta": st["delta"],
                "std_delta": st["delta_std"],
                **{k: st[k] for k in ("p", "p_bootstrap", "p_floor", "ci_low", "ci_high", "mde", "p_seeds", "aso_eps")},
                "n_seeds": len(seeds),
                "converged": converged,
                "deltas": ";".join(f"{d:.6f}" for d in st["deltas"]),
                "delta_aulc": float(np.mean(speed)),
                "deltas_aulc": ";".join(f"{d:.6f}" for d in speed),
            }
        )
    table = pd.DataFrame(rows)
    if len(table):
        table["p_adjusted"] = holm(table["p"])
        table["verdict"] = [
            verdict(d, p, c, n, grid.alpha)
            for d, p, c, n in zip(table["mean_delta"], table["p_adjusted"], table["converged"], table["n_seeds"])
        ]
        table["significant"] = table["verdict"] != "undetermined"
    return table


def contrast_table(grid: GridConfig, transfer: pd.DataFrame, boots: dict) -> pd.DataFrame:
    """``contrasts.csv``: per contrast ``A|B vs C|D`` (``grid.contrasts``), the difference of the two final
    transfers Δ(A|B) − Δ(C|D), tested at both levels (``significance.both_levels``). Bootstrap: from the pairs'
    draws. Tasks of one corpus share the test sentences, and both pairs were bootstrapped with the same generator
    seed over the same seeds and test units, so the b-th draws come from the same resample and their difference
    is a joint bootstrap; across corpora (other test sentences) the draws are combined independently
    (``pooled_bootstrap``'s shuffle). Seed level: a t-test of the per-seed differences where the seeds are
    shared, else the two seed levels combined (``combined_level``, Welch–Satterthwaite). Holm
    over the contrasts (a family of its own); ``verdict`` says which transfer is larger only where the adjusted
    p is below alpha and every run of the four cells converged, else ``undetermined``."""
    corpus = lambda spec: TaskSpec.parse(spec).corpus_key(grid.base.data.data)  # noqa: E731
    by_pair = {(r.main, r.secondary): r for r in transfer.itertuples()} if len(transfer) else {}
    rows = []
    for first, second in grid.contrasts:
        a, b = tuple(first.split("|")), tuple(second.split("|"))
        if a not in by_pair or b not in by_pair or a not in boots or b not in boots:
            continue  # a pair not finished yet
        (seeds_a, boot_a, deltas_a), (seeds_b, boot_b, deltas_b) = boots[a], boots[b]
        ra, rb = by_pair[a], by_pair[b]
        same_test = corpus(a[0]) == corpus(b[0]) and seeds_a == seeds_b
        draws_b = boot_b["draws"] if same_test else np.random.default_rng(1).permutation(boot_b["draws"])
        summary = bootstrap_summary(ra.mean_delta - rb.mean_delta, boot_a["draws"] - draws_b)
        if same_test:  # the same seeds of the same main-task runs: the per-seed differences are paired
            level = seed_level([x - y for x, y in zip(deltas_a, deltas_b)])
        else:
            level = combined_level([seed_level(deltas_a), seed_level(deltas_b)], [1, -1])
        seeds = min(ra.n_seeds, rb.n_seeds)
        both = both_levels(summary, level, seeds)
        row = {
            "first": first,
            "second": second,
            "metric_first": ra.metric,
            "metric_second": rb.metric,
            "delta_first": ra.mean_delta,
            "delta_second": rb.mean_delta,
            "difference": summary["delta"],
            **both,
            "joint": same_test,
            "seeds": seeds,
            "converged": bool(ra.converged) and bool(rb.converged),
        }
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        table["p_adjusted"] = holm(table["p"])
        table["verdict"] = [
            {"helps": "first larger", "hurts": "second larger"}.get(verdict(d, p, c, n, grid.alpha), "undetermined")
            for d, p, c, n in zip(table["difference"], table["p_adjusted"], table["converged"], table["seeds"])
        ]
    return table


def noise_table(out: Path, grid: GridConfig) -> pd.DataFrame:
    """``noise.csv``: per task, the seed spread alone (std over seeds) beside the numerical noise floor: the
    same seed's score with the grid's thread count and with ``noise_threads`` (their difference), and the
    share of test words whose label changed. Empty without ``noise_threads`` or before the cells finish."""
    rows = []
    for m in grid.mains if grid.noise_threads else []:
        seed = grid.seeds[0]
        base, noise = (
            RunDir(out / Cell(m, None, seed).folder),
            RunDir(out / Cell(m, None, seed, grid.noise_threads).folder),
        )
        if not (base.done and noise.done):
            continue
        alone = [RunDir(out / Cell(m, None, s).folder) for s in grid.seeds]
        scores = [r.score("test", m) for r in alone if r.done]
        rows.append(
            {
                "main": m,
                "metric": base.metric(m),
                "seed": seed,
                "threads": base.threads,
                "noise_threads": noise.threads,
                "score": base.score("test", m),
                "noise_score": noise.score("test", m),
                "threads_delta": noise.score("test", m) - base.score("test", m),
                "labels_changed": labels_changed(base, noise, m),
                "seed_std": float(np.std(scores, ddof=1)) if len(scores) > 1 else math.nan,
                "n_seeds": len(scores),
                "converged": bool(base.converged) and bool(noise.converged),
            }
        )
    return pd.DataFrame(rows)


def labels_changed(a: RunDir, b: RunDir, task: str) -> float:
    """Share of the test labels of ``task`` (a word's tag, or a sentence's class) that differ between two runs."""
    if not (a.predictions.is_file() and b.predictions.is_file()):
        return math.nan

    def labels(run: RunDir) -> list:
        rows = [json.loads(line)[task] for line in run.predictions.read_text().splitlines()]
        return [y for row in rows for y in (row if isinstance(row, list) else [row])]

    xa, xb = labels(a), labels(b)
    return float(np.mean([x != y for x, y in zip(xa, xb)])) if len(xa) == len(xb) and xa else math.nan


def analyse(out: Path, grid: GridConfig, log=say) -> pd.DataFrame:
    """Write ``runs.csv``, ``transfer.csv``, ``contrasts.csv``, ``noise.csv``, ``stop_check.csv`` and
    ``patience_sweep.csv`` (per main task, ``stopcheck.py``) and the figures from whatever cells are finished."""
    from .plots import heatmap, learning_curves

    out = Path(out)
    runs = collect_runs(out, grid)
    runs.to_csv(out / "runs.csv", index=False)
    boots: dict = {}
    transfer = transfer_table(out, grid, runs, boots)
    transfer.to_csv(out / "transfer.csv", index=False)
    contrasts = contrast_table(grid, transfer, boots)
    if len(contrasts):
        contrasts.to_csv(out / "contrasts.csv", index=False)
    noise = noise_table(out, grid)
    if len(noise):
        noise.to_csv(out / "noise.csv", index=False)
    if len(runs):
        from .stopcheck import patience_sweep, stop_check

        cells = runs.assign(variant=runs["main"] + "|" + runs["secondary"].fillna(""))
        checked = stop_check(cells, score="score", by="main")  # per main task: each has its own metric
        if len(checked):
            checked.to_csv(out / "stop_check.csv", index=False)
        sweep = patience_sweep(
            [
                {"main": r.main, "variant": r.variant, "seed": r.seed, "patience": grid.base.train.patience,
                 "min_epochs": grid.base.train.min_epochs, "curve": RunDir(out / r.run_dir).dev_curve(r.main)}
                for r in cells.itertuples()
            ],
            by="main",
        )  # fmt: skip
        if len(sweep):
            sweep.to_csv(out / "patience_sweep.csv", index=False)
    if len(transfer):
        heatmap(transfer, grid.tasks, out / "heatmap.png", grid.alpha)
        heatmap(transfer, grid.tasks, out / "heatmap_speed.png", grid.alpha, value="delta_aulc")
    if len(runs):
        learning_curves(out, grid, runs, out / "learning_curves.png")
    log(f"wrote {out / 'runs.csv'}, {out / 'transfer.csv'} and figures")
    return transfer


def load_grid(out) -> GridConfig:
    path = Path(out) / "grid.json"
    if not path.is_file():
        raise ConfigError(f"{out}: not a grid folder (no grid.json)")
    return GridConfig.from_dict(json.loads(path.read_text()))


@dataclass
class GridResults:
    """A finished (or partly finished) grid, as the notebooks and reports read it."""

    folder: Path
    grid: GridConfig
    runs: pd.DataFrame
    transfer: pd.DataFrame
    contrasts: pd.DataFrame  # empty without ``grid.contrasts``

    def alone(self) -> pd.DataFrame:
        """Each task's test score alone: mean, std and count over seeds, with its metric."""
        alone = self.runs[self.runs["secondary"] == ""]
        table = alone.groupby("main", sort=False)["score"].agg(["mean", "std", "count"])
        table.insert(0, "metric", alone.groupby("main", sort=False)["metric"].first())
        return table


def load_results(folder) -> GridResults:
    """The settings and tables of a grid folder (``runs.csv``, ``transfer.csv`` and ``contrasts.csv``; the
    first two made again if missing)."""
    folder = Path(folder)
    grid = load_grid(folder)
    if not (folder / "transfer.csv").is_file():
        analyse(folder, grid, log=lambda *_: None)
    runs = pd.read_csv(folder / "runs.csv")
    runs["secondary"] = runs["secondary"].fillna("")
    contrasts = pd.read_csv(folder / "contrasts.csv") if (folder / "contrasts.csv").is_file() else pd.DataFrame()
    return GridResults(folder, grid, runs, pd.read_csv(folder / "transfer.csv"), contrasts)
