import json
import os
import sys
import time

import numpy as np
import pandas as pd
import pytest

from taskrel.cli import main
from taskrel.config import ConfigError, DataConfig, GridConfig, ModelConfig, RunConfig, TrainConfig
from taskrel.grid import Cell, grid_cells, load_grid, run_grid

from conftest import TINY_RUN

QUIET = {"progress": False, "log": lambda *_: None}


def tiny_grid(corpus, tasks=("ner", "bcls"), seeds=(1, 2), workers=1):
    base = RunConfig(
        DataConfig(str(corpus)),
        ModelConfig("tiny", list(tasks)),
        TrainConfig(epochs=2, batch_size=4, lr=1e-3, threads=1),
    )
    return GridConfig(base, list(tasks), list(seeds), [1.0, 0.5], workers, bootstrap_samples=200)


def test_cells_are_singles_then_ordered_pairs():
    cells = grid_cells(["a", "b", "c"], [1])
    assert cells[:3] == [Cell("a", None, 1), Cell("b", None, 1), Cell("c", None, 1)]
    assert {(c.main, c.secondary) for c in cells[3:]} == {
        ("a", "b"),
        ("a", "c"),
        ("b", "a"),
        ("b", "c"),
        ("c", "a"),
        ("c", "b"),
    }
    assert len(grid_cells(["a", "b", "c", "d"], [1, 2, 3])) == 3 * (4 + 12)


def test_a_two_task_grid_end_to_end(tiny_corpus, tmp_path):
    grid = tiny_grid(tiny_corpus)
    grid.base.train.patience = 2
    transfer = run_grid(grid, tmp_path / "g", **QUIET)
    out = tmp_path / "g"
    for f in ("grid.json", "runs.csv", "transfer.csv", "heatmap.png", "learning_curves.png"):
        assert (out / f).stat().st_size > 0, f
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 2 * (2 + 2)  # seeds x (singles + pairs)
    assert set(zip(runs["main"], runs["secondary"].fillna(""))) == {
        ("ner", ""),
        ("bcls", ""),
        ("ner", "bcls"),
        ("bcls", "ner"),
    }
    assert (runs[runs["secondary"].notna()]["secondary_weight"] == 0.5).all()
    assert set(runs[runs["main"] == "ner"]["metric"]) == {"f1"} and set(runs[runs["main"] == "bcls"]["metric"]) == {
        "accuracy"
    }
    # the stop check runs per main task (each has its own metric), over its cells' runs
    check = pd.read_csv(out / "stop_check.csv")
    assert list(check["main"]) == ["ner", "bcls"] and (check["runs"] == 4).all() and (check["variants"] == 2).all()
    # and so does the patience sweep: patience 1 and 2 replayed over every cell's dev curve
    sweep = pd.read_csv(out / "patience_sweep.csv")
    assert list(sweep.columns[:2]) == ["main", "variant"] and len(sweep) == 8 * 2
    own = sweep[sweep["patience"] == 2]
    assert own["same_selection"].all() and (own["dev_lost"] == 0).all()
    cfg = json.loads((out / "cells/ner+bcls/seed2/config.json").read_text())
    assert cfg["model"]["tasks"] == ["ner", "bcls"] and cfg["train"]["weights"] == {"ner": 1.0, "bcls": 0.5}
    assert cfg["train"]["seed"] == 2

    # the transfer table is the per-seed difference of the runs' scores
    assert list(transfer["main"]) == ["ner", "bcls"] and (transfer["n_seeds"] == 2).all()
    score = {(r.main, r.secondary if isinstance(r.secondary, str) else "", r.seed): r.score for r in runs.itertuples()}
    for r in transfer.itertuples():
        deltas = [score[(r.main, r.secondary, s)] - score[(r.main, "", s)] for s in (1, 2)]
        assert r.mean_delta == pytest.approx(sum(deltas) / 2)
        assert 0 <= r.p_bootstrap <= 1


