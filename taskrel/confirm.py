"""After a tuning study: the tuned weights on test, beside the alternatives (``taskrel tune --confirm``).

Every arm is trained over the same seeds with the study's data and training
settings (train fraction, epochs, learning rate, batch size), selected on dev
and scored on test:

- ``single``: the main task alone;
- ``equal``: every task with weight 1;
- ``authors``: 0.8 / 0.1 / 0.05 / 0.05 (only when the tasks are the four paper tasks);
- ``tuned``: the study's best trial: its weights, or, for a study of a dynamic
  weighting, that method with its tuned parameters (and the pooling and lr, if
  they were tuned);
- ``uncertainty``, ``gradnorm``, ``pcgrad``: the dynamic methods of ``weighting``,
  starting from equal weights.

The seeds must leave out the one every trial trained with (the study's ``seed``,
``check_seeds``): at that seed the tuned arm is the selected trial itself, and
its test score keeps the luck its dev score was selected for.

Runs go to ``TUNE_DIR/confirm/ARM/seedK`` (a killed comparison resumes).
``runs.csv`` has a row per run; ``comparison.csv`` per arm the mean ± std of the
main task's test score, its Δ against ``single`` with the statistics of the
studies (``compare.py``: seeds paired, the hierarchical bootstrap over seeds and
blocks of 10 test sentences and the t-test over seeds both required, the hull of
their 95% intervals, Holm over the arms, the minimum
detectable effect, a verdict ``helps``/``hurts`` only where the adjusted p is
below 0.05 and every run converged, else ``undetermined``), how many runs
converged, and the mean training time per run.

The dynamic-method arms run with their defaults (``weighting_lr``,
``gradnorm_alpha``): they get no tuning budget of their own, while ``tuned`` had
the study's trials. A comparison of tuned static weights against them is fair
only once they get the same budget: a tuning study whose base weighting is
dynamic tunes that method's own parameters (``tune.DYNAMIC_SPACE``); the tables
say which arms were tuned.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .compare import paired_stats
from .config import AUTHORS_WEIGHTS, DEFAULT_TASKS, ConfigError, RunConfig, TuneConfig
from .logs import say
from .rundir import RunDir
from .significance import format_p, holm, prediction_stats, verdict
from .sources import all_tasks, load_sources
from .tune import best_overrides

ARMS = ("single", "equal", "authors", "tuned", "uncertainty", "gradnorm", "pcgrad")


def load_tune(folder) -> tuple[TuneConfig, dict]:
    """A tuning folder's settings (``tune.json``) and best trial (``best.json``)."""
    folder = Path(folder)
    for name in ("tune.json", "best.json"):
        if not (folder / name).is_file():
            raise ConfigError(f"{folder}: no {name}; run `taskrel tune` there first")
    tc = TuneConfig.from_record(json.loads((folder / "tune.json").read_text()))
    return tc, json.loads((folder / "best.json").read_text())


def arm_configs(tc: TuneConfig, best: dict, arms=ARMS) -> dict[str, RunConfig]:
    """The run configuration of each arm (before the seed and folder are set)."""
    base = tc.base
    tasks = base.model.tasks
    main = tasks[0]
    equal = {t: 1.0 for t in tasks}
    plan = {
        "single": ([main], {main: 1.0}, "static"),
        "equal": (tasks, equal, "static"),
        "tuned": (tasks, best["weights"], "static"),
        "uncertainty": (tasks, equal, "uncertainty"),
        "gradnorm": (tasks, equal, "gradnorm"),
        "pcgrad": (tasks, equal, "pcgrad"),
    }
    if sorted(tasks) == sorted(DEFAULT_TASKS):
        plan["authors"] = (tasks, dict(AUTHORS_WEIGHTS), "static")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ConfigError(f"unknown arm(s) {unknown}; known: {list(ARMS)}")
    configs = {}
    for arm in arms:
        if arm not in plan:
            continue
        arm_tasks, weights, weighting = plan[arm]
        model, train = replace(base.model, tasks=list(arm_tasks)), replace(base.train, weighting=weighting)
        if arm == "tuned":  # the best trial's weights, weighting and parameters, lr and pooling (where tuned)
            tuned = best_overrides(best)
            model = replace(model, **tuned.get("model", {}))
            configs[arm] = RunConfig(base.data, model, replace(train, **tuned["train"]))
            continue
        configs[arm] = RunConfig(base.data, model, replace(train, weights=dict(weights)))
    return configs


CONFIRM_SEEDS = 3  # how many seeds --confirm trains each arm with, unless told


