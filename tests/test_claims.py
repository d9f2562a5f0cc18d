"""The paper's claims stated in a study file, set beside our measurements (claims.py)."""

import json
from pathlib import Path

import pandas as pd
import pytest
from test_experiments import RUNS_STUDY

from taskrel.claims import claims_table
from taskrel.cli import main
from taskrel.config import ConfigError
from taskrel.experiments import load_study

RUNS = RUNS_STUDY + "baseline: single\n"
CLAIMS = """claims:
  - {claim: beyond any F1, paper: 150, compare: [mt-mean, single]}
  - {claim: below any F1, paper: -150.0, compare: [mt-mean, single]}
"""
GRID = """
name: tiny-grid
kind: grid
corpora: [{corpus}]
seeds: [1]
defaults: {{model: {{encoder: tiny}}}}
grid: {{tasks: [ner, bcls, mcls], contrasts: [[mcls|ner, mcls|bcls]]}}
claims:
{claims}
"""


def write(tmp_path, text, name="study.yaml"):
    (tmp_path / name).write_text(text)
    return tmp_path / name


def test_claims_may_join_a_study_under_way_and_set_the_paper_beside_its_comparison(tiny_corpus, tmp_path, monkeypatch):
    out, rep = tmp_path / "out", tmp_path / "report"
    assert main(["run", str(write(tmp_path, RUNS.format(corpus=tiny_corpus))), "--out", str(out), "--no-progress"]) == 0
    assert not (out / "claims.csv").exists()
    command = json.loads((out / "study.json").read_text())["command"]
    with_claims = write(tmp_path, RUNS.format(corpus=tiny_corpus) + CLAIMS)  # added later: not a setting
    argv = ["run", str(with_claims), "--out", str(out), "--summarise", "--report", str(rep)]
    monkeypatch.setattr("sys.argv", ["taskrel", *argv])
    assert main(argv) == 0
    claims = pd.read_csv(out / "claims.csv")
    recorded = json.loads((out / "study.json").read_text())["claims"]  # the record says what the tables are from
    assert [c["claim"] for c in recorded] == list(claims["claim"])
    assert json.loads((out / "study.json").read_text())["command"] == command  # still the command that trained it
    comp = pd.read_csv(out / "comparisons.csv").iloc[0]
    assert list(claims["claim"]) == ["beyond any F1", "below any F1"]
    assert claims["ours"].tolist() == pytest.approx([100 * comp.delta] * 2)
    assert claims["ci_low"].iloc[0] == pytest.approx(100 * comp.ci_low) and (claims["seeds"] == 2).all()
    assert list(claims["paper_vs_ours"]) == ["above our interval", "below our interval"]
    assert list(claims["detectable"]) == [150 >= 100 * comp.mde, 150 >= 100 * comp.mde]
    assert (claims["verdict"] == comp.verdict).all() and claims["measure"].iloc[0] == "compare mt-mean vs single"
    text = (rep / "report.md").read_text()
    assert "The paper's claims" in text and "beyond any F1" in text and (rep / "claims.csv").is_file()


def test_a_claim_not_measured_yet_says_so(tiny_corpus, tmp_path):
    study = load_study(write(tmp_path, RUNS.format(corpus=tiny_corpus) + CLAIMS))
    table = claims_table(tmp_path / "empty", study.claims, [str(tiny_corpus)])
    assert list(table["verdict"]) == ["not measured yet"] * 2 and table["ours"].isna().all()


