"""Runs set aside: a study's runs made under settings it no longer gives them, kept as the record.

When a study's file changes a setting of runs that exist (a budget decision moves a corpus to a longer
schedule, say), those runs can no longer count (``experiments.finished_runs`` refuses them, naming the
settings that differ), and they must not be lost either: they are what the study measured before. ``aside``
moves each such run folder from ``OUT/VARIANT/CORPUS/seedS`` to ``OUT/set-aside/VARIANT/CORPUS/seedS`` and
writes ``aside.json`` into it (when, why: the settings that differ, and the command). The study then trains its
runs anew where they were, and ``taskrel archive`` packs the set-aside ones with the rest, so a fresh checkout
restores them there, never in the study's way.

A run that another study reads (its ``runs_in``) is never moved: that study would train it again. Nor is a
run that lives in another study's folder (this study's ``runs_in``): edit ``runs_in`` instead.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .config import ConfigError
from .rundir import CONFIG, RunDir, write_json

ASIDE = "set-aside"  # the folder under a study's results folder that holds its runs set aside
RECORD = "aside.json"  # written into each run folder set aside


@dataclass
class Aside:
    run: Path  # where the run is
    dest: Path  # where it goes
    why: str  # the settings that differ


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies in ``folder`` (both resolved)."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def readers(path: Path, others) -> list[str]:
    """The studies among ``others`` (loaded study files) whose variants read runs from the folder holding
    ``path`` (``runs_in``)."""
    from .experiments import RUNS_IN, _shared_folder, corpus_path

    names = []
    for study in others:
        for overrides in study.variants.values():
            runs_in = (overrides or {}).get(RUNS_IN)
            shared = [(_shared_folder(runs_in, str(c)), str(c)) for c in study.corpora] if runs_in else []
            if any(f and inside(path, corpus_path(f, c, below=True)) for f, c in shared):
                names.append(study.name)
                break
    return names


def plan(path, corpus: str | None = None, others=None) -> list[Aside]:
    """The runs of the study in file ``path`` (on ``corpus``, if given) made under other settings than the study
    gives them now, and where each goes. ``others``: the other study files that could read them (default: every
    study file beside ``path``). Refuses (``ConfigError``, naming them all) where any cannot be moved."""
    from .experiments import load_study, study_folder

    study = load_study(path)
    if study.kind != "runs":
        raise ConfigError(f"{path}: runs are set aside in a 'runs' study, not {study.kind!r}")
    if corpus is not None and corpus not in study.corpus_names:
        raise ConfigError(f"{path}: --corpus must be one of {study.corpus_names}; got {corpus!r}")
    out = study_folder(path, study)
    if others is None:
        beside = sorted(p for p in Path(path).parent.glob("*.yaml") if p.resolve() != Path(path).resolve())
        others = [load_study(p) for p in beside]
    moves, refused = [], []
    for _, c, _, cfg in study.run_configs(out):
        run = RunDir(cfg.out)
        if (corpus is not None and Path(c).name != corpus) or not (run.path / CONFIG).is_file():
            continue
        why = "; ".join(run.differences(cfg))
        if not why:
            continue
        if not inside(run.path, out):
            refused.append(f"{run.path} is another study's run (runs_in): edit runs_in rather than move it")
        elif names := readers(run.path, others):
            refused.append(f"{run.path} is read by {', '.join(names)} (runs_in): moving it would train it again")
        else:
            moves.append(Aside(run.path, out / ASIDE / run.path.relative_to(out), why))
    if refused:
        raise ConfigError("cannot set aside:\n  " + "\n  ".join(refused))
    return moves


def set_aside(moves: list[Aside], log=print) -> None:
    """Move each run of ``plan`` aside with its record (``aside.json``); one already there is refused."""
    for m in moves:
        if m.dest.exists():
            raise ConfigError(f"{m.dest} exists: a run was set aside there before; move it first")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for m in moves:
        m.dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(m.run), str(m.dest))
        write_json(m.dest / RECORD, {"set_aside": stamp, "from": str(m.run), "why": m.why, "command": sys.argv})
        log(f"{m.run} -> {m.dest} ({m.why})")