def check_seeds(tc: TuneConfig, seeds) -> None:
    """Refuse confirmation seeds that include the seed the tuning trials trained with. The tuned arm at that seed
    is the best trial itself, chosen for its dev score among trials of about equal worth, and a seed's luck on
    dev carries to test (within an arm, seed to seed, dev and test F1 correlate: r 0.74 over 140 runs at 10%
    in 21 configurations, slope 1.0 on BC2GM: benchmarks/dev_test_luck.py, reports/statistics), so the tuned arm's
    score at that seed is biased upwards against every other arm."""
    tuned_on = tc.base.train.seed
    if tuned_on in {int(s) for s in seeds}:
        raise ConfigError(
            f"seeds {list(seeds)} include seed {tuned_on}, the seed every tuning trial trained with: the tuned "
            "settings there give the selected trial itself, whose test score keeps the dev luck it was selected "
            f"for; score tuned settings on other seeds (for example {default_seeds(tc)})"
        )


def default_seeds(tc: TuneConfig, n: int = CONFIRM_SEEDS) -> list[int]:
    """The first ``n`` seeds other than the one the tuning trials trained with."""
    return [s for s in range(1, n + 2) if s != tc.base.train.seed][:n]


def run_folder(out: Path, arm: str, seed: int) -> Path:
    return Path(out) / "confirm" / arm / f"seed{seed}"


def confirm(
    tc: TuneConfig, best: dict, out, seeds=None, arms=ARMS, progress: bool = True, log=say, samples=1000
) -> pd.DataFrame:
    """Train every missing (arm, seed) run, then write and return the comparison table. ``seeds``: by default
    ``default_seeds``; never the tuning trials' own (``check_seeds``)."""
    from tqdm.auto import tqdm

    from .train import train

    seeds = default_seeds(tc) if seeds is None else list(seeds)
    check_seeds(tc, seeds)
    out = Path(out)
    configs = arm_configs(tc, best, arms)
    jobs = [(arm, s) for s in seeds for arm in configs]
    bar = tqdm(jobs, desc="confirm runs", disable=None if progress else True)
    for arm, seed in bar:
        bar.set_postfix_str(f"{arm} seed {seed}")
        cfg = configs[arm]
        cfg = RunConfig(cfg.data, cfg.model, replace(cfg.train, seed=seed), str(run_folder(out, arm, seed)))
        train(cfg, resume=True, progress=False, log=lambda *_: None)
        main = cfg.model.main_task
        log(f"{arm} seed {seed}: test {main} {RunDir(cfg.out).score('test'):.4f}")
    return compare(tc, out, list(configs), list(seeds), log, samples)


def collect(out: Path, arms: list[str], seeds: list[int]) -> pd.DataFrame:
    """``runs.csv``: one row per finished (arm, seed) run."""
    rows = []
    for arm in arms:
        for seed in seeds:
            run = RunDir(run_folder(out, arm, seed))
            if not run.done:
                continue
            cfg = run.config
            rows.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "weighting": cfg["train"]["weighting"],
                    "start_weights": json.dumps(cfg["train"]["weights"]),
                    "final_weights": json.dumps({t: round(w, 4) for t, w in run.records[-1]["weights"].items()}),
                    "test_score": run.score("test"),
                    "dev_score": run.score("dev"),
                    "best_epoch": run.best_epoch,
                    "stopped": run.stopped,
                    "converged": run.converged,
                    "train_seconds": run.train_seconds,
                    "cpu_seconds": run.cpu_seconds,
                    "run_dir": str(run.path.relative_to(out)),
                }
            )
    return pd.DataFrame(rows)