def test_grid_claims_read_transfers_and_contrasts_in_points(tmp_path):
    folder = tmp_path / "g" / "tiny"
    folder.mkdir(parents=True)
    pd.DataFrame(
        {"main": ["mcls"], "secondary": ["ner"], "mean_delta": [0.01], "ci_low": [-0.002], "ci_high": [0.022],
         "mde": [0.015], "n_seeds": [3], "converged": [True], "verdict": ["undetermined"]}
    ).to_csv(folder / "transfer.csv", index=False)  # fmt: skip
    pd.DataFrame(
        {"first": ["mcls|ner"], "second": ["mcls|bcls"], "difference": [0.004], "ci_low": [-0.01],
         "ci_high": [0.018], "mde": [0.02], "seeds": [3], "converged": [False], "verdict": ["undetermined"]}
    ).to_csv(folder / "contrasts.csv", index=False)  # fmt: skip
    claims = [
        {"claim": "mCLS gains from NER", "paper": 0.54, "transfer": "mcls|ner", "corpus": "tiny"},
        {"claim": "NER helps mCLS more", "paper": 0.39, "contrast": ["mcls|ner", "mcls|bcls"], "corpus": "tiny"},
        {"claim": "mCLS gains from bCLS", "paper": 0.15, "transfer": "mcls|bcls", "corpus": "tiny"},
    ]
    t = claims_table(tmp_path / "g", claims, ["tiny"]).set_index("claim")
    first = t.loc["mCLS gains from NER"]
    assert first.ours == pytest.approx(1.0) and (first.ci_low, first.ci_high) == pytest.approx((-0.2, 2.2))
    assert first.paper_vs_ours == "inside our interval" and not first.detectable  # 0.54 < MDE 1.5
    second = t.loc["NER helps mCLS more"]
    assert second.ours == pytest.approx(0.4) and not second.converged and second.mde == pytest.approx(2.0)
    assert t.loc["mCLS gains from bCLS"].verdict == "not measured yet"


def test_a_claim_at_one_seed_is_not_set_beside_the_paper(tmp_path):
    """One paired seed: the interval covers test sentences alone, so no Δ, interval or "the paper's value lies
    above our interval" is drawn from it, in claims.csv, the full scorecard or its summary."""
    from taskrel.claims import scorecard_markdown, scorecard_summary

    folder = tmp_path / "g" / "tiny"
    folder.mkdir(parents=True)
    pd.DataFrame(
        {"main": ["mcls", "bcls"], "secondary": ["ner", "ner"], "mean_delta": [0.05, 0.01],
         "ci_low": [0.04, -0.01], "ci_high": [0.06, 0.03], "mde": [0.01, 0.02], "n_seeds": [1, 2],
         "converged": [True, True], "verdict": ["undetermined", "undetermined"]}
    ).to_csv(folder / "transfer.csv", index=False)  # fmt: skip
    claims = [
        {"claim": "one seed", "paper": 9.0, "transfer": "mcls|ner", "corpus": "tiny"},
        {"claim": "two seeds", "paper": 9.0, "transfer": "bcls|ner", "corpus": "tiny"},
    ]
    t = claims_table(tmp_path / "g", claims, ["tiny"]).set_index("claim")
    one = t.loc["one seed"]
    assert pd.isna(one.ours) and pd.isna(one.ci_high) and pd.isna(one.paper_vs_ours) and one.seeds == 1
    assert one.verdict == "1 seed so far; a claim needs 2"
    assert t.loc["two seeds"].paper_vs_ours == "above our interval" and t.loc["two seeds"].seeds == 2
    rows = [{**r._asdict(), "where": "here"} for r in t.reset_index().itertuples()]
    full = scorecard_markdown(rows).splitlines()
    assert "| one seed | +9.00 | – | – | 1 seed so far; a claim needs 2 |" in full[2] and "lies" not in full[2]
    summary = scorecard_summary(rows)
    assert "one seed" not in summary and "| two seeds |" in summary
    assert "1 more claim under way, at fewer than 2 paired seeds" in summary and "not measured yet" not in summary


@pytest.mark.parametrize(
    "claim, error",
    [
        ("  - {claim: x, paper: 1, transfer: ner|ner}", "not one of the grid's pairs"),
        ("  - {claim: x, paper: 1, transfer: ner|mtcls}", "not one of the grid's pairs"),
        ("  - {claim: x, paper: 1, contrast: [mcls|bcls, mcls|ner]}", "one of the grid's"),
        ("  - {claim: x, paper: 1, compare: [a, b]}", "names one of"),
        ("  - {claim: x, paper: '1', transfer: ner|bcls}", "in points"),
        ("  - {claim: x, paper: 1, transfer: ner|bcls, corpus: BC2GM}", "one of the study's"),
        ("  - {paper: 1, transfer: ner|bcls}", "needs its text"),
        ("  - {claim: x, paper: 1, transfer: ner|bcls, colour: red}", "unknown key"),
    ],
)
def test_a_malformed_claim_is_refused_naming_it(tiny_corpus, tmp_path, claim, error):
    with pytest.raises(ConfigError, match=error):
        load_study(write(tmp_path, GRID.format(corpus=tiny_corpus, claims=claim)))
    ok = "  - {claim: x, paper: 1, transfer: ner|bcls}\n  - {claim: y, paper: 0.2, contrast: [mcls|ner, mcls|bcls]}"
    assert len(load_study(write(tmp_path, GRID.format(corpus=tiny_corpus, claims=ok))).claims) == 2


