import numpy as np
import pytest
from seqeval.metrics import f1_score
from seqeval.scheme import IOB2

from taskrel.significance import paired_bootstrap, score_from_stats, seed_level, sentence_stats, t_level
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


def seed_ttest(deltas):
    return t_level(seed_level(deltas))["p"]


def test_seed_ttest():
    assert np.isnan(seed_ttest([0.1]))
    assert seed_ttest([0.01, 0.012, 0.011, 0.013]) < 0.01
    assert seed_ttest([0.01, -0.01, 0.02, -0.02]) > 0.5


def test_seed_ttest_has_no_p_value_without_spread():
    assert np.isnan(seed_ttest([0.02, 0.02, 0.02]))  # was 0.0: an infinite t is not evidence
    assert seed_ttest([0.0, 0.0]) == 1.0


def accuracy_stats(correct):
    return np.asarray(correct, dtype=float).reshape(-1, 1)


def test_block_resampling_widens_the_interval_when_errors_cluster():
    from taskrel.significance import hierarchical_bootstrap

    rng = np.random.default_rng(0)
    n = 400
    # system A errs in whole blocks of 20 consecutive sentences; B errs at random, with the same accuracy
    blocks = rng.random(n // 20) < 0.3
    a = accuracy_stats(~np.repeat(blocks, 20))
    b = accuracy_stats(rng.random(n) >= blocks.mean())
    by_sentence = hierarchical_bootstrap([a], [b], samples=1000, unit="sentence")
    by_block = hierarchical_bootstrap([a], [b], samples=1000, unit="block:20")
    width = lambda r: r["ci_high"] - r["ci_low"]  # noqa: E731
    assert width(by_block) > 1.5 * width(by_sentence)
    assert by_block["delta"] == by_sentence["delta"] and not by_block["seeds_covered"]


def test_hierarchical_bootstrap_covers_seed_variance_and_floors_p():
    from taskrel.significance import format_p, hierarchical_bootstrap

    rng = np.random.default_rng(1)
    n = 300
    base = [accuracy_stats(rng.random(n) < 0.7) for _ in range(3)]
    # seeds that disagree: one much better, two slightly worse -> undetermined sign
    noisy = [accuracy_stats(rng.random(n) < p) for p in (0.9, 0.66, 0.65)]
    r = hierarchical_bootstrap(noisy, base, samples=500, unit="block:10")
    assert r["seeds"] == 3 and r["seeds_covered"] and r["p"] > 0.05
    # a clear, consistent effect: p is a bound at 1/B, never 0
    strong = [accuracy_stats(np.ones(n)) for _ in range(3)]
    r = hierarchical_bootstrap(strong, base, samples=500)
    assert r["p"] == pytest.approx(1 / 500) and r["p_floor"] and format_p(r["p"], r["p_floor"]) == "< 0.002"
    with pytest.raises(ValueError):
        hierarchical_bootstrap(strong[:2], base)


def test_bootstraps_with_one_generator_seed_resample_alike_so_their_draws_subtract():
    """What a grid's contrasts rely on: two comparisons over the same seeds and test units, bootstrapped with
    the same generator seed, draw the same resamples; the difference of their draws is the bootstrap of the
    difference (here: (w1 − a) − (w2 − a) = w1 − w2, draw by draw)."""
    from taskrel.significance import hierarchical_bootstrap

    rng = np.random.default_rng(2)
    n = 200
    a, w1, w2 = ([accuracy_stats(rng.random(n) < p) for _ in range(3)] for p in (0.6, 0.7, 0.65))
    d1 = hierarchical_bootstrap(w1, a, samples=300)["draws"]
    d2 = hierarchical_bootstrap(w2, a, samples=300)["draws"]
    direct = hierarchical_bootstrap(w1, w2, samples=300)["draws"]
    assert d1 - d2 == pytest.approx(direct, abs=1e-12)


def test_holm_by_hand_and_verdicts():
    from taskrel.significance import holm, verdict

    adjusted = holm([0.01, 0.04, 0.03, float("nan")])
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1, made monotone: 0.03, 0.06, 0.06
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and np.isnan(adjusted[3])
    assert verdict(0.02, 0.01, True) == "helps" and verdict(-0.02, 0.01, True) == "hurts"
    assert verdict(0.02, 0.2, True) == "undetermined"
    assert verdict(0.02, 0.01, False) == "undetermined"  # a run did not converge
    assert verdict(0.02, 0.01, True, seeds=1) == "undetermined"  # training variance not sampled


def test_verdicts_are_calibrated_under_the_null():
    """Two arms drawn alike (A/A): helps/hurts at most at the nominal rate (a small, seeded simulation)."""
    from taskrel.significance import hierarchical_bootstrap, verdict

    rng = np.random.default_rng(3)
    calls = 0
    trials = 60
    for _ in range(trials):
        seeds = int(rng.integers(2, 6))
        skill = lambda: 0.7 + rng.normal(0, 0.02)  # noqa: E731  per-seed training variance
        a = [accuracy_stats(rng.random(200) < skill()) for _ in range(seeds)]
        b = [accuracy_stats(rng.random(200) < skill()) for _ in range(seeds)]
        r = hierarchical_bootstrap(a, b, samples=300, seed=int(rng.integers(1e6)))
        calls += verdict(r["delta"], r["p"], True, seeds) != "undetermined"
    assert calls / trials <= 0.1  # nominal 0.05; 60 trials leave room for chance


def test_verdicts_are_calibrated_where_seeds_dominate():
    """A/A where runs agree on most sentences and differ by training seed (fitted to the grid's sentence tasks:
    seed spread about 1.5 points, 8% of test labels changed between two runs): resampling 2 or 3 seeds cannot draw
    a mean below the smallest of them, so the bootstrap alone calls about 12% of null comparisons significant at
    5%; with the seed t-test required as well (``both_levels``) the rate stays under the nominal 5%."""
    from taskrel.significance import both_levels, hierarchical_bootstrap, seed_level

    rng = np.random.default_rng(11)
    n, trials = 940, 120
    bootstrap_alone = both = 0
    for t in range(trials):
        seeds = 2 + t % 2
        difficulty = rng.normal(2.5, 2.0, n)  # shared by every run: one test set

        a, b = (
            [accuracy_stats(difficulty + rng.normal(0, 0.15) + rng.normal(0, 0.7, n) > 0) for _ in range(seeds)]
            for _ in range(2)
        )
        boot = hierarchical_bootstrap(a, b, samples=300, seed=t)
        level = seed_level([float(x.mean() - y.mean()) for x, y in zip(a, b)])
        bootstrap_alone += boot["p"] < 0.05
        both += both_levels(boot, level, seeds)["p"] < 0.05
    assert bootstrap_alone / trials > 0.08  # the case this guards against: the bootstrap alone over-calls here
    assert both / trials <= 0.05


def test_both_levels_take_the_larger_p_the_hull_and_the_larger_mde():
    from taskrel.significance import MDE_FACTOR, both_levels, combined_level, seed_level, t_level

    boot = {"p": 0.002, "p_floor": False, "ci_low": 0.01, "ci_high": 0.05, "se": 0.01}
    level = seed_level([0.02, 0.04, 0.03])  # t = 5.2 on 2 df: p about 0.035, interval (+0.005, +0.055)
    t = t_level(level)
    out = both_levels(boot, level, 3)
    assert out["p"] == pytest.approx(t["p"]) and out["p_bootstrap"] == 0.002 and out["p_seeds"] == out["p"]
    assert out["ci_low"] == pytest.approx(t["ci_low"]) and out["ci_high"] == pytest.approx(t["ci_high"])
    assert out["mde"] == pytest.approx(max(MDE_FACTOR * 0.01, t["mde"]))
    assert 0.03 < t["p"] < 0.04 and t["ci_low"] > 0
    # no spread: no seed p-value, so no p at all (an infinite t is not evidence); one seed: the bootstrap's, no MDE
    assert np.isnan(both_levels(boot, seed_level([0.03, 0.03]), 2)["p"])
    one = both_levels(boot, seed_level([0.03]), 1)
    assert one["p"] == 0.002 and np.isnan(one["mde"])
    # Welch–Satterthwaite: two equal halves with 2 df each give 4 df, the mean of two corpora half the variance
    pooled = combined_level([level, level], [0.5, 0.5])
    assert pooled["df"] == pytest.approx(4) and pooled["se"] == pytest.approx(level["se"] / np.sqrt(2))


def test_document_resampling_follows_the_docstart_boundaries(tmp_path):
    from taskrel.corpus import read_conll
    from taskrel.significance import hierarchical_bootstrap, unit_blocks

    # a hand-made test file: 3 documents of unequal length, and a file without -DOCSTART- lines
    doc = lambda k: "-DOCSTART- O\n\n" + "".join(f"w{i} O\n\n" for i in range(k))  # noqa: E731
    (tmp_path / "test.tsv").write_text(doc(2) + doc(3) + doc(1))
    sents = read_conll(tmp_path / "test.tsv")
    assert [s.doc for s in sents] == [0, 0, 1, 1, 1, 2]
    assert list(unit_blocks(6, "document", [s.doc for s in sents])) == [0, 0, 1, 1, 1, 2]
    (tmp_path / "plain.tsv").write_text("w O\n\nv O\n")
    with pytest.raises(ValueError, match="-DOCSTART- boundaries"):
        unit_blocks(2, "document", [s.doc for s in read_conll(tmp_path / "plain.tsv")])
    # errors that cluster in documents: the document bootstrap gives the wider, honest interval
    rng = np.random.default_rng(0)
    docs = np.repeat(np.arange(40), rng.integers(5, 16, size=40))
    bad_docs = rng.random(40) < 0.3
    a = accuracy_stats(~bad_docs[docs])
    b = accuracy_stats(rng.random(len(docs)) >= bad_docs.mean())
    by_sentence = hierarchical_bootstrap([a], [b], samples=1000, unit="sentence")
    by_document = hierarchical_bootstrap([a], [b], samples=1000, unit="document", docs=list(docs))
    width = lambda r: r["ci_high"] - r["ci_low"]  # noqa: E731
    assert width(by_document) > 1.5 * width(by_sentence)


def test_pooled_bootstrap_averages_corpora_and_combines_them_independently():
    from taskrel.significance import hierarchical_bootstrap, pooled_bootstrap

    rng = np.random.default_rng(3)
    n = 300
    base = [[accuracy_stats(rng.random(n) < 0.7) for _ in range(3)] for _ in range(3)]
    better = [[accuracy_stats(rng.random(n) < p) for _ in range(3)] for p in (0.72, 0.74, 0.71)]
    # the same generator seed for every corpus, as compare_study does
    parts = [hierarchical_bootstrap(w, a, samples=1000, seed=0) for w, a in zip(better, base)]
    pooled = pooled_bootstrap(parts)
    assert pooled["delta"] == pytest.approx(np.mean([r["delta"] for r in parts])) and pooled["parts"] == 3
    # independent corpora: the mean's standard error is about the root mean square of theirs over sqrt(3)
    expected = np.sqrt(np.mean([r["se"] ** 2 for r in parts]) / 3)
    assert pooled["se"] == pytest.approx(expected, rel=0.15)
    assert pooled["ci_low"] < pooled["delta"] < pooled["ci_high"]
    # pooling treats its parts as independent (their draws shuffled apart): pass each corpus once
    twice = pooled_bootstrap([parts[0], parts[0]])
    assert twice["se"] < 0.85 * parts[0]["se"]
    with pytest.raises(ValueError, match="same number"):
        pooled_bootstrap([parts[0], hierarchical_bootstrap(better[0], base[0], samples=500)])


def test_aso_epsilon_is_a_seed_level_second_opinion():
    from taskrel.significance import ASO_MIN_SEEDS, aso_epsilon

    better, worse = [0.73, 0.74, 0.72, 0.75, 0.73], [0.70, 0.71, 0.72, 0.69, 0.70]
    assert aso_epsilon(better, worse, samples=200) < 0.2 < 0.8 < aso_epsilon(worse, better, samples=200)
    assert aso_epsilon(better, worse, samples=200) == aso_epsilon(better, worse, samples=200)  # seeded
    assert np.isnan(aso_epsilon(better[: ASO_MIN_SEEDS - 1], worse))


@pytest.mark.parametrize("case", range(8))
def test_aso_epsilon_is_deepsigs_to_the_last_bit(case):
    """taskrel computes ASO itself, vectorised; deepsig 1.2.8 is the reference: the same ε, bit for bit, on
    unequal seed counts, ties, identical and shifted score sets."""
    import warnings

    from deepsig import aso

    from taskrel.significance import aso_epsilon

    rng = np.random.default_rng(case)
    a = rng.normal(70, rng.uniform(0.1, 3), rng.integers(3, 13)).round(1 + case % 3)
    b = {0: a.copy(), 1: a + 0.5}.get(case, rng.normal(70 + rng.normal(0, 1), 1.5, rng.integers(3, 13)).round(2))
    with warnings.catch_warnings():  # deepsig warns on the division by zero of identical score sets
        warnings.simplefilter("ignore")
        ref = aso(a, b, seed=case, num_bootstrap_iterations=120, num_jobs=1, show_progress=False)
    assert aso_epsilon(list(a), list(b), seed=case, samples=120) == float(ref)


def test_no_minimum_detectable_effect_is_claimed_from_one_seed():
    """At one paired seed no verdict is drawn, so the design detects nothing: its MDE is NaN, not the test-set
    bootstrap's 2.8 standard errors; from two seeds on it is the larger of those and the seed t-test's."""
    from taskrel.compare import paired_stats
    from taskrel.significance import MDE_FACTOR, seed_level, t_level

    rng = np.random.default_rng(3)
    base = [accuracy_stats(rng.random(200) < 0.7) for _ in range(2)]
    better = [accuracy_stats(rng.random(200) < 0.8) for _ in range(2)]
    scores = lambda stats: [float(s.mean()) for s in stats]  # noqa: E731
    one = paired_stats(scores(better[:1]), scores(base[:1]), better[:1], base[:1], 200, "sentence", None)
    two = paired_stats(scores(better), scores(base), better, base, 200, "sentence", None)
    assert np.isnan(one["mde"]) and one["ci_low"] == one["ci_low"]  # the interval stays, as test-set uncertainty
    seed_mde = t_level(seed_level(two["deltas"]))["mde"]
    assert two["mde"] == pytest.approx(max(MDE_FACTOR * two["boot"]["se"], seed_mde))
