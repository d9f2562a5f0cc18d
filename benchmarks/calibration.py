"""Calibration of the transfer verdicts under the null (A/A), by simulation and on real runs.

Two arms are drawn alike, so any helps/hurts verdict is a false positive. Three
settings, for 2 to 5 (and 10) seeds per arm:

- ``documents`` (the statistics issue's model): each seed's model has a skill
  around the same mean (``--seed-sd``), errors cluster in documents of
  ``--doc`` sentences (``--doc-sd``), and every sentence is an independent draw,
  so two runs disagree on about 40% of the test labels: test-set noise
  dominates.
- ``seeds`` (fitted to the grid's sentence tasks, 2026-11-28): a sentence is
  right when its difficulty (shared by every run: one test set) plus the run's
  shift (sd ``--shift-sd``) plus run-by-sentence noise (sd ``--noise-sd``) is
  positive. The defaults give about 89% accuracy, a seed spread of 1.5 points
  and 7.6% of test labels changed between two runs, where bCLS alone on
  NCBI-disease measured 88.0 ± 1.5 and 7.8 to 9.5%: runs agree on most
  sentences, and training randomness dominates.
- ``runs`` (``--pool``, real runs): disjoint sets of k runs of one
  configuration, drawn from the run folders given (e.g. NER alone and its A/A
  arm in ``runs/lowres-10pct``), compared on their saved test predictions.

With ``--effect`` (setting ``seeds`` only) the first arm is shifted: the rates
are then the power to detect that effect (0.35 is about +3 points of accuracy,
the size of the grid's largest bCLS transfers).

Rules compared: the sentence bootstrap (the statistics issue's "old"
``paired_bootstrap``, settings ``documents`` only), the hierarchical bootstrap
alone (``p_bootstrap``), and the verdict's rule since 2026-11-28, the
hierarchical bootstrap and the seed t-test both required (``both_levels``).

    python benchmarks/calibration.py --trials 200 --out reports/statistics
    python benchmarks/calibration.py --pool runs/lowres-10pct/single/NCBI-disease \
        runs/lowres-10pct/single-aa/NCBI-disease --corpus ../shared/data/NCBI-disease --trials 200
    python benchmarks/calibration.py --effect 0.35 --trials 200
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from taskrel.significance import both_levels, hierarchical_bootstrap, paired_bootstrap, score_from_stats, seed_level

SEEDS = (2, 3, 4, 5, 10)


def documents(rng, seeds: int, n: int, a) -> tuple[list, list]:
    """Both arms of one A/A trial in the ``documents`` setting."""
    difficulty = np.repeat(rng.normal(0, a.doc_sd, n // a.doc + 1), a.doc)[:n]

    def arm():
        return [
            (rng.random(n) < np.clip(0.7 + rng.normal(0, a.seed_sd) + difficulty, 0, 1)).astype(float).reshape(-1, 1)
            for _ in range(seeds)
        ]

    return arm(), arm()


def shifts(rng, seeds: int, n: int, a) -> tuple[list, list]:
    """Both arms of one A/A trial in the ``seeds`` setting."""
    difficulty = rng.normal(a.difficulty_mean, a.difficulty_sd, n)

    def arm(effect: float = 0.0):
        return [
            (difficulty + effect + rng.normal(0, a.shift_sd) + rng.normal(0, a.noise_sd, n) > 0)
            .astype(float)
            .reshape(-1, 1)
            for _ in range(seeds)
        ]

    return arm(a.effect), arm()


def rules(arm_a: list, arm_b: list, samples: int, seed: int, unit: str, old: bool) -> dict:
    """p of each rule for one comparison."""
    boot = hierarchical_bootstrap(arm_a, arm_b, samples, seed=seed, unit=unit)
    k = len(arm_a)
    deltas = [
        float(score_from_stats(x.sum(0), len(x)) - score_from_stats(y.sum(0), len(y))) for x, y in zip(arm_a, arm_b)
    ]
    out = {
        "hierarchical bootstrap alone": boot["p"],
        "bootstrap and seed t-test (verdicts)": both_levels(boot, seed_level(deltas), k)["p"],
    }
    if old:
        out = {"sentence bootstrap (old)": paired_bootstrap(arm_a, arm_b, samples, seed=seed)["p_bootstrap"]} | out
    return out


def pool_stats(folders: list[str], corpus: str) -> list[np.ndarray]:
    """(n, 3) NER statistics of every finished run under ``folders`` (its saved test predictions)."""
    from taskrel.corpus import load_corpus
    from taskrel.significance import prediction_stats
    from taskrel.tasks import TaskSpec

    data = load_corpus(corpus, ("train", "devel", "test"))
    task = TaskSpec.parse("ner").build(data.tag_set, 3)
    gold = [task.derive(s.tags) for s in data.splits["test"]]
    runs = sorted(p for f in folders for p in Path(f).glob("*/test_predictions.jsonl"))
    return [prediction_stats(p, "ner", task, gold) for p in runs]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--sentences", type=int, default=940)  # NCBI-disease test
    p.add_argument("--doc", type=int, default=10)
    p.add_argument("--seed-sd", type=float, default=0.015)  # documents: about the seed spread at 10% of train
    p.add_argument("--doc-sd", type=float, default=0.1)
    p.add_argument("--difficulty-mean", type=float, default=2.5)  # seeds: fitted to bCLS alone on NCBI-disease
    p.add_argument("--difficulty-sd", type=float, default=2.0)
    p.add_argument("--shift-sd", type=float, default=0.15)
    p.add_argument("--noise-sd", type=float, default=0.7)
    p.add_argument("--effect", type=float, default=0.0, help="seeds: the first arm's shift (power, not A/A)")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--pool", nargs="*", help="run folders of one configuration (real A/A; NER)")
    p.add_argument("--corpus", help="the corpus of --pool's runs")
    p.add_argument("--out", default="reports/statistics")
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    rates: dict = {}
    if a.pool:
        stats = pool_stats(a.pool, a.corpus)
        settings = {f"runs ({len(stats)} runs)": None}
    else:
        settings = {"documents": documents, "seeds": shifts} if not a.effect else {f"seeds, effect {a.effect}": shifts}
    for name, draw in settings.items():
        rates[name] = {}
        for k in SEEDS:
            if draw is None and 2 * k > len(stats):
                continue
            hits: dict = {}
            for t in range(a.trials):
                if draw is None:
                    idx = rng.permutation(len(stats))[: 2 * k]
                    arm_a, arm_b = [stats[i] for i in idx[:k]], [stats[i] for i in idx[k:]]
                else:
                    arm_a, arm_b = draw(rng, k, a.sentences, a)
                for rule, pv in rules(arm_a, arm_b, a.samples, t, f"block:{a.doc}", name == "documents").items():
                    hits[rule] = hits.get(rule, 0) + (pv < a.alpha)
            rates[name][k] = {rule: h / a.trials for rule, h in hits.items()}
            print(name, k, rates[name][k], flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "calibration-runs" if a.pool else "calibration-power" if a.effect else "calibration"
    (out / f"{stem}.json").write_text(json.dumps({"args": vars(a), "false_positive_rate": rates}, indent=2))
    plot(rates, a, out / f"{stem}.png")
    return rates


def plot(rates: dict, a, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(rates), 3.6))
    axes = fig.subplots(1, len(rates), squeeze=False)[0]
    for ax, (name, by_k) in zip(axes, rates.items()):
        for rule in next(iter(by_k.values())):
            ax.plot(list(by_k), [by_k[k][rule] for k in by_k], "o-", label=rule)
        if not a.effect:
            ax.axhline(a.alpha, color="0.4", ls="--", lw=0.8, label=f"nominal {a.alpha}")
        ax.set_xlabel("seeds per arm")
        ax.set_ylabel("rate of helps/hurts" + (" (power)" if a.effect else " under A/A"))
        ax.set_xticks(list(by_k))
        ax.set_title(f"{name}: {a.trials} comparisons per point", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=150)


if __name__ == "__main__":
    main()
