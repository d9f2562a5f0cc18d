"""The multi-task training loop, explicit from top to bottom.

``train(config)`` writes into ``config.out``:

- ``config.json``: the resolved configuration and the command line;
- ``metrics.jsonl``: one line per epoch (losses, dev scores, speed);
- ``model/``: the checkpoint selected on the main task's dev score (or the
  last epoch with ``merge_dev``);
- ``metrics.json``: final ``dev`` and ``test`` scores of the selected model;
- ``test_predictions.jsonl``: its test predictions, one line per sentence;
- ``checkpoint/``: what ``resume`` needs, removed when the run completes.

Each epoch's batch order and dropout masks are seeded from ``(seed, epoch)``,
so a run resumed after a kill gives the same numbers as one never stopped.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm
from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

from . import __version__, machine
from .config import CONVERGE_WINDOW, ConfigError, RunConfig
from .corpus import subset_sha1
from .data import bucket_batches, collate, encode, to_device
from .encoders import encoder_source, load_encoder
from .errors import TaskrelError
from .evaluate import evaluate, main_score, predict, score_all
from .locks import RunLock
from .logs import run_log, say
from .machine import resolve_device
from .model import MultiTaskModel
from .precision import autocast, check_resumable, check_trainable, resolve_precision
from .rundir import CHECKPOINT, RunDir, check_same_settings, read_records, write_json
from .sources import all_tasks, load_sources, subset_seed
from .weighting import clipped_per_task_backward, make_weighting


class RunExists(ConfigError):
    pass


def provenance() -> dict:
    """Where and with what a run was made: the machine, versions, and the git commit when run from a checkout."""
    import platform
    import subprocess

    import transformers

    info = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **machine.describe(),
    }
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            dirty = subprocess.run(
                ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10
            )
            info["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    if "git_commit" not in info and os.environ.get("TASKREL_GIT_COMMIT"):  # a copied tree without .git (GPU runs)
        info["git_commit"] = os.environ["TASKREL_GIT_COMMIT"]
    return info


def _record_resume(out: Path, step: int) -> None:
    """Add this resumption (the step it goes on after, the machine, the commit) to ``config.json``'s
    ``resumed`` list: a run resumed in another session may finish on another machine or commit."""
    config = json.loads((out / "config.json").read_text())
    config.setdefault("resumed", []).append({"after_step": step, **provenance()})
    write_json(out / "config.json", config)


def seed_everything(seed: int) -> None:
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def param_groups(model, weight_decay: float):
    """Weight decay on matrices only: no decay for biases and LayerNorm weights (1-D)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def epoch_schedule(cfg: RunConfig, sources: dict, lengths: dict, epoch: int) -> list[tuple[str, list, list[int]]]:
    """``(corpus, tasks, sentence indices)`` per step; every batch comes from one corpus.

    Joint: each batch serves all tasks of its corpus. Alternating (MT-DNN):
    each batch serves one task, every task's batches shuffled together; with
    ``alternating_updates="per-task"`` every task sees all its batches (T times
    the optimizer steps of joint), with ``"matched"`` the epoch keeps as many
    steps as joint would take (a seeded share of the task batches).
    """
    rng = np.random.default_rng([cfg.train.seed, epoch])
    bs = cfg.train.batch_size
    steps, joint_steps = [], 0
    for key, src in sources.items():
        if cfg.train.strategy == "joint":
            steps += [(key, list(src.tasks), b) for b in bucket_batches(lengths[key], bs, rng)]
        else:
            steps += [(key, [t], b) for t in src.tasks for b in bucket_batches(lengths[key], bs, rng)]
            joint_steps += len(bucket_batches(lengths[key], bs, np.random.default_rng(0)))
    order = [steps[i] for i in rng.permutation(len(steps))]
    if cfg.train.strategy == "alternating" and cfg.train.alternating_updates == "matched":
        order = order[:joint_steps]
    return order


