import json

import pytest

from taskrel.cli import main
from taskrel.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig
from taskrel.train import train

from conftest import TINY_RUN
from helpers import read_jsonl, tiny_config


def test_train_evaluate_predict_end_to_end(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_corpus), "--out", str(run), "--epochs", "2", *TINY_RUN]) == 0
    assert "test:" in capsys.readouterr().out

    config = json.loads((run / "config.json").read_text())
    assert config["command"] and config["model"]["tasks"] == ["ner", "mtcls", "bcls", "mcls"]
    assert config["train"]["weights"] == {"ner": 0.8, "mtcls": 0.1, "bcls": 0.05, "mcls": 0.05}
    assert config["model"]["pooling"] == "max"
    RunConfig.from_dict(config)  # re-readable

    epochs = read_jsonl(run / "metrics.jsonl")
    assert [e["epoch"] for e in epochs] == [1, 2]
    for e in epochs:
        assert set(e["loss"]) == set(e["dev"]) == {"ner", "mtcls", "bcls", "mcls"}
        assert e["sentences_per_s"] > 0 and e["wordpieces_per_s"] > e["sentences_per_s"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["main_task"] == "ner" and metrics["best_epoch"] in (1, 2)
    assert set(metrics["test"]["ner"]) >= {"precision", "recall", "f1", "per_type"}
    assert set(metrics["test"]["mcls"]) >= {"accuracy", "macro_f1"}
    best = epochs[metrics["best_epoch"] - 1]
    assert best["selected"] and metrics["dev"]["ner"] == best["dev"]["ner"]  # the selected model is the one reloaded
    assert not (run / "checkpoint").exists()
    predictions = read_jsonl(run / "test_predictions.jsonl")
    assert len(predictions) == 3 and [len(p["ner"]) for p in predictions] == [7, 6, 6]
    assert predictions[0]["bcls"] in ("0", "1")

    assert (
        main(
            ["evaluate", "--model", str(run / "model"), "--data", str(tiny_corpus), "--split", "test", "--no-progress"]
        )
        == 0
    )
    evaluated = json.loads((run / "eval_tiny_test.json").read_text())
    assert evaluated["scores"] == metrics["test"]

    def predict(src, dst):
        return main(
            ["predict", "--model", str(run / "model"), "--input", str(src), "--output", str(dst), "--no-progress"]
        )

    text = tmp_path / "in.txt"
    text.write_text("Breast cancer (HNPCC) was seen.\n\nNo disease here .\n")
    assert predict(text, tmp_path / "o.jsonl") == 0
    lines = read_jsonl(tmp_path / "o.jsonl")
    assert len(lines) == 3 and lines[1]["tokens"] == []
    first = lines[0]
    assert first["tokens"] == ["Breast", "cancer", "(", "HNPCC", ")", "was", "seen", "."]
    assert len(first["ner"]) == 8 and first["bcls"] in ("0", "1") and first["mcls"] in ("0", "1", "2", "3")
    for ent in first["entities"]:
        assert first["text"][ent["start"] : ent["end"]] == ent["text"] and ent["type"] == "Disease"

    out = tmp_path / "o.tsv"
    assert predict(tiny_corpus / "test.tsv", out) == 0
    original = (tiny_corpus / "test.tsv").read_text().splitlines()
    tagged = out.read_text().splitlines()
    assert len(tagged) == len(original)
    for a, b in zip(original, tagged):
        assert (a == b == "") or (b.startswith(a + "\t") and b.split("\t")[-1] in ("O", "B-Disease", "I-Disease"))


def test_same_seed_same_numbers(tiny_corpus, tmp_path):
    a = train(tiny_config(tiny_corpus, tmp_path / "a"), progress=False, log=lambda *_: None)
    b = train(tiny_config(tiny_corpus, tmp_path / "b"), progress=False, log=lambda *_: None)
    assert a == b
    la, lb = read_jsonl(tmp_path / "a" / "metrics.jsonl"), read_jsonl(tmp_path / "b" / "metrics.jsonl")
    assert [e["loss"] for e in la] == [e["loss"] for e in lb]


def test_resume_after_a_kill_gives_the_same_numbers(tiny_corpus, tmp_path, monkeypatch):
    full = train(tiny_config(tiny_corpus, tmp_path / "full", epochs=3), progress=False, log=lambda *_: None)

    from helpers import Killed, kill_after

    cfg = tiny_config(tiny_corpus, tmp_path / "resumed", epochs=3)
    with pytest.raises(Killed):
        train(cfg, callbacks=[kill_after(2)], progress=False, log=lambda *_: None)
    assert (tmp_path / "resumed" / "checkpoint" / "state.json").exists()
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    with pytest.raises(ConfigError, match="pass --resume"):
        train(cfg, progress=False, log=lambda *_: None)
    command = json.loads((tmp_path / "resumed" / "config.json").read_text())["command"]
    monkeypatch.setattr("sys.argv", ["taskrel", "train", "--resume", "--out", cfg.out])
    resumed = train(cfg, resume=True, progress=False, log=lambda *_: None)
    assert resumed == full
    assert json.loads((tmp_path / "resumed" / "config.json").read_text())["command"] == command
    losses = lambda run: [e["loss"] for e in read_jsonl(tmp_path / run / "metrics.jsonl")]  # noqa: E731
    assert losses("resumed") == losses("full")
    # a finished run is not retrained
    assert train(cfg, resume=True, progress=False, log=lambda *_: None) == full


def test_resume_through_the_cli(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(tiny_corpus), "--out", str(run), "--epochs", "1", *TINY_RUN]
    assert main(args) == 0
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert main(args) == 2  # the run exists and --resume was not given


@pytest.mark.parametrize("strategy", ["joint", "alternating"])
def test_strategies(tiny_corpus, tmp_path, strategy):
    metrics = train(
        tiny_config(tiny_corpus, tmp_path / "r", epochs=1, strategy=strategy), progress=False, log=lambda *_: None
    )
    epoch = read_jsonl(tmp_path / "r" / "metrics.jsonl")[0]
    assert all(v > 0 for v in epoch["loss"].values())
    assert set(metrics["test"]) == {"ner", "mtcls", "bcls", "mcls"}


def test_schedules_joint_alternating_and_one_corpus_a_batch(tiny_corpus):
    from types import SimpleNamespace

    from taskrel.train import epoch_schedule

    four = {"ner": 0, "mtcls": 0, "bcls": 0, "mcls": 0}
    one = {"A": SimpleNamespace(tasks=four)}
    lengths = {"A": [5, 6, 7, 8, 9, 10, 11, 12]}
    steps = epoch_schedule(tiny_config(tiny_corpus, "unused", strategy="alternating"), one, lengths, epoch=1)
    assert len(steps) == 4 * 2  # 4 tasks x 2 batches of 4
    assert sorted(t[0] for _, t, _ in steps) == sorted(["ner", "mtcls", "bcls", "mcls"] * 2)
    joint = epoch_schedule(tiny_config(tiny_corpus, "unused"), one, lengths, epoch=1)
    assert all(t == list(four) for _, t, _ in joint) and sorted(i for _, _, b in joint for i in b) == list(range(8))

    two = {"A": SimpleNamespace(tasks={"ner": 0}), "B": SimpleNamespace(tasks={"B:ner": 0, "B:bcls": 0})}
    lengths = {"A": [3] * 8, "B": [4] * 12}
    joint = epoch_schedule(tiny_config(tiny_corpus, "unused"), two, lengths, epoch=1)
    assert sorted(k for k, _, _ in joint) == ["A", "A", "B", "B", "B"]  # every batch from one corpus
    assert all(t == list(two[k].tasks) for k, t, _ in joint)
    assert sorted(i for k, _, b in joint if k == "B" for i in b) == list(range(12))
    assert epoch_schedule(tiny_config(tiny_corpus, "unused"), two, lengths, epoch=2) != joint  # reshuffled


def test_merge_dev_keeps_the_last_epoch_and_never_scores_dev(tiny_corpus, tmp_path):
    cfg = RunConfig(
        DataConfig(str(tiny_corpus), merge_dev=True),
        ModelConfig("tiny", ["ner"]),
        TrainConfig(epochs=2, batch_size=4, threads=1),
        str(tmp_path / "r"),
    )
    metrics = train(cfg, progress=False, log=lambda *_: None)
    assert metrics["best_epoch"] == 2 and metrics["dev"] is None
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["resolved"]["train_sentences"] == 8 + 3 and config["train"]["weights"] == {"ner": 1.0}


def test_single_task_crf_and_mean_pooling_run(tiny_corpus, tmp_path):
    assert (
        main(
            [
                "train",
                "--data",
                str(tiny_corpus),
                "--out",
                str(tmp_path / "r"),
                "--epochs",
                "1",
                "--tasks",
                "ner,bcls",
                "--weights",
                "1,0.5",
                "--crf",
                "--pooling",
                "mean",
                *TINY_RUN,
            ]
        )
        == 0
    )
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["train"]["weights"] == {"ner": 1.0, "bcls": 0.5} and config["model"]["crf"] is True


def test_train_fraction_subsamples(tiny_corpus, tmp_path):
    cfg = RunConfig(
        DataConfig(str(tiny_corpus), train_fraction=0.5),
        ModelConfig("tiny"),
        TrainConfig(epochs=1, threads=1),
        str(tmp_path / "r"),
    )
    train(cfg, progress=False, log=lambda *_: None)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["resolved"]["train_sentences"] == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tasks", "ner,pos"], "unknown task"),
        (["--weights", "1,2"], "2 weights given for 4 tasks"),
        (["--pooling", "sum"], None),
        (["--train-fraction", "0"], "train_fraction must be in"),
    ],
)
def test_bad_arguments_are_clear(tiny_corpus, tmp_path, capsys, args, message):
    argv = ["train", "--data", str(tiny_corpus), "--out", str(tmp_path / "r"), *TINY_RUN, *args]
    if message is None:
        with pytest.raises(SystemExit):
            main(argv)
        return
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_corpus_is_reported_with_file_and_line(tmp_path, capsys):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "train.tsv").write_text("a\tO\nb\tQ-X\n")
    (root / "devel.tsv").write_text("a\tO\n")
    (root / "test.tsv").write_text("a\tO\n")
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "r"), *TINY_RUN]) == 2
    assert f"{root / 'train.tsv'}:2: tag 'Q-X' has unknown prefix 'Q'" in capsys.readouterr().err


