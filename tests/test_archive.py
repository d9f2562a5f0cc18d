import json
import os
import shutil
import sqlite3
import tarfile

import pytest
from test_experiments import RUNS_STUDY

from taskrel.archive import ARCHIVE, pack, unpack
from taskrel.cli import main
from taskrel.config import ConfigError
from taskrel.locks import RunLock


def _run(folder, finished=True, checkpoint=False):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (folder / "model").mkdir()
    (folder / "model" / "model.safetensors").write_bytes(b"weights")
    if finished:
        (folder / "metrics.json").write_text('{"test": 0.5}')
    if checkpoint:
        (folder / "checkpoint").mkdir()
        (folder / "checkpoint" / "state.json").write_text("{}")
    (folder / ".lock").write_text("1\n")
    return folder


def _study(root):
    study = root / "study-x"
    _run(study / "single" / "c" / "seed1")
    _run(study / "single" / "c" / "seed2", finished=False, checkpoint=True)  # killed: could go on
    _run(study / "trial-3", finished=False)  # pruned: its checkpoint dropped, its records kept
    _run(study / "single" / "c" / "seed3", finished=False)  # running, before its first checkpoint
    (study / "results.csv").write_text("a,b\n1,2\n")
    (study / "results.csv.tmp").write_text("half")
    db = sqlite3.connect(study / "study.db")
    db.execute("create table trials (n integer)")
    db.executemany("insert into trials values (?)", [(i,) for i in range(5)])
    db.commit()
    return study, db


def test_pack_keeps_finished_and_stopped_runs_without_weights(tmp_path):
    study, db = _study(tmp_path)
    with RunLock(study / "single" / "c" / "seed3"):  # a live lock: this run is being written
        packed = pack(study, tmp_path / "r" / ARCHIVE)
        again = pack(study, tmp_path / "r2" / ARCHIVE)
        os.utime(study / "results.csv", (1, 1))  # the same files give the same bytes, whatever their times
        touched = pack(study, tmp_path / "r3" / ARCHIVE)
    db.close()
    assert (packed.finished, packed.stopped) == (1, 1)
    assert sorted(packed.left_out) == ["single/c/seed2", "single/c/seed3"]
    with tarfile.open(packed.path) as tar:
        names = set(tar.getnames())
    assert "study-x/single/c/seed1/metrics.json" in names and "study-x/trial-3/metrics.jsonl" in names
    assert "study-x/results.csv" in names and "study-x/study.db" in names
    assert not any("model" in n or "checkpoint" in n or n.endswith((".lock", ".tmp")) for n in names)
    assert not any("seed2" in n or "seed3" in n for n in names)
    # an unchanged study leaves git clean
    assert packed.path.read_bytes() == again.path.read_bytes() == touched.path.read_bytes()
    assert "1 finished run(s)" in packed.line() and "2 unfinished left out" in packed.line()


def test_unpack_restores_and_never_overwrites(tmp_path):
    study, db = _study(tmp_path)
    db.close()
    archive = pack(study, tmp_path / "report" / ARCHIVE).path
    fresh = tmp_path / "fresh" / "study-x"
    written, kept = unpack(archive, fresh)
    # seed1's three files; the records of trial-3 and of seed3 (no checkpoint, no live lock: it cannot go on);
    # the table and the database
    assert (written, kept) == (9, 0)
    assert json.loads((fresh / "single/c/seed1/metrics.json").read_text()) == {"test": 0.5}
    assert sqlite3.connect(fresh / "study.db").execute("select count(*) from trials").fetchone() == (5,)
    assert not (fresh / "single/c/seed1/model").exists() and not (fresh / "single/c/seed2").exists()
    (fresh / "results.csv").write_text("newer\n")
    written, kept = unpack(archive, fresh)
    assert (written, kept) == (0, 9) and (fresh / "results.csv").read_text() == "newer\n"
    with pytest.raises(ConfigError, match="not inside other/"):
        unpack(archive, tmp_path / "other")


def test_unpack_refuses_paths_outside_the_folder(tmp_path):
    evil = tmp_path / ARCHIVE
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("study-x/../../escaped")
        tar.addfile(info)
    with pytest.raises(ConfigError, match="not inside study-x/"):
        unpack(evil, tmp_path / "runs" / "study-x")
    assert not (tmp_path / "escaped").exists()


def test_restore_lets_a_fresh_checkout_resume_without_training_again(tiny_corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    study = tmp_path / "tiny.yaml"
    study.write_text(RUNS_STUDY.format(corpus=tiny_corpus).split("  mt-mean:")[0])
    assert main(["run", str(study), "--no-progress"]) == 0
    assert main(["archive", "runs/tiny-runs", "--out", "reports/tiny-runs"]) == 0
    assert "2 finished run(s)" in capsys.readouterr().out
    before = (tmp_path / "runs/tiny-runs/single/tiny/seed1/metrics.json").read_text()
    shutil.rmtree(tmp_path / "runs")  # a fresh checkout: the reports only
    assert main(["restore", str(study), str(study)]) == 0
    out = capsys.readouterr().out
    assert out.count("tiny-runs:") == 1 and "restored into runs/tiny-runs" in out
    assert (tmp_path / "runs/tiny-runs/single/tiny/seed1/metrics.json").read_text() == before
    assert main(["run", str(study), "--no-progress"]) == 0
    assert "2 runs, 2 already finished" in capsys.readouterr().err
    other = tmp_path / "other.yaml"
    other.write_text(RUNS_STUDY.format(corpus=tiny_corpus).replace("tiny-runs", "no-report"))
    assert main(["restore", str(other)]) == 0
    assert "no reports/no-report/runs.tar.gz yet" in capsys.readouterr().out
