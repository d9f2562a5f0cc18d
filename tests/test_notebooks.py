"""The analysis notebooks run headless against results made by a tiny-encoder run here."""

from pathlib import Path

import pytest

from taskrel.config import DataConfig, GridConfig, ModelConfig, RunConfig, TrainConfig
from taskrel.grid import run_grid
from taskrel.notebooks import execute

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_carry_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs before committing"


def test_pairwise_transfer_notebook(tiny_corpus, tmp_path):
    base = RunConfig(DataConfig(str(tiny_corpus)), ModelConfig("tiny"), TrainConfig(epochs=1, batch_size=4, threads=1))
    grid = GridConfig(base, ["ner", "bcls"], [1, 2], bootstrap_samples=200, contrasts=[["ner|bcls", "bcls|ner"]])
    run_grid(grid, tmp_path / "grid", progress=False, log=lambda *_: None)
    nb = execute(
        Path(__file__).resolve().parents[1] / "notebooks/pairwise_transfer.ipynb",
        {"GRID_DIR": str(tmp_path / "grid")},
        tmp_path,
    )
    assert images(nb) == 3  # heatmap, per-seed spread, learning curves
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "runs finished: 8" in text
    shown = "".join(
        o.get("data", {}).get("text/plain", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "ner|bcls" in shown and "bcls|ner" in shown  # the contrasts table


def test_loss_weight_tuning_notebook(tiny_corpus, tmp_path):
    from taskrel.config import TuneConfig
    from taskrel.confirm import confirm
    from taskrel.pruning import measure_pruning
    from taskrel.tune import tune

    quiet = {"progress": False, "log": lambda *_: None}
    base = RunConfig(DataConfig(str(tiny_corpus)), ModelConfig("tiny", ["bcls", "ner"]),
                     TrainConfig(epochs=2, batch_size=4, lr=1e-3, threads=1))  # fmt: skip
    tc = TuneConfig(base, trials=3)
    best = tune(tc, tmp_path / "tune", **quiet)
    measure_pruning(tc, tmp_path / "tune", **quiet)
    confirm(tc, best, tmp_path / "tune", seeds=[2, 3], arms=["single", "equal", "uncertainty"], **quiet)
    nb = execute(
        Path(__file__).resolve().parents[1] / "notebooks/loss_weight_tuning.ipynb",
        {"TUNE_DIR": str(tmp_path / "tune")},
        tmp_path,
    )
    assert images(nb) == 3  # history, importances, arm comparison
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for c in nb.cells
                   if c.cell_type == "code" for o in c.outputs)  # fmt: skip
    assert "epochs_saved_fraction" in text and "uncertainty" in text
    assert "references" in text and "pruned_at" in text  # the pruning check's table


def test_task_embeddings_notebook(tiny_corpus, tmp_path, monkeypatch):
    from taskrel.affinity import run_affinity
    from taskrel.embed import EmbedConfig, embed

    quiet = {"progress": False, "log": lambda *_: None}
    monkeypatch.setenv("TASKREL_DATA", str(tiny_corpus.parent))
    train_cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3, threads=1)
    grid = GridConfig(RunConfig(DataConfig(str(tiny_corpus)), ModelConfig("tiny"), train_cfg), ["ner", "bcls", "mcls"],
                      [1], bootstrap_samples=200)  # fmt: skip
    run_grid(grid, tmp_path / "grid", **quiet)
    base = RunConfig(DataConfig(""), ModelConfig("tiny"), train_cfg)
    embed(EmbedConfig(base, ["tiny:ner", "tiny:bcls", "tiny:mcls"], examples=3), tmp_path / "emb", **quiet)
    tag_train = TrainConfig(epochs=1, batch_size=4, threads=1, weights=[1, 1, 1])
    tag = RunConfig(
        DataConfig(str(tiny_corpus)), ModelConfig("tiny", ["ner", "bcls", "mcls"]), tag_train, str(tmp_path / "tag")
    )
    run_affinity(tag, every=1, **quiet)
    params = {"EMB_DIR": str(tmp_path / "emb"), "GRID_DIR": str(tmp_path / "grid"), "AFF_DIR": str(tmp_path / "tag")}
    nb = execute(Path(__file__).resolve().parents[1] / "notebooks/task_embeddings.ipynb", params, tmp_path)
    assert images(nb) == 5  # similarity, t-SNE, MDS, per-layer t-SNE, prediction scores
    text = "".join(str(o.get("data", {}).get("text/plain", "")) for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)  # fmt: skip
    assert "purity_kind" in text and "tag" in text
