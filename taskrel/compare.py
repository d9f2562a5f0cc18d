"""Paired comparisons of a study's variants against its baseline, with verdicts.

For a ``runs`` study with ``baseline: VARIANT``, every other variant is
compared with the baseline on each corpus, seeds paired by index (same
training subset, same seed). Per comparison:

- the per-seed Δ of the main task's test score, their mean and std;
- two levels, both required (``significance.both_levels``): a hierarchical
  paired bootstrap (``significance.hierarchical_bootstrap``: seeds, then
  blocks of test sentences) and a t-test of the per-seed Δ (k − 1 degrees of
  freedom); ``p`` is the larger of their p-values (``p_bootstrap``,
  ``p_seeds``), the 95% interval (unadjusted) the hull of theirs;
- ``p_adjusted``: Holm over the family, which is the whole table (every
  variant and corpus of the study);
- ``mde``: the smallest |Δ| this design would detect (two-sided 5% level, 80%
  power), the larger of the two levels' (2.8 bootstrap standard errors;
  (t_0.975 + t_0.8) seed standard errors); none below two paired seeds, where
  no verdict is drawn;
- ``verdict``: ``helps``/``hurts`` when the adjusted p is below alpha and
  every run of both arms converged, else ``undetermined``;
- with two corpora or more, a ``pooled`` row per comparison: the unweighted
  mean Δ over the corpora (the paper's "on average"), its bootstrap from the
  corpora's draws combined (``significance.pooled_bootstrap``), its seed level
  from theirs (``significance.combined_level``: Welch–Satterthwaite), in the
  same Holm family;
- ``aso_eps``: Almost Stochastic Order's ε_min over the seed scores
  (``significance.aso_epsilon``), a second opinion that verdicts do not use.

Only seeds that finished in both arms are paired; the table says how many.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .corpus import load_corpus
from .rundir import RunDir
from .significance import (
    aso_epsilon,
    both_levels,
    combined_level,
    format_p,
    hierarchical_bootstrap,
    holm,
    pooled_bootstrap,
    prediction_stats,
    seed_level,
    t_level,
    verdict,
)
from .tasks import TaskSpec

POOLED = "pooled"  # the corpus of a comparison pooled over corpora


def paired_stats(
    var_scores: list[float], base_scores: list[float], stats_v: list, stats_b: list, samples: int, unit: str, docs
) -> dict:
    """The statistics of one paired comparison (seeds paired by index): Δ per seed, their mean and std, ASO, the
    seed level's p and, from both levels, p, interval and MDE (``significance.both_levels``; ``boot``: the
    bootstrap's full result). Without the prediction statistics of every run (``None`` where a run's predictions
    are missing) the bootstrap's entries are NaN, ``boot`` is None and the seed level's p stands alone."""
    deltas = [v - b for v, b in zip(var_scores, base_scores)]
    nan = float("nan")
    level = seed_level(deltas)
    st = {
        "delta": float(np.mean(deltas)),
        "delta_std": float(np.std(deltas, ddof=1)) if len(deltas) > 1 else nan,
        "deltas": deltas,
        "p_seeds": t_level(level)["p"],
        "aso_eps": aso_epsilon(var_scores, base_scores),
        "p_bootstrap": nan,
        "p": nan,
        "p_floor": False,
        "ci_low": nan,
        "ci_high": nan,
        "mde": nan,
        "boot": None,
    }
    if any(x is None for x in stats_v + stats_b):
        return st
    boot = hierarchical_bootstrap(stats_v, stats_b, samples=samples, seed=0, unit=unit, docs=docs)
    return st | both_levels(boot, level, len(deltas)) | {"boot": boot}


def format_mde(m: float) -> str:
    """An MDE in points for a report's table; "–" where there is none (below ``MIN_SEEDS``)."""
    return f"{100 * m:.2f}" if m == m else "–"


def compare_study(out: Path, study, samples: int = 2000, unit: str = "block:10", alpha: float = 0.05) -> pd.DataFrame:
    """One row per (corpus, variant) against its baseline (``study.comparisons()``); empty without a baseline
    or finished pairs."""
    if not study.baseline:
        return pd.DataFrame()
    runs = {(v, Path(c).name, s): (c, cfg) for v, c, s, cfg in study.run_configs(Path(out))}
    rows, boots = [], {}
    for corpus in study.corpora:
        name = Path(corpus).name
        gold_cache = {}
        for variant, baseline in study.comparisons():
            pairs = []
            for seed in study.seeds_of(corpus):
                if (baseline, name, seed) not in runs or (variant, name, seed) not in runs:
                    continue  # a variant waiting for its tuning study or held by a budget decision (Study.waiting)
                _, base_cfg = runs[(baseline, name, seed)]
                _, var_cfg = runs[(variant, name, seed)]
                a, b = RunDir(base_cfg.out), RunDir(var_cfg.out)
                if a.done and b.done:
                    pairs.append((seed, base_cfg, var_cfg, a, b))
            if not pairs:
                continue
            main = pairs[0][3].main
            if main not in gold_cache:
                data = load_corpus(corpus, ("train", "test"))  # train gives the tag set; devel is not needed
                task = TaskSpec.parse(main).build(data.tag_set, pairs[0][1].data.mcls_cap)
                test = data.splits["test"]
                gold_cache[main] = (task, [task.derive(s.tags) for s in test], [s.doc for s in test])
            task, gold, docs = gold_cache[main]
            metric = task.main_metric
            base_scores = [p[3].score("test", main) for p in pairs]
            var_scores = [p[4].score("test", main) for p in pairs]
            stats_b = [prediction_stats(p[3].predictions, main, task, gold) for p in pairs]
            stats_v = [prediction_stats(p[4].predictions, main, task, gold) for p in pairs]
            st = paired_stats(var_scores, base_scores, stats_v, stats_b, samples, unit, docs)
            boot = st.pop("boot")
            converged = [bool(p[3].converged) and bool(p[4].converged) for p in pairs]
            boots.setdefault((variant, baseline), []).append((boot, len(pairs), converged, seed_level(st["deltas"])))
            rows.append(
                {
                    "corpus": name,
                    "variant": variant,
                    "baseline": baseline,
                    "metric": metric,
                    "seeds": len(pairs),
                    "baseline_mean": float(np.mean(base_scores)),
                    "baseline_std": float(np.std(base_scores, ddof=1)) if len(pairs) > 1 else float("nan"),
                    "variant_mean": float(np.mean(var_scores)),
                    "variant_std": float(np.std(var_scores, ddof=1)) if len(pairs) > 1 else float("nan"),
                    **st,
                    "deltas": json.dumps([round(d, 5) for d in st["deltas"]]),
                    "unit": f"{unit} ({boot['units']} units)" if boot else f"{unit} (test predictions missing)",
                    "converged": f"{sum(converged)}/{len(converged)}",
                    "all_converged": all(converged),
                }
            )
    for (variant, baseline), parts in boots.items():
        if len(parts) > 1 and all(b is not None for b, *_ in parts):
            rows.append(_pooled_row(variant, baseline, rows, parts, unit))
    table = pd.DataFrame(rows)
    if len(table):
        table["p_adjusted"] = holm(table["p"])
        table["verdict"] = [
            verdict(d, p, c, s, alpha)
            for d, p, c, s in zip(table["delta"], table["p_adjusted"], table["all_converged"], table["seeds"])
        ]
    return table


