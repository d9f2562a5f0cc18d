"""Does a study's stopping rule cut its runs off? The stop check.

Early stopping with patience P ends a run after P evaluations without a new
best dev score. When P is short for a corpus's noisy, slowly rising dev curve,
some runs stop on a passing plateau while runs with other seeds climb on,
and the runs that stopped early score lower on test. Under a stopping rule
that lets every run finish improving, when a run happened to peak should say
nothing about how well it ends up.

The check measures that relation per corpus (per main task in a grid): Spearman's ρ between each run's
selected (best) epoch and its test score, both taken as deviations from their
variant's mean so that a variant that trains longer and scores higher does
not count, over every finished run of the corpus. Its one-sided p (ρ > 0) is
a permutation test that shuffles the best epochs within each variant; Holm
adjusts it over the corpora. A flagged corpus is a warning, not proof: a
study of the patience itself (the same runs with a longer one, seeds paired)
says whether the comparisons change.

The patience sweep (``patience_sweep``) asks the budget question from dev
alone: replaying each run's dev curve under every shorter patience, where would
it have stopped, which epoch would it have selected, and how many dev points
would that have cost? Training does not depend on the patience, so the replay
is exact. A corpus where patience P-1 or P-2 already selects what P selects has
room to spare; one where each extra evaluation of patience still changes the
selection is one where P may be short too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .significance import holm

MIN_RUNS = 4  # fewer runs of a corpus (with at least 2 in a variant) say nothing
SAMPLES = 10_000
ALPHA = 0.05


def _rho(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row of ``x`` with ``y`` (NaN where a row or ``y`` is constant)."""
    rx, ry = rankdata(np.atleast_2d(x), axis=1), rankdata(y)
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean()
    norm = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, rx @ ry / np.where(norm > 0, norm, 1), np.nan)


