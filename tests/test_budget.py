import json

import pandas as pd
import pytest

from taskrel.budget import decide
from taskrel.cli import main
from taskrel.config import ConfigError
from taskrel.experiments import load_study

DECIDER = """
name: tiny-budget
kind: runs
corpora: [{corpus}]
seeds: [1, 2]
decision: {{corpus: tiny, arms: [long], min_converged: 2}}
defaults:
  model: {{encoder: tiny, tasks: [ner]}}
  train: {{epochs: 1, batch_size: 8, lr: 1.0e-3, threads: 1}}
variants:
  short: {{}}
  long: {{train: {{epochs: 2, patience: 1}}}}
"""

FOLLOWER = """
name: tiny-follower
kind: runs
corpora: [{corpus}]
seeds: [1]
budget_from: {{tiny: {decider}}}
defaults:
  model: {{encoder: tiny, tasks: [ner]}}
  train: {{epochs: 1, batch_size: 8, lr: 1.0e-3, threads: 1}}
variants:
  single: {{}}
"""


def files(tmp_path, corpus):
    decider, follower = tmp_path / "decider.yaml", tmp_path / "follower.yaml"
    decider.write_text(DECIDER.format(corpus=corpus))
    follower.write_text(FOLLOWER.format(corpus=corpus, decider=decider))
    return decider, follower


def set_converged(folder, values):
    """The rule's input, set by hand so that each outcome is tested whatever the tiny runs did."""
    for seed, value in values.items():
        path = folder / f"seed{seed}" / "metrics.json"
        metrics = json.loads(path.read_text())
        path.write_text(json.dumps({**metrics, "converged": value}))


