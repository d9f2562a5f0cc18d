"""Studies declared in experiment files (YAML): ``taskrel run experiments/NAME.yaml``.

A study file states everything needed to reproduce it::

    name: table2-pooling-ncbi
    description: single-task vs 4-task with cls/mean/max pooling
    kind: runs                     # or: grid
    corpora: [NCBI-disease]        # corpus names under $TASKREL_DATA (or folders)
    seeds: [1, 2]
    defaults:                      # RunConfig sections applied to every run
      model: {encoder: minilm}
      train: {epochs: 3}
    per_corpus:                    # then these, for one corpus
      NCBI-disease: {train: {lr: 1.0e-5}}
    variants:                      # kind runs: one run per variant x corpus x seed
      single: {model: {tasks: [ner]}}
      mt-max: {model: {tasks: [ner, mtcls, bcls, mcls], pooling: max}}
      single-aa: {seed_offset: 100, model: {tasks: [ner]}}   # trains seeds 101, 102: an A/A check
    grid: {tasks: [ner, mtcls, bcls, mcls], pair_weights: [1.0, 1.0]}   # kind grid
    tune: {trials: 30, pruner: median, confirm_seeds: [2, 3, 4]}        # kind tune
    embed: {tasks: [BC2GM:ner, NCBI-disease:ner], examples: 500}        # kind embed
    affinity: {every: 5}                                                # kind affinity
    prediction: {grid: runs/GRID/{corpus}, embeddings: {"": runs/EMB/{corpus}}}  # kind prediction

A ``prediction`` study scores Fisher embeddings and TAG affinities (folders of
other studies, ``{corpus}`` standing for the corpus folder name) against a
finished grid, as ``taskrel predict-transfer`` does, into
``OUT/CORPUS/prediction/``; it trains nothing, waits (saying for what) while
the grid or an input is unfinished, and scores again on every run.

A variant's ``tuned_from: FOLDER`` (``{corpus}`` in it stands for the corpus
folder name, e.g. ``runs/tune-lowres-10pct/{corpus}``) takes the loss weights,
learning rate and pooling of that tuning study's best trial (``best.json``);
until the tuning study has finished on a corpus, the variant's runs there wait
(they are left out, and a study run says so).

``corpus_seeds: {NCBI-disease: [1, 2, ..., 12]}`` (kind runs) gives a corpus
its own seeds instead of ``seeds``: more where its seed spread needs more to
reach a stated minimum detectable effect.

``stages: [[single, mt-max], [single-aa]]`` (kind runs) orders the training:
every seed of the first stage's variants before any run of the next stage, so
the comparisons that matter most come first; variants not named come last.

``workers: 2`` (kinds runs and grid, and embed, whose single-task models are
trained that many at once before the embeddings) trains that many runs at once, each with
its own ``train.threads``: how the study runs, not what it measures (a run's
numbers depend on its thread count, not on what runs beside it). On 2 cores,
two 1-thread runs get about 19% more through than one 2-thread run
(BENCHMARKS.md). ``taskrel run --workers`` overrides it.

A variant's ``seed_offset`` shifts its training seeds (study seed S trains seed
S + offset, paired with the baseline's seed S): the same settings as the
baseline under other seeds, an A/A check whose verdict must be undetermined.

``claims:`` (kinds runs and grid) lists the paper's claims the study tests,
each with the paper's Δ in points and the comparison, transfer or contrast
that measures it; ``claims.csv`` and the report's first table set the paper
beside ours (``claims.py``). Claims may be added to a study under way.

A variant's ``runs_in: FOLDER`` shares its runs with another study: run S of
the variant is ``FOLDER/CORPUS/seedS`` (``{corpus}`` may stand in FOLDER
too), e.g. ``runs/lowres-10pct/single``. A finished run there is used, not
trained again, and only if it was made under exactly the settings this study
gives the variant (otherwise the study stops, naming the settings that
differ); a missing one is trained there, where the other study finds it.
``runs_in: {CORPUS: FOLDER}`` shares only the corpora it names (by folder name),
each from its own FOLDER; the variant's other corpora train in this study's
folder. It is how a study takes up runs another study trained at the settings
it moves to, e.g. the runs of a budget study whose decision fired
(``budget.py``), instead of training the same runs twice.

``baseline`` names the variant every other one is compared with, or gives the
comparisons: ``{variant: its baseline}``, or a list of ``[variant, baseline]``
pairs where a variant has more than one baseline.

Runs land in ``OUT/VARIANT/CORPUS/seedS`` (kind runs; S the training seed) or ``OUT/CORPUS/``
(every other kind: one grid, tuning study, embedding or affinity run per
corpus, from the defaults of that corpus and the kind's section: the fields of
its settings dataclass, see ``kinds.py``). ``study.json`` records the study
(continuing it under other settings is refused; seeds, variants and corpora
may grow), ``results.csv`` one row per run and ``summary.csv`` the mean and
standard deviation over seeds.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd
import yaml

from .claims import check_claims, write_claims
from .config import DEFAULT_TASKS, ConfigError, GridConfig, RunConfig, check_types
from .kinds import KINDS, STUDY_FILE_KINDS
from .logs import say
from .rundir import RECORD_KEYS, STUDY_RECORD, RunDir, SettingsDiffer, record_study

# keys of a kind's section that are steps after its study rather than settings of it
SECTION_STEPS = {"tune": ("measure_pruning", "continue_pruned", "confirm_seeds", "arms")}
# variant keys that are not run settings: its training seeds are the study's plus this; the tuning study
# folder whose best trial gives its weights, learning rate and pooling; the folder its runs are shared in
SEED_OFFSET = "seed_offset"
TUNED_FROM = "tuned_from"
RUNS_IN = "runs_in"  # the folder of another study's variant whose runs this variant shares
# study keys that may change when a study is continued (more seeds, variants or corpora; a new description)
STUDY_FREE_KEYS = (
    "description",
    "seeds",
    "corpus_seeds",
    "variants",
    "corpora",
    "per_corpus",
    "baseline",
    "stages",
    "workers",
    "claims",
    "budget_from",
    "file",
)


@dataclass
class Study:
    name: str
    kind: str = "runs"
    description: str = ""
    corpora: list = field(default_factory=list)
    seeds: list = field(default_factory=lambda: [1])
    defaults: dict = field(default_factory=dict)
    per_corpus: dict = field(default_factory=dict)
    variants: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    # kind runs: the variant every other is compared with, {variant: its baseline}, or [[variant, baseline], ...]
    # (compare.py)
    baseline: str | dict | list | None = None
    tune: dict = field(default_factory=dict)
    embed: dict = field(default_factory=dict)
    affinity: dict = field(default_factory=dict)
    prediction: dict = field(default_factory=dict)
    # kinds runs and grid: the paper's claims the study tests, each with the paper's number (claims.py); what the
    # study is compared with, not how it runs, so they may be added to a study under way
    claims: list = field(default_factory=list)
    # kind runs: the order of training, e.g. [[single, mt-authors], [single-aa]]: every seed of the first stage's
    # variants before the next stage's; variants not named come last (``_order``). Order only, no setting.
    stages: list = field(default_factory=list)
    # kind runs: a corpus's own seeds instead of ``seeds`` (more where its seed spread needs more to reach an MDE)
    corpus_seeds: dict = field(default_factory=dict)
    # kinds runs and grid: how many runs train at once (each with its own train.threads); how, not what: the
    # numbers do not depend on it (a run's thread count does). ``taskrel run --workers`` overrides it.
    workers: int = 1
    # kind runs: a budget study's rule, fixed before its runs (budget.py): {corpus, arms, min_converged}
    decision: dict = field(default_factory=dict)
    # kind runs: {corpus folder name: the study file whose decision sets that corpus's budget}; its runs there are
    # held, neither trained nor counted, until the decision exists and while this study's budget differs from it
    budget_from: dict = field(default_factory=dict)
    file: str = ""  # the study file it was read from (set by load_study)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def corpus_names(self) -> list[str]:
        """The corpora's folder names, how ``budget_from``, ``decision`` and a ``runs_in`` mapping name a corpus."""
        return [Path(str(c)).name for c in self.corpora]

    def seeds_of(self, corpus: str) -> list:
        """The seeds of a corpus: its ``corpus_seeds`` entry, else the study's."""
        return list(self.corpus_seeds.get(corpus, self.seeds))

    def all_seeds(self) -> list:
        """Every seed of the study, the study's own first, then the corpora's extra ones in order."""
        extra = [s for c in self.corpora for s in self.seeds_of(c) if s not in self.seeds]
        return list(self.seeds) + sorted(set(extra), key=extra.index)

    def comparisons(self) -> list[tuple[str, str]]:
        """``(variant, baseline)`` pairs: every other variant against one baseline, or the pairs given."""
        if isinstance(self.baseline, dict):
            return list(self.baseline.items())
        if isinstance(self.baseline, list):
            return [tuple(pair) for pair in self.baseline]
        return [(v, self.baseline) for v in self.variants if self.baseline and v != self.baseline]

    @classmethod
    def from_dict(cls, d: dict) -> Study:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def _base(self, corpus: str) -> dict:
        return _merge(copy.deepcopy(self.defaults), copy.deepcopy(self.per_corpus.get(corpus) or {}))

    def run_configs(self, out: Path) -> list[tuple[str, str, int, RunConfig]]:
        """``(variant, corpus, seed, config)`` for every run of a ``runs`` study that can train now: not a run
        waiting for its tuning study or held by a budget decision (``waiting``)."""
        return self._configs(out)[0]

    def waiting(self) -> list[str]:
        """``variant on corpus (why)`` for every variant whose tuning study has not finished on a corpus yet and
        every one a budget decision holds there."""
        return self._configs(Path("out"))[1]

    def held_corpora(self) -> dict[str, str]:
        """``{corpus folder name: a few words on why}`` for every corpus where a budget decision holds runs of
        this study (``budget.held_words``): a claim there is left out or waits, and says which."""
        return self._configs(Path("out"))[2]

    @cached_property
    def _decisions(self) -> dict:
        """The decision of each ``budget_from`` study, by corpus folder name: read once per loaded study (a
        study's runs train after the studies before it in the queue have finished, its budget study among them)."""
        from .budget import decide

        return {corpus: decide(path) for corpus, path in self.budget_from.items()}

    def _configs(self, out: Path) -> tuple[list[tuple[str, str, int, RunConfig]], list[str], dict[str, str]]:
        """The runs that can train now (``run_configs``), a line per variant and corpus that waits
        (``waiting``): for its tuning study, or held by a budget decision, and the corpora held (``held_corpora``)."""
        from .budget import held, held_words

        items, waiting, held_here = [], [], {}
        for variant, overrides in self.variants.items():
            overrides = copy.deepcopy(overrides or {})
            offset = overrides.pop(SEED_OFFSET, 0)
            tuned_from = overrides.pop(TUNED_FROM, None)
            runs_in = overrides.pop(RUNS_IN, None)
            for corpus in self.corpora:
                tuned = {}
                if tuned_from:
                    tuned = tuned_settings(corpus_path(tuned_from, corpus), variant)
                    if tuned is None:  # the tuning study has not finished on this corpus yet
                        best = Path(corpus_path(tuned_from, corpus)) / "best.json"
                        waiting.append(f"{variant} on {Path(corpus).name} (no {best} yet)")
                        continue
                    from .confirm import check_seeds, load_tune

                    try:  # never the tuning trials' own seed
                        check_seeds(
                            load_tune(corpus_path(tuned_from, corpus))[0], [s + offset for s in self.seeds_of(corpus)]
                        )
                    except ConfigError as e:
                        raise ConfigError(f"variant {variant} on {Path(corpus).name}: {e}") from None
                for seed in self.seeds_of(corpus):
                    d = _merge(_merge(self._base(corpus), overrides), copy.deepcopy(tuned))
                    d.setdefault("data", {})["data"] = corpus
                    d.setdefault("train", {})["seed"] = seed + offset
                    folder = corpus_path(_shared_folder(runs_in, corpus) or str(out / variant), corpus, below=True)
                    d["out"] = str(folder / f"seed{seed + offset}")
                    cfg = RunConfig.from_dict(d)
                    decision = self._decisions.get(Path(corpus).name) if self.budget_from else None
                    why = decision and held(decision, cfg.train, self.file, corpus)
                    if not why:
                        items.append((variant, corpus, seed, cfg))
                    elif f"{variant} on {Path(corpus).name} (held: {why})" not in waiting:
                        waiting.append(f"{variant} on {Path(corpus).name} (held: {why})")
                        held_here[Path(corpus).name] = held_words(decision)
        return items, waiting, held_here

    def section_configs(self, out: Path) -> list[tuple[str, object, dict]]:
        """``(corpus, settings, steps)`` per corpus of a tune, embed or affinity study."""
        kind = KINDS[self.kind]
        module, _, name = kind.config.partition(":")
        cls = getattr(importlib.import_module(f"taskrel.{module}"), name)
        section = dict(getattr(self, self.kind) or {})
        steps = {k: section.pop(k) for k in SECTION_STEPS.get(self.kind, ()) if k in section}
        known = {f.name for f in dataclasses.fields(cls)} - {"base"}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"unknown {self.kind} key(s) {unknown}; known: {sorted(known | set(steps))}")
        items = []
        for corpus in self.corpora:
            base = _merge(self._base(corpus), {"data": {"data": corpus}, "out": str(out / Path(corpus).name)})
            settings = cls(RunConfig.from_dict(base), **section)
            if steps.get("confirm_seeds"):
                from .confirm import check_seeds

                check_seeds(settings, steps["confirm_seeds"])  # before hours of tuning, not after
            items.append((corpus, settings, steps))
        return items

    def grid_configs(self) -> list[tuple[str, GridConfig]]:
        items = []
        for corpus in self.corpora:
            base = _merge(self._base(corpus), {"data": {"data": corpus}})
            g = dict(self.grid)
            g["tasks"] = list(g.get("tasks", DEFAULT_TASKS))
            base.setdefault("model", {})["tasks"] = g["tasks"]
            base_cfg = RunConfig.from_dict(base)
            g["seeds"] = self.seeds
            unknown = sorted(set(g) - ({f.name for f in dataclasses.fields(GridConfig)} - {"base"}))
            if unknown:
                raise ConfigError(f"study {self.name}: unknown grid key(s) {unknown}")
            items.append((corpus, GridConfig(base_cfg, **g)))
        return items