def test_predict_input_errors_name_the_file(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_corpus), "--out", str(run), "--epochs", "1", *TINY_RUN]) == 0
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\ncaf\xe9 au lait\n")
    model = ["--model", str(run / "model"), "--output", str(tmp_path / "o"), "--no-progress"]
    assert main(["predict", "--input", str(bad), *model]) == 2
    assert f"{bad}:2: byte b'\\xe9'" in capsys.readouterr().err
    assert main(["predict", "--input", str(tmp_path / "missing.txt"), *model]) == 2
    assert "missing.txt: no such file" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "nomodel"), "--data", str(tiny_corpus), "--no-progress"]) == 2
    assert "not a taskrel model folder" in capsys.readouterr().err


def test_cross_corpus_tasks_train_on_both_corpora(tiny_corpus, chem_corpus, tmp_path):
    run = tmp_path / "r"
    args = ["train", "--data", str(tiny_corpus), "--tasks", f"ner,{chem_corpus}:ner,{chem_corpus}:bcls"]
    assert main([*args, "--out", str(run), "--epochs", "2", *TINY_RUN]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    chem_ner = f"{chem_corpus}:ner"
    assert set(metrics["test"]) == {"ner", chem_ner, f"{chem_corpus}:bcls"}
    assert metrics["test"]["ner"]["support"] == 2 and metrics["test"][chem_ner]["support"] == 1  # each its own test
    assert set(metrics["test"][chem_ner]["per_type"]) <= {"Chemical"}
    assert len(read_jsonl(run / "test_predictions.jsonl")) == 3  # the main task's corpus
    assert len(read_jsonl(run / "test_predictions-chem.jsonl")) == 2
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["train_sentences"] == 8 + 4
    assert config["resolved"]["ner_labels"][str(chem_corpus)] == ["O", "B-Chemical", "I-Chemical"]
    epoch = read_jsonl(run / "metrics.jsonl")[0]
    assert set(epoch["loss"]) == set(epoch["dev"]) == set(metrics["test"])

    from taskrel.model import load

    model, _, meta = load(run / "model")
    assert model.tasks[chem_ner].labels == ("O", "B-Chemical", "I-Chemical")
    assert model.tasks["ner"].labels == ("O", "B-Disease", "I-Disease")
    # evaluate scores the main task's corpus
    assert main(["evaluate", "--model", str(run / "model"), "--data", str(tiny_corpus), "--no-progress"]) == 0
    assert set(json.loads((run / "eval_tiny_test.json").read_text())["scores"]) == {"ner"}


def test_tasks_without_a_corpus_need_data(tmp_path, capsys):
    assert main(["train", "--tasks", "ner", "--out", str(tmp_path / "r"), *TINY_RUN]) == 2
    assert "--data is required" in capsys.readouterr().err


def test_a_run_folder_has_one_writer_at_a_time(tiny_corpus, tmp_path):
    from taskrel.locks import RunLock, RunLocked

    cfg = tiny_config(tiny_corpus, tmp_path / "r", epochs=1)
    (tmp_path / "r").mkdir()
    with RunLock(tmp_path / "r"):  # another writer holds the folder
        with pytest.raises(RunLocked, match="another process is writing"):
            train(cfg, progress=False, log=lambda *_: None)
        assert not (tmp_path / "r" / "metrics.jsonl").exists()  # nothing was written
    metrics = train(cfg, progress=False, log=lambda *_: None)  # released: the run goes ahead
    assert metrics["steps"] == 2


def test_the_lock_is_held_by_another_process(tiny_corpus, tmp_path):
    import multiprocessing as mp

    from taskrel.locks import RunLock, RunLocked

    (tmp_path / "r").mkdir()
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path / "r"), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(RunLocked):
            with RunLock(tmp_path / "r"):
                pass
    finally:
        release.set()
        holder.join(60)
    with RunLock(tmp_path / "r"):  # free once its holder is gone
        pass


