"""A Markdown table of finished runs: main-task test scores, selected epoch, training time.

python benchmarks/collect.py runs/bench-f1/*
"""

import json
import sys
from pathlib import Path


def row(run: Path) -> str:
    cfg = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    main = metrics["main_task"]
    test = metrics["test"][main]
    train_s = sum(e["train_seconds"] for e in epochs)
    sps = sum(e["sentences_per_s"] for e in epochs) / len(epochs)
    scores = (
        f"{test['precision']:.4f} | {test['recall']:.4f} | {test['f1']:.4f}"
        if "f1" in test
        else f"accuracy {test['accuracy']:.4f} | | "
    )
    return (
        f"| {','.join(cfg['model']['tasks'])} | {cfg['train']['seed']} | {scores} | "
        f"{metrics['best_epoch']} | {train_s:.0f} | {sps:.1f} |"
    )


if __name__ == "__main__":
    print("| tasks | seed | test P | test R | test F1 | selected epoch | train s | sent/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for arg in sys.argv[1:]:
        if (Path(arg) / "metrics.json").is_file():
            print(row(Path(arg)))