def corpus_path(folder: str, corpus: str, below: bool = False) -> Path:
    """``folder`` with ``{corpus}`` standing for the corpus's folder name; without it, the folder itself, or with
    ``below`` the corpus's folder under it."""
    name = Path(corpus).name
    if "{corpus}" in folder:
        return Path(folder.replace("{corpus}", name))
    return Path(folder) / name if below else Path(folder)


def _shared_folder(runs_in, corpus: str) -> str | None:
    """The folder a variant shares ``corpus``'s runs from (``runs_in``: one folder for every corpus, or a folder
    per corpus name), or None where the corpus's runs are the study's own."""
    if isinstance(runs_in, dict):
        return runs_in.get(Path(corpus).name)
    return runs_in


def tuned_settings(folder, variant: str) -> dict | None:
    """The settings a tuning study's best trial gives a variant (``tune.best_overrides``: weights, weighting and
    its parameters, and the learning rate and pooling where they were tuned), or None before the study has a
    best trial."""
    import json

    from .tune import best_overrides

    path = Path(folder) / "best.json"
    if not path.is_file():
        return None
    try:
        return best_overrides(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path}: not a tuning study's best trial ({e}); variant {variant} reads it") from None


def _merge(base: dict, over: dict) -> dict:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


# YAML 1.1 (PyYAML) reads ``5e-5`` as a string: it wants a dot and a signed exponent. Read numbers as YAML 1.2
# and JSON do, so ``lr: 5e-5`` in a study file is the number it looks like.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_UniqueKeyLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in _UniqueKeyLoader.yaml_implicit_resolvers.items()
}
_UniqueKeyLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _unique_pairs(pairs):
    """JSON object hook refusing a key given twice (json keeps the last one silently)."""
    keys = [k for k, _ in pairs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"key(s) {dupes} given twice")
    return dict(pairs)


