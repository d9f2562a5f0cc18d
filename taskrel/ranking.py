"""Do cheap estimators predict the transfer grid? (``taskrel predict-transfer``)

For each main task M of a grid, the secondary tasks S are ranked by each
estimator and the ranking is scored against the grid's measured Δ(M | S):

- Spearman and Kendall correlation between estimator scores and Δ;
- NDCG of the ranking, with relevance Δ − min Δ over M's secondaries;
- ρ: the rank the estimator gives to the truly best secondary (1 is perfect;
  Vu et al., 2020);
- Regret@1: (best score − score with the estimator's top pick) / best score,
  on M's own metric (0 is perfect).

Estimators: Fisher-embedding similarity sim(M, S) per component and measure;
TAG affinity S → M (S's look-ahead step lowers M's loss); baselines: a random
ranking (metrics averaged over every permutation, or over random ones when
there are too many to enumerate) and data size (more training sentences
first, then more labelled decisions: words for token tasks, sentences for
sentence tasks).

Against the random ranking, each estimator's mean Spearman over main tasks
gets a one-sided permutation p-value: the probability that rankings drawn
uniformly at random, independently per main task, reach that mean. It is
exact (every combination of permutations) up to ``EXACT_LIMIT`` combinations,
Monte Carlo beyond. ``p_adjusted`` is Holm over the table's estimators (one
family: the estimators scored against one grid). A mean Spearman counts as a
finding only where its adjusted p is below 0.05.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from .logs import say
from .tasks import TaskSpec

METRICS = ("spearman", "kendall", "ndcg", "rho", "regret_at_1")
EXACT_LIMIT = 200_000  # combinations of per-main-task permutations enumerated exactly; Monte Carlo above
NULL_SAMPLES = 20_000


def ndcg(scores, relevance) -> float:
    """NDCG of ranking by ``scores`` (high first) with non-negative ``relevance``; 1 if all relevance is 0.

    scikit-learn's ``ndcg_score``: tied scores share the mean gain of their positions."""
    from sklearn.metrics import ndcg_score

    scores, relevance = np.asarray(scores, float), np.asarray(relevance, float)
    if len(scores) < 2 or not (relevance > 0).any():
        return 1.0
    return float(ndcg_score(relevance[None, :], scores[None, :]))


def rank_metrics(estimate, delta, main_score_with) -> dict:
    """Metrics of one main task's ranking. ``main_score_with``: M's score with each secondary."""
    from scipy.stats import kendalltau, spearmanr

    estimate, delta = np.asarray(estimate, float), np.asarray(delta, float)
    with_s = np.asarray(main_score_with, float)
    order = np.argsort(-estimate, kind="stable")
    best = int(np.argmax(delta))
    const = np.allclose(estimate, estimate[0]) or np.allclose(delta, delta[0])
    return {
        "spearman": math.nan if const else float(spearmanr(estimate, delta).statistic),
        "kendall": math.nan if const else float(kendalltau(estimate, delta).statistic),
        "ndcg": ndcg(estimate, delta - delta.min()),
        "rho": float(np.where(order == best)[0][0] + 1),
        "regret_at_1": float((with_s.max() - with_s[order[0]]) / with_s.max()) if with_s.max() > 0 else 0.0,
        "n_secondaries": len(delta),
    }


def _rankings(n: int, samples: int, seed: int = 0) -> list:
    """Every ranking of n candidates when there are at most ``samples``, else ``samples`` random ones."""
    if math.factorial(n) <= samples:
        return [np.array(p, float) for p in itertools.permutations(range(n))]
    rng = np.random.default_rng(seed)
    return [rng.permutation(n).astype(float) for _ in range(samples)]


def random_baseline(delta, main_score_with, samples: int = 1000, seed: int = 0) -> dict:
    """Expected metrics of a random ranking: exact over every permutation when there are at most
    ``samples`` of them, else Monte Carlo over ``samples`` random ones."""
    runs = [rank_metrics(r, delta, main_score_with) for r in _rankings(len(delta), samples, seed)]
    return {k: float(np.nanmean([r[k] for r in runs])) for k in runs[0]}


