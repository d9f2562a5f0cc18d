"""Transfer deltas and their significance: a paired bootstrap over test sentences.

Each sentence contributes sufficient statistics for the main task's score:
``(true positives, predicted entities, gold entities)`` for token tasks (strict
entity F1), ``(correct,)`` for sentence tasks (accuracy). Scores of a resample
are computed from summed statistics, so the bootstrap reproduces the corpus-level
metric exactly on the full sample.

Test: resample the test sentences with replacement (the same resample for both
systems and every seed), compute Δ = mean over seeds of score(M with S) −
score(M alone), B times. The two-sided p-value is ``2 · min(P(Δ* ≤ 0), P(Δ* ≥ 0))``
(the smallest level at which the percentile interval excludes 0), capped at 1.
It measures test-sampling uncertainty; the spread over seeds (training
randomness) is reported beside it, with a paired t-test across seeds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .corpus import entity_spans


def sentence_stats(task, gold: list, pred: list) -> np.ndarray:
    """Per-sentence statistics, shape (n, 3) for token tasks and (n, 1) for sentence tasks."""
    if not task.is_token:
        return np.array([[float(g == p)] for g, p in zip(gold, pred)])
    rows = []
    for g, p in zip(gold, pred):
        gs, ps = set(entity_spans(g)), set(entity_spans(p))
        rows.append((len(gs & ps), len(ps), len(gs)))
    return np.array(rows, dtype=float).reshape(-1, 3)


def prediction_stats(path: Path, spec: str, task, gold: list) -> np.ndarray | None:
    """``sentence_stats`` of a run's saved test predictions (``test_predictions.jsonl``) for one task."""
    if not Path(path).is_file():
        return None
    pred = [json.loads(x)[spec] for x in Path(path).read_text().splitlines()]
    return sentence_stats(task, gold, pred)


def score_from_stats(totals: np.ndarray, n: int | np.ndarray = None) -> np.ndarray:
    """F1 from summed (tp, pred, gold) on the last axis, or accuracy from summed (correct,) over ``n``."""
    if totals.shape[-1] == 3:
        tp, npred, ngold = totals[..., 0], totals[..., 1], totals[..., 2]
        denom = npred + ngold
        return np.divide(2 * tp, denom, out=np.zeros_like(tp, dtype=float), where=denom > 0)
    return totals[..., 0] / n


def paired_bootstrap(with_s: list[np.ndarray], alone: list[np.ndarray], samples: int = 1000, seed: int = 0) -> dict:
    """Δ, its bootstrap p-value and 95% interval; lists hold one stats array per seed (same sentences)."""
    n = with_s[0].shape[0]
    if any(a.shape[0] != n for a in with_s + alone):
        raise ValueError("paired bootstrap needs the same test sentences in every run")
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(float)  # (B, n) resample counts
    deltas = np.zeros(samples)
    observed = 0.0
    for ws, wa in zip(with_s, alone):
        observed += score_from_stats(ws.sum(0), n) - score_from_stats(wa.sum(0), n)
        deltas += score_from_stats(weights @ ws, n) - score_from_stats(weights @ wa, n)
    k = len(with_s)
    observed, deltas = observed / k, deltas / k
    p = min(1.0, 2 * min(np.mean(deltas <= 0), np.mean(deltas >= 0)))
    low, high = np.percentile(deltas, [2.5, 97.5])
    return {"delta": float(observed), "p_bootstrap": float(p), "ci_low": float(low), "ci_high": float(high)}


def seed_ttest(deltas: list[float]) -> float:
    """Two-sided p-value of a one-sample t-test of per-seed deltas against 0 (NaN under 2 seeds)."""
    if len(deltas) < 2:
        return math.nan
    from scipy.stats import ttest_1samp

    d = np.asarray(deltas, dtype=float)
    if np.allclose(d, d[0]):
        return 0.0 if d[0] != 0 else 1.0
    return float(ttest_1samp(d, 0.0).pvalue)