def _centred(values: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """``values`` (one row or several) less their group's mean, group by group along the last axis."""
    out = np.array(values, dtype=float)
    for g in groups:
        out[..., g] -= out[..., g].mean(axis=-1, keepdims=True)
    return out


def stop_check(
    results: pd.DataFrame,
    score: str = "f1",
    by: str = "corpus",
    samples: int = SAMPLES,
    seed: int = 0,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """One row per value of ``by`` (a study's corpora; a grid's main tasks) of a table of runs (columns ``by``,
    variant, best_epoch and ``score``): runs, ρ, its one-sided permutation p, the Holm-adjusted p, the mean
    best epoch and the ``flag`` (adjusted p < alpha). Groups with fewer than ``MIN_RUNS`` runs in variants
    of two or more are left out."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, runs in results.dropna(subset=["best_epoch", score]).groupby(by, sort=False):
        runs = runs.groupby("variant").filter(lambda g: len(g) >= 2)
        if len(runs) < MIN_RUNS:
            continue
        groups = [np.flatnonzero(runs["variant"].to_numpy() == v) for v in runs["variant"].unique()]
        epochs = runs["best_epoch"].to_numpy(float)
        scores = _centred(runs[score].to_numpy(float), groups)
        rho = float(_rho(_centred(epochs, groups), scores)[0])
        p = float("nan")
        if not np.isnan(rho):
            shuffled = np.tile(epochs, (samples, 1))
            for g in groups:
                shuffled[:, g] = rng.permuted(shuffled[:, g], axis=1)
            hits = int(np.sum(_rho(_centred(shuffled, groups), scores) >= rho - 1e-12))
            p = (hits + 1) / (samples + 1)
        rows.append(
            {
                by: name,
                "runs": len(runs),
                "variants": len(groups),
                "rho": rho,
                "p": p,
                "mean_best_epoch": float(epochs.mean()),
                "min_best_epoch": int(epochs.min()),
                "max_best_epoch": int(epochs.max()),
            }
        )
    table = pd.DataFrame(rows)
    if len(table):
        tested = table["p"].notna()
        table["p_adjusted"] = np.nan
        table.loc[tested, "p_adjusted"] = holm(table.loc[tested, "p"])
        table["flag"] = table["p_adjusted"] < alpha
    return table


def describe(table: pd.DataFrame) -> str:
    """One paragraph on the check for a report (its first column names the groups: corpora or main tasks)."""
    by = table.columns[0] if len(table.columns) else "corpus"
    flagged = list(map(str, table.loc[table["flag"], by])) if len(table) else []
    text = (
        "Spearman's ρ between each run's selected epoch and its test score (deviations from the variant's "
        "means), one-sided permutation p with the epochs shuffled within variants, Holm over the table's rows. "
    )
    if flagged:
        return text + (
            f"**Flagged: {', '.join(flagged)}.** There the runs that peaked early scored lower on test: the "
            "stopping rule may cut runs off before they finish improving, which adds to the seed spread and can "
            "favour whichever arm happens to train longer. A patience study (the same runs with a longer "
            "patience, seeds paired) should come before a verdict there."
        )
    return text + "Nothing is flagged."


# ---- the patience sweep: what a shorter patience would have done, replayed from the dev curves


def replay_stop(epochs: list, scores: list, patience: int, min_epochs: float = 0) -> tuple[int, int]:
    """``(index of the evaluation where the run stops, index of the one it selects)`` under early stopping with
    ``patience``, replayed over a dev curve with the trainer's own rule: a new best must be strictly higher; the
    run stops once ``patience`` evaluations in a row brought none, and not before ``min_epochs`` epochs. A
    curve that never stops ends at its last evaluation."""
    best, best_at, bad = float("-inf"), 0, 0
    for k, (epoch, score) in enumerate(zip(epochs, scores)):
        if score > best:
            best, best_at, bad = score, k, 0
        else:
            bad += 1
        if bad >= patience and epoch >= min_epochs:
            return k, best_at
    return len(scores) - 1, best_at


def patience_sweep(runs: list[dict], by: str = "corpus") -> pd.DataFrame:
    """For every finished run trained with early stopping (dicts of ``by``, ``variant``, ``seed``,
    ``patience``, ``min_epochs`` and ``curve``, its ``RunDir.dev_curve``) and every shorter patience p: where
    the run would have stopped and which evaluation it would have selected. Training does not depend on the
    patience (the schedule's horizon is the maximum), so a run with patience p is this run cut at that stop:
    the replay is exact for dev, and where the selection is the same, the test score is this run's too. A
    different selection has no test score here (none is computed without training again), by design: the
    table says what the budget would have cost on dev only."""
    rows = []
    for run in runs:
        if not run.get("patience") or not run["curve"]:
            continue
        epochs, scores = [e for e, _, _ in run["curve"]], [s for _, s, _ in run["curve"]]
        min_epochs = run.get("min_epochs") or 0
        _, chosen = replay_stop(epochs, scores, run["patience"], min_epochs)
        for p in range(1, run["patience"] + 1):
            stop, best = replay_stop(epochs, scores, p, min_epochs)
            rows.append(
                {
                    by: run[by],
                    "variant": run["variant"],
                    "seed": run["seed"],
                    "run_patience": run["patience"],
                    "patience": p,
                    "stop_epoch": epochs[stop],
                    "selected_epoch": epochs[best],
                    "dev_selected": scores[best],
                    "dev_lost": scores[chosen] - scores[best],
                    "same_selection": best == chosen,
                    "epochs_share": epochs[stop] / epochs[-1],
                }
            )
    return pd.DataFrame(rows)


def sweep_summary(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per corpus (per main task: a grid's sweep, with a ``main`` column), the runs' own patience and
    each patience up to it (the variants pooled): runs, the dev points a shorter patience would have lost
    (mean and worst, ×100), the share of runs that would have selected the same evaluation, and the share of
    their epochs they would have trained."""
    if not len(sweep):
        return sweep
    keys = ["main" if "main" in sweep else "corpus", "run_patience", "patience"]
    return (
        sweep.groupby(keys, sort=False)
        .agg(
            runs=("seed", "size"),
            dev_lost_mean=("dev_lost", lambda x: 100 * x.mean()),
            dev_lost_max=("dev_lost", lambda x: 100 * x.max()),
            same_selection=("same_selection", "mean"),
            epochs_share=("epochs_share", "mean"),
        )
        .reset_index()
    )
