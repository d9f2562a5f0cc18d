"""``taskrel aside``: runs made under settings a study no longer gives them are moved aside with their record,
never one another study reads, and the study then trains them anew."""

import json

import pytest

from taskrel.aside import ASIDE, RECORD, plan
from taskrel.cli import main
from taskrel.config import ConfigError
from taskrel.experiments import load_study

STUDY = """
name: tiny-aside
kind: runs
corpora: [{corpus}]
seeds: [1]
defaults:
  model: {{encoder: tiny, tasks: [ner]}}
  train: {{epochs: 1, batch_size: 8, lr: 1.0e-3, threads: 1}}
variants:
  single: {{}}
  again: {{seed_offset: 100}}
"""

READER = """
name: tiny-reader
kind: runs
corpora: [{corpus}]
seeds: [1]
defaults:
  model: {{encoder: tiny, tasks: [ner]}}
  train: {{epochs: 1, batch_size: 8, lr: 1.0e-3, threads: 1}}
variants:
  shared: {{runs_in: runs/tiny-aside/single}}
"""


def test_runs_under_old_settings_are_set_aside_and_trained_anew(tiny_corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "experiments"
    folder.mkdir()
    study, reader = folder / "study.yaml", folder / "reader.yaml"
    study.write_text(STUDY.format(corpus=tiny_corpus))
    reader.write_text(READER.format(corpus=tiny_corpus))
    assert main(["run", str(study), "--no-progress"]) == 0
    out = tmp_path / "runs" / "tiny-aside"
    assert main(["aside", str(study)]) == 0  # nothing changed: nothing to set aside
    assert "nothing to set aside" in capsys.readouterr().out

    study.write_text(STUDY.format(corpus=tiny_corpus) + f"per_corpus: {{{tiny_corpus}: {{train: {{epochs: 2}}}}}}\n")
    assert main(["run", str(study), "--no-progress"]) != 0  # refused, naming the setting and the way out
    assert "(train.epochs: 1 -> 2)" in (err := capsys.readouterr().err) and f"taskrel aside {study}" in err
    # the reader shares single's run: it is never moved (the reader would train it again), and nothing moves
    with pytest.raises(ConfigError, match="single/tiny/seed1 is read by tiny-reader"):
        plan(study)
    assert (out / "single" / "tiny" / "seed1" / "metrics.json").is_file()
    with pytest.raises(ConfigError, match="--corpus must be one of"):
        plan(study, "nope")

    reader.unlink()
    assert main(["aside", str(study), "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert listed.count("would move") == 2 and "train.epochs: 1 -> 2" in listed
    assert (out / "again" / "tiny" / "seed101").is_dir()  # a dry run moves nothing
    assert main(["aside", str(study), "--corpus", "tiny"]) == 0
    for run in ("single/tiny/seed1", "again/tiny/seed101"):
        moved = out / ASIDE / run
        assert (moved / "metrics.json").is_file() and not (out / run).exists()
        record = json.loads((moved / RECORD).read_text())
        assert record["why"] == "train.epochs: 1 -> 2" and record["from"] == f"runs/tiny-aside/{run}"
    assert plan(study) == []
    # the study trains them anew under its new settings; the runs set aside are no part of it
    assert main(["run", str(study), "--no-progress"]) == 0
    assert load_study(study).run_configs(out)[0][3].train.epochs == 2
    for run in ("single/tiny/seed1", "again/tiny/seed101"):
        assert json.loads((out / run / "config.json").read_text())["train"]["epochs"] == 2
    # a second aside of the same runs would overwrite the record: refused
    (out / ASIDE / "again" / "tiny" / "seed101").rename(out / ASIDE / "again" / "tiny" / "keep")
    study.write_text(STUDY.format(corpus=tiny_corpus))
    assert main(["aside", str(study)]) != 0
    assert "set aside there before" in capsys.readouterr().err
    # committed with the study's runs (taskrel archive), and restored on a fresh checkout where they were set aside
    from taskrel.archive import pack, unpack

    pack(out, tmp_path / "runs.tar.gz")
    unpack(tmp_path / "runs.tar.gz", tmp_path / "fresh" / "tiny-aside")
    assert (tmp_path / "fresh" / "tiny-aside" / ASIDE / "single" / "tiny" / "seed1" / RECORD).is_file()
    assert (tmp_path / "fresh" / "tiny-aside" / "single" / "tiny" / "seed1" / "metrics.json").is_file()