def test_finished_cells_are_never_rerun_and_killed_ones_are_redone(tiny_corpus, tmp_path):
    grid = tiny_grid(tiny_corpus, seeds=[1])
    out = tmp_path / "g"
    run_grid(grid, out, **QUIET)
    finished = out / "cells/ner/seed1/metrics.json"
    stamp = finished.stat().st_mtime_ns
    killed = out / "cells/ner+bcls/seed1"
    before = json.loads((killed / "metrics.json").read_text())
    (killed / "metrics.json").unlink()  # as if killed before it finished
    os.remove(killed / "test_predictions.jsonl")
    logs = []
    run_grid(grid, out, progress=False, log=logs.append)
    assert "3 already done, 1 to run" in logs[0]
    assert logs[1].startswith("ner+bcls seed 1: test ner ")  # one line per finished cell, with the pace
    assert "(1 of 1 cells done in " in logs[1]
    assert finished.stat().st_mtime_ns == stamp
    assert json.loads((killed / "metrics.json").read_text()) == before  # redone, same numbers


def test_contrasts_compare_two_transfers_and_may_be_added_to_a_finished_grid(tiny_corpus, tmp_path):
    grid = tiny_grid(tiny_corpus)
    out = tmp_path / "g"
    run_grid(grid, out, **QUIET)
    assert not (out / "contrasts.csv").exists()
    grid.contrasts = [["ner|bcls", "bcls|ner"]]
    transfer = run_grid(grid, out, **QUIET).set_index(["main", "secondary"])  # analysis only: nothing retrains
    c = pd.read_csv(out / "contrasts.csv").iloc[0]
    first, second = transfer.loc[("ner", "bcls")], transfer.loc[("bcls", "ner")]
    assert c["difference"] == pytest.approx(first["mean_delta"] - second["mean_delta"])
    assert c["joint"] and c["seeds"] == 2 and 0 < c["p"] <= 1 and c["p_adjusted"] == pytest.approx(c["p"])
    assert c["verdict"] in ("first larger", "second larger", "undetermined")
    if not (first["converged"] and second["converged"]):
        assert c["verdict"] == "undetermined"
    from taskrel.report import write_report

    assert "Contrasts: is one transfer larger than another?" in write_report(out, tmp_path / "r").read_text()
    for bad in (["ner|bcls", "ner|bcls"], ["ner|bcls"], ["ner|mcls", "bcls|ner"], ["ner|ner", "bcls|ner"]):
        with pytest.raises(ConfigError, match="contrast"):
            tiny_grid(tiny_corpus).__class__(grid.base, grid.tasks, [1], contrasts=[bad])
    from taskrel.config import parse_contrasts

    assert parse_contrasts("bcls|mcls vs mcls|bcls, a|b vs c|d") == [["bcls|mcls", "mcls|bcls"], ["a|b", "c|d"]]


def test_a_grid_of_named_pairs_trains_those_and_their_main_tasks_alone(tiny_corpus, tmp_path):
    cells = grid_cells(["a", "b", "c"], [1, 2], noise_threads=2, pairs=["b|a", "b|c"])
    assert [(c.main, c.secondary, c.seed, c.threads) for c in cells] == [
        ("b", None, 1, None),
        ("b", None, 2, None),
        ("b", "a", 1, None),
        ("b", "c", 1, None),
        ("b", "a", 2, None),
        ("b", "c", 2, None),
        ("b", None, 1, 2),
    ]
    grid = tiny_grid(tiny_corpus, tasks=("ner", "bcls", "mcls"), seeds=[1, 2])
    grid = GridConfig(grid.base, grid.tasks, grid.seeds, grid.pair_weights, pairs=["bcls|ner", "bcls|mcls"],
                      contrasts=[["bcls|ner", "bcls|mcls"]], bootstrap_samples=200)  # fmt: skip
    assert grid.mains == ["bcls"] and grid.ordered_pairs == [("bcls", "ner"), ("bcls", "mcls")]
    out = tmp_path / "g"
    transfer = run_grid(grid, out, **QUIET)
    trained = sorted(str(p.relative_to(out / "cells")) for p in out.glob("cells/*/seed*"))
    assert trained == sorted(f"{c}/seed{s}" for c in ("bcls", "bcls+mcls", "bcls+ner") for s in (1, 2))
    assert list(zip(transfer["main"], transfer["secondary"])) == [("bcls", "ner"), ("bcls", "mcls")]
    # Holm over these two pairs only: the larger p is adjusted to itself or above, the smaller doubled (at most 1)
    assert transfer["p_adjusted"].min() == pytest.approx(min(1.0, 2 * transfer["p"].min()))
    assert len(pd.read_csv(out / "contrasts.csv")) == 1
    assert load_grid(out).pairs == ["bcls|ner", "bcls|mcls"]
    from taskrel.report import write_report

    assert "the pairs bcls|ner, bcls|mcls only, beside" in write_report(out, tmp_path / "r").read_text()
    for bad, match in (
        (dict(pairs=["bcls|bcls"]), "pairs"),
        (dict(pairs=["bcls|crf"]), "pairs"),
        (dict(pairs=["bcls|ner", "bcls|ner"]), "each pair once"),
        (dict(pairs=["bcls|ner"], contrasts=[["bcls|ner", "ner|bcls"]]), "among the grid's pairs"),
    ):
        with pytest.raises(ConfigError, match=match):
            GridConfig(grid.base, grid.tasks, [1], **bad)


