"""This code against an earlier revision, side by side: fresh processes of each command, alternating with a bare
`python3 -c "import torch"` so that all see the same (noisy, shared) machine; best and median wall time of each,
and each against `import torch`.

Commands, on the 14B: `analyze --workload t2v-720p` as a first run (an empty disk cache, filled) and again (the
cache filled), `analyze --only dit`, and the 102-point sweep of scripts/bench_sweep.py (plots included). The
revision is checked out in a temporary git worktree; both trees get their bytecode compiled first (as
bench_analyze does: pip compiles an installed package, and torch's is). rules/ is imported as wantrace.rules through
the editable install's mapping, so both trees run this checkout's rule book: compare revisions whose rules/ agree.

    python scripts/bench_side_by_side.py --base e430388 [--rounds 6] [--json]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = "models/wan2.1-t2v-14b/config.json"
FRAMES = ",".join(str(f) for f in range(17, 82, 4))
SIZES = "832x480,480x832,1280x720,720x1280,960x960,1024x576"


def commands(out: str) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "wantrace.cli"]
    analyze = [*cli, "analyze", "--config", CONFIG, "--workload", "t2v-720p", "--out", f"{out}/a"]
    return {
        "first": analyze,
        "again": analyze,
        "dit": [*analyze, "--only", "dit"],
        "sweep": [*cli, "sweep", "--config", CONFIG, "--frames", FRAMES, "--size", SIZES, "--out", f"{out}/s"],
    }


def wall(cmd: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the git revision to compare with (e.g. a commit)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"torch": []}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.base], cwd=ROOT, check=True)
        try:
            trees = {"base": base, "this": ROOT}
            for tree in trees.values():
                for package in ("wantrace", "rules", "wan_reference"):
                    compileall.compile_dir(tree / package, quiet=1)
            for round_ in range(args.rounds):
                times["torch"].append(wall([sys.executable, "-c", "import torch"], ROOT, dict(os.environ)))
                for label, tree in trees.items():
                    cache = f"{tmp}/cache-{label}-{round_}"  # empty for "first", filled by it for "again"
                    env = {**os.environ, "WANTRACE_CACHE": cache, "PYTHONPATH": str(tree)}
                    for name, cmd in commands(f"{tmp}/out-{label}").items():
                        times.setdefault(f"{name} ({label})", []).append(wall(cmd, tree, env))
                print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=True)
    floor_best, floor_median = min(times["torch"]), statistics.median(times["torch"])
    result = {k: {"best_s": round(min(v), 3), "median_s": round(statistics.median(v), 3),
                  "best_ratio": round(min(v) / floor_best, 3),
                  "median_ratio": round(statistics.median(v) / floor_median, 3)} for k, v in times.items()}
    if args.json:
        print(json.dumps({"base": args.base, "rounds": args.rounds, **result}, indent=1))
        return
    print(f"against `import torch` (best {floor_best:.2f} s, median {floor_median:.2f} s), {args.rounds} rounds:")
    for k, v in result.items():
        if k != "torch":
            print(f"  {k:16s} best {v['best_s']:6.2f} s = {v['best_ratio']:.2f}x   median {v['median_s']:6.2f} s = "
                  f"{v['median_ratio']:.2f}x")


if __name__ == "__main__":
    main()
