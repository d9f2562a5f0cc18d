#!/usr/bin/env bash
# NCBI-disease test F1: ner alone vs the four tasks (MiniLM, full train, 3 epochs,
# default lr 5e-5 and batch 32, model selected on dev). Usage:
#   bash benchmarks/ner_vs_multitask.sh OUT_DIR "1 2"
# then: python benchmarks/collect.py OUT_DIR/*
set -euo pipefail
out=${1:-runs/bench-f1}
seeds=${2:-"1 2"}
for seed in $seeds; do
  for tasks in ner ner,mtcls,bcls,mcls; do
    name=$(echo "$tasks" | tr , -)
    taskrel train --data NCBI-disease --tasks "$tasks" --epochs 3 --seed "$seed" \
      --out "$out/$name-s$seed" --no-progress --resume
  done
done