def _hold_lock(folder, ready, release):
    from taskrel.locks import RunLock

    with RunLock(folder):
        ready.set()
        release.wait(60)


def test_a_run_is_reused_only_under_its_own_settings(tiny_corpus, tmp_path):
    from taskrel.rundir import SettingsDiffer

    cfg = tiny_config(tiny_corpus, tmp_path / "r", epochs=1)
    first = train(cfg, progress=False, log=lambda *_: None)
    assert train(cfg, resume=True, progress=False, log=lambda *_: None) == first  # same settings: reused
    edited = tiny_config(tiny_corpus, tmp_path / "r", epochs=3, lr=5e-4)
    with pytest.raises(SettingsDiffer, match=r"train.epochs: 1 -> 3.*train.lr: 0.001 -> 0.0005"):
        train(edited, resume=True, progress=False, log=lambda *_: None)
    import shutil

    shutil.copytree(tmp_path / "r", tmp_path / "moved")  # where the folder is, is not a setting
    moved = tiny_config(tiny_corpus, tmp_path / "moved", epochs=1)
    assert train(moved, resume=True, progress=False, log=lambda *_: None) == first


BAD_INPUTS = [
    (["train", "--threads", "-1"], "positive integer"),
    (["train", "--device", "cuda"], "cuda"),
    (["train", "--encoder", "/no/such/encoder"], "encoder '/no/such/encoder'"),
    (["train", "--max-length", "100000"], "positions"),
    (["grid", "--seeds", "a,b"], "comma-separated integers"),
    (["grid", "--storage", "sqlite:////no/such/dir/q.db"], "does not exist"),
    (["tune", "--timeout", "-5"], "positive number"),
    (["tune", "--merge-dev"], "merge_dev"),
    (["affinity", "--every", "0"], "positive integer"),
    (["train", "--train-fraction", "2"], "train_fraction must be in (0, 1]"),
    (["train", "--weights", "1,2"], "2 weights given for 4 tasks"),
    (["train", "--batch-size", "0"], "batch sizes must be positive"),
    (["train", "--weights", "inf,1,1,1"], "finite"),
    (["train", "--clip", "per-task", "--weighting", "pcgrad"], "per-task"),
    (["grid", "--tasks", "ner"], "at least two tasks"),
    (["grid", "--noise-threads", "0"], "positive integer"),
    (["tune", "--pruner", "nope"], "invalid choice"),
    (["embed", "--tasks", "ner,foo"], "unknown task"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_bad_inputs_are_clear_errors_and_never_block_the_rerun(tiny_corpus, tmp_path, capsys, args, message):
    import torch

    if args[1:3] == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("a GPU is here")
    command, rest = args[0], args[1:]
    base = ["--data", str(tiny_corpus), "--out", str(tmp_path / "r"), "--encoder", "tiny", "--epochs", "1"]
    try:
        rc = main([command, *base, "--no-progress", *rest])
    except SystemExit as e:  # argparse's own errors: usage, message, status 2
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if command == "train":  # the corrected command runs in the same folder
        assert main(["train", *base, *TINY_RUN]) == 0


def test_out_that_is_a_file_is_a_clear_error(tiny_corpus, tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert main(["train", "--data", str(tiny_corpus), "--out", str(tmp_path / "f"), *TINY_RUN]) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--tasks", "ner,foo"], ["--mcls-cap", "0"]])
def test_bad_stats_arguments_are_clear_errors(tiny_corpus, capsys, args):
    assert main(["stats", "--data", str(tiny_corpus), *args]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_moved_run_folder_resumes_where_it_is(tiny_corpus, tmp_path, monkeypatch):
    import shutil

    class Killed(Exception):
        pass

    def kill(record):
        raise Killed

    with pytest.raises(Killed):
        train(tiny_config(tiny_corpus, tmp_path / "old", epochs=2), callbacks=[kill], progress=False, log=print)
    shutil.move(tmp_path / "old", tmp_path / "new")
    assert main(["train", "--resume", "--out", str(tmp_path / "new"), "--no-progress"]) == 0
    assert (tmp_path / "new" / "metrics.json").is_file() and not (tmp_path / "old").exists()


def test_a_full_disk_keeps_the_last_checkpoint_and_the_run_resumes(tiny_corpus, tmp_path, monkeypatch):
    import errno

    import torch

    from taskrel.train import DiskFull

    full = train(tiny_config(tiny_corpus, tmp_path / "full", epochs=3), progress=False, log=lambda *_: None)
    cfg = tiny_config(tiny_corpus, tmp_path / "r", epochs=3)
    real_save, calls = torch.save, []

    def save(obj, path, *a, **k):  # the third checkpoint (after epoch 3) hits a full disk
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr("taskrel.train.torch.save", save)
    with pytest.raises(DiskFull, match="disk is full"):
        train(cfg, progress=False, log=lambda *_: None)
    state = json.loads((tmp_path / "r" / "checkpoint" / "state.json").read_text())
    assert state["evals"] == 2 and not (tmp_path / "r" / "checkpoint.tmp").exists()
    monkeypatch.setattr("taskrel.train.torch.save", real_save)
    assert train(cfg, resume=True, progress=False, log=lambda *_: None) == full


def test_a_kill_between_the_renames_of_a_checkpoint_loses_nothing(tiny_corpus, tmp_path):
    from helpers import Killed, kill_after

    cfg = tiny_config(tiny_corpus, tmp_path / "r", epochs=2)
    full = train(tiny_config(tiny_corpus, tmp_path / "full", epochs=2), progress=False, log=lambda *_: None)
    with pytest.raises(Killed):
        train(cfg, callbacks=[kill_after(1)], progress=False, log=lambda *_: None)
    run = tmp_path / "r"
    (run / "checkpoint").rename(run / "checkpoint.old")  # as if killed after the first rename of _swap_in
    assert train(cfg, resume=True, progress=False, log=lambda *_: None) == full


def test_an_unreadable_corpus_file_is_named(tiny_corpus, tmp_path, capsys, monkeypatch):
    """(As root, chmod cannot make a file unreadable: the read itself fails here.)"""
    from pathlib import Path

    real = Path.read_bytes

    def read_bytes(self):
        if self.name == "train.tsv":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert main(["stats", "--data", str(tiny_corpus)]) == 2
    err = capsys.readouterr().err
    assert "train.tsv: cannot be read (Permission denied)" in err and "Traceback" not in err


def test_fused_adamw_is_recorded_and_resumes_exactly(tiny_corpus, tmp_path):
    from taskrel.rundir import SettingsDiffer

    from helpers import Killed, kill_after

    quiet = {"progress": False, "log": lambda *_: None}
    fused = train(tiny_config(tiny_corpus, tmp_path / "fused", epochs=2, adamw="fused"), **quiet)
    assert json.loads((tmp_path / "fused" / "config.json").read_text())["train"]["adamw"] == "fused"
    cfg = tiny_config(tiny_corpus, tmp_path / "resumed", epochs=2, adamw="fused")
    with pytest.raises(Killed):
        train(cfg, callbacks=[kill_after(1)], **quiet)
    assert train(cfg, resume=True, **quiet) == fused  # the fused optimizer's state is checkpointed too
    with pytest.raises(SettingsDiffer, match="train.adamw: 'fused' -> 'foreach'"):  # never mixed silently
        train(tiny_config(tiny_corpus, tmp_path / "resumed", epochs=2), resume=True, **quiet)


def test_every_command_prints_its_help(capsys):
    """argparse formats help text with %: a setting's help with a bare % once broke --help of every command."""
    from taskrel.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0, name
        assert "usage: taskrel" in capsys.readouterr().out
    assert {"train", "grid", "tune", "run"} <= set(commands)


def test_cpu_seconds_count_the_work_not_a_pause(tiny_corpus, tmp_path, monkeypatch):
    import time

    from taskrel import train as train_module
    from taskrel.rundir import RunDir

    add = train_module._Accumulator.add

    def add_then_wait(self, *args, **kwargs):  # a machine paused (or busy elsewhere) after every batch
        add(self, *args, **kwargs)
        time.sleep(0.2)

    monkeypatch.setattr(train_module._Accumulator, "add", add_then_wait)
    train(tiny_config(tiny_corpus, tmp_path / "r", epochs=1), progress=False, log=lambda *_: None)
    record = read_jsonl(tmp_path / "r" / "metrics.jsonl")[0]
    waits = 0.2 * record["step"]
    assert record["train_seconds"] >= waits  # the wall clock counts the waits
    assert 0 < record["train_cpu_seconds"] < record["train_seconds"] - 0.9 * waits  # the CPU time does not
    assert record["eval_cpu_seconds"] > 0 and RunDir(tmp_path / "r").cpu_seconds > 0


def test_a_run_records_its_machine_and_each_machine_it_resumed_on(tiny_corpus, tmp_path, monkeypatch):
    from taskrel import machine
    from taskrel.report import machine_blocks
    from taskrel.rundir import RunDir

    from helpers import Killed, kill_after

    # precision stated: ``auto`` would resolve by the machine running the tests (bf16 where it is native)
    cfg = tiny_config(tiny_corpus, tmp_path / "study" / "run", epochs=3, precision="fp32")
    with pytest.raises(Killed):
        train(cfg, callbacks=[kill_after(2)], progress=False, log=lambda *_: None)
    started = RunDir(cfg.out).sessions
    assert len(started) == 1 and started[0]["cpu"] == machine.cpu_name() and started[0]["cores"] >= 1
    # the next session's machine is another kind of CPU
    other = {"cpu": "Other CPU", "cores": 64, "native_bf16": True}
    monkeypatch.setattr(machine, "describe", lambda: dict(other))
    train(cfg, resume=True, progress=False, log=lambda *_: None)
    run = RunDir(cfg.out)
    assert [s["cpu"] for s in run.sessions] == [machine.cpu_name(), "Other CPU"]
    assert run.sessions[1]["after_step"] > 0 and run.sessions[1]["started"]
    RunConfig.from_dict(run.config)  # the record is still a readable configuration
    run.check(cfg)

    second = tiny_config(tiny_corpus, tmp_path / "study" / "second", epochs=1, precision="fp32")
    train(second, progress=False, log=lambda *_: None)
    blocks = machine_blocks(tmp_path / "study")
    table = blocks[-1][1]
    here = machine.label(started[0])
    assert machine.label(other) == "Other CPU (64 cores, native bf16)"
    assert sorted(table.iloc[:, 0]) == sorted(
        [f"{here} → Other CPU (64 cores, native bf16)", "Other CPU (64 cores, native bf16)"]
    )
    assert table["finished runs"].sum() == 2 and table["precision"].tolist() == ["fp32", "fp32"]


def test_machine_labels_and_cpu_names(tmp_path):
    from taskrel.machine import cpu_name, label

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9654\nflags\t: avx2\n")
    assert cpu_name(str(info)) == "AMD EPYC 9654"
    assert cpu_name(str(tmp_path / "missing"))  # falls back to what platform knows
    assert label({}) == "not recorded"
    assert label({"cpu": "X", "cores": 2, "native_bf16": False}) == "X (2 cores, no native bf16)"
    assert label({"cpu": "X", "cores": 2, "gpu": "NVIDIA H100"}) == "NVIDIA H100 (GPU)"
