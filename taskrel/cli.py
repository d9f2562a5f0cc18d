"""Command line: ``taskrel train | evaluate | predict | stats``.

Each subcommand has ``add_<cmd>_parser(subparsers)`` and ``run_<cmd>(args)``;
the CLI parses, the library does the work. Tests call ``main([...])``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .config import (
    GRACE,
    HEARTBEAT,
    STUDY_MAX_EPOCHS,
    STUDY_PATIENCE,
    AffinityConfig,
    ConfigError,
    DataConfig,
    EmbedConfig,
    GridConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    TuneConfig,
    parse_csv,
    parse_ints,
    parse_positive_int,
)
from .errors import TaskrelError
from .logs import configure as configure_logging


def _option_type(parse):
    """An argparse type from a setting's parser: its ValueError becomes argparse's usage error."""

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


_csv = _option_type(parse_csv)


_positive_int = _option_type(parse_positive_int)


_ints = _option_type(parse_ints)


_TYPES = {"int": int, "float": float, "str": str, "int | None": int, "float | None": float}


def _flag(f) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _dest(f) -> str:
    return _flag(f)[2:].replace("-", "_")


def _fields(cls, only=None, skip=()):
    return [
        f
        for f in dataclasses.fields(cls)
        if "help" in f.metadata and (only is None or f.name in only) and f.name not in skip
    ]


def add_config_args(p, cls, only=None, skip=(), helps=None, groups=None, title=None, defaults=None) -> None:
    """The options of a config dataclass's settings: ``--field-name`` (or the field's ``flag``), with help,
    choices and default from the field (``config.setting``).

    ``only``/``skip`` choose the fields; ``helps`` and ``defaults`` override a field's help and default for
    one command; ``groups``
    maps a field's ``group`` (else ``title``, if given) to an argument group, made as needed.
    """
    groups = {} if groups is None else groups
    for f in _fields(cls, only, skip):
        meta = f.metadata
        flag = _flag(f)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        default = (defaults or {}).get(f.name, default)
        help_ = (helps or {}).get(f.name, meta.get("help", "")).replace("%", "%%")  # argparse formats help with %
        group = p
        if meta.get("group") or title:
            name = meta.get("group") or title
            group = groups[name] if name in groups else groups.setdefault(name, p.add_argument_group(name))
        if f.type == "bool":  # a setting on by default is turned off with --no-NAME
            off = default is True
            flag = f"--no-{flag[2:]}" if off else flag
            group.add_argument(flag, dest=_dest(f), action="store_false" if off else "store_true", help=help_)
            continue
        parse = _option_type(meta["parse"]) if meta.get("parse") else _TYPES[f.type]
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        group.add_argument(
            flag,
            dest=_dest(f),
            type=parse,
            default=default,
            choices=meta.get("choices"),
            help=f"{help_} (default: {str(shown).replace('%', '%%')})" if default not in (None, "", []) else help_,
        )


def _add_common(p):
    """Device, precision and threads (``TrainConfig`` settings), and progress bars: every command that computes."""
    add_config_args(p, TrainConfig, only=("device", "precision", "threads"))
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


# ------------------------------------------------------------------ train


def _add_run_args(p, tasks_help: str, defaults=None) -> None:
    """Options shared by every command that trains: data, model and training settings, from the configs."""
    groups = {}
    add_config_args(p, DataConfig, groups=groups, title="data")
    add_config_args(p, ModelConfig, helps={"tasks": tasks_help}, groups=groups, title="model")
    add_config_args(p, TrainConfig, skip=("weights", "seed"), groups=groups, title="training", defaults=defaults)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_train_parser(sub):
    p = sub.add_parser("train", help="train a multi-task model, select it on dev, score it on test")
    _add_run_args(p, "comma-separated; the first is the main task")
    p.add_argument("--out", required=True, help="run folder")
    add_config_args(p, TrainConfig, only=("weights", "seed"))
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished epoch")
    p.set_defaults(func=run_train)


def config_from_args(a) -> RunConfig:
    """The run configuration of a command's options, built by field name."""
    if not a.data and not all(":" in t for t in a.tasks):
        raise ConfigError(
            "--data is required (a corpus folder, or a name under $TASKREL_DATA) unless every task "
            "names its corpus as CORPUS:TASK"
        )

    a.data = a.data or ""
    return RunConfig(
        DataConfig(**settings_of(a, DataConfig)),
        ModelConfig(**settings_of(a, ModelConfig)),
        TrainConfig(**settings_of(a, TrainConfig)),
        a.out,
    )


def settings_of(a, cls) -> dict:
    """The values of a config class's settings that a command's options gave, by field name."""
    return {f.name: getattr(a, _dest(f)) for f in _fields(cls) if hasattr(a, _dest(f))}


