"""Aggregate training throughput on this machine: one run with every core's thread, or one run per core.

A study's thread count is one of its settings (it changes the numbers), so it is chosen before a
study starts. This measures what each choice buys on the whole machine: ``P`` processes, each
training ``taskrel train`` (the four tasks, max pooling, bf16 autocast where the CPU has it,
batch 16, fused AdamW: the real-results studies' settings) with ``T`` threads, all started
together from a barrier after their imports, over the same train subset.

For each layout the script reports the machine's throughput two ways:

- ``sum of rates``: the sum of each process's own sentences per second (its training loop only);
- ``wall``: every process's sentences over the time from the barrier to the last process's end
  (model loading, tokenising and the tiny dev and test evaluations included: conservative).

Layouts run in rotating order, ``--repeats`` times each, after a discarded warm-up.

    TASKREL_DATA=../shared/data python benchmarks/workers_threads.py --layouts 1x2,2x1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path
from statistics import mean

FOUR = ["ner", "mtcls", "bcls", "mcls"]


def _train(folder: str, threads: int, seed: int, out: str, batch_size: int, barrier, queue) -> None:
    import torch

    from taskrel.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from taskrel.train import train

    torch.set_num_threads(threads)
    cfg = RunConfig(
        DataConfig(folder),
        ModelConfig("minilm", FOUR, pooling="max"),
        TrainConfig(epochs=1, batch_size=batch_size, threads=threads, seed=seed, adamw="fused"),
        out,
    )
    barrier.wait()
    t0 = time.perf_counter()
    train(cfg, progress=False, log=lambda *_: None)
    wall = time.perf_counter() - t0
    epoch = json.loads((Path(out) / "metrics.jsonl").read_text().splitlines()[0])
    n = round(epoch["sentences_per_s"] * epoch["train_seconds"])
    queue.put({"sentences": n, "rate": epoch["sentences_per_s"], "train_seconds": epoch["train_seconds"], "wall": wall})


def run_layout(folder: Path, procs: int, threads: int, seed: int, batch_size: int, tmp: Path, tag: str) -> dict:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(procs), ctx.Queue()
    workers = [
        ctx.Process(
            target=_train, args=(str(folder), threads, seed + i, str(tmp / f"{tag}-{i}"), batch_size, barrier, queue)
        )
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    results = [queue.get() for _ in workers]
    for w in workers:
        w.join()
        if w.exitcode:
            raise SystemExit(f"a training process of layout {procs}x{threads} failed (exit {w.exitcode})")
    sentences = sum(r["sentences"] for r in results)
    return {
        "sum_of_rates": sum(r["rate"] for r in results),
        "wall_rate": sentences / max(r["wall"] for r in results),
        "per_process": [r["rate"] for r in results],
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="NCBI-disease")
    p.add_argument("--sentences", type=int, default=960)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--layouts", default=f"1x{os.cpu_count()},{os.cpu_count()}x1", help="PROCESSESxTHREADS, comma-separated"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args(argv)
    layouts = [tuple(int(x) for x in s.split("x")) for s in a.layouts.split(",")]

    from train_throughput import write_subset

    from taskrel.corpus import load_corpus

    corpus = load_corpus(a.data)
    runs = {f"{pr}x{th}": [] for pr, th in layouts}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "subset"
        write_subset(corpus, a.sentences, a.seed, folder)
        small = tmp / "warm"
        write_subset(corpus, 64, a.seed, small)
        run_layout(small, 1, 1, a.seed, a.batch_size, tmp, "warm")  # discarded
        for k in range(a.repeats):
            order = layouts[k % len(layouts) :] + layouts[: k % len(layouts)]
            for pr, th in order:
                runs[f"{pr}x{th}"].append(run_layout(folder, pr, th, a.seed, a.batch_size, tmp, f"{pr}x{th}-{k}"))
    base = mean(r["sum_of_rates"] for r in runs[f"{layouts[0][0]}x{layouts[0][1]}"])
    print(
        f"# {date.today()} {platform.node()} {os.cpu_count()} cores, {corpus.name} {a.sentences} train sentences, "
        f"batch {a.batch_size}, minilm, 4 tasks, precision auto, {a.repeats} repeats"
    )
    print("| processes x threads | sum of rates, sentences/s (range) | wall, sentences/s | per process | vs first |")
    print("|---|---:|---:|---:|---:|")
    for name, rs in runs.items():
        s = [r["sum_of_rates"] for r in rs]
        per = mean(mean(r["per_process"]) for r in rs)
        print(
            f"| {name} | {mean(s):.1f} ({min(s):.1f}-{max(s):.1f}) | {mean(r['wall_rate'] for r in rs):.1f} | "
            f"{per:.1f} | {mean(s) / base:.2f}x |"
        )
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "results": runs}, indent=2))
    return runs


if __name__ == "__main__":
    main()