def test_a_grid_folder_refuses_other_settings(tiny_corpus, tmp_path):
    run_grid(tiny_grid(tiny_corpus, seeds=[1]), tmp_path / "g", **QUIET)
    with pytest.raises(ConfigError, match="other settings"):
        run_grid(tiny_grid(tiny_corpus, seeds=[1, 2]), tmp_path / "g", **QUIET)
    assert load_grid(tmp_path / "g").seeds == [1]


def test_two_workers_give_the_same_grid(tiny_corpus, tmp_path):
    one = run_grid(tiny_grid(tiny_corpus, seeds=[1]), tmp_path / "one", **QUIET)
    two = run_grid(tiny_grid(tiny_corpus, seeds=[1], workers=2), tmp_path / "two", **QUIET)
    pd.testing.assert_frame_equal(one, two)


def test_grid_cli_and_resume_from_the_folder_alone(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "g"
    args = ["grid", "--data", str(tiny_corpus), "--tasks", "ner,mcls", "--seeds", "1", "--epochs", "1"]
    args += ["--out", str(out), *TINY_RUN]
    assert main(args) == 0
    assert "mean_delta" in capsys.readouterr().out
    assert main(["grid", "--out", str(out), "--no-progress"]) == 0  # settings read from grid.json
    assert len(pd.read_csv(out / "runs.csv")) == 4


def _queue_log(out):
    return [json.loads(x) for x in (out / "queue_log.jsonl").read_text().splitlines()]


def _worker_after_barrier(barrier, *args, **kwargs) -> int:
    """A queue worker that starts only once the other has imported everything: on a loaded machine one spawned
    process can otherwise take seconds longer to start, and the first would run every cell alone."""
    from taskrel.grid import _queue_worker

    barrier.wait(timeout=120)
    return _queue_worker(*args, **kwargs)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_concurrent_workers_on_one_storage_run_each_cell_once(tiny_corpus, tmp_path, request, backend):
    import multiprocessing as mp

    grid = tiny_grid(tiny_corpus, seeds=[1, 2])
    out = tmp_path / "g"
    out.mkdir()
    url = f"sqlite:///{tmp_path / 'queue.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    args = (barrier, grid.to_dict(), str(out), url, "q", 1)
    procs = [ctx.Process(target=_worker_after_barrier, args=args, kwargs={"poll": 0.2}) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    log = _queue_log(out)
    cells = [c.folder for c in grid_cells(grid.tasks, grid.seeds)]
    # every cell trained exactly once (on SQLite both workers may pop one trial: the second waits on the run's
    # lock, then reads the finished run, and says so)
    assert sorted(r["cell"] for r in log if not r.get("waited")) == sorted(cells)
    assert len({r["worker"] for r in log}) == 2  # and both workers took part

    import optuna

    study = optuna.load_study(study_name="q", storage=url)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.params["cell"] for t in complete) == sorted(cells)
    transfer = run_grid(grid, out, **QUIET)  # every cell is done: the tables come from the queue's runs
    assert len(transfer) == 2 and (transfer["n_seeds"] == 2).all()


@pytest.mark.parametrize("beats", [1, 0], ids=["died after a beat", "died before its first beat"])
def test_a_crashed_workers_cell_is_picked_up_again(tiny_corpus, tmp_path, beats):
    import optuna

    from taskrel.grid import _queue_worker
    from taskrel.workqueue import enqueue, open_study, trial_id

    grid = tiny_grid(tiny_corpus, seeds=[1])
    out = tmp_path / "g"
    out.mkdir()
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    names = [c.folder for c in grid_cells(grid.tasks, grid.seeds)]
    # a worker takes a cell, beats once (or never) and dies
    study, storage = open_study(url, "q", heartbeat=1, grace=2)
    enqueue(study, names)
    trial = study.ask()
    taken = trial.suggest_categorical("cell", names)
    for _ in range(beats):
        storage.record_heartbeat(trial_id(storage, study, trial.number))
    time.sleep(2.5)
    import signal

    def hung(*_):
        raise TimeoutError("the queue waited forever on a trial nobody runs")

    signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)  # a regression here hangs rather than fails
    try:
        assert _queue_worker(grid.to_dict(), str(out), url, "q", 1, heartbeat=1, grace=2, poll=0.2) == len(names)
    finally:
        signal.alarm(0)
    states = {t.number: t.state for t in optuna.load_study(study_name="q", storage=url).trials}
    assert states[trial.number] == optuna.trial.TrialState.FAIL
    assert sorted(r["cell"] for r in _queue_log(out)) == sorted(names) and taken in names