def run_train(a) -> int:
    from .train import train

    saved = Path(a.out) / "config.json"
    if a.resume and saved.is_file():
        cfg = RunConfig.from_dict(json.loads(saved.read_text()))
        cfg.out = a.out  # a moved run folder is continued where it is now, not where it was made
    else:
        cfg = config_from_args(a)
    metrics = train(cfg, resume=a.resume, progress=not a.no_progress)
    print(format_scores(metrics["test"], "test"))
    return 0


# ------------------------------------------------------------------ grid


def add_grid_parser(sub):
    p = sub.add_parser("grid", help="pairwise transfer grid: every task alone and every ordered pair")
    # a grid measures transfer at convergence: early stopping is on unless --patience says otherwise
    _add_run_args(p, "comma-separated tasks of the grid", {"patience": STUDY_PATIENCE, "epochs": STUDY_MAX_EPOCHS})
    p.add_argument("--out", required=True, help="grid folder (run again to resume)")
    add_config_args(p, GridConfig, skip=("bootstrap_unit", "alpha", "bootstrap_samples"))
    p.add_argument(
        "--storage",
        help="Optuna RDB URL shared by several grid processes as a work queue: sqlite:///FILE, postgresql://...",
    )
    p.add_argument("--study", help="queue name in --storage (default: taskrel-grid-<folder name>)")
    p.add_argument(
        "--heartbeat",
        type=_positive_int,
        default=HEARTBEAT,
        help=f"with --storage: seconds between a worker's heartbeats (default: {HEARTBEAT})",
    )
    p.add_argument(
        "--grace",
        type=_positive_int,
        default=GRACE,
        help=f"with --storage: seconds without a heartbeat before a cell goes back to the queue (default: {GRACE})",
    )
    add_config_args(p, GridConfig, only=("bootstrap_samples", "bootstrap_unit", "alpha"))
    p.set_defaults(func=run_grid_cmd)


def run_grid_cmd(a) -> int:
    from .config import GridConfig
    from .grid import load_grid, run_grid

    saved = Path(a.out) / "grid.json"
    if saved.is_file() and not a.data:
        grid = load_grid(a.out)
        grid.workers = a.workers
    else:
        grid = GridConfig(config_from_args(a), a.tasks, **settings_of(a, GridConfig))
    if a.grace <= a.heartbeat:
        raise ConfigError(f"--grace ({a.grace} s) must be longer than --heartbeat ({a.heartbeat} s)")
    transfer = run_grid(
        grid, a.out, progress=not a.no_progress, storage=a.storage, study=a.study, heartbeat=a.heartbeat, grace=a.grace
    )
    if len(transfer):
        cols = ["main", "secondary", "mean_delta", "std_delta", "p", "significant"]
        print(transfer[cols].to_string(index=False, float_format=lambda v: f"{v:+.4f}"))
    return 0


# ------------------------------------------------------------------ tune


def add_tune_parser(sub):
    p = sub.add_parser("tune", help="tune the loss weights with Optuna on the main task's dev score")
    _add_run_args(p, "comma-separated; the first is the main task (weight 1), the others are tuned")
    p.add_argument("--out", required=True, help="tuning folder (run again to resume)")
    add_config_args(p, TrainConfig, only=("seed",), helps={"seed": "training seed of every trial"})
    add_config_args(p, TuneConfig)
    # what --confirm and --measure-pruning would ignore: they read the study's settings from OUT/tune.json
    study_options = {
        a.dest: (a.option_strings[0], a.default)
        for a in p._actions
        if a.option_strings and a.dest not in ("help", "out", "device", "precision", "threads", "no_progress")
    }
    p.set_defaults(_study_options=study_options)
    p.add_argument("--storage", help="Optuna RDB URL (default: sqlite:///OUT/study.db)")
    p.add_argument("--study", default="taskrel-tune", help="study name in the storage")
    p.add_argument(
        "--drop-pruned",
        action="store_true",
        help="remove each pruned trial's checkpoint and model (about 350 MB with MiniLM): --continue-pruned "
        "cannot go on from it then, and trains it again from the start",
    )
    after = p.add_argument_group("after the study (settings are read from OUT/tune.json)")
    after.add_argument(
        "--confirm",
        action="store_true",
        help="train the best weights and the alternatives (single task, equal, authors', uncertainty, gradnorm, "
        "pcgrad) over --seeds, score them on test, write OUT/confirm/comparison.*",
    )
    after.add_argument(
        "--seeds",
        type=_ints,
        default=None,
        help="seeds of --confirm (default: the first 3 other than the tuning trials' seed, which is refused)",
    )
    after.add_argument("--arms", type=_csv, default=None, help="subset of the --confirm arms")
    after.add_argument(
        "--measure-pruning",
        action="store_true",
        help="re-run the pruned trials unpruned; write what pruning saved to OUT/pruning.json",
    )
    after.add_argument(
        "--continue-pruned",
        action="store_true",
        help="with --measure-pruning: go on from each pruned trial's checkpoint instead of starting it again",
    )
    p.set_defaults(func=run_tune)


