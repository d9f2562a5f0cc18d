"""Grid cells as a work queue in an Optuna storage, shared by many workers.

Every ``taskrel grid --storage URL`` process, on one machine or many, joins one
Optuna study named after the grid. Each cell is an enqueued trial (parameter
``cell``, and the cell in its user attributes); a worker runs
``study.optimize(objective, n_trials=1)`` while the queue has a waiting trial:
Optuna pops it (WAITING -> RUNNING), keeps its heartbeat while the cell trains
and records the score. Only Optuna's public API is used (heartbeats go through
the storage that ``open_study`` returns with the study). On SQLite two workers
can pop the same trial: the run directory's lock makes the second wait, then
read the finished run (``queue_log.jsonl`` marks its line ``waited``), so a
cell never trains twice. A worker that dies stops beating; the next worker to
look fails its trial as stale, and ``RetryHeartbeatStaleTrialCallback`` puts
the cell back in the queue; the new owner resumes the run directory from its
last finished epoch. A worker that died after taking a trial but before its
first heartbeat left nothing to go stale: a RUNNING trial older than the grace
period gets one heartbeat recorded on its behalf (once per looking worker), so
that it goes stale in turn if nobody beats for it (``_nudge_silent``).

Should two workers starting together enqueue one cell twice, the trial with the
lowest number among those not failed owns the cell, and a later duplicate is
pruned without running.

Storage URLs are Optuna RDB URLs: ``sqlite:///grid.db`` on one machine or a
shared file system, ``postgresql://...`` or ``mysql://...`` for a cluster
(the journal file storage has no heartbeat, so it is not accepted).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from .config import GRACE, HEARTBEAT, ConfigError
from .locks import RunLocked
from .logs import say

LIVE = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)


# what a worker sees when another one is creating the same storage schema or study at that moment: a retry after
# a pause finds them made (PostgreSQL reports a table created meanwhile as DuplicateTable, a ProgrammingError)
SCHEMA_RACE = (IntegrityError, OperationalError, ProgrammingError)


def open_study(url: str, name: str, heartbeat: int = HEARTBEAT, grace: int = GRACE) -> tuple[optuna.Study, RDBStorage]:
    """The queue's study and the storage it lives in (heartbeats are recorded through the storage)."""
    if not url.startswith(("sqlite:", "postgresql", "mysql")):  # also postgresql+psycopg2://, mysql+pymysql://
        raise ConfigError(f"--storage {url!r}: expected an Optuna RDB URL (sqlite:///FILE, postgresql://, mysql://)")
    if url.startswith("sqlite:///"):
        folder = Path(url[len("sqlite:///") :].split("?")[0]).parent
        if not folder.is_dir():
            raise ConfigError(f"--storage {url!r}: the folder {folder} does not exist")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for attempt in range(5):
        try:
            storage = RDBStorage(
                url,
                heartbeat_interval=heartbeat,
                grace_period=grace,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
                engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
            )
            study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="maximize")
            return study, storage
        except SCHEMA_RACE:
            if attempt == 4:
                raise
            time.sleep(0.5 + attempt)


def _cell_of(trial) -> str | None:
    return trial.user_attrs.get("cell") or trial.params.get("cell")


def enqueue(study: optuna.Study, names: list[str]) -> None:
    """Enqueue the cells that have no live trial yet."""
    have = {_cell_of(t) for t in study.get_trials(deepcopy=False, states=LIVE)}
    for name in names:
        if name not in have:
            study.enqueue_trial({"cell": name}, user_attrs={"cell": name}, skip_if_exists=True)


def _owner(study: optuna.Study, cell: str) -> int | None:
    live = [t.number for t in study.get_trials(deepcopy=False, states=LIVE) if _cell_of(t) == cell]
    return min(live) if live else None


def trial_id(storage: RDBStorage, study: optuna.Study, number: int) -> int:
    """The storage's id of a study's trial (what heartbeats are recorded against)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)


def _nudge_silent(study: optuna.Study, storage: RDBStorage, nudged: set[int], grace: float) -> None:
    """Record one heartbeat for every RUNNING trial started more than a grace period ago that this worker has
    not nudged yet. A live owner beats anyway; a trial whose owner died before its first beat (which Optuna's
    stale check cannot see, having no beat to age) then goes stale a grace period later and is retried."""
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = t.datetime_start
        if t.number not in nudged and started is not None and (now - started).total_seconds() > grace:
            storage.record_heartbeat(trial_id(storage, study, t.number))
            nudged.add(t.number)


def work(
    queue: tuple[optuna.Study, RDBStorage],
    names: list[str],
    run,
    log_path: Path,
    poll: float = 5.0,
    log=say,
    grace: float = GRACE,
    done=None,
) -> int:
    """Take cells until every one is complete; ``run(name) -> score``. Returns cells run here. ``queue``: what
    ``open_study`` returned; ``grace``: the storage's grace period; ``done(name)``: whether a cell is already
    finished (another worker that popped the same trial trained it before this one started)."""
    study, storage = queue
    enqueue(study, names)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    ran = []

    def objective(trial: optuna.Trial) -> float:
        cell = trial.suggest_categorical("cell", names)  # an enqueued trial's own cell
        if _owner(study, cell) != trial.number:
            raise optuna.TrialPruned(f"{cell} is owned by an earlier trial")  # a duplicate, or no waiting trial
        waited = bool(done and done(cell))  # the other worker of a shared trial finished it before we looked
        while True:
            try:
                score = run(cell)
                break
            except RunLocked:
                # another worker is training this cell (on SQLite two workers can pop the same waiting
                # trial): wait for it, then read the finished run
                log(f"{worker}: {cell} is being trained by another worker (trial {trial.number}); waiting")
                waited = True
                time.sleep(poll)
        ran.append(cell)
        # one short line per append: safe across processes. ``waited``: another worker held the cell first (it
        # logs the cell too); this one read the finished run, or resumed it if the other stopped
        entry = {"cell": cell, "trial": trial.number, "worker": worker, "time": time.time()}
        with open(log_path, "a") as f:
            f.write(json.dumps(entry | ({"waited": True} if waited else {})) + "\n")
        log(f"{worker}: {cell} done (trial {trial.number}{', after waiting for another worker' if waited else ''})")
        return score

    nudged: set[int] = set()
    while True:
        _nudge_silent(study, storage, nudged, grace)
        fail_stale_trials(study)
        snapshot = study.get_trials(deepcopy=False)  # one read, so the states below are consistent
        complete = {_cell_of(t) for t in snapshot if t.state == TrialState.COMPLETE}
        if complete >= set(names):
            return len(ran)
        if not any(t.state == TrialState.WAITING for t in snapshot):
            if not any(t.state == TrialState.RUNNING for t in snapshot):
                failed = sorted(set(names) - complete)
                raise RuntimeError(f"grid cells failed on every retry: {failed}; see their run folders")
            time.sleep(poll)  # cells are running elsewhere; wait in case a worker dies
            continue
        try:
            study.optimize(objective, n_trials=1)
        except (RuntimeError, ValueError) as e:  # the same trial, already told by the worker that shares it
            log(f"{worker}: a trial was finished elsewhere: {e}")