SAFE_NAME = re.compile(r"^[\w][\w.+-]*$")


def _check_names(path: Path, study: Study) -> None:
    """Every folder a study writes must lie under its output folder, one per corpus."""
    bad = [v for v in study.variants if not SAFE_NAME.match(str(v)) or ".." in str(v)]
    if bad or not SAFE_NAME.match(str(study.name)) or ".." in str(study.name):
        raise ConfigError(
            f"{path}: study and variant names must be plain folder names (letters, digits, . + - _), "
            f"got {[study.name, *bad] if bad else study.name!r}"
        )
    names = study.corpus_names
    if any(n in ("", ".", "..") for n in names):
        raise ConfigError(f"{path}: corpus {study.corpora} must end in a folder name (not '..')")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: two corpora share the folder name {dupes}; their runs would collide")


_FOLLOWED: set = set()  # budget studies being read for the study that follows them (a cycle would never end)


def _check_budget(path: Path, study: Study) -> None:
    """A ``decision`` and ``budget_from`` are settings of a ``runs`` study; each followed file is a budget study
    that decides the corpus it is named for, and follows none itself."""
    if (study.decision or study.budget_from) and study.kind != "runs":
        raise ConfigError(f"{path}: decision and budget_from are settings of a 'runs' study, not {study.kind!r}")
    if study.decision and study.budget_from:
        raise ConfigError(f"{path}: a study that decides a budget (decision) follows no other one (budget_from)")
    if study.decision and not isinstance(study.decision, dict):
        raise ConfigError(f"{path}: decision must be a mapping {{corpus, arms, min_converged}}")
    names = study.corpus_names
    for corpus, file in study.budget_from.items():
        if corpus not in names or not isinstance(file, str) or not file.strip():
            raise ConfigError(
                f"{path}: budget_from maps a corpus of the study {names} to a budget study's file; got {corpus!r}: "
                f"{file!r}"
            )
        key = str(Path(file).resolve())
        if key in _FOLLOWED:
            raise ConfigError(f"{path}: budget_from {file} leads back to a study being read")
        _FOLLOWED.add(key)
        try:
            decider = load_study(file)
        finally:
            _FOLLOWED.discard(key)
        if decider.decision.get("corpus") != corpus:
            raise ConfigError(
                f"{path}: budget_from.{corpus}: {file} decides no budget for {corpus} (its decision: "
                f"{decider.decision or 'none'})"
            )


