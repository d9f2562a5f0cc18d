"""Figures: transfer heatmap, learning curves, per-seed spread of the deltas.

Each function saves to ``path`` when given one (and closes the figure), else
returns the figure, for notebooks. Nothing is ever shown from here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from .rundir import RunDir
from .tasks import TaskSpec


def _finish(fig, path):
    fig.tight_layout()
    if path is None:
        return fig
    fig.savefig(path, dpi=150)
    return None


def heatmap(
    transfer: pd.DataFrame,
    tasks: list[str],
    path: Path | None = None,
    alpha: float = 0.05,
    value: str = "mean_delta",
):
    """Transfer in points (×100): main task on y (with its metric), secondary on x, as the paper's Figure 5.

    ``value``: ``mean_delta`` (final transfer: Δ of the dev-selected test scores) or ``delta_aulc``
    (speed transfer: Δ of the area under the main task's dev curve). Diverging palette centred on 0.
    For final transfer the verdict is written in each cell, and undetermined cells are hatched:
    only ``helps``/``hurts`` cells are findings.
    """
    speed = value == "delta_aulc"
    delta = pd.DataFrame(np.nan, index=tasks, columns=tasks)
    notes = pd.DataFrame("", index=tasks, columns=tasks)
    undetermined = []
    for r in transfer.itertuples():
        v = getattr(r, value)
        delta.loc[r.main, r.secondary] = 100 * v
        spread = f"\n±{100 * r.std_delta:.2f}" if not speed and np.isfinite(r.std_delta) else ""
        word = "" if speed else "\n" + str(getattr(r, "verdict", ""))
        notes.loc[r.main, r.secondary] = f"{100 * v:+.2f}{spread}{word}"
        if not speed and getattr(r, "verdict", "undetermined") == "undetermined":
            undetermined.append((tasks.index(r.main), tasks.index(r.secondary)))
    # symmetric colour range, at least ±0.5 points so that a flat grid stays readable
    limit = max(float(np.nanmax(np.abs(delta.values))), 0.5) if delta.notna().any().any() else 0.5
    fig = Figure(figsize=(1.4 * len(tasks) + 2.8, 1.2 * len(tasks) + 1.6))
    ax = fig.subplots()
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
        cbar_kws={"label": ("Δ area under the dev curve" if speed else "Δ test score") + " (points)"},
        annot_kws={"fontsize": 8},
        ax=ax,
    )
    for row, col in undetermined:
        ax.add_patch(Rectangle((col, row), 1, 1, fill=False, hatch="///", edgecolor="0.6", lw=0))
    metric = dict(zip(transfer["main"], transfer["metric"]))
    ax.set_xticklabels([TaskSpec.parse(t).label for t in tasks], rotation=30, ha="right")
    ax.set_yticklabels([f"{TaskSpec.parse(t).label} ({metric.get(t, '')})" for t in tasks], rotation=0)
    n_seeds = int(transfer["n_seeds"].max())
    if speed:
        title = f"Speed transfer: Δ area under the main task's dev curve, mean over {n_seeds} seed(s)"
    else:
        title = (
            f"Final transfer Δ(main | secondary), mean ± std over {n_seeds} seed(s)\n"
            f"verdict: Holm-adjusted p < {alpha} and converged; hatched: undetermined"
        )
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("secondary task")
    ax.set_ylabel("main task (metric)")
    return _finish(fig, path)


def learning_curves(out: Path, grid, runs: pd.DataFrame, path: Path | None = None):
    """Dev score of each main task by epoch, one line per secondary task (mean over seeds): Figure 4."""
    tasks, mains = grid.tasks, grid.mains
    # one colour per secondary task in every panel; "alone" in black
    colour = {"": "black", **dict(zip(tasks, sns.color_palette("tab10", len(tasks))))}
    fig = Figure(figsize=(4 * len(mains), 3.4))
    axes = fig.subplots(1, len(mains), squeeze=False)
    for ax, main in zip(axes[0], mains):
        sub = runs[runs["main"] == main]
        for secondary, group in sub.groupby("secondary", sort=False):
            curves = [RunDir(Path(out) / run_dir).dev_curve(main) for run_dir in group["run_dir"]]
            n = min(len(c) for c in curves)  # early-stopped seeds: the mean over the evaluations all of them had
            if n == 0:
                continue
            mean = np.mean([[score for _, score, _ in c[:n]] for c in curves], axis=0)
            ax.plot(
                [x for x, _, _ in curves[0][:n]],
                mean,
                marker="o",
                markersize=3,
                color=colour.get(secondary),
                label=f"+ {TaskSpec.parse(secondary).label}" if secondary else "alone",
            )
        ax.set_title(TaskSpec.parse(main).label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epochs of training")
        ax.set_ylabel(f"dev {sub['metric'].iloc[0] if len(sub) else ''}")
        ax.legend(fontsize=8)
    return _finish(fig, path)


def seed_spread(transfer: pd.DataFrame, path: Path | None = None):
    """Each pair's Δ per seed (dots) and their mean (bar), in points: how much of a Δ is seed noise."""
    rows = [
        {"pair": f"{TaskSpec.parse(r.main).label} | {TaskSpec.parse(r.secondary).label}", "delta": 100 * float(d)}
        for r in transfer.itertuples()
        for d in str(r.deltas).split(";")
    ]
    data = pd.DataFrame(rows)
    fig = Figure(figsize=(7, 0.45 * len(transfer) + 1.2))
    ax = fig.subplots()
    sns.barplot(data=data, y="pair", x="delta", errorbar=None, color="#c6dbef", ax=ax)
    sns.stripplot(data=data, y="pair", x="delta", color="#08519c", size=5, ax=ax)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("Δ score (points): per seed (dots) and mean (bar)")
    ax.set_ylabel("main | secondary")
    return _finish(fig, path)


def arm_comparison(runs: pd.DataFrame, path: Path | None = None, ylabel: str = "test score"):
    """Test score of each arm of ``tune --confirm``: seeds as dots, mean ± std as a bar; ``single`` dashed."""
    data = runs.assign(points=100 * runs["test_score"])
    fig = Figure(figsize=(1.1 * data["arm"].nunique() + 2.5, 3.8))
    ax = fig.subplots()
    sns.pointplot(
        data=data,
        x="arm",
        y="points",
        errorbar="sd",
        linestyle="none",
        color="black",
        capsize=0.15,
        err_kws={"linewidth": 1.2},
        ax=ax,
    )
    sns.stripplot(data=data, x="arm", y="points", hue="seed", palette="deep", size=6, alpha=0.8, ax=ax)
    single = data[data["arm"] == "single"]["points"]
    if len(single):
        ax.axhline(single.mean(), color="grey", linestyle="--", linewidth=0.8, label="single (mean)")
    ax.set_ylabel(f"{ylabel} (×100)")
    ax.set_xlabel("")
    ax.tick_params(axis="x", rotation=20)
    ax.legend(fontsize=8, title="seed", title_fontsize=8)
    return _finish(fig, path)


def similarity_heatmap(sim: np.ndarray, labels: list[str], path: Path | None = None, title: str = ""):
    """Task similarity with hierarchical clustering (average linkage on 1 − similarity) and dendrograms."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    frame = pd.DataFrame(sim, index=labels, columns=labels)
    dist = np.clip(1 - (frame.values + frame.values.T) / 2, 0, None)
    np.fill_diagonal(dist, 0)
    link = linkage(squareform(dist, checks=False), method="average") if len(labels) > 2 else None
    size = 0.55 * len(labels) + 3
    grid = sns.clustermap(
        frame,
        row_linkage=link,
        col_linkage=link,
        row_cluster=link is not None,
        col_cluster=link is not None,
        cmap="viridis",
        annot=len(labels) <= 16,
        fmt=".2f",
        annot_kws={"fontsize": 7},
        figsize=(size, size),
        cbar_kws={"label": "similarity"},
    )
    grid.figure.suptitle(title, fontsize=10, y=1.02)
    import matplotlib.pyplot as plt  # clustermap makes a pyplot figure: take it out of pyplot's care

    plt.close(grid.figure)
    if path is None:
        return grid.figure
    grid.figure.savefig(path, dpi=150, bbox_inches="tight")
    return None


def task_map(coords: np.ndarray, kinds: list[str], corpora: list[str], path: Path | None = None, title: str = ""):
    """Points of a 2-D task map: colour by task kind, marker by corpus (the paper's Figure 6)."""
    data = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "task": kinds, "corpus": corpora})
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.subplots()
    sns.scatterplot(data=data, x="x", y="y", hue="task", style="corpus", s=90, ax=ax)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _finish(fig, path)


