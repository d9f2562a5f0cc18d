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
ranking (metrics averaged over random permutations) and data size (more
training sentences first, then more labelled decisions: words for token
tasks, sentences for sentence tasks).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .logs import say
from .tasks import TaskSpec

METRICS = ("spearman", "kendall", "ndcg", "rho", "regret_at_1")


def ndcg(scores, relevance) -> float:
    """NDCG of ranking by ``scores`` (high first) with non-negative ``relevance``; 1 if all relevance is 0."""
    scores, relevance = np.asarray(scores, float), np.asarray(relevance, float)
    discount = 1.0 / np.log2(np.arange(2, len(scores) + 2))
    ideal = float(np.sort(relevance)[::-1] @ discount)
    if ideal <= 0:
        return 1.0
    return float(relevance[np.argsort(-scores, kind="stable")] @ discount) / ideal


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


def random_baseline(delta, main_score_with, samples: int = 1000, seed: int = 0) -> dict:
    """Expected metrics of a random ranking (Monte Carlo over permutations)."""
    rng = np.random.default_rng(seed)
    n = len(delta)
    runs = [rank_metrics(rng.permutation(n).astype(float), delta, main_score_with) for _ in range(samples)]
    return {k: float(np.nanmean([r[k] for r in runs])) for k in runs[0]}


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


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of every metric over main tasks, per estimator."""
    return table.groupby("estimator", sort=False)[list(METRICS)].mean()


def _data_size(grid) -> dict:
    """Per canonical task: (training sentences, labelled decisions) of the grid's training data."""
    from .sources import load_sources

    sizes = {}
    for src in load_sources(grid.base, ("train", "devel")).values():
        for spec, task in src.tasks.items():
            decisions = sum(len(s.tokens) for s in src.train) if task.is_token else len(src.train)
            sizes[TaskSpec.parse(spec).canonical(grid.base.data.data)] = (len(src.train), decisions)
    return sizes


def score_estimators(grid_dir, emb_dir=None, aff_dir=None, samples: int = 1000, log=say) -> pd.DataFrame:
    """Every available estimator's ranking metrics against a grid, one row per (main task, estimator)."""
    from pathlib import Path

    from .grid import load_results

    res = load_results(grid_dir)
    default = res.grid.base.data.data
    key = {t: TaskSpec.parse(t).canonical(default) for t in res.grid.tasks}
    estimators = {}
    if emb_dir:
        from .embed import load_embeddings
        from .similarity import MEASURES, similarity_matrix

        emb = load_embeddings(emb_dir)
        index = {(c, k): i for i, (c, k) in enumerate(zip(emb.corpora(), emb.kinds()))}
        missing = sorted({key[t] for t in res.grid.tasks} - set(index))
        if missing:
            log(f"embeddings lack grid tasks {missing}: embedding estimators skip them")
        for comp in emb.meta["components"]:
            for measure in MEASURES:
                sim = similarity_matrix(emb.vectors(comp), measure)

                def fn(m, s, sim=sim):
                    a, b = index.get(key[m]), index.get(key[s])
                    return None if a is None or b is None else float(sim[a, b])

                estimators[f"fisher:{comp}:{measure}"] = fn
    if aff_dir:
        aff = pd.read_csv(Path(aff_dir) / "affinity.csv")
        table = {((r.source_corpus, r.source_task), (r.target_corpus, r.target_task)): r.affinity
                 for r in aff.itertuples()}  # fmt: skip
        estimators["tag"] = lambda m, s: table.get((key[s], key[m]))
    sizes = _data_size(res.grid)
    estimators["data_size"] = lambda m, s: sizes[key[s]][0] * 1e6 + sizes[key[s]][1]
    alone = res.alone()["mean"].to_dict()
    return predict_transfer(res.transfer, alone, estimators, samples)


def run_predict_transfer(grid_dir, emb_dir=None, aff_dir=None, out=None, samples: int = 1000, log=say):
    """``score_estimators``, written to ``prediction.csv``, ``prediction_summary.csv`` and ``prediction.png``
    in ``out`` (default: ``GRID_DIR/prediction``); returns the summary."""
    from pathlib import Path

    from .plots import prediction_scores

    table = score_estimators(grid_dir, emb_dir, aff_dir, samples, log)
    out = Path(out or Path(grid_dir) / "prediction")
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "prediction.csv", index=False)
    summ = summary(table)
    summ.to_csv(out / "prediction_summary.csv")
    prediction_scores(summ, out / "prediction.png")
    log(f"wrote {out / 'prediction.csv'}, prediction_summary.csv and prediction.png")
    return summ
