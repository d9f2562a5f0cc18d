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
effect of the paper's size (|paper| ≥ MDE). A claim whose measurement has not
finished yet is listed as such. Claims describe what a study is compared with,
not how it runs: they may be added to a study already under way.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .config import ConfigError

MEASURES = ("compare", "transfer", "contrast")
KIND_MEASURES = {"runs": ("compare",), "grid": ("transfer", "contrast")}
POOLED = "pooled"
COLUMNS = [
    "claim",
    "corpus",
    "measure",
    "paper",
    "ours",
    "ci_low",
    "ci_high",
    "mde",
    "seeds",
    "converged",
    "verdict",
    "paper_vs_ours",
    "detectable",
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
        unknown = sorted(set(c) - {"claim", "paper", "corpus", *MEASURES})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}")
        if not isinstance(c.get("claim"), str) or not c["claim"].strip():
            raise ConfigError(f"{where} needs its text: claim: ...")
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
                main, _, secondary = str(pair).partition("|")
                if main not in grid.tasks or secondary not in grid.tasks or main == secondary:
                    raise ConfigError(f"{where} ({c['claim']}): {pair!r} is not an ordered pair of {grid.tasks}")


def _row(table: pd.DataFrame, mask) -> pd.Series | None:
    found = table[mask] if len(table) else table
    return found.iloc[0] if len(found) else None


def _measured(folder: Path, kind: str, claim: dict, corpus: str) -> dict | None:
    """Our Δ, interval, MDE, seeds, convergence and verdict for one claim, or None while it is not measured."""
    if kind == "runs":
        path = folder / "comparisons.csv"
        table = pd.read_csv(path) if path.is_file() else pd.DataFrame()
        variant, baseline = claim["compare"]
        r = _row(table, (table.get("corpus") == corpus) & (table.get("variant") == variant)
                 & (table.get("baseline") == baseline)) if len(table) else None  # fmt: skip
        if r is None:
            return None
        return {"ours": r.delta, "ci_low": r.ci_low, "ci_high": r.ci_high, "mde": r.mde, "seeds": int(r.seeds),
                "converged": bool(r.all_converged), "verdict": r.verdict}  # fmt: skip
    sub = folder / Path(corpus).name
    if "transfer" in claim:
        path = sub / "transfer.csv"
        table = pd.read_csv(path) if path.is_file() else pd.DataFrame()
        main, _, secondary = claim["transfer"].partition("|")
        r = _row(table, (table["main"] == main) & (table["secondary"] == secondary)) if len(table) else None
        if r is None:
            return None
        return {"ours": r.mean_delta, "ci_low": r.ci_low, "ci_high": r.ci_high, "mde": r.mde,
                "seeds": int(r.n_seeds), "converged": bool(r.converged), "verdict": r.verdict}  # fmt: skip
    path = sub / "contrasts.csv"
    table = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    first, second = claim["contrast"]
    r = _row(table, (table["first"] == first) & (table["second"] == second)) if len(table) else None
    if r is None:
        return None
    return {"ours": r.difference, "ci_low": r.ci_low, "ci_high": r.ci_high, "mde": r.mde, "seeds": int(r.seeds),
            "converged": bool(r.converged), "verdict": r.verdict}  # fmt: skip


def claims_table(folder, kind: str, claims: list, corpora: list) -> pd.DataFrame:
    """One row per claim (points): the paper's Δ beside ours, from the study folder's tables."""
    folder, rows = Path(folder), []
    for c in claims:
        corpus = Path(str(c.get("corpus", corpora[0]))).name  # as the tables name it (a corpus folder's name)
        measure = next(m for m in MEASURES if m in c)
        label = c[measure] if isinstance(c[measure], str) else " vs ".join(map(str, c[measure]))
        row = {"claim": c["claim"], "corpus": corpus, "measure": f"{measure} {label}", "paper": float(c["paper"])}
        got = _measured(folder, kind, c, corpus)
        if got is None:
            rows.append(row | {"verdict": "not measured yet"})
            continue
        scaled = {k: 100 * got[k] for k in ("ours", "ci_low", "ci_high", "mde")}
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
    table = claims_table(folder, study.kind, study.claims, [str(c) for c in study.corpora])
    table.to_csv(Path(folder) / "claims.csv", index=False)
    return table


def claims_blocks(folder: Path) -> list:
    """The report's table of the paper's claims (``claims.csv``), first in a study's report."""
    path = Path(folder) / "claims.csv"
    if not path.is_file():
        return []
    t = pd.read_csv(path)
    num = lambda v, fmt="+.2f": "–" if pd.isna(v) else format(v, fmt)  # noqa: E731
    table = pd.DataFrame(
        {
            "claim": t["claim"],
            "measured as": [
                f"{m}, pooled over the corpora" if c == POOLED else f"{m} on {c}"
                for m, c in zip(t["measure"], t["corpus"])
            ],
            "paper": t["paper"].map(num),
            "ours (95% CI)": [
                "–" if pd.isna(o) else f"{o:+.2f} ({lo:+.2f}, {hi:+.2f})"
                for o, lo, hi in zip(t["ours"], t["ci_low"], t["ci_high"])
            ],
            "MDE": t["mde"].map(lambda v: num(v, ".2f")),
            "seeds": t["seeds"].map(lambda v: "–" if pd.isna(v) else str(int(v))),
            "converged": t["converged"].map(lambda v: "–" if pd.isna(v) else ("yes" if v else "**no**")),
            "verdict": t["verdict"],
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
