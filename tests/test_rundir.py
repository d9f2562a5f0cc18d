import json
import math

import pytest

from taskrel.rundir import RunDir, aulc, write_json
from taskrel.tasks import TaskSpec
from taskrel.train import train

from helpers import tiny_config


def test_a_run_is_read_through_one_place(tiny_corpus, tmp_path):
    cfg = tiny_config(tiny_corpus, tmp_path / "run")
    metrics = train(cfg, progress=False, log=lambda *_: None)
    run = RunDir(cfg.out)
    assert run.done and run.main == "ner" and run.metric() == "f1" and run.metric("bcls") == "accuracy"
    assert run.score("test") == metrics["test"]["ner"]["f1"]
    assert run.score("dev", "mcls") == metrics["dev"]["mcls"]["accuracy"]
    assert math.isnan(run.score("test", "pos"))  # a task the run never scored
    assert run.best_epoch == metrics["best_epoch"] and run.converged == metrics["converged"]
    assert run.run_config.to_dict()["model"] == cfg.to_dict()["model"]
    assert len(run.records) == 2 and run.epochs_run == 2
    assert run.seconds > run.train_seconds > 0
    curve = run.dev_curve()
    assert [x for x, _, _ in curve] == [1, 2] and sum(sel for _, _, sel in curve) >= 1
    assert run.aulc() == pytest.approx(aulc([(x, y) for x, y, _ in curve]))
    assert run.predictions.is_file() and (run.model / "taskrel.json").is_file()


def test_an_unfinished_run_is_not_done(tmp_path):
    run = RunDir(tmp_path)
    assert not run.done and run.records == []
    write_json(tmp_path / "config.json", {"model": {"tasks": ["BC2GM:bcls", "ner"]}})
    assert run.main == "BC2GM:bcls" and run.metric() == "accuracy"


def test_write_json_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    write_json(path, {"a": 1})

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", fail)
    with pytest.raises(OSError):
        write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}  # the old file is whole


@pytest.mark.parametrize(
    ("text", "corpus", "task", "key", "label"),
    [
        ("ner", None, "ner", "ner", "ner"),
        ("BC2GM:mtcls", "BC2GM", "mtcls", "BC2GM:mtcls", "BC2GM.mtcls"),
        ("../data/BC5CDR.v2:bcls", "../data/BC5CDR.v2", "bcls", "___data_BC5CDR_v2:bcls", "BC5CDR.v2.bcls"),
    ],
)
def test_task_specs(text, corpus, task, key, label):
    spec = TaskSpec.parse(text)
    assert (spec.corpus, spec.task, spec.key, spec.label, str(spec)) == (corpus, task, key, label, text)
    assert TaskSpec.parse(spec) is spec
    assert spec.canonical("/x/NCBI-disease") == ((corpus and corpus.split("/")[-1]) or "NCBI-disease", task)
    assert spec.main_metric == ("accuracy" if task == "bcls" else "f1")


def test_task_spec_errors():
    with pytest.raises(ValueError, match="names no corpus"):
        TaskSpec.parse("ner").corpus_key(None)
    with pytest.raises(ValueError, match="unknown task 'pos'"):
        TaskSpec.parse("BC2GM:pos").build(["O", "B-X", "I-X"])


def test_every_run_keeps_its_log_and_the_cli_sets_the_verbosity(tiny_corpus, tmp_path, capsys):
    from taskrel.cli import main

    from conftest import TINY_RUN

    args = ["train", "--data", str(tiny_corpus), "--epochs", "2", *TINY_RUN]
    assert main([*args, "--out", str(tmp_path / "quiet"), "-q"]) == 0
    assert "epoch 1 step" not in capsys.readouterr().err
    log = (tmp_path / "quiet" / "train.log").read_text()
    assert "taskrel " in log and "epoch 1 step" in log and "epoch 2 step" in log and "test ner f1" in log
    assert main([*args, "--out", str(tmp_path / "loud")]) == 0
    assert "epoch 1 step" in capsys.readouterr().err


def test_a_run_is_checked_against_settings_and_threads_left_to_the_runner_match_any(tmp_path):
    import dataclasses

    from taskrel.config import RunConfig
    from taskrel.rundir import RunDir, SettingsDiffer, write_json

    cfg = RunConfig.from_dict({"model": {"encoder": "tiny"}, "train": {"threads": 2, "lr": 1.0e-3}})
    write_json(tmp_path / "config.json", cfg.to_dict())
    run = RunDir(tmp_path)
    run.check(cfg)
    run.check(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=None)))  # the runner chose 2
    with pytest.raises(SettingsDiffer, match=r"train.threads: 2 -> 3"):
        run.check(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=3)))
    with pytest.raises(SettingsDiffer, match=r"train.lr: 0.001 -> 0.002"):
        run.check(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=None, lr=2.0e-3)))
