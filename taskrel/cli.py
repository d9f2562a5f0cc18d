"""Command line: ``taskrel train | evaluate | predict | stats``.

Each subcommand has ``add_<cmd>_parser(subparsers)`` and ``run_<cmd>(args)``;
the CLI parses, the library does the work. Tests call ``main([...])``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import (
    CONVERGE_TOL,
    DEFAULT_TASKS,
    POOLINGS,
    PRECISIONS,
    PRUNERS,
    SCHEDULES,
    STRATEGIES,
    STUDY_MAX_EPOCHS,
    STUDY_PATIENCE,
    TOKEN_LOSSES,
    WEIGHTINGS,
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from .errors import TaskrelError


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _subset_seed(text: str):
    if text == "vary":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'vary', got {text!r}") from None


def _add_common(p):
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--precision", default="auto", choices=PRECISIONS, help="auto: bf16 autocast on CUDA, fp32 on the CPU"
    )
    p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


# ------------------------------------------------------------------ train


def _add_run_args(p, tasks_help: str) -> None:
    """Options shared by every command that trains: data, model and training settings."""
    p.add_argument("--data", help="corpus folder, or a name under $TASKREL_DATA")
    p.add_argument("--tasks", type=_csv, default=list(DEFAULT_TASKS), help=tasks_help)
    p.add_argument("--strategy", choices=STRATEGIES, default="joint")
    p.add_argument(
        "--alternating-updates",
        choices=["per-task", "matched"],
        default="per-task",
        help="alternating: every task's batches each epoch, or as many optimizer steps as joint",
    )
    p.add_argument(
        "--weighting",
        choices=WEIGHTINGS,
        default="static",
        help="static loss weights, or a dynamic method that starts from them (uncertainty, gradnorm, pcgrad)",
    )
    p.add_argument("--weighting-lr", type=float, default=0.025, help="lr of learnable task weights")
    p.add_argument(
        "--token-loss",
        choices=TOKEN_LOSSES,
        default="word-mean",
        help="token losses: mean over labelled words, or sum over a sentence's words averaged over sentences (Eq. 3)",
    )
    p.add_argument("--gradnorm-alpha", type=float, default=1.5)
    p.add_argument("--pooling", choices=POOLINGS, default="max")
    p.add_argument("--crf", action="store_true", help="CRF on the NER head")
    p.add_argument("--encoder", default="minilm", help="minilm, tiny, a local model folder or a hub id")
    p.add_argument("--epochs", type=int, default=3, help="the maximum budget in epochs (the schedule's horizon)")
    stop = p.add_argument_group("convergence")
    stop.add_argument(
        "--patience", type=int, default=None, help="stop after P evaluations without a better main dev score"
    )
    stop.add_argument("--min-epochs", type=int, default=1, help="never stop by patience before this many epochs")
    stop.add_argument("--eval-every", type=int, default=None, help="evaluate on dev every N steps (default: per epoch)")
    stop.add_argument(
        "--dev-max-sentences",
        type=int,
        default=None,
        help="a fixed, seeded subset of devel for selection and early stopping (test is never subsampled)",
    )
    stop.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="linear",
        help="after warm-up: linear decay to 0 at the maximum budget, or constant",
    )
    stop.add_argument(
        "--converge-tol",
        type=float,
        default=CONVERGE_TOL,
        help="a run stopped by --epochs counts as converged if its last evaluations gained less than this",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of steps of linear warm-up")
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--train-fraction", type=float, default=1.0)
    p.add_argument(
        "--subset-seed",
        type=_subset_seed,
        default=1,
        help="seed of the --train-fraction subset, shared by every training seed; 'vary': the training seed",
    )
    p.add_argument(
        "--merge-dev", action="store_true", help="train on train+devel, keep the last epoch (paper protocol)"
    )
    p.add_argument("--max-length", type=int, default=256, help="sub-words per window")
    p.add_argument("--mcls-cap", type=int, default=3)
    _add_unseen_tags(p, "devel/test tags never seen in train")
    _add_common(p)


def _add_unseen_tags(p, what: str) -> None:
    p.add_argument(
        "--unseen-tags", choices=["error", "o"], default="error", help=f"{what}: stop with an error, or map to O"
    )


def add_train_parser(sub):
    p = sub.add_parser("train", help="train a multi-task model, select it on dev, score it on test")
    _add_run_args(p, "comma-separated; the first is the main task")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument(
        "--weights",
        type=_floats,
        default=None,
        help="loss weights in task order (default: 0.8,0.1,0.05,0.05 for the four paper tasks, else 1 each)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished epoch")
    p.set_defaults(func=run_train)


def config_from_args(a) -> RunConfig:
    if not a.data and not all(":" in t for t in a.tasks):
        raise ConfigError(
            "--data is required (a corpus folder, or a name under $TASKREL_DATA) unless every task "
            "names its corpus as CORPUS:TASK"
        )
    return RunConfig(
        DataConfig(
            a.data or "",
            a.train_fraction,
            a.merge_dev,
            a.max_length,
            a.unseen_tags,
            a.mcls_cap,
            subset_seed=a.subset_seed,
            dev_max_sentences=a.dev_max_sentences,
        ),
        ModelConfig(a.encoder, a.tasks, a.pooling, a.crf, a.dropout),
        TrainConfig(
            a.strategy,
            getattr(a, "weights", None),
            a.epochs,
            a.batch_size,
            a.eval_batch_size,
            a.lr,
            a.weight_decay,
            a.warmup,
            a.grad_clip,
            getattr(a, "seed", 1),
            a.device,
            a.threads,
            weighting=a.weighting,
            weighting_lr=a.weighting_lr,
            gradnorm_alpha=a.gradnorm_alpha,
            patience=a.patience,
            min_epochs=a.min_epochs,
            eval_every=a.eval_every,
            schedule=a.schedule,
            precision=a.precision,
            converge_tol=a.converge_tol,
            token_loss=a.token_loss,
            alternating_updates=a.alternating_updates,
        ),
        a.out,
    )


def run_train(a) -> int:
    from .train import train

    saved = Path(a.out) / "config.json"
    if a.resume and saved.is_file():
        cfg = RunConfig.from_dict(json.loads(saved.read_text()))
        cfg.out = a.out  # a moved run folder is continued where it is now, not where it was made
    else:
        cfg = config_from_args(a)
    metrics = train(cfg, resume=a.resume, progress=not a.no_progress)
    print(format_scores(metrics["test"], "test"))
    return 0


# ------------------------------------------------------------------ grid


def add_grid_parser(sub):
    p = sub.add_parser("grid", help="pairwise transfer grid: every task alone and every ordered pair")
    _add_run_args(p, "comma-separated tasks of the grid")
    # a grid measures transfer at convergence: early stopping is on unless --patience says otherwise
    p.set_defaults(patience=STUDY_PATIENCE, epochs=STUDY_MAX_EPOCHS)
    p.add_argument("--out", required=True, help="grid folder (run again to resume)")
    p.add_argument("--seeds", type=_ints, default=[1, 2, 3])
    p.add_argument(
        "--pair-weights",
        type=_floats,
        default=[1.0, 1.0],
        help="loss weights of the main and the secondary task in a pair (default 1,1)",
    )
    p.add_argument("--workers", type=int, default=1, help="cells trained in parallel on this machine")
    p.add_argument(
        "--storage",
        help="Optuna RDB URL shared by several grid processes as a work queue: sqlite:///FILE, postgresql://...",
    )
    p.add_argument("--study", help="queue name in --storage (default: taskrel-grid-<folder name>)")
    p.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap samples")
    p.add_argument(
        "--bootstrap-unit",
        default="block:10",
        help="test units the bootstrap resamples: sentence, or block:N consecutive sentences",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="significance level")
    p.set_defaults(func=run_grid_cmd)


def run_grid_cmd(a) -> int:
    from .config import GridConfig
    from .grid import load_grid, run_grid

    saved = Path(a.out) / "grid.json"
    if saved.is_file() and not a.data:
        grid = load_grid(a.out)
        grid.workers = a.workers
    else:
        base = config_from_args(a)
        grid = GridConfig(
            base,
            a.tasks,
            [int(x) for x in a.seeds],
            a.pair_weights,
            a.workers,
            a.bootstrap,
            a.alpha,
            bootstrap_unit=a.bootstrap_unit,
        )
    transfer = run_grid(grid, a.out, progress=not a.no_progress, storage=a.storage, study=a.study)
    if len(transfer):
        cols = ["main", "secondary", "mean_delta", "std_delta", "p_bootstrap", "significant"]
        print(transfer[cols].to_string(index=False, float_format=lambda v: f"{v:+.4f}"))
    return 0


# ------------------------------------------------------------------ tune


def add_tune_parser(sub):
    p = sub.add_parser("tune", help="tune the loss weights with Optuna on the main task's dev score")
    _add_run_args(p, "comma-separated; the first is the main task (weight 1), the others are tuned")
    p.add_argument("--out", required=True, help="tuning folder (run again to resume)")
    p.add_argument("--trials", type=int, default=20, help="total trials of the study")
    p.add_argument("--timeout", type=_positive_float, default=None, help="seconds for this invocation")
    p.add_argument("--pruner", choices=PRUNERS, default="median")
    p.add_argument("--seed", type=int, default=1, help="training seed of every trial")
    p.add_argument("--sampler-seed", type=int, default=1, help="TPE sampler seed")
    p.add_argument("--min-weight", type=float, default=1e-3)
    p.add_argument("--max-weight", type=float, default=1.0)
    p.add_argument("--tune-pooling", action="store_true")
    p.add_argument("--tune-lr", action="store_true")
    p.add_argument("--storage", help="Optuna RDB URL (default: sqlite:///OUT/study.db)")
    p.add_argument("--study", default="taskrel-tune", help="study name in the storage")
    after = p.add_argument_group("after the study (settings are read from OUT/tune.json)")
    after.add_argument(
        "--confirm",
        action="store_true",
        help="train the best weights and the alternatives (single task, equal, authors', uncertainty, gradnorm, "
        "pcgrad) over --seeds, score them on test, write OUT/confirm/comparison.*",
    )
    after.add_argument("--seeds", type=_ints, default=[1, 2, 3], help="seeds of --confirm")
    after.add_argument("--arms", type=_csv, default=None, help="subset of the --confirm arms")
    after.add_argument(
        "--measure-pruning",
        action="store_true",
        help="re-run the pruned trials unpruned; write what pruning saved to OUT/pruning.json",
    )
    after.add_argument(
        "--continue-pruned",
        action="store_true",
        help="with --measure-pruning: go on from each pruned trial's checkpoint instead of starting it again",
    )
    p.set_defaults(func=run_tune)


def run_tune(a) -> int:
    from .config import TuneConfig
    from .tune import tune

    if a.confirm or a.measure_pruning:
        return _after_tuning(a)
    tc = TuneConfig(
        config_from_args(a),
        a.trials,
        a.timeout,
        a.pruner,
        a.sampler_seed,
        a.min_weight,
        a.max_weight,
        a.tune_pooling,
        a.tune_lr,
    )
    best = tune(tc, a.out, a.storage, a.study, progress=not a.no_progress)
    print(f"best trial {best['trial']}: dev {best['main_task']} {best['dev_score']:.4f} with weights {best['weights']}")
    print(f"open the study with: {best['dashboard']}")
    return 0


def _after_tuning(a) -> int:
    from .confirm import ARMS, confirm, load_tune

    tc, best = load_tune(a.out)
    if a.threads:
        tc.base.train.threads = a.threads
    if a.measure_pruning:
        from .pruning import measure_pruning

        measure_pruning(tc, a.out, a.storage, a.study, not a.no_progress, continue_pruned=a.continue_pruned)
    if a.confirm:
        table = confirm(tc, best, a.out, [int(s) for s in a.seeds], a.arms or ARMS, progress=not a.no_progress)
        cols = ["arm", "n_seeds", "test_mean", "test_std", "delta_vs_single", "p_bootstrap", "p_seeds"]
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


# ------------------------------------------------------------------ run / report


def add_run_parser(sub):
    p = sub.add_parser("run", help="run (or resume) a study declared in an experiment file")
    p.add_argument("study", help="experiment file, e.g. experiments/figure5-grid.yaml")
    p.add_argument("--out", help="results folder (default: runs/<study name>)")
    p.add_argument("--report", help="also write the report into this folder")
    p.add_argument("--workers", type=int, default=1, help="grid cells or runs trained in parallel")
    p.add_argument(
        "--summarise",
        action="store_true",
        help="train nothing: rebuild the tables of a runs study from the runs that finished",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_run)


def run_run(a) -> int:
    from .experiments import load_study, run_study, summarise
    from .report import write_report

    if a.summarise:
        study = load_study(a.study)
        out = Path(a.out or Path("runs") / study.name)
        if study.kind != "runs" or not (out / "study.json").is_file():
            raise ConfigError(f"--summarise needs the folder of a runs study (with study.json), got {out}")
        summarise(out, study)
    else:
        out = run_study(a.study, a.out, a.workers, progress=not a.no_progress)
    print(f"study results in {out}")
    if a.report:
        print(f"report: {write_report(out, a.report)}")
    return 0


def add_estimate_parser(sub):
    p = sub.add_parser("estimate", help="how many runs a study file holds and how long it will take here")
    p.add_argument("study", help="experiment file")
    p.add_argument("--out", help="results folder (finished runs there are not counted; default: runs/<study name>)")
    p.add_argument("--workers", type=_positive_int, default=1, help="runs trained at once")
    p.add_argument("--steps", type=_positive_int, default=4, help="training steps timed by the probe")
    p.add_argument("--no-probe", action="store_true", help="count the runs only")
    p.set_defaults(func=run_estimate)


def run_estimate(a) -> int:
    from .estimate import estimate
    from .experiments import load_study

    study = load_study(a.study)
    est = estimate(study, Path(a.out or Path("runs") / study.name), a.steps, not a.no_probe)
    lines = est.lines(a.workers)
    print("\n".join(lines[:1] if a.no_probe else lines))
    return 0


def add_report_parser(sub):
    p = sub.add_parser("report", help="Markdown and HTML report of a grid or study folder")
    p.add_argument("folder", help="grid or study results folder")
    p.add_argument("--out", required=True, help="report folder, e.g. reports/NAME")
    p.add_argument(
        "--notebooks",
        metavar="DIR",
        help="also run the analysis notebooks in DIR on the results and export them to HTML",
    )
    p.set_defaults(func=run_report)


def run_report(a) -> int:
    from .report import write_report

    print(f"report: {write_report(a.folder, a.out)}")
    if a.notebooks:
        from .notebooks import NOTEBOOKS, export_for

        src = Path(a.folder)
        has = lambda d, m: (d / m).is_file()  # noqa: E731
        folders = [src] if any(has(src, m) for m in NOTEBOOKS) else sorted(d for d in src.iterdir() if d.is_dir())
        grids = [d for d in folders if has(d, "grid.json")]
        tags = [d for d in folders if has(d, "affinity.json")]
        extra = {
            "GRID_DIR": str(grids[0].resolve()) if grids else None,
            "AFF_DIR": str(tags[0].resolve()) if tags else None,
        }
        for path in export_for(folders, a.notebooks, a.out, extra):
            print(f"notebook: {path}")
    return 0


# ------------------------------------------------------------------ evaluate


def add_evaluate_parser(sub):
    p = sub.add_parser("evaluate", help="score a trained model on a corpus split")
    p.add_argument("--model", required=True, help="model folder (RUN_DIR/model)")
    p.add_argument("--data", required=True, help="corpus folder, or a name under $TASKREL_DATA")
    p.add_argument("--split", default="test", choices=["train", "devel", "test"])
    p.add_argument("--output", help="scores JSON (default: eval_<corpus>_<split>.json beside the model folder)")
    p.add_argument("--batch-size", type=int, default=64)
    _add_unseen_tags(p, "tags the model does not know")
    _add_common(p)
    p.set_defaults(func=run_evaluate)


def run_evaluate(a) -> int:
    from .corpus import apply_unseen_policy, find_split, read_conll, resolve_data
    from .data import encode
    from .evaluate import evaluate
    from .predict import Tagger
    from .sources import split_spec

    root = resolve_data(a.data)
    tagger = Tagger(a.model, a.device, a.batch_size, a.precision)
    sents = read_conll(find_split(root, a.split))
    main = tagger.meta["tasks"][0]
    tasks = {n: t for n, t in tagger.tasks.items() if split_spec(n)[0] == split_spec(main)[0]}  # main's corpus
    sents = apply_unseen_policy(sents, set(tagger.meta["ner_labels"][main]), a.unseen_tags)
    enc = encode(sents, tagger.tokenizer, tasks, tagger.meta["max_length"])
    bar = None if a.no_progress else a.split
    pad_id = tagger.tokenizer.pad_token_id or 0
    scores = evaluate(tagger.model, enc, sents, pad_id, a.batch_size, tagger.device, bar, list(tasks), a.precision)
    out = Path(a.output) if a.output else Path(a.model).resolve().parent / f"eval_{root.name}_{a.split}.json"
    out.write_text(
        json.dumps({"model": str(a.model), "data": str(root), "split": a.split, "scores": scores}, indent=2) + "\n"
    )
    print(format_scores(scores, f"{root.name} {a.split}"))
    print(f"scores written to {out}")
    return 0


# ------------------------------------------------------------------ predict


def add_predict_parser(sub):
    p = sub.add_parser("predict", help="tag a CoNLL file (new last column) or raw text (JSON lines)")
    p.add_argument("--model", required=True, help="model folder (RUN_DIR/model)")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument(
        "--format",
        default="auto",
        choices=["auto", "conll", "text"],
        help="auto: .tsv/.conll/.iob/.bio are CoNLL, anything else one sentence a line",
    )
    p.add_argument("--batch-size", type=int, default=64)
    _add_common(p)
    p.set_defaults(func=run_predict)


def run_predict(a) -> int:
    from .predict import predict_file

    n = predict_file(a.model, a.input, a.output, a.format, a.device, a.batch_size, not a.no_progress, a.precision)
    print(f"tagged {n} sentences -> {a.output}")
    return 0


# ------------------------------------------------------------------ stats


def add_stats_parser(sub):
    p = sub.add_parser("stats", help="label counts of every task, per split")
    p.add_argument("--data", required=True, help="corpus folder, or a name under $TASKREL_DATA")
    p.add_argument("--tasks", type=_csv, default=list(DEFAULT_TASKS))
    p.add_argument("--mcls-cap", type=int, default=3)
    p.add_argument("--unseen-tags", choices=["error", "o"], default="error")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_stats)


def run_stats(a) -> int:
    from .corpus import load_corpus
    from .tasks import corpus_stats

    corpus = load_corpus(a.data, unseen_tags=a.unseen_tags)
    stats = corpus_stats(corpus, a.tasks, {"mcls_cap": a.mcls_cap})
    if a.json:
        print(json.dumps(stats, indent=2))
        return 0
    for split, per_task in stats.items():
        print(f"{corpus.name} {split} ({len(corpus.splits[split])} sentences)")
        for task, counts in per_task.items():
            print(f"  {task:6s} " + "  ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


# ------------------------------------------------------------------ task embeddings and affinities


def add_embed_parser(sub):
    p = sub.add_parser("embed", help="Fisher task embeddings from single-task models, similarities and maps")
    _add_run_args(p, "task specs CORPUS:TASK (or TASK on --data); single-task models are trained as needed")
    p.set_defaults(tasks=None)
    p.add_argument("--data-root", help="folder of the corpora named in CORPUS:TASK (sets $TASKREL_DATA)")
    p.add_argument("--out", required=True, help="embeddings folder (run again to resume)")
    p.add_argument("--examples", type=int, default=1000, help="training sentences per task")
    p.add_argument("--components", type=_csv, default=["layer_outputs", "head"], help="layer_outputs,encoder,head")
    p.add_argument("--label-mode", choices=["empirical", "true"], default="empirical")
    p.add_argument("--method", choices=["vmap", "loop"], default="vmap", help="per-example gradients")
    p.add_argument("--fisher-batch", type=int, default=8, help="sentences per vectorised chunk")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--model", action="append", default=[], metavar="SPEC=FOLDER", help="use this model for a task")
    p.set_defaults(func=run_embed)


def run_embed(a) -> int:
    import os

    from .embed import EmbedConfig, embed, load_embeddings
    from .similarity import analyse

    if not a.tasks:
        raise ConfigError("--tasks is required, e.g. BC2GM:ner,NCBI-disease:ner,NCBI-disease:bcls")
    if a.data_root:
        os.environ["TASKREL_DATA"] = a.data_root
    models = dict(m.split("=", 1) for m in a.model)
    base = config_from_args(a)
    ec = EmbedConfig(base, a.tasks, a.examples, a.components, a.label_mode, a.seed, a.method, a.fisher_batch, models)
    embed(ec, a.out, progress=not a.no_progress)
    purity = analyse(load_embeddings(a.out))
    print(purity.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def add_affinity_parser(sub):
    p = sub.add_parser("affinity", help="TAG look-ahead task affinities from one joint multi-task run")
    _add_run_args(p, "comma-separated tasks, trained jointly")
    p.add_argument("--out", required=True, help="run folder; affinity.csv, affinity.json and affinity.png go there")
    p.add_argument("--every", type=_positive_int, default=10, help="look-ahead every K steps")
    p.add_argument("--weights", type=_floats, default=None, help="loss weights in task order (default: 1 each)")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=run_affinity_cmd)


def run_affinity_cmd(a) -> int:
    from .affinity import run_affinity

    if a.weights is None:
        a.weights = [1.0] * len(a.tasks)
    table = run_affinity(config_from_args(a), a.every, progress=not a.no_progress)
    print(
        table.pivot(index="target", columns="source", values="affinity").to_string(float_format=lambda v: f"{v:+.4f}")
    )
    return 0


def add_predict_transfer_parser(sub):
    p = sub.add_parser("predict-transfer", help="how well embeddings and affinities rank a grid's secondary tasks")
    p.add_argument("--grid", required=True, help="grid folder (transfer.csv)")
    p.add_argument("--embeddings", help="folder written by taskrel embed")
    p.add_argument("--affinity", help="run folder written by taskrel affinity")
    p.add_argument("--out", help="output folder (default: GRID/prediction)")
    p.add_argument("--samples", type=int, default=1000, help="random rankings of the random baseline")
    p.set_defaults(func=run_predict_transfer_cmd)


def run_predict_transfer_cmd(a) -> int:
    from .ranking import run_predict_transfer

    summary = run_predict_transfer(a.grid, a.embeddings, a.affinity, a.out, a.samples)
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    return 0


# ------------------------------------------------------------------ output


def format_scores(scores: dict, title: str) -> str:
    lines = [f"{title}:"]
    for task, s in scores.items():
        if "f1" in s:
            lines.append(
                f"  {task:6s} P {s['precision']:.4f}  R {s['recall']:.4f}  F1 {s['f1']:.4f}  ({s['support']} entities)"
            )
        else:
            lines.append(
                f"  {task:6s} accuracy {s['accuracy']:.4f}  macro-F1 {s['macro_f1']:.4f}  ({s['support']} sentences)"
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="taskrel", description="Multi-task BioNER and task-relationship analysis")
    parser.add_argument("--version", action="version", version=f"taskrel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        add_train_parser,
        add_grid_parser,
        add_tune_parser,
        add_run_parser,
        add_estimate_parser,
        add_report_parser,
        add_evaluate_parser,
        add_predict_parser,
        add_stats_parser,
        add_embed_parser,
        add_affinity_parser,
        add_predict_transfer_parser,
    ):
        add(sub)
    for command in sub.choices.values():  # every command reads named corpora from the same place
        if not any("--data-root" in a.option_strings for a in command._actions):
            command.add_argument(
                "--data-root",
                help="folder of the corpora named without a path (default: $TASKREL_DATA, else "
                "../shared/data beside the checkout)",
            )
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "data_root", None):
        import os

        os.environ["TASKREL_DATA"] = args.data_root
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except (TaskrelError, FileNotFoundError) as e:
        print(f"taskrel: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