def load_study(path) -> Study:
    """Read and validate a study file, or the record of a study folder (the folder or its ``study.json``: the
    study as it was run); errors name the file (and line for YAML syntax)."""
    path = Path(path)
    if path.is_dir():
        path = path / STUDY_RECORD
    if not path.is_file():
        raise ConfigError(f"{path}: no such study file")
    if path.suffix == ".json":  # a study folder's record, or a study written as JSON
        try:
            raw = json.loads(path.read_text(), object_pairs_hook=_unique_pairs)
        except ValueError as e:  # json.JSONDecodeError is one
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
    else:
        try:
            raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of study settings")
    if path.name == STUDY_RECORD:  # a study folder's record: its settings, and how and from what it was written
        raw = {k: v for k, v in raw.items() if k not in (*RECORD_KEYS, "file")}
    names = set(Study.__dataclass_fields__) - {"file"}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {sorted(names)}")
    if "name" not in raw:
        raise ConfigError(f"{path}: the study needs a name")
    study = Study(**raw, file=str(path))
    try:
        check_types(study)
        for where, seeds in [("seeds", study.seeds)] + [
            (f"corpus_seeds.{c}", v) for c, v in study.corpus_seeds.items()
        ]:
            bad_seeds = [x for x in seeds or [] if not isinstance(x, int) or isinstance(x, bool)]
            if not isinstance(seeds, list) or not seeds or bad_seeds or len(set(seeds)) != len(seeds):
                raise ConfigError(f"{where} must be a list of different integers, got {seeds!r}")
        stray = sorted(set(study.corpus_seeds) - set(map(str, study.corpora)))
        if stray or (study.corpus_seeds and study.kind != "runs"):
            raise ConfigError(f"corpus_seeds gives a 'runs' study's corpora their own seeds; got {stray or study.kind}")
        for key in ("defaults", "per_corpus", "variants"):
            for name, value in getattr(study, key).items():
                if value is None and key == "variants":  # most likely a variant left unfinished
                    raise ConfigError(f"variants.{name} is empty; write {{}} for a variant that takes the defaults")
                if value is not None and not isinstance(value, dict):
                    raise ConfigError(f"{key}.{name} must be a mapping of settings, got {value!r}")
        names = study.corpus_names
        for name, value in study.variants.items():
            for key in (TUNED_FROM, RUNS_IN):
                folder = (value or {}).get(key)
                if key == RUNS_IN and isinstance(folder, dict):
                    stray = sorted(set(folder) - set(names))
                    if stray or not folder:
                        raise ConfigError(
                            f"variants.{name}.{key} maps corpora of the study {names} to folders; got {folder!r}"
                        )
                    folders = list(folder.values())
                else:
                    folders = [] if folder is None else [folder]
                for f in folders:
                    if not isinstance(f, str) or not f.strip():
                        raise ConfigError(f"variants.{name}.{key} must be a folder path, got {folder!r}")
            offset = (value or {}).get(SEED_OFFSET, 0)
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                raise ConfigError(f"variants.{name}.{SEED_OFFSET} must be a non-negative integer, got {offset!r}")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    _check_names(path, study)
    if study.kind not in STUDY_FILE_KINDS:
        raise ConfigError(f"{path}: kind must be one of {STUDY_FILE_KINDS}, got {study.kind!r}")
    if study.kind not in ("runs", "grid") and not getattr(study, study.kind):
        raise ConfigError(f"{path}: a study of kind {study.kind!r} needs its settings in a {study.kind!r} section")
    if not study.corpora:
        raise ConfigError(f"{path}: list the corpora of the study")
    if isinstance(study.workers, bool) or not isinstance(study.workers, int) or study.workers < 1:
        raise ConfigError(f"{path}: workers must be a positive integer, got {study.workers!r}")
    if study.workers > 1 and study.kind not in ("runs", "grid") and not KINDS[study.kind].parallel:
        at_once = ", ".join(repr(k) for k in ("runs", "grid", *(n for n, k in KINDS.items() if k.parallel)))
        raise ConfigError(
            f"{path}: workers trains the runs of a study of kind {at_once} at once, not of {study.kind!r}"
        )
    stray = sorted(set(study.per_corpus) - set(study.corpora))
    if stray:
        raise ConfigError(f"{path}: per_corpus names corpora not in the study: {stray}")
    if study.kind == "runs" and not study.variants:
        raise ConfigError(f"{path}: a study of kind 'runs' needs variants")
    staged = [v for names in study.stages for v in (names if isinstance(names, list) else [names])]
    if study.stages and (study.kind != "runs" or not all(isinstance(n, list) for n in study.stages)):
        raise ConfigError(f"{path}: stages order the variants of a 'runs' study: a list of lists of variants")
    if set(staged) - set(study.variants) or len(staged) != len(set(staged)):
        raise ConfigError(
            f"{path}: stages must name each variant at most once, from {list(study.variants)}; got {study.stages}"
        )
    if isinstance(study.baseline, list) and not all(
        isinstance(pair, list) and len(pair) == 2 and pair[0] != pair[1] for pair in study.baseline
    ):
        raise ConfigError(f"{path}: a list of comparisons holds [variant, baseline] pairs, got {study.baseline!r}")
    if isinstance(study.baseline, list) and len(set(map(tuple, study.baseline))) != len(study.baseline):
        raise ConfigError(f"{path}: a comparison is listed twice in baseline {study.baseline!r}")
    named = study.comparisons() if isinstance(study.baseline, (dict, list)) else [(study.baseline, study.baseline)]
    for variant, baseline in named if study.baseline is not None else []:
        for name in (variant, baseline):
            if name not in study.variants:
                raise ConfigError(f"{path}: baseline {name!r} is not one of the variants {list(study.variants)}")
    _check_budget(path, study)
    try:  # build every configuration now, so a typo fails before hours of training
        grids = {}
        if study.kind == "runs":
            study.run_configs(Path("out"))
            if study.decision:
                from .budget import Rule, arms_budget

                arms_budget(study, Rule.of(study))
        elif study.kind == "grid":
            grids = {Path(str(c)).name: g for c, g in study.grid_configs()}
        else:
            study.section_configs(Path("out"))
        comparisons = study.comparisons() if study.kind == "runs" else []
        check_claims(study.claims, study.kind, study.corpora, comparisons, grids)
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"{path}: {e}") from None
    return study


