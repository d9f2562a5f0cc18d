import json
import shutil
from dataclasses import replace
from pathlib import Path

import optuna
import pandas as pd
import pytest

from taskrel.cli import main
from taskrel.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig, TuneConfig
from taskrel.confirm import ARMS, arm_configs
from taskrel.corpus import CorpusError
from taskrel.pruning import measure_pruning
from taskrel.rundir import SettingsDiffer, check_study_record
from taskrel.train import train
from taskrel.tune import make_pruner, may_prune, trial_config, tune

from conftest import TINY_RUN

QUIET = {"progress": False, "log": lambda *_: None}


class PruneTrialOne(optuna.pruners.BasePruner):
    """Prunes trial 1 at its first report, and nothing else."""

    def prune(self, study, trial):
        return trial.number == 1


def tiny_tune(corpus, trials=3, tasks=("ner", "bcls")):
    base = RunConfig(
        DataConfig(str(corpus)),
        ModelConfig("tiny", list(tasks)),
        TrainConfig(epochs=2, batch_size=4, lr=1e-3, threads=1),
    )
    return TuneConfig(base, trials=trials)


def test_a_three_trial_study_with_pruning_and_resume(tiny_corpus, tmp_path):
    out, said = tmp_path / "tune", []
    best = tune(tiny_tune(tiny_corpus), out, pruner=PruneTrialOne(), progress=False, log=said.append)
    # one line per trial: how it ended, the best so far, how long is left
    lines = [line for line in said if ": trial " in line]
    assert len(lines) == 3 and "trial 0 dev 0." in lines[0] and "best dev" in lines[0]
    assert "trial 1 pruned after evaluation 1 (best so far 0." in lines[1] and "1 of 3 trials done" in lines[0]
    assert "median of the completed trials there 0." in lines[1]
    assert "left at that pace" in lines[1] and "3 of 3 trials done" in lines[2] and "left" not in lines[2]
    trials = pd.read_csv(out / "trials.csv")
    assert list(trials["state"]) == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert best["trials"]["complete"] == 2 and best["trials"]["pruned"] == 1 and best["trial"] in (0, 2)
    saved = json.loads((out / "best.json").read_text())
    assert saved["weights"]["ner"] == 1.0 and 1e-3 <= saved["weights"]["bcls"] <= 1.0
    assert saved["dev_score"] == max(trials[trials["state"] == "COMPLETE"]["value"])
    for f in ("history.png", "slices.png", "importances.png", "tune.json"):
        assert (out / f).stat().st_size > 0
    # the pruned trial stopped after one epoch; the completed ones ran two
    pruned_epochs = (out / "trials/0001/metrics.jsonl").read_text().splitlines()
    assert len(pruned_epochs) == 1 and len((out / "trials/0000/metrics.jsonl").read_text().splitlines()) == 2

    tune(tiny_tune(tiny_corpus, trials=5), out, pruner=PruneTrialOne(), **QUIET)  # resume: adds to the same study
    study = optuna.load_study(study_name="taskrel-tune", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 5 and len(pd.read_csv(out / "trials.csv")) == 5


def test_the_test_split_is_never_read_while_tuning(tiny_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    (corpus / "test.tsv").write_bytes(b"\xff\xfe not a corpus \x00\n")  # reading it would fail
    cfg = RunConfig(
        DataConfig(str(corpus)), ModelConfig("tiny", ["ner"]), TrainConfig(epochs=1, threads=1), str(tmp_path / "run")
    )
    with pytest.raises(CorpusError, match="test.tsv"):
        train(cfg, **QUIET)  # an ordinary run reads test ...
    best = tune(tiny_tune(corpus, trials=2), tmp_path / "tune", **QUIET)  # ... tuning does not
    assert best["trials"]["complete"] == 2
    metrics = json.loads((tmp_path / "tune/trials/0000/metrics.json").read_text())
    assert metrics["test"] is None and not (tmp_path / "tune/trials/0000/test_predictions.jsonl").exists()


def test_search_space():
    base = RunConfig(DataConfig("x"), ModelConfig("tiny", ["ner", "mtcls", "mcls"]), TrainConfig())
    tc = TuneConfig(base, min_weight=0.01, max_weight=0.5, tune_pooling=True)
    trial = optuna.trial.FixedTrial({"w_mtcls": 0.2, "w_mcls": 0.01, "pooling": "mean"})
    cfg = trial_config(tc, trial, Path("/nowhere"))
    assert cfg.train.weights == {"ner": 1.0, "mtcls": 0.2, "mcls": 0.01}
    assert cfg.model.pooling == "mean" and cfg.train.lr == base.train.lr and cfg.out == "/nowhere/trials/0000"
    with pytest.raises(ConfigError, match="nothing to tune"):
        TuneConfig(RunConfig(DataConfig("x"), ModelConfig("tiny", ["ner"]), TrainConfig()))


def test_a_dynamic_weighting_gets_its_own_parameters_tuned_with_the_same_trials(tiny_corpus, tmp_path):
    """The fairness the literature asks for: a study whose base weighting is GradNorm tunes GradNorm's alpha and
    learning rate (not the weights it starts from), and its best trial reaches the confirm arm and study
    variants as that method with those parameters."""
    from taskrel.experiments import tuned_settings
    from taskrel.tune import DYNAMIC_SPACE

    tc = tiny_tune(tiny_corpus, trials=2)
    tc.base.train.weighting = "gradnorm"
    best = tune(tc, tmp_path / "t", **QUIET)
    assert set(best["params"]) == set(DYNAMIC_SPACE["gradnorm"]) and best["weighting"] == "gradnorm"
    assert best["weights"] == {"ner": 1.0, "bcls": 1.0}
    trial = json.loads((Path(best["run_dir"]) / "config.json").read_text())["train"]
    assert trial["weighting"] == "gradnorm" and trial["gradnorm_alpha"] == pytest.approx(
        best["params"]["gradnorm_alpha"]
    )
    tuned = arm_configs(tc, best, ["single", "tuned"])["tuned"].train
    assert (tuned.weighting, tuned.gradnorm_alpha, tuned.weighting_lr) == (
        "gradnorm",
        pytest.approx(best["params"]["gradnorm_alpha"]),
        pytest.approx(best["params"]["weighting_lr"]),
    )
    assert tuned_settings(tmp_path / "t", "v")["train"] == {
        "weights": {"ner": 1.0, "bcls": 1.0},
        "weighting": "gradnorm",
        **{k: pytest.approx(v) for k, v in best["params"].items()},
    }
    from taskrel.report import write_report

    report = write_report(tmp_path / "t", tmp_path / "r").read_text()
    assert "weighting gradnorm: its own parameters tuned (weighting_lr, gradnorm_alpha)" in report
    # a static study's best trial keeps static weighting, whatever the base's other settings
    static = {"weights": {"ner": 1.0, "bcls": 0.1}, "params": {"w_bcls": 0.1}}
    assert arm_configs(tc, static, ["tuned"])["tuned"].train.weighting == "static"


def test_tune_cli(tiny_corpus, tmp_path, capsys):
    args = ["tune", "--data", str(tiny_corpus), "--tasks", "ner,mcls", "--epochs", "1", "--trials", "2"]
    args += ["--pruner", "hyperband", "--out", str(tmp_path / "t"), *TINY_RUN]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "best trial" in out and "optuna-dashboard sqlite:///" in out


def test_measure_pruning_reruns_pruned_trials_and_counts_the_savings(tiny_corpus, tmp_path):
    out = tmp_path / "tune"
    tc = tiny_tune(tiny_corpus)
    tune(tc, out, pruner=PruneTrialOne(), **QUIET)
    summary = measure_pruning(tc, out, **QUIET)
    assert summary["trials"] == 3 and summary["pruned"] == 1
    assert summary["epochs_with_pruning"] == 5 and summary["epochs_without_pruning"] == 6
    assert summary["epochs_saved_fraction"] == pytest.approx(1 / 6)
    assert summary["all_reruns_from_scratch_reproduce_pruned_scores"]  # its first epoch equals the pruned trial's
    assert summary["reruns_from_scratch"] == 1
    assert len((out / "unpruned/0001/metrics.jsonl").read_text().splitlines()) == 2
    table = pd.read_csv(out / "pruning.csv")
    best_completed = table[table["state"] == "COMPLETE"]["dev_unpruned"].max()
    assert summary["best_dev_with_pruning"] == pytest.approx(best_completed)
    assert summary["best_dev_without_pruning"] == pytest.approx(table["dev_unpruned"].max())
    assert json.loads((out / "pruning.json").read_text()) == summary


def test_confirm_arms():
    base = RunConfig(DataConfig("x"), ModelConfig("tiny"), TrainConfig(lr=1e-4))
    best = {"weights": {"ner": 1.0, "mtcls": 0.01, "bcls": 0.02, "mcls": 0.03}, "params": {"lr": 3e-4}}
    arms = arm_configs(TuneConfig(base), best)
    assert list(arms) == list(ARMS)
    assert arms["single"].model.tasks == ["ner"] and arms["single"].train.weights == {"ner": 1.0}
    assert arms["authors"].train.weights == {"ner": 0.8, "mtcls": 0.1, "bcls": 0.05, "mcls": 0.05}
    assert arms["tuned"].train.weights == best["weights"] and arms["tuned"].train.lr == 3e-4
    assert arms["equal"].train.lr == 1e-4 and set(arms["equal"].train.weights.values()) == {1.0}
    assert [arms[m].train.weighting for m in ("uncertainty", "gradnorm", "pcgrad")] == [
        "uncertainty",
        "gradnorm",
        "pcgrad",
    ]
    two = TuneConfig(RunConfig(DataConfig("x"), ModelConfig("tiny", ["ner", "bcls"]), TrainConfig()))
    assert "authors" not in arm_configs(two, {"weights": {"ner": 1, "bcls": 0.1}, "params": {}})
    with pytest.raises(ConfigError, match="unknown arm"):
        arm_configs(two, best, ["single", "magic"])


def test_confirm_trains_every_arm_and_compares_with_single(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "tune"
    assert main(["tune", "--data", str(tiny_corpus), "--tasks", "bcls,ner", "--epochs", "1", "--trials", "2",
                 "--out", str(out), *TINY_RUN]) == 0  # fmt: skip
    args = ["tune", "--confirm", "--out", str(out), "--seeds", "2,3", "--no-progress", "--threads", "1"]
    assert main(args) == 0
    table = pd.read_csv(out / "confirm/comparison.csv")
    runs = pd.read_csv(out / "confirm/runs.csv")
    assert list(table["arm"]) == ["single", "equal", "tuned", "uncertainty", "gradnorm", "pcgrad"]
    assert len(runs) == 12 and (table["n_seeds"] == 2).all()
    single = runs[runs["arm"] == "single"].set_index("seed")["test_score"]
    assert (runs["test_score"] > 0).all()  # sentence accuracy: the tiny model scores above 0
    for r in table.itertuples():
        mine = runs[runs["arm"] == r.arm].set_index("seed")["test_score"]
        assert r.test_mean == pytest.approx(mine.mean())
        assert r.tuned == (r.arm == "tuned") and r.converged.endswith("/2")
        if r.arm == "single":
            assert pd.isna(r.delta_vs_single) and pd.isna(r.p_bootstrap) and r.verdict == "–"
        else:
            assert r.delta_vs_single == pytest.approx((mine - single).mean())
            assert r.ci_low <= r.delta_vs_single <= r.ci_high and 0 <= r.p_bootstrap <= r.p_adjusted <= 1
            assert r.verdict in ("helps", "hurts", "undetermined")
            if not r.all_converged:  # a run that did not converge is never a finding, whatever the p
                assert r.verdict == "undetermined"
    config = json.loads((out / "confirm/gradnorm/seed3/config.json").read_text())
    assert config["train"]["weighting"] == "gradnorm" and config["train"]["seed"] == 3
    assert config["train"]["epochs"] == 1 and config["data"]["data"] == str(tiny_corpus)  # the study's settings
    assert (out / "confirm/comparison.png").stat().st_size > 0
    assert "| pcgrad | pcgrad | no | 2 |" in (out / "confirm/comparison.md").read_text()
    # run again: nothing is retrained
    stamp = (out / "confirm/single/seed2/metrics.json").stat().st_mtime_ns
    assert main(args + ["--arms", "single,equal"]) == 0
    assert (out / "confirm/single/seed2/metrics.json").stat().st_mtime_ns == stamp
    assert "single" in capsys.readouterr().out


def test_continuing_pruned_trials_gives_what_a_rerun_from_scratch_gives(tiny_corpus, tmp_path):
    tc = tiny_tune(tiny_corpus)
    tune(tc, tmp_path / "a", pruner=PruneTrialOne(), **QUIET)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b/tune.json").write_text((tmp_path / "a/tune.json").read_text())
    scratch = measure_pruning(tc, tmp_path / "a", **QUIET)
    # the pruned trial left its checkpoint in b/trials/0001: only its missing epoch is trained
    continued = measure_pruning(tc, tmp_path / "b", continue_pruned=True, **QUIET)
    assert continued["reruns_from_scratch"] == 0 and (tmp_path / "b/unpruned/0001/continued_from_checkpoint").exists()
    for key in ("epochs_with_pruning", "epochs_without_pruning", "best_dev_with_pruning", "best_dev_without_pruning"):
        assert continued[key] == scratch[key], key
    a, b = pd.read_csv(tmp_path / "a/pruning.csv"), pd.read_csv(tmp_path / "b/pruning.csv")
    assert list(a["dev_unpruned"]) == list(b["dev_unpruned"])


def test_a_study_that_will_not_continue_its_pruned_trials_drops_their_checkpoints(tiny_corpus, tmp_path):
    tc = tiny_tune(tiny_corpus)
    tune(tc, tmp_path / "kept", pruner=PruneTrialOne(), **QUIET)
    assert (tmp_path / "kept/trials/0001/checkpoint/state.json").is_file()  # the default: it can be continued
    tune(tc, tmp_path / "t", pruner=PruneTrialOne(), keep_pruned=False, **QUIET)
    pruned, complete = tmp_path / "t/trials/0001", tmp_path / "t/trials/0000"
    assert not (pruned / "checkpoint").exists() and not (pruned / "model").exists()
    assert (pruned / "config.json").is_file() and len((pruned / "metrics.jsonl").read_text().splitlines()) == 1
    assert (complete / "model").is_dir()  # a finished trial keeps its model
    # nothing to continue from: the pruned trial is trained again from the start, and must reproduce its epoch
    summary = measure_pruning(tc, tmp_path / "t", continue_pruned=True, **QUIET)
    assert summary["reruns_from_scratch"] == 1
    assert bool(pd.read_csv(tmp_path / "t/pruning.csv").set_index("trial").loc[1, "reproduced"])


class PruneAll(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


def test_a_trial_is_never_pruned_at_its_last_epoch(tiny_corpus, tmp_path):
    tc = tiny_tune(tiny_corpus, trials=2)
    tc.base.train.epochs = 1
    best = tune(tc, tmp_path / "one", pruner=PruneAll(), **QUIET)
    assert best["trials"]["complete"] == 2 and best["trials"]["pruned"] == 0
    tc.base.train.epochs = 2
    with pytest.raises(RuntimeError, match="no trial"):  # every trial pruned after its first of two epochs
        tune(tc, tmp_path / "two", pruner=PruneAll(), **QUIET)


def test_a_trial_is_pruned_only_where_its_own_early_stopping_could_have_stopped_it(tiny_corpus):
    # at 10% of NCBI-disease every trial's first-epoch dev F1 is about 0: judged there, 18 of 20 trials were pruned
    tc = tiny_tune(tiny_corpus)
    cfg = tc.base
    cfg.train.epochs, cfg.train.patience, cfg.train.min_epochs = 40, 5, 3
    asked = [e for e in range(1, 41) if may_prune(tc, cfg, {"epoch": e, "eval": e, "epochs_done": float(e)})]
    assert asked[0] == 6 and asked[-1] == 39  # patience 5 could first stop it after evaluation 6; never the last
    cfg.train.min_epochs = 8
    assert not may_prune(tc, cfg, {"epoch": 7, "eval": 7, "epochs_done": 7.0})
    assert may_prune(tc, cfg, {"epoch": 8, "eval": 8, "epochs_done": 8.0})
    # evaluations within epochs (eval_every): the evaluation count and the epochs done both have to be reached
    assert not may_prune(tc, cfg, {"epoch": 3, "eval": 12, "epochs_done": 2.5})
    first = TuneConfig(cfg, prune_from="first")
    assert may_prune(first, cfg, {"epoch": 1, "eval": 1, "epochs_done": 1.0})
    median = make_pruner(tc)
    assert median._n_startup_trials == 5 and median._n_warmup_steps == 6


def test_pruning_waits_for_the_stopping_rule_in_a_study(tiny_corpus, tmp_path):
    tc = tiny_tune(tiny_corpus, trials=2)
    tc.base.train.epochs, tc.base.train.patience = 4, 2
    tune(tc, tmp_path / "t", pruner=PruneTrialOne(), **QUIET)  # the pruner is asked first after evaluation 3
    # trial 1 is pruned there, or patience stops it there first: either way it trained 3 of its 4 epochs
    assert len((tmp_path / "t/trials/0001/metrics.jsonl").read_text().splitlines()) == 3


def test_a_study_recorded_before_the_pruning_settings_resumes_only_under_its_own_rule(tiny_corpus, tmp_path):
    tc = tiny_tune(tiny_corpus)
    record = tc.to_dict()
    del record["prune_startup"], record["prune_from"]
    (tmp_path / "tune.json").write_text(json.dumps(record))
    with pytest.raises(SettingsDiffer, match="prune_startup"):
        check_study_record(tmp_path / "tune.json", tc)
    check_study_record(tmp_path / "tune.json", TuneConfig(tc.base, trials=3, prune_startup=2, prune_from="first"))


def test_the_tuning_report_says_the_pruning_rule_and_where_it_stopped_trials(tiny_corpus, tmp_path):
    from taskrel.report import tune_blocks

    tune(tiny_tune(tiny_corpus), tmp_path / "t", pruner=PruneTrialOne(), **QUIET)
    text = " ".join(str(b[1]) for b in tune_blocks(tmp_path / "t"))
    assert "pruner median (after 5 completed trials, from evaluation 1, where early stopping" in text
    first_dev = json.loads((tmp_path / "t/trials/0001/metrics.jsonl").read_text().splitlines()[0])["dev"]["ner"]["f1"]
    assert "stopped trials: 1, at evaluation 1 (1). Their best dev score so far" in text
    assert f"ranged {first_dev:.3f} to {first_dev:.3f}" in text
    # what it was judged on is recorded: its best so far, and the median of the completed trial (trial 0) there
    median = json.loads((tmp_path / "t/trials/0000/metrics.jsonl").read_text().splitlines()[0])["dev"]["ner"]["f1"]
    judged = json.loads((tmp_path / "t/trials/0001/pruned.json").read_text())
    assert judged["median"] == median
    assert f"Below the median of the completed trials by {median - first_dev:.4f} to {median - first_dev:.4f}" in text


def test_no_rerun_from_scratch_means_nothing_was_checked():
    from taskrel.pruning import _all_or_none

    assert _all_or_none(pd.Series([None, None], dtype=object)) is None  # was True: vacuous
    assert _all_or_none(pd.Series([True, None], dtype=object)) is True
    assert _all_or_none(pd.Series([True, False])) is False


def test_a_resumed_study_never_repeats_its_start_up_trials(tiny_corpus, tmp_path):
    """Found by hand: a TPE sampler rebuilt with the same seed re-drew trial 0's weights after a resume."""
    out = tmp_path / "tune"
    tune(tiny_tune(tiny_corpus, trials=2), out, **QUIET)
    tune(tiny_tune(tiny_corpus, trials=4), out, **QUIET)
    study = optuna.load_study(study_name="taskrel-tune", storage=f"sqlite:///{out / 'study.db'}")
    drawn = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(drawn) == 4 and len(set(drawn)) == 4


def test_a_killed_trial_is_failed_when_the_study_starts_again(tiny_corpus, tmp_path, monkeypatch):
    import time

    import taskrel.tune as tune_module

    monkeypatch.setattr(tune_module, "HEARTBEAT", 1)
    monkeypatch.setattr(tune_module, "GRACE", 1)
    tc = tiny_tune(tiny_corpus)
    out = tmp_path / "tune"
    out.mkdir()
    study = tune_module.open_study(tc, out, None, "taskrel-tune")
    trial = study.ask()  # taken; its process then dies after one heartbeat
    study._storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)
    again = tune_module.open_study(tc, out, None, "taskrel-tune")
    assert again.trials[trial.number].state == optuna.trial.TrialState.FAIL


def test_a_killed_trial_is_taken_over_from_its_checkpoint_with_the_same_numbers(tiny_corpus, tmp_path, monkeypatch):
    import taskrel.train as train_module

    real_train = train_module.train

    def killed_after_one_epoch(cfg, *args, callbacks=(), **kwargs):
        def kill(record):  # the process dies after trial 1's first evaluation (and its checkpoint)
            raise KeyboardInterrupt

        if cfg.out.endswith("0001") and not kwargs.get("resume"):
            callbacks = [*callbacks, kill]
        return real_train(cfg, *args, callbacks=callbacks, **kwargs)

    tc, out = tiny_tune(tiny_corpus), tmp_path / "tune"
    monkeypatch.setattr(train_module, "train", killed_after_one_epoch)
    with pytest.raises(KeyboardInterrupt):
        tune(tc, out, **QUIET)
    assert (out / "trials/0001/checkpoint/state.json").is_file()
    said = []
    best = tune(tc, out, progress=False, log=said.append)  # starts again: trial 2 takes over trial 1
    study = optuna.load_study(study_name="taskrel-tune", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"] and best["trials"]["complete"] == 3
    killed, took_over = study.trials[1], study.trials[2]
    assert took_over.params == killed.params and took_over.user_attrs["resumes"] == 1
    assert took_over.user_attrs["run_dir"] == str(out / "trials/0001") and not (out / "trials/0002").exists()
    assert sorted(took_over.intermediate_values) == [1, 2]  # the killed epoch re-reported, then the next one
    assert any("trial 1 was killed" in line for line in said)
    # the trial that took over counts with the time trial 1 took before it was killed
    assert "trial 2 dev" in said[2] and "resumed runs took before" in said[2]
    # the same numbers as a run never stopped
    unbroken = trial_config(tc, optuna.trial.FixedTrial(killed.params, 1), tmp_path / "unbroken")
    metrics = real_train(unbroken, progress=False, log=lambda *_: None, test=False)
    assert took_over.value == metrics["dev"]["ner"]["f1"]
    # taken over once only; a trial that failed by itself is never taken over
    tune(tiny_tune(tiny_corpus, trials=4), out, **QUIET)
    study = optuna.load_study(study_name="taskrel-tune", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.user_attrs.get("resumes") for t in study.trials].count(1) == 1 and len(study.trials) == 5


def test_a_killed_trial_is_taken_over_in_its_own_folder_after_the_study_moved(tiny_corpus, tmp_path, monkeypatch):
    import taskrel.train as train_module

    real_train = train_module.train

    def killed_after_one_epoch(cfg, *args, callbacks=(), **kwargs):
        def kill(record):
            raise KeyboardInterrupt

        if cfg.out.endswith("0001") and not kwargs.get("resume"):
            callbacks = [*callbacks, kill]
        return real_train(cfg, *args, callbacks=callbacks, **kwargs)

    tc, out, moved = tiny_tune(tiny_corpus, trials=2), tmp_path / "made" / "tune", tmp_path / "moved"
    monkeypatch.setattr(train_module, "train", killed_after_one_epoch)
    with pytest.raises(KeyboardInterrupt):
        tune(tc, out, **QUIET)
    shutil.move(out, moved)  # restored elsewhere, or resumed from another working folder
    best = tune(tc, moved, **QUIET)
    # the successor went on from the checkpoint in the moved folder, not in a new folder where the study was made
    assert not out.exists() and not (moved / "trials/0002").exists()
    study = optuna.load_study(study_name="taskrel-tune", storage=f"sqlite:///{moved / 'study.db'}")
    assert study.trials[2].user_attrs["resumes"] == 1 and study.trials[2].user_attrs["run_dir"] == str(
        moved / "trials/0001"
    )
    assert (moved / "trials/0001/metrics.json").is_file()
    assert len((moved / "trials/0001/metrics.jsonl").read_text().splitlines()) == 2
    # best.json names the best trial's folder where it is now (trial 0 recorded the folder it was made in)
    assert best["run_dir"].startswith(str(moved / "trials")) and Path(best["run_dir"]).is_dir()


def test_a_trial_that_fails_by_itself_is_not_taken_over(tiny_corpus, tmp_path, monkeypatch):
    import taskrel.train as train_module
    from taskrel.tune import killed_trials

    def broken(cfg, *args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(train_module, "train", broken)
    with pytest.raises(RuntimeError):
        tune(tiny_tune(tiny_corpus), tmp_path / "tune", **QUIET)
    study = optuna.load_study(study_name="taskrel-tune", storage=f"sqlite:///{tmp_path / 'tune/study.db'}")
    assert study.trials[0].user_attrs["error"] == "RuntimeError: out of memory" and killed_trials(study) == []


def test_confirm_refuses_study_options_it_would_ignore(tmp_path, capsys):
    assert main(["tune", "--confirm", "--out", str(tmp_path), "--lr", "0.1", "--trials", "5"]) == 2
    err = capsys.readouterr().err
    assert "would be ignored: --lr, --trials" in err


def test_two_workers_on_one_fresh_storage_share_the_study_without_repeating(tiny_corpus, tmp_path):
    """Two `taskrel tune` processes started together on one new folder: the schema is created once (the
    loser retries), the trials are shared out, and no two trials draw the same weights."""
    import multiprocessing as mp

    out = tmp_path / "tune"
    args = ["tune", "--data", str(tiny_corpus), "--tasks", "ner,bcls,mcls", "--epochs", "1", "--trials", "6"]
    args += ["--out", str(out), *TINY_RUN]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=main, args=(args,)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    study = optuna.load_study(study_name="taskrel-tune", storage=f"sqlite:///{out / 'study.db'}")
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 6 <= len(finished) <= 7  # each worker stops at 6 finished; one may have started its last just before
    drawn = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(drawn)) == len(drawn)
    assert len({t.user_attrs["run_dir"] for t in finished}) == len(finished)
    assert (out / "best.json").is_file()


def test_a_pruned_trial_says_so_in_its_folder_and_counts_as_over(tiny_corpus, tmp_path):
    """A trial its pruner stopped has no metrics.json: its folder says it was pruned (pruned.json), so
    ``taskrel status`` shows it as pruned, not interrupted, the estimate counts it as over (nothing to train),
    and an archive packs its records even while its checkpoint is kept for measure_pruning."""
    import tarfile

    from taskrel.archive import pack
    from taskrel.progress import FINISHED, PRUNED, counts_line, run_state
    from taskrel.rundir import RunDir
    from taskrel.tune import section_runs

    tc, out = tiny_tune(tiny_corpus), tmp_path / "tune"
    tune(tc, out, pruner=PruneTrialOne(), **QUIET)
    pruned = RunDir(out / "trials/0001").pruned
    assert {k: pruned[k] for k in ("trial", "epoch", "evaluation")} == {"trial": 1, "epoch": 1, "evaluation": 1}
    assert RunDir(out / "trials/0000").pruned is None and RunDir(out / "trials/0002").pruned is None
    runs = section_runs(tc, {}, out)
    states = [run_state(Path(c.out), Path(c.out).name) for c in runs]
    assert [s.state for s in states] == [FINISHED, PRUNED, FINISHED]
    assert "after epoch 1, below the median 0." in states[1].note and "best dev" in states[1].cells[2]
    assert "so far" not in states[1].cells[2]
    assert counts_line(states).startswith("3 runs: 2 finished") and "1 pruned" in counts_line(states)
    assert (out / "trials/0001/checkpoint").is_dir()  # kept by default, for measure_pruning
    packed = pack(out, tmp_path / "runs.tar.gz")
    with tarfile.open(tmp_path / "runs.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"tune/trials/0001/pruned.json", "tune/trials/0001/metrics.jsonl"} <= names
    assert not packed.left_out and not any("checkpoint" in n for n in names)
    # continued to its end by measure_pruning, a run the study declares: the copy is not a pruned trial
    measured = [Path(c.out) for c in section_runs(tc, {"measure_pruning": True}, out)]
    assert measured[-1] == out / "unpruned/0001" and len(measured) == 4
    measure_pruning(tc, out, continue_pruned=True, **QUIET)
    assert RunDir(out / "unpruned/0001").done and RunDir(out / "unpruned/0001").pruned is None


def test_a_tuning_study_lists_the_trial_folders_there_then_the_rest(tiny_corpus, tmp_path):
    """A killed trial's successor goes on in its folder, so trial numbers can skip a folder: the trials a study
    declares are the folders there, then the next numbers, as many as the study has trials."""
    from taskrel.tune import section_runs

    tc, out = tiny_tune(tiny_corpus, trials=4), tmp_path / "tune"
    names = lambda: [Path(c.out).name for c in section_runs(tc, {}, out)]  # noqa: E731
    assert names() == ["0000", "0001", "0002", "0003"]
    for n in ("0000", "0001", "0003"):  # trial 2 took over trial 1, trial 3 went on in its own folder
        (out / "trials" / n).mkdir(parents=True)
    assert names() == ["0000", "0001", "0003", "0004"]
    confirm = section_runs(tc, {"confirm_seeds": [2], "arms": ["single"]}, out)[-1]
    assert confirm.out == str(out / "confirm/single/seed2")


def test_the_estimate_counts_a_pruned_trial_as_over(tiny_corpus, tmp_path, capsys):
    from taskrel.estimate import estimate
    from taskrel.experiments import load_study

    study_file = tmp_path / "study.yaml"
    study_file.write_text(
        f"name: t\nkind: tune\ncorpora: ['{tiny_corpus}']\nseeds: [1]\n"
        "defaults:\n  model: {encoder: tiny, tasks: [ner, bcls]}\n"
        "  train: {epochs: 2, batch_size: 4, lr: 1.0e-3, threads: 1}\ntune: {trials: 4}\n"
    )
    study, out = load_study(study_file), tmp_path / "out"
    tune(tiny_tune(tiny_corpus), out / tiny_corpus.name, pruner=PruneTrialOne(), **QUIET)  # 3 of its 4 trials
    est = estimate(study, out, do_probe=False)
    assert (est.runs, est.done) == (4, 3)  # the pruned trial is over; one trial is left
    assert est.measured[tiny_corpus.name][0] == 3 and est.measured[tiny_corpus.name][2] == 1
    capsys.readouterr()
    assert main(["status", str(study_file), "--out", str(out), "--only", "pruned"]) == 0
    said = capsys.readouterr().out
    assert "4 runs: 2 finished (**2 not converged**), 1 pruned, 1 not started" in said  # 2 epochs: at the maximum
    rows = [line for line in said.splitlines() if line.startswith("| tiny/")]
    assert len(rows) == 1 and rows[0].startswith(
        "| tiny/trials/0001 | ner | pruned (by its tuning study after epoch 1, below the median 0."
    )


def test_tuning_studies_side_by_side_largest_first_in_own_processes(tiny_corpus, tmp_path, monkeypatch, capsys):
    """`taskrel run --side-by-side 2`: the sections of two tuning studies two at a time, the larger training set
    first, each logging to its own file, with the trials a study alone would have found; a study that fails does
    not stop the other."""
    big = tmp_path / "big"
    shutil.copytree(tiny_corpus, big)
    (big / "train.tsv").write_text((tiny_corpus / "train.tsv").read_text() * 2)
    study = (
        "name: {name}\nkind: tune\ncorpora: [{corpora}]\nseeds: [1]\n"
        "defaults:\n  model: {{encoder: tiny, tasks: [ner, bcls]}}\n"
        "  train: {{epochs: 1, batch_size: 4, lr: 1.0e-3, threads: 1}}\ntune: {{trials: 2, seed: 3}}\n"
    )
    a = tmp_path / "a.yaml"
    a.write_text(study.format(name="a", corpora=f"'{tiny_corpus}', '{big}'"))
    b = tmp_path / "b.yaml"
    broken = tmp_path / "broken"
    shutil.copytree(tiny_corpus, broken)
    (broken / "train.tsv").write_text("word\tQ-FOO\n")
    b.write_text(study.format(name="b", corpora=f"'{broken}'"))
    alone = tmp_path / "alone"
    alone.mkdir()
    monkeypatch.chdir(alone)
    assert main(["run", str(a), "--no-progress"]) == 0
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["run", str(a), str(b), "--side-by-side", "2", "--no-progress", "--report-root", "rep"]) == 2
    out, err = capsys.readouterr()
    assert "3 sections of 2 studies, 2 at a time, largest first: a on big, a on tiny, b on broken" in out
    assert "study results in runs/a" in out and (tmp_path / "rep/a").is_dir() and not (tmp_path / "rep/b").exists()
    assert "error in study b" in err and "1 of 2 studies failed: b" in err
    for corpus in ("tiny", "big"):
        best = json.loads((tmp_path / "runs/a" / corpus / "best.json").read_text())
        assert best == json.loads((alone / "runs/a" / corpus / "best.json").read_text())
        assert "study a: tune on" in (tmp_path / "runs/a" / f"{corpus}.log").read_text()
    assert "train.tsv:1: tag 'Q-FOO'" in (tmp_path / "runs/b/broken.log").read_text()


def test_a_study_stopped_and_resumed_draws_the_trials_it_would_have_drawn_in_one_go(tiny_corpus, tmp_path):
    """The sampler's randomness for trial N comes from the study's seed and N: a study resumed in another
    process (here: another sampler object) draws what it would have drawn uninterrupted, and its file's seed
    reproduces it. (Seeded by the process as well, as before, the two differed.)"""

    def drawn(out):
        study = optuna.load_study(study_name="taskrel-tune", storage=f"sqlite:///{out / 'study.db'}")
        return [t.params for t in study.trials]

    tune(tiny_tune(tiny_corpus, trials=4), tmp_path / "once", **QUIET)
    tune(tiny_tune(tiny_corpus, trials=2), tmp_path / "twice", **QUIET)
    tune(tiny_tune(tiny_corpus, trials=4), tmp_path / "twice", **QUIET)
    assert drawn(tmp_path / "once") == drawn(tmp_path / "twice")
    assert len({tuple(sorted(p.items())) for p in drawn(tmp_path / "once")}) == 4


def _fake_trials(folder, tc, curves):
    """Trial folders that ran to the end with these dev F1 curves (one value per epoch), as the trainer writes."""
    for number, curve in enumerate(curves):
        run = Path(folder) / "trials" / f"{number:04d}"
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps(replace(tc.base, out=str(run)).to_dict()))
        records = [
            {"epoch": e, "eval": e, "epochs_done": float(e), "dev": {"ner": {"f1": v}}} for e, v in enumerate(curve, 1)
        ]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (run / "metrics.json").write_text(json.dumps({"main_task": "ner", "dev": {"ner": {"f1": max(curve)}}}))


def test_the_pruning_check_replays_the_study_pruner_on_the_trials_that_ran_to_the_end(tiny_corpus, tmp_path):
    from taskrel.pruning import replay_completed
    from taskrel.report import pruning_check_blocks

    tc = tiny_tune(tiny_corpus, trials=8)
    tc.base.train.epochs, tc.base.train.patience, tc.base.train.min_epochs = 8, 2, 1  # asked from evaluation 3 to 7
    steady = [[0.50 + 0.03 * e for e in range(8)]] * 5  # 0.56 at evaluation 3: equal to the median is kept
    slow = [0.30 + 0.05 * e for e in range(8)]  # best so far 0.40 at evaluation 3: below the others' median
    early = [0.90, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10]  # below at every asked evaluation, but its best is not
    late = [0.55, 0.58, 0.61, 0.64, 0.67, 0.20, 0.90, 0.90]  # below only where its best so far is not
    _fake_trials(tmp_path, tc, steady + [slow, early, late])
    replay = replay_completed(tc, tmp_path).set_index("trial")
    assert list(replay["references"]) == [7] * 8
    assert replay.loc[5, "pruned_at"] == 3 and replay.loc[5, "best_so_far"] == pytest.approx(0.40)
    assert replay["pruned_at"].drop(5).isna().all()  # the pruner judges the best so far, from evaluation 3 on
    # the study's pruner itself, not a copy of its rule: at evaluation 2 it is not asked, so nothing is stopped
    tc.base.train.patience = 3
    assert replay_completed(tc, tmp_path).set_index("trial").loc[5, "pruned_at"] == 4
    text = pruning_check_blocks(tc, tmp_path)[0][1]
    assert (
        "it would have stopped 1 of the 8 trials that ran to the end (trials/0005 at evaluation 4, final dev 0.6500)"
        in text
    )
    assert "Best dev of all completed trials 0.9000 (trials/0006); of those it keeps 0.9000." in text

    few = tmp_path / "few"
    _fake_trials(few, tc, steady)  # 4 references each: the pruner acts from 5 completed trials
    assert replay_completed(tc, few)["pruned_at"].isna().all()
    assert "too few to replay the pruner" in pruning_check_blocks(tc, few)[0][1]
    assert replay_completed(TuneConfig(tc.base, pruner="none"), tmp_path).empty


def test_a_margin_lets_a_trial_within_the_noise_of_the_median_go_on(tiny_corpus, tmp_path):
    from taskrel.pruning import margin_replay, replay_completed
    from taskrel.report import pruning_check_blocks
    from taskrel.tune import MarginPruner, pruning_rule

    tc = tiny_tune(tiny_corpus, trials=8)
    tc.base.train.epochs, tc.base.train.patience, tc.base.train.min_epochs = 8, 2, 1  # asked from evaluation 3 to 7
    steady = [[0.50 + 0.03 * e for e in range(8)]] * 5
    slow = [0.30 + 0.05 * e for e in range(8)]  # below the median by 0.16 at evaluation 3, 0.08 at evaluation 7
    _fake_trials(tmp_path, tc, steady + [slow])
    assert replay_completed(tc, tmp_path).set_index("trial").loc[5, "pruned_at"] == 3
    assert replay_completed(replace(tc, prune_margin=0.15), tmp_path).set_index("trial").loc[5, "pruned_at"] == 3
    assert replay_completed(replace(tc, prune_margin=0.17), tmp_path)["pruned_at"].isna().all()
    margins = margin_replay(tc, tmp_path, margins=(0.15, 0.17))  # the study's own margin (0) first
    assert list(margins["margin"]) == [0, 0.15, 0.17] and list(margins["stopped"]) == [1, 1, 0]
    assert list(margins["evaluations_saved"]) == [5, 5, 0] and (margins["evaluations"] == 48).all()
    assert margins["keeps_best"].all() and list(margins["kept_best"]) == pytest.approx([0.71] * 3)
    table = pruning_check_blocks(tc, tmp_path)[-1][1]
    assert list(table["margin"]) == ["0 (this study)", "0.01", "0.02", "0.03"]
    assert list(table["evaluations it saves on them"]) == ["5 of 48"] * 4

    within = replace(tc, prune_margin=0.15)
    pruner = make_pruner(within)
    assert isinstance(pruner, MarginPruner) and not isinstance(make_pruner(tc), MarginPruner)
    study = optuna.create_study(direction="maximize")
    for curve in steady:
        study.add_trial(optuna.trial.create_trial(value=max(curve), intermediate_values=dict(enumerate(curve, 1))))
    asked = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, intermediate_values={1: 0.3, 2: 0.35})
    assert not pruner.prune(study, asked)  # evaluation 2: before the first prunable one, margin or not
    for best, pruned in ((0.42, False), (0.40, True)):  # the median at evaluation 3 is 0.56: 0.41 is the line
        asked = optuna.trial.create_trial(
            state=optuna.trial.TrialState.RUNNING, intermediate_values={1: 0.3, 2: 0.35, 3: best}
        )
        assert pruner.prune(study, asked) is pruned and make_pruner(tc).prune(study, asked)
    diverged = optuna.trial.create_trial(
        state=optuna.trial.TrialState.RUNNING, intermediate_values={1: float("nan"), 2: float("nan"), 3: float("nan")}
    )
    assert pruner.prune(study, diverged)  # a diverged trial is stopped, as the median pruner stops it
    assert "only more than 0.15 below the median" in pruning_rule(within)
    with pytest.raises(ConfigError, match="prune_margin"):
        replace(tc, prune_margin=-0.01)
    with pytest.raises(ConfigError, match="median pruner only"):
        replace(tc, pruner="hyperband", prune_margin=0.01)


def test_seed_noise_is_the_spread_of_the_best_so_far_across_seeds(tiny_corpus, tmp_path):
    from taskrel.pruning import seed_noise

    tc = tiny_tune(tiny_corpus)
    _fake_trials(tmp_path, tc, [[0.1, 0.5, 0.2, 0.9], [0.1, 0.3, 0.4, 0.4], [0.2, 0.7]])
    runs = sorted((tmp_path / "trials").iterdir())
    assert seed_noise(runs, 3) == pytest.approx(pd.Series([0.5, 0.4, 0.7]).std())  # the best by evaluation 3
    assert seed_noise(runs, 1) == pytest.approx(pd.Series([0.1, 0.1, 0.2]).std())
    with pytest.raises(ValueError, match="at least 2 runs"):
        seed_noise(runs[:1], 3)


def test_tuned_settings_are_never_scored_at_the_seed_the_trials_trained_with(tiny_corpus, tmp_path):
    from taskrel.confirm import check_seeds, confirm, default_seeds

    tc = tiny_tune(tiny_corpus)  # its trials train with seed 1
    with pytest.raises(ConfigError, match=r"seeds \[1, 2\] include seed 1, the seed every tuning trial"):
        check_seeds(tc, [1, 2])
    check_seeds(tc, [2, 3])
    assert default_seeds(tc) == [2, 3, 4]
    tc.base.train.seed = 3
    assert default_seeds(tc) == [1, 2, 4]
    with pytest.raises(ConfigError, match="include seed 3"):
        confirm(tc, {}, tmp_path, seeds=[3], **QUIET)  # refused before anything trains
    assert not (tmp_path / "confirm").exists()


def test_the_trial_log_says_which_dev_a_score_is_on():
    """With dev_max_sentences the pruner judges the per-epoch evaluations on the dev subset, and a trial's score
    is its selected epoch's on the whole dev split: one log line holds both, each named."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from taskrel.tune import _trial_logger

    class Pace:
        def line(self, run_dir):
            return "pace"

    study = optuna.create_study(direction="maximize")
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.8110, intermediate_values={6: 0.8196}))
    pruned = create_trial(
        state=TrialState.PRUNED, intermediate_values={6: 0.8119}, user_attrs={"pruned_median": 0.8131}
    )
    study.add_trial(pruned)
    said = []
    _trial_logger("s", Pace(), said.append, dev_subset=1000)(study, study.trials[1])
    assert "best so far on the 1,000-sentence dev subset 0.8119, median of the completed trials there 0.8131" in said[0]
    assert "best dev (whole dev) 0.8110 (trial 0)" in said[0]
    _trial_logger("s", Pace(), said.append)(study, study.trials[1])  # no subset: one dev, nothing to name
    assert "(best so far 0.8119, median" in said[1] and "best dev 0.8110" in said[1]


def test_the_trial_log_names_no_subset_where_the_cap_holds_the_whole_dev(tmp_path):
    """NCBI-disease's dev split (923 sentences) is smaller than a 1,000-sentence cap: the per-epoch dev is the
    whole dev, and the log says nothing of a subset; at the cap it does."""
    import json

    import optuna
    from optuna.trial import TrialState, create_trial

    from taskrel.tune import _trial_logger

    class Pace:
        def line(self, run_dir):
            return "pace"

    said = []
    for n, run in ((923, "small"), (1000, "capped")):
        (tmp_path / run).mkdir()
        (tmp_path / run / "config.json").write_text(json.dumps({"resolved": {"dev_sentences": n}}))
        study = optuna.create_study(direction="maximize")
        study.add_trial(
            create_trial(state=TrialState.COMPLETE, value=0.74, user_attrs={"run_dir": str(tmp_path / run)})
        )
        _trial_logger("s", Pace(), said.append, dev_subset=1000)(study, study.trials[0])
    assert "best dev 0.7400" in said[0] and "whole dev" not in said[0]
    assert "best dev (whole dev) 0.7400" in said[1]
