"""Reports of results folders: ``report.md`` and a self-contained ``report.html``.

``write_report(SRC, OUT)`` reads a study folder (``study.json``) or whatever
results SRC holds (a grid, a tuning study, task embeddings, TAG affinities,
predictions of the grid) or its sub-folders hold, and writes the tables and
figures into ``OUT``, with the CSV/JSON files behind them. One list of blocks
renders to both Markdown and HTML.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .claims import claims_blocks
from .compare import format_mde
from .config import ConfigError
from .kinds import kinds_of
from .significance import format_p

Block = tuple  # ("h1"|"h2"|"p", text) | ("table", DataFrame) | ("img", path, caption)


def _pm(mean: float, std: float, scale: float = 100, signed: bool = False) -> str:
    sign = "+" if signed else ""
    text = f"{scale * mean:{sign}.2f}"
    return text + (f" ± {scale * std:.2f}" if pd.notna(std) else "")


def converged_count(converged: int, runs: int) -> str:
    """``5/5``, or a bold ``**1/2 (not all converged)**`` that no reader can miss."""
    text = f"{int(converged)}/{int(runs)}"
    return text if int(converged) == int(runs) else f"**{text} (not all converged)**"


def _budget(train) -> str:
    if train.patience is None:
        return f"{train.epochs} epochs, no early stopping"
    return f"up to {train.epochs} epochs, early stopping with patience {train.patience} (at least {train.min_epochs})"


def _dev_cap(data, used: int | None = None) -> str:
    """The dev a model was selected on, under ``dev_max_sentences``; ``used``: how many sentences the runs
    evaluated on (config.json), which tells a split under the cap (the whole of it) from a subset."""
    cap = data.dev_max_sentences
    if not cap:
        return ""
    if used is None:
        return f" (at most {cap} devel sentences: a fixed subset where the split is larger)"
    if used < cap:
        return f" (the whole devel split, {used} sentences, under the cap of {cap})"
    return f" (a fixed subset of {cap} devel sentences)"


def _dev_used(folder: Path, runs: pd.DataFrame) -> int | None:
    """How many dev sentences a grid's first run evaluated on (its config.json; None: not known)."""
    from .rundir import RunDir

    if "run_dir" not in runs or not len(runs):
        return None
    return RunDir(Path(folder) / runs["run_dir"].iloc[0]).dev_sentences


def grid_blocks(folder: Path, title: str | None = None) -> list[Block]:
    from .grid import load_results

    res = load_results(folder)
    grid, runs, transfer = res.grid, res.runs, res.transfer
    base = grid.base
    blocks: list[Block] = [
        ("h2", title or f"Pairwise transfer grid: {Path(base.data.data).name or 'several corpora'}"),
        (
            "p",
            f"Tasks {', '.join(grid.tasks)}"
            + (f" (the pairs {', '.join(grid.pairs)} only, beside their main tasks alone)" if grid.pairs else "")
            + f"; seeds {', '.join(map(str, grid.seeds))}; encoder `{base.model.encoder}`; "
            f"{100 * base.data.train_fraction:g}% of train; {_budget(base.train)}; lr {base.train.lr:g}; "
            f"batch {base.train.batch_size}; precision {base.train.precision}; {base.train.threads} thread(s) per "
            f"cell; pair weights main {grid.pair_weights[0]:g}, secondary {grid.pair_weights[1]:g}; model selected "
            f"on dev{_dev_cap(base.data, _dev_used(folder, runs))}, scored on test.",
        ),
    ]
    if len(runs):
        hours = runs["seconds"].sum() / 3600
        blocks.append(("p", f"{len(runs)} finished runs; compute {hours:.2f} h (training and evaluation, summed)."))
        alone = res.alone()
        table = pd.DataFrame(
            {
                "main task": alone.index,
                "metric": alone["metric"].values,
                "test score alone (×100)": [_pm(m, s) for m, s in zip(alone["mean"], alone["std"])],
                "seeds": alone["count"].values,
            }
        )
        blocks += [("h2", "Each task alone"), ("table", table)]
    if len(transfer):
        t = pd.DataFrame(
            {
                "main": transfer["main"],
                "secondary": transfer["secondary"],
                "Δ (points)": [_pm(m, s, signed=True) for m, s in zip(transfer["mean_delta"], transfer["std_delta"])],
                "95% CI": [
                    f"[{100 * lo:+.2f}, {100 * hi:+.2f}]" for lo, hi in zip(transfer["ci_low"], transfer["ci_high"])
                ],
                "p": [
                    format_p(p, f)
                    for p, f in zip(transfer.get("p", transfer["p_bootstrap"]), transfer.get("p_floor", False))
                ],
                "p Holm": transfer["p_adjusted"].map(format_p) if "p_adjusted" in transfer else "n/a",
                "p (bootstrap)": transfer["p_bootstrap"].map(format_p),
                "p (seeds)": transfer["p_seeds"].map(format_p),
                "ASO ε": transfer["aso_eps"].map(lambda e: f"{e:.2f}" if e == e else "–")
                if "aso_eps" in transfer
                else "–",
                "MDE": transfer["mde"].map(format_mde) if "mde" in transfer else "n/a",
                "converged": transfer["converged"].map(lambda c: "yes" if c else "**no**")
                if "converged" in transfer
                else "unknown",
                "verdict": transfer["verdict"] if "verdict" in transfer else "",
                "speed Δ (points)": transfer["delta_aulc"].map(lambda d: f"{100 * d:+.2f}")
                if "delta_aulc" in transfer
                else "",
            }
        )
        blocks += [
            ("h2", "Transfer Δ(main | secondary)"),
            (
                "p",
                "Final transfer Δ = score(main trained with secondary) − score(main alone), each selected on dev, "
                "per seed, then mean ± std over seeds, in points (×100). It is tested at two levels, both required: "
                "a hierarchical paired bootstrap (seeds, then blocks of 10 test sentences; p (bootstrap)) and a "
                "t-test of the per-seed Δ (p (seeds)); p is the larger, the unadjusted 95% interval the hull of "
                "both, p Holm adjusts p over the grid. Verdict: helps or hurts only where the "
                f"adjusted p < {grid.alpha}, every run converged and there are at least 2 seeds; otherwise "
                "undetermined, and an undetermined cell is not a finding. MDE: the smallest |Δ| this design detects "
                "(5%, 80% power; the larger of the two levels'; none below 2 seeds). Speed Δ: difference of the "
                "areas under the main task's dev curve (how fast it learns), which says nothing about the final "
                "score. ASO ε: Almost Stochastic Order's ε_min over the seed scores (from 3 seeds; below 0.5 the "
                "pair tends to beat the task alone, below 0.2 clearly), a second, unpaired opinion that the "
                "verdicts do not use.",
            ),
            ("table", t),
        ]
    if (folder / "contrasts.csv").is_file():
        blocks += _contrast_blocks(pd.read_csv(folder / "contrasts.csv"), grid.alpha)
    if (folder / "noise.csv").is_file():
        noise = pd.read_csv(folder / "noise.csv")
        blocks += [
            ("h2", "Numerical noise floor beside the seed spread"),
            (
                "p",
                "Each task alone, trained again at the same seed with another thread count: the score moves by "
                "the numerical noise of floating-point reduction order alone. A transfer Δ within this floor, or "
                "within the seed spread, is not a finding. Runs are never bit-identical across thread counts.",
            ),
            (
                "table",
                pd.DataFrame(
                    {
                        "task": noise["main"],
                        "metric": noise["metric"],
                        "seed": noise["seed"],
                        "threads": [f"{a} → {b}" for a, b in zip(noise["threads"], noise["noise_threads"])],
                        "score (×100)": [
                            f"{100 * a:.2f} → {100 * b:.2f}" for a, b in zip(noise["score"], noise["noise_score"])
                        ],
                        "Δ same seed (points)": noise["threads_delta"].map(lambda d: f"{100 * d:+.2f}"),
                        "test labels changed": noise["labels_changed"].map(lambda x: f"{100 * x:.2f}%"),
                        "seed std alone (points)": [
                            f"{100 * s:.2f} ({n} seeds)" if pd.notna(s) else f"– ({n} seed)"
                            for s, n in zip(noise["seed_std"], noise["n_seeds"])
                        ],
                        "converged": noise["converged"].map(lambda c: "yes" if c else "**no**"),
                    }
                ),
            ),
        ]
    return (
        blocks
        + stop_check_blocks(folder)
        + patience_sweep_blocks(folder)
        + _images(
            folder,
            (
                ("heatmap.png", "Final transfer (verdicts; hatched cells undetermined)"),
                ("heatmap_speed.png", "Speed transfer: Δ area under the dev curve"),
                ("learning_curves.png", "Dev score by epoch"),
            ),
        )
    )


