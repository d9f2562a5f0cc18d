"""Loss-weight tuning with Optuna: ``taskrel tune``.

Search space: the main task's weight is fixed to 1 and every secondary weight
is log-uniform in ``[min_weight, max_weight]`` (the loss is scale-free in the
main weight only up to AdamW's epsilon and clipping, so fixing it removes a
redundant dimension); optionally the pooling and the learning rate. With a
dynamic weighting in the base settings (uncertainty, GradNorm) the study tunes
that method's own hyper-parameters instead (``DYNAMIC_SPACE``: its learning
rate, GradNorm's alpha), from equal starting weights: the same budget of trials
for a dynamic method as for static weights.

Objective: the main task's dev score of the epoch the trainer selects. The test
split is never read: runs are trained with ``test=False``, which loads only
train and devel. TPE sampler, its randomness for trial N from the seed and N
(``TrialSeededTPE``: a study draws the same trials again from its file,
resumed or not, in any process); each epoch's dev score is reported,
so a pruner (median by default, Hyperband as an option) stops poor trials.

The study lives in an Optuna RDB storage (``sqlite:///TUNE_DIR/study.db`` by
default; any URL lets several workers share a study). A trial killed with its
worker goes stale through Optuna's heartbeat and is marked failed when the
study is resumed; a new trial then takes over its parameters and goes on from
its run's last checkpoint (``killed_trials``), so a session's end costs no
epochs; the study runs until ``trials`` trials have finished. (Two workers
starting at the same moment may both take over one killed trial: the second
then finds its run folder locked and fails.)
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from .config import GRACE, HEARTBEAT, POOLINGS, RunConfig, TuneConfig
from .logs import say
from .rundir import PRUNED, RunDir, record_study, write_json
from .tasks import TaskSpec
from .workqueue import SCHEMA_RACE

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
RESUMES = "resumes"  # user attribute of a trial that took over a killed one: the killed trial's number


def first_prunable(tc: TuneConfig) -> int:
    """The first evaluation at which a trial may be pruned. ``prune_from`` "stopping": where the run's own early
    stopping could first stop it (``patience`` evaluations without improvement after the first; no earlier
    than ``min_epochs``, which ``may_prune`` checks), so pruning never judges a trial earlier than its own
    stopping rule would (a run without patience: its first evaluation past ``min_epochs``); "first": from the
    first evaluation on."""
    patience = tc.base.train.patience
    return patience + 1 if tc.prune_from == "stopping" and patience is not None else 1


def may_prune(tc: TuneConfig, cfg: RunConfig, record: dict) -> bool:
    """Whether the pruner is asked about a trial after this evaluation ``record``: from ``first_prunable`` on,
    past ``min_epochs`` (with ``prune_from`` "stopping"), and never at the last epoch (a trial there has cost all
    it will cost: it completes)."""
    if record["epoch"] >= cfg.train.epochs:
        return False
    if tc.prune_from == "first":
        return True
    done = record.get("epochs_done", record["epoch"])
    return record.get("eval", record["epoch"]) >= first_prunable(tc) and done >= cfg.train.min_epochs


def pruning_rule(tc: TuneConfig) -> str:
    """The pruner and when it acts, in words (the tuning report)."""
    if tc.pruner == "none":
        return "none"
    start = f"after {tc.prune_startup} completed trials, " if tc.pruner == "median" else ""
    if tc.prune_margin:
        start += f"only more than {tc.prune_margin:g} below the median, "
    if tc.prune_from == "first":
        return f"{tc.pruner} ({start}from the first evaluation)"
    return f"{tc.pruner} ({start}from evaluation {first_prunable(tc)}, where early stopping could first stop a trial)"


def median_reference(study: optuna.Study, step: int) -> float | None:
    """The median of the completed trials' dev scores at evaluation ``step``: what the median pruner holds a
    trial's best so far against there (None where no completed trial reached ``step``)."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    values = [t.intermediate_values[step] for t in completed if step in t.intermediate_values]
    return float(np.median(values)) if values else None


class MarginPruner(optuna.pruners.BasePruner):
    """Optuna's median pruner, which stops a trial only when its best so far is also more than ``margin`` below
    the median it is held against (``median_reference``): a trial within the noise of the median goes on."""

    def __init__(self, median: optuna.pruners.MedianPruner, margin: float):
        self.median, self.margin = median, margin

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if not self.median.prune(study, trial):
            return False
        values = [v for v in trial.intermediate_values.values() if not np.isnan(v)]
        reference = median_reference(study, trial.last_step)
        return not values or reference is None or max(values) < reference - self.margin  # no values: diverged