def test_a_cross_corpus_grid_uses_the_same_code_path(tiny_corpus, chem_corpus, tmp_path):
    base = RunConfig(DataConfig(""), ModelConfig("tiny"), TrainConfig(epochs=1, batch_size=4, lr=1e-3, threads=1))
    tasks = [f"{tiny_corpus}:ner", f"{chem_corpus}:ner"]
    grid = GridConfig(base, tasks, [1], [1.0, 1.0], bootstrap_samples=200)
    transfer = run_grid(grid, tmp_path / "g", **QUIET)
    assert (tmp_path / "g/cells/tiny.ner+chem.ner/seed1/metrics.json").is_file()
    assert (tmp_path / "g/cells/chem.ner/seed1/metrics.json").is_file()
    runs = pd.read_csv(tmp_path / "g/runs.csv")
    chem_alone = runs[(runs["main"] == tasks[1]) & runs["secondary"].isna()]["score"].iloc[0]
    chem_with = runs[(runs["main"] == tasks[1]) & (runs["secondary"] == tasks[0])]["score"].iloc[0]
    row = transfer[transfer["main"] == tasks[1]].iloc[0]
    assert row["mean_delta"] == pytest.approx(chem_with - chem_alone) and 0 <= row["p_bootstrap"] <= 1


def test_transfer_carries_convergence_verdicts_and_speed_transfer(tiny_corpus, tmp_path):
    grid = tiny_grid(tiny_corpus)
    transfer = run_grid(grid, tmp_path / "g", **QUIET)
    runs = pd.read_csv(tmp_path / "g" / "runs.csv")
    assert {"stopped", "converged", "steps", "threads", "aulc"} <= set(runs.columns)
    assert (tmp_path / "g" / "heatmap_speed.png").stat().st_size > 0
    for r in transfer.itertuples():
        assert r.verdict in ("helps", "hurts", "undetermined") and r.p_adjusted >= r.p_bootstrap
        if not r.converged:  # two epochs rarely converge: never a finding then
            assert r.verdict == "undetermined" and not r.significant
        assert np.isfinite(r.delta_aulc) and len(r.deltas_aulc.split(";")) == 2


def test_aulc_by_hand():
    from taskrel.rundir import aulc

    rec = [(1, 0.2), (2, 0.6), (3, 0.5)]
    # step function: 0 on [0,1), 0.2 on [1,2), 0.6 on [2,3), 0.5 at 3 carried to the horizon
    assert aulc(rec) == pytest.approx((0.2 + 0.6) / 3)
    assert aulc(rec, horizon=5) == pytest.approx((0.2 + 0.6 + 0.5 * 2) / 5)
    assert aulc(rec[:1], horizon=5) > aulc([(2, 0.2)], horizon=5)


@pytest.mark.parametrize("workers", [1, 2])
def test_every_cell_gets_the_study_thread_count_whatever_the_workers(tiny_corpus, tmp_path, workers):
    from taskrel.config import CELL_THREADS

    base = RunConfig(
        DataConfig(str(tiny_corpus)), ModelConfig("tiny", ["ner", "bcls"]), TrainConfig(epochs=1, batch_size=4)
    )
    grid = GridConfig(base, ["ner", "bcls"], [1], [1.0, 1.0], workers, bootstrap_samples=100)
    assert grid.base.train.threads == CELL_THREADS
    run_grid(grid, tmp_path / "g", **QUIET)
    runs = pd.read_csv(tmp_path / "g" / "runs.csv")
    assert set(runs["threads"]) == {CELL_THREADS}