def _contrast_blocks(c: pd.DataFrame, alpha: float) -> list[Block]:
    """A grid's ``contrasts.csv``: one transfer against another."""
    text = (
        "Difference of two final transfers, Δ(first) − Δ(second), in points, tested at two levels, both "
        "required: the two pairs' bootstrap draws (one resample for both where they share the test sentences: "
        "`joint`) and a t-test of the per-seed differences (where the seeds are shared; else the two seed "
        "levels combined, Welch–Satterthwaite). p is the larger, the interval the hull of both; Holm over the "
        f"contrasts; a verdict only where the adjusted p < {alpha} and every run of the four cells converged."
    )
    table = pd.DataFrame(
        {
            "first": c["first"],
            "second": c["second"],
            "Δ first": c["delta_first"].map(lambda d: f"{100 * d:+.2f}"),
            "Δ second": c["delta_second"].map(lambda d: f"{100 * d:+.2f}"),
            "difference (95% CI)": [
                f"{100 * d:+.2f} ({100 * lo:+.2f}, {100 * hi:+.2f})"
                for d, lo, hi in zip(c["difference"], c["ci_low"], c["ci_high"])
            ],
            "p": [format_p(p, f) for p, f in zip(c["p"], c["p_floor"])],
            "p Holm": c["p_adjusted"].map(format_p),
            "p (bootstrap)": c["p_bootstrap"].map(format_p) if "p_bootstrap" in c else "n/a",
            "p (seeds)": c["p_seeds"].map(format_p) if "p_seeds" in c else "n/a",
            "MDE": c["mde"].map(format_mde),
            "joint": c["joint"].map(lambda j: "yes" if j else "no"),
            "seeds": c["seeds"],
            "converged": c["converged"].map(lambda x: "yes" if x else "**no**"),
            "verdict": c["verdict"],
        }
    )
    return [("h2", "Contrasts: is one transfer larger than another?"), ("p", text), ("table", table)]


class StaleTables(ConfigError):
    pass


