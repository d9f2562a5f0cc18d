"""Numerical noise between machines: the same runs (same settings, same seeds) trained on two machines.

fp32 kernels differ between CPUs (AVX2 against AVX-512, oneDNN's choices), so a run
trained again on another machine with the same seed, settings and thread count is a
different run. This script pairs two folders of such runs seed by seed (e.g. a grid's
``cells/bcls`` from two studies), checks that every pair was made with the same settings
(``RunDir.check``; seeds trained on one machine in both are skipped), and writes per seed
the test score on each, their difference and the share of test labels that changed, then the mean
difference with its t-test over seeds, beside the seed spread of either folder.

    python benchmarks/machine_noise.py A_DIR B_DIR --task bcls --out machine_noise.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from scipy import stats

from taskrel.grid import labels_changed
from taskrel.machine import label
from taskrel.rundir import RunDir


def machine_of(run: RunDir) -> str:
    """The one machine a run trained on; a run resumed on another machine is no machine's measurement."""
    machines = {label(s) for s in run.sessions}
    if len(machines) != 1:
        raise SystemExit(f"{run.path} trained on several machines: {', '.join(sorted(machines))}")
    return machines.pop()


def pair_runs(a_dir: Path, b_dir: Path, task: str) -> pd.DataFrame:
    rows = []
    for a_path in sorted(a_dir.glob("seed*"), key=lambda p: p.name):
        b_path = b_dir / a_path.name
        a, b = RunDir(a_path), RunDir(b_path)
        if not (a.done and b.done):
            continue
        b.check(a.run_config)  # same data, model and train settings, or it is not a machine comparison
        ma, mb = machine_of(a), machine_of(b)
        if ma == mb:
            print(f"skipped {a_path.name}: both trained on {ma}", file=sys.stderr)
            continue
        score_a, score_b = a.score("test", task), b.score("test", task)
        rows.append(
            {
                "seed": a.config["train"]["seed"],
                "machine_a": ma,
                "machine_b": mb,
                "score_a": score_a,
                "score_b": score_b,
                "delta": score_b - score_a,
                "labels_changed": labels_changed(a, b, task),
                "best_epoch_a": a.metrics.get("best_epoch"),
                "best_epoch_b": b.metrics.get("best_epoch"),
                "converged": bool(a.converged) and bool(b.converged),
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="folder of run folders seed*/ on the first machine")
    ap.add_argument("b", type=Path, help="folder of the same runs on the second machine")
    ap.add_argument("--task", required=True, help="the task whose test score is compared")
    ap.add_argument("--out", type=Path, help="write the per-seed table here (CSV)")
    args = ap.parse_args(argv)
    table = pair_runs(args.a, args.b, args.task)
    if table.empty:
        print("no seed finished in both folders", file=sys.stderr)
        return 1
    if args.out:
        table.to_csv(args.out, index=False)
    shown = table.assign(**{c: table[c] * 100 for c in ("score_a", "score_b", "delta", "labels_changed")})
    print(shown.drop(columns=["machine_a", "machine_b"]).round(2).to_string(index=False))
    d = table["delta"] * 100
    p = stats.ttest_1samp(d, 0.0).pvalue if len(d) > 1 else float("nan")
    print(f"\nA: {table['machine_a'].iloc[0]}\nB: {table['machine_b'].iloc[0]}")
    print(
        f"B - A over {len(d)} seeds: mean {d.mean():+.2f} points, std {d.std(ddof=1):.2f}, "
        f"mean |delta| {d.abs().mean():.2f}, t-test p {p:.3f}; "
        f"labels changed {table['labels_changed'].mean() * 100:.1f}% on average; "
        f"seed spread (std of the scores) A {table['score_a'].std(ddof=1) * 100:.2f}, "
        f"B {table['score_b'].std(ddof=1) * 100:.2f}; converged: {int(table['converged'].sum())} of {len(table)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
