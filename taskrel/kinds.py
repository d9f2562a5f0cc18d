"""The study-kind registry: what each kind of results folder is, how it runs, reports and opens.

A kind declares the file that marks its results folder (``marker``), its
settings dataclass, how a study file's section runs it (``run``), its report
blocks and the data files copied beside the report, its notebook, and the runs
one section trains (for `taskrel estimate`).
``experiments`` (study files), ``report``, ``notebooks`` and the CLI look
kinds up here; adding a kind is one entry. Functions are named, not
imported, so that reading the registry costs nothing.

Experiment files declare ``runs`` and ``grid`` studies (``experiments.py``),
and ``tune``, ``embed``, ``affinity`` and ``prediction`` studies through a
section of that name whose keys are the fields of the kind's settings
dataclass (plus the follow-up steps of ``tune``: ``measure_pruning``,
``continue_pruned``, ``confirm_seeds``, ``arms``). ``confirm`` and ``pruning``
results are written by other kinds' commands and have no section of their own.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StudyKind:
    name: str
    marker: str  # the file (relative path) that makes a folder hold this kind's results
    blocks: str  # "module:function" giving the report blocks of such a folder
    files: tuple[str, ...] = ()  # data files copied beside the report when present
    notebook: tuple[str, str] | None = None  # (notebook in notebooks/, the parameter naming the folder)
    config: str | None = None  # "module:Class" of its settings, recorded in the marker file
    run: str | None = None  # "module:function" running one study file section on one corpus
    # "module:function" (settings, steps, folder) -> the run configurations one section trains on one corpus,
    # for ``taskrel estimate``; None: the one run ``settings.base``
    trains: str | None = None
    # its runs (``trains``) are independent plain training runs without a test pass: with ``workers: N`` the study
    # trains them first, N at once, and the section's ``run`` then finds them done (``experiments.run_study``)
    parallel: bool = False
    # "module:function" (settings, steps, folder, log) run before a section's runs train: what must train again
    # is set aside (embed: a finished model restored without its weights, still to be embedded)
    before: str | None = None
    # "module:function" (settings, steps, folder) -> the run configurations of one section that finished but will
    # train again (those ``before`` sets aside): ``taskrel status`` and ``estimate`` count them as still to train
    retrains: str | None = None

    def call(self, attr: str, *args, **kwargs):
        module, _, name = getattr(self, attr).partition(":")
        return getattr(importlib.import_module(f"taskrel.{module}"), name)(*args, **kwargs)

    def holds(self, folder: Path) -> bool:
        return (Path(folder) / self.marker).is_file()


KINDS: dict[str, StudyKind] = {
    k.name: k
    for k in (
        StudyKind(
            "grid",
            "grid.json",
            "report:grid_blocks",
            ("runs.csv", "transfer.csv", "noise.csv", "contrasts.csv", "stop_check.csv", "patience_sweep.csv"),
            ("pairwise_transfer.ipynb", "GRID_DIR"),
            "config:GridConfig",
        ),
        StudyKind(
            "tune",
            "tune.json",
            "report:tune_blocks",
            ("best.json", "trials.csv"),
            ("loss_weight_tuning.ipynb", "TUNE_DIR"),
            "config:TuneConfig",
            "experiments:run_tune_section",
            "tune:section_runs",
        ),
        StudyKind("pruning", "pruning.json", "report:pruning_blocks", ("pruning.json", "pruning.csv")),
        StudyKind("confirm", "confirm/comparison.csv", "report:confirm_blocks", ("confirm/comparison.csv",)),
        StudyKind(
            "embed",
            "embeddings.npz",
            "report:embed_blocks",
            ("meta.json", "similarity.csv", "purity.csv"),
            ("task_embeddings.ipynb", "EMB_DIR"),
            "config:EmbedConfig",
            "experiments:run_embed_section",
            "embed:section_runs",
            parallel=True,
            before="embed:before_section",
            retrains="embed:weightless_pending",
        ),
        StudyKind(
            "affinity",
            "affinity.json",
            "report:affinity_blocks",
            ("affinity.csv", "affinity.json"),
            None,
            "config:AffinityConfig",
            "experiments:run_affinity_section",
        ),
        StudyKind(
            "prediction",
            "prediction/prediction_summary.csv",
            "report:prediction_blocks",
            ("prediction/prediction.csv", "prediction/prediction.json"),
            None,
            "config:PredictionConfig",
            "experiments:run_prediction_section",
            "ranking:section_runs",
        ),
    )
}

# kinds a study file can declare: runs and grid (experiments.py), and every kind with a section runner
STUDY_FILE_KINDS = ("runs", "grid") + tuple(k.name for k in KINDS.values() if k.run)


def kinds_of(folder) -> list[StudyKind]:
    """The kinds of results a folder holds (a tuning folder may hold tune, pruning and confirm)."""
    return [k for k in KINDS.values() if k.holds(folder)]