def test_a_runs_claim_must_name_one_of_its_comparisons(tiny_corpus, tmp_path):
    bad = RUNS.format(corpus=tiny_corpus) + "claims:\n  - {claim: x, paper: 1, compare: [single, mt-mean]}\n"
    with pytest.raises(ConfigError, match="one of the comparisons"):
        load_study(write(tmp_path, bad))
    pooled = (
        RUNS.format(corpus=tiny_corpus)
        + "claims:\n  - {claim: x, paper: 1, compare: [mt-mean, single], corpus: pooled}\n"
    )
    assert load_study(write(tmp_path, pooled)).claims[0]["corpus"] == "pooled"


def test_the_scorecard_gathers_claims_marks_runs_not_converged_and_lists_studies_not_started(tiny_corpus, tmp_path):
    from taskrel.claims import claims_for_folder, write_scorecard

    out = tmp_path / "out"
    assert main(["run", str(write(tmp_path, RUNS.format(corpus=tiny_corpus))), "--out", str(out), "--no-progress"]) == 0
    # a study run before its file stated claims: they come from the file, those it cannot measure left out
    more = "  - {claim: unmeasurable here, paper: 1, compare: [mt2, single]}\n"
    variants = "  mt2: {model: {tasks: [ner, mcls]}}\nbaseline: single\n"
    later = RUNS.format(corpus=tiny_corpus).replace("baseline: single\n", variants) + CLAIMS + more
    said = []
    table = claims_for_folder(out, write(tmp_path, later, "later.yaml"), log=said.append)
    assert list(table["claim"]) == ["beyond any F1", "below any F1"] and "unmeasurable here" in said[0]
    comparisons = pd.read_csv(out / "comparisons.csv")
    converged = bool(comparisons["all_converged"].iloc[0])  # 1 epoch of a tiny model: it stopped at the schedule
    grid = write(
        tmp_path, GRID.format(corpus=tiny_corpus, claims="  - {claim: not run, paper: 0.5, transfer: ner|bcls}")
    )
    readme = tmp_path / "README.md"
    readme.write_text("# Scorecard\n\n<!-- scorecard:begin -->\nold table\n<!-- scorecard:end -->\n\nafter\n")
    assert write_scorecard(readme, [out, grid], reports_root=tmp_path / "reports") == 3
    text = readme.read_text()
    assert f"<!-- scorecard:begin {out} {grid} -->" in text  # the sources, kept in the marker
    assert write_scorecard(readme, reports_root=tmp_path / "reports", check=True)  # from the marker: up to date
    readme.write_text(text.replace("+150.00", "+151.00"))
    assert not write_scorecard(readme, reports_root=tmp_path / "reports", check=True)  # edited by hand: stale
    assert write_scorecard(readme, reports_root=tmp_path / "reports") == 3 and readme.read_text() == text
    assert "old table" not in text and text.endswith("<!-- scorecard:end -->\n\nafter\n")
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 3 and "beyond any F1 | +150.00" in rows[0] and "lies above our interval" in rows[0]
    assert ("**not converged**" in rows[0]) == (not converged)
    assert "| not started |" in rows[2] and f"`{grid}`" in rows[2]
    # a summary elsewhere (a project README): the measured claims of that scorecard, from its one list of sources
    short = tmp_path / "PROJECT.md"
    short.write_text(f"# Results\n\n<!-- scorecard:summary {readme} -->\n<!-- scorecard:end -->\n")
    assert write_scorecard(short, reports_root=tmp_path / "reports") == 3
    summary = short.read_text()
    lines = [line for line in summary.splitlines() if line.startswith("| ") and "claim (paper)" not in line]
    assert len(lines) == 2 and lines[0].startswith("| beyond any F1 | +150.00 |") and "not run" not in summary
    assert ("**not converged**" in lines[0]) == (not converged)
    assert "1 more claim designed, not measured yet." in summary
    assert write_scorecard(short, reports_root=tmp_path / "reports", check=True)
    with pytest.raises(ConfigError, match="one scorecard file"):
        write_scorecard(short, [out])
    readme.write_text("no markers\n")
    with pytest.raises(ConfigError, match="markers"):
        write_scorecard(readme, [out])
    with pytest.raises(ConfigError, match="markers"):
        write_scorecard(short)
    # the grid's first runs committed (its archive in its report folder), nothing analysed yet: under way
    from taskrel.claims import scorecard_rows
    from taskrel.experiments import load_study

    report = tmp_path / "reports" / load_study(grid).name
    report.mkdir(parents=True)
    (report / "runs.tar.gz").write_bytes(b"")
    assert [r["verdict"] for r in scorecard_rows([grid], tmp_path / "reports")] == ["under way, not analysed yet"]


