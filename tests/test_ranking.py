import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_grid import QUIET, tiny_grid

from taskrel.cli import main
from taskrel.grid import run_grid
from taskrel.ranking import ndcg, predict_transfer, random_baseline, rank_metrics

from conftest import TINY_RUN


def test_a_perfect_ranking_scores_perfectly():
    delta = [0.03, -0.01, 0.01, -0.05]
    m = rank_metrics(estimate=[9, 2, 5, 1], delta=delta, main_score_with=np.add(0.8, delta))
    assert m["spearman"] == pytest.approx(1) and m["kendall"] == pytest.approx(1)
    assert m["ndcg"] == pytest.approx(1) and m["rho"] == 1 and m["regret_at_1"] == 0


def test_a_reversed_ranking_scores_worst():
    delta = [0.03, -0.01, 0.01, -0.05]
    m = rank_metrics(estimate=[1, 5, 2, 9], delta=delta, main_score_with=np.add(0.8, delta))
    assert m["spearman"] == pytest.approx(-1) and m["kendall"] == pytest.approx(-1)
    assert m["rho"] == 4
    assert m["regret_at_1"] == pytest.approx((0.83 - 0.75) / 0.83)
    assert m["ndcg"] < 1


def test_ndcg_by_hand():
    # relevance [3, 0, 1]; ranking by scores puts them in the order 0, 1 (rel 0), 2 (rel 1)
    got = ndcg([3, 2, 1], [3, 0, 1])
    dcg = 3 + 0 / math.log2(3) + 1 / math.log2(4)
    ideal = 3 + 1 / math.log2(3)
    assert got == pytest.approx(dcg / ideal)
    assert ndcg([1, 2], [0, 0]) == 1.0


def test_random_baseline_matches_its_expectation():
    delta = [0.03, -0.01, 0.01, -0.05]
    r = random_baseline(delta, np.add(0.8, delta), samples=4000)
    assert r["rho"] == pytest.approx(2.5, abs=0.1)  # the best item's expected rank among 4
    assert r["spearman"] == pytest.approx(0, abs=0.05)


def test_predict_transfer_table():
    transfer = pd.DataFrame(
        {
            "main": ["a", "a", "a", "b", "b", "b"],
            "secondary": ["b", "c", "d", "a", "c", "d"],
            "mean_delta": [0.02, -0.01, 0.0, 0.01, 0.03, -0.02],
        }  # fmt: skip
    )
    truth = {(r.main, r.secondary): r.mean_delta for r in transfer.itertuples()}
    table = predict_transfer(transfer, {"a": 0.7, "b": 0.6}, {"oracle": lambda m, s: truth[(m, s)]}, samples=200)
    oracle = table[table["estimator"] == "oracle"]
    assert len(oracle) == 2 and (oracle["spearman"] == 1).all() and (oracle["regret_at_1"] == 0).all()
    assert set(table["estimator"]) == {"oracle", "random"}


def test_predict_transfer_cli_on_a_tiny_grid_with_embeddings_and_affinities(tiny_corpus, tmp_path, monkeypatch):
    grid = tiny_grid(tiny_corpus, tasks=("ner", "bcls", "mcls"), seeds=(1,))
    run_grid(grid, tmp_path / "g", **QUIET)
    monkeypatch.setenv("TASKREL_DATA", str(tiny_corpus.parent))
    emb = ["embed", "--tasks", "tiny:ner,tiny:bcls,tiny:mcls", "--epochs", "1", "--examples", "4"]
    assert main([*emb, "--out", str(tmp_path / "e"), *TINY_RUN]) == 0
    aff = ["affinity", "--data", str(tiny_corpus), "--tasks", "ner,bcls,mcls", "--epochs", "1", "--every", "1"]
    assert main([*aff, "--out", str(tmp_path / "a"), *TINY_RUN]) == 0
    args = ["predict-transfer", "--grid", str(tmp_path / "g"), "--embeddings", str(tmp_path / "e")]
    assert main([*args, "--affinity", str(tmp_path / "a"), "--samples", "100"]) == 0
    table = pd.read_csv(tmp_path / "g/prediction/prediction.csv")
    estimators = set(table["estimator"])
    assert {"tag", "random", "data_size", "fisher:layer_outputs:cosine", "fisher:head:task2vec"} <= estimators
    assert set(table["main"]) == {"ner", "bcls", "mcls"}
    assert table["rho"].between(1, 2).all() and table["regret_at_1"].ge(0).all()
    assert (tmp_path / "g/prediction/prediction.png").stat().st_size > 0
    # one report gathers the grid, the prediction, the embeddings and the affinities
    notebooks = str(Path(__file__).resolve().parents[1] / "notebooks")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "report"), "--notebooks", notebooks]) == 0
    text = (tmp_path / "report/report.md").read_text()
    for heading in ("Pairwise transfer grid", "Do the estimators predict", "Fisher task embeddings", "TAG look-ahead"):
        assert heading in text, heading
    exported = ("notebook-pairwise_transfer-g.html", "notebook-task_embeddings-e.html")
    for f in ("g_transfer.csv", "g_prediction_prediction.csv", "e_purity.csv", "a_affinity.csv", *exported):
        assert (tmp_path / "report" / f).is_file(), f


