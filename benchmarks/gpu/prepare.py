"""Prepare the folder the GPU machine needs (``.gpu/``, git-ignored; carried with ``run``).

The GPU machine has no network, and only the working tree travels (64 MiB at
most). It has torch, transformers, scikit-learn, pandas and seaborn, but not
seqeval or the MiniLM package. This writes:

- ``.gpu/minilm-bf16/``: all-MiniLM-L6-v2 with its weights rounded to bf16
  (45 MB instead of 90 MB) and its tokenizer; ``load_encoder`` upcasts the
  weights to fp32 master weights there. GPU numbers therefore come from a
  model whose *pretrained* weights were rounded to bf16 once: they are
  reported in their own rows, never pooled with CPU runs. The relative
  rounding error is recorded in ``MANIFEST.json``.
- ``.gpu/data/``: the corpora the GPU studies read (train, devel, test only).
- ``.gpu/wheels/``: seqeval as a wheel (pure Python).

    python benchmarks/gpu/prepare.py [--corpora BC2GM,BC5CDR-chem,NCBI-disease]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from taskrel.corpus import find_split, resolve_data
from taskrel.encoders import minilm_path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 64 * 2**20  # what travels to the device machine, working tree included


def tree_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpora", default="BC2GM,BC5CDR-chem,NCBI-disease")
    p.add_argument("--out", default=str(ROOT / ".gpu"))
    a = p.parse_args(argv)
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "data").mkdir(parents=True)

    src = minilm_path()
    fp32 = AutoModel.from_pretrained(src).float()
    bf16 = AutoModel.from_pretrained(src).to(torch.bfloat16)
    bf16.save_pretrained(out / "minilm-bf16")
    AutoTokenizer.from_pretrained(src).save_pretrained(out / "minilm-bf16")
    num = den = 0.0
    for (_, a32), (_, a16) in zip(fp32.state_dict().items(), bf16.state_dict().items()):
        num += float((a32 - a16.float()).pow(2).sum())
        den += float(a32.pow(2).sum())
    for corpus in a.corpora.split(","):
        root = resolve_data(corpus)
        (out / "data" / root.name).mkdir()
        for split in ("train", "devel", "test"):
            f = find_split(root, split)
            shutil.copy(f, out / "data" / root.name / f.name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "seqeval==1.2.2", "-w", str(out / "wheels")],
        check=True,
    )
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    tree = sum((ROOT / f).stat().st_size for f in tracked.decode().split("\0") if f and (ROOT / f).is_file())
    manifest = {
        "encoder": str(src),
        "weights": "all-MiniLM-L6-v2 rounded to bf16 once, upcast to fp32 master weights on load",
        "relative_rounding_error": (num / den) ** 0.5,
        "corpora": a.corpora.split(","),
        "bytes": tree_bytes(out),
        "working_tree_bytes": tree,
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    total = manifest["bytes"] + tree
    print(json.dumps(manifest, indent=2))
    print(f"{total / 2**20:.1f} MiB would travel (limit {LIMIT / 2**20:.0f} MiB)")
    return 0 if total < LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