def check_tables_current(folder: Path, study: dict) -> None:
    """Refuse to report a ``runs`` study whose ``results.csv`` lists other runs than the finished ones the study
    has now (a run removed or set aside, or finished, since the tables were written), naming the command that
    brings the tables up to date: a report never shows stale tables as current."""
    path = folder / "results.csv"
    if study.get("kind") != "runs" or not path.is_file():
        return
    from .rundir import RunDir

    listed = pd.read_csv(path)
    listed = {(v, Path(c).name, int(s)) for v, c, s in zip(listed["variant"], listed["corpus"], listed["seed"])}
    finished = {(v, Path(c).name, int(s)) for v, c, s, cfg in _run_configs(folder, study) if RunDir(cfg.out).done}
    if listed != finished:
        gone, new = sorted(listed - finished), sorted(finished - listed)
        said = "; ".join(
            part
            for part in (
                f"listed but not finished there: {', '.join(map(str, gone[:5]))}" if gone else "",
                f"finished but not listed: {', '.join(map(str, new[:5]))}" if new else "",
            )
            if part
        )
        raise StaleTables(
            f"{path}: the tables are out of date ({said}); bring them up to date with "
            f"`taskrel run {folder} --summarise`, then report"
        )


def study_blocks(folder: Path) -> list[Block]:
    study = json.loads((folder / "study.json").read_text())
    check_tables_current(folder, study)
    blocks: list[Block] = [("h1", f"Study {study['name']}"), ("p", md_escape(study.get("description") or ""))]
    own = "".join(f"; on {c}, seeds {v}" for c, v in (study.get("corpus_seeds") or {}).items())
    blocks.append(("p", f"From `{study['file']}`: corpora {', '.join(study['corpora'])}; seeds {study['seeds']}{own}."))
    blocks += claims_blocks(folder)
    if study["kind"] != "runs":  # one results folder per corpus
        for corpus in study["corpora"]:
            sub = folder / Path(corpus).name
            for kind in kinds_of(sub):
                blocks += kind.call("blocks", sub)  # each kind's title names the corpus
        return blocks + machine_blocks(folder)
    if (folder / "summary.csv").is_file():
        s = pd.read_csv(folder / "summary.csv")
        metrics = [m for m in ("precision", "recall", "f1", "accuracy") if f"{m}_mean" in s]
        table = s[["corpus", "variant"]].copy()
        for m in metrics:
            table[f"{m} (×100)"] = [_pm(a, b) for a, b in zip(s[f"{m}_mean"], s[f"{m}_std"])]
        table["seeds"] = s[f"{metrics[0]}_count"]
        if "converged" in s:
            table["converged"] = [converged_count(c, n) for c, n in zip(s["converged"], s[f"{metrics[0]}_count"])]
        blocks += [("h2", "Test scores of the main task, mean ± std over seeds"), ("table", table)]
    if (folder / "comparisons.csv").is_file():
        from .compare import format_comparisons

        comp = pd.read_csv(folder / "comparisons.csv")
        blocks += [
            (
                "h2",
                f"Each variant against {comp['baseline'].iloc[0]}, seeds paired"
                if comp["baseline"].nunique() == 1
                else "Each variant against its baseline, seeds paired",
            ),
            (
                "p",
                "Δ is the mean over paired seeds, tested at two levels, both required: a hierarchical paired "
                "bootstrap (seeds, then blocks of 10 test sentences; p bootstrap) and a t-test of the per-seed Δ "
                "(p seeds; for a pooled row, the corpora's seed levels combined, Welch–Satterthwaite). p is the "
                "larger and the interval the hull of both (unadjusted); verdicts on Holm-adjusted p over the whole "
                "table, and only where every run converged and there are at least 2 paired seeds (below that, "
                "the interval covers test sentences alone). MDE: the smallest |Δ| this design detects at 5% with "
                "80% power, the larger of the two levels'; none below 2 seeds.",
            ),
            ("table", format_comparisons(comp, [Path(str(c)).name for c in study["corpora"]])),
        ]
    blocks += tuned_selection_blocks(folder, study) + budget_blocks(folder, study)
    blocks += stop_check_blocks(folder) + patience_sweep_blocks(folder) + compute_blocks(folder)
    blocks += machine_blocks(folder)
    blocks += _images(
        folder,
        (
            ("comparison.png", "Δ against the baseline: mean, 95% interval, per-seed Δ, minimum detectable effect"),
            (
                "dev_curves.png",
                "Dev score of the main task per run: o where the model was selected, x where it stopped",
            ),
        ),
    )
    return blocks


def budget_blocks(folder: Path, record: dict) -> list[Block]:
    """A budget study's decision (its ``decision`` rule over its finished runs), or where the decisions a study
    follows (``budget_from``) stand, and which of its corpora they hold."""
    from .budget import decide, describe

    if record.get("decision"):
        d = decide(folder)
        table = pd.DataFrame(
            [{"arm": a, "runs finished": n["runs"], "converged": n["converged"]} for a, n in d["arms"].items()]
        )
        return [("h2", f"Budget decision on {d['corpus']}"), ("p", md_escape(describe(d))), ("table", table)]
    lines = [f"{corpus}: {describe(decide(path))}" for corpus, path in (record.get("budget_from") or {}).items()]
    if not lines:
        return []
    return [
        ("h2", "Budget decisions this study follows"),
        (
            "p",
            md_escape(
                " ".join(lines) + " Runs on a corpus whose decision is pending, or moved it to a budget this "
                "study does not train at, or left it out, are held: neither trained nor counted here."
            ),
        ),
    ]