def null_spearman(delta) -> np.ndarray:
    """Spearman of every ranking of the candidates (a random ranking's distribution) against ``delta``."""
    from scipy.stats import spearmanr

    delta = np.asarray(delta, float)
    if len(delta) < 2 or np.allclose(delta, delta[0]):
        return np.array([math.nan])
    return np.array([spearmanr(r, delta).statistic for r in _rankings(len(delta), 40_320)])


def permutation_p(observed_mean: float, nulls: list[np.ndarray], seed: int = 0) -> float:
    """One-sided p of a mean Spearman over main tasks against independent random rankings per main task.

    ``nulls``: each main task's null distribution (``null_spearman``), equiprobable values. Exact by
    enumerating every combination up to ``EXACT_LIMIT`` of them, else Monte Carlo with ``NULL_SAMPLES``
    draws (then floored at 1/(draws+1)).
    """
    nulls = [n for n in nulls if np.isfinite(n).all()]
    if not nulls or not np.isfinite(observed_mean):
        return math.nan
    eps = 1e-12
    if math.prod(len(n) for n in nulls) <= EXACT_LIMIT:
        sums = np.zeros(1)
        for n in nulls:
            sums = (sums[:, None] + n[None, :]).ravel()
        return float(np.mean(sums / len(nulls) >= observed_mean - eps))
    rng = np.random.default_rng(seed)
    draws = np.mean([rng.choice(n, NULL_SAMPLES) for n in nulls], axis=0)
    return float((np.sum(draws >= observed_mean - eps) + 1) / (NULL_SAMPLES + 1))


def predict_transfer(transfer: pd.DataFrame, alone: dict, estimators: dict, samples: int = 1000) -> pd.DataFrame:
    """One row per (main task, estimator).

    ``transfer``: the grid's ``transfer.csv`` (main, secondary, mean_delta);
    ``alone``: main task -> its mean score alone; ``estimators``: name ->
    function ``(main, secondary) -> score`` (higher: predicted more helpful).
    """
    rows = []
    for main, group in transfer.groupby("main", sort=False):
        secondaries = list(group["secondary"])
        delta = group["mean_delta"].to_numpy(float)
        with_s = alone[main] + delta
        for name, fn in estimators.items():
            estimate = [fn(main, s) for s in secondaries]
            if any(e is None or not np.isfinite(e) for e in estimate):
                continue
            rows.append({"main": main, "estimator": name, **rank_metrics(estimate, delta, with_s)})
        rows.append({"main": main, "estimator": "random", **random_baseline(delta, with_s, samples)})
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame, transfer: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean of every metric over main tasks, per estimator; with the grid's ``transfer``, also each
    estimator's permutation p of its mean Spearman (``p_spearman``) and its Holm adjustment."""
    from .significance import holm

    summ = table.groupby("estimator", sort=False)[list(METRICS)].mean()
    if transfer is None:
        return summ
    nulls = {m: null_spearman(g["mean_delta"]) for m, g in transfer.groupby("main", sort=False)}
    p = {}
    for name, rows in table.groupby("estimator", sort=False):
        if name != "random":
            p[name] = permutation_p(float(rows["spearman"].mean()), [nulls[m] for m in rows["main"]])
    summ["mains"] = table.groupby("estimator", sort=False)["main"].count()
    summ["p_spearman"] = pd.Series(p)
    summ["p_adjusted"] = pd.Series(dict(zip(p, holm(list(p.values())))))
    return summ


def _data_size(grid) -> dict:
    """Per canonical task: (training sentences, labelled decisions) of the grid's training data."""
    from .sources import load_sources

    sizes = {}
    for src in load_sources(grid.base, ("train", "devel")).values():
        for spec, task in src.tasks.items():
            decisions = sum(len(s.tokens) for s in src.train) if task.is_token else len(src.train)
            sizes[TaskSpec.parse(spec).canonical(grid.base.data.data)] = (len(src.train), decisions)
    return sizes


def _embedding_dirs(emb_dirs) -> dict:
    """``emb_dirs`` as label -> folder: one folder (no label), or a mapping already."""
    if not emb_dirs:
        return {}
    return {str(k): v for k, v in emb_dirs.items()} if isinstance(emb_dirs, dict) else {"": emb_dirs}


