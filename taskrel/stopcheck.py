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