def tuned_selection_blocks(folder: Path, record: dict) -> list[Block]:
    """For each ``tuned_from`` variant of a runs study: the dev score its tuning study selected the settings on
    (the best trial, at the tuning seed) against the same settings' dev scores at this study's seeds. The gap is
    what the selection among trials of about equal worth added to that one seed's score: measured here, not
    assumed (``confirm.check_seeds`` keeps the tuning seed out of the comparisons for that reason)."""
    from .experiments import TUNED_FROM, corpus_path
    from .rundir import RunDir

    rows = []
    variants = record.get("variants") or {}
    runs = _run_configs(folder, record) if any(TUNED_FROM in (o or {}) for o in variants.values()) else []
    for variant, overrides in variants.items():
        tuned_from = (overrides or {}).get(TUNED_FROM)
        for corpus in record["corpora"] if tuned_from else []:
            best_path = corpus_path(tuned_from, corpus) / "best.json"
            if not best_path.is_file():
                continue
            best = json.loads(best_path.read_text())
            mine = [RunDir(c.out) for v, k, _, c in runs if v == variant and k == corpus]
            devs = [run.score("dev") for run in mine if run.done]  # finished runs only
            if not devs or best.get("dev_score") is None:
                continue
            devs = pd.Series(devs)
            mean = float(devs.mean())
            rows.append(
                {
                    "variant": variant,
                    "corpus": Path(corpus).name,
                    "selected (tuning seed)": f"{100 * best['dev_score']:.2f}",
                    "same settings, other seeds": _pm(mean, float(devs.std())),  # one seed: no spread (NaN, not ± 0)
                    "seeds": len(devs),
                    "selection gap": f"{100 * (best['dev_score'] - mean):+.2f}",
                }
            )
    if not rows:
        return []
    return [
        ("h2", "Tuned settings: the dev score they were selected on, and at other seeds"),
        (
            "p",
            "Dev F1 (×100) of the tuning study's best trial, at the seed every trial trained with, beside the "
            "same settings' dev scores at this study's seeds (never the tuning seed). The gap is the luck the "
            "selection kept from that one seed (a seed's dev luck carries to test: reports/statistics).",
        ),
        ("table", pd.DataFrame(rows)),
    ]


def compute_blocks(folder: Path) -> list[Block]:
    """What a runs study's finished runs cost: wall-clock hours (pauses and other work on the machine included)
    and, for runs that recorded it, CPU hours over all threads (neither)."""
    path = folder / "results.csv"
    if not path.is_file():
        return []
    r = pd.read_csv(path)
    if not len(r) or "seconds" not in r:
        return []
    line = f"{len(r)} finished runs took {r['seconds'].sum() / 3600:.1f} h of wall clock, summed over the runs "
    line += "(training and dev evaluation; pauses, and other work on the machine, included)"
    cpu = r["cpu_seconds"].dropna() if "cpu_seconds" in r else pd.Series(dtype=float)
    if len(cpu):
        wall = r.loc[cpu.index, "seconds"].sum()
        line += (
            f"; the {len(cpu)} that recorded CPU time used {cpu.sum() / 3600:.1f} CPU hours over all threads, "
            f"against {wall / 3600:.1f} h of wall clock"
        )
    if not len(cpu):
        line += "; none recorded CPU time (they ran before taskrel did)"
    elif len(cpu) < len(r):
        line += f"; {len(r) - len(cpu)} ran before taskrel recorded CPU time"
    return [("h2", "Compute"), ("p", line + ".")]


def _run_configs(folder: Path, record: dict) -> list:
    """``(variant, corpus, seed, config)`` of every run of the ``runs`` study whose record (``study.json``) is
    ``record`` (a variant's runs may live in another study's folder, ``runs_in``)."""
    from .experiments import Study

    return Study.from_dict(record).run_configs(folder)


def _study_runs(folder: Path) -> list:
    """Every started run of a study folder: a ``runs`` study's from its record (``_run_configs``), any other
    kind's the run folders below it."""
    from .rundir import CONFIG, RECORDS, RunDir

    record = json.loads((folder / "study.json").read_text()) if (folder / "study.json").is_file() else {}
    if record.get("kind") == "runs":
        runs = [RunDir(cfg.out) for *_, cfg in _run_configs(folder, record)]
        return [run for run in runs if (run.path / RECORDS).is_file()]
    return [RunDir(p.parent) for p in sorted(folder.rglob(CONFIG)) if (p.parent / RECORDS).is_file()]


def machine_blocks(folder: Path) -> list[Block]:
    """Where a study's runs trained, from each run's record (``RunDir.sessions``): runs per machine, precision
    and threads (a run resumed on another machine counts under each machine it trained on, in order), and the
    commits that started them, so a table that mixes machines or code says so."""
    from .machine import label

    runs = _study_runs(folder)
    if not runs:
        return []
    rows: dict[tuple, list[int]] = {}
    for run in runs:
        where = " → ".join(dict.fromkeys(label(s) for s in run.sessions))
        key = (where, run.precision or "not recorded", run.threads or "–")
        rows.setdefault(key, [0, 0])[0 if run.done else 1] += 1
    table = pd.DataFrame(
        [(*key, done, todo) for key, (done, todo) in sorted(rows.items())],
        columns=["machine (→: resumed on another)", "precision", "threads", "finished runs", "unfinished"],
    )
    starts = sorted(
        (s.get("started", ""), s["git_commit"][:7]) for r in runs for s in r.sessions if s.get("git_commit")
    )
    commits = list(dict.fromkeys(c for _, c in starts))
    if commits:
        line = f"Trained by {len(commits)} commit(s), from {commits[0]} ({starts[0][0][:10]}) to {commits[-1]} "
        line += f"({starts[-1][0][:10]})"
    else:
        line = "No run recorded its commit"
    dirty = sum(any(s.get("git_dirty") for s in r.sessions) for r in runs)
    if dirty:
        line += f"; {dirty} run(s) trained from a checkout with uncommitted changes"
    unrecorded = sum(not any(s.get("git_commit") for s in r.sessions) for r in runs)
    if commits and unrecorded:
        line += f"; {unrecorded} run(s) recorded no commit"
    return [("h2", "Machines and code"), ("p", line + "."), ("table", table)]