def make_pruner(tc: TuneConfig) -> optuna.pruners.BasePruner:
    """The pruner: the median of the completed trials at the same evaluation (``prune_startup`` of them before
    it acts) against the trial's best so far, less ``prune_margin``; Hyperband with its first rung at
    ``first_prunable``; or none."""
    if tc.pruner == "median":
        median = optuna.pruners.MedianPruner(n_startup_trials=tc.prune_startup, n_warmup_steps=first_prunable(tc))
        return MarginPruner(median, tc.prune_margin) if tc.prune_margin else median
    if tc.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first_prunable(tc))
    return optuna.pruners.NopPruner()


def trial_folder(out: Path, number: int) -> Path:
    """The run folder of a tuning study's trial ``number``."""
    return Path(out) / "trials" / f"{number:04d}"


def trial_dir(out, trial) -> Path:
    """The run folder of an Optuna ``trial`` of the study in ``out``: ``trials/NNNN``, numbered by the trial that
    first trained there (a killed trial's successor goes on in the killed trial's folder). The folder a trial
    recorded (``run_dir``) is relative to the working folder of the process that ran it, so only its name is
    used: a study resumed from another folder, or moved, still finds its trials."""
    recorded = trial.user_attrs.get("run_dir")
    return Path(out) / "trials" / Path(recorded).name if recorded else trial_folder(out, trial.number)


def section_runs(tc: TuneConfig, steps: dict, folder: Path) -> list[RunConfig]:
    """The runs a tuning study section trains on one corpus (``taskrel estimate``, ``taskrel status``): its
    trials at full length (pruning only makes them shorter), with ``measure_pruning`` the re-runs of the trials
    pruned so far (the ones pruned later are not known yet), then the confirmation arms at their seeds. The
    trials are the trial folders already there, each one trial (a killed trial's successor goes on in its
    folder, so trial numbers can skip one), then the next numbers up to ``tc.trials``."""
    from .confirm import ARMS, run_folder

    there = sorted(p for p in (Path(folder) / "trials").glob("[0-9]" * 4) if p.is_dir())
    first = int(there[-1].name) + 1 if there else 0
    folders = there + [trial_folder(folder, first + i) for i in range(max(0, tc.trials - len(there)))]
    runs = [replace(tc.base, out=str(f)) for f in folders]
    if steps.get("measure_pruning"):  # each trial pruned so far is then trained to its end (``pruning``)
        pruned = [RunDir(f).pruned for f in there]
        runs += [replace(tc.base, out=str(Path(folder) / "unpruned" / f"{p['trial']:04d}")) for p in pruned if p]
    arms, seeds = steps.get("arms") or ARMS, steps.get("confirm_seeds") or []
    return runs + [replace(tc.base, out=str(run_folder(folder, a, s))) for a in arms for s in seeds]


# A dynamic weighting's own hyper-parameters (TrainConfig fields: low, high, log scale), tuned instead of the
# static weights it starts from (equal); static weights and PCGrad (which projects weighted gradients) tune
# the weights themselves.
DYNAMIC_SPACE = {
    "uncertainty": {"weighting_lr": (1e-3, 0.3, True)},
    "gradnorm": {"weighting_lr": (1e-3, 0.3, True), "gradnorm_alpha": (0.0, 3.0, False)},
}
TUNED_TRAIN_PARAMS = ("lr", "weighting_lr", "gradnorm_alpha")  # best-trial parameters that are TrainConfig fields


def trial_config(tc: TuneConfig, trial: optuna.Trial, out: Path) -> RunConfig:
    base = tc.base
    tasks, method = base.model.tasks, base.train.weighting
    if method in DYNAMIC_SPACE:
        weights = {t: 1.0 for t in tasks}
        own = {k: trial.suggest_float(k, lo, hi, log=log) for k, (lo, hi, log) in DYNAMIC_SPACE[method].items()}
    else:
        weights = {tasks[0]: 1.0}
        weights |= {t: trial.suggest_float(f"w_{t}", tc.min_weight, tc.max_weight, log=True) for t in tasks[1:]}
        own = {}
    pooling = trial.suggest_categorical("pooling", POOLINGS) if tc.tune_pooling else base.model.pooling
    lr = trial.suggest_float("lr", 1e-5, 3e-4, log=True) if tc.tune_lr else base.train.lr
    return RunConfig(
        base.data,
        replace(base.model, pooling=pooling),
        replace(base.train, weights=weights, lr=lr, **own),
        str(trial_folder(out, trial.number)),
    )


