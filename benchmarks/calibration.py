"""Calibration of the transfer verdicts under the null (A/A), by simulation.

Two arms are drawn alike: each seed's model has a "skill" drawn around the same
mean (training variance, ``--seed-sd``), and errors cluster in documents of
``--doc`` sentences (document difficulty, ``--doc-sd``). Any helps/hurts verdict
is then a false positive. For 2 to 5 seeds the script compares:

- the old test: a paired bootstrap over test sentences of the seed-averaged Δ
  (``significance.paired_bootstrap``), which treats each trained model as fixed;
- the new one: the hierarchical bootstrap over seeds, then blocks of 10
  sentences (``significance.hierarchical_bootstrap``).

    python benchmarks/calibration.py --trials 200 --out reports/statistics
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from taskrel.significance import hierarchical_bootstrap, paired_bootstrap


def simulate(rng, seeds: int, n: int, doc: int, seed_sd: float, doc_sd: float, base: float = 0.7):
    """Per-seed (n, 1) correctness arrays of one arm: skill per seed, difficulty per document."""
    difficulty = np.repeat(rng.normal(0, doc_sd, n // doc + 1), doc)[:n]
    return [
        (rng.random(n) < np.clip(base + rng.normal(0, seed_sd) + difficulty, 0, 1)).astype(float).reshape(-1, 1)
        for _ in range(seeds)
    ], difficulty


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--sentences", type=int, default=940)  # NCBI-disease test
    p.add_argument("--doc", type=int, default=10)
    p.add_argument("--seed-sd", type=float, default=0.015)  # about the seed spread measured at 10% of train
    p.add_argument("--doc-sd", type=float, default=0.1)
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--out", default="reports/statistics")
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    rates = {"sentence bootstrap (old)": {}, "hierarchical bootstrap (new)": {}}
    for seeds in (2, 3, 4, 5):
        hits = {k: 0 for k in rates}
        for t in range(a.trials):
            arm_a, difficulty = simulate(rng, seeds, a.sentences, a.doc, a.seed_sd, a.doc_sd)
            # the second arm shares the documents' difficulty (same test set), not the seeds' skill
            arm_b = [
                (rng.random(a.sentences) < np.clip(0.7 + rng.normal(0, a.seed_sd) + difficulty, 0, 1))
                .astype(float)
                .reshape(-1, 1)
                for _ in range(seeds)
            ]
            old = paired_bootstrap(arm_a, arm_b, a.samples, seed=t)
            new = hierarchical_bootstrap(arm_a, arm_b, a.samples, seed=t, unit=f"block:{a.doc}")
            hits["sentence bootstrap (old)"] += old["p_bootstrap"] < a.alpha
            hits["hierarchical bootstrap (new)"] += new["p"] < a.alpha
        for k in rates:
            rates[k][seeds] = hits[k] / a.trials
        print(seeds, {k: rates[k][seeds] for k in rates}, flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps({"args": vars(a), "false_positive_rate": rates}, indent=2))
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    for k, r in rates.items():
        ax.plot(list(r), list(r.values()), "o-", label=k)
    ax.axhline(a.alpha, color="0.4", ls="--", lw=0.8, label=f"nominal {a.alpha}")
    ax.set_xlabel("seeds per arm")
    ax.set_ylabel("rate of helps/hurts under A/A")
    ax.set_xticks([2, 3, 4, 5])
    ax.set_title(f"False verdicts under the null, {a.trials} simulated A/A comparisons each", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "calibration.png", dpi=150)
    return rates


if __name__ == "__main__":
    main()