def stop_check_blocks(folder: Path) -> list[Block]:
    """The stop check of a study or grid folder (``stop_check.csv``), if it has one."""
    from .stopcheck import describe

    if not (folder / "stop_check.csv").is_file():
        return []
    check = pd.read_csv(folder / "stop_check.csv")
    table = check[[check.columns[0], "runs", "variants"]].copy()
    spans = zip(check.mean_best_epoch, check.min_best_epoch, check.max_best_epoch)
    table["best epochs"] = [f"{a:.1f} ({lo}-{hi})" for a, lo, hi in spans]
    table["ρ (best epoch, test score)"] = check["rho"].map(lambda x: f"{x:+.2f}")
    table["p"] = check["p"].map(lambda x: f"{x:.4f}")
    table["Holm p"] = check["p_adjusted"].map(lambda x: f"{x:.4f}")
    table["flag"] = check["flag"].map(lambda f: "**cut off?**" if f else "no")
    return [("h2", "Stop check: did the stopping rule cut runs off?"), ("p", describe(check)), ("table", table)]


def patience_sweep_blocks(folder: Path) -> list[Block]:
    """What a shorter patience would have selected, replayed from a study's dev curves (``patience_sweep.csv``)."""
    from .stopcheck import sweep_summary

    if not (folder / "patience_sweep.csv").is_file():
        return []
    summary = sweep_summary(pd.read_csv(folder / "patience_sweep.csv"))
    by = summary.columns[0]  # corpus; a grid's main task (sweep_summary's first key)
    table = pd.DataFrame(
        {
            "main task" if by == "main" else by: summary[by],
            "runs' patience": summary["run_patience"],
            "patience replayed": summary["patience"],
            "runs": summary["runs"],
            "same selection": summary["same_selection"].map(lambda x: f"{100 * x:.0f}%"),
            "dev points lost: mean (worst)": [
                f"{a:.2f} ({b:.2f})" for a, b in zip(summary["dev_lost_mean"], summary["dev_lost_max"])
            ],
            "share of the epochs": summary["epochs_share"].map(lambda x: f"{100 * x:.0f}%"),
        }
    )
    return [
        ("h2", "Patience sweep: what a shorter patience would have selected (dev only)"),
        (
            "p",
            "Each run's dev curve replayed under every patience up to its own, with the trainer's rule (a new "
            "best must be strictly higher; no stop before the minimum epochs). Training does not depend on the "
            "patience, so this is exactly where a run with that patience would have stopped and what it would "
            "have selected; where the selection is the same, so is the test score. Dev points lost: the run's "
            "own selected dev score less the replayed one (×100), on the dev set that made the selection: part of any "
            "later best is noise that the selection picks up, so the loss on test is smaller; a patience study "
            "(the same runs with a longer patience, seeds paired) measures it. Where the patience just below the "
            "runs' own still changes selections, their own may be short as well.",
        ),
        ("table", table),
    ]


def _images(folder: Path, figures) -> list[Block]:
    """Image blocks for the ``(file, caption)`` pairs that exist in ``folder``."""
    return [("img", folder / name, caption) for name, caption in figures if (folder / name).is_file()]


def tune_blocks(folder: Path) -> list[Block]:
    """A tuning folder: its settings, the best trial and the study's figures."""
    from .tune import DYNAMIC_SPACE

    tune = json.loads((folder / "tune.json").read_text())
    base = tune["base"]
    method = base["train"].get("weighting", "static")
    if method in DYNAMIC_SPACE:
        space = f"weighting {method}: its own parameters tuned ({', '.join(DYNAMIC_SPACE[method])}) from equal weights"
    else:
        space = f"secondary weights log-uniform in [{tune['min_weight']:g}, {tune['max_weight']:g}]"
    also = [name for key, name in (("tune_lr", "learning rate"), ("tune_pooling", "pooling")) if tune.get(key)]
    from .config import TuneConfig
    from .tune import pruning_rule

    tc = TuneConfig.from_record(tune)
    blocks: list[Block] = [
        ("h2", f"Loss-weight tuning: {folder.name}"),
        (
            "p",
            f"Tasks {', '.join(base['model']['tasks'])} (the first is the main task, weight 1) on "
            f"{Path(base['data']['data']).name}; {100 * base['data']['train_fraction']:g}% of train; "
            f"{base['train']['epochs']} epochs; lr {base['train']['lr']:g}; {tune['trials']} trials; "
            f"pruner {pruning_rule(tc)}; {space}{'; also ' + ' and '.join(also) if also else ''}. "
            "Tuning reads train and dev only.",
        ),
    ]
    if (folder / "best.json").is_file():
        best = json.loads((folder / "best.json").read_text())
        weights = ", ".join(f"{t} {w:.4g}" for t, w in best["weights"].items())
        counts = ", ".join(f"{n} {k}" for k, n in best["trials"].items() if n)
        conv = {True: "", False: " (**not converged**)", None: ""}.get(best.get("converged"), "")
        params = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in best["params"].items())
        blocks.append(("p", f"Best trial {best['trial']}: dev {best['dev_score']:.4f}{conv} with weights {weights} "
                            f"(parameters: {params}). Trials: {counts}."))  # fmt: skip
    stops = pruned_stops(folder, tc.base.model.main_task)
    if stops:
        at = pd.Series([e for e, _, _ in stops]).value_counts().sort_index()
        scores = pd.Series([b for _, b, _ in stops])
        below = pd.Series([m - b for _, b, m in stops]).dropna()
        margins = (
            f" Below the median of the completed trials by {below.min():.4f} to {below.max():.4f} "
            f"({int((below < 0.01).sum())} of the {len(below)} where it was recorded by under 0.01)."
            if len(below)
            else ""
        )
        blocks.append(
            (
                "p",
                f"Where the pruner stopped trials: {len(stops)}, at evaluation "
                + ", ".join(f"{e} ({n})" for e, n in at.items())
                + f". Their best dev score so far (on the dev evaluated during training) ranged {scores.min():.3f} "
                f"to {scores.max():.3f} (median {scores.median():.3f})." + margins,
            )
        )
    blocks += pruning_check_blocks(tc, folder)
    return blocks + _images(
        folder,
        (
            ("history.png", "Optimisation history"),
            ("importances.png", "Parameter importances"),
            ("slices.png", "Dev score against each weight"),
        ),
    )