def test_permutation_p_is_exact_for_three_candidates():
    from taskrel.ranking import null_spearman, permutation_p

    null = null_spearman([0.03, 0.01, -0.02])  # every ranking of 3 candidates: Spearman 1, .5, .5, -.5, -.5, -1
    assert sorted(np.round(null, 6)) == [-1, -0.5, -0.5, 0.5, 0.5, 1]
    assert permutation_p(1.0, [null]) == pytest.approx(1 / 6)
    assert permutation_p(0.5, [null]) == pytest.approx(3 / 6)
    # two main tasks: a mean of 1 needs both rankings perfect, 1 of 36 combinations
    assert permutation_p(1.0, [null, null]) == pytest.approx(1 / 36)
    assert permutation_p(0.75, [null, null]) == pytest.approx(5 / 36)  # (1, 1), (1, .5) x2, (.5, 1) x2


def test_random_baseline_is_exact_by_enumeration():
    delta = [0.03, -0.01, 0.01]
    r = random_baseline(delta, np.add(0.8, delta), samples=1000)
    assert r["rho"] == pytest.approx(2.0, abs=1e-12) and r["spearman"] == pytest.approx(0, abs=1e-12)


def test_summary_adds_permutation_p_and_holm():
    from taskrel.ranking import summary

    transfer = pd.DataFrame(
        {"main": ["a"] * 3 + ["b"] * 3, "secondary": list("bcdacd"), "mean_delta": [3, 2, 1, 1, 2, 3]}
    )
    truth = {(r.main, r.secondary): r.mean_delta for r in transfer.itertuples()}
    est = {"oracle": lambda m, s: truth[(m, s)], "anti": lambda m, s: -truth[(m, s)]}
    summ = summary(predict_transfer(transfer, {"a": 0.7, "b": 0.6}, est, samples=100), transfer)
    assert summ.loc["oracle", "p_spearman"] == pytest.approx(1 / 36) and summ.loc["anti", "p_spearman"] == 1
    assert summ.loc["oracle", "p_adjusted"] == pytest.approx(2 / 36) and np.isnan(summ.loc["random", "p_spearman"])


PREDICTION_STUDY = """
name: tiny-score
kind: prediction
corpora: [{corpus}]
prediction:
  grid: {root}/g/{{corpus}}
  embeddings:
    a: {root}/e/{{corpus}}
    b: {root}/e2/{{corpus}}
  affinity: {root}/a/{{corpus}}
  samples: 100
"""


def test_a_prediction_study_waits_for_its_inputs_then_scores_every_estimator_in_one_family(
    tiny_corpus, tmp_path, monkeypatch, capsys
):
    from taskrel.estimate import estimate
    from taskrel.experiments import load_study, run_study

    monkeypatch.setenv("TASKREL_DATA", str(tiny_corpus.parent))
    study_file = tmp_path / "score.yaml"
    study_file.write_text(PREDICTION_STUDY.format(corpus=tiny_corpus, root=tmp_path))
    out, logged = tmp_path / "score", []
    assert estimate(load_study(study_file), out, do_probe=False).runs == 0  # it trains nothing
    assert main(["status", str(study_file), "--out", str(out)]) == 0
    assert "it trains no runs of its own" in capsys.readouterr().out

    grid = tiny_grid(tiny_corpus, tasks=("ner", "bcls", "mcls"), seeds=(1,))
    run_grid(grid, tmp_path / "g" / tiny_corpus.name, **QUIET)
    emb = ["embed", "--tasks", "tiny:ner,tiny:bcls,tiny:mcls", "--epochs", "1", "--examples", "4"]
    assert main([*emb, "--out", str(tmp_path / "e" / tiny_corpus.name), *TINY_RUN]) == 0
    run_study(study_file, out, progress=False, log=logged.append)  # the second embeddings and the affinity: missing
    waiting = [line for line in logged if "waiting for" in line]
    assert len(waiting) == 1 and "e2" in waiting[0] and "affinity" in waiting[0] and "grid" not in waiting[0]
    assert not (out / tiny_corpus.name / "prediction").exists()

    first = tmp_path / "e" / tiny_corpus.name / "models"
    reuse = [arg for t in ("ner", "bcls", "mcls") for arg in ("--model", f"tiny:{t}={first}/tiny.{t}/model")]
    e2 = ["--fisher-style", "taskemb", "--out", str(tmp_path / "e2" / tiny_corpus.name)]
    assert main([*emb, *reuse, *e2, *TINY_RUN]) == 0
    aff = ["affinity", "--data", str(tiny_corpus), "--tasks", "ner,bcls,mcls", "--epochs", "1", "--every", "1"]
    assert main([*aff, "--out", str(tmp_path / "a" / tiny_corpus.name), *TINY_RUN]) == 0
    run_study(study_file, out, progress=False, log=logged.append)
    folder = out / tiny_corpus.name / "prediction"
    summ = pd.read_csv(folder / "prediction_summary.csv", index_col=0)
    for name in ("a/fisher:head:cosine", "b/fisher:head:cosine", "a/control:head:cosine", "tag", "data_size"):
        assert name in summ.index, name
    assert {"p_spearman", "p_adjusted"} <= set(summ.columns)  # one table: Holm over every estimator of both styles
    record = json.loads((folder / "prediction.json").read_text())
    assert record["grid_status"]["pairs"] == 6 and set(record["embeddings"]) == {"a", "b"}
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report/report.md").read_text()
    assert "Do the estimators predict" in text and "The grid's 6 transfers (1 seeds)" in text


def test_predict_transfer_wants_a_label_for_each_of_several_embeddings(tmp_path, capsys):
    args = ["predict-transfer", "--grid", str(tmp_path), "--embeddings", "a", "--embeddings", "b"]
    assert main(args) == 2
    assert "label '' given twice" in capsys.readouterr().err
