"""Time `wantrace.analyze` of the 14B at t2v-720p against FlopCounterMode over the same meta forward, in one
process, and print the ratio (wantrace / FlopCounterMode; must be <= 1.0); analyze with predicted time
on the H200 profile against analyze without it, alternating (the cost of --gpu; goal <= 1.10); and the CLI
(`wantrace analyze` of the whole generation with its component traces in the disk cache and with the cache off,
`analyze --only dit`, `model`, `compare`, fresh processes) against `python3 -c "import torch"`, alternating,
best of `--repeat` each: wall time and peak RSS (goals: analyze <= 1.5x wall and <= 1.3x RSS; model and
compare <= 1.2x), and CPU time (user + system), which other jobs on a shared machine disturb less than wall.

Both are warmed up once first (the first meta ops of a process import torch's python meta kernels, which
would otherwise be charged to whichever runs first); then each is timed `--repeat` times and the best kept.

    python scripts/bench_analyze.py [--config models/wan2.1-t2v-14b/config.json] [--workload t2v-720p]
"""

from __future__ import annotations

import argparse
import compileall
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from wan_reference import build_model, load_config, make_inputs
from wantrace.timing.predictor import Predictor
from wantrace.work.analysis import analyze
from wantrace.work.workload import resolve

ROOT = Path(__file__).resolve().parent.parent


def flop_counter_total(config, workload: str) -> int:
    _, geo = resolve(workload, config)
    model = build_model(config, "bf16")
    with FlopCounterMode(display=False) as counter:
        model(**make_inputs(config, geo.latent, "bf16"))
    return counter.get_total_flops()


def best_of(fn, repeat: int) -> tuple[float, object]:
    """The fastest of `repeat` calls, each after a full collection: a collection that falls inside one call
    (the FlopCounterMode runs leave many objects behind) otherwise charges it 0.3-0.5 s that are not its own."""
    best, value = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def _run(cmd: list[str], env: dict | None = None) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (KiB) of one fresh process: on a shared machine the
    CPU time is the steadier of the two times. The RSS is read by /usr/bin/time's own wait4 (the children's
    maximum in getrusage is over every child so far); its few hundred microseconds fall on every command alike."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], check=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, int(out.stderr.strip().splitlines()[-1])


COMMANDS = ("analyze", "analyze_cold", "analyze_dit", "model", "compare")


def compile_bytecode() -> None:
    """Bytecode for the project's modules, as pip writes it for an installed package (torch's included) and
    Python on a module's first import: under PYTHONDONTWRITEBYTECODE (set on the development machine) an editable
    install would compile every module from source in every run, 0.1-0.2 s that a user's machine spends once."""
    for package in ("wantrace", "rules", "wan_reference"):
        compileall.compile_dir(ROOT / package, quiet=1)