def pruned_stops(folder: Path, main: str) -> list[tuple[int, float, float]]:
    """Each pruned trial of a tuning folder: the evaluation its pruner stopped it at, its best main dev score
    by then (the score the pruner judged it on) and the median it fell below (NaN where not recorded: another
    pruner, or a trial pruned before 2026-11-29)."""
    from .rundir import RunDir
    from .tasks import TaskSpec

    metric = TaskSpec.parse(main).main_metric
    stops = []
    for path in sorted((folder / "trials").glob("[0-9]" * 4)):
        run = RunDir(path)
        if run.pruned:
            seen = [r["dev"][main][metric] for r in run.records if r.get("dev")][: run.pruned["evaluation"]]
            median = run.pruned.get("median")
            stops.append(
                (run.pruned["evaluation"], max(seen, default=float("nan")), float("nan") if median is None else median)
            )
    return stops


def pruning_check_blocks(tc, folder: Path) -> list[Block]:
    """The pruner asked again about the trials that ran to the end (``pruning.replay_completed``): which it
    would have stopped, and what the best dev score would have been without them."""
    from .pruning import completed_curves, margin_replay, replay_completed

    curves = completed_curves(tc, folder)  # read once, replayed under the study's rule and each margin
    replay = replay_completed(tc, folder, curves)
    if replay.empty:
        return []
    if (replay["references"] < tc.prune_startup).all():
        return [
            (
                "p",
                f"Pruning check: {len(replay)} completed trial(s), too few to replay the pruner on one of them "
                f"against the others (it acts from {tc.prune_startup} completed trials).",
            )
        ]
    stopped = replay.dropna(subset=["pruned_at"])
    kept = replay.drop(stopped.index)
    best = replay.loc[replay["dev"].idxmax()]
    said = (
        f"Pruning check (each completed trial replayed through the study's pruner against the other completed "
        f"trials, more than it was judged against in the study): it would have stopped {len(stopped)} of the "
        f"{len(replay)} trials that ran to the end"
    )
    if len(stopped):
        each = [
            f"trials/{r.trial:04.0f} at evaluation {r.pruned_at:.0f}, final dev {r.dev:.4f}"
            for r in stopped.itertuples()
        ]
        said += " (" + "; ".join(each) + ")"
    said += f". Best dev of all completed trials {best['dev']:.4f} (trials/{int(best['trial']):04d})"
    said += f"; of those it keeps {kept['dev'].max():.4f}." if len(kept) else "; it keeps none of them."
    margins = margin_replay(tc, folder, curves=curves)
    table = pd.DataFrame(
        {
            "margin": [f"{m:g}" + (" (this study)" if m == tc.prune_margin else "") for m in margins["margin"]],
            "completed trials it stops": [f"{r.stopped} of {r.completed}" for r in margins.itertuples()],
            "keeps the best": ["yes" if k else "no" for k in margins["keeps_best"]],
            "best it keeps": [f"{b:.4f}" if b == b else "–" for b in margins["kept_best"]],
            "evaluations it saves on them": [f"{r.evaluations_saved} of {r.evaluations}" for r in margins.itertuples()],
        }
    )
    return [
        ("p", said),
        (
            "p",
            "The same replay with a margin (`--prune-margin`: a trial is stopped only when its best so far is more "
            "than the margin below the median; set it from the seed noise at the first prunable evaluation, "
            "`pruning.seed_noise`):",
        ),
        ("table", table),
    ]


def pruning_blocks(folder: Path) -> list[Block]:
    """What pruning saved in a tuning folder (``taskrel tune --measure-pruning``)."""
    p = json.loads((folder / "pruning.json").read_text())
    return [
        ("h2", "What pruning saved"),
        (
            "table",
            pd.DataFrame(
                {
                    "": ["with pruning", "without pruning (pruned trials trained to the end)"],
                    "epochs": [p["epochs_with_pruning"], p["epochs_without_pruning"]],
                    "seconds": [f"{p['seconds_with_pruning']:.0f}", f"{p['seconds_without_pruning']:.0f}"],
                    "best dev": [f"{p['best_dev_with_pruning']:.4f}", f"{p['best_dev_without_pruning']:.4f}"],
                }
            ),
        ),
        (
            "p",
            f"{p['pruned']} of {p['trials']} trials pruned; {100 * p['epochs_saved_fraction']:.0f}% of the "
            f"epochs and {100 * p['seconds_saved_fraction']:.0f}% of the seconds saved; "
            f"{p['pruned_trials_beating_best_completed']} pruned trial(s) would have beaten the best "
            "completed one.",
        ),
    ]


