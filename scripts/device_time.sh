#!/usr/bin/env bash
# On the lent GPU: calibrate this GPU's profile (unless $PROFILE names one already), then run the verify runs of
# RUNS_FILE against it (see device_verify.sh; PROFILE in a run's arguments becomes the profile's path), and
# print the predicted-vs-measured table. Files land in $OUT: NAME.json (the profile), calibrate.log,
# verification.tar.gz.   Usage: NAME=h200 bash scripts/device_time.sh RUNS_FILE
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$repo/verification-out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  "$repo"/.whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader
if [ -z "${PROFILE:-}" ]; then
  export PROFILE=$out/${NAME:?NAME or PROFILE}.json
  start=$(date +%s)
  (cd /tmp && timeout "${CAL_TIMEOUT:-400}" python3 -m wantrace.cli calibrate --device cuda --models "$repo/models" --out "$PROFILE") \
    > "$out/calibrate.log" 2>&1
  echo "=== calibrate: exit $? in $(( $(date +%s) - start )) s"; tail -n 3 "$out/calibrate.log"
fi
[ -n "${1:-}" ] && bash "$repo/scripts/device_verify.sh" "$1" | grep -E "^===|FAIL|PASS|forward \(wall\)|Error|error"
ls "$out"/verification/*/verify.json >/dev/null 2>&1 && python3 "$repo/scripts/time_table.py" "$out"/verification/*/verify.json
