"""Where a study stands: ``taskrel status STUDY.yaml``.

Every run the study file declares (``estimate.study_runs``), each in one of five states: finished, pruned (a tuning
trial its study's pruner stopped: over too), training now (a live process holds its lock), interrupted (its folder
has a record but no live writer: the next ``taskrel run`` resumes it from its checkpoint, or trains it again if it
has none) or not started. A finished run shows its main task's test and dev scores, the epoch selected on dev, the
epochs it ran, whether it converged, its training and evaluation minutes and the machines it trained on; a run
under way shows its epochs so far and its best dev score so far. Then the counts, and the time left at the study's
own measured pace (``estimate``, without a probe).

The table is Markdown, so a study's README slice quotes it as printed instead of copying numbers by hand, and a
run that did not converge is in bold there, as every measurement that includes one must be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .locks import is_locked
from .machine import label
from .rundir import RunDir

FINISHED, PRUNED, TRAINING, INTERRUPTED, NOT_STARTED = (
    "finished",
    "pruned",  # a tuning trial its study's pruner stopped: over, as a finished run is
    "training now",
    "interrupted",
    "not started",
)


@dataclass
class RunState:
    """One declared run of a study and how far it got."""

    name: str  # its folder, relative to the study's results folder
    state: str  # FINISHED, TRAINING, INTERRUPTED or NOT_STARTED
    note: str = ""  # an interrupted run: what the next ``taskrel run`` does with it
    main: str = ""  # the main task (selection and early stopping follow it)
    test: float = math.nan  # the main task's test score x 100 (finished runs)
    best_epoch: float | None = None  # selected (finished) or best so far (under way)
    best_dev: float = math.nan  # the main task's dev score x 100 at best_epoch (finished: on the whole devel set)
    epochs: float = math.nan  # epochs run (so far)
    converged: bool | None = None
    minutes: float = math.nan  # training and evaluation time recorded so far
    machines: str = ""

    @property
    def cells(self) -> list[str]:
        """The row of ``table``."""

        def num(x, fmt="{:.2f}"):
            return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)

        converged = {True: "yes", False: "**no**", None: "–" if self.state != FINISHED else "not recorded"}
        state = self.state + (f" ({self.note})" if self.note else "")
        if self.state != FINISHED and self.best_epoch is not None:
            so_far = "" if self.state == PRUNED else " so far,"
            state += f": best dev {self.best_dev:.2f}{so_far} at epoch {num(self.best_epoch, '{:g}')}"
        return [
            self.name,
            self.main or "–",
            state,
            num(self.test),
            num(self.best_dev) if self.state == FINISHED else "–",
            num(self.best_epoch, "{:g}") if self.state == FINISHED else "–",
            num(self.epochs, "{:g}"),
            converged[self.converged],
            num(self.minutes, "{:.0f}"),
            self.machines or "–",
        ]


HEADER = ["run", "main", "state", "test", "dev", "selected epoch", "epochs run", "converged", "minutes", "machine"]


def _state(run: RunDir, recorded: bool) -> str:
    if run.done:
        return FINISHED
    if run.pruned:
        return PRUNED
    if is_locked(run.path):
        return TRAINING
    return INTERRUPTED if recorded else NOT_STARTED


def run_state(folder: Path, name: str) -> RunState:
    """How far the run in ``folder`` got."""
    run, recorded = RunDir(folder), (folder / "config.json").is_file()
    state = _state(run, recorded)
    if not recorded:  # not started, or its writer has not recorded its settings yet
        return RunState(name, state)
    row = RunState(name, state, main=run.main)
    if state == PRUNED:
        row.note = f"by its tuning study after epoch {run.pruned.get('epoch', '?')}"
        if run.pruned.get("median") is not None:  # recorded since 2026-11-29
            row.note += f", below the median {run.pruned['median']:.4f} of the completed trials"
    if state == INTERRUPTED:  # what the next ``taskrel run`` does with it
        resumes = (folder / "checkpoint").is_dir()
        row.note = "resumes from its checkpoint" if resumes else "no checkpoint yet: trains again from the start"
    machines = dict.fromkeys(label(s) for s in run.sessions)
    row.machines = "; ".join(machines)
    if not run.records:  # started, no evaluation recorded yet
        return row
    row.minutes = run.seconds / 60
    row.epochs = run.epochs_run
    if state == FINISHED:
        row.best_epoch, row.test, row.converged = run.best_epoch, 100 * run.score("test"), run.converged
        row.best_dev = 100 * run.score("dev")  # the selected model on the whole devel set (a trial's objective)
        return row
    chosen = [(epoch, score) for epoch, score, selected in run.dev_curve() if selected]
    if chosen:  # the best so far
        row.best_epoch, best = chosen[-1]
        row.best_dev = 100 * best
    return row


def study_states(study, out: Path) -> list[RunState]:
    """Every run ``study`` declares, in its order, with its state, read from the results folder ``out``."""
    from .estimate import study_retrains, study_runs

    out = Path(out)
    states, again = [], study_retrains(study, out)
    for cfg in study_runs(study, out):
        folder = Path(cfg.out)
        try:
            name = str(folder.relative_to(out))
        except ValueError:
            name = str(folder)
        if folder in again:  # its record says finished, but the next ``taskrel run`` trains it again
            states.append(RunState(name, NOT_STARTED, note="finished, restored without its weights: trains again"))
            continue
        states.append(run_state(folder, name))
    return states


def counts_line(states: list[RunState]) -> str:
    """``52 runs: 15 finished (all converged), 2 training now, 35 not started``."""
    finished = [s for s in states if s.state == FINISHED]
    parts = [f"{len(finished)} finished"]
    if finished:
        unconverged = sum(1 for s in finished if s.converged is False)
        unknown = sum(1 for s in finished if s.converged is None)
        if not unconverged and not unknown:
            parts[0] += " (all converged)"
        else:
            notes = [f"**{unconverged} not converged**"] if unconverged else []
            notes += [f"{unknown} without a convergence record"] if unknown else []
            parts[0] += f" ({', '.join(notes)})"
    for state in (PRUNED, TRAINING, INTERRUPTED, NOT_STARTED):
        n = sum(1 for s in states if s.state == state)
        if n:
            parts.append(f"{n} {state}")
    return f"{len(states)} runs: " + ", ".join(parts)


def table(states: list[RunState], only=None) -> str:
    """The Markdown table of ``states`` (those whose state is in ``only``, if given)."""
    rows = [s for s in states if only is None or s.state in only]
    align = ["---"] * 3 + ["---:"] * 4 + ["---", "---:", "---"]
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(c.replace("|", r"\|") for c in s.cells) + " |" for s in rows]
    return "\n".join(lines)