def best_overrides(best: dict) -> dict:
    """The settings a study's best trial (``best.json``) fixes, as RunConfig sections: the loss weights, the
    weighting method and its tuned parameters, the learning rate and the pooling where they were tuned."""
    params = dict(best.get("params") or {})
    train = {"weights": dict(best["weights"]), "weighting": best.get("weighting", "static")}
    train |= {k: float(params[k]) for k in TUNED_TRAIN_PARAMS if k in params}
    return {"train": train} | ({"model": {"pooling": params["pooling"]}} if "pooling" in params else {})


def storage_url(out: Path, storage: str | None = None) -> str:
    """The study's storage: ``storage`` if given, else ``sqlite:///OUT/study.db``."""
    return storage or f"sqlite:///{Path(out) / 'study.db'}"


def open_study(tc: TuneConfig, out: Path, storage: str | None, name: str, pruner=None) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    url = storage_url(out, storage)
    for attempt in range(5):
        try:
            rdb = optuna.storages.RDBStorage(
                url,
                heartbeat_interval=HEARTBEAT,
                grace_period=GRACE,
                engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
            )
            study = optuna.create_study(
                study_name=name,
                storage=rdb,
                load_if_exists=True,
                direction="maximize",
                pruner=pruner or make_pruner(tc),
            )
            break
        except SCHEMA_RACE:  # another worker is creating the same schema or study
            if attempt == 4:
                raise
            time.sleep(0.5 + attempt)
    optuna.storages.fail_stale_trials(study)  # a killed trial would stay RUNNING until a later one happened to run
    study.sampler = TrialSeededTPE(tc.seed)
    return study


class TrialSeededTPE(optuna.samplers.BaseSampler):
    """TPE whose randomness for trial N comes from ``(seed, N)`` alone. One TPE sampler seeded once would draw
    the same start-up trials again after a resume, and in two workers on one storage; seeded with the process
    as well, a study run again from its file would draw other trials. Seeded by the trial's number (the storage
    hands out each number once), a study draws the same trials in one process or another, resumed or not, and
    workers sharing a storage never draw each other's."""

    def __init__(self, seed: int):
        self.seed = seed
        self._tpe = optuna.samplers.TPESampler(seed=seed)

    def before_trial(self, study, trial) -> None:
        state = np.random.SeedSequence([self.seed, trial.number]).generate_state(1)[0]
        self._tpe = optuna.samplers.TPESampler(seed=int(state))
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._tpe.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._tpe.after_trial(study, trial, state, values)


def killed_trials(study: optuna.Study) -> list:
    """Failed trials that did not fail by themselves (their process was killed: no ``error``), with their
    parameters, that no trial has taken over yet (``RESUMES``). Taken over, such a trial's run goes on from its
    last checkpoint under the same parameters, instead of its epochs being lost with it."""
    trials = study.get_trials(deepcopy=False)
    taken = {t.user_attrs.get(RESUMES) for t in trials}
    return [
        t
        for t in trials
        if t.state == TrialState.FAIL and t.params and "error" not in t.user_attrs and t.number not in taken
    ]


def drop_pruned(run: Path) -> None:
    """What a pruned trial no longer needs, unless it is to be continued (``measure_pruning``'s
    ``continue_pruned``): its checkpoint and selected model (about 350 MB with MiniLM; a tuning study prunes
    most of its trials). Its configuration, records and log stay: the pruning record and curves read them."""
    import shutil

    from .rundir import CHECKPOINT, MODEL

    for part in (CHECKPOINT, MODEL):
        shutil.rmtree(Path(run) / part, ignore_errors=True)


