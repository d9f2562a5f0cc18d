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

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from . import __version__
from .config import ConfigError, RunConfig
from .data import bucket_batches, collate, encode, to_device
from .encoders import load_encoder
from .evaluate import autocast, evaluate, main_score, predict, score_all
from .model import MultiTaskModel, resolve_device
from .sources import all_tasks, load_sources
from .weighting import make_weighting

CHECKPOINT = "checkpoint"


class RunExists(ConfigError):
    pass


def write_json(path: Path, obj) -> None:
    """Write atomically: a kill never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


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
    each batch serves one task, every task's batches shuffled together.
    """
    rng = np.random.default_rng([cfg.train.seed, epoch])
    bs = cfg.train.batch_size
    steps = []
    for key, src in sources.items():
        if cfg.train.strategy == "joint":
            steps += [(key, list(src.tasks), b) for b in bucket_batches(lengths[key], bs, rng)]
        else:
            steps += [(key, [t], b) for t in src.tasks for b in bucket_batches(lengths[key], bs, rng)]
    return [steps[i] for i in rng.permutation(len(steps))]


def prepare(cfg: RunConfig, splits=("train", "devel", "test")):
    """The corpora of the tasks, the model and its tokenizer for a configuration."""
    sources = load_sources(cfg, splits)
    tasks = all_tasks(sources)
    ner_labels = {spec: src.corpus.tag_set for src in sources.values() for spec in src.tasks}
    encoder, tokenizer = load_encoder(cfg.model.encoder)
    model = MultiTaskModel(encoder, tasks, cfg.model.pooling, cfg.model.crf, cfg.model.dropout, ner_labels)
    return sources, model, tokenizer


