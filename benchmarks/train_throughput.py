"""Training throughput: taskrel against a plain Hugging Face token-classification loop.

One process, same sentences, encoder, batch size and threads for all four:

  (a) taskrel train, tasks ner,mtcls,bcls,mcls (joint, max pooling)
  (b) taskrel train, task ner only
  (c) a plain loop: AutoModelForTokenClassification, DataCollatorForTokenClassification
      (dynamic padding), shuffled batches, AdamW + linear warm-up, clipping 1.0
  (d) the same loop, every batch padded to 256 like the authors' code

Speed is real (non-padding) wordpieces per second, [CLS]/[SEP] included, and
sentences per second, over the training loop only (no evaluation). A discarded
warm-up run comes first; (a), (b) and (c) then run ``--repeats`` times in
rotating order and the table gives the mean and the range; (d), five times
slower, runs once.

    python benchmarks/train_throughput.py --data NCBI-disease --sentences 640
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
from transformers import (
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    get_linear_schedule_with_warmup,
)

from taskrel.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from taskrel.corpus import load_corpus, subsample
from taskrel.encoders import load_encoder, minilm_path
from taskrel.train import param_groups, train


def write_subset(corpus, n: int, seed: int, folder: Path) -> list:
    """A corpus folder with ``n`` train sentences and a 32-sentence devel/test (evaluation is not timed)."""
    sents = subsample(corpus.splits["train"], n / len(corpus.splits["train"]), seed)[:n]
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", sents), ("devel", corpus.splits["devel"][:32]), ("test", corpus.splits["devel"][:32])):
        lines = []
        for s in part:
            lines += [f"{w}\t{t}" for w, t in zip(s.tokens, s.tags)] + [""]
        (folder / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    return sents


def run_taskrel(
    folder: Path,
    tasks: list,
    batch_size: int,
    threads: int,
    seed: int,
    out: Path,
    device: str = "auto",
    precision: str = "auto",
) -> dict:
    cfg = RunConfig(
        DataConfig(str(folder)),
        ModelConfig("minilm", tasks),
        TrainConfig(epochs=1, batch_size=batch_size, threads=threads, seed=seed, device=device, precision=precision),
        str(out),
    )
    train(cfg, progress=False, log=lambda *_: None)
    epoch = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    return {
        "sentences_per_s": epoch["sentences_per_s"],
        "wordpieces_per_s": epoch["wordpieces_per_s"],
        "seconds": epoch["train_seconds"],
    }


def run_hf(
    sents,
    labels: list,
    batch_size: int,
    seed: int,
    pad_to: int | None,
    device: str = "cpu",
    precision: str = "fp32",
    compile: bool = False,
) -> dict:
    """The plain loop a user would write from the transformers token-classification example.

    On CUDA the batches move to the GPU and ``precision="bf16"`` runs the forward pass under autocast.
    ``compile``: the model under ``torch.compile(dynamic=True)``; two forward and backward passes compile it
    before the clock starts (their time is ``compile_seconds``), so the epoch measures the compiled steady state.
    """
    from taskrel.precision import autocast

    torch.manual_seed(seed)
    path = str(minilm_path())
    _, tokenizer = load_encoder("minilm")
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(labels)).float().to(device)
    label_id = {lab: i for i, lab in enumerate(labels)}
    features = []
    for s in sents:
        enc = tokenizer(list(s.tokens), is_split_into_words=True, truncation=True, max_length=256)
        prev, aligned = None, []
        for w in enc.word_ids():
            aligned.append(-100 if w is None or w == prev else label_id[s.tags[w]])
            prev = w
        features.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": aligned})
    collator = DataCollatorForTokenClassification(
        tokenizer, padding="max_length" if pad_to else True, max_length=pad_to
    )
    loader = torch.utils.data.DataLoader(
        features,
        batch_size=batch_size,
        shuffle=True,
        collate_fn=collator,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=5e-5)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * len(loader)), len(loader))
    model.train()
    compile_seconds = None
    if compile:
        model = torch.compile(model, dynamic=True)
        t0 = time.perf_counter()
        for _, batch in zip(range(2), loader):
            with autocast(device, precision):
                model(**{k: v.to(device) for k, v in batch.items()}).loss.backward()
        optimizer.zero_grad(set_to_none=True)
        compile_seconds = time.perf_counter() - t0
    n_sent = n_pieces = 0
    t0 = time.perf_counter()
    for batch in loader:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast(device, precision):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        n_sent += batch["input_ids"].shape[0]
        n_pieces += int(batch["attention_mask"].sum())
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {
        "sentences_per_s": n_sent / seconds,
        "wordpieces_per_s": n_pieces / seconds,
        "seconds": seconds,
        "compile_seconds": compile_seconds,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="NCBI-disease")
    p.add_argument("--sentences", type=int, default=640)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-padded", action="store_true", help="leave out (d), the slowest")
    p.add_argument("--json", help="also write the results here")
    p.add_argument(
        "--precisions",
        action="store_true",
        help="the speed issue's table instead: taskrel (4 tasks) and the HF loop, each in fp32 and bf16 autocast",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="with --precisions: also (e) the HF loop in bf16 under torch.compile (steady state; compile time apart)",
    )
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    corpus = load_corpus(a.data)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "subset"
        sents = write_subset(corpus, a.sentences, a.seed, folder)
        four = ["ner", "mtcls", "bcls", "mcls"]
        configs = {  # fp32 pinned: "auto" is bf16 on CPUs with native bf16
            "(a) taskrel, 4 tasks": lambda k: run_taskrel(
                folder, four, a.batch_size, a.threads, a.seed, Path(tmp) / f"a{k}", precision="fp32"
            ),
            "(b) taskrel, ner only": lambda k: run_taskrel(
                folder, ["ner"], a.batch_size, a.threads, a.seed, Path(tmp) / f"b{k}", precision="fp32"
            ),
            "(c) HF loop, dynamic padding": lambda k: run_hf(sents, corpus.tag_set, a.batch_size, a.seed, None),
        }
        if a.precisions:
            configs = {
                "(a) taskrel, 4 tasks, fp32": configs["(a) taskrel, 4 tasks"],
                "(b) taskrel, 4 tasks, bf16": lambda k: run_taskrel(
                    folder, four, a.batch_size, a.threads, a.seed, Path(tmp) / f"b{k}", precision="bf16"
                ),
                "(c) HF loop, dynamic padding": configs["(c) HF loop, dynamic padding"],
                "(d) HF loop, dynamic padding, bf16": lambda k: run_hf(
                    sents, corpus.tag_set, a.batch_size, a.seed, None, precision="bf16"
                ),
            }
            if a.compile:
                configs["(e) HF loop, dynamic padding, bf16, torch.compile"] = lambda k: run_hf(
                    sents, corpus.tag_set, a.batch_size, a.seed, None, precision="bf16", compile=True
                )
        run_hf(sents[: 2 * a.batch_size], corpus.tag_set, a.batch_size, a.seed, None)  # warm-up, discarded
        runs = {name: [] for name in configs}
        names = list(configs)
        for k in range(a.repeats):
            for name in names[k % len(names) :] + names[: k % len(names)]:
                runs[name].append(configs[name](k))
        if not a.skip_padded and not a.precisions:
            runs["(d) HF loop, padded to 256"] = [run_hf(sents, corpus.tag_set, a.batch_size, a.seed, 256)]
    base = mean(r["wordpieces_per_s"] for r in runs["(c) HF loop, dynamic padding"])
    print(
        f"# {date.today()} {platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{a.threads} threads, {corpus.name} {a.sentences} train sentences, batch {a.batch_size}, minilm, "
        f"{a.repeats} repeats"
    )
    print("| configuration | sentences/s | wordpieces/s (range) | vs (c) | seconds per epoch |")
    print("|---|---:|---:|---:|---:|")
    for name, rs in runs.items():
        wps = [r["wordpieces_per_s"] for r in rs]
        sps = mean(r["sentences_per_s"] for r in rs)
        print(
            f"| {name} | {sps:.1f} | {mean(wps):.0f} ({min(wps):.0f}-{max(wps):.0f}) | "
            f"{mean(wps) / base:.2f}x | {mean(r['seconds'] for r in rs):.1f} |"
        )
    for name, rs in runs.items():
        if any(r.get("compile_seconds") for r in rs):
            took = ", ".join(f"{r['compile_seconds']:.1f}" for r in rs)
            print(f"{name}: compiling took {took} s before each epoch")
    results = runs
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
