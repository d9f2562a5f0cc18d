"""GPU throughput, side by side in one process: taskrel against the plain HF loop, and the GPU's own ceiling.

Run by ``benchmarks/gpu/run.sh`` on the GPU machine (``TASKREL_MINILM`` points
at the bf16-rounded MiniLM copy; weights are upcast to fp32 masters):

1. the GPU's measured bf16 matrix throughput (8192^3 products, median of 10);
2. one epoch over the same ``--sentences`` NCBI-disease train sentences for
   (a) ``taskrel train`` 4 tasks, bf16; (b) the plain HF token-classification
   loop, bf16 autocast; (c) taskrel in fp32; at each ``--batch-sizes``.
   Sentences/s, real (non-padding) wordpieces/s, peak GPU memory. A discarded
   warm-up comes first; each configuration runs ``--repeats`` times, rotated;
3. ``--share`` processes training at once on the one GPU (a study runs many
   small runs): the summed wordpieces/s against one process alone;
4. the model FLOPs of a training step (6 x non-embedding parameters per
   wordpiece, plus attention) at the measured rate, against the measured peak.

    python benchmarks/gpu/throughput.py --data NCBI-disease --json OUT/throughput.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train_throughput import run_hf, run_taskrel, write_subset  # noqa: E402

from taskrel.corpus import load_corpus  # noqa: E402


def matmul_tflops(device: str, n: int = 8192, reps: int = 10) -> float:
    """Measured bf16 matrix throughput (random operands; CUDA events on the GPU)."""
    if device != "cuda":  # a CPU smoke test of this script: a small product, wall-clock timed
        n, reps = 1024, 3
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
    return 2 * n**3 / median(times) / 1e12


def train_flops_per_wordpiece(mean_len: float, layers: int = 6, hidden: int = 384, ffn: int = 1536) -> float:
    """Forward + backward (3x forward) FLOPs per wordpiece of a BERT encoder, heads left out."""
    dense = 2 * layers * (4 * hidden * hidden + 2 * hidden * ffn)  # QKV, output, FFN: 2 FLOPs per MAC
    attention = 2 * layers * 2 * mean_len * hidden  # scores and weighted sum
    return 3 * (dense + attention)


def timed(fn, device: str) -> dict:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = fn()
    result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return result


def worker(a) -> None:
    """One of ``--share`` processes: one taskrel epoch, result as JSON on stdout."""
    with tempfile.TemporaryDirectory() as tmp:
        r = run_taskrel(
            Path(a.folder), ["ner", "mtcls", "bcls", "mcls"], a.batch, 1, a.seed, Path(tmp) / "r", a.device, "bf16"
        )
    print(json.dumps(r))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="NCBI-disease")
    p.add_argument("--sentences", type=int, default=2000)
    p.add_argument("--batch-sizes", default="32,128")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--share", default="4,8", help="numbers of processes sharing the GPU")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json")
    p.add_argument("--device", default="cuda", help="cuda; cpu only to smoke-test this script")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=32, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return worker(a)
    torch.set_num_threads(2)
    dev = a.device
    gpu = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu (smoke test)"
    results = {"gpu": gpu, "torch": torch.__version__, "args": vars(a)}
    results["matmul_bf16_tflops"] = matmul_tflops(dev)
    print(f"bf16 matmul: {results['matmul_bf16_tflops']:.0f} TFLOP/s", flush=True)
    corpus = load_corpus(a.data)
    rows = results["rows"] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "subset"
        sents = write_subset(corpus, a.sentences, a.seed, folder)
        run_hf(sents[:256], corpus.tag_set, 32, a.seed, None, dev, "bf16")  # warm-up, discarded
        for bs in [int(x) for x in a.batch_sizes.split(",")]:
            configs = {
                "(a) taskrel, 4 tasks, bf16": lambda k, bs=bs: run_taskrel(
                    folder, ["ner", "mtcls", "bcls", "mcls"], bs, 2, a.seed, Path(tmp) / f"a{bs}-{k}", dev, "bf16"
                ),
                "(b) HF loop, bf16 autocast": lambda k, bs=bs: run_hf(
                    sents, corpus.tag_set, bs, a.seed, None, dev, "bf16"
                ),
                "(c) taskrel, 4 tasks, fp32": lambda k, bs=bs: run_taskrel(
                    folder, ["ner", "mtcls", "bcls", "mcls"], bs, 2, a.seed, Path(tmp) / f"c{bs}-{k}", dev, "fp32"
                ),
            }
            names = list(configs)
            for k in range(a.repeats):
                for name in names[k % 3 :] + names[: k % 3]:
                    r = timed(lambda fn=configs[name], k=k: fn(k), dev)
                    rows.append({"config": name, "batch": bs, "repeat": k, **r})
                    print(f"batch {bs} {name}: {r['wordpieces_per_s']:.0f} wp/s, {r['peak_gib']:.2f} GiB", flush=True)
        mean_len = median(r["wordpieces_per_s"] / r["sentences_per_s"] for r in rows)  # wordpieces a sentence
        share = results["share"] = []
        for n in [int(x) for x in a.share.split(",") if x]:
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                "--folder",
                str(folder),
                "--batch",
                "32",
                "--seed",
                str(a.seed),
                "--device",
                dev,
            ]
            t0 = time.perf_counter()
            procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
            outs = [json.loads(pr.communicate()[0].strip().splitlines()[-1]) for pr in procs]
            share.append(
                {
                    "processes": n,
                    "wordpieces_per_s_each": [o["wordpieces_per_s"] for o in outs],
                    "wordpieces_per_s_total": sum(o["wordpieces_per_s"] for o in outs),
                    "wall_seconds": time.perf_counter() - t0,
                }
            )
            print(f"{n} processes sharing the GPU: {share[-1]['wordpieces_per_s_total']:.0f} wp/s in all", flush=True)
    flops = train_flops_per_wordpiece(mean_len)
    results["train_flops_per_wordpiece"] = flops
    print(
        f"\n# {results['gpu']}, torch {results['torch']}, {a.sentences} {corpus.name} sentences, MiniLM (bf16-rounded)"
    )
    print("| configuration | batch | sentences/s | wordpieces/s | vs HF loop bf16 | peak GiB | % of bf16 peak |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for bs in sorted({r["batch"] for r in rows}):
        base = median(r["wordpieces_per_s"] for r in rows if r["batch"] == bs and r["config"].startswith("(b)"))
        for name in sorted({r["config"] for r in rows}):
            rs = [r for r in rows if r["batch"] == bs and r["config"] == name]
            wps = median(r["wordpieces_per_s"] for r in rs)
            util = 100 * wps * flops / (results["matmul_bf16_tflops"] * 1e12)
            print(
                f"| {name} | {bs} | {median(r['sentences_per_s'] for r in rs):.0f} | {wps:.0f} | {wps / base:.2f}x | "
                f"{max(r['peak_gib'] for r in rs):.2f} | {util:.2f} |"
            )
    for s in share:
        print(
            f"| (a) x{s['processes']} processes sharing the GPU | 32 | | "
            f"{s['wordpieces_per_s_total']:.0f} (sum) | | | |"
        )
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
