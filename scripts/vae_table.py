"""Print the markdown tables of docs/pipeline-vae.md: the Wan2.1 VAE's decode at t2v-480p and t2v-720p and
its encode at i2v-480p (and i2v-720p), traced and costed on meta by `wantrace.work.vae.trace_vae`.

    python scripts/vae_table.py [--config models/wan2.1-vae/vae/config.json]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from wan_reference.precision import get_policy
from wan_reference.vae_config import load_vae_config
from wantrace.work.metrics import ZERO, Metrics
from wantrace.work.vae import trace_vae

CASES = (("decode", "t2v-480p", 81, 480, 832), ("decode", "t2v-720p", 81, 720, 1280),
         ("encode", "i2v-480p", 81, 480, 832), ("encode", "i2v-720p", 81, 720, 1280))


def tera(n: int) -> str:
    return f"{n / 1e12:,.2f} T"


def gb(n: int) -> str:
    return f"{n / 1e9:,.2f} GB"


def stage_of(module: str) -> str:
    """encoder.downsamples.4.residual.2 -> encoder.downsamples.4; scopes and the root stay as they are."""
    parts = module.split(".")
    return ".".join(parts[:3]) if parts[0] in ("encoder", "decoder") and len(parts) > 2 else ".".join(parts[:2])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="models/wan2.1-vae/vae/config.json")
    args = parser.parse_args()
    config = load_vae_config(args.config)
    policy = get_policy("bf16")  # the VAE runs in fp32 under every policy (PrecisionPolicy.vae)
    traces = {}
    for direction, workload, frames, height, width in CASES:
        start = time.perf_counter()
        traces[workload, direction] = trace = trace_vae(config, policy, frames, height, width, direction,
                                                        strict=True)
        print(f"<!-- {direction} {workload}: {len(trace.records)} nodes, {time.perf_counter() - start:.1f} s -->")

    print("\n| call | workload | input -> output | FLOPs (torch) | FLOPs (full) | bytes moved | peak activations |")
    print("|---|---|---|---:|---:|---:|---:|")
    for (workload, direction), t in traces.items():
        shapes = f"{list(t.input_shape)} -> {list(t.output_shape)}"
        print(f"| {direction} | {workload} | {shapes} | {tera(t.total.flops_torch)} | {tera(t.total.flops_full)} | "
              f"{gb(t.total.bytes)} | {gb(t.peak_activation_bytes)} |")

    for (workload, direction), t in traces.items():
        print(f"\n**{direction} at {workload}, per phase of the chunk schedule**\n")
        print("| phase | frames in -> out | FLOPs (torch) | bytes moved | peak activations |")
        print("|---|---|---:|---:|---:|")
        n = len(t.chunks) - 2
        worst = max(t.chunks, key=lambda c: c.peak_activation_bytes).index
        for c in t.chunks:
            if 2 < c.index < n - 1 and c.index != worst:
                continue
            name = {-1: "prologue", n: "epilogue"}.get(c.index, f"chunk {c.index}")
            frames = f"{c.frames_in} -> {c.frames_out}" if c.frames_in else ""
            print(f"| {name}{' (peak)' if c.index == worst else ''} | {frames} | {tera(c.metrics.flops_torch)} | "
                  f"{gb(c.metrics.bytes)} | {gb(c.peak_activation_bytes)} |")

        by_family: dict[str, Metrics] = defaultdict(lambda: ZERO)
        by_stage: dict[str, Metrics] = defaultdict(lambda: ZERO)
        for r in t.records:
            m = Metrics(r.cost.flops_torch, r.cost.flops_full, r.cost.bytes_read, r.cost.bytes_written)
            by_family[r.family or r.kind] += m
            by_stage[stage_of(r.module)] += m
        families = sorted(by_family.items(), key=lambda kv: -kv[1].bytes)
        print(f"\n{direction} at {workload} by op family: " + ", ".join(
            f"{f} {tera(m.flops_torch)} / {gb(m.bytes)}" for f, m in families if m.bytes or m.flops_torch))
        top = sorted(by_stage.items(), key=lambda kv: -kv[1].flops_torch)[:6]
        print("\ntop stages: " + ", ".join(f"`{s}` {tera(m.flops_torch)}" for s, m in top))


if __name__ == "__main__":
    main()
