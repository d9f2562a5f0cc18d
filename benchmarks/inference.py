"""Inference throughput: ``taskrel predict`` against the Hugging Face token-classification pipeline.

The same trained NER model both ways: taskrel's ``Tagger`` on the model folder,
and ``pipeline("token-classification", aggregation_strategy="first")`` on its
Hugging Face export (``taskrel export --hf``), on the same raw sentences (the
words of NCBI-disease sentences joined by spaces), one process, same threads:

  (a) taskrel, fp32                    (b) taskrel, bf16 autocast (``--precision auto`` here)
  (c) pipeline as a user runs it: fp32, one sentence at a time (its default)
  (d) pipeline, fp32, batch_size=64    (e) pipeline under the same bf16 autocast, batch_size=64
  (f) taskrel, bf16, encoder under torch.compile(dynamic=True) (``--compile``; its first call,
      which compiles, is timed apart)

Sentences per second over tagging only (the model is loaded before the clock
starts). A discarded warm-up pass comes first; then each configuration runs
``--repeats`` times in rotating order; the table gives the mean and range.

    TASKREL_DATA=../shared/data python benchmarks/inference.py --sentences 2000 --threads 2
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
from taskrel.corpus import load_corpus
from taskrel.export import export_hf
from taskrel.predict import Tagger
from taskrel.train import train


def trained_model(corpus: str, out: Path, threads: int) -> Path:
    """A MiniLM NER model trained for one epoch on 10% of the corpus (speed, not accuracy, is measured)."""
    cfg = RunConfig(
        DataConfig(corpus, train_fraction=0.1),
        ModelConfig("minilm", ["ner"]),
        TrainConfig(epochs=1, batch_size=16, lr=1e-4, threads=threads),
        str(out),
    )
    train(cfg, progress=False, log=lambda *_: None)
    return out / "model"


def raw_sentences(corpus: str, n: int) -> list[str]:
    data = load_corpus(corpus, ("train", "devel", "test"))
    words = [s.tokens for split in ("train", "devel", "test") for s in data.splits[split]]
    return [" ".join(w) for w in words[:n]]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="NCBI-disease")
    p.add_argument("--model", help="a trained taskrel model folder (default: train a 1-epoch NER model)")
    p.add_argument("--sentences", type=int, default=2000)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--no-compile", action="store_true", help="leave out (f)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import pipeline

    lines = raw_sentences(args.data, args.sentences)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else trained_model(args.data, tmp / "run", args.threads)
        hf_dir = export_hf(model, tmp / "hf")
        fp32, bf16 = Tagger(model, "cpu", precision="fp32"), Tagger(model, "cpu", precision="bf16")
        pipe = pipeline("token-classification", model=str(hf_dir), aggregation_strategy="first", device="cpu")
        autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
        configs = {
            "(a) taskrel, fp32": lambda: fp32.tag_text(lines),
            "(b) taskrel, bf16": lambda: bf16.tag_text(lines),
            "(c) pipeline, fp32, default (one at a time)": lambda: pipe(lines),
            "(d) pipeline, fp32, batch 64": lambda: pipe(lines, batch_size=64),
            "(e) pipeline, bf16 autocast, batch 64": lambda: _under(autocast(), lambda: pipe(lines, batch_size=64)),
        }
        compile_seconds = None
        if not args.no_compile:
            compiled = Tagger(model, "cpu", precision="bf16")
            compiled.model.encoder = torch.compile(compiled.model.encoder, dynamic=True)
            compile_seconds = timed(lambda: compiled.tag_text(lines))  # first call: compiles (and tags)
            configs["(f) taskrel, bf16, torch.compile"] = lambda: compiled.tag_text(lines)
        warm = lines[:200]  # warm-up of every path (allocator, thread pools, autocast caches), discarded
        fp32.tag_text(warm), bf16.tag_text(warm), pipe(warm[:50]), pipe(warm, batch_size=64)
        _under(autocast(), lambda: pipe(warm, batch_size=64))
        times = {name: [] for name in configs}
        names = list(configs)
        for r in range(args.repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                times[name].append(timed(configs[name]))
        agree = _agreement(fp32.tag_text(lines[:300]), bf16.tag_text(lines[:300]))
    base = mean(len(lines) / t for t in times["(c) pipeline, fp32, default (one at a time)"])
    rows = []
    for name, ts in times.items():
        speeds = [len(lines) / t for t in ts]
        rows.append({"configuration": name, "sentences_per_s": mean(speeds), "min": min(speeds), "max": max(speeds)})
    result = {
        "date": str(date.today()),
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "sentences": len(lines),
        "torch": torch.__version__,
        "rows": rows,
        "vs_pipeline_default": {r["configuration"]: r["sentences_per_s"] / base for r in rows},
        "compile_first_call_seconds": compile_seconds,
        "bf16_vs_fp32_same_tags": agree,
    }
    print("| configuration | sentences/s (range) | vs (c) |\n|---|---:|---:|")
    for r in rows:
        ratio = r["sentences_per_s"] / base
        print(f"| {r['configuration']} | {r['sentences_per_s']:.1f} ({r['min']:.1f}-{r['max']:.1f}) | {ratio:.2f}x |")
    if compile_seconds is not None:
        print(f"torch.compile: first call {compile_seconds:.1f} s (compiling and tagging)")
    print(f"bf16 against fp32: {100 * agree:.2f}% of word tags identical on 300 sentences")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


def _under(context, fn):
    with context:
        return fn()


def _agreement(a: list[dict], b: list[dict]) -> float:
    """Share of words tagged the same by two taggers (``Tagger.tag_text`` outputs)."""
    same = total = 0
    for x, y in zip(a, b):
        for s, t in zip(x["ner"], y["ner"]):
            same += s == t
            total += 1
    return same / max(total, 1)


if __name__ == "__main__":
    main()
