#!/usr/bin/env bash
# Multi-GPU runs of issue 10 on a lent multi-GPU machine (nvidia-h200-x2 or -x4), packed into
# $OUT/multi-gpu.tar.gz:
#   1. `wantrace calibrate --collectives` on all the machine's GPUs, into a copy of hardware/h200.json
#      (its collectives section; commit it as hardware/h200.json when the run is good);
#   2. every run of RUNS_FILE whose first field is $KIND (x2 or x4), under torchrun with its process count.
# Usage (wheels carried as for scripts/device_verify.sh):  KIND=x2 bash scripts/device_multi_gpu.sh scripts/runs-multi-gpu.txt
# RUN_TIMEOUT=<seconds> stops any one run after that long; the archive is rewritten after every step.
set -uo pipefail
runs_file=$(realpath "$1")
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$repo/multi-gpu-out}
kind=${KIND:-x2}
mkdir -p "$out/multi-gpu"
if [ -d "$repo/.whl" ] && ls "$repo"/.whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$repo"/.whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
cd /tmp  # never import the checkout's un-installed packages
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
gpus=$(nvidia-smi -L | wc -l)
profile="$out/multi-gpu/h200-${kind}.json"
cp "$repo/hardware/h200.json" "$profile"
echo "=== calibrate --collectives on $gpus GPUs"
timeout "${RUN_TIMEOUT:-0}" python3 -m torch.distributed.run --nproc-per-node "$gpus" -m wantrace.cli calibrate \
  --collectives --device cuda --out "$profile" 2>&1 | tail -n 20
tar -czf "$out/multi-gpu.tar.gz" -C "$out" multi-gpu
status=0
while read -r k name procs args; do
  case "$k" in ""|\#*) continue ;; esac
  [ "$k" = "$kind" ] || continue
  echo "=== $name: torchrun --nproc-per-node $procs wantrace verify $args"
  start=$(date +%s)
  # shellcheck disable=SC2086
  timeout "${RUN_TIMEOUT:-0}" python3 -m torch.distributed.run --nproc-per-node "$procs" -m wantrace.cli verify \
    --device cuda $(args=${args//REPO/$repo}; echo "${args//PROFILE/$profile}") --out "$out/multi-gpu/$name" \
    2>&1 | tail -n 20
  rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc in $(( $(date +%s) - start )) s"
  [ "$rc" -eq 0 ] || status=1
  tar -czf "$out/multi-gpu.tar.gz" -C "$out" multi-gpu
done < "$runs_file"
exit $status
