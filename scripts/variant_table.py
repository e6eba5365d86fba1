"""The README's variant table: params, default workload, FLOPs per generation (torch convention) and, with
--gpu, the predicted time of one generation's DiT forwards. Run from the repository root:
    python scripts/variant_table.py --gpu h200"""

from __future__ import annotations

import argparse

from wantrace.timing.predictor import Predictor
from wantrace.work.analysis import analyze

VARIANTS = (  # (label, config path, default workload)
    ("Wan2.1 T2V-1.3B", "models/wan2.1-t2v-1.3b/config.json", "t2v-480p"),
    ("Wan2.1 T2V-14B", "models/wan2.1-t2v-14b/config.json", "t2v-720p"),
    ("Wan2.1 I2V-14B-720P", "models/wan2.1-i2v-14b-720p/config.json", "i2v-720p"),
    ("Wan2.1 FLF2V-14B", "models/wan2.1-flf2v-14b-720p/config.json", "flf2v-720p"),
    ("Wan2.1 VACE-1.3B", "models/wan2.1-vace-1.3b/config.json", "vace-480p"),
    ("Wan2.1 VACE-14B", "models/wan2.1-vace-14b/config.json", "vace-720p"),
    ("Wan2.2 T2V-A14B (2 experts)", "models/wan2.2-t2v-a14b", "t2v-a14b-720p"),
    ("Wan2.2 I2V-A14B (2 experts)", "models/wan2.2-i2v-a14b", "i2v-a14b-720p"),
    ("Wan2.2 TI2V-5B (DiT only)", "models/wan2.2-ti2v-5b/config.json", "ti2v-5b-720p"),
)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gpu", default=None)
    args = p.parse_args()
    timing = Predictor(args.gpu) if args.gpu else None
    head = "| variant | params | default workload | tokens | forwards | FLOPs per generation (torch) |"
    print(head + (f" predicted on {args.gpu} |" if timing else ""))
    print("|---|---:|---|---:|---:|---:|" + ("---:|" if timing else ""))
    for label, path, workload in VARIANTS:
        r = analyze(path, workload, timing=timing)
        w, g = r.workload, r.totals["generation"]
        params = f"{r.totals['params']:,}"
        if r.experts:
            params += f" ({r.experts['params_active_per_step']:,} active)"
        cell = f" {g.time_ns / 60e9:.1f} min |" if timing else ""
        print(f"| {label} | {params} | `{workload}` ({w['width']}x{w['height']}, {w['frames']} frames, {w['steps']} "
              f"steps, CFG) | {r.geometry['tokens']:,} | {r.totals['forwards_per_generation']} | "
              f"{g.flops_torch / 1e15:,.1f} PFLOP |{cell}", flush=True)


if __name__ == "__main__":
    main()