def study_folder(path, study: Study, out=None) -> Path:
    """Where a study's runs go: ``out`` if given; the folder itself when the study was read from a folder's
    record; else ``runs/<study name>``."""
    path = Path(path)
    if out:
        return Path(out)
    if path.is_dir() or path.name == STUDY_RECORD:
        return path if path.is_dir() else path.parent
    return Path("runs") / study.name


def run_study(
    path, out=None, workers: int | None = None, progress: bool = True, log=say, corpora: list | None = None
) -> Path:
    """Run (or resume) every run of a study, ``workers`` at once (default: the study's ``workers``); returns its
    output folder. ``corpora`` (folder names): only these sections of a tune, embed or affinity study."""
    from .grid import run_grid
    from .train import train

    study = load_study(path)
    workers = workers or study.workers
    out = study_folder(path, study, out)
    check_precisions(study)  # before its folder, its record or a tuning database is started
    out.mkdir(parents=True, exist_ok=True)
    record_study(out / STUDY_RECORD, study, free=STUDY_FREE_KEYS)
    if corpora is not None and study.kind in ("runs", "grid"):
        raise ConfigError(f"study {study.name}: a {study.kind} study has no sections to choose from")
    if study.kind not in ("runs", "grid"):
        kind = KINDS[study.kind]
        for corpus, settings, steps in study.section_configs(out):
            if corpora is not None and Path(corpus).name not in corpora:
                continue
            log(f"study {study.name}: {study.kind} on {corpus}")
            if kind.before:
                kind.call("before", settings, steps, out / Path(corpus).name, log)
            if workers > 1 and kind.parallel:  # its independent runs first, workers at once
                runs = kind.call("trains", settings, steps, out / Path(corpus).name)
                _train_at_once(f"{study.name} on {Path(corpus).name}", runs, workers, progress, log)
            kind.call("run", settings, steps, progress=progress, log=log)
        return out
    if study.kind == "grid":
        for corpus, grid in study.grid_configs():
            grid.workers = workers
            log(f"study {study.name}: grid on {corpus}")
            run_grid(grid, out / Path(corpus).name, progress=progress, log=log)
        write_claims(out, study)
        return out
    runs = study.run_configs(out)
    # before any training: a finished run made under other settings (finished_runs) stops the study, and so do
    # runs this machine would train at another precision than the finished ones
    one_precision(study, list(finished_runs(out, study)), [r[3] for r in runs if not RunDir(r[3].out).done])
    if workers <= 1:
        from tqdm.auto import tqdm

        order = _order(study)
        todo = sorted([r for r in runs if not RunDir(r[3].out).done], key=order)
        log(f"study {study.name}: {len(runs)} runs, {len(runs) - len(todo)} already finished")
        for line in study.waiting():
            log(f"study {study.name}: waiting: {line}")
        from .estimate import Pace

        bar = tqdm(total=len(todo), desc=f"{study.name} runs", disable=None if progress else True)
        pace = Pace([cfg.out for *_, cfg in todo])
        for i, (variant, corpus, seed, cfg) in enumerate(todo):
            log(f"study {study.name}: {variant} on {corpus}, seed {seed}")
            train(cfg, resume=True, progress=progress, log=log)
            bar.update()  # the bar's ETA: the mean time of the runs done so far
            log(f"study {study.name}: {pace.line(cfg.out)}")
            if i + 1 < len(todo) and order(todo[i + 1]) != order(todo[i]):
                summarise(out, study)  # a round of seeds is complete: the tables hold it, whatever stops the study
                log(f"study {study.name}: tables updated with every finished run ({out / 'results.csv'})")
        bar.close()
    else:
        _run_parallel(study, out, runs, workers, progress, log)
    summarise(out, study)
    return out


SECTION_LOG = "{corpus}.log"


def section_size(corpus: str) -> int:
    """How long a section on ``corpus`` takes, roughly: its training file's size in bytes (0 when it cannot be
    found: the section itself then says why)."""
    from .corpus import find_split, resolve_data

    try:
        return find_split(resolve_data(corpus), "train").stat().st_size
    except (OSError, ConfigError):
        return 0


