#!/usr/bin/env bash
# Runs a batch of `wantrace verify` runs and packs the verify.json files into $OUT/verification.tar.gz.
# On the lent GPU machine (which has torch, rich and ncu but no network): build the wheels here first,
#   pip wheel --no-deps -w .whl . && pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux2014_x86_64 -d .whl click==8.1.8
# then run it there with `.whl` carried:  bash scripts/device_verify.sh RUNS_FILE
# RUNS_FILE has one run per line: <name> <verify arguments...> (blank lines and # comments skipped); REPO
# in the arguments becomes the repository root and PROFILE the value of $PROFILE (a hardware profile path).
# Locally, `DEVICE=cpu bash scripts/device_verify.sh scripts/runs-cpu.txt` exercises the same path.
# RUN_TIMEOUT=<seconds> stops any one run after that long (its line then reports exit 124); the archive is
# rewritten after every run, so a call cut short still brings back the runs that finished.
set -uo pipefail
runs_file=$(realpath "$1")
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$repo/verification-out}
mkdir -p "$out/verification"
if [ -d "$repo/.whl" ] && ls "$repo"/.whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$repo"/.whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
cd /tmp  # never import the checkout's un-installed packages
export PYTHONUNBUFFERED=1
status=0
while read -r name args; do
  case "$name" in ""|\#*) continue ;; esac
  echo "=== $name: wantrace verify $args"
  start=$(date +%s)
  # shellcheck disable=SC2086
  timeout "${RUN_TIMEOUT:-0}" python3 -m wantrace.cli verify --device "${DEVICE:-cuda}" $(args=${args//REPO/$repo}; echo "${args//PROFILE/${PROFILE:-}}") \
    --out "$out/verification/$name" 2>&1 | tail -n 40
  rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc in $(( $(date +%s) - start )) s"
  [ "$rc" -eq 0 ] || status=1
  tar -czf "$out/verification.tar.gz" -C "$out" verification
done < "$runs_file"
exit $status
