"""Cost of a Fisher task embedding against a training epoch, and vectorised against looped gradients.

One process, the same N training sentences and threads throughout:

  (a) one training epoch of a single-task model on the N sentences (``taskrel train``,
      the epoch's own training seconds, no evaluation);
  (b) the Fisher pass ``taskrel embed`` runs by default (components layer_outputs and head,
      per-example gradients by vmap), and each component alone;
  (c) per-example parameter gradients of the ``encoder`` and ``head`` components:
      vmap against the per-example loop.

Each timed pass runs ``--repeats`` times after one discarded warm-up; the table gives the
mean and the range.

    python benchmarks/fisher_cost.py --data NCBI-disease --sentences 128 --task ner
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import date
from pathlib import Path
from statistics import mean

import torch

from taskrel.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from taskrel.data import encode
from taskrel.fisher import fisher_embedding
from taskrel.model import load
from taskrel.train import train


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="NCBI-disease")
    ap.add_argument("--task", default="ner")
    ap.add_argument("--sentences", type=int, default=128)
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--batch-size", type=int, default=16, help="training batch")
    ap.add_argument("--fisher-batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loop-sentences", type=int, default=32, help="the loop is slow: time it on fewer, scale up")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from taskrel.corpus import load_corpus

    corpus = load_corpus(a.data)
    n_total = len(corpus.splits["train"])
    fraction = a.sentences / n_total
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig(
            DataConfig(a.data, train_fraction=fraction),
            ModelConfig(a.encoder, [a.task]),
            TrainConfig(epochs=1, batch_size=a.batch_size, lr=1e-4, threads=a.threads),
            str(Path(tmp) / "run"),
        )
        train(cfg, progress=False, log=lambda *_: None, test=False)
        record = json.loads((Path(tmp) / "run/metrics.jsonl").read_text().splitlines()[0])
        n_train = json.loads((Path(tmp) / "run/config.json").read_text())["resolved"]["train_sentences"]
        epoch_seconds = record["train_seconds"]
        model, tok, meta = load(Path(tmp) / "run/model")
    sents = corpus.splits["train"][: a.sentences]
    enc = sorted(encode(sents, tok, {a.task: model.tasks[a.task]}, meta["max_length"]), key=lambda e: e.length)
    small = enc[: a.loop_sentences]
    pad = tok.pad_token_id or 0

    def fisher(items, components, method):
        return lambda: fisher_embedding(
            model, items, a.task, pad, "cpu", components, "empirical", 1, a.fisher_batch, method
        )

    rows = {}
    rows["train epoch"] = ([epoch_seconds * a.sentences / n_train], a.sentences)
    rows["fisher layer_outputs+head (vmap; embed's default)"] = (
        timed(fisher(enc, ("layer_outputs", "head"), "vmap"), a.repeats),
        a.sentences,
    )
    rows["fisher layer_outputs"] = (timed(fisher(enc, ("layer_outputs",), "vmap"), a.repeats), a.sentences)
    for comp in ("head", "encoder"):
        for method in ("vmap", "loop"):
            rows[f"{comp}: {method}"] = (timed(fisher(small, (comp,), method), a.repeats), len(small))

    print(f"\n{a.encoder}, {a.data}:{a.task}, {a.threads} threads, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {date.today()}")  # fmt: skip
    print(f"training epoch measured on {n_train} sentences, scaled to {a.sentences}\n")
    print("| pass | sentences | seconds (mean, range) | ms per sentence | × training epoch |")
    print("|---|---:|---:|---:|---:|")
    per_sentence_epoch = epoch_seconds / n_train
    for name, (times, n) in rows.items():
        m = mean(times)
        rng = f" ({min(times):.2f}–{max(times):.2f})" if len(times) > 1 else ""
        ratio = (m / n) / per_sentence_epoch
        print(f"| {name} | {n} | {m:.2f}{rng} | {1000 * m / n:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
