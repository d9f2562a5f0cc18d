"""Figures, written to explicit paths (never shown): transfer heatmap, learning curves."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .sources import spec_label  # noqa: E402


def heatmap(transfer: pd.DataFrame, tasks: list[str], path: Path, alpha: float = 0.05) -> None:
    """Mean Δ in points (×100): main task on y, secondary on x, as the paper's Figure 5.

    Diverging palette centred on 0; ``*`` marks p_bootstrap < alpha.
    """
    delta = pd.DataFrame(np.nan, index=tasks, columns=tasks)
    notes = pd.DataFrame("", index=tasks, columns=tasks)
    for r in transfer.itertuples():
        delta.loc[r.main, r.secondary] = 100 * r.mean_delta
        star = "*" if r.significant else ""
        spread = f"\n±{100 * r.std_delta:.2f}" if np.isfinite(r.std_delta) else ""
        notes.loc[r.main, r.secondary] = f"{100 * r.mean_delta:+.2f}{star}{spread}"
    # symmetric colour range, at least ±0.5 points so that a flat grid stays readable
    limit = max(float(np.nanmax(np.abs(delta.values))), 0.5) if delta.notna().any().any() else 0.5
    fig, ax = plt.subplots(figsize=(1.3 * len(tasks) + 2.5, 1.1 * len(tasks) + 1.5))
    sns.heatmap(
        delta,
        annot=notes.values,
        fmt="",
        cmap="RdBu_r",
        center=0,
        vmin=-limit,
        vmax=limit,
        linewidths=0.5,
        linecolor="white",
        cbar_kws={"label": "Δ score (points)"},
        ax=ax,
    )
    labels = [spec_label(t) for t in tasks]
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.set_yticklabels(labels, rotation=0)
    n_seeds = int(transfer["n_seeds"].max())
    ax.set_title(
        f"Transfer Δ(main | secondary) in points, mean ± std over {n_seeds} seed(s)\n"
        f"* p < {alpha} (paired bootstrap over test sentences)",
        fontsize=10,
    )
    ax.set_xlabel("secondary task")
    ax.set_ylabel("main task")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def learning_curves(out: Path, grid, runs: pd.DataFrame, path: Path) -> None:
    """Dev score of each main task by epoch, one line per secondary task (mean over seeds): Figure 4."""
    tasks = grid.tasks
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.4), squeeze=False)
    for ax, main in zip(axes[0], tasks):
        sub = runs[runs["main"] == main]
        for secondary, group in sub.groupby("secondary", sort=False):
            curves = []
            for run_dir, metric in zip(group["run_dir"], group["metric"]):
                lines = (Path(out) / run_dir / "metrics.jsonl").read_text().splitlines()
                dev = [json.loads(x)["dev"].get(main) for x in lines if x.strip()]
                curves.append([d[metric] for d in dev if d])  # empty with merge_dev: no dev scores
            n = min(len(c) for c in curves)
            if n == 0:
                continue
            mean = np.mean([c[:n] for c in curves], axis=0)
            ax.plot(range(1, n + 1), mean, marker="o", label=f"+ {spec_label(secondary)}" if secondary else "alone")
        ax.set_title(spec_label(main))
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"dev {sub['metric'].iloc[0] if len(sub) else ''}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
