"""Similarities between task embeddings, 2-D maps, and how well the maps group tasks.

Measures (all on the raw diagonal Fisher vectors):

- ``cosine``: cos(Fa, Fb);
- ``task2vec``: Task2Vec's symmetric normalised cosine (Achille et al., 2019),
  cos(Fa / (Fa + Fb), Fb / (Fa + Fb)), elementwise; it discounts parameters
  that are large for every task.

Maps as the paper's Figure 6: t-SNE (perplexity below the number of points)
and metric MDS, both on the distance 1 − similarity. With few tasks the
``layer_outputs`` component can place one point per task and layer.

Nearest-neighbour purity: the share of points whose most similar other point
has the same task kind (ner, mtcls, ...), the same level (token or sentence)
or the same corpus, beside the share expected if the nearest neighbour were
drawn at random, with a one-sided permutation p (the group labels assigned to
the tasks at random, their neighbours fixed; Holm over the table) and beside
the same purity of the shuffled-label control embeddings: a grouping is a
finding only where its adjusted p is below 0.05 and it beats the control.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .logs import say

MEASURES = ("cosine", "task2vec")
PURITY_SAMPLES = 10_000  # random label assignments behind a purity's permutation p
EPS = 1e-12


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), EPS)
    return np.clip(unit @ unit.T, -1.0, 1.0)


def task2vec_matrix(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    out = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            total = np.maximum(x[i] + x[j], EPS)
            out[i, j] = out[j, i] = cosine_matrix(np.stack([x[i] / total, x[j] / total]))[0, 1]
    return out


def similarity_matrix(x: np.ndarray, measure: str = "cosine") -> np.ndarray:
    if measure == "cosine":
        return cosine_matrix(x)
    if measure == "task2vec":
        return task2vec_matrix(x)
    raise ValueError(f"unknown measure {measure!r}; known: {MEASURES}")


def similarity_table(emb, components=None, measures=MEASURES) -> pd.DataFrame:
    """Long table: component, measure, task_a, task_b, similarity (every ordered pair, a != b)."""
    rows = []
    for comp in components or emb.meta["components"]:
        x = emb.vectors(comp)
        for measure in measures:
            sim = similarity_matrix(x, measure)
            for i, a in enumerate(emb.tasks):
                for j, b in enumerate(emb.tasks):
                    if i != j:
                        rows.append({"component": comp, "measure": measure, "task_a": a, "task_b": b,
                                     "similarity": float(sim[i, j])})  # fmt: skip
    return pd.DataFrame(rows)


def nn_purity(sim: np.ndarray, groups: list) -> tuple[float, float]:
    """(purity, chance): nearest neighbour by similarity shares the group; expected share at random."""
    sim = np.array(sim, dtype=float)
    np.fill_diagonal(sim, -np.inf)
    groups = np.asarray(groups)
    n = len(groups)
    nearest = sim.argmax(1)
    purity = float(np.mean(groups[nearest] == groups))
    chance = float(np.mean([(np.sum(groups == g) - 1) / (n - 1) for g in groups]))
    return purity, chance


def purity_p(sim: np.ndarray, groups: list, samples: int = PURITY_SAMPLES, seed: int = 0) -> float:
    """One-sided permutation p of a nearest-neighbour purity: the share of random assignments of the same group
    labels to the tasks (the neighbours fixed) whose purity reaches the observed one; (count + 1) / (samples + 1)."""
    sim = np.array(sim, dtype=float)
    np.fill_diagonal(sim, -np.inf)
    nearest = sim.argmax(1)
    groups = np.asarray(groups)
    observed = np.mean(groups[nearest] == groups)
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(samples):
        g = rng.permutation(groups)
        hits += np.mean(g[nearest] == g) >= observed - 1e-12
    return float((hits + 1) / (samples + 1))


def points(emb, component: str, per_layer: bool = False):
    """Vectors to map and their task labels: one per task, or one per task and layer."""
    if not per_layer:
        return emb.vectors(component), list(range(len(emb.tasks)))
    stack = emb.layers(component)  # (tasks, layers, H)
    n_tasks, n_layers, _ = stack.shape
    return stack.reshape(n_tasks * n_layers, -1), [t for t in range(n_tasks) for _ in range(n_layers)]


def embed_2d(sim: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """2-D coordinates from a similarity matrix (distance 1 − similarity)."""
    from sklearn.manifold import MDS, TSNE

    dist = np.clip(1.0 - np.asarray(sim, dtype=float), 0.0, None)
    np.fill_diagonal(dist, 0.0)
    dist = (dist + dist.T) / 2
    n = len(dist)
    if method == "tsne":
        perplexity = max(1.0, min(30.0, (n - 1) / 3))
        tsne = TSNE(2, perplexity=perplexity, metric="precomputed", init="random", random_state=seed)
        return tsne.fit_transform(dist)
    if method == "mds":
        mds = MDS(2, metric="precomputed", init="random", n_init=4, random_state=seed)  # scikit-learn >= 1.8
        return mds.fit_transform(dist)
    raise ValueError(f"unknown map method {method!r}")


GROUPINGS = ("kind", "level", "corpus")


def purity_table(emb, components=None, measures=MEASURES, samples: int = PURITY_SAMPLES) -> pd.DataFrame:
    """Nearest-neighbour purity by task kind, by level and by corpus, per component and measure, with its
    permutation p (``purity_p``), Holm over the whole table (``p_adjusted_*``: one family, every component,
    measure and grouping), and the shuffled-label control's purity. ``finding_*``: the adjusted p is below
    0.05 and the purity beats the control's (with no control, nothing is a finding)."""
    from .significance import holm

    rows = []
    for comp in components or emb.meta["components"]:
        for measure in measures:
            sim = similarity_matrix(emb.vectors(comp), measure)
            control = similarity_matrix(emb.vectors(comp, control=True), measure) if emb.has_control else None
            row = {"component": comp, "measure": measure, "points": len(emb.tasks)}
            for name, groups in zip(GROUPINGS, (emb.kinds(), emb.levels(), emb.corpora())):
                row[f"purity_{name}"], row[f"chance_{name}"] = nn_purity(sim, groups)
                row[f"p_{name}"] = purity_p(sim, groups, samples)
                if control is not None:  # the same purity from the shuffled-label embeddings
                    row[f"control_{name}"] = nn_purity(control, groups)[0]
            rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        adjusted = holm([p for name in GROUPINGS for p in table[f"p_{name}"]])
        for i, name in enumerate(GROUPINGS):
            table[f"p_adjusted_{name}"] = adjusted[i * len(table) : (i + 1) * len(table)]
            beats = table[f"purity_{name}"] > table[f"control_{name}"] if emb.has_control else False
            table[f"finding_{name}"] = (table[f"p_adjusted_{name}"] < 0.05) & beats
    return table