def tune(
    tc: TuneConfig,
    out,
    storage: str | None = None,
    name: str = "taskrel-tune",
    pruner=None,
    progress: bool = True,
    log=say,
    keep_pruned: bool = True,
) -> dict:
    """Run (or resume) the study until ``tc.trials`` trials have finished; write the outputs. ``keep_pruned``
    False: a pruned trial's checkpoint and model are removed (``drop_pruned``), so it cannot be continued."""
    from .machine import resolve_device
    from .precision import check_trainable
    from .train import train

    check_trainable(resolve_device(tc.base.train.device), tc.base.train.precision)  # not a failed trial per run
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record_study(out / "tune.json", tc, free=("trials", "timeout"))
    study = open_study(tc, out, storage, name, pruner)
    main = tc.base.model.main_task
    metric = TaskSpec.parse(main).main_metric

    def objective(trial: optuna.Trial) -> float:
        cfg = trial_config(tc, trial, out)
        killed = trial.user_attrs.get(RESUMES)
        if killed is not None:  # a killed trial's parameters, taken over: go on from its run's checkpoint
            before = study.get_trials(deepcopy=False)[killed]
            cfg = replace(cfg, out=str(trial_dir(out, before)))
            for step, value in sorted(before.intermediate_values.items()):
                trial.report(value, step)  # the pruner then sees the whole curve, as if never killed
        trial.set_user_attr("run_dir", cfg.out)
        mark = Path(cfg.out) / PRUNED
        mark.unlink(missing_ok=True)  # a killed trial taken over goes on, whatever was written before the kill
        stopped = {}

        def report(record):
            # one step per evaluation (per epoch unless eval_every says otherwise)
            step = record.get("eval", record["epoch"])
            trial.report(record["dev"][main][metric], step)
            if may_prune(tc, cfg, record) and trial.should_prune():
                # the median it fell below (median pruner); its best so far is in its records
                median = median_reference(study, step) if tc.pruner == "median" else None
                stopped.update(trial=trial.number, epoch=record["epoch"], evaluation=step, median=median)
                trial.set_user_attr("pruned_median", median)
                raise optuna.TrialPruned(f"epoch {record['epoch']}")

        try:
            metrics = train(
                cfg, resume=killed is not None, callbacks=[report], progress=False, log=lambda *_: None, test=False
            )
        except optuna.TrialPruned:
            write_json(mark, stopped)  # the folder says so itself: ``taskrel status``, estimates, archives
            if not keep_pruned:
                drop_pruned(cfg.out)
            raise
        except Exception as e:  # a trial that failed by itself: never taken over (it would fail again)
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise
        trial.set_user_attr("best_epoch", metrics["best_epoch"])
        trial.set_user_attr("stopped", metrics.get("stopped"))
        trial.set_user_attr("converged", metrics.get("converged"))
        return metrics["dev"][main][metric]

    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    todo = tc.trials - finished
    log(f"study {name} in {storage or out / 'study.db'}: {finished} trials finished, {max(todo, 0)} to run")
    if todo > 0:
        from .estimate import Pace

        resumed = []
        for trial in killed_trials(study):
            study.enqueue_trial(trial.params, user_attrs={RESUMES: trial.number})
            resumed.append(str(trial_dir(out, trial)))
            log(f"study {name}: trial {trial.number} was killed; a new trial goes on from its checkpoint")
        pace = Pace(resumed, "trials", total=todo)
        callbacks = [
            optuna.study.MaxTrialsCallback(tc.trials, states=FINISHED),
            _trial_logger(name, pace, log, tc.base.data.dev_max_sentences),
        ]
        study.optimize(
            objective, n_trials=todo, timeout=tc.timeout, callbacks=callbacks, catch=(), show_progress_bar=progress
        )
    return write_outputs(study, tc, out, storage)


