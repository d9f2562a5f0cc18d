#!/bin/bash
# Wall time of `taskrel status`, this checkout against another commit's code, alternating, on the same load.
#   bash benchmarks/status_startup.sh BASELINE_COMMIT [REPEATS]
# The baseline is checked out into a temporary worktree; both read this checkout's runs/ and experiments/.
set -euo pipefail
base=${1:?usage: status_startup.sh BASELINE_COMMIT [REPEATS]}
repeats=${2:-3}
root=$(git rev-parse --show-toplevel)
cd "$root"
old=$(mktemp -d)
git worktree add -q --detach "$old" "$base"
trap 'git worktree remove --force "$old"' EXIT
queue=$(make -s -n status | sed -n 's/^.*taskrel status //p')
time_status() {  # code folder, then status arguments: seconds
  local code=$1
  shift
  local s e
  s=$(date +%s.%N)
  .venv/bin/python -c "import sys; sys.path.insert(0, sys.argv[1]); from taskrel.cli import main; sys.exit(main(['status'] + sys.argv[2:]))" "$code" "$@" >/dev/null
  e=$(date +%s.%N)
  echo "$e - $s" | bc
}
echo "code one-study(s) queue(s) load"
for _ in $(seq "$repeats"); do
  for code in "$old" "$root"; do
    name=$([ "$code" = "$root" ] && echo this || echo "$base")
    echo "$name $(time_status "$code" experiments/lowres-10pct-sub2.yaml) $(time_status "$code" $queue) $(cut -d' ' -f1 /proc/loadavg)"
  done
done
