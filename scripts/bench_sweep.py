"""Time a 100-point sweep of the 14B: the whole `wantrace sweep` command in a fresh process (imports, warm-up,
costing, CSV/JSON, plots), and, in this process, the costing alone against analyze-per-point. Exits 1 if the
command takes 60 s or more.

Points: frames 17, 21, ..., 81 (17 values) x 6 sizes = 102 workloads.

    python scripts/bench_sweep.py [--config models/wan2.1-t2v-14b/config.json] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from wantrace.work.analysis import analyze
from wantrace.work.sweep import run_sweep

ROOT = Path(__file__).resolve().parent.parent
FRAMES = list(range(17, 82, 4))
SIZES = [(832, 480), (480, 832), (1280, 720), (720, 1280), (960, 960), (1024, 576)]
BUDGET_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "models" / "wan2.1-t2v-14b" / "config.json"))
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON")
    args = parser.parse_args()
    points = len(FRAMES) * len(SIZES)

    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "wantrace.cli", "sweep", "--config", args.config,
                   "--frames", ",".join(map(str, FRAMES)), "--size", ",".join(f"{w}x{h}" for w, h in SIZES),
                   "--out", str(Path(tmp) / "sweep")]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        command_s = time.perf_counter() - start
        rows = json.loads((Path(tmp) / "sweep" / "sweep.json").read_text())["rows"]
        assert len(rows) == points, len(rows)

    analyze(args.config, "ci-tiny")  # warm-up: python meta kernels, FX, rule imports
    start = time.perf_counter()
    sweep = run_sweep(args.config, frames=FRAMES, sizes=SIZES)
    costing_s = time.perf_counter() - start
    sample = [sweep.rows[i] for i in (0, points // 2, points - 1)]
    start = time.perf_counter()
    for row in sample:  # spot check: the sweep's rows are analyze's numbers
        w = row.workload
        report = analyze(args.config, "t2v-480p", frames=w.frames, height=w.height, width=w.width)
        assert report.forward == row.forward and report.categories == row.categories, w.id
    analyze_per_point_s = (time.perf_counter() - start) / len(sample)

    result = {
        "config": Path(args.config).parent.name,
        "points": points,
        "command_s": round(command_s, 2),
        "costing_in_process_s": round(costing_s, 2),
        "costing_per_point_ms": round(1000 * costing_s / points, 1),
        "analyze_per_point_s": round(analyze_per_point_s, 3),
        "analyze_per_point_x_points_s": round(analyze_per_point_s * points, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['config']}: {points}-point sweep (frames {FRAMES[0]}..{FRAMES[-1]} step 4 x "
              f"{len(SIZES)} sizes)")
        print(f"wantrace sweep, whole command (fresh process, plots included)  {command_s:.2f} s "
              f"(must be < {BUDGET_S:.0f} s)")
        print(f"costing alone, in a warm process  {costing_s:.2f} s ({result['costing_per_point_ms']} ms per point)")
        print(f"analyze per point  {analyze_per_point_s:.3f} s, x{points} = {result['analyze_per_point_x_points_s']} s")
    if command_s >= BUDGET_S:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