def _trial_logger(name: str, pace, log, dev_subset: int | None = None):
    """An Optuna callback: one line per finished trial (a log without a progress bar still says how the study
    goes and how long it has left): its dev score or where it was pruned, the best so far, the pace.
    ``dev_subset``: the runs' ``dev_max_sentences``. A trial's score is its selected epoch's on the whole dev
    split, while the pruner judges the per-epoch evaluations on that subset: the line says which is which. Where
    the trial's dev split is no larger than the cap (its run's config.json says how many sentences it evaluated
    on), the two are one dev, and nothing is named."""

    known = False  # whether a trial's config.json has told the dev's size yet (the same corpus in every trial)

    def told(study: optuna.Study, trial) -> None:
        nonlocal dev_subset, known
        run_dir = trial.user_attrs.get("run_dir")
        used = RunDir(run_dir).dev_sentences if dev_subset and not known and run_dir else None
        if used is not None:
            known = True
            dev_subset = dev_subset if used >= dev_subset else None  # under the cap: the whole dev split
        if trial.state == TrialState.COMPLETE:
            what = f"dev {trial.value:.4f}" + ("" if trial.user_attrs.get("converged") else " (not converged)")
        elif trial.state == TrialState.PRUNED:
            what = f"pruned after evaluation {max(trial.intermediate_values, default=0)}"
            if trial.user_attrs.get("pruned_median") is not None:
                on = f" on the {dev_subset:,}-sentence dev subset" if dev_subset else ""
                what += (
                    f" (best so far{on} {max(trial.intermediate_values.values()):.4f}, "
                    f"median of the completed trials there {trial.user_attrs['pruned_median']:.4f})"
                )
        else:
            what = trial.state.name.lower()
        try:
            whole = " (whole dev)" if dev_subset else ""
            best = f"; best dev{whole} {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:  # no trial complete yet
            best = ""
        log(f"study {name}: trial {trial.number} {what}{best}; {pace.line(trial.user_attrs.get('run_dir', ''))}")

    return told


def write_outputs(study: optuna.Study, tc: TuneConfig, out: Path, storage: str | None) -> dict:
    """``best.json``, ``trials.csv`` and figures (history, importances, slices)."""
    study.trials_dataframe().to_csv(out / "trials.csv", index=False)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise RuntimeError(f"no trial of study {study.study_name} completed; see {out / 'trials.csv'}")
    best = study.best_trial
    tasks, method = tc.base.model.tasks, tc.base.train.weighting
    if method in DYNAMIC_SPACE:  # the weights it starts from were not tuned
        weights = {t: 1.0 for t in tasks}
    else:
        weights = {tasks[0]: 1.0} | {t: best.params[f"w_{t}"] for t in tasks[1:] if f"w_{t}" in best.params}
    result = {
        "trial": best.number,
        "dev_score": best.value,
        "main_task": tasks[0],
        "weights": weights,
        "weighting": method,
        "params": best.params,
        "run_dir": str(trial_dir(out, best)),
        # a best trial that did not converge is marked so wherever its score appears
        "converged": best.user_attrs.get("converged"),
        "trials": {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState},
        "dashboard": f"optuna-dashboard {storage_url(out, storage)}",
    }
    write_json(out / "best.json", result)
    figures(study, out)
    return result


def figures(study: optuna.Study, out: Path) -> None:
    """Static figures through Optuna's matplotlib backend; importances need two completed trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plots = {"history.png": ovm.plot_optimization_history, "slices.png": ovm.plot_slice}
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= 2:
        plots["importances.png"] = ovm.plot_param_importances
    for name, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental API, equal importances on tiny studies, layout
            ax = plot(study)
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        panels = ax.size if hasattr(ax, "size") else 1
        # one panel per parameter, and room on the right for the slice plot's trial colour bar
        fig.set_size_inches(max(6.4, 3.6 * panels + 1.6 if name == "slices.png" else 0), 4.8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig.tight_layout()
        fig.savefig(out / name, dpi=130)
        plt.close(fig)


@dataclass
class TuneResults:
    """A tuning folder as the notebooks and reports read it; absent parts are None."""

    folder: Path
    config: TuneConfig
    best: dict
    trials: pd.DataFrame
    pruning: dict | None
    pruning_trials: pd.DataFrame | None
    comparison: pd.DataFrame | None
    confirm_runs: pd.DataFrame | None

    def study(self, storage: str | None = None, name: str = "taskrel-tune") -> optuna.Study:
        """The Optuna study itself (for Optuna's own plots), from its storage."""
        return optuna.load_study(study_name=name, storage=storage_url(self.folder, storage))


def load_results(folder) -> TuneResults:
    from .confirm import load_tune

    folder = Path(folder)
    tc, best = load_tune(folder)
    csv = lambda name: pd.read_csv(folder / name) if (folder / name).is_file() else None  # noqa: E731
    pruning = json.loads((folder / "pruning.json").read_text()) if (folder / "pruning.json").is_file() else None
    return TuneResults(
        folder,
        tc,
        best,
        csv("trials.csv"),
        pruning,
        csv("pruning.csv"),
        csv("confirm/comparison.csv"),
        csv("confirm/runs.csv"),
    )
