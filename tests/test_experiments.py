import json
import re
from pathlib import Path

import pandas as pd
import pytest

from taskrel.cli import main
from taskrel.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig, TuneConfig
from taskrel.experiments import load_study

from conftest import conll, write_corpus

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def write(tmp_path, text):
    f = tmp_path / "study.yaml"
    f.write_text(text)
    return f


RUNS_STUDY = """
name: tiny-runs
kind: runs
corpora: [{corpus}]
seeds: [1, 2]
defaults:
  model: {{encoder: tiny}}
  train: {{epochs: 1, batch_size: 4, lr: 1.0e-3, threads: 1}}
variants:
  single: {{model: {{tasks: [ner]}}}}
  mt-mean: {{model: {{tasks: [ner, mtcls, bcls, mcls], pooling: mean}}}}
"""


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_experiment_files_are_valid(path):
    study = load_study(path)
    assert study.corpora and study.seeds and study.description


def test_a_report_refuses_tables_that_list_other_runs_than_the_finished_ones(tiny_corpus, tmp_path, capsys):
    import shutil

    one_seed = RUNS_STUDY.format(corpus=tiny_corpus).replace("seeds: [1, 2]", "seeds: [1]")
    out = tmp_path / "out"
    assert main(["run", str(write(tmp_path, one_seed)), "--out", str(out), "--no-progress"]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "r1")]) == 0
    # a run set aside after the tables were written: the report names it and the command that mends the tables
    shutil.move(out / "single" / tiny_corpus.name / "seed1", tmp_path / "set-aside")
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "listed but not finished there: ('single', 'tiny', 1)" in err and f"taskrel run {out} --summarise" in err
    assert main(["run", str(out), "--summarise"]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "r2")]) == 0
    assert len(pd.read_csv(out / "results.csv")) == 1


def test_a_runs_study_end_to_end_with_its_report(tiny_corpus, tmp_path, capsys):
    f = write(tmp_path, RUNS_STUDY.format(corpus=tiny_corpus))
    out, rep = tmp_path / "out", tmp_path / "report"
    assert main(["run", str(f), "--out", str(out), "--report", str(rep), "--no-progress"]) == 0
    results = pd.read_csv(out / "results.csv")
    assert sorted(zip(results["variant"], results["seed"])) == [
        ("mt-mean", 1),
        ("mt-mean", 2),
        ("single", 1),
        ("single", 2),
    ]
    assert set(results[results["variant"] == "mt-mean"]["pooling"]) == {"mean"}
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["variant"]) == ["single", "mt-mean"] and (summary["f1_count"] == 2).all()
    mean = results[results["variant"] == "single"]["f1"].mean()
    assert summary[summary["variant"] == "single"]["f1_mean"].iloc[0] == pytest.approx(mean)
    md = (rep / "report.md").read_text()
    assert "Study tiny-runs" in md and "| tiny | single |" in md
    cpu = results["cpu_seconds"].sum() / 3600
    assert results["cpu_seconds"].gt(0).all() and f"the 4 that recorded CPU time used {cpu:.1f} CPU hours" in md
    assert (rep / "report.html").read_text().startswith("<!doctype html>")
    # passed again with nothing new (a queue restarted), the report is left as it is, date included
    (rep / "report.md").write_text(md.replace(" on 20", " on 19"))
    capsys.readouterr()
    assert main(["run", str(f), "--out", str(out), "--report", str(rep), "--no-progress"]) == 0
    assert (rep / "report.md").read_text() == md.replace(" on 20", " on 19")
    assert "(already up to date, left as it was)" in capsys.readouterr().out
    results.loc[0, "f1"] = 0.5  # a table that changed rewrites it
    results.to_csv(out / "results.csv", index=False)
    from taskrel.report import write_report

    write_report(out, rep)
    assert (rep / "report.md").read_text() != md.replace(" on 20", " on 19") and " on 20" in (
        rep / "report.md"
    ).read_text()
    # running again resumes: nothing is retrained
    stamp = (out / "single/tiny/seed1/metrics.json").stat().st_mtime_ns
    assert main(["run", str(f), "--out", str(out), "--no-progress"]) == 0
    assert (out / "single/tiny/seed1/metrics.json").stat().st_mtime_ns == stamp


def test_a_grid_study_end_to_end(tiny_corpus, tmp_path):
    f = write(
        tmp_path,
        f"""
name: tiny-grid
kind: grid
corpora: [{tiny_corpus}]
seeds: [1]
defaults: {{model: {{encoder: tiny}}, train: {{epochs: 1, batch_size: 4, threads: 1}}}}
grid: {{tasks: [ner, bcls]}}
""",
    )
    out, rep = tmp_path / "out", tmp_path / "report"
    assert main(["run", str(f), "--out", str(out), "--report", str(rep), "--no-progress"]) == 0
    assert len(pd.read_csv(out / "tiny" / "runs.csv")) == 4
    md = (rep / "report.md").read_text()
    assert "Pairwise transfer grid: tiny" in md and "Transfer Δ(main | secondary)" in md
    assert (rep / "tiny_heatmap.png").is_file() and "data:image/png;base64," in (rep / "report.html").read_text()


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nkind: runs\ncorpora: [a]\nvariants: {v: {}}\nepochs: 3\n", "unknown key(s) ['epochs']"),
        ("name: x\nkind: runs\ncorpora: [a]\nvariants:\n  v: {model: {taks: [ner]}}\n", "unknown key(s) ['taks']"),
        ("name: x\nkind: runs\ncorpora: [a]\nvariants:\n  v: {model: {tasks: [nre]}}\n", "unknown task"),
        ("name: x\nkind: runs\ncorpora: [a]\nvariants: {v: {}}\nper_corpus: {b: {}}\n", "not in the study: ['b']"),
        ("name: x\nkind: table\ncorpora: [a]\n", "kind must be one of"),
        ("name: x\nkind: runs\ncorpora: [a]\n", "needs variants"),
        ("name: x\nkind: grid\ncorpora: [a]\ngrid: {tasks: [ner, bcls], folds: 3}\n", "unknown grid key(s) ['folds']"),
        ("name: x\nkind: runs\n  corpora: [a\n", "study.yaml:"),
        ("name: x\nkind: runs\ncorpora: [a]\nvariants: {v: {}}\nworkers: 0\n", "workers must be a positive integer"),
        ("name: x\nkind: tune\ncorpora: [a]\ntune: {trials: 2}\nworkers: 2\n", "not of 'tune'"),
    ],
)
def test_bad_study_files_are_clear(tmp_path, text, message):
    f = write(tmp_path, text)
    with pytest.raises(ConfigError, match=None) as err:
        load_study(f)
    assert message in str(err.value) and str(f) in str(err.value)


def test_yaml_syntax_error_names_the_line(tmp_path):
    f = write(tmp_path, "name: x\nkind: runs\ncorpora: [a, b\nseeds: [1]\n")
    with pytest.raises(ConfigError, match=r"study.yaml:\d+: not valid YAML"):
        load_study(f)


def test_numbers_read_as_they_look_in_yaml_and_in_a_json_record(tmp_path):
    # PyYAML (YAML 1.1) alone reads 5e-5 as the string '5e-5'; a study folder's record is JSON, where it is a number
    f = write(tmp_path, RUNS_STUDY.format(corpus="x").replace("lr: 1.0e-3", "lr: 5e-5"))
    study = load_study(f)
    assert study.defaults["train"]["lr"] == 5e-5
    record = tmp_path / "folder" / "study.json"
    record.parent.mkdir()
    record.write_text(
        '{"name": "x", "kind": "runs", "corpora": ["x"], "seeds": [1], '
        '"defaults": {"train": {"lr": 5e-05}}, "variants": {"single": {}}}'
    )
    assert load_study(record.parent).defaults["train"]["lr"] == 5e-5
    record.write_text('{"name": "x", "name": "y"}')
    with pytest.raises(ConfigError, match=r"study.json: not valid JSON .*given twice"):
        load_study(record)