def run_tune(a) -> int:
    from .config import TuneConfig
    from .tune import tune

    if a.confirm or a.measure_pruning:
        return _after_tuning(a)
    tc = TuneConfig(config_from_args(a), **settings_of(a, TuneConfig))
    best = tune(tc, a.out, a.storage, a.study, progress=not a.no_progress, keep_pruned=not a.drop_pruned)
    print(f"best trial {best['trial']}: dev {best['main_task']} {best['dev_score']:.4f} with weights {best['weights']}")
    print(f"open the study with: {best['dashboard']}")
    return 0


def _after_tuning(a) -> int:
    from .confirm import ARMS, confirm, load_tune

    ignored = sorted(flag for dest, (flag, default) in a._study_options.items() if getattr(a, dest) != default)
    if ignored:
        raise ConfigError(
            f"--confirm and --measure-pruning read the study's settings from {Path(a.out) / 'tune.json'}; "
            f"these options would be ignored: {', '.join(ignored)}"
        )
    tc, best = load_tune(a.out)
    if a.threads:
        tc.base.train.threads = a.threads
    if a.measure_pruning:
        from .pruning import measure_pruning

        measure_pruning(tc, a.out, a.storage, a.study, not a.no_progress, continue_pruned=a.continue_pruned)
    if a.confirm:
        seeds = [int(s) for s in a.seeds] if a.seeds else None
        table = confirm(tc, best, a.out, seeds, a.arms or ARMS, progress=not a.no_progress)
        cols = ["arm", "n_seeds", "test_mean", "test_std", "delta_vs_single", "p", "p_seeds"]
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


# ------------------------------------------------------------------ run / report


def add_run_parser(sub):
    p = sub.add_parser(
        "run",
        help="run (or resume) a study declared in an experiment file, or several in turn",
        description="Run (or resume) studies declared in experiment files. Several files run one after the "
        "other, each into runs/<study name>; every file is checked before the first run starts, and a study "
        "that fails does not stop the ones after it (the exit status says that one failed). A file may appear "
        "twice: its second turn trains what became possible meanwhile (tuned variants whose tuning study ran).",
    )
    p.add_argument(
        "study",
        nargs="+",
        help="experiment file(s), e.g. experiments/figure5-grid-ncbi.yaml, or a study folder (the study as it was "
        "run, from its study.json: re-analyse it with --summarise)",
    )
    p.add_argument("--out", help="results folder (default: runs/<study name>; one study only)")
    p.add_argument("--report", help="also write the report into this folder (one study only)")
    p.add_argument("--report-root", help="also write each study's report into REPORT_ROOT/<study name>")
    p.add_argument(
        "--workers",
        type=_positive_int,
        help="grid cells or runs trained in parallel (default: each study file's workers, else 1)",
    )
    p.add_argument(
        "--side-by-side",
        type=_positive_int,
        metavar="N",
        help="train the sections (one corpus each) of the given tune, embed or affinity studies N at a time, "
        "each in its own process logging to runs/<study>/<corpus>.log, the largest training sets first, so "
        "that no core idles while one study outlasts another; each study's report follows its last section",
    )
    p.add_argument(
        "--summarise",
        action="store_true",
        help="train nothing: rebuild the tables of a runs study from the runs that finished",
    )
    p.add_argument("--check", action="store_true", help="check every file and stop: nothing trains")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_run)