def score_estimators(res, emb_dirs=None, aff_dir=None, samples: int = 1000, log=say) -> pd.DataFrame:
    """Every available estimator's ranking metrics against a grid (``res``: its ``grid.load_results``), one row
    per (main task, estimator).

    ``emb_dirs``: an embeddings folder, or label -> folder (each label prefixes its estimators' names,
    ``LABEL/fisher:...``, so two Fisher styles are scored side by side in one family)."""
    from pathlib import Path

    default = res.grid.base.data.data
    key = {t: TaskSpec.parse(t).canonical(default) for t in res.grid.tasks}
    estimators = {}
    for label, folder in _embedding_dirs(emb_dirs).items():
        from .embed import load_embeddings
        from .similarity import MEASURES, similarity_matrix

        prefix = f"{label}/" if label else ""
        emb = load_embeddings(folder)
        index = {(c, k): i for i, (c, k) in enumerate(zip(emb.corpora(), emb.kinds()))}
        missing = sorted({key[t] for t in res.grid.tasks} - set(index))
        if missing:
            log(f"embeddings {folder} lack grid tasks {missing}: their estimators skip them")
        for comp in emb.meta["components"]:
            for measure in MEASURES:
                kinds = [("fisher", False)] + ([("control", True)] if emb.has_control else [])
                for name, control in kinds:  # control: the same estimator from the shuffled-label embeddings
                    sim = similarity_matrix(emb.vectors(comp, control=control), measure)

                    def fn(m, s, sim=sim, index=index):
                        a, b = index.get(key[m]), index.get(key[s])
                        return None if a is None or b is None else float(sim[a, b])

                    estimators[f"{prefix}{name}:{comp}:{measure}"] = fn
    if aff_dir:
        aff = pd.read_csv(Path(aff_dir) / "affinity.csv")
        table = {((r.source_corpus, r.source_task), (r.target_corpus, r.target_task)): r.affinity
                 for r in aff.itertuples()}  # fmt: skip
        estimators["tag"] = lambda m, s: table.get((key[s], key[m]))
    sizes = _data_size(res.grid)
    estimators["data_size"] = lambda m, s: sizes[key[s]][0] * 1e6 + sizes[key[s]][1]
    alone = res.alone()["mean"].to_dict()
    return predict_transfer(res.transfer, alone, estimators, samples)


def grid_status(transfer: pd.DataFrame) -> dict:
    """What the ground truth is worth: the grid's pairs, how many have every run converged, and the verdicts."""
    verdicts = transfer["verdict"].value_counts().to_dict() if "verdict" in transfer else {}
    return {
        "pairs": len(transfer),
        "converged_pairs": int(transfer["converged"].sum()) if "converged" in transfer else None,
        "verdicts": {k: int(v) for k, v in verdicts.items()},
        "seeds": sorted({int(n) for n in transfer["n_seeds"]}) if "n_seeds" in transfer else [],
    }


def section_runs(settings, steps: dict, folder) -> list:
    """A prediction study section trains nothing (for ``taskrel estimate``)."""
    return []


def run_predict_transfer(grid_dir, emb_dirs=None, aff_dir=None, out=None, samples: int = 1000, log=say):
    """``score_estimators``, written to ``prediction.csv``, ``prediction_summary.csv``, ``prediction.png`` and
    ``prediction.json`` (the inputs and what the grid's transfers are worth) in ``out`` (default:
    ``GRID_DIR/prediction``); returns the summary."""
    from pathlib import Path

    from .grid import load_results
    from .plots import prediction_scores
    from .rundir import write_json

    res = load_results(grid_dir)  # read (and if need be analysed) once: the estimators and the summary share it
    table = score_estimators(res, emb_dirs, aff_dir, samples, log)
    out = Path(out or Path(grid_dir) / "prediction")
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "prediction.csv", index=False)
    transfer = res.transfer
    summ = summary(table, transfer)
    summ.to_csv(out / "prediction_summary.csv")
    prediction_scores(summ, out / "prediction.png")
    inputs = {"grid": str(grid_dir), "embeddings": {k: str(v) for k, v in _embedding_dirs(emb_dirs).items()}}
    write_json(out / "prediction.json", {**inputs, "affinity": aff_dir and str(aff_dir), "samples": samples,
                                         "grid_status": grid_status(transfer)})  # fmt: skip
    log(f"wrote {out / 'prediction.csv'}, prediction_summary.csv, prediction.png and prediction.json")
    return summ