def test_bootstrap_unit_is_a_grid_setting():
    base = RunConfig(DataConfig("x"), ModelConfig("tiny", ["ner", "bcls"]), TrainConfig())
    assert GridConfig(base, ["ner", "bcls"], [1]).bootstrap_unit == "block:10"
    assert GridConfig(base, ["ner", "bcls"], [1], bootstrap_unit="sentence").bootstrap_unit == "sentence"
    assert GridConfig(base, ["ner", "bcls"], [1], bootstrap_unit="document").bootstrap_unit == "document"
    for bad in ("block:0", "block:x", "paragraph"):
        with pytest.raises(ConfigError, match="bootstrap_unit"):
            GridConfig(base, ["ner", "bcls"], [1], bootstrap_unit=bad)


def test_grids_stop_early_by_default_and_train_does_not():
    from taskrel.cli import build_parser
    from taskrel.config import STUDY_MAX_EPOCHS, STUDY_PATIENCE

    grid = build_parser().parse_args(["grid", "--data", "x", "--out", "o"])
    assert grid.patience == STUDY_PATIENCE and grid.epochs == STUDY_MAX_EPOCHS
    assert build_parser().parse_args(["grid", "--data", "x", "--out", "o", "--patience", "2"]).patience == 2
    assert build_parser().parse_args(["train", "--data", "x", "--out", "o"]).patience is None


def test_oversubscribed_workers_are_warned_about(monkeypatch):
    from taskrel.grid import warn_oversubscribed

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    said = []
    warn_oversubscribed(2, 2, said.append)
    warn_oversubscribed(2, 1, said.append)
    warn_oversubscribed(1, 4, said.append)
    assert len(said) == 1 and "--workers 1" in said[0]