def prediction_scores(summary: pd.DataFrame, path: Path | None = None):
    """Mean ranking metrics per estimator (``ranking.summary``), one panel per metric."""
    metrics = [c for c in summary.columns if c in ("spearman", "kendall", "ndcg", "rho", "regret_at_1")]
    fig = Figure(figsize=(3.0 * len(metrics), 0.32 * len(summary) + 1.6))
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    better = {"rho": "lower is better", "regret_at_1": "lower is better"}
    for ax, metric in zip(axes, metrics):
        values = summary[metric]
        colors = ["#bdbdbd" if name in ("random", "data_size") else "#3182bd" for name in summary.index]
        ax.barh(range(len(values)), values.to_numpy(), color=colors)
        ax.set_yticks(range(len(values)), summary.index, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{metric}\n({better.get(metric, 'higher is better')})", fontsize=9)
        ax.axvline(0, color="black", linewidth=0.6)
    return _finish(fig, path)


def affinity_heatmap(table: pd.DataFrame, tasks: list[str], path: Path | None = None):
    """TAG affinity source → target (×100): how much a step on the source lowers the target's loss."""
    frame = pd.DataFrame(np.nan, index=tasks, columns=tasks)
    for r in table.itertuples():
        frame.loc[r.target, r.source] = 100 * r.affinity
    # the colour scale comes from the off-diagonal cells: a task's affinity with itself is large by
    # construction and would wash out the ones between tasks (it is still annotated)
    off = frame.values[~np.eye(len(tasks), dtype=bool)]
    limit = max(float(np.nanmax(np.abs(off))), 1e-3) if np.isfinite(off).any() else 1.0
    fig = Figure(figsize=(1.3 * len(tasks) + 2.5, 1.1 * len(tasks) + 1.5))
    ax = fig.subplots()
    sns.heatmap(frame, annot=True, fmt=".2f", cmap="RdBu_r", center=0, vmin=-limit, vmax=limit, ax=ax,
                cbar_kws={"label": "affinity × 100"})  # fmt: skip
    labels = [TaskSpec.parse(t).label for t in tasks]
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.set_yticklabels(labels, rotation=0)
    ax.set_xlabel("source task (look-ahead step on its loss)")
    ax.set_ylabel("target task (relative loss decrease)")
    ax.set_title("TAG look-ahead affinity, mean over the run", fontsize=10)
    return _finish(fig, path)


def comparison_forest(table: pd.DataFrame, path: Path | None = None, corpora: list[str] | None = None):
    """Δ of each variant against its baseline per corpus: mean with its 95% interval, the per-seed Δ as dots,
    the minimum detectable effect as a grey band around 0, and the verdict in the label; a pooled row over
    fewer than the study's ``corpora`` names those it leaves out."""
    from .compare import pooled_names

    rows = list(table.itertuples())
    names = pooled_names(table, corpora)
    fig = Figure(figsize=(7, 0.7 * len(rows) + 1.6))
    ax = fig.subplots()
    for y, r in enumerate(rows):
        if r.mde == r.mde:  # none below two paired seeds
            ax.add_patch(Rectangle((-100 * r.mde, y - 0.35), 200 * r.mde, 0.7, color="0.9", zorder=0))
        ax.errorbar(
            100 * r.delta,
            y,
            xerr=[[100 * (r.delta - r.ci_low)], [100 * (r.ci_high - r.delta)]],
            fmt="o",
            color="black" if r.verdict == "undetermined" else ("tab:blue" if r.verdict == "helps" else "tab:red"),
            capsize=4,
            zorder=3,
        )
        dots = json.loads(r.deltas)  # per-seed Δ, or for a pooled row {corpus: its mean Δ}
        pooled = isinstance(dots, dict)
        values = list(dots.values()) if pooled else dots
        ax.scatter(
            [100 * d for d in values], [y + 0.2] * len(values), s=18 if pooled else 12, marker="D" if pooled else "o",
            color="0.4", zorder=2,
        )  # fmt: skip
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_yticks(range(len(rows)))
    one_baseline = len({r.baseline for r in rows}) == 1
    ax.set_yticklabels(
        [
            f"{name}: {r.variant}{'' if one_baseline else f' vs {r.baseline}'}\n({r.verdict}, {r.seeds} seeds)"
            for name, r in zip(names, rows)
        ],
        fontsize=8,
    )
    ax.invert_yaxis()
    ax.set_xlabel(f"Δ test {rows[0].metric}{f' vs {rows[0].baseline}' if one_baseline else ''} (points)")
    ax.set_title(
        "Mean Δ with 95% interval (bootstrap and seed t-test, hull)\ndots: per-seed Δ; diamonds: each corpus's mean Δ "
        "(pooled rows)\ngrey: ± minimum detectable effect",
        fontsize=8,
    )
    return _finish(fig, path)


def dev_curves(curves: pd.DataFrame, path: Path | None = None):
    """Main-task dev score per evaluation, one panel per corpus, one line per run (colour by variant);
    a marker where each run's selected (best) evaluation was and an x where it stopped.

    ``curves``: columns corpus, variant, seed, epochs_done, score, selected (bool).
    """
    corpora = list(dict.fromkeys(curves["corpus"]))
    variants = list(dict.fromkeys(curves["variant"]))
    colours = dict(zip(variants, sns.color_palette("tab10", len(variants))))
    fig = Figure(figsize=(4.2 * len(corpora), 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(corpora), squeeze=False)[0])
    for ax, corpus in zip(axes, corpora):
        for (variant, _seed), run in curves[curves["corpus"] == corpus].groupby(["variant", "seed"], sort=False):
            run = run.sort_values("epochs_done")
            ax.plot(run["epochs_done"], 100 * run["score"], color=colours[variant], lw=0.9, alpha=0.8)
            best = run[run["selected"]].iloc[-1]
            ax.plot(best["epochs_done"], 100 * best["score"], "o", color=colours[variant], ms=4)
            last = run.iloc[-1]
            ax.plot(last["epochs_done"], 100 * last["score"], "x", color=colours[variant], ms=5)
        ax.set_title(corpus, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("dev score (×100)")
    handles = [axes[0].plot([], [], color=colours[v], label=v)[0] for v in variants]
    axes[-1].legend(handles=handles, fontsize=8, title="o selected, x stopped", title_fontsize=7)
    return _finish(fig, path)