def compare(
    tc: TuneConfig, out, arms: list[str], seeds: list[int], log=say, samples: int = 2000, alpha: float = 0.05
) -> pd.DataFrame:
    """Write ``confirm/runs.csv``, ``confirm/comparison.csv``, ``comparison.md`` and ``comparison.png``."""
    from .plots import arm_comparison

    out = Path(out)
    runs = collect(out, arms, seeds)
    folder = out / "confirm"
    folder.mkdir(parents=True, exist_ok=True)
    runs.to_csv(folder / "runs.csv", index=False)
    main = tc.base.model.main_task
    base = tc.base
    sources = load_sources(RunConfig(base.data, replace(base.model, tasks=[main]), replace(base.train, weights=None)))
    task = all_tasks(sources)[main]
    test = next(iter(sources.values())).test
    gold = [task.derive(s.tags) for s in test]
    docs = [s.doc for s in test]
    score = {(r.arm, r.seed): r.test_score for r in runs.itertuples()}
    converged = {(r.arm, r.seed): bool(r.converged) for r in runs.itertuples()}
    stats = {
        (r.arm, r.seed): prediction_stats(out / r.run_dir / "test_predictions.jsonl", main, task, gold)
        for r in runs.itertuples()
    }
    rows = []
    for arm in arms:
        mine = runs[runs["arm"] == arm]
        if not len(mine):
            continue
        paired = [s for s in seeds if (arm, s) in score and ("single", s) in score]
        row = {
            "arm": arm,
            "weighting": mine["weighting"].iloc[0],
            "n_seeds": len(mine),
            "test_mean": mine["test_score"].mean(),
            "test_std": mine["test_score"].std(ddof=1) if len(mine) > 1 else math.nan,
            "dev_mean": mine["dev_score"].mean(),
            "tuned": arm == "tuned",
            "converged": f"{int(mine['converged'].astype(bool).sum())}/{len(mine)}",
            "delta_vs_single": math.nan,
            "ci_low": math.nan,
            "ci_high": math.nan,
            "p": math.nan,
            "p_bootstrap": math.nan,
            "p_floor": False,
            "mde": math.nan,
            "p_seeds": math.nan,
            "aso_eps": math.nan,
            "paired_seeds": len(paired) if arm != "single" else 0,
            "all_converged": all(converged[(arm, s)] and converged[("single", s)] for s in paired),
            "train_seconds_per_run": mine["train_seconds"].mean(),
            "cpu_seconds_per_run": mine["cpu_seconds"].mean(),
        }
        if arm != "single" and paired:
            st = paired_stats(
                [score[(arm, s)] for s in paired],
                [score[("single", s)] for s in paired],
                [stats[(arm, s)] for s in paired],
                [stats[("single", s)] for s in paired],
                samples,
                "block:10",
                docs,
            )
            row |= {k: st[k] for k in ("ci_low", "ci_high", "p", "p_bootstrap", "p_floor", "mde", "p_seeds", "aso_eps")}
            row |= {"delta_vs_single": st["delta"]}
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        table["p_adjusted"] = holm(table["p"])
        table["verdict"] = [
            "–"
            if r.arm == "single"
            else verdict(r.delta_vs_single, r.p_adjusted, r.all_converged, r.paired_seeds, alpha)
            for r in table.itertuples()
        ]
    table.to_csv(folder / "comparison.csv", index=False)
    (folder / "comparison.md").write_text(comparison_markdown(table, main, task.main_metric))
    if len(runs):
        arm_comparison(runs, folder / "comparison.png", f"test {main} {task.main_metric}")
    log(f"wrote {folder / 'comparison.csv'}, comparison.md and comparison.png")
    return table


def comparison_markdown(table: pd.DataFrame, main: str, metric: str) -> str:
    """The comparison as a Markdown table (scores and Δ in points)."""
    lines = [
        f"| arm | weighting | tuned | seeds | converged | test {main} {metric} | dev | Δ vs single (95% CI) "
        "| p | p Holm | p (bootstrap) | p (seeds) | ASO ε | MDE | verdict | train s/run | CPU s/run |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in table.itertuples():
        std = f" ± {100 * r.test_std:.2f}" if np.isfinite(r.test_std) else ""
        delta = (
            f"{100 * r.delta_vs_single:+.2f} ({100 * r.ci_low:+.2f}, {100 * r.ci_high:+.2f})"
            if np.isfinite(r.delta_vs_single)
            else "–"
        )
        mde = f"{100 * r.mde:.2f}" if np.isfinite(r.mde) else "–"
        lines.append(
            f"| {r.arm} | {r.weighting} | {'yes' if r.tuned else 'no'} | {r.n_seeds} | {r.converged} "
            f"| {100 * r.test_mean:.2f}{std} | {100 * r.dev_mean:.2f} | {delta} "
            f"| {format_p(r.p, r.p_floor)} | {format_p(r.p_adjusted)} | {format_p(r.p_bootstrap)} "
            f"| {format_p(r.p_seeds)} "
            f"| {f'{r.aso_eps:.2f}' if np.isfinite(r.aso_eps) else '–'} | {mde} "
            f"| {r.verdict} | {r.train_seconds_per_run:.1f} "
            f"| {f'{r.cpu_seconds_per_run:.0f}' if np.isfinite(r.cpu_seconds_per_run) else '–'} |"
        )
    return "\n".join(lines) + "\n"