def test_report_of_something_else_is_an_error(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "no results found" in capsys.readouterr().err


def test_a_runs_study_with_a_baseline_compares_paired_seeds_in_parallel(tiny_corpus, tmp_path, capsys):
    # the study file's workers: 2 (the command line's --workers would override it)
    text = RUNS_STUDY.format(corpus=tiny_corpus).replace("kind: runs", "kind: runs\nbaseline: single\nworkers: 2")
    text = text.replace("epochs: 1,", "epochs: 3, patience: 1,")
    f = write(tmp_path, text)
    out, rep = tmp_path / "out", tmp_path / "report"
    assert main(["run", str(f), "--out", str(out), "--report", str(rep), "--no-progress"]) == 0
    said = capsys.readouterr()
    assert "4 runs, 0 already done, 2 workers" in said.out + said.err
    sweep = pd.read_csv(out / "patience_sweep.csv")  # patience 1: replayed at 1, its own selection
    assert len(sweep) == 4 and (sweep["patience"] == 1).all() and sweep["same_selection"].all()
    assert "Patience sweep" in (rep / "report.md").read_text()
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 4 and set(results["stopped"]) <= {"patience", "max_epochs"}
    comp = pd.read_csv(out / "comparisons.csv")
    assert list(comp["variant"]) == ["mt-mean"] and comp["seeds"].iloc[0] == 2
    single = results[results["variant"] == "single"].sort_values("seed")["f1"].to_numpy()
    mt = results[results["variant"] == "mt-mean"].sort_values("seed")["f1"].to_numpy()
    assert comp["delta"].iloc[0] == pytest.approx((mt - single).mean())
    assert comp["verdict"].iloc[0] in ("helps", "hurts", "undetermined")
    assert comp["p_adjusted"].iloc[0] >= comp["p"].iloc[0]
    md = (rep / "report.md").read_text()
    assert "mt-mean vs single" in md and "converged" in md


def test_a_baseline_must_be_a_variant(tmp_path):
    f = write(tmp_path, RUNS_STUDY.format(corpus="x").replace("kind: runs", "kind: runs\nbaseline: nope"))
    with pytest.raises(ConfigError, match="baseline 'nope'"):
        load_study(f)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("seeds: [1, 2]", "seeds: [1, 2]\nseeds: [3]"), "given twice"),
        (lambda t: t.replace("  single:", "  ../x:"), "plain folder names"),
        (lambda t: t.replace("name: tiny-runs", "name: /abs/olute"), "plain folder names"),
    ],
)
def test_study_files_that_would_write_elsewhere_or_lose_a_key_are_refused(tiny_corpus, tmp_path, edit, message):
    f = write(tmp_path, edit(RUNS_STUDY.format(corpus=tiny_corpus)))
    with pytest.raises(ConfigError, match=message):
        load_study(f)


def test_corpora_whose_folders_share_a_name_are_refused(tiny_corpus, tmp_path):
    other = tmp_path / "elsewhere" / tiny_corpus.name
    other.mkdir(parents=True)
    text = RUNS_STUDY.format(corpus=tiny_corpus).replace(
        f"corpora: [{tiny_corpus}]", f"corpora: [{tiny_corpus}, {other}]"
    )
    with pytest.raises(ConfigError, match="share the folder name"):
        load_study(write(tmp_path, text))
    with pytest.raises(ConfigError, match="folder name"):
        load_study(write(tmp_path, RUNS_STUDY.format(corpus=f"{tiny_corpus}/..")))


def test_report_markdown_escapes_user_text(tiny_corpus, tmp_path):
    from taskrel.report import _md_table, md_escape

    assert md_escape("a <b> | c_d *e*") == r"a \<b\> \| c\_d \*e\*"
    table = _md_table(pd.DataFrame({"tag": ["B-<x>|y"], "n": [1]}))
    assert table.splitlines()[2].count(" | ") == 1  # the cell's | does not split the row


