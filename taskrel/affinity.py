"""Task affinity from one multi-task run, by look-ahead (TAG; Fifty et al., 2021): ``taskrel affinity``.

Every ``every`` steps of an ordinary joint run, before the real update, and for
each task i of the batch:

1. take the gradient of i's weighted loss alone on the shared encoder, clipped
   to the trainer's ``grad_clip`` global norm (over the encoder's parameters:
   the trainer clips the summed gradient of every task over all parameters,
   heads included, so a task's look-ahead step is what its share of the update
   would be if it were alone);
2. apply the AdamW update the trainer's optimizer would take with it (its
   moments, step count, learning rate, betas, epsilon and decoupled weight
   decay) to a look-ahead copy of the encoder;
3. affinity i → j = 1 − L_j(after) / L_j(before) on the same batch, for every
   task j of the batch (divided by the step's learning rate with
   ``normalise_lr``, as the TAG reference code does, so that look-aheads made
   during warm-up and decay weigh alike);
4. restore the encoder's parameters exactly.

Look-aheads at a learning rate of 0 (the first warm-up step) are skipped: they
would move nothing and add all-zero affinities. The look-ahead runs in eval
mode (no dropout) and never touches the optimizer state or the random
generators, so the run itself trains exactly as it would without it. Affinities are averaged over all look-aheads.

Written next to the run: ``affinity.csv`` (source, target, affinity, count),
``affinity.json`` (look-ahead seconds against the run's training seconds) and
``affinity.png``; while it trains, ``affinity_state.json`` keeps the look-aheads
made up to the last evaluation, so a killed run resumes with them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import torch

from .config import AffinityConfig, ConfigError
from .logs import say
from .precision import autocast
from .rundir import RunDir, write_json


def adamw_lookahead(params, grads, optimizer) -> None:
    """Apply one AdamW step with ``grads`` to ``params`` in place, reading (never writing) the optimizer state."""
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    for p, g in zip(params, grads):
        if g is None:
            continue
        group = group_of[id(p)]
        beta1, beta2 = group["betas"]
        state = optimizer.state.get(p, {})
        step = float(state["step"]) + 1 if "step" in state else 1.0
        m = state.get("exp_avg", torch.zeros_like(p)) * beta1 + (1 - beta1) * g
        v = state.get("exp_avg_sq", torch.zeros_like(p)) * beta2 + (1 - beta2) * g * g
        bias1, bias2 = 1 - beta1**step, 1 - beta2**step
        p.mul_(1 - group["lr"] * group["weight_decay"])
        p.addcdiv_(m, v.sqrt() / bias2**0.5 + group["eps"], value=-group["lr"] / bias1)


class TagAffinity:
    """A trainer step hook that accumulates look-ahead affinities."""

    def __init__(
        self, weights: dict, every: int = 10, grad_clip: float = 1.0, normalise_lr: bool = False, precision="auto"
    ):
        self.weights, self.every, self.grad_clip, self.normalise_lr = weights, every, grad_clip, normalise_lr
        self.precision = precision  # the run's: the look-aheads' forward passes use what its training steps use
        self.sums: dict[tuple[str, str], float] = {}
        self.counts: dict[tuple[str, str], int] = {}
        self.seconds = 0.0
        self.lookaheads = 0
        self.skipped_lr0 = 0

    def __call__(self, step: int, model, optimizer, batch, tasks) -> None:
        if step % self.every or len(tasks) < 2:
            return
        if all(group["lr"] == 0 for group in optimizer.param_groups):
            # step 0 of the warm-up (or the end of a linear decay): a look-ahead would move nothing, and its
            # all-zero affinities would be averaged in
            self.skipped_lr0 += 1
            return
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        shared = [p for p in model.encoder.parameters() if p.requires_grad]
        saved = [p.detach().clone() for p in shared]
        device = shared[0].device
        with autocast(device, self.precision):
            out = model(batch, tasks=tasks)
        before = {t: float(out[t]["loss"].detach()) for t in tasks}
        per_lr = 1.0 / optimizer.param_groups[0]["lr"] if self.normalise_lr else 1.0
        grads = {}  # all gradients first: the look-aheads change the parameters the graph saved
        for k, i in enumerate(tasks):
            g = torch.autograd.grad(
                self.weights[i] * out[i]["loss"], shared, retain_graph=k < len(tasks) - 1, allow_unused=True
            )
            norm = torch.sqrt(sum((x.float() ** 2).sum() for x in g if x is not None))
            scale = min(1.0, self.grad_clip / (float(norm) + 1e-6))
            grads[i] = [None if x is None else x * scale for x in g]
        del out
        for i in tasks:
            with torch.no_grad():
                adamw_lookahead(shared, grads[i], optimizer)
                with autocast(device, self.precision):
                    after = model(batch, tasks=tasks)
                for j in tasks:
                    gain = (1 - float(after[j]["loss"]) / max(before[j], 1e-12)) * per_lr
                    self.sums[(i, j)] = self.sums.get((i, j), 0.0) + gain
                    self.counts[(i, j)] = self.counts.get((i, j), 0) + 1
                for p, s in zip(shared, saved):
                    p.copy_(s)
        model.train(was_training)
        self.lookaheads += 1
        self.seconds += time.perf_counter() - t0

    def state(self) -> dict:
        """What the look-aheads have accumulated, JSON-ready (``load`` takes it back)."""
        return {
            "sums": [[i, j, v] for (i, j), v in self.sums.items()],
            "counts": [[i, j, n] for (i, j), n in self.counts.items()],
            "seconds": self.seconds,
            "lookaheads": self.lookaheads,
            "skipped_lr0": self.skipped_lr0,
        }

    def load(self, state: dict) -> None:
        self.sums = {(i, j): v for i, j, v in state["sums"]}
        self.counts = {(i, j): n for i, j, n in state["counts"]}
        self.seconds, self.lookaheads, self.skipped_lr0 = state["seconds"], state["lookaheads"], state["skipped_lr0"]

    def table(self, corpus_of=None) -> pd.DataFrame:
        from .tasks import TaskSpec

        rows = []
        for (i, j), total in self.sums.items():
            (ci, ti), (cj, tj) = (TaskSpec.parse(t).canonical(corpus_of or "") for t in (i, j))
            rows.append({"source": i, "target": j, "affinity": total / self.counts[(i, j)],
                         "count": self.counts[(i, j)], "source_corpus": ci, "source_task": ti,
                         "target_corpus": cj, "target_task": tj})  # fmt: skip
        return pd.DataFrame(rows)


STATE = "affinity_state.json"  # the look-aheads accumulated up to the run's last evaluation (its checkpoint)


class AffinityStateLost(ConfigError):
    pass


def _resume(out: Path, tag: TagAffinity, log) -> bool:
    """Whether the run in ``out`` is to be resumed; if so, ``tag`` takes back the look-aheads it had made up to
    the evaluation where the run resumes (its checkpoint, or its end)."""
    from .rundir import CHECKPOINT, RECORDS, read_records

    if not (out / RECORDS).is_file():
        return False  # nothing there yet
    checkpoint = out / CHECKPOINT / "state.json"
    if RunDir(out).done:
        at = read_records(out)[-1]["step"]
    elif checkpoint.is_file():
        at = json.loads(checkpoint.read_text())["step"]
    else:
        (out / STATE).unlink(missing_ok=True)
        return True  # killed before its first evaluation: the run starts again, and so do the look-aheads
    saved = json.loads((out / STATE).read_text()) if (out / STATE).is_file() else {}
    if saved.get("step") != at:
        raise AffinityStateLost(
            f"{out}: the affinity run's look-aheads were not saved at the step it would resume from ({at}; saved: "
            f"{saved.get('step')}), so its affinities cannot be completed; remove the folder to start it again"
        )
    tag.load(saved)
    log(f"{out}: resuming the affinity run at step {at}, with its {tag.lookaheads} look-aheads so far")
    return True


def run_affinity(cfg, every: int = 10, progress: bool = True, log=say, normalise_lr: bool = False) -> pd.DataFrame:
    """One joint run of ``cfg`` with look-aheads every ``every`` steps; writes the affinity files into it. A run
    killed half-way resumes from its last evaluation with the look-aheads made until then (saved with each
    evaluation, ``STATE``): the same affinities as a run never stopped."""
    AffinityConfig(cfg, every, normalise_lr)  # checks the settings before the run folder is made
    from .plots import affinity_heatmap
    from .train import train

    tag = TagAffinity(cfg.train.weights, every, cfg.train.grad_clip, normalise_lr, cfg.train.precision)
    out = Path(cfg.out)
    resume = _resume(out, tag, log)

    def save(record):  # after each evaluation, once the trainer's checkpoint is written
        write_json(out / STATE, tag.state() | {"step": record["step"]})

    train(cfg, resume=resume, progress=progress, log=log, step_hooks=[tag], callbacks=[save])
    table = tag.table(cfg.data.data)
    table.to_csv(out / "affinity.csv", index=False)
    train_seconds = RunDir(out).train_seconds
    summary = {
        "every": every,
        "normalise_lr": normalise_lr,
        "lookaheads": tag.lookaheads,
        "lookaheads_skipped_at_lr_0": tag.skipped_lr0,
        "lookahead_seconds": tag.seconds,
        "train_seconds_with_lookaheads": train_seconds,
        "overhead_vs_plain_run": tag.seconds / max(train_seconds - tag.seconds, 1e-9),
    }
    write_json(out / "affinity.json", summary)
    affinity_heatmap(table, cfg.model.tasks, out / "affinity.png")
    log(
        f"{tag.lookaheads} look-aheads took {tag.seconds:.1f} s "
        f"(+{100 * summary['overhead_vs_plain_run']:.0f}% on the run) -> {out / 'affinity.csv'}"
    )
    return table
