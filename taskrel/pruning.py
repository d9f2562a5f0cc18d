"""What pruning saved in a tuning study, measured (``taskrel tune --measure-pruning``).

Every pruned trial is trained again, unpruned, with the same parameters and
seed, to the study's full number of epochs (dev only, as in tuning), under
``TUNE_DIR/unpruned/NNNN``. Then, over the study's finished trials:

- epochs and training seconds with pruning (as the study ran them) against
  without (completed trials plus the unpruned re-runs);
- the best dev score reached by each, and how many pruned trials would have
  beaten the best completed one;
- a check that each re-run reproduces the pruned trial's dev scores for the
  epochs that trial ran (the trainer is deterministic for a seed, so it must).

Written to ``pruning.json`` (summary) and ``pruning.csv`` (one row per trial).
With ``continue_pruned`` a pruned trial goes on from its last checkpoint
instead (cheaper; its pruned epochs are then copied, not reproduced).

``replay_completed`` is the check that costs nothing: the study's own pruner
asked again, at every evaluation it was asked about, about each *completed*
trial's dev curve, against the other completed trials. It says which of the
trials that ran to the end the rule would have stopped, and what the best
dev score would have been without them (the tuning report prints it).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from .config import RunConfig, TuneConfig
from .logs import say
from .rundir import CHECKPOINT, PRUNED, read_records, write_json
from .tasks import TaskSpec

CONTINUED = "continued_from_checkpoint"  # marker file in a re-run folder


def completed_curves(tc: TuneConfig, folder) -> dict:
    """``{folder number: (run, [(record, evaluation, dev score), ...])}`` of every trial of a tuning folder that
    ran to the end: what ``replay_completed`` replays (read once, replayed under as many rules as asked)."""
    from .rundir import RunDir

    main = tc.base.model.main_task
    metric = TaskSpec.parse(main).main_metric
    curves = {}
    for path in sorted((Path(folder) / "trials").glob("[0-9]" * 4)):
        run = RunDir(path)
        if run.done and not run.pruned:
            scored = [r for r in run.records if r.get("dev")]
            curves[int(path.name)] = (run, [(r, r.get("eval", r["epoch"]), r["dev"][main][metric]) for r in scored])
    return curves


def replay_completed(tc: TuneConfig, folder, curves: dict | None = None) -> pd.DataFrame:
    """Each completed trial of a tuning folder, asked about again by the study's own pruner (``make_pruner``) at
    every evaluation where the study asks (``may_prune``), with the other completed trials as the reference.

    One row per completed trial: ``trial`` (its folder's number under ``trials/``: a trial that took over a
    killed one goes on in the killed trial's folder, so this can be one below Optuna's number), its ``dev``
    score (the selected epoch's), the ``evaluations`` it ran, ``references`` (the other completed trials it is
    judged against; the median pruner acts only from ``prune_startup`` of them), ``pruned_at`` (the first
    evaluation at which the pruner would have stopped it; NaN: never) and ``best_so_far`` there. This is a
    leave-one-out replay: in the study a trial was judged only against the trials completed before it, so the
    replay judges against more (and, under TPE, usually better) trials than the study did. Only the median
    pruner is replayed (Hyperband's brackets follow the study's own trials); for any other pruner the table is
    empty.
    """
    from .tune import make_pruner, may_prune

    columns = ["trial", "dev", "evaluations", "references", "pruned_at", "best_so_far"]
    if tc.pruner != "median":
        return pd.DataFrame(columns=columns)
    curves = completed_curves(tc, folder) if curves is None else curves
    pruner = make_pruner(tc)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one in-memory study per trial
    rows = []
    for number, (run, curve) in curves.items():
        study = optuna.create_study(direction="maximize")
        for other, (_, points) in curves.items():
            if other != number:
                study.add_trial(
                    optuna.trial.create_trial(
                        value=max(v for _, _, v in points), intermediate_values={s: v for _, s, v in points}
                    )
                )
        row = {
            "trial": number,
            "dev": run.score("dev"),
            "evaluations": len(curve),
            "references": len(curves) - 1,
            "pruned_at": np.nan,
            "best_so_far": np.nan,
        }
        for i, (record, step, _) in enumerate(curve):
            if not may_prune(tc, run.run_config, record):
                continue
            seen = {s: v for _, s, v in curve[: i + 1]}
            asked = optuna.trial.create_trial(state=TrialState.RUNNING, intermediate_values=seen)
            if pruner.prune(study, asked):
                row.update(pruned_at=step, best_so_far=max(seen.values()))
                break
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


MARGINS = (0.01, 0.02, 0.03)  # the margins the tuning report replays beside the study's own (dev score)


def margin_replay(tc: TuneConfig, folder, margins=MARGINS, curves: dict | None = None) -> pd.DataFrame:
    """``replay_completed`` under the study's own ``prune_margin`` and under each of ``margins``: per margin, how
    many completed trials it would have stopped, whether it keeps the best of them, the best it keeps, and the
    evaluations it would have saved on them (the cost side; pruned trials' own savings are not counted)."""
    columns = ["margin", "stopped", "completed", "keeps_best", "kept_best", "evaluations_saved", "evaluations"]
    if tc.pruner != "median":
        return pd.DataFrame(columns=columns)
    rows = []
    curves = completed_curves(tc, folder) if curves is None else curves
    for margin in sorted({tc.prune_margin, *margins}):
        replay = replay_completed(replace(tc, prune_margin=margin), folder, curves)
        if replay.empty:
            return pd.DataFrame(columns=columns)
        stopped = replay["pruned_at"].notna()
        kept = replay.loc[~stopped, "dev"]
        saved = (replay["evaluations"] - replay["pruned_at"]).where(stopped, 0)
        rows.append(
            {
                "margin": margin,
                "stopped": int(stopped.sum()),
                "completed": len(replay),
                "keeps_best": bool(len(kept)) and kept.max() == replay["dev"].max(),
                "kept_best": kept.max() if len(kept) else np.nan,
                "evaluations_saved": int(saved.sum()),
                "evaluations": int(replay["evaluations"].sum()),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def seed_noise(runs, step: int) -> float:
    """The standard deviation (ddof 1), across ``runs`` of one setting that differ only in their seed, of their best
    dev score by evaluation ``step`` (a run that stopped before it: its best): the noise that a pruner asked there
    cannot see past, and so what ``prune_margin`` should be set from."""
    from .rundir import RunDir

    bests = []
    for path in runs:
        run = RunDir(path)
        main = run.run_config.model.main_task
        metric = TaskSpec.parse(main).main_metric
        curve = [r["dev"][main][metric] for r in run.records if r.get("dev") and r.get("eval", r["epoch"]) <= step]
        if not curve:
            raise ValueError(f"{path}: no dev evaluation up to evaluation {step}")
        bests.append(max(curve))
    if len(bests) < 2:
        raise ValueError(f"seed noise needs at least 2 runs, got {len(bests)}")
    return float(np.std(bests, ddof=1))


def _all_or_none(flags: pd.Series) -> bool | None:
    flags = flags.dropna()
    return bool(flags.all()) if len(flags) else None


def _seconds(records: list[dict]) -> float:
    return float(sum(r["train_seconds"] + r["eval_seconds"] for r in records))


def measure_pruning(
    tc: TuneConfig,
    out,
    storage: str | None = None,
    name: str = "taskrel-tune",
    progress=True,
    log=say,
    continue_pruned: bool = False,
) -> dict:
    """Re-run every pruned trial to the end and write ``pruning.json``/``pruning.csv``; returns the summary.

    ``continue_pruned``: go on from the checkpoint a pruned trial left (only the
    missing epochs are trained; resuming gives the same numbers as an unbroken
    run) instead of training it again from scratch.
    """
    from tqdm.auto import tqdm

    from .train import train
    from .tune import open_study, trial_config, trial_dir

    out = Path(out)
    study = open_study(tc, out, storage, name)
    main = tc.base.model.main_task
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    rows = []
    continued = set()
    for trial in tqdm(pruned, desc="unpruned re-runs", disable=None if progress else True):
        cfg = trial_config(tc, optuna.trial.FixedTrial(trial.params, trial.number), out)
        target = out / "unpruned" / f"{trial.number:04d}"
        source = trial_dir(out, trial)
        if continue_pruned and not target.exists() and (source / CHECKPOINT / "state.json").is_file():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(PRUNED))  # on from where it was stopped
            continued.add(trial.number)
        elif (target / CONTINUED).is_file():
            continued.add(trial.number)
        if trial.number in continued:
            (target / CONTINUED).touch()
        cfg = RunConfig(cfg.data, cfg.model, cfg.train, str(target))
        train(cfg, resume=True, progress=False, log=lambda *_: None, test=False)
    for trial in trials:
        run = trial_dir(out, trial)
        ran = read_records(run)
        full = ran if trial.state == TrialState.COMPLETE else read_records(out / "unpruned" / f"{trial.number:04d}")
        metric = TaskSpec.parse(main).main_metric
        curve = [r["dev"][main][metric] for r in full]
        reported = [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name,
                "epochs_run": len(ran),
                "epochs_unpruned": len(full),
                "seconds_run": _seconds(ran),
                "seconds_unpruned": _seconds(full),
                "dev_at_stop": reported[-1] if reported else np.nan,
                "dev_unpruned": max(curve),  # the trainer keeps the best epoch
                # a re-run from scratch must reproduce the pruned epochs; a continued one copied them
                "reproduced": None
                if trial.number in continued
                else bool(np.allclose(curve[: len(reported)], reported, rtol=0, atol=1e-9)),
                "continued_from_checkpoint": trial.number in continued,
                **{k: v for k, v in trial.params.items()},
            }
        )
    table = pd.DataFrame(rows)
    table.to_csv(out / "pruning.csv", index=False)
    complete = table[table["state"] == "COMPLETE"]
    best_pruned = float(complete["dev_unpruned"].max()) if len(complete) else float("nan")
    best_all = float(table["dev_unpruned"].max())
    summary = {
        "trials": len(table),
        "pruned": int((table["state"] == "PRUNED").sum()),
        "epochs_with_pruning": int(table["epochs_run"].sum()),
        "epochs_without_pruning": int(table["epochs_unpruned"].sum()),
        "seconds_with_pruning": float(table["seconds_run"].sum()),
        "seconds_without_pruning": float(table["seconds_unpruned"].sum()),
        "best_dev_with_pruning": best_pruned,
        "best_dev_without_pruning": best_all,
        "best_trial_without_pruning": int(table.loc[table["dev_unpruned"].idxmax(), "trial"]),
        "pruned_trials_beating_best_completed": int(
            ((table["state"] == "PRUNED") & (table["dev_unpruned"] > best_pruned)).sum()
        ),
        "reruns_from_scratch": int((~table["continued_from_checkpoint"] & (table["state"] == "PRUNED")).sum()),
        # null when no pruned trial was re-run from scratch: there is nothing to check (a completed trial's
        # "rerun" is the trial itself)
        "all_reruns_from_scratch_reproduce_pruned_scores": _all_or_none(
            table.loc[(table["state"] == "PRUNED") & ~table["continued_from_checkpoint"], "reproduced"]
        ),
    }
    summary["epochs_saved_fraction"] = 1 - summary["epochs_with_pruning"] / max(summary["epochs_without_pruning"], 1)
    summary["seconds_saved_fraction"] = 1 - summary["seconds_with_pruning"] / max(
        summary["seconds_without_pruning"], 1e-9
    )
    write_json(out / "pruning.json", summary)
    log(
        f"pruning: {summary['pruned']}/{summary['trials']} trials pruned, "
        f"{summary['epochs_with_pruning']} of {summary['epochs_without_pruning']} epochs run "
        f"({100 * summary['epochs_saved_fraction']:.0f}% saved); best dev {best_pruned:.4f} with pruning, "
        f"{best_all:.4f} without -> {out / 'pruning.json'}"
    )
    return summary