def prepare(cfg: RunConfig, splits=("train", "devel", "test")):
    """The corpora of the tasks, the model and its tokenizer for a configuration."""
    sources = load_sources(cfg, splits)
    tasks = all_tasks(sources)
    ner_labels = {spec: src.corpus.tag_set for src in sources.values() for spec in src.tasks}
    encoder, tokenizer = load_encoder(cfg.model.encoder)
    positions = getattr(encoder.config, "max_position_embeddings", None)
    if positions and cfg.data.max_length > positions:
        raise ConfigError(
            f"max_length {cfg.data.max_length} is above the {positions} positions of encoder {cfg.model.encoder!r}; "
            f"longer sentences are cut into windows anyway"
        )
    model = MultiTaskModel(encoder, tasks, cfg.model.pooling, cfg.model.crf, cfg.model.dropout, ner_labels)
    return sources, model, tokenizer


def _start_run_dir(cfg: RunConfig, resume: bool) -> tuple[Path, dict | None]:
    out = Path(cfg.out)
    state_file = out / CHECKPOINT / "state.json"
    for folder in (out / CHECKPOINT, out / "model"):
        _restore_swapped(folder)
    if resume and state_file.is_file():
        return out, json.loads(state_file.read_text())
    if (out / "metrics.jsonl").exists() and not resume:
        raise RunExists(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").write_text("")
    return out, None


class DiskFull(TaskrelError):
    pass


@contextlib.contextmanager
def _writing(what: Path):
    """A full disk while a checkpoint or model is written: a clear error; the last complete one is kept."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        full = getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e)
        if not full:
            raise
        shutil.rmtree(what.with_name(what.name + ".tmp"), ignore_errors=True)
        raise DiskFull(
            f"{what}: the disk is full; the last complete checkpoint is kept: free some space, then run again "
            "with --resume (a study resumes by itself)"
        ) from None


def _save_checkpoint(out: Path, model, optimizer, scheduler, weighting, state: dict, device=None) -> None:
    """What ``resume`` needs after an evaluation, written to a temporary folder and renamed into place."""
    with _writing(out / CHECKPOINT):
        _write_checkpoint(out, model, optimizer, scheduler, weighting, state, device)


def _write_checkpoint(out: Path, model, optimizer, scheduler, weighting, state: dict, device=None) -> None:
    tmp = out / (CHECKPOINT + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    saved = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "weighting": weighting.state_dict(),
        "rng": torch.get_rng_state(),  # dropout masks of a run resumed within an epoch
    }
    if device is not None and torch.device(device).type == "cuda":
        saved["cuda_rng"] = torch.cuda.get_rng_state(device)
    torch.save(saved, tmp / "optim.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    _swap_in(tmp, out / CHECKPOINT)


def _save_model(out: Path, model, tokenizer, cfg: RunConfig) -> None:
    tmp = out / "model.tmp"
    with _writing(out / "model"):
        shutil.rmtree(tmp, ignore_errors=True)
        model.save(tmp, tokenizer, cfg.data.max_length, cfg.data.mcls_cap)
        _swap_in(tmp, out / "model")


def _swap_in(tmp: Path, final: Path) -> None:
    """Put a fully written folder in place of ``final``: its files are flushed to disk first, and at every
    moment either the old folder or the new one is complete (the old one waits as ``final.old``)."""
    for f in tmp.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _restore_swapped(folder: Path) -> None:
    """After a kill between the two renames of ``_swap_in``: the old, complete folder comes back."""
    old = folder.with_name(folder.name + ".old")
    if old.is_dir() and not folder.exists():
        os.replace(old, folder)


def train(
    cfg: RunConfig,
    resume: bool = False,
    callbacks=(),
    progress: bool = True,
    log=say,
    test: bool = True,
    step_hooks=(),
) -> dict:
    """Train, select on dev, evaluate; returns the contents of ``metrics.json``.

    ``callbacks`` are called as ``cb(record)`` after each epoch's record and
    checkpoint are written; ``step_hooks`` as ``hook(step, model, optimizer,
    batch, tasks)`` before each training step (the step counts from 0 over the
    run), and must leave the model as they found it. With ``test=False`` the test split is never read
    (``metrics.json`` then has ``"test": null``).
    """
    if not cfg.out:
        raise ValueError("the run needs an output folder (out)")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise ConfigError(f"--out {cfg.out} is a file; a run needs a folder")
    done = Path(cfg.out) / "metrics.json"
    if resume:
        check_same_settings(cfg, Path(cfg.out))  # a finished or half-done run is reused only under its own settings
    if resume and done.is_file():
        log(f"{cfg.out} is already complete")
        return json.loads(done.read_text())
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    with RunLock(cfg.out):  # one writer per run folder: a second process gets RunLocked
        if resume and done.is_file():  # finished by another process while we waited for nothing
            log(f"{cfg.out} is already complete")
            return json.loads(done.read_text())
        with run_log(cfg.out, log) as log:  # every message of the run also goes to its train.log
            log(f"taskrel {__version__}: {' '.join(sys.argv)}")
            return _train(cfg, resume, callbacks, progress, log, test, step_hooks)


def _train(cfg: RunConfig, resume: bool, callbacks, progress: bool, log, test: bool, step_hooks) -> dict:
    # device, data and encoder are checked before the run folder is started, so a failed start never
    # blocks the corrected rerun
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    check_trainable(device, cfg.train.precision)
    if resume and (Path(cfg.out) / CHECKPOINT / "state.json").is_file():  # before anything is read or written
        recorded = RunDir(cfg.out).precision
        check_resumable(recorded, device, cfg.train.precision, Path(cfg.out) / "config.json")
    seed_everything(cfg.train.seed)
    splits = ("train", "devel", "test") if test else ("train", "devel")
    sources, model, tokenizer = prepare(cfg, splits)
    out, state = _start_run_dir(cfg, resume)
    tasks = model.tasks
    model.token_loss = cfg.train.token_loss
    model.to(device)
    main = cfg.model.main_task
    precision = resolve_precision(device, cfg.train.precision)
    weighting = make_weighting(cfg.train.weighting, cfg.train.weights, model, cfg.train.gradnorm_alpha).to(device)
    if state is None:  # a resumed run keeps the configuration and command line it was started with
        write_json(
            out / "config.json",
            {
                "taskrel_version": __version__,
                "command": sys.argv,
                **cfg.to_dict(),
                "resolved": {
                    "device": str(device),
                    "corpora": {k: src.corpus.root for k, src in sources.items()},
                    "ner_labels": {k: list(src.corpus.tag_set) for k, src in sources.items()},
                    "train_sentences": sum(len(src.train) for src in sources.values()),
                    "dev_sentences": sum(len(src.dev) for src in sources.values()),
                    "train_subset_sha1": {k: subset_sha1(src.train) for k, src in sources.items()},
                    "subset_seed": subset_seed(cfg),
                    "precision": precision,
                    "encoder": encoder_source(cfg.model.encoder),
                    "threads": torch.get_num_threads(),
                    **provenance(),
                },
            },
        )

    pad_id = tokenizer.pad_token_id or 0
    max_len = cfg.data.max_length
    train_enc = {k: encode(src.train, tokenizer, src.tasks, max_len) for k, src in sources.items()}
    dev_enc = {k: encode(src.dev, tokenizer, src.tasks, max_len) for k, src in sources.items()}
    lengths = {k: [e.length for e in enc] for k, enc in train_enc.items()}
    steps_per_epoch = len(epoch_schedule(cfg, sources, lengths, 0))
    total_steps = steps_per_epoch * cfg.train.epochs  # the maximum budget: the schedule's horizon
    eval_every = cfg.train.eval_every or steps_per_epoch
    groups = param_groups(model, cfg.train.weight_decay) + weighting.param_groups(cfg.train.weighting_lr)
    optimizer = torch.optim.AdamW(groups, lr=cfg.train.lr, fused=cfg.train.adamw == "fused")
    scheduler = make_scheduler(cfg, optimizer, total_steps)

    # the state of the run after its last evaluation: what a checkpoint holds
    run = {"step": 0, "evals": 0, "best": -math.inf, "best_epoch": None, "best_step": None, "bad": 0, "stopped": None}
    if state is not None:
        load_model(model, str(out / CHECKPOINT / "model.safetensors"), device=str(device))
        saved = torch.load(out / CHECKPOINT / "optim.pt", map_location=device, weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        weighting.load_state_dict(saved.get("weighting", {}))  # checkpoints before dynamic weighting: static
        run |= _state_from_checkpoint(state, steps_per_epoch)
        if "rng" in saved:
            torch.set_rng_state(saved["rng"].cpu())
        if "cuda_rng" in saved and device.type == "cuda":
            torch.cuda.set_rng_state(saved["cuda_rng"].cpu(), device)
        _truncate_metrics(out / "metrics.jsonl", run["evals"])
        _record_resume(out, run["step"])
        log(f"resuming {out} after step {run['step']} (evaluation {run['evals']})")

    evaluator = _Evaluator(
        cfg, out, model, tokenizer, sources, dev_enc, pad_id, device, weighting, scheduler, steps_per_epoch, progress
    )
    acc = _Accumulator(tasks)
    while run["step"] < total_steps and run["stopped"] is None:
        epoch, offset = run["step"] // steps_per_epoch + 1, run["step"] % steps_per_epoch
        if offset == 0:  # a run resumed within an epoch restored its RNG state from the checkpoint
            torch.manual_seed(cfg.train.seed * 100_003 + epoch)
        model.train()
        schedule = epoch_schedule(cfg, sources, lengths, epoch)
        bar = tqdm(
            schedule[offset:],
            desc=f"epoch {epoch}/{cfg.train.epochs}",
            disable=None if progress else True,
            leave=False,
        )
        for key, step_tasks, idx in bar:
            items = [train_enc[key][i] for i in idx]
            batch = to_device(collate(items, sources[key].tasks, pad_id), device)
            for hook in step_hooks:
                hook(run["step"], model, optimizer, batch, step_tasks)
            with autocast(device, precision):
                outputs = model(batch, tasks=step_tasks)
            losses = {t: o["loss"] for t, o in outputs.items()}
            if cfg.train.clip == "per-task":
                loss = clipped_per_task_backward(weighting.static, losses, model, cfg.train.grad_clip)
            else:
                loss = weighting.backward(losses, model)
            if not math.isfinite(float(loss)):
                raise TrainingDiverged(
                    f"{out}: the loss became {float(loss)} at epoch {epoch}, step {run['step'] + 1}; "
                    "the last good checkpoint is kept (lower --lr or check --weights)"
                )
            if cfg.train.clip == "summed":
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            optimizer.step()
            weighting.after_step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            acc.add(outputs, len(idx), int(batch["attention_mask"].sum()))
            run["step"] += 1
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if run["step"] % eval_every and run["step"] < total_steps:
                continue  # not an evaluation point (with eval_every, epoch ends are not either)
            record = evaluator(run, epoch, acc)
            _save_checkpoint(out, model, optimizer, scheduler, weighting, dict(run), device)
            log(_progress_line(record, run, tasks, main))
            for cb in callbacks:
                cb(record)
            acc = _Accumulator(tasks)
            if run["stopped"] is not None:
                break
            model.train()
        bar.close()
    if run["stopped"] is None:
        run["stopped"] = "max_epochs"

    info = run_outcome(cfg, read_records(out), run, tasks[main].main_metric)
    return finish(cfg, out, run["best_epoch"], progress, log, test, sources, info)


class TrainingDiverged(ConfigError):
    pass


def make_scheduler(cfg: RunConfig, optimizer, total_steps: int):
    """Linear warm-up, then linear decay to 0 at the maximum budget, or a constant rate."""
    warmup = math.ceil(cfg.train.warmup * total_steps)
    if cfg.train.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


class _Accumulator:
    """Training losses and throughput since the last evaluation."""

    def __init__(self, tasks):
        self.loss_sum = {t: 0.0 for t in tasks}
        self.loss_n = {t: 0 for t in tasks}
        self.sentences = self.pieces = 0
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()  # CPU time of every thread of the process: a pause does not count

    def add(self, outputs, n_sentences: int, n_pieces: int) -> None:
        for t, o in outputs.items():
            self.loss_sum[t] += o["loss"].item()
            self.loss_n[t] += 1
        self.sentences += n_sentences
        self.pieces += n_pieces

    def losses(self) -> dict:
        return {t: self.loss_sum[t] / max(self.loss_n[t], 1) for t in self.loss_sum}


def _state_from_checkpoint(state: dict, steps_per_epoch: int) -> dict:
    """The run state a checkpoint saved; checkpoints from before step-based evaluation saved epochs."""
    if "step" in state:
        return {k: state[k] for k in ("step", "evals", "best", "best_epoch", "best_step", "bad", "stopped")}
    return {
        "step": state["epoch"] * steps_per_epoch,
        "evals": state["epoch"],
        "best": state["best"],
        "best_epoch": state["best_epoch"],
        "best_step": None if state["best_epoch"] is None else state["best_epoch"] * steps_per_epoch,
        "bad": 0,
        "stopped": None,
    }


@dataclass
class _Evaluator:
    """Scores dev after some training, keeps the model if it is the best so far, decides on early stopping
    and appends the evaluation's record to ``metrics.jsonl``."""

    cfg: RunConfig
    out: Path
    model: object
    tokenizer: object
    sources: dict
    dev_enc: dict
    pad_id: int
    device: object
    weighting: object
    scheduler: object
    steps_per_epoch: int = 1
    progress: bool = False

    def __call__(self, run: dict, epoch: int, acc: _Accumulator) -> dict:
        cfg, model = self.cfg, self.model
        train_seconds = time.perf_counter() - acc.t0
        train_cpu = time.process_time() - acc.cpu0
        main = cfg.model.main_task
        t1, cpu1 = time.perf_counter(), time.process_time()
        dev_scores = {}
        for key, src in self.sources.items():
            if src.dev:
                dev_scores |= evaluate(
                    model,
                    self.dev_enc[key],
                    src.dev,
                    self.pad_id,
                    cfg.train.eval_batch_size,
                    self.device,
                    "dev" if self.progress else None,
                    list(src.tasks),
                    cfg.train.precision,
                )
        run["evals"] += 1
        # without dev (merge_dev) every evaluation "improves": the last one is kept
        score = main_score(model.tasks[main], dev_scores[main]) if dev_scores else float(run["step"])
        improved = score > run["best"]
        if improved:
            run.update(best=score, best_epoch=epoch, best_step=run["step"], bad=0)
            _save_model(self.out, model, self.tokenizer, cfg)
        else:
            run["bad"] += 1
        patience = cfg.train.patience
        if (
            dev_scores
            and patience is not None
            and run["bad"] >= patience
            and run["step"] >= cfg.train.min_epochs * self.steps_per_epoch
        ):
            run["stopped"] = "patience"
        record = {
            "epoch": epoch,
            "step": run["step"],
            "eval": run["evals"],
            "epochs_done": run["step"] / self.steps_per_epoch,
            "loss": acc.losses(),
            "weights": self.weighting.current(),
            "dev": dev_scores,
            "selected": improved,
            "train_seconds": train_seconds,
            "eval_seconds": time.perf_counter() - t1,
            # the cost of the work itself: CPU seconds over all threads, which a paused or shared machine does not
            # inflate as it does the wall-clock seconds above (on a GPU they count only the host's part)
            "train_cpu_seconds": train_cpu,
            "eval_cpu_seconds": time.process_time() - cpu1,
            "sentences_per_s": acc.sentences / max(train_seconds, 1e-9),
            "wordpieces_per_s": acc.pieces / max(train_seconds, 1e-9),
            "lr": self.scheduler.get_last_lr()[0],
        }
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        return record


def _progress_line(record: dict, run: dict, tasks: dict, main: str) -> str:
    loss = float(sum(record["weights"][t] * record["loss"][t] for t in tasks))
    dev = record["dev"]
    dev_txt = f" dev {main} {tasks[main].main_metric} {main_score(tasks[main], dev[main]):.4f}" if dev else ""
    stop = " (stopped: patience)" if run["stopped"] == "patience" else ""
    return (
        f"epoch {record['epoch']} step {record['step']}: loss {loss:.4f}{dev_txt}"
        f" ({record['sentences_per_s']:.1f} sent/s){' *' if record['selected'] else ''}{stop}"
    )


def run_outcome(cfg: RunConfig, records: list[dict], run: dict, metric: str) -> dict:
    """How the run ended: ``stopped``, ``converged``, ``steps``, ``evaluations``, ``best_step``.

    ``converged`` is true when patience stopped the run; when the maximum
    budget stopped it, true only if the best main dev score of the last
    ``patience`` evaluations (``CONVERGE_WINDOW`` without patience) beats the
    best before them by less than ``converge_tol``. Without dev (merge_dev)
    it cannot be told: null.
    """
    main = cfg.model.main_task
    scores = [r["dev"][main][metric] for r in records if r.get("dev")]
    if run["stopped"] == "patience":
        converged = True
    elif not scores:
        converged = None
    else:
        window = cfg.train.patience or CONVERGE_WINDOW
        converged = len(scores) > window and max(scores[-window:]) - max(scores[:-window]) < cfg.train.converge_tol
    return {
        "stopped": run["stopped"],
        "converged": converged,
        "steps": run["step"],
        "evaluations": run["evals"],
        "best_step": run["best_step"],
    }


def _truncate_metrics(path: Path, epochs: int) -> None:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()][:epochs]
    path.write_text("".join(ln + "\n" for ln in lines))