def _start_run_dir(cfg: RunConfig, resume: bool) -> tuple[Path, dict | None]:
    out = Path(cfg.out)
    state_file = out / CHECKPOINT / "state.json"
    if resume and state_file.is_file():
        return out, json.loads(state_file.read_text())
    if (out / "metrics.jsonl").exists() and not resume:
        raise RunExists(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").write_text("")
    return out, None


def _save_checkpoint(out: Path, model, optimizer, scheduler, weighting, state: dict) -> None:
    tmp = out / (CHECKPOINT + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    saved = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "weighting": weighting.state_dict(),
    }
    torch.save(saved, tmp / "optim.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
    os.replace(tmp, out / CHECKPOINT)


def _save_model(out: Path, model, tokenizer, cfg: RunConfig) -> None:
    tmp = out / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp, tokenizer, cfg.data.max_length, cfg.data.mcls_cap)
    shutil.rmtree(out / "model", ignore_errors=True)
    os.replace(tmp, out / "model")


def train(
    cfg: RunConfig,
    resume: bool = False,
    callbacks=(),
    progress: bool = True,
    log=print,
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
    if resume and (Path(cfg.out) / "metrics.json").is_file():
        log(f"{cfg.out} is already complete")
        return json.loads((Path(cfg.out) / "metrics.json").read_text())
    out, state = _start_run_dir(cfg, resume)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.train.seed)
    splits = ("train", "devel", "test") if test else ("train", "devel")
    sources, model, tokenizer = prepare(cfg, splits)
    tasks = model.tasks
    model.to(device)
    main = cfg.model.main_task
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
                },
            },
        )

    pad_id = tokenizer.pad_token_id or 0
    max_len = cfg.data.max_length
    train_enc = {k: encode(src.train, tokenizer, src.tasks, max_len) for k, src in sources.items()}
    dev_enc = {k: encode(src.dev, tokenizer, src.tasks, max_len) for k, src in sources.items()}
    lengths = {k: [e.length for e in enc] for k, enc in train_enc.items()}
    steps_per_epoch = len(epoch_schedule(cfg, sources, lengths, 0))
    total_steps = steps_per_epoch * cfg.train.epochs
    groups = param_groups(model, cfg.train.weight_decay) + weighting.param_groups(cfg.train.weighting_lr)
    optimizer = torch.optim.AdamW(groups, lr=cfg.train.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.train.warmup * total_steps), total_steps)

    start_epoch, best, best_epoch = 1, -math.inf, None
    if state is not None:
        load_model(model, str(out / CHECKPOINT / "model.safetensors"), device=str(device))
        saved = torch.load(out / CHECKPOINT / "optim.pt", map_location=device, weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        weighting.load_state_dict(saved.get("weighting", {}))  # checkpoints before dynamic weighting: static
        start_epoch, best, best_epoch = state["epoch"] + 1, state["best"], state["best_epoch"]
        _truncate_metrics(out / "metrics.jsonl", state["epoch"])
        log(f"resuming {out} after epoch {state['epoch']}")

    for epoch in range(start_epoch, cfg.train.epochs + 1):
        torch.manual_seed(cfg.train.seed * 100_003 + epoch)
        model.train()
        schedule = epoch_schedule(cfg, sources, lengths, epoch)
        loss_sum = {t: 0.0 for t in tasks}
        loss_n = {t: 0 for t in tasks}
        n_sent = n_pieces = 0
        t0 = time.perf_counter()
        bar = tqdm(schedule, desc=f"epoch {epoch}/{cfg.train.epochs}", disable=None if progress else True, leave=False)
        for n_step, (key, step_tasks, idx) in enumerate(bar, start=(epoch - 1) * steps_per_epoch):
            items = [train_enc[key][i] for i in idx]
            batch = to_device(collate(items, sources[key].tasks, pad_id), device)
            for hook in step_hooks:
                hook(n_step, model, optimizer, batch, step_tasks)
            with autocast(device):
                outputs = model(batch, tasks=step_tasks)
            loss = weighting.backward({t: o["loss"] for t, o in outputs.items()}, model)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            optimizer.step()
            weighting.after_step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            for t, o in outputs.items():
                loss_sum[t] += o["loss"].item()
                loss_n[t] += 1
            n_sent += len(idx)
            n_pieces += int(batch["attention_mask"].sum())
            bar.set_postfix(loss=f"{loss.item():.4f}")
        train_seconds = time.perf_counter() - t0

        t1 = time.perf_counter()
        dev_scores = {}
        for key, src in sources.items():
            if src.dev:
                bar_name = "dev" if progress else None
                dev_scores |= evaluate(
                    model, dev_enc[key], src.dev, pad_id, cfg.train.eval_batch_size, device, bar_name, list(src.tasks)
                )
        score = main_score(tasks[main], dev_scores[main]) if dev_scores else float(epoch)
        improved = score > best
        if improved:
            best, best_epoch = score, epoch
            _save_model(out, model, tokenizer, cfg)
        record = {
            "epoch": epoch,
            "loss": {t: loss_sum[t] / max(loss_n[t], 1) for t in tasks},
            "weights": weighting.current(),
            "dev": dev_scores,
            "selected": improved,
            "train_seconds": train_seconds,
            "eval_seconds": time.perf_counter() - t1,
            "sentences_per_s": n_sent / train_seconds,
            "wordpieces_per_s": n_pieces / train_seconds,
            "lr": scheduler.get_last_lr()[0],
        }
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        _save_checkpoint(
            out, model, optimizer, scheduler, weighting, {"epoch": epoch, "best": best, "best_epoch": best_epoch}
        )
        dev_txt = f" dev {main} {tasks[main].main_metric} {score:.4f}" if dev_scores else ""
        log(
            f"epoch {epoch}: loss {float(sum(record['weights'][t] * record['loss'][t] for t in tasks)):.4f}{dev_txt}"
            f" ({record['sentences_per_s']:.1f} sent/s){' *' if improved else ''}"
        )
        for cb in callbacks:
            cb(record)

    return finish(cfg, out, best_epoch, progress, log, test, sources)


def read_epochs(run_dir) -> list[dict]:
    """A run's per-epoch records (``metrics.jsonl``); empty if it has none yet."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


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
    cfg: RunConfig, out: Path, best_epoch, progress: bool = True, log=print, test: bool = True, sources=None
) -> dict:
    """Evaluate the selected model on dev and test of every corpus; write ``metrics.json``.

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
                model, enc, pad_id, cfg.train.eval_batch_size, device, split if progress else None, list(src.tasks)
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