def confirm_blocks(folder: Path) -> list[Block]:
    """The tuned weights on test beside the other arms (``taskrel tune --confirm``)."""
    blocks: list[Block] = [
        ("h2", "The tuned weights on test, beside the alternatives"),
        ("p", "Same data, epochs and seeds for every arm; Δ and p against the main task alone."),
    ]
    if (folder / "confirm" / "comparison.md").is_file():
        blocks.append(("md", (folder / "confirm" / "comparison.md").read_text()))
    return blocks + _images(folder, (("confirm/comparison.png", "Test score per arm and seed"),))


def embed_blocks(folder: Path, name: str | None = None) -> list[Block]:
    """An embeddings folder: settings, purity and the maps; then those of each further style computed on the
    same models (``also_styles``, in its sub-folder)."""
    meta = json.loads((folder / "meta.json").read_text())
    style = meta.get("style", "taskrel")
    blocks: list[Block] = [
        ("h2", f"Fisher task embeddings: {name or folder.name}, {style} Fisher"),
        (
            "p",
            f"{len(meta['tasks'])} tasks; components {', '.join(meta['components'])}; {meta['label_mode']} Fisher "
            f"over {meta['examples']} training sentences per task; encoder `{meta['encoder']}`; seed {meta['seed']}.",
        ),
    ]
    if (folder / "purity.csv").is_file():
        purity = pd.read_csv(folder / "purity.csv")
        control = (
            " and beside the shuffled-label control (control_*: the same models and sentences with the labels "
            "permuted; a grouping counts only where it beats both)"
            if meta.get("control")
            else " (no shuffled-label control was computed: no grouping here is a finding)"
        )
        blocks += [
            ("h2", "Nearest-neighbour purity"),
            (
                "p",
                "The share of tasks whose nearest neighbour shares their kind, level or corpus, "
                f"beside chance{control}. p_*: one-sided permutation p (the group labels assigned to the tasks at "
                "random, 10,000 times); p_adjusted_*: Holm over the whole table; finding_*: adjusted p below 0.05 "
                "and a purity above the control's.",
            ),
            ("table", purity.round(3)),
        ]
    for comp in meta["components"]:
        blocks += _images(
            folder,
            (
                (f"similarity-{comp}.png", f"{comp}: clustered similarity"),
                (f"map-{comp}-tsne.png", f"{comp}: t-SNE"),
                (f"map-{comp}-mds.png", f"{comp}: MDS"),
                (f"map-{comp}-layers-tsne.png", f"{comp}: t-SNE, one point per task and layer"),
            ),
        )
    for other in meta.get("also_styles") or []:
        if (folder / other / "meta.json").is_file():
            blocks += embed_blocks(folder / other, name or folder.name)
    return blocks


def affinity_blocks(folder: Path) -> list[Block]:
    info = json.loads((folder / "affinity.json").read_text())
    blocks: list[Block] = [
        ("h2", f"TAG look-ahead affinities: {folder.name}"),
        (
            "p",
            f"{info['lookaheads']} look-aheads (every {info['every']} steps) took {info['lookahead_seconds']:.0f} s, "
            f"{100 * info['overhead_vs_plain_run']:.0f}% on top of the run's own training time.",
        ),
    ]
    return blocks + _images(folder, (("affinity.png", "Affinity source → target"),))


def prediction_blocks(folder: Path) -> list[Block]:
    """A grid folder's ``prediction/`` (written by ``taskrel predict-transfer``)."""
    folder = folder / "prediction"
    summary = pd.read_csv(folder / "prediction_summary.csv")
    blocks: list[Block] = [
        ("h2", "Do the estimators predict the grid?"),
        (
            "p",
            "Mean over main tasks of each ranking metric (ρ: rank of the truly best secondary; lower is better). "
            "p spearman: one-sided permutation p of the mean Spearman against random rankings (exact where the "
            "permutations can be enumerated); p adjusted: Holm over the estimators. A mean Spearman is a finding "
            "only where p adjusted < 0.05.",
        ),
        ("table", summary.round(3)),
    ]
    if (folder / "prediction.json").is_file():
        blocks.append(("p", prediction_inputs_line(json.loads((folder / "prediction.json").read_text()))))
    return blocks + _images(folder, (("prediction.png", "Ranking metrics per estimator"),))


def prediction_inputs_line(record: dict) -> str:
    """What the estimators were scored against, and what that ground truth is worth."""
    st = record.get("grid_status") or {}
    emb = ", ".join(f"`{v}`" + (f" ({k})" if k else "") for k, v in (record.get("embeddings") or {}).items())
    parts = [f"Scored against the grid `{record['grid']}`"]
    parts += [f"embeddings {emb}"] if emb else []
    parts += [f"affinities `{record['affinity']}`"] if record.get("affinity") else []
    line = ", ".join(parts) + "."
    if st:
        verdicts = st.get("verdicts") or {}
        counted = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
        line += f" The grid's {st['pairs']} transfers ({'/'.join(map(str, st.get('seeds') or []))} seeds): {counted}."
        if st.get("converged_pairs") is not None and st["converged_pairs"] < st["pairs"]:
            line += f" **{st['pairs'] - st['converged_pairs']} of them include a run that did not converge.**"
        if verdicts.get("undetermined", 0) == st["pairs"]:
            line += (
                " Every transfer is undetermined: the order the estimators are scored against is itself within the "
                "noise, so a low Spearman says little against an estimator (the permutation p stays valid: it "
                "asks whether the ranking follows the measured Δ more than chance does)."
            )
    return line