def test_the_committed_scorecard_is_up_to_date(monkeypatch):
    """reports/README.md's table, and the README's short one, are what `make scorecard` writes from the
    committed claims.csv files."""
    from taskrel.claims import write_scorecard

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    for readme in ("reports/README.md", "README.md"):
        assert write_scorecard(root / readme, check=True), f"{readme}: run `make scorecard`"


def test_the_scorecard_refuses_a_report_whose_claims_the_study_file_has_since_changed(tiny_corpus, tmp_path):
    from taskrel.claims import write_scorecard

    study = write(tmp_path, RUNS.format(corpus=tiny_corpus) + CLAIMS)
    reports = tmp_path / "reports"
    report = reports / load_study(study).name
    out = tmp_path / "out"
    assert main(["run", str(study), "--out", str(out), "--no-progress", "--report", str(report)]) == 0
    readme = tmp_path / "README.md"
    readme.write_text(f"<!-- scorecard:begin {study} -->\n<!-- scorecard:end -->\n")
    assert write_scorecard(readme, reports_root=reports) == 2  # the report's claims are the file's
    reworded = CLAIMS.replace("paper: 150,", "paper: 150, why: encoder,")
    write(tmp_path, RUNS.format(corpus=tiny_corpus) + reworded)
    with pytest.raises(ConfigError, match=r"claim 1 \('beyond any F1'\) differs in why.*taskrel claims"):
        write_scorecard(readme, reports_root=reports, check=True)
    write(
        tmp_path,
        RUNS.format(corpus=tiny_corpus) + reworded + "  - {claim: new, paper: 1, compare: [mt-mean, single]}\n",
    )
    with pytest.raises(ConfigError, match="2 claims there, 3 in the file"):
        write_scorecard(readme, reports_root=reports)
    assert main(["claims", str(report), "--from", str(study)]) == 0  # brought up to date: the scorecard takes it
    assert write_scorecard(readme, reports_root=reports) == 3 and "| encoder |" in readme.read_text()


