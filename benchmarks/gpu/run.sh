#!/usr/bin/env bash
# Everything taskrel does on a lent GPU machine, in one go (issue: the GPU path).
#
# Prepare here first (python benchmarks/gpu/prepare.py: .gpu/ holds the
# bf16-rounded MiniLM, the corpora and the seqeval wheel), then run it there
# with `.gpu` carried:  bash benchmarks/gpu/run.sh
#
# Phases, each under its own time limit, results written as they come into
# $OUT (or ./gpu-out), so a phase that runs out of time loses only itself (at most 8 files come
# back from the device machine: run.log, throughput.{json,md}, tests.log, precision.json, science.tar.gz):
#   1. throughput.json/.md: taskrel against the plain HF loop, bf16 peak, shared GPU (GPU alone)
#   2. tests.log: the model, weighting, Fisher, convergence and training tests on CUDA,
#      and a train -> evaluate -> predict run through the CLI on CUDA
#   3. science.tar.gz: experiments/lowres-10pct.yaml and experiments/ncbi-full.yaml,
#      run folders without model weights (reports are made from them afterwards);
#      started together with phase 2, stopped at its limit whatever is unfinished
# Phase limits (seconds): GPU_T_BENCH, GPU_T_TESTS, GPU_T_SCIENCE; GPU_PHASES picks phases.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
PHASES=${GPU_PHASES:-bench,tests,science}
T_BENCH=${GPU_T_BENCH:-120}
T_TESTS=${GPU_T_TESTS:-110}
T_SCIENCE=${GPU_T_SCIENCE:-380}
DEVICE=${GPU_DEVICE:-cuda}
export PYTHONUNBUFFERED=1 TASKREL_DATA="$PWD/.gpu/data" TASKREL_MINILM="$PWD/.gpu/minilm-bf16"
export PYTHONPATH="$PWD:/tmp/taskrel-site${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/run.log"; }

TASKREL_GIT_COMMIT=$(git rev-parse HEAD 2> /dev/null || cat .gpu/COMMIT 2> /dev/null || echo unknown)
export TASKREL_GIT_COMMIT
log "start; phases $PHASES; commit $TASKREL_GIT_COMMIT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true; nproc; $PY -c \
  "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"; } \
  2>&1 | tee -a "$OUT/run.log"
$PY -c "import seqeval" 2> /dev/null \
  || $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/taskrel-site .gpu/wheels/*.whl 2>&1 | tail -2

if [[ $PHASES == *bench* ]]; then
  log "phase 1: throughput (limit ${T_BENCH}s)"
  timeout -k 5 "$T_BENCH" $PY benchmarks/gpu/throughput.py --json "$OUT/throughput.json" 2>&1 \
    | grep -v "Loading weights\|Writing model" | tee "$OUT/throughput.md" | tail -20
  log "phase 1 ended: $?"
fi

start_science() {
  log "phase 3: science in the background (limit ${T_SCIENCE}s)"
  mkdir -p runs
  cp .gpu/MANIFEST.json runs/gpu-manifest.json 2> /dev/null
  timeout -k 10 "$T_SCIENCE" $PY -m taskrel run experiments/lowres-10pct.yaml --out runs/gpu-lowres-10pct \
    --workers "${GPU_WORKERS_LOWRES:-10}" --no-progress > runs/gpu-science-lowres.log 2>&1 &
  lowres=$!
  timeout -k 10 "$T_SCIENCE" $PY -m taskrel run experiments/ncbi-full.yaml --out runs/gpu-ncbi-full \
    --workers "${GPU_WORKERS_FULL:-6}" --no-progress > runs/gpu-science-full.log 2>&1 &
  full=$!
}

finish_science() {
  while kill -0 $lowres 2> /dev/null || kill -0 $full 2> /dev/null; do
    log "science: $(ls runs/gpu-*/*/*/*/metrics.json 2> /dev/null | wc -l) runs finished; GPU $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2> /dev/null)"
    sleep 20
  done
  pkill -f "taskrel run experiments" 2> /dev/null
  pkill -f "multiprocessing.spawn" 2> /dev/null
  sleep 2
  tail -n 3 runs/gpu-science-*.log
  run=$(dirname "$(ls runs/gpu-lowres-10pct/single/NCBI-disease/*/metrics.json 2> /dev/null | head -1)")
  [ -d "$run/model" ] && timeout -k 5 60 $PY benchmarks/gpu/precision_check.py "$run" --device "$DEVICE" \
    --json "$OUT/precision.json" 2>&1 | tail -n 20
  tar --exclude='model' --exclude='model.tmp' --exclude='checkpoint' --exclude='checkpoint.tmp' \
    -czf "$OUT/science.tar.gz" runs/gpu-lowres-10pct runs/gpu-ncbi-full runs/gpu-science-*.log runs/gpu-manifest.json \
    2> /dev/null
  log "phase 3 ended: $(ls runs/gpu-*/*/*/*/metrics.json 2> /dev/null | wc -l) runs finished; $(du -h "$OUT/science.tar.gz" | cut -f1)"
}

# the science runs share the GPU with the (small) correctness tests, never with the throughput phase
[[ $PHASES == *science* ]] && start_science

if [[ $PHASES == *tests* ]]; then
  log "phase 2: tests on $DEVICE (limit ${T_TESTS}s)"
  (
    export TASKREL_TEST_DEVICE=$DEVICE
    timeout -k 5 "$T_TESTS" $PY -m pytest -q -p no:cacheprovider \
      tests/test_model.py tests/test_weighting.py tests/test_fisher.py tests/test_convergence.py tests/test_train.py 2>&1 \
      | tail -40
    echo "pytest exit: ${PIPESTATUS[0]}"
    d=$(mktemp -d)
    timeout -k 5 60 $PY -m taskrel train --data NCBI-disease --tasks ner,mtcls,bcls,mcls --train-fraction 0.02 \
      --epochs 2 --device "$DEVICE" --no-progress --out "$d/run" 2>&1 | tail -3 \
      && $PY -m taskrel evaluate --model "$d/run/model" --data NCBI-disease --split test --device "$DEVICE" \
        --no-progress 2>&1 | tail -4 \
      && head -c 20000 "$TASKREL_DATA/NCBI-disease/test.tsv" | cut -f1 | tr '\n' ' ' | sed 's/  /\n/g' > "$d/raw.txt" \
      && $PY -m taskrel predict --model "$d/run/model" --input "$d/raw.txt" --output "$d/pred.jsonl" \
        --device "$DEVICE" --no-progress 2>&1 | tail -1 && head -c 300 "$d/pred.jsonl" && echo \
      && grep -o '"precision": "[a-z0-9]*"\|"gpu": "[^"]*"' "$d/run/config.json" \
      && echo "cli round trip: ok"
  ) > "$OUT/tests.log" 2>&1
  tail -n 12 "$OUT/tests.log"
  log "phase 2 ended"
fi

[[ $PHASES == *science* ]] && finish_science
log "done"