def write_predictions(path: Path, preds: dict) -> None:
    """One JSON line per sentence, ``{task: labels}``, in corpus order (for paired significance tests)."""
    n = len(next(iter(preds.values())))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        for i in range(n):
            f.write(json.dumps({task: p[i] for task, p in preds.items()}) + "\n")
    os.replace(tmp, path)


def finish(
    cfg: RunConfig,
    out: Path,
    best_epoch,
    progress: bool = True,
    log=say,
    test: bool = True,
    sources=None,
    outcome: dict | None = None,
) -> dict:
    """Evaluate the selected model on the full dev and test of every corpus; write ``metrics.json``.

    ``outcome`` (see ``run_outcome``: stopped, converged, steps) goes into ``metrics.json`` too.

    The main task's corpus's test predictions go to ``test_predictions.jsonl``,
    another corpus's to ``test_predictions-CORPUS.jsonl``.
    """
    from .model import load

    device = resolve_device(cfg.train.device)
    model, tokenizer, _ = load(out / "model", device)
    if sources is None:
        sources = load_sources(cfg, ("train", "devel", "test") if test else ("train", "devel"))
    main = cfg.model.main_task
    results = {
        "main_task": main,
        "best_epoch": best_epoch,
        "selection": "last epoch (merge_dev)" if cfg.data.merge_dev else f"best dev {main}",
        "dev": None if cfg.data.merge_dev else {},  # devel was trained on with merge_dev
        "test": {} if test else None,
        **(outcome or {}),
    }
    pad_id = tokenizer.pad_token_id or 0
    for i, (key, src) in enumerate(sources.items()):
        for split in ("devel", "test"):
            name = "dev" if split == "devel" else "test"
            if results[name] is None:
                continue
            sents = src.corpus.splits[split]
            enc = encode(sents, tokenizer, src.tasks, cfg.data.max_length)
            preds = predict(
                model,
                enc,
                pad_id,
                cfg.train.eval_batch_size,
                device,
                split if progress else None,
                list(src.tasks),
                cfg.train.precision,
            )
            results[name] |= score_all(src.tasks, sents, preds)
            if split == "test":
                suffix = "" if i == 0 else f"-{Path(key).name}"
                write_predictions(out / f"test_predictions{suffix}.jsonl", preds)
    write_json(out / "metrics.json", results)
    shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
    task = model.tasks[main]
    scored = results["test"] or results["dev"]
    log(
        f"{'test' if test else 'dev'} {main} {task.main_metric}: {main_score(task, scored[main]):.4f} "
        f"(model from epoch {best_epoch}) -> {out / 'metrics.json'}"
    )
    return results