def side_by_side(studies: list, at_once: int, log=say):
    """Train the sections (one corpus each) of the tune, embed or affinity studies ``(path, Study)`` in
    ``studies`` ``at_once`` at a time, each in its own spawned process at the study's own thread count, the
    largest training files first so that the last sections to finish are short ones and no core idles long
    while another study goes on (two studies side by side idle one core for as long as the longer one outlasts
    the other). Each section logs to ``<study folder>/<corpus>.log``; its own trainer resumes it where it
    stopped. Yields ``(path, error or None)`` once each study's last section has ended, in the order they end."""
    import time
    from concurrent.futures import as_completed

    from .estimate import hours
    from .grid import warn_oversubscribed
    from .workers import pool as worker_pool

    units, left, errors, threads = [], {}, {}, 1
    for path, study in studies:
        if study.kind in ("runs", "grid"):
            raise ConfigError(f"{path}: a {study.kind} study has no sections to train side by side")
        check_precisions(study)  # before any process starts
        out = study_folder(path, study)
        sections = study.section_configs(out)
        units += [(str(path), study.name, out, Path(c).name, section_size(c)) for c, _, _ in sections]
        left[str(path)] = len(sections)
        threads = max([threads] + [s.base.train.threads or 1 for _, s, _ in sections])
    warn_oversubscribed(at_once, threads, log)
    units.sort(key=lambda u: -u[4])  # stable: equal sizes keep the files' order
    started = time.monotonic()
    with worker_pool(at_once) as pool:
        jobs = {}
        for path, name, out, corpus, _ in units:
            out.mkdir(parents=True, exist_ok=True)
            logfile = out / SECTION_LOG.format(corpus=corpus)
            jobs[pool.submit(_run_section, path, corpus, str(logfile))] = (path, name, corpus, logfile)
        log(
            f"{len(units)} sections of {len(studies)} studies, {at_once} at a time, largest first: "
            + ", ".join(f"{name} on {corpus}" for _, name, _, corpus, _ in units)
        )
        for job in as_completed(jobs):
            path, name, corpus, logfile = jobs[job]
            try:
                job.result()
                log(f"{name} on {corpus}: done ({hours(time.monotonic() - started)} since the start; log {logfile})")
            except Exception as e:  # noqa: BLE001 - one section's failure does not stop the others
                log(f"{name} on {corpus}: failed: {e} (log {logfile})")
                errors.setdefault(path, f"{corpus}: {e}")
            left[path] -= 1
            if not left[path]:
                yield path, errors.get(path)


def _run_section(path: str, corpus: str, logfile: str) -> None:
    """One section of a study, in a worker process, its lines appended to ``logfile``."""
    import sys

    from .logs import configure

    with open(logfile, "a", buffering=1) as f:
        sys.stdout = sys.stderr = f
        configure(0)  # the taskrel logger writes to the file now
        try:
            run_study(path, workers=1, progress=False, corpora=[corpus])
        except Exception as e:
            say(f"taskrel: error: {e}")
            raise
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            configure(0)  # back to the process's stderr: the file closes now


def _order(study: Study):
    """The training order's key of a run ``(variant, corpus, seed, config)``: stage by stage (``study.stages``;
    one stage without them), and within a stage seed by seed (every variant and corpus of seed 1, then of seed
    2, ...), so a study stopped half-way has every variant of a stage at the same number of seeds and its
    comparisons are paired, and the comparisons that matter most come first. Runs with equal keys form a round,
    after which the study's tables are brought up to date."""
    seeds = {s: i for i, s in enumerate(study.all_seeds())}
    stage = {v: i for i, names in enumerate(study.stages) for v in names}
    return lambda run: (stage.get(run[0], len(study.stages)), seeds[run[2]])


def _run_parallel(study: Study, out: Path, runs: list, workers: int, progress: bool, log) -> None:
    """Runs in ``workers`` processes (spawned: CUDA-safe), seed by seed (``_order``); the study's tables are
    brought up to date each time a round is complete (with every earlier round), as in a sequential study."""
    from collections import Counter

    order = _order(study)
    todo = sorted([r for r in runs if not RunDir(r[3].out).done], key=order)
    log(f"study {study.name}: {len(runs)} runs, {len(runs) - len(todo)} already done, {workers} workers")
    for line in study.waiting():
        log(f"study {study.name}: waiting: {line}")
    by_out = {run[3].out: run for run in todo}
    pending = Counter(order(run) for run in todo)
    trained = _in_workers([run[3] for run in todo], workers, f"{study.name} runs", progress, log)
    for k, (cfg, pace) in enumerate(trained, 1):
        run = by_out[cfg.out]
        log(f"study {study.name}: {' '.join(map(str, run[:3]))} done ({pace})")
        key = order(run)
        pending[key] -= 1
        if not pending[key] and k < len(todo) and not any(n for earlier, n in pending.items() if earlier < key):
            summarise(out, study)
            log(f"study {study.name}: tables updated with every finished run ({out / 'results.csv'})")


def _train_at_once(name: str, runs: list, workers: int, progress: bool, log) -> None:
    """Train the unfinished ``runs`` (run configurations of a ``parallel`` kind: independent, no test pass) in
    ``workers`` processes (``_in_workers``)."""
    todo = [cfg for cfg in runs if not RunDir(cfg.out).done]
    log(f"study {name}: {len(runs)} runs, {len(runs) - len(todo)} already done, {workers} workers")
    for cfg, pace in _in_workers(todo, workers, f"{name} runs", progress, log, test=False):
        log(f"study {name}: {Path(cfg.out).name} done ({pace})")


def _in_workers(cfgs: list, workers: int, desc: str, progress: bool, log, test: bool = True):
    """Train the run configurations ``cfgs`` in ``workers`` spawned processes, each at its own thread count, else
    the cores shared out; yield ``(config, pace line)`` as each run finishes, in the order they finish."""
    import os
    from concurrent.futures import as_completed

    from tqdm.auto import tqdm

    from .estimate import Pace
    from .grid import _run_cell, warn_oversubscribed
    from .workers import pool as worker_pool

    if not cfgs:
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    warn_oversubscribed(workers, max(cfg.train.threads or threads for cfg in cfgs), log)
    bar = tqdm(total=len(cfgs), desc=desc, disable=None if progress else True)
    with worker_pool(workers) as pool:
        jobs = {pool.submit(_run_cell, cfg.to_dict(), cfg.train.threads or threads, test): cfg for cfg in cfgs}
        pace = Pace([cfg.out for cfg in cfgs], workers=workers)
        for job in as_completed(jobs):
            job.result()
            bar.update()
            yield jobs[job], pace.line(jobs[job].out)
    bar.close()


