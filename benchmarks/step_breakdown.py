"""Where a training step's time goes: forward, backward, clipping and the AdamW step, in fp32 and bf16 autocast,
with AdamW's foreach (default) and fused implementations.

The four-task MiniLM model on the first batches of an NCBI-disease training epoch (batch 32, length-bucketed as
``taskrel train`` batches them); the first 4 steps of each configuration are warm-up and not counted.

    TASKREL_DATA=../shared/data python benchmarks/step_breakdown.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

from taskrel.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from taskrel.data import collate, encode, to_device
from taskrel.precision import autocast
from taskrel.train import epoch_schedule, param_groups, prepare


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="NCBI-disease")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--steps", type=int, default=24)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    tasks = ["ner", "mtcls", "bcls", "mcls"]
    cfg = RunConfig(
        DataConfig(a.data, train_fraction=0.2), ModelConfig("minilm", tasks, pooling="max"), TrainConfig(batch_size=32)
    )
    sources, model, tok = prepare(cfg)
    key, src = next(iter(sources.items()))
    enc = encode(src.train, tok, src.tasks, cfg.data.max_length)
    schedule = epoch_schedule(cfg, sources, {key: [e.length for e in enc]}, 0)
    cpu = torch.device("cpu")
    batches = [to_device(collate([enc[i] for i in idx], src.tasks, tok.pad_token_id), cpu) for _, _, idx in schedule]
    batches = batches[: a.steps]
    model.train()
    print(f"| precision | AdamW | forward | backward | clip | optimizer | step (ms, mean of {len(batches) - 4}) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for precision in ("fp32", "bf16"):
        for impl in ("foreach", "fused"):
            opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-5, fused=impl == "fused")
            parts = [0.0, 0.0, 0.0, 0.0]
            for i, batch in enumerate(batches):
                t0 = time.perf_counter()
                with autocast(cpu, precision):
                    out = model(batch)
                loss = sum(o["loss"] for o in out.values())
                t1 = time.perf_counter()
                loss.backward()
                t2 = time.perf_counter()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                t3 = time.perf_counter()
                opt.step()
                opt.zero_grad(set_to_none=True)
                t4 = time.perf_counter()
                if i >= 4:
                    for k, d in enumerate((t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                        parts[k] += d
            n = len(batches) - 4
            ms = [1000 * x / n for x in parts]
            print(f"| {precision} | {impl} | " + " | ".join(f"{m:.0f}" for m in ms) + f" | {sum(ms):.0f} |")


if __name__ == "__main__":
    main()