def test_heartbeat_and_grace_are_options_and_must_make_sense(tiny_corpus, tmp_path, capsys):
    from taskrel.cli import main

    args = ["grid", "--data", str(tiny_corpus), "--tasks", "ner,bcls", "--out", str(tmp_path / "g")]
    assert main([*args, "--heartbeat", "30", "--grace", "10"]) == 2
    assert "--grace (10 s) must be longer than --heartbeat (30 s)" in capsys.readouterr().err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_their_parent(tmp_path):
    import os
    import signal
    import subprocess

    script = (
        "import os, time\n"
        "from taskrel.workers import pool\n"
        "p = pool(1)\n"
        "print(p.submit(os.getpid).result(), flush=True)\n"
        "p.submit(time.sleep, 120)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        if open(f"/proc/{worker}/stat").read().split()[2] == "Z":  # a zombie has ended
            break
        time.sleep(0.1)
    else:
        pytest.fail("the worker outlived its killed parent")


def test_a_document_bootstrap_needs_document_boundaries_and_says_so_before_training(tiny_corpus, tmp_path):
    grid = tiny_grid(tiny_corpus)
    grid.bootstrap_unit = "document"
    with pytest.raises(ConfigError, match="no -DOCSTART- lines"):
        run_grid(grid, tmp_path / "g", **QUIET)
    assert not (tmp_path / "g").exists()


def test_with_workers_the_noise_cells_run_as_many_at_once_as_the_cores_take(tiny_corpus, tmp_path, monkeypatch):
    import contextlib
    from concurrent.futures import Future
    from pathlib import Path

    import taskrel.grid as grid_module

    pools = []

    class InProcess:  # runs each job at once, in this process; records what ran in which pool
        def __init__(self, size):
            pools.append((size, []))

        def submit(self, fn, cfg, threads):
            pools[-1][1].append((Path(cfg["out"]).parent.name + "/" + Path(cfg["out"]).name, threads))
            done = Future()
            done.set_result(fn(cfg, threads))
            return done

    monkeypatch.setattr(grid_module, "worker_pool", lambda size: contextlib.nullcontext(InProcess(size)))
    monkeypatch.setattr(grid_module.os, "cpu_count", lambda: 2)
    grid = tiny_grid(tiny_corpus, seeds=[1], workers=2)  # 1 thread per cell; the noise cells take 2
    grid.noise_threads = 2
    run_grid(grid, tmp_path / "g", **QUIET)
    assert [size for size, _ in pools] == [2, 1]
    assert {t for _, t in pools[0][1]} == {1} and len(pools[0][1]) == 4
    assert sorted(pools[1][1]) == [("bcls/seed1-threads2", 2), ("ner/seed1-threads2", 2)]


def test_noise_threads_trains_each_task_alone_again_and_reports_the_floor(tiny_corpus, tmp_path):
    from taskrel.report import write_report

    with pytest.raises(ConfigError, match="noise_threads"):
        GridConfig(tiny_grid(tiny_corpus).base, ["ner", "bcls"], [1], noise_threads=1)
    grid = tiny_grid(tiny_corpus)
    grid.noise_threads = 2
    out = tmp_path / "g"
    run_grid(grid, out, **QUIET)
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 2 * (2 + 2)  # the noise cells are not transfer cells
    for task in ("ner", "bcls"):
        cfg = json.loads((out / f"cells/{task}/seed1-threads2/config.json").read_text())
        assert cfg["train"]["threads"] == 2 and cfg["resolved"]["threads"] == 2 and cfg["train"]["seed"] == 1
    noise = pd.read_csv(out / "noise.csv")
    assert list(noise["main"]) == ["ner", "bcls"]
    assert (noise["threads"] == 1).all() and (noise["noise_threads"] == 2).all()
    alone = runs[(runs["secondary"].isna()) & (runs["seed"] == 1)].set_index("main")["score"]
    for r in noise.itertuples():
        assert r.score == pytest.approx(alone[r.main])
        assert r.threads_delta == pytest.approx(r.noise_score - r.score)
        assert 0 <= r.labels_changed <= 1 and r.n_seeds == 2
    report = write_report(out, tmp_path / "report")
    assert "Numerical noise floor" in (report.parent / "report.md").read_text()


def test_stop_gap_says_how_flat_a_run_was_when_it_stopped(monkeypatch):
    from taskrel.rundir import RunDir

    run = RunDir("nowhere")
    plateau = [(1, 0.5, True), (2, 0.7, True), (3, 0.69, False), (4, 0.6, False)]
    monkeypatch.setattr(RunDir, "dev_curve", lambda self, task=None: plateau)
    assert run.stop_gap == pytest.approx(0.01)  # the best of the later evaluations came within 1 point
    monkeypatch.setattr(RunDir, "dev_curve", lambda self, task=None: plateau[:2])
    assert np.isnan(run.stop_gap)  # nothing after the selected evaluation


def test_a_schema_created_meanwhile_by_another_worker_is_retried(tmp_path, monkeypatch):
    """PostgreSQL reports a table another worker created a moment before as DuplicateTable (a ProgrammingError):
    the worker tries again and finds the schema made, instead of dying (seen once in CI under load)."""
    from sqlalchemy.exc import ProgrammingError

    from taskrel import workqueue

    real, calls = workqueue.RDBStorage, []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ProgrammingError("CREATE TABLE studies", {}, Exception('relation "studies" already exists'))
        return real(*args, **kwargs)

    monkeypatch.setattr(workqueue, "RDBStorage", racing)
    monkeypatch.setattr(workqueue.time, "sleep", lambda s: None)
    study, _ = workqueue.open_study(f"sqlite:///{tmp_path / 'q.db'}", "q")
    assert len(calls) == 2 and study.study_name == "q"


@pytest.mark.parametrize(
    "cap, said",
    [(2, "a fixed subset of 2 devel sentences"), (500, "the whole devel split, 3 sentences, under the cap of 500")],
)
def test_the_grid_report_says_whether_the_dev_cap_took_a_subset(tiny_corpus, tmp_path, cap, said):
    """A dev split no larger than dev_max_sentences is evaluated whole (NCBI-disease: 923 under a cap of
    1,000): the report says so instead of calling it a subset."""
    from taskrel.report import write_report

    grid = tiny_grid(tiny_corpus, seeds=[1])
    grid.base.data.dev_max_sentences = cap
    run_grid(grid, tmp_path / "g", **QUIET)
    assert f"model selected on dev ({said}), scored on test" in write_report(tmp_path / "g", tmp_path / "r").read_text()