def finished_runs(out: Path, study: Study):
    """``(variant, corpus, seed, config, RunDir)`` of every finished run of a ``runs`` study. A finished run
    counts only if it was made under the settings the study gives it now (a variant or corpus edited since,
    or a run shared with another study, ``runs_in``); otherwise ``SettingsDiffer`` names the settings that
    differ. (An unfinished one is checked when it resumes.)"""
    for variant, corpus, seed, cfg in study.run_configs(out):
        run = RunDir(cfg.out)
        if run.done:
            try:
                run.check(cfg)
            except SettingsDiffer as e:
                from .aside import inside

                if not inside(run.path, out):  # another study's run (runs_in): that study's record, not ours
                    raise
                hint = f"taskrel aside {study.file}" if study.file else "taskrel aside FILE"
                raise SettingsDiffer(f"{e}; or keep it as the record and train the run anew: {hint}") from None
            yield variant, corpus, seed, cfg, run


class MixedPrecision(ConfigError):
    """``used``: the precisions a study's finished ``auto`` runs trained at; ``here``: those this machine would
    train its runs left at (empty when the finished runs already mix)."""

    def __init__(self, message: str, used=(), here=()):
        super().__init__(message)
        self.used, self.here = sorted(used), sorted(here)


def check_precisions(study: Study) -> None:
    """Refuse, before anything is written, a study whose settings (defaults, per-corpus or variant) state a
    precision this machine only emulates (``precision.check_trainable``), naming the study."""
    from .config import TrainConfig
    from .machine import resolve_device
    from .precision import check_trainable

    base = study.defaults.get("train") or {}
    sections = [base] + [(v or {}).get("train") or {} for v in (*study.variants.values(), *study.per_corpus.values())]
    for train in sections:
        device = resolve_device(train.get("device", base.get("device", TrainConfig.device)))
        try:
            check_trainable(device, train.get("precision", base.get("precision", TrainConfig.precision)))
        except ConfigError as e:
            raise type(e)(f"study {study.name}: {e}") from None


def one_precision(study: Study, finished: list, todo=()) -> None:
    """A study's runs compare only at one precision. ``precision: auto`` resolves by machine (bf16 where the
    CPU does it natively, fp32 elsewhere), so a study resumed on another machine could mix them silently:
    refuse finished ``auto`` runs (``finished_runs``' tuples) at several precisions, naming them, and refuse to
    train the ``todo`` configurations asking for ``auto`` where this machine would resolve it to another
    precision than the finished ones used. Variants that state their precision (a precision study's arms) are
    what they say, and are not checked."""
    from collections import defaultdict

    todo = [cfg for cfg in todo if cfg.train.precision == "auto"]
    by = defaultdict(list)
    for *_, cfg, run in finished:
        if cfg.train.precision == "auto" and run.precision:
            by[run.precision].append("/".join(Path(cfg.out).parts[-3:]))  # variant/corpus/seedN
    if len(by) > 1:
        fewest = min(by, key=lambda p: len(by[p]))
        raise MixedPrecision(
            f"study {study.name}: its finished runs (precision auto) trained at several precisions ("
            + ", ".join(f"{len(v)} in {p}" for p, v in by.items())
            + f"), and runs at other precisions do not compare; the {fewest} ones: {', '.join(by[fewest][:6])}"
            + (" ..." if len(by[fewest]) > 6 else "")
            + ". Remove the runs that do not belong (their folders), then run the study again",
            used=by,
        )
    if not by or not todo:
        return
    from .machine import resolve_device
    from .precision import resolve_precision

    (done,) = by
    here = {resolve_precision(resolve_device(cfg.train.device), cfg.train.precision) for cfg in todo}
    if here - {done}:
        raise MixedPrecision(
            f"study {study.name}: its {len(by[done])} finished runs trained in {done}, and on this machine its "
            f"runs left would train in {', '.join(sorted(here - {done}))} (precision auto: this machine resolves "
            f"it otherwise), so they would not compare: nothing "
            f"trained. Go on on a machine like the one the runs were made on (bf16: a CPU with native bf16, "
            f"the avx512_bf16 or amx_bf16 flag, or a GPU)",
            used=by,
            here=here,
        )


def not_trainable_here(study: Study, out: Path) -> str | None:
    """Why this machine would train none of what a study has left, in a few words (``taskrel status``), or
    None: the checks ``run_study`` makes before it trains (``check_precisions``, ``one_precision``)."""
    from .precision import PrecisionUnavailable

    try:
        check_precisions(study)
        if study.kind == "runs":
            todo = [cfg for *_, cfg in study.run_configs(out) if not RunDir(cfg.out).done]
            one_precision(study, list(finished_runs(out, study)), todo)
    except PrecisionUnavailable:
        return "it states bf16, which this CPU only emulates"
    except MixedPrecision as e:
        here = f", and here precision auto means {', '.join(e.here)}" if e.here else ""
        return f"its finished runs trained in {' and '.join(e.used)}{here}"
    return None


def results_table(finished: list) -> pd.DataFrame:
    """One row per finished run (``finished_runs``)."""
    rows = []
    for variant, corpus, seed, cfg, run in finished:
        main = run.main
        test = run.scores("test")[main]
        rows.append(
            {
                "variant": variant,
                "corpus": Path(corpus).name,
                "seed": seed,
                "train_seed": cfg.train.seed,
                "tasks": ",".join(cfg.model.tasks),
                "pooling": cfg.model.pooling,
                "strategy": cfg.train.strategy,
                "train_fraction": cfg.data.train_fraction,
                "main": main,
                **{k: v for k, v in test.items() if isinstance(v, (int, float)) and k != "support"},
                "best_epoch": run.best_epoch,
                "stopped": run.stopped,
                "converged": run.converged,
                "stop_gap": run.stop_gap,
                "steps": run.steps,
                "train_seconds": run.train_seconds,
                "seconds": run.seconds,
                "cpu_seconds": run.cpu_seconds,
            }
        )
    return pd.DataFrame(rows)


