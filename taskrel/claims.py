"""The paper's claims a study tests, stated in its study file, and how each fares (``claims.csv``).

A study file may list the claims it tests, each with the paper's number, so
that its report (and the scorecard) set the paper beside our measurement with
the same arithmetic every time::

    claims:
      - claim: Table 3, NCBI-disease at 10%
        paper: 3.29                        # the paper's Δ, in points
        compare: [mt-authors, single]      # kind runs: a row of comparisons.csv
        corpus: NCBI-disease               # or pooled
      - claim: §4.5, mCLS gains from mtCLS
        paper: 0.79
        transfer: mcls|mtcls               # kind grid: a row of transfer.csv
        corpus: NCBI-disease
      - claim: §4.5, token-level labels help mCLS more
        paper: 0.64
        contrast: [mcls|mtcls, mcls|bcls]  # kind grid: a row of contrasts.csv

``claims.csv`` has one row per claim, in points: the paper's Δ, ours with its
95% interval and MDE, seeds, whether every run converged, our verdict (the
study's own, Holm over its table), where the paper's value lies against our
interval (inside, above or below) and whether our design could detect an
effect of the paper's size (|paper| ≥ MDE). A pooled claim names the corpora
its Δ is the mean over (``pooled_over``) and the study's corpora it lacks
(``left_out``: none of their runs paired yet, or held by a budget decision),
and so do its report and the scorecard. A claim whose measurement has not
finished yet is listed as such, and so is one with fewer than ``MIN_SEEDS``
paired seeds (its interval would cover test sentences alone), and one on a
corpus a budget decision holds (``budget.held_words``: waiting for the
decision, or left out where the corpus did not converge). Claims describe
what a study is compared with, not how it runs: they may be added to a study
already under way. A claim may
carry ``why:``, one line on why ours may differ for reasons other than the
method; claims.csv also holds each arm's mean ± std over seeds.

``taskrel claims FOLDER --from FILE`` writes claims.csv for a study (or report)
folder that ran before its file stated claims; ``taskrel scorecard --readme
reports/README.md`` rewrites the scorecard's table from the claims.csv of the
sources listed in its opening marker, so no number in it is copied by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .budget import LEFT_OUT
from .compare import POOLED
from .config import ConfigError
from .significance import MIN_SEEDS

MEASURES = ("compare", "transfer", "contrast")
KIND_MEASURES = {"runs": ("compare",), "grid": ("transfer", "contrast")}
ARMS = ("base_mean", "base_std", "with_mean", "with_std")  # without and with the auxiliary task(s), over seeds
COLUMNS = [
    "claim",
    "corpus",
    "measure",
    "paper",
    "base_mean",
    "base_std",
    "with_mean",
    "with_std",
    "ours",
    "ci_low",
    "ci_high",
    "mde",
    "seeds",
    "converged",
    "verdict",
    "paper_vs_ours",
    "detectable",
    "why",
    "pooled_over",
    "left_out",
    "under_way",
]


def check_claims(claims, kind: str, corpora: list, comparisons: list, grids: dict) -> None:
    """Refuse a malformed ``claims`` list, naming the claim. ``comparisons``: the study's (variant, baseline)
    pairs (kind runs); ``grids``: corpus folder name -> its GridConfig (kind grid)."""
    if not isinstance(claims, list):
        raise ConfigError(f"claims must be a list of claims, got {claims!r}")
    names = {Path(str(c)).name for c in corpora}
    for i, c in enumerate(claims):
        where = f"claims[{i}]"
        if not isinstance(c, dict):
            raise ConfigError(f"{where} must be a mapping (claim, paper, corpus and one of {MEASURES})")
        unknown = sorted(set(c) - {"claim", "paper", "corpus", "why", *MEASURES})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}")
        if not isinstance(c.get("claim"), str) or not c["claim"].strip():
            raise ConfigError(f"{where} needs its text: claim: ...")
        if not isinstance(c.get("why", ""), str):
            raise ConfigError(f"{where} ({c['claim']}): why is one line of text")
        paper = c.get("paper")
        if isinstance(paper, bool) or not isinstance(paper, (int, float)):
            raise ConfigError(f"{where} ({c['claim']}): paper must be the paper's Δ in points, got {paper!r}")
        measures = [m for m in MEASURES if m in c]
        allowed = KIND_MEASURES.get(kind, ())
        if len(measures) != 1 or measures[0] not in allowed:
            raise ConfigError(f"{where} ({c['claim']}): a {kind} study's claim names one of {allowed}")
        corpus = c.get("corpus", next(iter(names)) if len(names) == 1 else None)
        if corpus != POOLED or kind != "runs":
            if Path(str(corpus)).name not in names:
                raise ConfigError(f"{where} ({c['claim']}): corpus must be one of the study's {sorted(names)}")
        measure = measures[0]
        if measure == "compare" and (not isinstance(c[measure], list) or tuple(c[measure]) not in comparisons):
            raise ConfigError(f"{where} ({c['claim']}): compare must be one of the comparisons {comparisons}")
        if measure in ("transfer", "contrast"):
            grid = grids[Path(str(corpus)).name]
            pairs = [c[measure]] if measure == "transfer" else c[measure]
            if measure == "contrast" and (not isinstance(pairs, list) or pairs not in grid.contrasts):
                raise ConfigError(f"{where} ({c['claim']}): contrast must be one of the grid's {grid.contrasts}")
            for pair in pairs:
                if str(pair) not in grid.pair_names:
                    raise ConfigError(
                        f"{where} ({c['claim']}): {pair!r} is not one of the grid's pairs {grid.pair_names}"
                    )


# per measure: its table, whether that table is under the corpus's folder, the columns naming the row (beside
# ``corpus`` for a table of the study folder), and the table's names for Δ, seeds and convergence
TABLES = {
    "compare": ("comparisons.csv", False, ("variant", "baseline"), "delta", "seeds", "all_converged"),
    "transfer": ("transfer.csv", True, ("main", "secondary"), "mean_delta", "n_seeds", "converged"),
    "contrast": ("contrasts.csv", True, ("first", "second"), "difference", "seeds", "converged"),
}


def _read(path: Path, cache: dict) -> pd.DataFrame | None:
    """A table of the study folder, read once per ``claims_table`` (None if it is not there yet)."""
    if path not in cache:
        cache[path] = pd.read_csv(path) if path.is_file() else None
    return cache[path]


def _measured(folder: Path, claim: dict, measure: str, corpus: str, cache: dict) -> dict | None:
    """Our Δ, interval, MDE, seeds, convergence, verdict and arms for one claim, or None while it is not
    measured."""
    name, per_corpus, keys, delta, seeds, converged = TABLES[measure]
    base = folder / corpus if per_corpus else folder
    table = _read(base / name, cache)
    values = claim[measure].split("|") if measure == "transfer" else claim[measure]
    if table is None or not len(table):
        return None
    match = [table[k] == v for k, v in zip(keys, values)] + ([] if per_corpus else [table["corpus"] == corpus])
    found = table[np.logical_and.reduce(match)]
    if not len(found):
        return None
    r = found.iloc[0]
    got = {"ours": r[delta], "ci_low": r.ci_low, "ci_high": r.ci_high, "mde": r.mde, "seeds": int(r[seeds]),
           "converged": bool(r[converged]), "verdict": r.verdict}  # fmt: skip
    got["paired"] = {corpus: got["seeds"]}  # paired seeds per corpus measured, against those the study plans
    if measure == "compare":
        if corpus == POOLED:  # the corpora the pooled row holds: those with finished, paired runs
            got["pooled_over"] = list(json.loads(r.deltas))
            each = table[(table["variant"] == values[0]) & (table["baseline"] == values[1])]
            each = each[each["corpus"].isin(got["pooled_over"])]
            got["paired"] = dict(zip(each["corpus"], each[seeds].astype(int)))
        return got | dict(zip(ARMS, (r.baseline_mean, r.baseline_std, r.variant_mean, r.variant_std)))
    if measure == "transfer":
        return got | _grid_arms(_read(base / "runs.csv", cache), *values)
    return got


def _grid_arms(runs: pd.DataFrame | None, main: str, secondary: str) -> dict:
    """Mean and std over seeds of the main task alone and with the secondary (a grid's ``runs.csv``)."""
    if runs is None:
        return {}
    other = runs["secondary"].fillna("")
    alone = runs[(runs["main"] == main) & (other == "")]["score"]
    both = runs[(runs["main"] == main) & (other == secondary)]["score"]
    return dict(zip(ARMS, (alone.mean(), alone.std(), both.mean(), both.std())))


def planned_seeds(study) -> dict:
    """A runs study's planned number of seeds per corpus (its folder name), which tells a comparison still
    under way from a finished one; other kinds are analysed once every run is done: none."""
    if study.kind != "runs":
        return {}
    return {Path(str(c)).name: len(study.seeds_of(str(c))) for c in study.corpora}


def claims_table(
    folder,
    claims: list,
    corpora: list,
    unmeasured: str = "not measured yet",
    planned: dict | None = None,
    held: dict | None = None,
) -> pd.DataFrame:
    """One row per claim (points): the paper's Δ beside ours, from the study folder's tables; with no folder
    (a study not started), every claim's verdict is ``unmeasured``. ``planned``: seeds per corpus the study
    plans (``planned_seeds``); a claim measured on fewer says where (``under_way``), and its verdict is
    read as one so far. ``held``: ``{corpus: why}`` for corpora a budget decision holds (``Study.held_corpora``):
    a claim there with nothing measured says why instead of ``unmeasured``."""
    rows, cache, planned, held = [], {}, planned or {}, held or {}
    names = [Path(str(x)).name for x in corpora]  # as the tables name them (corpus folders' names)
    for c in claims:
        corpus = Path(str(c.get("corpus", corpora[0]))).name  # as the tables name it (a corpus folder's name)
        measure = next(m for m in MEASURES if m in c)
        label = c[measure] if isinstance(c[measure], str) else " vs ".join(map(str, c[measure]))
        row = {"claim": c["claim"], "corpus": corpus, "measure": f"{measure} {label}", "paper": float(c["paper"]),
               "why": c.get("why", "")}  # fmt: skip
        got = _measured(Path(folder), c, measure, corpus, cache) if folder is not None else None
        if got is None:
            rows.append(row | {"verdict": held.get(corpus, unmeasured)})
            continue
        if "pooled_over" in got:  # a pooled row names its corpora, and the study's corpora it lacks
            pooled = got.pop("pooled_over")
            row |= {"pooled_over": "; ".join(pooled), "left_out": "; ".join(x for x in names if x not in pooled)}
        if got["seeds"] < MIN_SEEDS:  # its interval would hold test sentences alone: not set beside the paper
            n = got["seeds"]
            early = f"{n} seed{'s' if n != 1 else ''} so far; a claim needs {MIN_SEEDS}"
            rows.append(row | {"seeds": n, "converged": got["converged"], "verdict": early})
            continue
        short = [f"{k} at {n} of {planned[k]} seeds" for k, n in got["paired"].items() if n < planned.get(k, n)]
        if short:  # the study trains more seeds there: its verdict is one so far
            row["under_way"] = "; ".join(short)
        scaled = {k: 100 * got[k] for k in ("ours", "ci_low", "ci_high", "mde", *ARMS) if k in got}
        paper = row["paper"]
        where = (
            "above our interval"
            if paper > scaled["ci_high"]
            else "below our interval"
            if paper < scaled["ci_low"]
            else "inside our interval"
        )
        detectable = bool(math.isfinite(scaled["mde"]) and abs(paper) >= scaled["mde"])
        rows.append(row | scaled | {k: got[k] for k in ("seeds", "converged", "verdict")}
                    | {"paper_vs_ours": where, "detectable": detectable})  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def write_claims(folder, study) -> pd.DataFrame | None:
    """``claims.csv`` of a study folder from its study's ``claims`` (None: the study states none)."""
    if not study.claims:
        return None
    corpora = [str(c) for c in study.corpora]
    table = claims_table(folder, study.claims, corpora, planned=planned_seeds(study), held=study.held_corpora())
    table.to_csv(Path(folder) / "claims.csv", index=False)
    return table


def pooled_words(pooled_over, left_out) -> str:
    """How a pooled claim names its corpora (``claims.csv``'s ``pooled_over`` and ``left_out``, "; "-separated;
    a claims.csv written before they were kept says "the corpora")."""
    if not isinstance(pooled_over, str) or not pooled_over:
        return "pooled over the corpora"
    *first, last = pooled_over.split("; ")
    text = "pooled over " + (f"{', '.join(first)} and {last}" if first else last)
    return text + (f" (without {left_out.replace('; ', ', ')})" if isinstance(left_out, str) and left_out else "")


def so_far(verdict, under_way) -> str:
    """A claim's verdict, read as one so far where the study has not trained all the seeds it plans."""
    return f"{verdict} so far ({under_way})" if isinstance(under_way, str) and under_way else str(verdict)


def claims_blocks(folder: Path) -> list:
    """The report's table of the paper's claims (``claims.csv``), first in a study's report."""
    path = Path(folder) / "claims.csv"
    if not path.is_file():
        return []
    t = pd.read_csv(path).reindex(columns=COLUMNS)  # one written before a column was kept: empty there
    num = lambda v, fmt="+.2f": "–" if pd.isna(v) else format(v, fmt)  # noqa: E731
    table = pd.DataFrame(
        {
            "claim": t["claim"],
            "measured as": [
                f"{m}, {pooled_words(p, lo)}" if c == POOLED else f"{m} on {c}"
                for m, c, p, lo in zip(t["measure"], t["corpus"], t["pooled_over"], t["left_out"])
            ],
            "paper": t["paper"].map(num),
            "ours (95% CI)": [
                "–" if pd.isna(o) else f"{o:+.2f} ({lo:+.2f}, {hi:+.2f})"
                for o, lo, hi in zip(t["ours"], t["ci_low"], t["ci_high"])
            ],
            "MDE": t["mde"].map(lambda v: num(v, ".2f")),
            "seeds": t["seeds"].map(lambda v: "–" if pd.isna(v) else str(int(v))),
            "converged": t["converged"].map(lambda v: "–" if pd.isna(v) else ("yes" if v else "**no**")),
            "verdict": [so_far(v, u) for v, u in zip(t["verdict"], t["under_way"])],
            "the paper's value": [
                "–" if pd.isna(w) else f"{w}" + ("" if d else "; smaller than our MDE")
                for w, d in zip(t["paper_vs_ours"], t["detectable"])
            ],
        }
    )
    text = (
        "Each claim of the paper this study tests, the paper's Δ beside ours, in points. Our interval is "
        "unadjusted; the verdict is the study's own (Holm over its table, and only where every run converged). "
        "A paper value smaller than our MDE is one this design could not have detected; the paper's number is "
        "from BioBERT and its own budget, so a value outside our interval is a difference of set-ups, not by "
        "itself a failure to replicate."
    )
    return [("h2", "The paper's claims"), ("p", text), ("table", table)]


def claims_for_folder(folder, from_file=None, log=None) -> pd.DataFrame:
    """Write ``claims.csv`` into a study folder, or its report folder (both hold ``study.json`` and, for a runs
    study, ``comparisons.csv``), from the claims of its own record or of ``from_file`` (a study run under an
    earlier version of its file, before it stated claims). Claims the folder's study cannot measure (a
    comparison it lacks) are left out, and said."""
    from .experiments import Study, load_study

    folder = Path(folder)
    # the study as recorded: its kind, corpora and comparisons are all that is needed, and a record is read as
    # written (an old one may predate a setting's check; its tables stand)
    study = Study.from_dict(json.loads((folder / "study.json").read_text()))
    claims = load_study(from_file).claims if from_file else study.claims
    comparisons = study.comparisons() if study.kind == "runs" else []
    grids = {Path(str(c)).name: g for c, g in study.grid_configs()} if study.kind == "grid" else {}
    kept = []
    for c in claims:
        try:
            check_claims([c], study.kind, study.corpora, comparisons, grids)
            kept.append(c)
        except ConfigError:
            (log or print)(f"{folder}: left out, its study does not measure it: {c.get('claim')}")
    held = study.held_corpora() if study.budget_from else {}
    table = claims_table(folder, kept, [str(x) for x in study.corpora], planned=planned_seeds(study), held=held)
    table.to_csv(folder / "claims.csv", index=False)
    return table


SCORECARD_BEGIN = "<!-- scorecard:begin"
SCORECARD_END = "<!-- scorecard:end -->"
SUMMARY_BEGIN = "<!-- scorecard:summary"


def _points(v, fmt: str = "+.2f") -> str:
    return "–" if pd.isna(v) else format(v, fmt).replace("-", "−")


def scorecard_rows(sources: list, reports_root="reports") -> list[dict]:
    """The scorecard's rows from ``sources`` in order: folders holding ``claims.csv`` (a study's report or
    results), or study files, whose claims are read from ``REPORTS_ROOT/<study name>/claims.csv`` once the
    study has a report there, and listed as under way (its runs archived there, no claims yet) or not started
    before."""
    from .experiments import load_study

    rows = []
    for source in map(Path, sources):
        if source.is_dir():
            table, where = pd.read_csv(source / "claims.csv"), f"`{source}`"
        else:
            study = load_study(source)
            report = Path(reports_root) / study.name
            if (report / "claims.csv").is_file():
                table, where = pd.read_csv(report / "claims.csv"), f"`{report}`"
                _check_stated(table, claims_table(None, study.claims, [str(c) for c in study.corpora]),
                              report / "claims.csv", source)  # fmt: skip
            else:
                from .archive import ARCHIVE

                # a study whose first runs are committed (its archive) but not yet analysed is under way
                status = "under way, not analysed yet" if (report / ARCHIVE).is_file() else "not started"
                table = claims_table(None, study.claims, [str(c) for c in study.corpora], status)
                where = f"`{source}`"
        for r in table.itertuples():
            rows.append({**r._asdict(), "where": where})
    return rows


STATED = ("claim", "corpus", "measure", "paper", "why")  # what a study file says of a claim; the rest is measured


def _check_stated(measured: pd.DataFrame, stated: pd.DataFrame, path: Path, source: Path) -> None:
    """A report's ``claims.csv`` must state the claims its study file states now: a claim added, dropped or
    reworded there (its paper number or its ``why``) would otherwise reach the scorecard as it was."""

    def key(t: pd.DataFrame) -> list:
        t = t.reindex(columns=list(STATED)).astype({"why": object})
        t["why"] = t["why"].where(t["why"].notna(), "")
        return [tuple(round(v, 6) if isinstance(v, float) else str(v) for v in row) for row in t.itertuples(False)]

    old, new = key(measured), key(stated)
    if old == new:
        return
    if len(old) != len(new):
        what = f"{len(old)} claims there, {len(new)} in the file"
    else:
        at = next(i for i, (a, b) in enumerate(zip(old, new), 1) if a != b)
        fields = ", ".join(f for f, a, b in zip(STATED, old[at - 1], new[at - 1]) if a != b)
        what = f"claim {at} ({new[at - 1][0]!r}) differs in {fields}"
    raise ConfigError(
        f"{path} states the claims of an earlier {source}: {what}. Bring it up to date with "
        f"`taskrel claims {path.parent} --from {source}` (or the study's --summarise and report)"
    )


def _cells(r: dict) -> dict:
    """One claim's measured cells, worded once for both tables: the arms, the seeds, Δ with its interval and
    MDE, the verdict with where the paper's value lies. A claim measured with a run that did not converge says
    so in bold, in the ours and verdict cells."""
    measured = not pd.isna(r.get("ours"))
    converged_or_unmeasured = not measured or r.get("converged") is True or r.get("converged") == 1.0
    flag = "" if converged_or_unmeasured else " **not converged**"
    arm = lambda m, sd: _points(m, ".2f") + ("" if pd.isna(sd) else f" ± {_points(sd, '.2f')}")  # noqa: E731
    arms, seeds, delta, verdict = "–", "", "–", so_far(r["verdict"], r.get("under_way"))
    if measured and not pd.isna(r.get("base_mean")):
        arms = f"{arm(r['base_mean'], r['base_std'])} → {arm(r['with_mean'], r['with_std'])}"
    if measured:  # a pooled row: the mean over corpora (no std), at the fewest seeds any corpus has
        seeds = f"{int(r['seeds'])} seeds"
        if r["corpus"] == POOLED:
            seeds = f"at least {seeds} per corpus, {pooled_words(r.get('pooled_over'), r.get('left_out'))}"
        seeds += flag
        delta = f"{_points(r['ours'])} ({_points(r['ci_low'])}, {_points(r['ci_high'])})"
        verdict += f"; the paper's value lies {r['paper_vs_ours']}"
        verdict += "" if r["detectable"] in (True, 1.0) else ", smaller than our MDE"
        verdict += flag
    return {"measured": measured, "arms": arms, "seeds": seeds, "delta": delta, "verdict": verdict}


def _table(header: list, align: str, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", align]
    for cells in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def scorecard_markdown(rows: list[dict]) -> str:
    """The scorecard table: the paper's Δ beside ours, each arm's mean ± std, verdict and where."""
    body = []
    for i, r in enumerate(rows, 1):
        c = _cells(r)
        ours = "; ".join(x for x in (c["arms"], c["seeds"]) if x != "–") if c["measured"] else "–"
        delta = f"{c['delta']}, MDE {_points(r['mde'], '.2f')}" if c["measured"] else "–"
        why = "" if pd.isna(r.get("why")) else str(r.get("why") or "")
        body.append([i, r["claim"], _points(r["paper"]), ours, delta, c["verdict"], r["where"], why])
    header = [
        "#",
        "claim (paper)",
        "paper Δ",
        "ours: without → with (mean ± std, seeds)",
        "Δ (95% CI), MDE",
        "verdict",
        "where",
        "why ours may differ for reasons other than the method",
    ]
    return _table(header, "|---|---|---:|---:|---:|---|---|---|", body)


def scorecard_summary(rows: list[dict]) -> str:
    """The short table (a project README's results): the measured claims only, Δ and verdict, and a line
    counting the claims not measured yet."""
    body, early, left = [], 0, 0
    for r in rows:
        c = _cells(r)
        if c["measured"]:
            body.append([r["claim"], _points(r["paper"]), c["delta"], c["seeds"], c["verdict"], r["where"]])
        elif not pd.isna(r.get("seeds")):  # under way, at fewer than MIN_SEEDS paired seeds
            early += 1
        elif str(r.get("verdict")).startswith(LEFT_OUT):  # a budget decision left its corpus out for good
            left += 1
    header = ["claim (paper)", "paper Δ", "ours: Δ (95% CI)", "seeds", "verdict", "where"]
    text = _table(header, "|---|---:|---:|---|---|---|", body)
    waiting = len(rows) - len(body) - early - left
    if left:
        whose = "their corpora do" if left > 1 else "its corpus does"
        text += (f"\n{left} more claim{'s' if left > 1 else ''} left out by a budget decision: {whose} not "
                 "converge within the budget tested (the scorecard says which).\n")  # fmt: skip
    if waiting:
        text += f"\n{waiting} more claim{'s' if waiting > 1 else ''} designed, not measured yet.\n"
    if early:
        text += (f"\n{early} more claim{'s' if early > 1 else ''} under way, at fewer than {MIN_SEEDS} paired seeds "
                 "(no interval is set beside the paper before then).\n")  # fmt: skip
    return text


def _marker(path: Path) -> tuple:
    """The scorecard marker in ``path``: its text, which marker (full or summary), where the marker and the
    end marker are, and the words the marker lists."""
    text = path.read_text()
    for tag in (SCORECARD_BEGIN, SUMMARY_BEGIN):
        begin, end = text.find(tag), text.find(SCORECARD_END)
        if begin >= 0 and end > begin:
            return text, tag, begin, end, text[begin + len(tag) : text.index("-->", begin)].split()
    raise ConfigError(
        f"{path}: no '{SCORECARD_BEGIN} SOURCE... -->' (or '{SUMMARY_BEGIN} SCORECARD -->') and "
        f"'{SCORECARD_END}' markers to write between"
    )


def write_scorecard(readme, sources: list | None = None, reports_root="reports", check: bool = False):
    """Rewrite the table between a file's scorecard markers: the full table after
    ``<!-- scorecard:begin SOURCE... -->`` (the sources, in the table's order, relative to the working folder),
    or the short one after ``<!-- scorecard:summary SCORECARD -->`` (the measured claims of the file SCORECARD's
    full table, whose marker keeps the one list of sources), up to ``<!-- scorecard:end -->``. ``sources``
    given replace a full marker's (and are written into it). Returns the number of claims; with ``check``,
    writes nothing and returns whether the table is up to date."""
    readme = Path(readme)
    text, tag, begin, end, listed = _marker(readme)
    if tag == SUMMARY_BEGIN:
        if sources or len(listed) != 1:
            raise ConfigError(
                f"{readme}: a summary takes its sources from the one scorecard file its marker names "
                f"('{SUMMARY_BEGIN} reports/README.md -->'), got {list(sources or listed)}"
            )
        _, full, _, _, sources = _marker(Path(listed[0]))
        if full != SCORECARD_BEGIN or not sources:
            raise ConfigError(f"{readme}: {listed[0]} has no '{SCORECARD_BEGIN} SOURCE... -->' marker to summarise")
        rows = scorecard_rows(sources, reports_root)
        table = scorecard_summary(rows)
    else:
        sources = [str(x) for x in sources] if sources else listed
        if not sources:
            raise ConfigError(f"{readme}: the scorecard marker lists no sources, and none were given")
        rows = scorecard_rows(sources, reports_root)
        listed, table = sources, scorecard_markdown(rows)
    new = text[:begin] + f"{tag} {' '.join(listed)} -->\n" + table + text[end:]
    if check:
        return new == text
    readme.write_text(new)
    return len(rows)