def analyse(emb, out=None, measure: str = "cosine", log=say) -> pd.DataFrame:
    """Write ``similarity.csv``, ``purity.csv`` and, per component, a clustered heatmap and t-SNE/MDS maps."""
    from pathlib import Path

    from .plots import similarity_heatmap, task_map
    from .tasks import TaskSpec

    out = Path(out or emb.folder)
    similarity_table(emb).to_csv(out / "similarity.csv", index=False)
    purity = purity_table(emb)
    purity.to_csv(out / "purity.csv", index=False)
    labels = [TaskSpec.parse(t).label for t in emb.tasks]
    kinds, corpora = emb.kinds(), emb.corpora()
    for comp in emb.meta["components"]:
        sim = similarity_matrix(emb.vectors(comp), measure)
        similarity_heatmap(sim, labels, out / f"similarity-{comp}.png", f"{comp}: {measure} similarity")
        variants = [(False, "")] + ([(True, "-layers")] if comp == "layer_outputs" else [])
        for per_layer, suffix in variants:
            x, owner = points(emb, comp, per_layer)
            if len(x) < 3:
                continue
            sim_points = similarity_matrix(x, measure)
            for method in ("tsne", "mds"):
                coords = embed_2d(sim_points, method)
                what = "one point per task and layer" if per_layer else "one point per task"
                task_map(
                    coords,
                    [kinds[i] for i in owner],
                    [corpora[i] for i in owner],
                    out / f"map-{comp}{suffix}-{method}.png",
                    f"{method.upper()} of {comp} ({measure}; {what})",
                )
    log(f"wrote similarity.csv, purity.csv and figures to {out}")
    return purity
