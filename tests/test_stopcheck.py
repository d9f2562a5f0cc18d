import numpy as np
import pandas as pd
import pytest

from taskrel.stopcheck import describe, stop_check


def _runs(score_of, seeds=8, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for corpus in ("A", "B"):
        for variant, shift in (("single", 0.0), ("mt", 0.05)):
            for s in range(seeds):
                epoch = int(rng.integers(5, 30))
                rows.append(
                    {
                        "corpus": corpus,
                        "variant": variant,
                        "seed": s,
                        "best_epoch": epoch,
                        "f1": 0.6 + shift + score_of(corpus, epoch, rng),
                    }
                )
    return pd.DataFrame(rows)


def test_runs_that_stopped_early_and_scored_lower_are_flagged_on_their_corpus_only():
    table = stop_check(
        _runs(lambda c, e, rng: (0.002 * e if c == "A" else 0) + rng.normal(0, 0.005)), samples=2000
    ).set_index("corpus")
    assert table.loc["A", "flag"] and table.loc["A", "rho"] > 0.5 and table.loc["A", "p_adjusted"] < 0.05
    assert not table.loc["B", "flag"]
    assert table.loc["A", "runs"] == 16 and table.loc["A", "variants"] == 2
    assert "Flagged: A." in describe(table.reset_index())


def test_a_variant_that_trains_longer_and_scores_higher_is_not_a_flag():
    """Between variants, longer and better is the variant's doing; only the spread within variants counts."""
    rows = []
    rng = np.random.default_rng(1)
    for variant, epochs, base in (("short", (5, 10), 0.6), ("long", (25, 30), 0.7)):
        for _ in range(8):
            epoch, f1 = int(rng.integers(*epochs)), base + rng.normal(0, 0.01)
            rows.append({"corpus": "A", "variant": variant, "best_epoch": epoch, "f1": f1})
    table = stop_check(pd.DataFrame(rows), samples=2000)
    pooled = pd.DataFrame(rows)
    from scipy.stats import spearmanr

    assert spearmanr(pooled["best_epoch"], pooled["f1"])[0] > 0.6  # pooled naively, it would look cut off
    assert not table["flag"].iloc[0] and "Nothing is flagged" in describe(table)


def test_too_few_runs_or_constant_epochs_say_nothing():
    few = pd.DataFrame({"corpus": "A", "variant": ["v", "v", "w"], "best_epoch": [3, 5, 9], "f1": [0.1, 0.2, 0.3]})
    assert stop_check(few).empty
    flat = pd.DataFrame({"corpus": "A", "variant": "v", "best_epoch": [7] * 5, "f1": [0.1, 0.2, 0.3, 0.4, 0.5]})
    row = stop_check(flat).iloc[0]
    assert np.isnan(row["rho"]) and np.isnan(row["p"]) and not row["flag"]


def test_the_permutation_p_is_exact_on_a_tiny_case():
    """4 runs in one variant, epochs and scores in the same order: ρ = 1, reached by 1 of the 24 orders."""
    runs = pd.DataFrame({"corpus": "A", "variant": "v", "best_epoch": [1, 2, 3, 4], "f1": [0.1, 0.2, 0.3, 0.4]})
    row = stop_check(runs, samples=20000).iloc[0]
    assert row["rho"] == pytest.approx(1.0)
    assert row["p"] == pytest.approx(1 / 24, abs=0.006)


def test_a_grid_is_checked_per_main_task():
    runs = _runs(lambda c, e, rng: (0.002 * e if c == "A" else 0) + rng.normal(0, 0.005)).rename(
        columns={"corpus": "main", "f1": "score"}
    )
    table = stop_check(runs, score="score", by="main", samples=2000)
    assert list(table.columns[:1]) == ["main"] and list(table["main"]) == ["A", "B"]
    assert list(table["flag"]) == [True, False] and "Flagged: A." in describe(table)


def test_the_replay_follows_the_trainers_stopping_rule():
    from taskrel.stopcheck import replay_stop

    epochs, scores = list(range(1, 9)), [0.1, 0.3, 0.2, 0.25, 0.4, 0.35, 0.35, 0.38]
    assert replay_stop(epochs, scores, 1) == (2, 1)
    assert replay_stop(epochs, scores, 2) == (3, 1)
    assert replay_stop(epochs, scores, 3) == (7, 4)
    assert replay_stop(epochs, scores, 4) == (7, 4)  # never stops: the last evaluation, the best before it
    assert replay_stop(epochs, scores, 1, min_epochs=4) == (3, 1)  # no stop before epoch 4
    assert replay_stop([1, 2], [0.5, 0.5], 1) == (1, 0)  # a tie is no new best


def test_a_shorter_patience_replayed_is_what_training_with_it_gives(tiny_corpus, tmp_path):
    from taskrel.rundir import RunDir
    from taskrel.stopcheck import patience_sweep, sweep_summary
    from taskrel.train import train

    from helpers import tiny_config

    quiet = {"progress": False, "log": lambda *_: None}
    runs = {}
    for p in (2, 4, 6):  # mCLS on the tiny corpus: a dev curve flat for 5 epochs, then a new best
        cfg = tiny_config(tiny_corpus, tmp_path / f"p{p}", epochs=10, patience=p, min_epochs=2, batch_size=2)
        cfg.model.tasks = ["mcls"]
        train(cfg, **quiet)
        runs[p] = RunDir(cfg.out)
    curve = runs[6].dev_curve()
    sweep = patience_sweep(
        [{"corpus": "tiny", "variant": "v", "seed": 1, "patience": 6, "min_epochs": 2, "curve": curve}]
    ).set_index("patience")  # fmt: skip
    assert list(sweep.index) == [1, 2, 3, 4, 5, 6] and sweep.loc[6, "dev_lost"] == 0 and sweep.loc[6, "same_selection"]
    assert (sweep["dev_lost"] > 0).any()  # a shorter patience would have selected a worse epoch here
    for p in (2, 4):  # the run trained with patience p stopped and selected where the replay says
        trained = runs[p].dev_curve()
        assert trained[-1][0] == sweep.loc[p, "stop_epoch"]
        assert runs[p].best_epoch == sweep.loc[p, "selected_epoch"]
        assert max(s for _, s, _ in trained) == sweep.loc[p, "dev_selected"]
    summary = sweep_summary(sweep.reset_index())
    assert list(summary["patience"]) == [1, 2, 3, 4, 5, 6] and (summary["runs"] == 1).all()
    assert summary.loc[5, "dev_lost_mean"] == 0 and summary.loc[5, "same_selection"] == 1