def _pooled_row(variant: str, baseline: str, rows: list[dict], parts: list, unit: str) -> dict:
    """The comparison pooled over corpora (see the module's docstring)."""
    pooled = pooled_bootstrap([b for b, *_ in parts])
    level = combined_level([lv for *_, lv in parts], [1 / len(parts)] * len(parts))
    seeds = min(n for _, n, *_ in parts)
    mine = [r for r in rows if r["variant"] == variant and r["baseline"] == baseline]
    converged = [c for _, _, cs, _ in parts for c in cs]
    return {
        "corpus": POOLED,
        "variant": variant,
        "baseline": baseline,
        "metric": "/".join(sorted({r["metric"] for r in mine})),
        "seeds": seeds,
        "baseline_mean": float(np.mean([r["baseline_mean"] for r in mine])),
        "baseline_std": float("nan"),
        "variant_mean": float(np.mean([r["variant_mean"] for r in mine])),
        "variant_std": float("nan"),
        "delta": pooled["delta"],
        "delta_std": float("nan"),
        "deltas": json.dumps({r["corpus"]: round(r["delta"], 5) for r in mine}),
        "aso_eps": float("nan"),
        **both_levels(pooled, level, seeds),
        "unit": f"mean over {len(parts)} corpora ({unit})",
        "converged": f"{sum(converged)}/{len(converged)}",
        "all_converged": all(converged),
    }


def pooled_names(table: pd.DataFrame, corpora: list[str] | None = None) -> list[str]:
    """The corpus column, a pooled row naming the corpora it leaves out (the study's ``corpora``, else the
    table's: a corpus whose runs for that comparison have not finished, or are held), so "pooled" never
    silently means fewer corpora than it seems."""
    everywhere = list(dict.fromkeys(corpora or [c for c in table["corpus"] if c != POOLED]))
    names = []
    for corpus, deltas in zip(table["corpus"], table["deltas"]):
        held = json.loads(deltas) if corpus == POOLED else {}  # a pooled row's deltas: {corpus: its mean Δ}
        left = [c for c in everywhere if c not in held] if corpus == POOLED else []
        names.append(f"{POOLED} (without {', '.join(left)})" if left else corpus)
    return names


def format_comparisons(table: pd.DataFrame, corpora: list[str] | None = None) -> pd.DataFrame:
    """The comparison table as a report shows it (scores ×100); ``corpora``, the study's corpus names, lets a
    pooled row name those it leaves out."""

    def pm(m, s):
        return f"{100 * m:.2f}" + ("" if s != s else f" ± {100 * s:.2f}")

    return pd.DataFrame(
        {
            "corpus": pooled_names(table, corpora),
            "variant vs baseline": [f"{v} vs {b}" for v, b in zip(table["variant"], table["baseline"])],
            "baseline (×100)": [pm(m, s) for m, s in zip(table["baseline_mean"], table["baseline_std"])],
            "variant (×100)": [pm(m, s) for m, s in zip(table["variant_mean"], table["variant_std"])],
            "Δ (95% CI)": [
                f"{100 * d:+.2f} ({100 * lo:+.2f}, {100 * hi:+.2f})"
                for d, lo, hi in zip(table["delta"], table["ci_low"], table["ci_high"])
            ],
            "p": [format_p(p, f) for p, f in zip(table["p"], table["p_floor"])],
            "p Holm": [format_p(p) for p in table["p_adjusted"]],
            "p bootstrap": [format_p(p) for p in table.get("p_bootstrap", table["p"])],
            "p seeds": [format_p(p) for p in table["p_seeds"]],
            "ASO ε": [f"{e:.2f}" if e == e else "–" for e in table.get("aso_eps", [float("nan")] * len(table))],
            "MDE": [format_mde(m) for m in table["mde"]],
            "seeds": table["seeds"],
            "converged": [
                c if ok else f"**{c} (not all converged)**" for c, ok in zip(table["converged"], table["all_converged"])
            ],
            "verdict": table["verdict"],
        }
    )
