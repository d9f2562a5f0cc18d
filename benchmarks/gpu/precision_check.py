"""bf16 autocast against fp32 on a trained model: entity F1 and label agreement on a real dev set.

python benchmarks/gpu/precision_check.py RUN_DIR [--device cuda] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from taskrel.corpus import load_corpus
from taskrel.evaluate import entity_scores
from taskrel.predict import Tagger


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run", help="a finished run folder (with model/ and config.json)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--json")
    a = p.parse_args(argv)
    cfg = json.loads((Path(a.run) / "config.json").read_text())
    corpus = load_corpus(cfg["data"]["data"], ("train", "devel"))
    dev = corpus.splits["devel"]
    gold = [list(s.tags) for s in dev]
    out = {"run": a.run, "device": a.device, "sentences": len(dev)}
    preds = {}
    for precision in ("fp32", "bf16"):
        tagger = Tagger(Path(a.run) / "model", a.device, 64, precision)
        tagger.tag(dev[:64])  # warm-up
        t0 = time.perf_counter()
        preds[precision] = tagger.tag(dev)["ner"]
        out[precision] = {"f1": entity_scores(gold, preds[precision])["f1"], "seconds": time.perf_counter() - t0}
    words = sum(len(s) for s in preds["fp32"])
    same = sum(x == y for s, t in zip(preds["fp32"], preds["bf16"]) for x, y in zip(s, t))
    out["label_agreement"] = same / words
    out["f1_difference"] = out["bf16"]["f1"] - out["fp32"]["f1"]
    print(json.dumps(out, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
