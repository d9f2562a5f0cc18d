"""Transfer deltas and their significance: the seed level and the test-sentence level, both required.

Each sentence contributes sufficient statistics for the main task's score:
``(true positives, predicted entities, gold entities)`` for token tasks (strict
entity F1), ``(correct,)`` for sentence tasks (accuracy). Scores of a resample
are computed from summed statistics, so the bootstrap reproduces the corpus-level
metric exactly on the full sample.

A paired comparison Δ = mean over seeds of score(with) − score(alone) is tested
at two levels, and an effect must stand at both (``both_levels``):

- the hierarchical bootstrap (``hierarchical_bootstrap``): seeds, then blocks
  of test sentences, resampled; it covers which test documents were drawn;
- the seed level (``seed_level``, ``t_level``): a t-test of the per-seed Δ with
  k − 1 degrees of freedom; it covers training randomness with the small-sample
  honesty a bootstrap of 2 to 5 seeds lacks (resampling 3 seeds can never draw
  a mean below the smallest of them).

The reported p is the larger of the two, the interval the hull of both, the MDE
the larger of both. An A/A simulation fitted to the seed spread and run-to-run
disagreement measured on the grid's sentence tasks found the bootstrap alone
calling 15% (2 seeds) and 9.5% (3 seeds) of null comparisons significant
at the 5% level; the two levels together stay under 5%
(``benchmarks/calibration.py``, ``reports/statistics``).
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


def unit_blocks(n: int, unit: str = "block:10", docs=None) -> np.ndarray:
    """The test unit of each of ``n`` sentences: ``sentence`` (each its own), ``block:K`` (K consecutive), or
    ``document`` (``docs``: each sentence's ``-DOCSTART-`` document).

    Errors cluster within documents, and none of the benchmark files keeps its
    document boundaries, so the default unit is a block of consecutive
    sentences (abstracts are about 10 sentences long); ``document`` serves
    corpora that keep them.
    """
    if unit == "sentence":
        return np.arange(n)
    if unit == "document":
        if docs is None or len(docs) != n or any(d is None for d in docs):
            raise ValueError(
                "bootstrap unit 'document' needs -DOCSTART- boundaries in the test file; this one has none "
                "(use block:K)"
            )
        _, index = np.unique(np.asarray(docs), return_inverse=True)
        return index
    if unit.startswith("block:"):
        k = int(unit.split(":", 1)[1])
        if k < 1:
            raise ValueError(f"block size must be positive, got {unit!r}")
        return np.arange(n) // k
    raise ValueError(f"bootstrap unit must be 'sentence', 'document' or 'block:K', got {unit!r}")


def hierarchical_bootstrap(
    with_s: list[np.ndarray],
    alone: list[np.ndarray],
    samples: int = 2000,
    seed: int = 0,
    unit: str = "block:10",
    docs=None,
) -> dict:
    """Δ = mean over seeds of score(with) − score(alone), resampling seeds and then test units.

    Seeds are paired by index (same training subset and seed in both arms):
    each resample draws seed indices with replacement, then test units (see
    ``unit_blocks``) with replacement, the same units for both arms, and
    recomputes the scores from summed statistics. Two-sided p-value
    ``2 · min(P(Δ* ≤ 0), P(Δ* ≥ 0))``, never reported below ``1/samples``
    (``p_floor`` says when it is a bound). With one seed, training variance is
    not covered (``seeds_covered`` false).
    """
    k, n = len(with_s), with_s[0].shape[0]
    if len(alone) != k or any(a.shape[0] != n for a in with_s + alone):
        raise ValueError("the hierarchical bootstrap needs paired seeds over the same test sentences")
    units = unit_blocks(n, unit, docs)
    n_units = units.max() + 1

    # per seed and unit: summed statistics (k, U, d)
    def per_unit(stats):
        out = np.zeros((n_units, stats.shape[1]))
        np.add.at(out, units, stats)
        return out

    w_units = np.stack([per_unit(s) for s in with_s])
    a_units = np.stack([per_unit(s) for s in alone])
    sizes = np.bincount(units).astype(float)
    rng = np.random.default_rng(seed)
    deltas = np.empty(samples)
    for b in range(samples):
        seeds = rng.integers(0, k, size=k)
        counts = np.bincount(rng.integers(0, n_units, size=n_units), minlength=n_units).astype(float)
        n_b = counts @ sizes
        w = np.einsum("u,kud->kd", counts, w_units[seeds])
        a = np.einsum("u,kud->kd", counts, a_units[seeds])
        deltas[b] = np.mean(score_from_stats(w, n_b) - score_from_stats(a, n_b))
    observed = float(
        np.mean([score_from_stats(s.sum(0), n) - score_from_stats(t.sum(0), n) for s, t in zip(with_s, alone)])
    )
    return bootstrap_summary(observed, deltas) | {
        "seeds": k,
        "seeds_covered": k > 1,
        "unit": unit,
        "units": int(n_units),
        "draws": deltas,
    }


def bootstrap_summary(observed: float, deltas: np.ndarray) -> dict:
    """Δ, its bootstrap standard error, two-sided p (floored at 1/B) and 95% percentile interval."""
    p = min(1.0, 2 * min(np.mean(deltas <= 0), np.mean(deltas >= 0)))
    floor = 1.0 / len(deltas)
    low, high = np.percentile(deltas, [2.5, 97.5])
    return {
        "delta": observed,
        "se": float(np.std(deltas, ddof=1)),
        "p": float(max(p, floor)),
        "p_floor": bool(p < floor),
        "ci_low": float(low),
        "ci_high": float(high),
    }


def pooled_bootstrap(results: list[dict], seed: int = 0) -> dict:
    """The unweighted mean Δ over independent comparisons (one per corpus: the paper's "on average"), from
    their ``hierarchical_bootstrap`` results: the b-th pooled draw is the mean of one draw of each, the draws
    of each comparison shuffled first, so that comparisons bootstrapped with the same generator seed are
    combined independently. Same keys as ``bootstrap_summary``, plus ``parts``."""
    if not results:
        raise ValueError("nothing to pool")
    sizes = {len(r["draws"]) for r in results}
    if len(sizes) != 1:
        raise ValueError(f"pooling needs the same number of bootstrap draws in every comparison, got {sorted(sizes)}")
    rng = np.random.default_rng(seed)
    draws = np.mean([rng.permutation(r["draws"]) for r in results], axis=0)
    return bootstrap_summary(float(np.mean([r["delta"] for r in results])), draws) | {"parts": len(results)}


# the fewest paired seeds that sample training variance: below it, an interval covers test sentences alone, so no
# verdict (``verdict``) and no claim (``claims.claims_table``) is drawn from it
MIN_SEEDS = 2

MDE_FACTOR = 2.8  # (z_0.975 + z_0.8) standard errors: two-sided 5% level, 80% power


def seed_level(deltas) -> dict:
    """The seed level of a paired comparison: the mean per-seed Δ, its standard error and its degrees of freedom
    (k − 1); ``se`` and ``df`` NaN below 2 seeds."""
    d = np.asarray(deltas, dtype=float)
    k = len(d)
    if k < 2:
        return {"mean": float(d.mean()) if k else math.nan, "se": math.nan, "df": math.nan}
    return {"mean": float(d.mean()), "se": float(d.std(ddof=1) / math.sqrt(k)), "df": float(k - 1)}


def combined_level(levels: list[dict], weights) -> dict:
    """A weighted sum of independent seed levels (``weights`` 1/C each: the mean over C corpora; 1 and −1: the
    difference of two transfers on different test sets), with Welch–Satterthwaite degrees of freedom."""
    w = np.asarray(weights, dtype=float)
    parts = np.array([(wi * lv["se"]) ** 2 for wi, lv in zip(w, levels)])
    var = float(parts.sum())
    mean = float(sum(wi * lv["mean"] for wi, lv in zip(w, levels)))
    if not var == var:  # a part without a seed level (one seed)
        return {"mean": mean, "se": math.nan, "df": math.nan}
    denom = sum(pt**2 / lv["df"] for pt, lv in zip(parts, levels))
    return {"mean": mean, "se": math.sqrt(var), "df": var**2 / denom if denom > 0 else math.inf}


def t_level(level: dict) -> dict:
    """The seed level's two-sided t-test: p, 95% interval and MDE ((t_0.975 + t_0.8) standard errors at its
    degrees of freedom). No spread: no p-value where Δ ≠ 0 (an infinite t is not evidence), 1 where Δ = 0."""
    from scipy.stats import t as student

    m, se, df = level["mean"], level["se"], level["df"]
    nan = {"p": math.nan, "ci_low": math.nan, "ci_high": math.nan, "mde": math.nan}
    if not se == se:
        return nan
    if se == 0:
        return nan | {"p": 1.0 if m == 0 else math.nan}
    q = float(student.ppf(0.975, df))
    return {
        "p": float(2 * student.sf(abs(m) / se, df)),
        "ci_low": m - q * se,
        "ci_high": m + q * se,
        "mde": (q + float(student.ppf(0.8, df))) * se,
    }


def both_levels(boot: dict, level: dict, seeds: int) -> dict:
    """The verdict's statistics from the bootstrap (``bootstrap_summary`` keys) and the seed level: ``p`` the
    larger p (NaN where the seed level has none), the interval the hull of both, ``mde`` the larger (NaN below
    ``MIN_SEEDS``); ``p_bootstrap`` and ``p_seeds`` each level's own. Below 2 seeds there is no seed level and the
    bootstrap's values stand, for display: ``verdict`` draws nothing from them."""
    t = t_level(level)
    out = {
        "p_bootstrap": boot["p"],
        "p_seeds": t["p"],
        "p": boot["p"],
        "p_floor": boot["p_floor"],
        "ci_low": boot["ci_low"],
        "ci_high": boot["ci_high"],
        "mde": math.nan,
    }
    if seeds < 2:
        return out
    p = max(boot["p"], t["p"]) if t["p"] == t["p"] else math.nan
    out |= {"p": p, "p_floor": bool(boot["p_floor"] and p == boot["p"])}
    if t["ci_low"] == t["ci_low"]:
        out |= {"ci_low": min(boot["ci_low"], t["ci_low"]), "ci_high": max(boot["ci_high"], t["ci_high"])}
    if seeds >= MIN_SEEDS:
        out["mde"] = max(MDE_FACTOR * boot["se"], t["mde"]) if t["mde"] == t["mde"] else MDE_FACTOR * boot["se"]
    return out


ASO_MIN_SEEDS = 3
ASO_DT = 0.005  # the step of the integral over quantile levels t in (0, 1), as in deepsig
ASO_CONFIDENCE = 0.95


def _quantiles(scores: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The empirical quantile function of ``scores`` at levels ``t``: the ⌈n·t⌉-th smallest score (the first
    for t = 0). 1-D ``scores``: at levels of any shape; 2-D (rows of samples): each row at the 1-D levels."""
    ordered = np.sort(scores, axis=-1)
    n = ordered.shape[-1]
    index = np.clip(np.ceil(n * t).astype(int) - 1, 0, n - 1)
    if ordered.ndim == 1:
        return ordered[index]
    return np.take_along_axis(ordered, np.broadcast_to(index, (len(ordered), len(index))), axis=-1)


def violation_ratio(scores_a: np.ndarray, scores_b: np.ndarray, dt: float = ASO_DT) -> np.ndarray:
    """ε_W2 (Dror et al. 2019, eqs. 4 and 5): the share of the squared Wasserstein distance between the two
    score distributions where A's quantile falls below B's; 0.5 for identical distributions. Row by row for
    2-D score arrays (a batch of bootstrap samples)."""
    t = np.arange(dt, 1, dt)
    f, g = _quantiles(scores_a, t), _quantiles(scores_b, t)
    diff = g - f
    squared = np.sum(diff**2 * dt, axis=-1)
    diff[f >= g] = 0
    violated = np.sum(diff[..., 1:] ** 2 * dt, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(squared == 0, 0.5, violated / np.where(squared == 0, 1, squared))


def aso_epsilon(variant: list[float], baseline: list[float], seed: int = 0, samples: int = 1000) -> float:
    """Almost Stochastic Order (Dror et al. 2019): ε_min of "the variant's scores over seeds stochastically
    dominate the baseline's". Below 0.5 the variant tends to be better, above it worse; Dror et al. suggest
    ε_min < 0.2 for "better". A second, seed-level opinion beside the bootstrap: unpaired, blind to test-set
    variance and weak at a handful of seeds, so verdicts never use it. NaN below ``ASO_MIN_SEEDS`` seeds a side
    (its quantile functions from two points say nothing).

    The algorithm of ``deepsig.aso`` 1.2 (dt 0.005, 95% confidence, bootstrap sample ``i`` drawn from the
    legacy NumPy stream seeded ``seed + i``, i from 1), computed for all samples and quantile levels at once where
    deepsig sorts the scores again for every level of every sample: the same ε to the last bit
    (``tests/test_significance.py`` checks it against deepsig), in a fraction of the time (BENCHMARKS.md,
    "Restarting the queue")."""
    from scipy.stats import norm

    if min(len(variant), len(baseline)) < ASO_MIN_SEEDS:
        return float("nan")
    a, b = np.asarray(variant, dtype=float), np.asarray(baseline, dtype=float)
    observed = float(violation_ratio(a, b))
    stream, levels_a, levels_b = np.random.RandomState(), np.empty((samples, len(a))), np.empty((samples, len(b)))
    for i in range(samples):  # reseeding one legacy stream draws what a new RandomState(seed + i + 1) would
        stream.seed(seed + i + 1)
        levels_a[i], levels_b[i] = stream.uniform(0, 1, len(a)), stream.uniform(0, 1, len(b))
    boot = violation_ratio(_quantiles(a, levels_a), _quantiles(b, levels_b))
    const = np.sqrt(len(a) * len(b) / (len(a) + len(b)))
    sigma = np.std(const * (boot - observed))
    return float(np.clip(observed - (1 / const) * sigma * norm.ppf(1 - ASO_CONFIDENCE), 0, 1))  # deepsig's order


def format_p(p: float, floor: bool = False) -> str:
    """A p-value for a table: ``< 0.0005`` where it is a bound from the number of resamples."""
    if p != p:
        return "n/a"
    return f"< {p:.2g}" if floor else f"{p:.3g}"


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values of one family of comparisons (statsmodels' ``multipletests``)."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def verdict(delta: float, p_adjusted: float, converged: bool, seeds: int = MIN_SEEDS, alpha: float = 0.05) -> str:
    """``helps``/``hurts`` only when the adjusted p is below ``alpha``, every run converged and training variance
    was sampled (``MIN_SEEDS`` seeds or more); else undetermined."""
    if not converged or seeds < MIN_SEEDS or not p_adjusted < alpha:
        return "undetermined"
    return "helps" if delta > 0 else "hurts"