def test_a_follower_is_held_until_the_decision_then_follows_it(tiny_corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the decider's runs go to runs/tiny-budget, where the follower looks
    decider, follower = files(tmp_path, tiny_corpus)
    study = load_study(follower)
    assert study.run_configs(tmp_path / "out") == []  # nothing of the decider has run
    (held,) = study.waiting()
    assert held.startswith(
        "single on tiny (held: tiny-budget has not decided tiny's budget yet (long: 0 converged of 0"
    )
    assert "finished in runs/tiny-budget; its rule: at least 2 of the 2 runs of each arm converge at epochs 2" in held
    assert main(["run", str(follower), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "waiting: single on tiny (held" in capsys.readouterr().err
    assert not (tmp_path / "out" / "single").exists()  # held: nothing trained

    assert main(["run", str(decider), "--no-progress"]) == 0
    runs = tmp_path / "runs" / "tiny-budget" / "long" / "tiny"
    d = decide(decider)
    from taskrel.rundir import RunDir

    truth = sum(RunDir(runs / f"seed{s}").converged is True for s in (1, 2))
    assert d["complete"] and d["arms"] == {"long": {"runs": 2, "converged": truth}}
    assert d["budget"] == {"epochs": 2, "patience": 1} and d["fires"] == (truth == 2)

    set_converged(runs, {1: True, 2: True})  # fired: the corpus moves to 2 epochs, patience 1
    assert decide(decider)["fires"] is True
    (held,) = load_study(follower).waiting()
    assert "tiny-budget moves tiny to epochs 2, patience 1" in held
    assert f"add per_corpus: {{{tiny_corpus}: {{train: {{epochs: 2, patience: 1}}}}}} to {follower}" in held
    assert load_study(follower).run_configs(tmp_path / "out") == []

    text = follower.read_text() + f"per_corpus: {{{tiny_corpus}: {{train: {{epochs: 2, patience: 1}}}}}}\n"
    follower.write_text(text)
    study = load_study(follower)
    assert study.waiting() == [] and [v for v, *_ in study.run_configs(tmp_path / "out")] == ["single"]
    assert main(["run", str(follower), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert (tmp_path / "out" / "single" / "tiny" / "seed1" / "metrics.json").is_file()
    assert main(["report", str(tmp_path / "out"), "--out", str(tmp_path / "r-follower")]) == 0
    assert "tiny: tiny-budget moves tiny to" in (tmp_path / "r-follower" / "report.md").read_text()

    set_converged(runs, {2: False})  # not fired: the corpus leaves the comparisons, its finished runs too
    assert decide(decider)["fires"] is False
    study = load_study(follower)
    assert study.run_configs(tmp_path / "out") == []
    assert "tiny-budget leaves tiny out: its runs do not converge within epochs 2, patience 1" in study.waiting()[0]
    assert main(["report", str(tmp_path / "runs" / "tiny-budget"), "--out", str(tmp_path / "r-decider")]) == 0
    report = (tmp_path / "r-decider" / "report.md").read_text()
    assert "## Budget decision on tiny" in report and "leaves tiny out" in report


def test_a_claim_on_a_held_corpus_says_why_it_has_no_number(tiny_corpus, tmp_path, monkeypatch):
    """A claim on a corpus a decision holds reads "held until ..." while the decision is pending, "left out:
    ..." where the rule did not fire, and "held: ..." while the study does not train at the budget decided,
    instead of "not measured yet"; once the study follows the decision it is an ordinary claim."""
    from taskrel.claims import write_claims

    monkeypatch.chdir(tmp_path)
    decider, follower = files(tmp_path, tiny_corpus)
    claim = "baseline: single\nclaims:\n  - {claim: a claim, paper: 1.0, compare: [again, single], corpus: tiny}\n"
    follower.write_text(
        follower.read_text().replace("  single: {}", "  single: {}\n  again: {seed_offset: 100}") + claim
    )

    def verdict():
        study = load_study(follower)
        out = tmp_path / "out"
        out.mkdir(exist_ok=True)
        return study.held_corpora(), write_claims(out, study)["verdict"].tolist()

    pending = "held until tiny-budget decides tiny's budget"
    assert verdict() == ({"tiny": pending}, [pending])
    assert main(["run", str(decider), "--no-progress"]) == 0
    runs = tmp_path / "runs" / "tiny-budget" / "long" / "tiny"
    set_converged(runs, {1: True, 2: False})
    left = "left out: tiny does not converge within epochs 2, patience 1 (tiny-budget)"
    assert verdict() == ({"tiny": left}, [left])
    from taskrel.claims import scorecard_markdown, scorecard_summary

    rows = [{**r, "where": "out"} for r in pd.read_csv(tmp_path / "out" / "claims.csv").to_dict("records")]
    assert f"| {left} |" in scorecard_markdown(rows)  # the scorecard says which, the summary counts it apart
    summary = scorecard_summary(rows)
    assert "1 more claim left out by a budget decision: its corpus does not converge" in summary
    assert "not measured yet" not in summary
    set_converged(runs, {2: True})
    moved = "held: tiny-budget moved tiny to epochs 2, patience 1, which this study does not train it at yet"
    assert verdict() == ({"tiny": moved}, [moved])
    follower.write_text(
        follower.read_text() + f"per_corpus: {{{tiny_corpus}: {{train: {{epochs: 2, patience: 1}}}}}}\n"
    )
    assert verdict() == ({}, ["not measured yet"])


def test_an_unfinished_decision_is_pending_whatever_its_runs_say(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    decider, _ = files(tmp_path, tiny_corpus)
    decider.write_text(decider.read_text().replace("seeds: [1, 2]", "seeds: [1, 2, 3]"))
    assert main(["run", str(decider), "--no-progress"]) == 0
    import shutil

    shutil.rmtree(tmp_path / "runs" / "tiny-budget" / "long" / "tiny" / "seed3")
    d = decide(decider)
    assert not d["complete"] and d["fires"] is None and d["arms"]["long"]["runs"] == 2


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("arms: [long]", "arms: [longer]", "decision.arms must list variants"),
        ("min_converged: 2", "min_converged: 3", "min_converged must be a whole number of runs from 1 to 2"),
        ("arms: [long]", "arms: [long, short]", "decision.arms must train at one budget"),
        ("corpus: tiny, arms", "corpus: other, arms", "decision.corpus must be a corpus"),
        ("min_converged: 2}", "min_converged: 2, rule: x}", "decision: unknown key"),
    ],
)
def test_a_decision_rule_is_checked_before_any_run(tiny_corpus, tmp_path, old, new, message):
    decider, _ = files(tmp_path, tiny_corpus)
    decider.write_text(decider.read_text().replace(old, new))
    with pytest.raises(ConfigError, match=message) as e:
        load_study(decider)
    assert str(decider) in str(e.value)


def test_budget_from_names_a_corpus_and_a_study_that_decides_it(tiny_corpus, tmp_path):
    decider, follower = files(tmp_path, tiny_corpus)
    text = follower.read_text()
    follower.write_text(text.replace("budget_from: {tiny:", "budget_from: {other:"))
    with pytest.raises(ConfigError, match="budget_from maps a corpus of the study"):
        load_study(follower)
    decider.write_text(decider.read_text().replace("decision: {corpus: tiny, arms: [long], min_converged: 2}\n", ""))
    follower.write_text(text)
    with pytest.raises(ConfigError, match="decides no budget for tiny"):
        load_study(follower)
    decider.write_text(decider.read_text() + f"budget_from: {{tiny: {follower}}}\n")
    with pytest.raises(ConfigError, match="leads back to a study being read"):
        load_study(follower)
    decider.write_text(DECIDER.format(corpus=tiny_corpus) + f"budget_from: {{tiny: {follower}}}\n")
    with pytest.raises(ConfigError, match="a study that decides a budget"):
        load_study(decider)