def run_run(a) -> int:
    from .experiments import load_study

    if len(a.study) > 1 and (a.out or a.report):
        raise ConfigError("--out and --report name one study's folders: with several studies use --report-root")
    studies = [(path, load_study(path)) for path in a.study]  # every file checked before hours of training
    if a.check:
        print(f"{len(studies)} study file(s) checked: {', '.join(s.name for _, s in studies)}")
        return 0
    if a.side_by_side:
        return _side_by_side(a, studies)
    failed = []
    for i, (path, study) in enumerate(studies, 1):
        if len(studies) > 1:
            print(f"== study {i}/{len(studies)}: {study.name} ({path})", flush=True)
        try:
            _run_one(a, path, study, a.out, _report_folder(a, study))
        except (TaskrelError, FileNotFoundError) as e:
            if len(studies) == 1:
                raise
            print(f"taskrel: error in study {study.name} ({path}): {e}; going on with the next", file=sys.stderr)
            failed.append(study.name)
    if failed:
        print(f"taskrel: {len(failed)} of {len(studies)} studies failed: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0


def _side_by_side(a, studies) -> int:
    from .experiments import side_by_side, study_folder

    if a.out or a.summarise or a.workers:
        raise ConfigError("--side-by-side trains each study into runs/<study name>: no --out, --workers or --summarise")
    by_path = {str(path): study for path, study in studies}
    failed = []
    for path, error in side_by_side(studies, a.side_by_side, log=lambda line: print(line, flush=True)):
        study = by_path[path]
        if error:
            print(f"taskrel: error in study {study.name} ({path}): {error}", file=sys.stderr)
            failed.append(study.name)
        else:
            _said_done(study_folder(path, study), _report_folder(a, study))
    if failed:
        print(f"taskrel: {len(failed)} of {len(studies)} studies failed: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0


def _report_folder(a, study) -> str | None:
    """Where ``taskrel run`` writes a study's report: --report, else REPORT_ROOT/<study name>, else nowhere."""
    return a.report or (str(Path(a.report_root) / study.name) if a.report_root else None)


def _said_done(out: Path, report: str | None) -> None:
    """A study's results folder, and its report written into ``report`` (when asked for)."""
    from .report import report_said

    print(f"study results in {out}", flush=True)
    if report:
        print(report_said(out, report), flush=True)


def _run_one(a, path: str, study, out: str | None, report: str | None) -> None:
    from .experiments import STUDY_FREE_KEYS, run_study, study_folder, summarise
    from .rundir import STUDY_RECORD, SettingsDiffer, check_study_record, record_study

    if a.summarise:
        out = study_folder(path, study, out)
        if study.kind != "runs" or not (out / STUDY_RECORD).is_file():
            raise ConfigError(f"--summarise needs the folder of a runs study (with {STUDY_RECORD}), got {out}")
        # the folder's runs are read only as the study that made them: a file edited since (other defaults)
        # is refused, naming the settings; the folder itself (its record) always fits
        try:
            check_study_record(out / STUDY_RECORD, study, free=STUDY_FREE_KEYS)
        except SettingsDiffer as e:
            raise SettingsDiffer(f"{e}; to re-analyse it as it was run: taskrel run {out} --summarise") from None
        if not (Path(path).is_dir() or Path(path).name == STUDY_RECORD):
            # from the file: its free keys (claims added or reworded, a description) enter the record, so the
            # record says what the tables were made from, and a later `taskrel claims FOLDER` agrees with them
            record_study(out / STUDY_RECORD, study, free=STUDY_FREE_KEYS, keep_command=True)
        summarise(out, study)
    else:
        out = run_study(path, out, a.workers, progress=not a.no_progress)
    _said_done(out, report)


def add_estimate_parser(sub):
    p = sub.add_parser("estimate", help="how many runs a study file holds and how long it will take here")
    p.add_argument("study", nargs="+", help="experiment file(s); several: each, then the queue's total")
    p.add_argument(
        "--out", help="results folder (finished runs there are not counted; default: runs/<study name>; one study)"
    )
    p.add_argument("--workers", type=_positive_int, help="runs trained at once (default: the study's workers)")
    p.add_argument("--steps", type=_positive_int, default=4, help="training steps timed by the probe")
    p.add_argument("--no-probe", action="store_true", help="count the runs only")
    p.set_defaults(func=run_estimate)


def run_estimate(a) -> int:
    from .estimate import estimate, queue_lines
    from .experiments import load_study

    if len(a.study) > 1 and a.out:
        raise ConfigError("--out names one study's folder: with several studies each is read from runs/<study name>")
    studies = {}
    for path in a.study:  # a file named twice in a queue (a second turn) is counted once
        study = load_study(path)
        studies.setdefault(study.name, study)
    queue = []
    for name, study in studies.items():
        if len(studies) > 1:
            print(f"== {name}")
        est = estimate(study, Path(a.out or Path("runs") / name), a.steps, not a.no_probe)
        workers = a.workers or study.workers
        print("\n".join(est.lines(workers, probed=not a.no_probe)), flush=True)
        queue.append((est, workers))
    if len(studies) > 1:
        print("\n".join(queue_lines(queue, probed=not a.no_probe)))
    return 0


def add_status_parser(sub):
    p = sub.add_parser(
        "status", help="where a study stands: each run finished, under way or not started, and the time left"
    )
    p.add_argument("study", nargs="+", help="experiment file(s); several: one line of counts per study")
    p.add_argument("--out", help="results folder (default: runs/<study name>; one study)")
    p.add_argument("--workers", type=_positive_int, help="runs trained at once (default: the study's workers)")
    p.add_argument(
        "--only",
        action="append",
        choices=["finished", "pruned", "training", "interrupted", "not-started"],
        help="list only the runs in this state (repeat for several; default: every run)",
    )
    p.set_defaults(func=run_status)


def run_status(a) -> int:
    import time

    from .estimate import estimate
    from .experiments import load_study
    from .progress import FINISHED, INTERRUPTED, NOT_STARTED, PRUNED, TRAINING, counts_line, study_states, table

    if len(a.study) > 1:
        if a.out:
            raise ConfigError("--out names one study's folder: with several studies each is read from runs/<study>")
        studies = {}
        for path in a.study:  # a file named twice in a queue is listed once
            study = load_study(path)
            studies.setdefault(study.name, study)
        for name, study in studies.items():
            states, wait = (
                study_states(study, Path("runs") / name),
                estimate(study, Path("runs") / name, do_probe=False).waiting,
            )
            line = counts_line(states) if states else "no runs declared" if wait else "trains no runs of its own"
            if wait:
                line += f"; {len(wait)} variant-corpus pairs wait for a tuning study or budget decision, not counted"
            why = _not_trainable_here(study, Path("runs") / name, states)
            line += f"; not trained on this machine: {why}" if why else ""
            print(f"{name}: {line}")
        return 0
    study = load_study(a.study[0])
    out = Path(a.out or Path("runs") / study.name)
    states, est = study_states(study, out), estimate(study, out, do_probe=False)
    names = {
        "finished": FINISHED,
        "pruned": PRUNED,
        "training": TRAINING,
        "interrupted": INTERRUPTED,
        "not-started": NOT_STARTED,
    }
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"study {study.name} ({a.study[0]}), results in {out}, as of {when}")
    if not states and not est.waiting:
        print("it trains no runs of its own (it reads other studies' results)")
        return 0
    print(counts_line(states) if states else "no runs declared yet")
    why = _not_trainable_here(study, out, states)
    if why:
        print(f"not trained on this machine: {why}")
    if states:
        print()
        print(table(states, only={names[o] for o in a.only} if a.only else None))
        print()
    # the variants waiting for a tuning study or budget decision, then the time left at the measured pace
    lines = est.lines(a.workers or study.workers, probed=False)[1:]
    if est.done == est.runs:
        lines = [f"  not counted, waiting: {v}" for v in est.waiting]
        lines += ["nothing left to train"] if states else []
    elif not est.measured:
        lines.append("no measured pace: no run finished")
    print("\n".join(lines))
    return 0


def _not_trainable_here(study, out: Path, states: list) -> str | None:
    """Why this machine trains none of a study's runs left (``experiments.not_trainable_here``); None when it
    would, or when nothing is left."""
    from .experiments import not_trainable_here
    from .progress import FINISHED, PRUNED

    left = any(s.state not in (FINISHED, PRUNED) for s in states)
    return not_trainable_here(study, out) if left else None


def add_claims_parser(sub):
    p = sub.add_parser("claims", help="the paper's claims a study tests, beside ours (claims.csv)")
    p.add_argument("folder", help="study folder or its report folder (study.json and its tables)")
    p.add_argument("--from", dest="from_file", help="take the claims of this study file (default: the record's)")
    p.set_defaults(func=run_claims)


def run_claims(a) -> int:
    from .claims import claims_for_folder

    table = claims_for_folder(a.folder, a.from_file)
    print(table[["claim", "paper", "ours", "ci_low", "ci_high", "verdict"]].to_string(index=False))
    return 0


def add_scorecard_parser(sub):
    p = sub.add_parser("scorecard", help="one table of every claim tested, from the studies' claims.csv")
    p.add_argument(
        "source",
        nargs="*",
        help="folders with claims.csv (reports or results), or study files (their report's claims.csv once it "
        "exists under --reports, else listed as not started), in the table's order (default: those the "
        "--readme marker lists)",
    )
    p.add_argument(
        "--readme",
        action="append",
        help="rewrite the table between the scorecard markers of this file (repeatable): the full table after "
        "'<!-- scorecard:begin SOURCE... -->', the measured claims only after '<!-- scorecard:summary FILE -->' "
        "(the sources of FILE's full table)",
    )
    p.add_argument("--summary", action="store_true", help="print the short table (measured claims only)")
    p.add_argument("--check", action="store_true", help="write nothing; fail if --readme's table is out of date")
    p.add_argument("--reports", default="reports", help="where study files' reports are (default: reports)")
    p.set_defaults(func=run_scorecard)


def run_scorecard(a) -> int:
    from .claims import scorecard_markdown, scorecard_rows, scorecard_summary, write_scorecard

    if a.check:
        if not a.readme:
            raise ConfigError("--check compares the table of a --readme")
        stale = [f for f in a.readme if not write_scorecard(f, a.source, a.reports, check=True)]
        for f in a.readme:
            said = f"out of date; run taskrel scorecard --readme {f}" if f in stale else "up to date"
            print(f"{f}: the scorecard is {said}")
        return 1 if stale else 0
    if a.readme:
        for f in a.readme:
            print(f"{f}: {write_scorecard(f, a.source, a.reports)} claims")
    elif a.source:
        rows = scorecard_rows(a.source, a.reports)
        print((scorecard_summary if a.summary else scorecard_markdown)(rows), end="")
    else:
        raise ConfigError("give the sources, or a --readme whose scorecard marker lists them")
    return 0


def add_archive_parser(sub):
    p = sub.add_parser(
        "archive",
        help="pack a results folder's runs, without weights, into its report (runs.tar.gz)",
        description="Pack a results folder into REPORT/runs.tar.gz: its tables and records and every run folder "
        "without its weights. A run that could still go on (unfinished, with a checkpoint or a live lock) is left "
        "out; a tuning study's database goes in as a consistent copy. The same files give the same bytes. "
        "`taskrel restore` brings them back on a fresh checkout.",
    )
    p.add_argument("folder", help="results folder, e.g. runs/lowres-10pct")
    p.add_argument("--out", required=True, help="report folder, e.g. reports/lowres-10pct")
    p.set_defaults(func=run_archive)


def run_archive(a) -> int:
    from .archive import ARCHIVE, pack

    print(pack(a.folder, Path(a.out) / ARCHIVE).line())
    return 0


def add_aside_parser(sub):
    p = sub.add_parser(
        "aside",
        help="set aside a study's runs made under settings its file no longer gives them (kept as the record)",
        description="Move every run of the study in FILE that was made under other settings than the file gives "
        "it now (a corpus moved to a new budget, say) from OUT/VARIANT/CORPUS/seedS to "
        "OUT/set-aside/VARIANT/CORPUS/seedS, with aside.json saying when and which settings differ; the study "
        "then trains those runs anew. A run another study reads (runs_in) is never moved, nor one in another "
        "study's folder: the command refuses, naming them.",
    )
    p.add_argument("study", help="experiment file")
    p.add_argument("--corpus", help="only the runs on this corpus (its folder name)")
    p.add_argument("--dry-run", action="store_true", help="list what would move, move nothing")
    p.set_defaults(func=run_aside)


def run_aside(a) -> int:
    from .aside import plan, set_aside

    moves = plan(a.study, a.corpus)
    if not moves:
        print(f"{a.study}: every run there is under the settings the file gives it; nothing to set aside")
    elif a.dry_run:
        for m in moves:
            print(f"would move {m.run} -> {m.dest} ({m.why})")
    else:
        set_aside(moves)
    return 0


def add_restore_parser(sub):
    p = sub.add_parser(
        "restore",
        help="bring studies' committed runs (their report's runs.tar.gz) back into their results folders",
        description="For each study file, unpack REPORT_ROOT/<study name>/runs.tar.gz into its results folder "
        "(runs/<study name>), leaving every file already there as it is: a fresh checkout then resumes the queue "
        "where the last committed slice stopped. A study without an archive is left alone.",
    )
    p.add_argument("study", nargs="+", help="experiment file(s)")
    p.add_argument("--report-root", default="reports", help="where the studies' reports are (default: reports)")
    p.set_defaults(func=run_restore)


def run_restore(a) -> int:
    from .archive import ARCHIVE, unpack
    from .experiments import load_study, study_folder

    seen = set()
    for path in a.study:
        study = load_study(path)
        if study.name in seen:  # a file named twice in a queue
            continue
        seen.add(study.name)
        archive = Path(a.report_root) / study.name / ARCHIVE
        out = study_folder(path, study)
        if not archive.is_file():
            print(f"{study.name}: no {archive} yet, nothing to restore")
            continue
        written, kept = unpack(archive, out)
        print(f"{study.name}: {written} file(s) restored into {out} from {archive}, {kept} already there")
    return 0


def add_report_parser(sub):
    p = sub.add_parser("report", help="Markdown and HTML report of a grid or study folder")
    p.add_argument("folder", help="grid or study results folder")
    p.add_argument("--out", required=True, help="report folder, e.g. reports/NAME")
    p.add_argument(
        "--notebooks",
        metavar="DIR",
        help="also run the analysis notebooks in DIR on the results and export them to HTML",
    )
    p.set_defaults(func=run_report)


def run_report(a) -> int:
    from .report import report_said

    print(report_said(a.folder, a.out))
    if a.notebooks:
        from .notebooks import export_folder

        for path in export_folder(a.folder, a.notebooks, a.out):
            print(f"notebook: {path}")
    return 0


# ------------------------------------------------------------------ evaluate


def add_evaluate_parser(sub):
    p = sub.add_parser("evaluate", help="score a trained model on a corpus split")
    p.add_argument("--model", required=True, help="model folder (RUN_DIR/model)")
    p.add_argument("--data", required=True, help="corpus folder, or a name under $TASKREL_DATA")
    p.add_argument("--split", default="test", choices=["train", "devel", "test"])
    p.add_argument("--output", help="scores JSON (default: eval_<corpus>_<split>.json beside the model folder)")
    p.add_argument("--batch-size", type=int, default=64)
    add_config_args(
        p, DataConfig, only=("unseen_tags",), helps={"unseen_tags": "tags the model does not know: stop, or map to O"}
    )
    _add_common(p)
    p.set_defaults(func=run_evaluate)


def run_evaluate(a) -> int:
    from .evaluate import evaluate_split

    scores, out, name = evaluate_split(
        a.model, a.data, a.split, a.output, a.unseen_tags, a.batch_size, a.device, a.precision, not a.no_progress
    )
    print(format_scores(scores, f"{name} {a.split}"))
    print(f"scores written to {out}")
    return 0


# ------------------------------------------------------------------ predict


def add_predict_parser(sub):
    p = sub.add_parser("predict", help="tag a CoNLL file (new last column) or raw text (JSON lines)")
    p.add_argument("--model", required=True, help="model folder (RUN_DIR/model)")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument(
        "--format",
        default="auto",
        choices=["auto", "conll", "text"],
        help="auto: .tsv/.conll/.iob/.bio are CoNLL, anything else one sentence a line",
    )
    p.add_argument("--batch-size", type=int, default=64)
    _add_common(p)
    p.set_defaults(func=run_predict)


def run_predict(a) -> int:
    from .predict import predict_file

    n = predict_file(a.model, a.input, a.output, a.format, a.device, a.batch_size, not a.no_progress, a.precision)
    print(f"tagged {n} sentences -> {a.output}")
    return 0


# ------------------------------------------------------------------ export


def add_export_parser(sub):
    p = sub.add_parser(
        "export",
        help="write a model's NER head as a Hugging Face token classifier (AutoModelForTokenClassification)",
        description="The folder loads with pipeline('token-classification', model=OUT, aggregation_strategy="
        "'first'). Where its entities can differ from `taskrel predict` (words with inner punctuation, "
        "sentences longer than the window) is documented in taskrel/export.py. A CRF head is refused.",
    )
    p.add_argument("model", help="model folder (RUN_DIR/model)")
    p.add_argument("out", help="new folder to write")
    p.add_argument("--hf", action="store_true", required=True, help="Hugging Face format (the only one)")
    p.add_argument("--task", help="token task to export (default: ner, else the first token task)")
    p.set_defaults(func=run_export)


def run_export(a) -> int:
    from .export import export_hf

    out = export_hf(a.model, a.out, a.task)
    print(f"exported -> {out}: pipeline('token-classification', model='{out}', aggregation_strategy='first')")
    return 0


# ------------------------------------------------------------------ stats


def add_stats_parser(sub):
    p = sub.add_parser("stats", help="label counts of every task, per split")
    p.add_argument("--data", required=True, help="corpus folder, or a name under $TASKREL_DATA")
    add_config_args(p, ModelConfig, only=("tasks",), helps={"tasks": "comma-separated tasks to count"})
    add_config_args(p, DataConfig, only=("mcls_cap", "unseen_tags"))
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_stats)