def cli_against_torch(config: str, workload: str, repeat: int) -> dict:
    compile_bytecode()
    wantrace = [sys.executable, "-m", "wantrace.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        a, b = f"{tmp}/a", f"{tmp}/b"
        for folder, workload_b in ((a, "ci-tiny"), (b, "t2v-480p")):  # what `analyze --only dit` writes, for compare
            Path(folder).mkdir()
            (Path(folder) / "report.json").write_text(analyze(config, workload_b).to_json())
        commands = {  # analyze: the whole generation (the default), its component traces from the disk cache (the
            # first repeat fills it); analyze_cold: a first run (an empty cache, filled); analyze_dit: --only dit
            "analyze": [*wantrace, "analyze", "--config", config, "--workload", workload, "--out", f"{tmp}/c"],
            "analyze_cold": [*wantrace, "analyze", "--config", config, "--workload", workload, "--out", f"{tmp}/e"],
            "analyze_dit": [*wantrace, "analyze", "--config", config, "--workload", workload, "--out", f"{tmp}/d",
                            "--only", "dit"],
            "model": [*wantrace, "model", "--config", config],
            "compare": [*wantrace, "compare", f"{a}/report.json", f"{b}/report.json"],
        }
        floor = [sys.executable, "-c", "import torch"]
        walls: dict[str, list[float]] = {k: [] for k in ("torch", *commands)}
        cpus: dict[str, list[float]] = {k: [] for k in ("torch", *commands)}
        rss: dict[str, int] = {}
        for round_ in range(repeat):  # alternating, so all see the same machine
            envs = {"analyze": {**os.environ, "WANTRACE_CACHE": f"{tmp}/cache"},
                    "analyze_cold": {**os.environ, "WANTRACE_CACHE": f"{tmp}/first{round_}"}}  # a first run
            for name, cmd in (("torch", floor), *commands.items()):
                wall, cpu, kib = _run(cmd, envs.get(name))
                walls[name].append(wall)
                cpus[name].append(cpu)
                rss[name] = min(rss.get(name, kib), kib)
    best = {k: min(v) for k, v in walls.items()}
    cpu = {k: min(v) for k, v in cpus.items()}
    return {
        "import_torch_s": round(best["torch"], 3),
        **{f"cli_{k}_s": round(best[k], 3) for k in commands},
        **{f"{k}_wall_ratio": round(best[k] / best["torch"], 3) for k in commands},
        "import_torch_cpu_s": round(cpu["torch"], 3),
        **{f"{k}_cpu_ratio": round(cpu[k] / cpu["torch"], 3) for k in commands},
        "import_torch_rss_mb": rss["torch"] // 1024,
        **{f"{k}_rss_ratio": round(rss[k] / rss["torch"], 3) for k in commands},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "models" / "wan2.1-t2v-14b" / "config.json"))
    parser.add_argument("--workload", default="t2v-720p")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON")
    parser.add_argument("--no-cli", action="store_true",
                        help="only the in-process measurements (CI: the fresh-process ratios take a minute and want "
                             "a quiet machine; docs/performance.md has them)")
    args = parser.parse_args()
    config = load_config(args.config)

    flop_counter_total(config, "ci-tiny")  # warm-up: python meta kernels, FX, rule imports
    analyze(config, "ci-tiny")
    analyze(config, "ci-tiny", timing=Predictor("h200"))
    gc.collect()
    gc.freeze()  # as the CLI does after its imports: a collection then walks only what the commands allocate
    t_wantrace, report = best_of(lambda: analyze(config, args.workload), args.repeat)
    t_counter, counted = best_of(lambda: flop_counter_total(config, args.workload), args.repeat)
    assert counted == report.forward.flops_torch, (counted, report.forward.flops_torch)
    plain, timed = [], []
    for _ in range(max(args.repeat, 8)):  # alternating, so both see the same machine; half a second each
        plain.append(best_of(lambda: analyze(config, args.workload), 1)[0])
        timed.append(best_of(lambda: analyze(config, args.workload, timing=Predictor("h200")), 1)[0])
    cli = {} if args.no_cli else cli_against_torch(args.config, args.workload, args.repeat)
    result = {
        "config": Path(args.config).parent.name,
        "workload": args.workload,
        "flops_torch": report.forward.flops_torch,
        "wantrace_s": round(t_wantrace, 3),
        "flop_counter_mode_s": round(t_counter, 3),
        "ratio": round(t_wantrace / t_counter, 3),
        "analyze_s": round(min(plain), 3),
        "analyze_gpu_h200_s": round(min(timed), 3),
        "gpu_ratio": round(min(timed) / min(plain), 3),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        **cli,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": len(__import__("os").sched_getaffinity(0)),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['config']} {args.workload}: {report.forward.flops_torch:,} torch FLOPs per forward")
        print(f"wantrace.analyze      {t_wantrace:.3f} s (best of {args.repeat})")
        print(f"FlopCounterMode (meta) {t_counter:.3f} s (best of {args.repeat})")
        print(f"ratio {result['ratio']:.3f} (must be <= 1.0); peak RSS {result['peak_rss_mb']} MB")
        print(f"analyze {min(plain):.3f} s, with --gpu h200 {min(timed):.3f} s: ratio {result['gpu_ratio']:.3f} "
              "(goal <= 1.10)")
        if cli:
            print(f"CLI against `import torch` ({cli['import_torch_s']:.3f} s, {cli['import_torch_rss_mb']} MB): "
                  + ", ".join(f"{k} {cli['cli_' + k + '_s']:.3f} s = {cli[k + '_wall_ratio']:.2f}x wall, "
                              f"{cli[k + '_rss_ratio']:.2f}x RSS" for k in COMMANDS)
                  + " (goals: analyze 1.5x wall, 1.3x RSS; model and compare 1.2x)")
            print(f"  CPU time (user + system) against `import torch` ({cli['import_torch_cpu_s']:.3f} s): "
                  + ", ".join(f"{k} {cli[k + '_cpu_ratio']:.2f}x" for k in COMMANDS))
    if result["ratio"] > 1.0:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
