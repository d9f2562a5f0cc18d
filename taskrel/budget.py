"""A budget decision: one study decides the training budget of a corpus, and the studies that name it follow.

A budget study (kind ``runs``) trains some arms of a corpus at a longer
schedule and carries its rule, fixed before any of its runs, in its study
file's ``decision`` section::

    decision: {corpus: BC2GM, arms: [single-e80, mt-authors-e80], min_converged: 4}

Once every seed of every arm has finished, the rule fires if at least
``min_converged`` runs of each arm converged (stopped by patience before the
maximum, or ended flat: ``RunDir.converged``). It decides on convergence
only; no test score enters it. Fired: the corpus moves to the arms' budget
(their ``epochs`` and ``patience``). Not fired: the corpus does not converge
within that budget, and leaves the comparisons that follow the decision.

A study follows it with ``budget_from: {BC2GM: experiments/budget-bc2gm.yaml}``.
Its runs on that corpus are held, neither trained nor counted, until the
decision exists, and after it unless the decision moved the corpus and the
study's own settings for the corpus give that budget (a study file states its
settings; nothing here rewrites them). A held corpus is listed with the
reason and what to do (``Study.waiting``), so a queue that reaches the study
before the decision trains its other corpora and not this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError

BUDGET_KEYS = ("epochs", "patience")  # the train settings a decision moves
LEFT_OUT = "left out:"  # how a claim on a corpus the decision left out begins (claims.csv, the scorecard)


@dataclass
class Rule:
    corpus: str  # the corpus's folder name
    arms: list = field(default_factory=list)  # the variants whose runs decide
    min_converged: int = 0  # of each arm's runs

    @classmethod
    def of(cls, study) -> Rule:
        """The rule of a study file's ``decision`` section, checked against the study."""
        d = dict(study.decision)
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"decision: unknown key(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        rule = cls(**d)
        names = study.corpus_names
        if rule.corpus not in names:  # (load_study has checked that the study is of kind runs)
            raise ConfigError(f"decision.corpus must be a corpus of the study, one of {names}; got {rule.corpus!r}")
        if not isinstance(rule.arms, list) or not rule.arms or set(rule.arms) - set(study.variants):
            raise ConfigError(
                f"decision.arms must list variants of the study {list(study.variants)}; got {rule.arms!r}"
            )
        seeds = len(study.seeds_of(_corpus(study, rule.corpus)))
        m = rule.min_converged
        if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= seeds:
            raise ConfigError(f"decision.min_converged must be a whole number of runs from 1 to {seeds}; got {m!r}")
        return rule


def _corpus(study, name: str) -> str:
    return next(c for c in study.corpora if Path(str(c)).name == name)


def arms_budget(study, rule: Rule) -> dict:
    """``{epochs, patience}`` the arms train at (they must agree: the decision moves a corpus to one budget)."""
    budgets = {
        v: {k: getattr(cfg.train, k) for k in BUDGET_KEYS}
        for v, c, _, cfg in study.run_configs(Path("out"))
        if v in rule.arms and Path(c).name == rule.corpus
    }
    if len({tuple(b.values()) for b in budgets.values()}) != 1:
        raise ConfigError(f"decision.arms must train at one budget ({', '.join(BUDGET_KEYS)}); got {budgets}")
    return next(iter(budgets.values()))


def decide(path) -> dict:
    """The decision of the budget study in file ``path``, from its runs that finished: the rule, per arm the runs
    finished and converged out of its seeds, ``complete`` (every run finished), ``fires`` (None until complete)
    and the ``budget`` it moves the corpus to."""
    from .experiments import finished_runs, load_study, study_folder

    study = load_study(path)
    rule = Rule.of(study)
    corpus = _corpus(study, rule.corpus)
    out = study_folder(path, study)
    done = [(v, run) for v, c, _, _, run in finished_runs(out, study) if v in rule.arms and c == corpus]
    seeds = len(study.seeds_of(corpus))
    arms = {
        a: {"runs": sum(v == a for v, _ in done), "converged": sum(v == a and r.converged is True for v, r in done)}
        for a in rule.arms
    }
    complete = all(a["runs"] == seeds for a in arms.values())
    fires = all(a["converged"] >= rule.min_converged for a in arms.values()) if complete else None
    return {
        "study": study.name,
        "file": str(path),
        "folder": str(out),
        "corpus": rule.corpus,
        "min_converged": rule.min_converged,
        "seeds": seeds,
        "arms": arms,
        "complete": complete,
        "fires": fires,
        "budget": arms_budget(study, rule),
    }


def describe(decision: dict) -> str:
    """One sentence on where a decision stands."""
    d = decision
    budget = ", ".join(f"{k} {v}" for k, v in d["budget"].items())
    counts = "; ".join(f"{a}: {n['converged']} converged of {n['runs']} finished" for a, n in d["arms"].items())
    rule = f"at least {d['min_converged']} of the {d['seeds']} runs of each arm converge at {budget}"
    if not d["complete"]:
        return f"{d['study']} has not decided {d['corpus']}'s budget yet ({counts} in {d['folder']}; its rule: {rule})."
    if d["fires"]:
        return f"{d['study']} moves {d['corpus']} to {budget}: {rule} ({counts})."
    return (
        f"{d['study']} leaves {d['corpus']} out: its runs do not converge within {budget} ({counts}; its rule: {rule})."
    )


def held_words(decision: dict) -> str:
    """A few words on a corpus held by a decision, for a claim measured there (its verdict in claims.csv and
    the scorecard): left out for good where the rule did not fire, else waiting."""
    d = decision
    budget = ", ".join(f"{k} {v}" for k, v in d["budget"].items())
    if not d["complete"]:
        return f"held until {d['study']} decides {d['corpus']}'s budget"
    if d["fires"]:
        return f"held: {d['study']} moved {d['corpus']} to {budget}, which this study does not train it at yet"
    return f"{LEFT_OUT} {d['corpus']} does not converge within {budget} ({d['study']})"


def held(decision: dict, train, file: str, corpus: str) -> str | None:
    """Why a following study's runs on the decision's corpus (``train``: their train settings; ``file`` and
    ``corpus``: the study file and its name for the corpus) are held, neither trained nor counted; None where
    they follow the decision."""
    if decision["complete"] and decision["fires"]:
        ours = {k: getattr(train, k) for k in BUDGET_KEYS}
        if ours == decision["budget"]:
            return None
        move = ", ".join(f"{k}: {v}" for k, v in decision["budget"].items())
        return (
            f"{describe(decision)} This study trains it at {ours}: add per_corpus: {{{corpus}: "
            f"{{train: {{{move}}}}}}} to {file}, then set its runs made at the old budget aside: taskrel aside "
            f"{file} --corpus {Path(str(corpus)).name} (a variant trained as one of {decision['study']}'s arms may "
            f"share that arm's runs instead: runs_in: {{{Path(str(corpus)).name}: FOLDER}})"
        )
    return describe(decision)