def test_a_pooled_claim_names_the_corpora_it_pools_and_those_it_lacks(tmp_path):
    """A pooled Δ is the mean over the corpora with paired runs: a corpus whose runs are held (a budget
    pending) or not trained yet is not in it, and the claim, its report and the scorecard say which."""
    from taskrel.claims import claims_blocks, scorecard_markdown

    row = {"variant": "mt", "baseline": "single", "ci_low": -0.01, "ci_high": 0.02, "mde": 0.015, "seeds": 3,
           "all_converged": True, "verdict": "undetermined", "baseline_mean": 0.7, "baseline_std": float("nan"),
           "variant_mean": 0.705, "variant_std": float("nan")}  # fmt: skip
    pd.DataFrame(
        [row | {"corpus": "pooled", "delta": 0.005, "deltas": json.dumps({"chem": 0.002, "ncbi": 0.008})},
         row | {"corpus": "chem", "delta": 0.002, "deltas": "[0.002]"}]
    ).to_csv(tmp_path / "comparisons.csv", index=False)  # fmt: skip
    claims = [{"claim": "on average", "paper": 1.72, "compare": ["mt", "single"], "corpus": "pooled"},
              {"claim": "on chem", "paper": 0.47, "compare": ["mt", "single"], "corpus": "chem"}]  # fmt: skip
    t = claims_table(tmp_path, claims, ["data/gene", "data/chem", "data/ncbi"])
    assert t.loc[0, "pooled_over"] == "chem; ncbi" and t.loc[0, "left_out"] == "gene"
    assert pd.isna(t.loc[1, "pooled_over"]) and t.loc[0, "ours"] == pytest.approx(0.5)
    t.to_csv(tmp_path / "claims.csv", index=False)
    (table,) = [b[1] for b in claims_blocks(tmp_path) if b[0] == "table"]
    assert list(table["measured as"]) == [
        "compare mt vs single, pooled over chem and ncbi (without gene)",
        "compare mt vs single on chem",
    ]
    rows = [{**r._asdict(), "where": "here"} for r in pd.read_csv(tmp_path / "claims.csv").itertuples()]
    card = scorecard_markdown(rows).splitlines()
    assert "at least 3 seeds per corpus, pooled over chem and ncbi (without gene)" in card[2]
    assert "; 3 seeds |" in card[3] and "pooled" not in card[3]
    # every corpus pooled: none is said to be missing; a claims.csv from before these columns: "the corpora"
    full = claims_table(tmp_path, claims[:1], ["chem", "ncbi"])
    line = scorecard_markdown([{**full.loc[0], "where": "x"}]).splitlines()[2]
    assert full.loc[0, "left_out"] == "" and "pooled over chem and ncbi |" in line and "without" not in line
    t.drop(columns=["pooled_over", "left_out"]).to_csv(tmp_path / "claims.csv", index=False)
    (table,) = [b[1] for b in claims_blocks(tmp_path) if b[0] == "table"]
    assert table["measured as"][0] == "compare mt vs single, pooled over the corpora"


def test_a_claim_measured_on_fewer_seeds_than_planned_is_a_verdict_so_far(tmp_path):
    """A runs study sliced while it trains (NCBI-disease at 4 of its 12 seeds): the claims on that corpus, and
    the pooled one holding it, say that their verdict is one so far, in claims.csv, the report and both
    scorecards; a corpus at all its seeds says nothing."""
    from taskrel.claims import claims_blocks, scorecard_markdown, scorecard_summary

    row = {"variant": "mt", "baseline": "single", "ci_low": -0.01, "ci_high": 0.02, "mde": 0.015,
           "all_converged": True, "verdict": "undetermined", "baseline_mean": 0.7, "baseline_std": 0.01,
           "variant_mean": 0.705, "variant_std": 0.01, "delta": 0.005}  # fmt: skip
    pd.DataFrame(
        [row | {"corpus": "chem", "seeds": 5, "deltas": "[0.005]"},
         row | {"corpus": "ncbi", "seeds": 4, "deltas": "[0.005]"},
         row | {"corpus": "pooled", "seeds": 4, "deltas": json.dumps({"chem": 0.005, "ncbi": 0.005})}]
    ).to_csv(tmp_path / "comparisons.csv", index=False)  # fmt: skip
    claims = [{"claim": c, "paper": 1.0, "compare": ["mt", "single"], "corpus": c} for c in ("chem", "ncbi", "pooled")]
    t = claims_table(tmp_path, claims, ["chem", "ncbi"], planned={"chem": 5, "ncbi": 12})
    assert list(t["under_way"].fillna("")) == ["", "ncbi at 4 of 12 seeds", "ncbi at 4 of 12 seeds"]
    assert (t["verdict"] == "undetermined").all()  # the study's own verdict, as its table has it
    t.to_csv(tmp_path / "claims.csv", index=False)
    (table,) = [b[1] for b in claims_blocks(tmp_path) if b[0] == "table"]
    assert list(table["verdict"]) == ["undetermined"] + ["undetermined so far (ncbi at 4 of 12 seeds)"] * 2
    rows = [{**r._asdict(), "where": "here"} for r in pd.read_csv(tmp_path / "claims.csv").itertuples()]
    card = scorecard_markdown(rows).splitlines()[2:]
    assert "| undetermined; the paper's value" in card[0]
    assert all("| undetermined so far (ncbi at 4 of 12 seeds); the paper's value" in line for line in card[1:])
    assert scorecard_summary(rows).count("so far (ncbi at 4 of 12 seeds)") == 2
    # without a plan (a grid, or a table read on its own) nothing is said
    assert claims_table(tmp_path, claims, ["chem", "ncbi"])["under_way"].isna().all()