STUDY_FILES = (
    "study.json",
    "claims.csv",
    "results.csv",
    "summary.csv",
    "comparisons.csv",
    "stop_check.csv",
    "patience_sweep.csv",
)


def folder_blocks(folder: Path) -> tuple[list[Block], list[Path]]:
    """Blocks and data files of whatever the folder holds (and, if it holds nothing known, its sub-folders)."""
    blocks, data = [], []
    for kind in kinds_of(folder):
        blocks += kind.call("blocks", folder)
        data += [folder / f for f in kind.files if (folder / f).is_file()]
    if not blocks:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            more, files = folder_blocks(sub) if kinds_of(sub) else ([], [])
            blocks += more
            data += files
    return blocks, data


def md_escape(text: str) -> str:
    """User text (study descriptions, corpus and tag names) as literal Markdown."""
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", str(text)).replace("\n", " ")


def _md_cell(value) -> str:
    # the report's own cells use backticks and ** on purpose; only what breaks a table row is escaped
    return str(value).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def _md_table(df: pd.DataFrame) -> str:
    cols = [_md_cell(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def to_markdown(blocks: list[Block], figures: dict) -> str:
    parts = []
    for b in blocks:
        if b[0] == "h1":
            parts.append(f"# {b[1]}")
        elif b[0] == "h2":
            parts.append(f"## {b[1]}")
        elif b[0] == "p" and b[1]:
            parts.append(b[1])
        elif b[0] == "table":
            parts.append(_md_table(b[1]))
        elif b[0] == "md":
            parts.append(b[1].strip())
        elif b[0] == "img":
            parts.append(f"![{b[2]}]({figures[b[1]]})")
    return "\n\n".join(parts) + "\n"


def _markdown():
    """CommonMark with tables; raw HTML in the text is escaped, never passed through."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table")


def to_html(blocks: list[Block], title: str) -> str:
    body = []
    for b in blocks:
        if b[0] in ("h1", "h2"):
            body.append(f"<{b[0]}>{html.escape(b[1])}</{b[0]}>")
        elif b[0] == "p" and b[1]:
            body.append(_markdown().render(b[1]))  # paragraphs hold Markdown: `code`, escaped user text
        elif b[0] == "table":
            body.append(b[1].to_html(index=False, escape=True, border=0, classes="results"))
        elif b[0] == "md":
            body.append(_markdown().render(b[1]))
        elif b[0] == "img":
            data = base64.b64encode(Path(b[1]).read_bytes()).decode()
            body.append(
                f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(b[2])}</figcaption></figure>"
            )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem}"
        "table.results{border-collapse:collapse;margin:1rem 0}"
        "table.results td,table.results th{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:right}"
        "table:not(.results){border-collapse:collapse;margin:1rem 0}"
        "table:not(.results) td,table:not(.results) th{padding:.25rem .6rem;border-bottom:1px solid #ddd}"
        "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def _unchanged(out: Path, text: str, copies: dict) -> bool:
    """Whether ``out`` already holds this report: the same text (its date aside), figures and tables (a study
    record's command aside). A queue that passes finished studies again then leaves their reports alone,
    instead of rewriting them with a new date; anything that changed, the code's wording included, rewrites."""
    from .rundir import RECORD_KEYS

    old = out / "report.md"
    if not old.is_file():
        return False
    held = old.read_text()
    cut = held.rfind("\nGenerated by taskrel report from ")
    if cut < 0 or held[:cut] != text:
        return False
    strip = lambda p: {k: v for k, v in json.loads(p.read_text()).items() if k not in RECORD_KEYS}  # noqa: E731
    for f, name in copies.items():
        copy = out / name
        if not copy.is_file():
            return False
        if (strip(f) != strip(copy)) if name == "study.json" else (f.read_bytes() != copy.read_bytes()):
            return False
    return True


def write_report(src, out) -> Path:
    """Write ``report.md``, ``report.html`` and the figures of a grid or study folder into ``out``."""
    return _write_report(src, out)[0]


def report_said(src, out) -> str:
    """Write the report (``write_report``) and say where, and whether it was already up to date."""
    path, written = _write_report(src, out)
    return f"report: {path}" + ("" if written else " (already up to date, left as it was)")


def _write_report(src, out) -> tuple[Path, bool]:
    """``write_report``, and whether it wrote (False: ``out`` already held this report)."""
    src, out = Path(src), Path(out)
    data: list[Path] = []
    if (src / "study.json").is_file():
        blocks = study_blocks(src)
        data = [src / f for f in STUDY_FILES if (src / f).is_file()]
    else:
        found, data = folder_blocks(src) if src.is_dir() else ([], [])
        if not found:
            raise ConfigError(
                f"{src}: no results found (a grid, study, tuning, embeddings or affinity folder, or folders of them)"
            )
        blocks = [("h1", f"Report: {src.name}")] + found
    name = lambda f: "_".join(Path(f).relative_to(src).parts)  # noqa: E731
    figures = {b[1]: name(b[1]) for b in blocks if b[0] == "img"}
    # the figures, and the numbers behind the report, travel with it
    copies = {Path(f): n for f, n in figures.items()} | {Path(f): name(f) for f in data}
    if _unchanged(out, to_markdown(blocks, figures), copies):
        return out / "report.md", False
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    blocks.append(("p", f"Generated by taskrel report from {src} on {stamp}."))
    out.mkdir(parents=True, exist_ok=True)
    for f, n in copies.items():
        shutil.copyfile(f, out / n)
    (out / "report.md").write_text(to_markdown(blocks, figures))
    (out / "report.html").write_text(to_html(blocks, blocks[0][1]))
    return out / "report.md", True