def dev_curves_table(finished: list) -> pd.DataFrame:
    """The main task's dev score at every evaluation of every finished run (``finished_runs``; for
    ``plots.dev_curves``)."""
    rows = []
    for variant, corpus, seed, _cfg, run in finished:
        for epochs_done, score, selected in run.dev_curve():
            rows.append(
                {
                    "corpus": Path(corpus).name,
                    "variant": variant,
                    "seed": seed,
                    "epochs_done": epochs_done,
                    "score": score,
                    "selected": selected,
                }
            )
    return pd.DataFrame(rows)


def summarise(out: Path, study: Study) -> pd.DataFrame:
    """``results.csv`` and ``summary.csv`` (mean and std over seeds per variant and corpus)."""

    finished = list(finished_runs(out, study))  # each run folder read and checked once
    one_precision(study, finished)
    results = results_table(finished)
    results.to_csv(out / "results.csv", index=False)
    if not len(results):
        return results
    scores = [c for c in ("precision", "recall", "f1", "accuracy", "macro_f1") if c in results]
    summary = results.groupby(["corpus", "variant"], sort=False)[scores].agg(["mean", "std", "count"])
    summary.columns = [f"{a}_{b}" for a, b in summary.columns]
    summary = summary.reset_index()
    # how many of the seeds converged: a mean over non-converged runs is marked as such wherever it appears
    converged = results.groupby(["corpus", "variant"], sort=False)["converged"].apply(lambda c: int((c == True).sum()))  # noqa: E712
    summary["converged"] = converged.to_numpy()
    if study.baseline:
        from .compare import compare_study

        comparisons = compare_study(out, study)
        if len(comparisons):
            comparisons.to_csv(out / "comparisons.csv", index=False)
            from .plots import comparison_forest  # seaborn: imported where a figure is drawn

            comparison_forest(comparisons, out / "comparison.png", study.corpus_names)
    from .stopcheck import patience_sweep, stop_check

    checked = stop_check(results, score="f1" if "f1" in results else scores[0])
    if len(checked):
        checked.to_csv(out / "stop_check.csv", index=False)
    sweep = patience_sweep(
        [
            {"corpus": Path(corpus).name, "variant": variant, "seed": seed, "patience": cfg.train.patience,
             "min_epochs": cfg.train.min_epochs, "curve": run.dev_curve()}
            for variant, corpus, seed, cfg, run in finished
        ]
    )  # fmt: skip
    if len(sweep):
        sweep.to_csv(out / "patience_sweep.csv", index=False)
    curves = dev_curves_table(finished)
    if len(curves):
        from .plots import dev_curves

        dev_curves(curves, out / "dev_curves.png")
    summary.to_csv(out / "summary.csv", index=False)
    write_claims(out, study)
    return summary


# ---- section runners (kinds.KINDS[...].run): one corpus of a tune, embed or affinity study


def run_tune_section(tc, steps: dict, progress: bool = True, log=say) -> None:
    """Tune into ``tc.base.out``; then, as the section asks, measure pruning and confirm on test."""
    from .confirm import ARMS, confirm, load_tune
    from .pruning import measure_pruning
    from .tune import tune

    out = Path(tc.base.out)
    # a pruned trial's checkpoint is kept only where the section continues it afterwards
    tune(tc, out, progress=progress, log=log, keep_pruned=bool(steps.get("continue_pruned")))
    if steps.get("measure_pruning"):
        measure_pruning(tc, out, progress=progress, log=log, continue_pruned=bool(steps.get("continue_pruned")))
    if steps.get("confirm_seeds"):
        _, best = load_tune(out)
        confirm(tc, best, out, [int(s) for s in steps["confirm_seeds"]], steps.get("arms") or ARMS, progress, log)


def run_embed_section(ec, steps: dict, progress: bool = True, log=say) -> None:
    from .embed import analyse_styles, embed

    embed(ec, ec.base.out, progress=progress, log=log)
    analyse_styles(ec, ec.base.out)


def run_affinity_section(ac, steps: dict, progress: bool = True, log=say) -> None:
    from .affinity import run_affinity

    if (Path(ac.base.out) / "affinity.json").is_file():
        log(f"{ac.base.out} is complete")
        return
    run_affinity(ac.base, ac.every, progress=progress, log=log, normalise_lr=ac.normalise_lr)


def prediction_inputs(pc) -> tuple[Path, dict, Path | None]:
    """A prediction section's grid, embeddings (label -> folder) and affinity folders on its corpus."""
    corpus = pc.base.data.data
    embeddings = {label: corpus_path(folder, corpus) for label, folder in pc.embeddings.items()}
    return corpus_path(pc.grid, corpus), embeddings, corpus_path(pc.affinity, corpus) if pc.affinity else None


def prediction_inputs_missing(pc) -> list[str]:
    """What a prediction section still waits for: an unfinished grid, embeddings or affinity run."""
    from .grid import all_cells, is_done, load_grid

    grid, embeddings, affinity = prediction_inputs(pc)
    missing = []
    if not (grid / "grid.json").is_file():
        missing.append(f"grid {grid} (not started)")
    else:
        cells = all_cells(load_grid(grid))
        left = sum(not is_done(grid, c) for c in cells)
        if left:
            missing.append(f"grid {grid} ({left} of {len(cells)} cells unfinished)")
    missing += [f"embeddings {folder}" for folder in embeddings.values() if not (folder / "meta.json").is_file()]
    if affinity and not (affinity / "affinity.json").is_file():
        missing.append(f"affinity {affinity}")
    return missing


def run_prediction_section(pc, steps: dict, progress: bool = True, log=say) -> None:
    """Score the embeddings and affinities against the finished grid into ``pc.base.out/prediction``; while an
    input is unfinished, say so and wait (a later run of the study scores it). Scored again on every run, so the
    scores follow the inputs (a grid grown by seeds, say) and are never stale."""
    from .ranking import run_predict_transfer

    missing = prediction_inputs_missing(pc)
    if missing:
        log(f"{pc.base.out}: waiting for {'; '.join(missing)}")
        return
    grid, embeddings, affinity = prediction_inputs(pc)
    run_predict_transfer(grid, embeddings, affinity, Path(pc.base.out) / "prediction", pc.samples, log=log)