def test_estimate_counts_the_runs_a_study_would_train(tiny_corpus, tmp_path, capsys):
    from taskrel.estimate import estimate
    from taskrel.grid import grid_cells
    from taskrel.rundir import RunDir

    runs_file = write(tmp_path, RUNS_STUDY.format(corpus=tiny_corpus))
    study = load_study(runs_file)
    est = estimate(study, tmp_path / "out")
    assert est.runs == 4 and est.done == 0 and 0 < est.low_seconds <= est.high_seconds
    # a corpus with runs left and none finished has no measured pace: said, not counted as 0 s
    assert est.unmeasured == {"tiny": 4} and not est.measured
    from taskrel.estimate import Estimate

    mixed = Estimate(5, 1, measured={"a": (1, 60.0, 1, 60.0)}, unmeasured={"b": 3}).lines(probed=False)
    assert mixed[-2].startswith("  on b: 3 run(s) left and none finished here yet, so no pace measured")
    assert mixed[-1] == "  at the measured pace, the runs left on those corpora: about 1 min (without b, not measured)"
    probe = next(iter(est.probes.values()))
    for load, says in ((0.0, "idle machine"), (3.0, "other work slowed it")):  # the probe says how busy it was
        probe.load = load
        assert says in "\n".join(est.lines())
    assert main(["estimate", str(runs_file), "--out", str(tmp_path / "out"), "--no-probe"]) == 0
    assert "4 runs, 0 already finished" in capsys.readouterr().out
    # once runs have finished, the study's own measured pace projects the rest
    one_seed = tmp_path / "one-seed.yaml"
    one_seed.write_text(RUNS_STUDY.format(corpus=tiny_corpus).replace("seeds: [1, 2]", "seeds: [1]"))
    assert main(["run", str(one_seed), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["estimate", str(runs_file), "--out", str(tmp_path / "out"), "--no-probe"]) == 0
    text = capsys.readouterr().out
    assert "4 runs, 2 already finished" in text and "measured on tiny: 2 finished run(s)" in text
    assert "its 2 run(s) left at the pace of finished runs with the same settings" in text
    assert "none finished here yet" not in text
    # each run left is projected at its own variant's pace: NER alone seeds 1-2 and the four tasks seed 1 done
    single_only = tmp_path / "single.yaml"
    single_only.write_text(RUNS_STUDY.format(corpus=tiny_corpus).split("  mt-mean:")[0])
    assert main(["run", str(single_only), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    three = load_study(write(tmp_path, RUNS_STUDY.format(corpus=tiny_corpus).replace("[1, 2]", "[1, 2, 3]")))
    n, mean, left, projected = estimate(three, tmp_path / "out", do_probe=False).measured["tiny"]
    took = {(v, s): RunDir(tmp_path / f"out/{v}/tiny/seed{s}").seconds for v, s in [("single", 1), ("single", 2)]}
    mt = RunDir(tmp_path / "out/mt-mean/tiny/seed1").seconds
    assert (n, left) == (3, 3) and mean == pytest.approx((sum(took.values()) + mt) / 3)
    assert projected == pytest.approx(sum(took.values()) / 2 + 2 * mt)  # single seed 3; mt-mean seeds 2 and 3
    grid_text = "name: g\nkind: grid\ncorpora: [{c}]\nseeds: [1, 2]\ndefaults: {{model: {{encoder: tiny}}}}\n"
    grid_text += "grid: {{tasks: [ner, bcls, mcls]}}\n"
    grid = load_study(write(tmp_path, grid_text.format(c=tiny_corpus)))
    cells = sum(len(grid_cells(g.tasks, g.seeds)) for _, g in grid.grid_configs())
    assert cells == 2 * (3 + 6) and estimate(grid, tmp_path / "g", do_probe=False).runs == cells


def test_status_reads_a_study_without_loading_the_trainer_or_the_plots(tiny_corpus, tmp_path):
    """``taskrel status`` is run often, on a machine busy training: it reads records, so it must not pay for
    importing transformers or seaborn (about 15 s of its 20 s under load before they were imported lazily)."""
    import subprocess
    import sys

    study = write(tmp_path, RUNS_STUDY.format(corpus=tiny_corpus))
    code = (
        "import sys; from taskrel.cli import main; main(['status', sys.argv[1]]); "
        "heavy = sorted(m for m in ('transformers', 'seaborn', 'matplotlib') if m in sys.modules); "
        "print('HEAVY', heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(study)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout and "not started" in done.stdout


def test_status_lists_every_declared_run_with_its_state_and_numbers(tiny_corpus, tmp_path, capsys, monkeypatch):
    from taskrel.estimate import study_runs
    from taskrel.locks import RunLock
    from taskrel.progress import FINISHED, INTERRUPTED, NOT_STARTED, TRAINING, counts_line, study_states
    from taskrel.rundir import RunDir
    from taskrel.train import train

    from helpers import Killed, kill_after

    text = RUNS_STUDY.format(corpus=tiny_corpus).replace("epochs: 1,", "epochs: 2,")
    study_file, out = write(tmp_path, text), tmp_path / "out"
    one_seed = tmp_path / "one-seed.yaml"
    one_seed.write_text(text.replace("seeds: [1, 2]", "seeds: [1]"))
    assert main(["run", str(one_seed), "--out", str(out), "--no-progress"]) == 0
    study = load_study(study_file)
    cfgs = {str(Path(c.out).relative_to(out)): c for c in study_runs(study, out)}
    with pytest.raises(Killed):  # NER alone, seed 2: killed after its first epoch
        train(cfgs["single/tiny/seed2"], callbacks=[kill_after(1)], progress=False, log=lambda *_: None)
    training = out / "mt-mean" / "tiny" / "seed2"
    training.mkdir(parents=True)
    with RunLock(training):  # a live process writing it, before its first evaluation
        states = {s.name: s for s in study_states(study, out)}
    assert {n: s.state for n, s in states.items()} == {
        "single/tiny/seed1": FINISHED,
        "single/tiny/seed2": INTERRUPTED,
        "mt-mean/tiny/seed1": FINISHED,
        "mt-mean/tiny/seed2": TRAINING,
    }
    done = RunDir(out / "single" / "tiny" / "seed1")
    row = states["single/tiny/seed1"]
    assert row.test == pytest.approx(100 * done.score("test")) and row.best_epoch == done.best_epoch
    assert row.epochs == done.epochs_run and row.converged is done.converged
    assert row.cells[7] == {True: "yes", False: "**no**"}[done.converged]  # not converged: in bold
    assert row.cells[4] == f"{100 * done.score('dev'):.2f}"  # the selected model's dev score
    killed = states["single/tiny/seed2"]
    assert killed.epochs == 1 and killed.best_epoch == 1 and killed.test != killed.test  # NaN: not scored yet
    assert killed.cells[2].startswith("interrupted (resumes from its checkpoint): best dev ")
    assert killed.cells[3] == "–"
    capsys.readouterr()
    assert main(["status", str(study_file), "--out", str(out), "--only", "finished"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"study tiny-runs ({study_file}), results in {out}, as of 20")  # a dated snapshot
    assert "4 runs: 2 finished" in printed and "1 interrupted" in printed
    assert "| single/tiny/seed1 | ner | finished | " + f"{row.test:.2f} |" in printed
    assert "seed2" not in printed.split("|---", 1)[1].split("\n\n")[0]  # --only finished: no other rows
    assert "measured on tiny: 2 finished run(s)" in printed
    # the interrupted run resumes where it stopped, and then counts as finished
    assert main(["run", str(study_file), "--out", str(out), "--no-progress"]) == 0
    assert {s.state for s in study_states(study, out)} == {FINISHED}
    # several files: one line per study, read from runs/<study name>; a file named twice listed once
    (tmp_path / "runs").mkdir()
    out.rename(tmp_path / "runs" / "tiny-runs")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["status", str(study_file), str(study_file)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("tiny-runs: 4 runs: 4 finished") and printed.count("\n") == 1
    assert printed == f"tiny-runs: {counts_line(study_states(study, Path('runs/tiny-runs')))}\n"
    fresh = study_states(study, tmp_path / "elsewhere")
    assert {s.state for s in fresh} == {NOT_STARTED} and counts_line(fresh) == "4 runs: 0 finished, 4 not started"


# ---- every study kind through an experiment file (kinds.KINDS), and refused when continued differently

KIND_SECTIONS = {
    "tune": "tune: {{trials: 2, pruner: none, confirm_seeds: [2], arms: [single, equal]}}",
    "embed": "embed: {{tasks: [ner, bcls], examples: 8, components: [head]}}",
    "affinity": "affinity: {{every: 2}}",
    "grid": "grid: {{tasks: [ner, bcls]}}\nclaims: [{{claim: NER gains from bCLS, paper: 0.5, transfer: ner|bcls}}]",
}
KIND_STUDY = """
name: tiny-{kind}
kind: {kind}
description: one study of each kind
corpora: [{corpus}]
seeds: [1]
defaults:
  model: {{encoder: tiny, tasks: [ner, bcls]}}
  train: {{epochs: 1, batch_size: 4, lr: 1.0e-3, threads: 1, weights: [1.0, 1.0]}}
{section}
"""


@pytest.mark.parametrize("kind", sorted(KIND_SECTIONS))
def test_every_study_kind_runs_from_an_experiment_file(tiny_corpus, tmp_path, kind, capsys):
    from taskrel.kinds import KINDS

    text = KIND_STUDY.format(kind=kind, corpus=tiny_corpus, section=KIND_SECTIONS[kind].format())
    f, out, rep = write(tmp_path, text), tmp_path / "out", tmp_path / "report"
    assert main(["run", str(f), "--out", str(out), "--report", str(rep), "--no-progress"]) == 0
    folder = out / tiny_corpus.name
    assert KINDS[kind].holds(folder)
    if kind == "tune":
        assert KINDS["confirm"].holds(folder)  # the section's follow-up step ran
    if kind == "grid":  # the paper's claim beside the grid's transfer, first in the report
        claims, transfer = pd.read_csv(out / "claims.csv"), pd.read_csv(folder / "transfer.csv")
        row = transfer[(transfer["main"] == "ner") & (transfer["secondary"] == "bcls")].iloc[0]
        assert row.n_seeds == 1 and claims["seeds"].iloc[0] == 1  # read from the grid's transfer
        # one seed: the claim is not set beside the paper (test_claims sets one beside it from two seeds)
        assert pd.isna(claims["ours"].iloc[0]) and claims["verdict"].iloc[0] == "1 seed so far; a claim needs 2"
        assert "NER gains from bCLS" in (rep / "report.md").read_text()
    assert "Study tiny-" in (rep / "report.md").read_text()
    # continued under other settings: refused, naming the setting
    changed = text.replace("lr: 1.0e-3", "lr: 2.0e-3")
    capsys.readouterr()
    assert main(["run", str(write(tmp_path, changed)), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "lr: 0.001 -> 0.002" in err, err


@pytest.mark.parametrize("kind", ["tune", "embed", "affinity", "prediction"])
def test_a_kind_section_is_checked_before_anything_runs(tiny_corpus, tmp_path, kind):
    text = KIND_STUDY.format(kind=kind, corpus=tiny_corpus, section=f"{kind}: {{colour: red}}")
    with pytest.raises(ConfigError, match=r"unknown \w+ key\(s\) \['colour'\]"):
        load_study(write(tmp_path, text))
    text = KIND_STUDY.format(kind=kind, corpus=tiny_corpus, section="")
    with pytest.raises(ConfigError, match=f"its settings in a '{kind}' section"):
        load_study(write(tmp_path, text))


def test_continuing_a_study_names_the_setting_that_differs(tiny_corpus, tmp_path):
    from taskrel.experiments import run_study
    from taskrel.rundir import SettingsDiffer

    text = KIND_STUDY.format(kind="affinity", corpus=tiny_corpus, section="affinity: {every: 2}")
    run_study(write(tmp_path, text), tmp_path / "out", progress=False, log=lambda *_: None)
    more_seeds = text.replace("seeds: [1]", "seeds: [1, 2]")  # a study may grow
    run_study(write(tmp_path, more_seeds), tmp_path / "out", progress=False, log=lambda *_: None)
    with pytest.raises(SettingsDiffer, match=r"affinity.every: 2 -> 3"):
        run_study(write(tmp_path, text.replace("every: 2", "every: 3")), tmp_path / "out", progress=False)


def test_html_reports_render_markdown_and_escape_user_html():
    from taskrel.report import md_escape, to_html

    page = to_html(
        [
            ("h1", "R"),
            ("p", f"From `x.yaml`: {md_escape('<script>alert(1)</script> *a*')}"),
            ("md", "| arm | Δ |\n|---|---:|\n| tuned | +1.2 |\n"),
        ],
        "R",
    )
    assert "<table>" in page and "<td>tuned</td>" in page and "<pre>" not in page
    assert "<code>x.yaml</code>" in page and "<script>" not in page and "&lt;script&gt;" in page
    assert "<em>" not in page  # the escaped *a* stays literal


def test_a_baseline_per_variant_pairs_each_variant_with_its_own(tmp_path):
    text = RUNS_STUDY.format(corpus="x").replace("kind: runs", "kind: runs\nbaseline: {mt-mean: single}")
    assert load_study(write(tmp_path, text)).comparisons() == [("mt-mean", "single")]
    assert load_study(write(tmp_path, RUNS_STUDY.format(corpus="x") + "baseline: single\n")).comparisons() == [
        ("mt-mean", "single")
    ]
    with pytest.raises(ConfigError, match="baseline 'nope'"):
        load_study(write(tmp_path, text.replace("{mt-mean: single}", "{mt-mean: nope}")))
    table3 = load_study(EXPERIMENTS / "table3-fractions.yaml").comparisons()
    assert table3 == [(f"mt-{f}", f"single-{f}") for f in (100, 50, 25, 10)]


def test_one_worker_trains_seed_by_seed(tiny_corpus, tmp_path, monkeypatch):
    """Stopped half-way, a study has every variant and corpus at the same number of seeds (paired)."""
    import taskrel.train
    from taskrel.experiments import run_study

    order = []
    monkeypatch.setattr(taskrel.train, "train", lambda cfg, **kw: order.append((cfg.model.tasks[-1], cfg.train.seed)))
    lines = []
    run_study(
        write(tmp_path, RUNS_STUDY.format(corpus=tiny_corpus)), tmp_path / "out", progress=False, log=lines.append
    )
    assert order == [("ner", 1), ("mcls", 1), ("ner", 2), ("mcls", 2)]
    paces = [x for x in lines if " runs done in " in x]
    assert len(paces) == 4 and "1 of 4 runs done" in paces[0] and "left at that pace" in paces[0]
    assert "4 of 4 runs done" in paces[-1] and "left" not in paces[-1]

    # stages: every seed of the first stage before the next; continuing the study under new stages is allowed
    order.clear()
    text = RUNS_STUDY.format(corpus=tiny_corpus) + "stages: [[mt-mean]]\n"
    run_study(write(tmp_path, text), tmp_path / "out", progress=False)
    assert order == [("mcls", 1), ("mcls", 2), ("ner", 1), ("ner", 2)]
    for bad in ("[[mt-mean], [mt-mean]]", "[[nope]]", "[mt-mean]"):
        with pytest.raises(ConfigError, match="stages"):
            load_study(write(tmp_path, RUNS_STUDY.format(corpus=tiny_corpus) + f"stages: {bad}\n"))


def test_a_study_log_says_how_far_it_is_and_how_long_is_left(tmp_path):
    import json

    from taskrel.estimate import Pace

    now = [0.0]
    folders = [tmp_path / f"run{i}" for i in range(65)]
    pace = Pace(folders, clock=lambda: now[0])
    for k in range(3):
        now[0] += 600
        line = pace.line(folders[k])
    assert line == "3 of 65 runs done in 30 min; about 10.3 h left at that pace"
    # a run resumed near its end finishes in a minute: it counts with the 50 min its evaluations took before
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    records = [{"train_seconds": 1200.0, "eval_seconds": 300.0}, {"train_seconds": 1200.0, "eval_seconds": 300.0}]
    (resumed / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    pace = Pace([resumed, folders[0]], clock=lambda: now[0])
    now[0] += 60
    assert pace.line(resumed) == (
        "1 of 2 runs done in 1 min; about 51 min left at that pace (counting the 50 min resumed runs took before)"
    )
    now[0] += 90
    assert pace.line(folders[0]) == "2 of 2 runs done in 2 min"
    # two workers: the first run to finish took 10 min while the other ran beside it, so 4 runs are left to do
    # two at a time, 20 min (not the 40 min that one run per 10 min elapsed would say)
    pace = Pace(folders[:6], workers=2, clock=lambda: now[0])
    ten = [{"train_seconds": 500.0, "eval_seconds": 100.0}]
    for k in (0, 1):
        folders[k].mkdir()
        (folders[k] / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ten))
    now[0] += 600
    assert pace.line(folders[0]) == "1 of 6 runs done in 10 min; about 25 min left at 10 min a run, 2 at a time"
    assert pace.line(folders[1]) == "2 of 6 runs done in 10 min; about 20 min left at 10 min a run, 2 at a time"


def test_a_study_killed_half_way_has_tables_of_its_finished_rounds(tiny_corpus, tmp_path, monkeypatch):
    import taskrel.train
    from taskrel.experiments import run_study

    real, calls = taskrel.train.train, []

    def train_then_die(cfg, **kw):
        calls.append(cfg.train.seed)
        if len(calls) == 3:  # the first run of seed 2: as if the session ended
            raise KeyboardInterrupt
        return real(cfg, **kw)

    monkeypatch.setattr(taskrel.train, "train", train_then_die)
    text = RUNS_STUDY.format(corpus=tiny_corpus).replace("kind: runs", "kind: runs\nbaseline: single")
    with pytest.raises(KeyboardInterrupt):
        run_study(write(tmp_path, text), tmp_path / "out", progress=False, log=lambda *_: None)
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert sorted(results["variant"]) == ["mt-mean", "single"] and set(results["seed"]) == {1}
    assert pd.read_csv(tmp_path / "out" / "comparisons.csv")["seeds"].tolist() == [1]


def test_a_corpus_may_have_seeds_of_its_own(tiny_corpus, tmp_path, monkeypatch):
    import shutil

    import taskrel.train
    from taskrel.experiments import run_study

    other = tmp_path / "tiny-copy"
    shutil.copytree(tiny_corpus, other)
    text = RUNS_STUDY.format(corpus=f"{tiny_corpus}, {other}") + f"corpus_seeds: {{{other}: [1, 2, 3]}}\n"
    order = []
    monkeypatch.setattr(
        taskrel.train, "train", lambda cfg, **kw: order.append((Path(cfg.data.data).name, cfg.train.seed))
    )
    run_study(write(tmp_path, text), tmp_path / "out", progress=False, log=lambda *_: None)
    # seed by seed over the corpora that have it: the copy's third seed comes after everyone's second
    assert [s for _, s in order] == [1] * 4 + [2] * 4 + [3] * 2
    assert sum(1 for c, _ in order if c == "tiny-copy") == 6 and sum(1 for c, _ in order if c == "tiny") == 4
    monkeypatch.undo()  # and the comparisons pair each corpus's own seeds
    text = text.replace("seeds: [1, 2]", "seeds: [1]").replace("kind: runs", "kind: runs\nbaseline: single")
    assert main(["run", str(write(tmp_path, text)), "--out", str(tmp_path / "real"), "--no-progress"]) == 0
    comp = pd.read_csv(tmp_path / "real" / "comparisons.csv").set_index("corpus")
    assert comp.loc["tiny", "seeds"] == 1 and comp.loc["tiny-copy", "seeds"] == 3
    for bad, message in (("{nowhere: [1]}", "corpus_seeds"), (f"{{{other}: []}}", "different integers")):
        with pytest.raises(ConfigError, match=message):
            load_study(write(tmp_path, RUNS_STUDY.format(corpus=f"{tiny_corpus}, {other}") + f"corpus_seeds: {bad}\n"))


def test_comparisons_are_pooled_over_corpora(tiny_corpus, tmp_path):
    import shutil

    other = tmp_path / "tiny-copy"
    shutil.copytree(tiny_corpus, other)
    text = RUNS_STUDY.format(corpus=f"{tiny_corpus}, {other}").replace("kind: runs", "kind: runs\nbaseline: single")
    out = tmp_path / "out"
    assert main(["run", str(write(tmp_path, text)), "--out", str(out), "--no-progress"]) == 0
    comp = pd.read_csv(out / "comparisons.csv")
    assert list(comp["corpus"]) == [tiny_corpus.name, "tiny-copy", "pooled"]
    pooled, pooled_parts = comp.iloc[-1], list(comp["delta"].iloc[:2])
    assert pooled["delta"] == pytest.approx(comp["delta"].iloc[:2].mean())
    assert pooled["seeds"] == 2 and pooled["converged"] == "0/4" and pooled["verdict"] == "undetermined"
    assert pooled["ci_low"] <= pooled["delta"] <= pooled["ci_high"]
    assert (comp["p_adjusted"] >= comp["p"]).all()  # one Holm family with the per-corpus rows
    from taskrel.compare import format_comparisons

    assert list(format_comparisons(comp)["corpus"])[-1] == "pooled"
    # a pooled row over fewer corpora than the table's (one corpus's runs held or unfinished) names those left out
    partial = comp.copy()
    partial.loc[partial.index[-1], "deltas"] = json.dumps({tiny_corpus.name: 0.01})
    assert list(format_comparisons(partial)["corpus"])[-1] == "pooled (without tiny-copy)"
    # and one the table lacks altogether (no finished pair there yet), given the study's corpora
    assert list(format_comparisons(comp, [tiny_corpus.name, "tiny-copy", "tiny-3"])["corpus"])[-1] == (
        "pooled (without tiny-3)"
    )
    from taskrel.plots import comparison_forest

    ax = comparison_forest(comp).axes[0]  # the pooled row's dots are the corpora's Δ, on the numeric axis
    assert ax.xaxis.get_converter() is None  # a dict of corpus names once made it a category axis
    labels = [t.get_text() for t in comparison_forest(partial).axes[0].get_yticklabels()]
    assert labels[-1].startswith("pooled (without tiny-copy): mt-mean")  # the figure says so too

    # a run whose test predictions are gone: its corpus keeps Δ but no bootstrap, and nothing is pooled from it
    (out / "mt-mean" / "tiny-copy" / "seed1" / "test_predictions.jsonl").unlink()
    assert main(["run", str(write(tmp_path, text)), "--out", str(out), "--summarise"]) == 0
    comp = pd.read_csv(out / "comparisons.csv").set_index("corpus")
    assert list(comp.index) == [tiny_corpus.name, "tiny-copy"]
    assert comp.loc["tiny-copy", "delta"] == pytest.approx(pooled_parts[1])
    assert pd.isna(comp.loc["tiny-copy", "p"]) and comp.loc["tiny-copy", "verdict"] == "undetermined"
    assert "test predictions missing" in comp.loc["tiny-copy", "unit"]


def test_a_seed_offset_variant_is_an_a_a_check(tiny_corpus, tmp_path):
    text = RUNS_STUDY.format(corpus=tiny_corpus).replace(
        "  mt-mean: {model: {tasks: [ner, mtcls, bcls, mcls], pooling: mean}}",
        "  single-aa: {seed_offset: 100, model: {tasks: [ner]}}",
    )
    text = text.replace("kind: runs", "kind: runs\nbaseline: {single-aa: single}")
    out = tmp_path / "out"
    assert main(["run", str(write(tmp_path, text)), "--out", str(out), "--no-progress"]) == 0
    name = tiny_corpus.name
    assert sorted(p.name for p in (out / "single-aa" / name).iterdir()) == ["seed101", "seed102"]
    results = pd.read_csv(out / "results.csv").set_index(["variant", "seed"])
    assert results.loc[("single-aa", 1), "train_seed"] == 101 and results.loc[("single", 1), "train_seed"] == 1
    comp = pd.read_csv(out / "comparisons.csv")
    assert list(comp["variant"]) == ["single-aa"] and comp["seeds"].iloc[0] == 2  # paired by the study's seed
    for bad in ("-1", "1.5", "true"):
        with pytest.raises(ConfigError, match="seed_offset"):
            load_study(write(tmp_path, text.replace("seed_offset: 100", f"seed_offset: {bad}")))


def test_an_empty_variant_is_refused_not_run_on_defaults(tmp_path):
    text = RUNS_STUDY.format(corpus="x").replace("  single: {model: {tasks: [ner]}}", "  single:")
    with pytest.raises(ConfigError, match=r"variants.single is empty; write \{\}"):
        load_study(write(tmp_path, text))


def test_a_tuned_variant_waits_for_its_tuning_study_then_takes_its_best_trial(tiny_corpus, tmp_path, capsys):
    import json

    tune_dir = tmp_path / "tune" / tiny_corpus.name
    text = RUNS_STUDY.format(corpus=tiny_corpus).replace(
        "  mt-mean: {model: {tasks: [ner, mtcls, bcls, mcls], pooling: mean}}",
        f"  tuned: {{tuned_from: '{tmp_path}/tune/{{corpus}}', model: {{tasks: [ner, bcls]}}}}",
    )
    text = text.replace("kind: runs", "kind: runs\nbaseline: single")
    study = load_study(write(tmp_path, text))
    out = tmp_path / "out"
    assert [v for v, *_ in study.run_configs(out)] == ["single", "single"]  # tuned: waiting
    assert main(["run", str(write(tmp_path, text)), "--out", str(out), "--no-progress"]) == 0
    assert "waiting: tuned on tiny" in capsys.readouterr().err  # the log
    assert main(["estimate", str(write(tmp_path, text)), "--out", str(out), "--no-probe"]) == 0
    assert "not counted, waiting: tuned on tiny" in capsys.readouterr().out
    tune_dir.mkdir(parents=True)
    best = {"weights": {"ner": 1.0, "bcls": 0.02}, "params": {"w_bcls": 0.02, "lr": 0.003}, "dev_score": 0.9}
    (tune_dir / "best.json").write_text(json.dumps(best))
    tuning = TuneConfig(RunConfig(DataConfig(str(tiny_corpus)), ModelConfig("tiny", ["ner", "bcls"]), TrainConfig()))
    (tune_dir / "tune.json").write_text(json.dumps(tuning.to_dict()))  # its trials trained with seed 1
    with pytest.raises(ConfigError, match="variant tuned on tiny: seeds \\[1, 2\\] include seed 1, the seed every"):
        load_study(write(tmp_path, text))  # the tuned settings at their own seed: the selected trial itself
    tuning.base.train.seed = 7
    (tune_dir / "tune.json").write_text(json.dumps(tuning.to_dict()))
    tuned = [cfg for v, _, _, cfg in load_study(write(tmp_path, text)).run_configs(out) if v == "tuned"]
    assert len(tuned) == 2
    assert all(c.train.weights == {"ner": 1.0, "bcls": 0.02} and c.train.lr == 0.003 for c in tuned)
    assert main(["run", str(write(tmp_path, text)), "--out", str(out), "--no-progress"]) == 0
    comp = pd.read_csv(out / "comparisons.csv")
    assert list(comp["variant"]) == ["tuned"] and comp["seeds"].iloc[0] == 2
    # the report sets the dev score the settings were selected on beside their dev scores at this study's seeds
    from taskrel.report import study_blocks
    from taskrel.rundir import RunDir

    blocks = study_blocks(out)
    assert ("h2", "Tuned settings: the dev score they were selected on, and at other seeds") in blocks
    table = next(b[1] for b in blocks if b[0] == "table" and "selection gap" in b[1])
    devs = pd.Series([RunDir(out / "tuned" / tiny_corpus.name / f"seed{s}").score("dev") for s in (1, 2)])
    row = table.iloc[0]
    assert (row["variant"], row["corpus"], row["seeds"]) == ("tuned", tiny_corpus.name, 2)
    assert row["selected (tuning seed)"] == "90.00" and row["selection gap"] == f"{100 * (0.9 - devs.mean()):+.2f}"
    # a run not finished yet (here: never started) is left out, not read
    import shutil

    from taskrel.report import tuned_selection_blocks

    shutil.rmtree(out / "tuned" / tiny_corpus.name / "seed2")
    record = json.loads((out / "study.json").read_text())
    row = tuned_selection_blocks(out, record)[-1][1].iloc[0]
    assert row["seeds"] == 1 and row["selection gap"] == f"{100 * (0.9 - devs[0]):+.2f}"
    assert row["same settings, other seeds"] == f"{100 * devs[0]:.2f}"  # one seed has no spread: no "± 0.00"


def test_several_studies_run_in_turn_and_one_failing_does_not_stop_the_rest(tiny_corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = write(tmp_path, RUNS_STUDY.format(corpus=tiny_corpus).replace("seeds: [1, 2]", "seeds: [1]"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(RUNS_STUDY.format(corpus=tmp_path / "gone").replace("tiny-runs", "gone-runs"))
    assert main(["run", str(good), str(tmp_path / "typo.yaml"), "--no-progress"]) == 2
    assert "typo.yaml: no such study file" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # every file is checked before anything runs
    assert main(["run", "--check", str(good), str(bad)]) == 0  # the files are sound; nothing trains
    assert "2 study file(s) checked: tiny-runs, gone-runs" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()
    assert main(["run", str(good), str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "--report-root" in capsys.readouterr().err
    assert main(["run", str(bad), str(good), "--no-progress", "--report-root", "reports"]) == 2
    err = capsys.readouterr().err
    assert "error in study gone-runs" in err and "1 of 2 studies failed: gone-runs" in err
    assert (tmp_path / "runs" / "tiny-runs" / "results.csv").is_file()
    assert (tmp_path / "reports" / "tiny-runs" / "report.md").is_file()


def test_a_variant_may_have_several_baselines_as_a_list_of_pairs(tmp_path):
    text = RUNS_STUDY.format(corpus="x").replace("  mt-mean:", "  mt-max: {model: {tasks: [ner, mtcls]}}\n  mt-mean:")
    pairs = "baseline: [[mt-mean, single], [mt-mean, mt-max], [mt-max, single]]\n"
    assert load_study(write(tmp_path, text + pairs)).comparisons() == [
        ("mt-mean", "single"),
        ("mt-mean", "mt-max"),
        ("mt-max", "single"),
    ]
    for bad, message in [
        ("baseline: [[mt-mean, single, mt-max]]\n", "[variant, baseline] pairs"),
        ("baseline: [mt-mean, single]\n", "[variant, baseline] pairs"),
        ("baseline: [[single, single]]\n", "[variant, baseline] pairs"),
        ("baseline: [[mt-mean, single], [mt-mean, single]]\n", "listed twice"),
        ("baseline: [[mt-mean, nope]]\n", "baseline 'nope'"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_study(write(tmp_path, text + bad))


def test_a_variant_shares_the_runs_of_another_study_and_checks_their_settings(tiny_corpus, tmp_path, monkeypatch):
    """``runs_in``: the other study's finished runs are used, not retrained, and only under the same settings;
    a missing one is trained there; comparisons take them like the study's own."""
    import taskrel.train
    from taskrel.rundir import SettingsDiffer

    first = tmp_path / "first"
    one_seed = RUNS_STUDY.format(corpus=tiny_corpus).replace("seeds: [1, 2]", "seeds: [1]")
    assert main(["run", str(write(tmp_path, one_seed)), "--out", str(first), "--no-progress"]) == 0
    name = tiny_corpus.name
    stamp = (first / "single" / name / "seed1" / "metrics.json").stat().st_mtime_ns
    shared = RUNS_STUDY.format(corpus=tiny_corpus).replace(
        "  mt-mean: {model: {tasks: [ner, mtcls, bcls, mcls], pooling: mean}}",
        f"  single-shared: {{runs_in: {first / 'single'}, model: {{tasks: [ner]}}}}\n"
        "  single-longer: {model: {tasks: [ner]}, train: {epochs: 2}}",
    )
    shared = shared.replace("  single: {model: {tasks: [ner]}}\n", "")
    shared = shared.replace("kind: runs", "kind: runs\nbaseline: {single-longer: single-shared}")
    trained = []
    real = taskrel.train.train
    monkeypatch.setattr(taskrel.train, "train", lambda cfg, **kw: trained.append(cfg.out) or real(cfg, **kw))
    second = tmp_path / "second"
    assert main(["run", str(write(tmp_path, shared)), "--out", str(second), "--no-progress"]) == 0
    # seed 1 was the first study's, untouched; seed 2 was trained into the first study's folder
    assert (first / "single" / name / "seed1" / "metrics.json").stat().st_mtime_ns == stamp
    assert str(first / "single" / name / "seed1") not in trained
    assert (first / "single" / name / "seed2" / "metrics.json").is_file()
    assert not (second / "single-shared").exists()
    results = pd.read_csv(second / "results.csv")
    assert sorted(results[results["variant"] == "single-shared"]["seed"]) == [1, 2]
    assert pd.read_csv(second / "comparisons.csv")["seeds"].iloc[0] == 2
    # the report's machine table counts the shared runs, which live in the first study's folder, with its own
    from taskrel.report import machine_blocks

    assert machine_blocks(second)[-1][1]["finished runs"].sum() == len(results) == 4
    # the shared runs under other settings stop the study before it trains anything, naming the setting
    trained.clear()
    other = shared.replace("single-shared: {runs_in", "single-shared: {train: {lr: 5.0e-4}, runs_in")
    with pytest.raises(SettingsDiffer, match=r"train.lr: 0.001 -> 0.0005"):
        from taskrel.experiments import run_study

        run_study(write(tmp_path, other), out=tmp_path / "third", progress=False)
    assert trained == []
    # {corpus} may stand in the folder
    pattern = shared.replace(f"runs_in: {first / 'single'}", f"runs_in: '{first / 'single' / '{corpus}'}'")
    study = load_study(write(tmp_path, pattern))
    outs = [cfg.out for v, _, _, cfg in study.run_configs(tmp_path) if v == "single-shared"]
    assert outs == [str(first / "single" / name / f"seed{s}") for s in (1, 2)]
    with pytest.raises(ConfigError, match="runs_in must be a folder path"):
        load_study(write(tmp_path, shared.replace(f"runs_in: {first / 'single'}", "runs_in: 3")))


def test_runs_in_may_share_some_corpora_only(tiny_corpus, tmp_path):
    """``runs_in: {CORPUS: FOLDER}`` shares the corpora it names, each from its folder; the others are the
    study's own. Anything but a corpus of the study mapped to a folder path is refused, naming the key."""
    other = write_corpus(tmp_path / "other", conll("a/B-X b/O"))
    text = RUNS_STUDY.format(corpus=tiny_corpus).replace(
        f"corpora: [{tiny_corpus}]", f"corpora: [{tiny_corpus}, {other}]"
    )
    shared = tmp_path / "budget" / "single-e80"
    mapped = text.replace("  single: {model:", f"  single: {{runs_in: {{{tiny_corpus.name}: {shared}}}, model:")
    study = load_study(write(tmp_path, mapped))
    outs = {(Path(c).name, s): cfg.out for v, c, s, cfg in study.run_configs(tmp_path / "out") if v == "single"}
    assert outs == {
        (tiny_corpus.name, 1): str(shared / tiny_corpus.name / "seed1"),
        (tiny_corpus.name, 2): str(shared / tiny_corpus.name / "seed2"),
        ("other", 1): str(tmp_path / "out" / "single" / "other" / "seed1"),
        ("other", 2): str(tmp_path / "out" / "single" / "other" / "seed2"),
    }
    for bad, message in [
        (f"{{nope: {shared}}}", "maps corpora of the study"),
        ("{}", "maps corpora of the study"),
        (f"{{{tiny_corpus.name}: 3}}", "runs_in must be a folder path"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_study(write(tmp_path, text.replace("  single: {model:", f"  single: {{runs_in: {bad}, model:")))


def test_a_finished_run_whose_settings_were_edited_since_stops_the_study(tiny_corpus, tmp_path, capsys):
    """Editing a variant (a free key) leaves its finished runs in place: they are refused, not reported as if
    made under the new settings."""
    text = RUNS_STUDY.format(corpus=tiny_corpus).replace("seeds: [1, 2]", "seeds: [1]")
    out = tmp_path / "out"
    assert main(["run", str(write(tmp_path, text)), "--out", str(out), "--no-progress"]) == 0
    edited = text.replace("single: {model: {tasks: [ner]}}", "single: {model: {tasks: [ner]}, train: {lr: 5.0e-4}}")
    capsys.readouterr()
    assert main(["run", str(write(tmp_path, edited)), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "single/tiny/seed1 holds a run made with other settings (train.lr: 0.001 -> 0.0005)" in err
    assert main(["run", str(write(tmp_path, edited)), "--out", str(out), "--summarise"]) == 2
    assert "train.lr: 0.001 -> 0.0005" in capsys.readouterr().err


def test_a_study_folder_is_re_analysed_as_it_was_run(tiny_corpus, tmp_path, capsys):
    """``--summarise`` with a file whose defaults changed since is refused (naming them and the way out); the
    folder itself, read from its record, re-analyses the runs."""
    text = RUNS_STUDY.format(corpus=tiny_corpus).replace("seeds: [1, 2]", "seeds: [1]")
    out = tmp_path / "out"
    assert main(["run", str(write(tmp_path, text)), "--out", str(out), "--no-progress"]) == 0
    before = pd.read_csv(out / "results.csv")
    (out / "results.csv").unlink()
    changed = text.replace("lr: 1.0e-3", "lr: 2.0e-3")
    capsys.readouterr()
    assert main(["run", str(write(tmp_path, changed)), "--out", str(out), "--summarise"]) == 2
    err = capsys.readouterr().err
    assert "defaults.train.lr: 0.001 -> 0.002" in err and f"taskrel run {out} --summarise" in err
    assert not (out / "results.csv").exists()
    assert main(["run", str(out), "--summarise"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), before)
    study = load_study(out / "study.json")
    assert study.name == "tiny-runs" and study.file == str(out / "study.json")
    assert load_study(out).defaults == load_study(write(tmp_path, text)).defaults


def test_a_queue_estimate_totals_its_studies_and_counts_a_second_turn_once(tiny_corpus, tmp_path, capsys):
    from taskrel.estimate import Estimate, queue_lines

    lines = queue_lines([(Estimate(10, 4, measured={"a": (4, 60.0, 6, 7200.0)}), 1), (Estimate(5, 0), 1)], False)
    assert lines[0] == "queue of 2 studies: 11 runs to train"
    assert lines[1] == "  6 of them at their study's measured pace: about 2.0 h" and lines[2].startswith("  5 runs")
    # a study of two workers: its runs took their time beside each other, so what is left takes half as long
    assert queue_lines([(Estimate(10, 4, measured={"a": (4, 60.0, 6, 7200.0)}), 2)], False)[1].endswith("1.0 h")
    paced = Estimate(10, 4, measured={"a": (4, 60.0, 6, 7200.0)}).lines(workers=2, probed=False)
    assert paced[-1].endswith("(this average where there are none), 2 at a time: 1.0 h")
    probed = queue_lines([(Estimate(2, 0, low_seconds=3600, high_seconds=7200), 2)], True)
    assert probed[-1] == "  every run left by the probes: 30 min to 1.0 h"  # two workers halve a study's time
    f = write(tmp_path, RUNS_STUDY.format(corpus=tiny_corpus))
    assert main(["estimate", "--no-probe", str(f), str(f)]) == 0
    out = capsys.readouterr().out
    assert out == "4 runs, 0 already finished, 4 to train\n"  # named twice, counted once: one study's estimate
    assert main(["estimate", str(f), str(f), "--out", str(tmp_path / "o")]) == 2


def test_a_study_never_mixes_the_precisions_auto_resolves_to(tiny_corpus, tmp_path, monkeypatch):
    import json

    from taskrel.experiments import MixedPrecision, run_study, summarise

    one_seed = tmp_path / "one.yaml"
    one_seed.write_text(RUNS_STUDY.format(corpus=tiny_corpus).replace("seeds: [1, 2]", "seeds: [1]"))
    two_seeds = write(tmp_path, RUNS_STUDY.format(corpus=tiny_corpus))
    out = tmp_path / "out"
    monkeypatch.setattr("taskrel.precision.cpu_has_fast_bf16", lambda: True)  # a CPU with native bf16
    run_study(one_seed, out, progress=False, log=lambda *_: None)
    monkeypatch.setattr("taskrel.precision.cpu_has_fast_bf16", lambda: False)  # the study resumed on an AVX2 CPU
    with pytest.raises(MixedPrecision, match=r"its 2 finished runs trained in bf16.*would train in fp32"):
        run_study(two_seeds, out, progress=False, log=lambda *_: None)
    assert not (out / "single" / "tiny" / "seed2").exists()  # nothing trained
    # taskrel status says why this machine trains none of what is left; with nothing left, it says nothing
    from taskrel.experiments import not_trainable_here

    why = "its finished runs trained in bf16, and here precision auto means fp32"
    assert not_trainable_here(load_study(two_seeds), out) == why
    assert not_trainable_here(load_study(one_seed), out) is None  # nothing left to train
    monkeypatch.setattr("taskrel.precision.cpu_has_fast_bf16", lambda: True)
    assert not_trainable_here(load_study(two_seeds), out) is None
    monkeypatch.setattr("taskrel.precision.cpu_has_fast_bf16", lambda: False)
    # runs already mixed (by hand, or before this check) are refused by name when the tables are built
    config = out / "single" / "tiny" / "seed1" / "config.json"
    saved = json.loads(config.read_text())
    saved["resolved"]["precision"] = "fp32"
    config.write_text(json.dumps(saved))
    with pytest.raises(MixedPrecision, match=r"1 in fp32.*fp32 ones: single/tiny/seed1"):
        summarise(out, load_study(one_seed))
    # a variant that states its precision is what it says: a precision study's arms differ on purpose
    stated = tmp_path / "stated.yaml"
    text = RUNS_STUDY.format(corpus=tiny_corpus).replace("seeds: [1, 2]", "seeds: [1]")
    stated.write_text(text.replace("mt-mean: {model:", "mt-mean: {train: {precision: fp32}, model:"))
    monkeypatch.setattr("taskrel.precision.cpu_has_fast_bf16", lambda: True)
    run_study(stated, tmp_path / "stated", progress=False, log=lambda *_: None)
    assert len(summarise(tmp_path / "stated", load_study(stated))) == 2
    # a study that states bf16 is refused up front where the CPU only emulates it, before its folder exists
    from taskrel.precision import PrecisionUnavailable

    monkeypatch.setattr("taskrel.precision.cpu_has_fast_bf16", lambda: False)
    bf16 = tmp_path / "bf16.yaml"
    bf16.write_text(text.replace("threads: 1}", "threads: 1, precision: bf16}"))
    with pytest.raises(PrecisionUnavailable, match="study tiny-runs: precision bf16 was asked for"):
        run_study(bf16, tmp_path / "bf16", progress=False, log=lambda *_: None)
    assert not (tmp_path / "bf16").exists()
    assert not_trainable_here(load_study(bf16), tmp_path / "bf16") == "it states bf16, which this CPU only emulates"


def test_an_embedding_study_trains_its_models_two_at_once_with_the_same_embeddings(tiny_corpus, tmp_path):
    """workers: 2 in an embed study trains its single-task models in two processes first (no test pass, as the
    study itself would), then embeds them: the same embeddings as one model at a time (1 thread each)."""
    import numpy as np

    from taskrel.experiments import run_study
    from taskrel.rundir import RunDir

    text = KIND_STUDY.format(kind="embed", corpus=tiny_corpus, section=KIND_SECTIONS["embed"].format())
    said = []
    run_study(write(tmp_path, text), tmp_path / "one", progress=False, log=lambda *_: None)
    run_study(write(tmp_path, text + "workers: 2\n"), tmp_path / "two", progress=False, log=said.append)
    assert any("2 runs, 0 already done, 2 workers" in line for line in said)
    models = tmp_path / "two" / tiny_corpus.name / "models"
    assert sorted(p.name for p in models.iterdir()) == ["bcls", "ner"]
    assert all(RunDir(p).done and RunDir(p).metrics["test"] is None for p in models.iterdir())  # test never read
    one, two = (np.load(tmp_path / d / tiny_corpus.name / "embeddings.npz") for d in ("one", "two"))
    assert sorted(one.files) == sorted(two.files) and all(np.array_equal(one[k], two[k]) for k in one.files)


def test_an_embedding_study_restored_without_weights_trains_again_the_models_it_still_has_to_embed(
    tiny_corpus, tmp_path, monkeypatch
):
    """Runs reach a fresh checkout without their weights (archive): a model whose embeddings were not computed
    before the archive was cut is set aside and trained again, two at once, instead of the study failing to
    load weights that are not there; the embeddings are those of the study run in one go."""
    import numpy as np

    from taskrel.archive import pack, unpack
    from taskrel.experiments import run_study

    text = KIND_STUDY.format(kind="embed", corpus=tiny_corpus, section=KIND_SECTIONS["embed"].format())
    text += "workers: 2\n"
    study, out = write(tmp_path, text), Path("runs/study")  # a checkout's relative folder
    for session in ("session1", "session2"):
        (tmp_path / session).mkdir()
    monkeypatch.chdir(tmp_path / "session1")
    run_study(study, out, progress=False, log=lambda *_: None)
    pack(out, tmp_path / "runs.tar.gz")
    monkeypatch.chdir(tmp_path / "session2")  # a fresh checkout
    unpack(tmp_path / "runs.tar.gz", out)
    first, fresh = tmp_path / "session1" / out, out
    section = fresh / tiny_corpus.name
    assert not (section / "models/ner/model").exists()  # no weights came with the archive
    for f in section.rglob("ner.*"):  # the session ended after the models trained, before ner was embedded
        f.unlink()
    (section / "embeddings.npz").unlink()
    # status and estimate count it as still to train (its record says finished), bcls as finished
    from taskrel.estimate import estimate
    from taskrel.experiments import load_study
    from taskrel.progress import FINISHED, NOT_STARTED, study_states

    states = {s.name.split("/")[-1]: s for s in study_states(load_study(study), out)}
    assert states["ner"].state == NOT_STARTED and "trains again" in states["ner"].note
    assert states["bcls"].state == FINISHED
    assert estimate(load_study(study), out, do_probe=False).done == 1
    said = []
    run_study(study, out, progress=False, log=said.append)
    assert any("restored without its weights; trained again" in line and "models/ner" in line for line in said)
    assert (section / "models/ner.restored/metrics.json").is_file() and (section / "models/ner/model").exists()
    assert not (section / "models/bcls/model").exists()  # embedded already: not trained again
    a, b = (np.load(d / tiny_corpus.name / "embeddings.npz") for d in (first, fresh))
    assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)


def test_a_tuning_study_refuses_to_confirm_at_its_trials_seed_before_it_tunes(tiny_corpus, tmp_path):
    section = KIND_SECTIONS["tune"].replace("confirm_seeds: [2]", "confirm_seeds: [1, 2]")
    text = KIND_STUDY.format(kind="tune", corpus=tiny_corpus, section=section.format())
    with pytest.raises(ConfigError, match=r"include seed 1, the seed every tuning trial trained with"):
        load_study(write(tmp_path, text))
