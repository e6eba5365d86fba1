#!/bin/bash
# usage: scripts/report_identity.sh DEST: runs 35 CLI commands (analyze of the 14B, tiny, A14B folders, VACE,
# TI2V, multi-GPU plans, with and without --gpu h200, --format json; model; formula; compare; sweep --no-plots;
# error cases) and keeps stdout, stderr, exit status and the files each wrote under DEST. Run it before and after
# a change that must not change behaviour, then `diff -r BEFORE AFTER`. Needs `wantrace` on PATH.
set -u
DEST=$(realpath -m "$1"); rm -rf "$DEST"; mkdir -p "$DEST"
cd "$(dirname "$0")/.."
export COLUMNS=120
W=${TMPDIR:-/tmp}/wantrace-identity  # a fixed path: the "wrote ..." lines name it
rm -rf "$W"; mkdir -p "$W"
run() {  # name, args...
  local name=$1; shift
  rm -rf $W/out
  wantrace "$@" >"$DEST/$name.stdout" 2>"$DEST/$name.stderr"; echo $? >"$DEST/$name.rc"
  if [ -d $W/out ]; then cp -r $W/out "$DEST/$name.out"; fi
}
C14=models/wan2.1-t2v-14b/config.json
TI=models/wan2.1-tiny-i2v/config.json
run a14b_720 analyze --config $C14 --workload t2v-720p --out $W/out
run a14b_720_gpu analyze --config $C14 --workload t2v-720p --gpu h200 --out $W/out
run a14b_720_json analyze --config $C14 --workload t2v-720p --format json
run a14b_720_json_gpu_out analyze --config $C14 --workload t2v-720p --gpu h200 --format json --out $W/out
run a14b_480_bymod analyze --config $C14 --workload t2v-480p --hotspots-by-module --depth 4 --expand-blocks --out $W/out
run tiny_i2v analyze --config $TI --workload ci-tiny --out $W/out
run tiny_i2v_gpu analyze --config $TI --workload ci-tiny --gpu h200 --out $W/out
run tiny_i2v_json analyze --config $TI --workload ci-tiny --format json
run tiny_i2v_fp32 analyze --config $TI --workload ci-tiny --precision fp32 --full-trace --out $W/out
run tiny_i2v_off analyze --config $TI --workload ci-tiny --precision wan-official --gpu h200 --out $W/out
run tiny_i2v_strict analyze --config $TI --workload ci-tiny --strict --format json
run a22_folder analyze --config models/wan2.2-t2v-a14b --workload t2v-a14b-720p --out $W/out
run a22_folder_gpu analyze --config models/wan2.2-t2v-a14b --workload t2v-a14b-720p --gpu h200 --out $W/out
run a22_folder_json analyze --config models/wan2.2-t2v-a14b --workload t2v-a14b-720p --format json
run a22_tiny analyze --config models/wan2.2-tiny-i2v-a14b --workload ci-tiny --gpu h200 --out $W/out
run vace_tiny analyze --config models/wan2.1-tiny-vace/config.json --workload ci-tiny --out $W/out
run ti2v_tiny analyze --config models/wan2.2-tiny-ti2v/config.json --workload ci-tiny --gpu h200 --out $W/out
run usp analyze --config $C14 --workload t2v-720p --ulysses 4 --cfg-parallel --gpu h200 --out $W/out
run usp2 analyze --config $C14 --workload t2v-480p --ring 2 --dit-fsdp --t5-cpu --out $W/out
run model14 model --config $C14
run model14_json model --config $C14 --format json
run model_a22 model --config models/wan2.2-t2v-a14b/high_noise_model/config.json
run model_vace model --config models/wan2.1-vace-14b/config.json
run formula_tiny formula --config models/wan2.1-tiny-t2v/config.json
run formula14_json formula --config $C14 --format json --role self_attn
mkdir -p $W/r; wantrace analyze --config $C14 --workload t2v-480p --gpu h200 --out $W/r/a >/dev/null; wantrace analyze --config $C14 --workload t2v-720p --gpu h200 --out $W/r/b >/dev/null
run cmp compare $W/r/a/report.json $W/r/b/report.json
run cmp_time compare $W/r/a/report.json $W/r/b/report.json --by time --top 0
run cmp_md compare $W/r/a/report.json $W/r/b/report.json --format md
run cmp_json compare $W/r/a/report.json $W/r/b/report.json --format json
run sweep_noplots sweep --config models/wan2.1-tiny-t2v/config.json --workload ci-tiny --frames 5,9 --size 64x64,128x64 --no-plots --gpu h200 --out $W/out
run err_config analyze --config /nonexistent.json
run err_geom analyze --config $TI --workload ci-tiny --frames 6
run err_out analyze --config $TI --workload ci-tiny --out /proc/x/y
run err_gpu analyze --config $TI --workload ci-tiny --gpu nosuch
run err_cmp compare /nonexistent1 /nonexistent2
rm -f "$DEST"/*.out/plots 2>/dev/null
echo done