def run_stats(a) -> int:
    from .corpus import load_corpus
    from .tasks import corpus_stats

    corpus = load_corpus(a.data, unseen_tags=a.unseen_tags)
    stats = corpus_stats(corpus, a.tasks, {"mcls_cap": a.mcls_cap})
    if a.json:
        print(json.dumps(stats, indent=2))
        return 0
    for split, per_task in stats.items():
        print(f"{corpus.name} {split} ({len(corpus.splits[split])} sentences)")
        for task, counts in per_task.items():
            print(f"  {task:6s} " + "  ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


# ------------------------------------------------------------------ task embeddings and affinities


def add_embed_parser(sub):
    p = sub.add_parser("embed", help="Fisher task embeddings from single-task models, similarities and maps")
    _add_run_args(p, "task specs CORPUS:TASK (or TASK on --data); single-task models are trained as needed")
    p.set_defaults(tasks=None)
    p.add_argument("--data-root", help="folder of the corpora named in CORPUS:TASK (sets $TASKREL_DATA)")
    p.add_argument("--out", required=True, help="embeddings folder (run again to resume)")
    add_config_args(p, EmbedConfig)
    p.add_argument("--model", action="append", default=[], metavar="SPEC=FOLDER", help="use this model for a task")
    p.set_defaults(func=run_embed)


def run_embed(a) -> int:
    import os

    from .embed import EmbedConfig, analyse_styles, embed

    if not a.tasks:
        raise ConfigError("--tasks is required, e.g. BC2GM:ner,NCBI-disease:ner,NCBI-disease:bcls")
    if a.data_root:
        os.environ["TASKREL_DATA"] = a.data_root
    models = dict(m.split("=", 1) for m in a.model)
    base = config_from_args(a)
    ec = EmbedConfig(base, a.tasks, models=models, **settings_of(a, EmbedConfig))
    embed(ec, a.out, progress=not a.no_progress)
    for style, purity in analyse_styles(ec, a.out).items():
        if ec.also_styles:
            print(f"{style} Fisher:")
        print(purity.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def add_affinity_parser(sub):
    p = sub.add_parser("affinity", help="TAG look-ahead task affinities from one joint multi-task run")
    _add_run_args(p, "comma-separated tasks, trained jointly")
    p.add_argument("--out", required=True, help="run folder; affinity.csv, affinity.json and affinity.png go there")
    add_config_args(p, AffinityConfig)
    add_config_args(
        p, TrainConfig, only=("weights", "seed"), helps={"weights": "loss weights in task order (default: 1 each)"}
    )
    p.set_defaults(func=run_affinity_cmd)


def run_affinity_cmd(a) -> int:
    from .affinity import run_affinity

    if a.weights is None:
        a.weights = [1.0] * len(a.tasks)
    table = run_affinity(config_from_args(a), **settings_of(a, AffinityConfig), progress=not a.no_progress)
    print(
        table.pivot(index="target", columns="source", values="affinity").to_string(float_format=lambda v: f"{v:+.4f}")
    )
    return 0


def add_predict_transfer_parser(sub):
    p = sub.add_parser("predict-transfer", help="how well embeddings and affinities rank a grid's secondary tasks")
    p.add_argument("--grid", required=True, help="grid folder (transfer.csv)")
    p.add_argument(
        "--embeddings",
        action="append",
        metavar="[LABEL=]FOLDER",
        help="folder written by taskrel embed; repeat with LABEL=FOLDER to score several side by side (the label "
        "prefixes their estimators' names)",
    )
    p.add_argument("--affinity", help="run folder written by taskrel affinity")
    p.add_argument("--out", help="output folder (default: GRID/prediction)")
    p.add_argument("--samples", type=int, default=1000, help="random rankings of the random baseline")
    p.set_defaults(func=run_predict_transfer_cmd)


def run_predict_transfer_cmd(a) -> int:
    from .ranking import run_predict_transfer

    embeddings = {}
    for item in a.embeddings or []:
        label, sep, folder = item.partition("=")
        if not sep:
            label, folder = "", item
        if label in embeddings:
            raise ConfigError(f"--embeddings: label {label!r} given twice; write LABEL=FOLDER for each")
        embeddings[label] = folder
    summary = run_predict_transfer(a.grid, embeddings, a.affinity, a.out, a.samples)
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    return 0


# ------------------------------------------------------------------ output


def format_scores(scores: dict, title: str) -> str:
    lines = [f"{title}:"]
    for task, s in scores.items():
        if "f1" in s:
            lines.append(
                f"  {task:6s} P {s['precision']:.4f}  R {s['recall']:.4f}  F1 {s['f1']:.4f}  ({s['support']} entities)"
            )
        else:
            lines.append(
                f"  {task:6s} accuracy {s['accuracy']:.4f}  macro-F1 {s['macro_f1']:.4f}  ({s['support']} sentences)"
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="taskrel", description="Multi-task BioNER and task-relationship analysis")
    parser.add_argument("--version", action="version", version=f"taskrel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        add_train_parser,
        add_grid_parser,
        add_tune_parser,
        add_run_parser,
        add_estimate_parser,
        add_status_parser,
        add_report_parser,
        add_archive_parser,
        add_restore_parser,
        add_aside_parser,
        add_evaluate_parser,
        add_predict_parser,
        add_export_parser,
        add_stats_parser,
        add_embed_parser,
        add_affinity_parser,
        add_predict_transfer_parser,
        add_claims_parser,
        add_scorecard_parser,
    ):
        add(sub)
    for command in sub.choices.values():  # every command: the same verbosity options
        command.add_argument("-v", "--verbose", action="count", default=0, help="more messages (debug)")
        command.add_argument("-q", "--quiet", action="count", default=0, help="warnings and errors only")
    for command in sub.choices.values():  # every command reads named corpora from the same place
        if not any("--data-root" in a.option_strings for a in command._actions):
            command.add_argument(
                "--data-root",
                help="folder of the corpora named without a path (default: $TASKREL_DATA, else "
                "../shared/data beside the checkout)",
            )
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose - args.quiet)
    if getattr(args, "data_root", None):
        import os

        os.environ["TASKREL_DATA"] = args.data_root
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except (TaskrelError, FileNotFoundError) as e:
        print(f"taskrel: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a reader that stopped early (`| head`): not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0


if __name__ == "__main__":
    sys.exit(main())
