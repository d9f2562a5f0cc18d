import numpy as np
import pytest
from seqeval.metrics import f1_score
from seqeval.scheme import IOB2

from taskrel.significance import paired_bootstrap, score_from_stats, seed_ttest, sentence_stats
from taskrel.tasks import build_tasks

TASKS = build_tasks(["ner", "bcls"], ["O", "B-X", "I-X", "B-Y", "I-Y"])


def random_tags(rng, n):
    return [str(rng.choice(["O", "O", "O", "B-X", "I-X", "B-Y", "I-Y"])) for _ in range(n)]


def test_stats_reproduce_seqeval_strict_f1():
    rng = np.random.default_rng(0)
    gold = [random_tags(rng, int(rng.integers(1, 12))) for _ in range(200)]
    pred = [random_tags(rng, len(g)) for g in gold]
    stats = sentence_stats(TASKS["ner"], gold, pred)
    assert stats.shape == (200, 3)
    assert score_from_stats(stats.sum(0)) == pytest.approx(f1_score(gold, pred, mode="strict", scheme=IOB2))


def test_accuracy_stats():
    stats = sentence_stats(TASKS["bcls"], ["0", "1", "1", "0"], ["0", "1", "0", "0"])
    assert score_from_stats(stats.sum(0), 4) == 0.75


def test_identical_systems_are_not_significant():
    stats = [sentence_stats(TASKS["bcls"], ["0", "1"] * 50, ["0", "0"] * 50)]
    result = paired_bootstrap(stats, stats, samples=500)
    assert result["delta"] == 0 and result["p_bootstrap"] == 1.0


def test_a_clearly_better_system_is_significant_and_delta_is_exact():
    gold = ["1"] * 200
    alone = [sentence_stats(TASKS["bcls"], gold, ["1"] * 100 + ["0"] * 100)]  # accuracy 0.5
    better = [sentence_stats(TASKS["bcls"], gold, ["1"] * 160 + ["0"] * 40)]  # accuracy 0.8
    result = paired_bootstrap(better, alone, samples=1000)
    assert result["delta"] == pytest.approx(0.3)
    assert result["p_bootstrap"] < 0.01 and 0 < result["ci_low"] < 0.3 < result["ci_high"]
    worse = paired_bootstrap(alone, better, samples=1000)
    assert worse["delta"] == pytest.approx(-0.3) and worse["p_bootstrap"] < 0.01


def test_a_tiny_difference_on_few_sentences_is_not_significant():
    gold = ["1"] * 20
    alone = [sentence_stats(TASKS["bcls"], gold, ["1"] * 10 + ["0"] * 10)]
    with_s = [sentence_stats(TASKS["bcls"], gold, ["1"] * 11 + ["0"] * 9)]
    result = paired_bootstrap(with_s, alone, samples=1000)
    assert result["delta"] == pytest.approx(0.05) and result["p_bootstrap"] > 0.05


def test_delta_averages_over_seeds():
    gold = ["1"] * 10
    s = lambda k: sentence_stats(TASKS["bcls"], gold, ["1"] * k + ["0"] * (10 - k))  # noqa: E731
    result = paired_bootstrap([s(6), s(8)], [s(5), s(5)], samples=200)
    assert result["delta"] == pytest.approx(((0.6 - 0.5) + (0.8 - 0.5)) / 2)


def test_seed_ttest():
    assert np.isnan(seed_ttest([0.1]))
    assert seed_ttest([0.01, 0.012, 0.011, 0.013]) < 0.01
    assert seed_ttest([0.01, -0.01, 0.02, -0.02]) > 0.5
