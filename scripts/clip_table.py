"""Print the markdown tables of docs/pipeline-image-encoder.md: the CLIP image encoder as i2v (one image) and
flf2v (two) run it, at 480p and 720p inputs, per precision policy, traced and costed on meta by
`wantrace.work.image_encoder.trace_image_encoder`; then where one i2v-480p call's cost goes, by part.

    python scripts/clip_table.py [--config models/wan2.1-clip-vit-h-14/image_encoder/config.json]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

from wan_reference.clip import build_clip
from wan_reference.clip_config import load_clip_config
from wan_reference.precision import get_policy
from wantrace.work.image_encoder import trace_image_encoder

CASES = (("i2v-480p", 1, 480, 832), ("i2v-720p", 1, 720, 1280), ("flf2v-720p", 2, 720, 1280))
PARTS = (("resize", r"resize"), ("normalise", r"normalize"),
         ("patch embedding, class and position", r"visual\.(patch_embedding|embed|dropout)"),
         ("LayerNorms", r".*norm\d?"), ("attention core", r".*\.attn\.attention"),
         ("to_qkv, proj", r".*\.attn\.(to_qkv|proj)"), ("MLP", r".*\.mlp(\.\d)?"),
         ("residual adds", r"visual\.transformer\.\d+"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="models/wan2.1-clip-vit-h-14/image_encoder/config.json")
    args = parser.parse_args()
    config = load_clip_config(args.config)
    print("| workload | policy | images x size | FLOPs (torch) | FLOPs (full) | bytes moved | peak activations "
          "| weights |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for policy in ("wan-official", "bf16"):
        weights = sum(p.numel() * p.element_size() for p in build_clip(config, policy).parameters())
        for name, n, h, w in CASES:
            trace = trace_image_encoder(config, policy, n, h, w, strict=True)
            torch_flops = sum(r.cost.flops_torch for r in trace.records)
            full = sum(r.cost.flops_full for r in trace.records)
            moved = sum(r.cost.bytes_read + r.cost.bytes_written for r in trace.records)
            print(f"| {name} | `{policy}` | {n} x {w}x{h} | {torch_flops / 1e9:,.2f} G | {full / 1e9:,.2f} G "
                  f"| {moved / 1e9:,.3f} GB | {trace.peak_activation_bytes / 1e6:,.2f} MB | {weights / 1e9:,.3f} GB |")
    trace = trace_image_encoder(config, get_policy("wan-official"), 1, 480, 832, strict=True)
    flops: Counter[str] = Counter()
    moved: Counter[str] = Counter()
    for r in trace.records:
        part = "dtype casts" if r.family == "cast" else next(
            (label for label, pattern in PARTS if re.fullmatch(pattern, r.module)), "other")
        flops[part] += r.cost.flops_torch
        moved[part] += r.cost.bytes_read + r.cost.bytes_written
    total_f, total_b = sum(flops.values()), sum(moved.values())
    print("\n| part (i2v-480p, `wan-official`) | FLOPs (torch) | share | bytes moved | share |")
    print("|---|---:|---:|---:|---:|")
    for part in [label for label, _ in PARTS] + ["dtype casts", "other"]:
        if flops[part] or moved[part]:
            print(f"| {part} | {flops[part] / 1e9:,.2f} G | {flops[part] / total_f:.1%} | {moved[part] / 1e6:,.1f} MB "
                  f"| {moved[part] / total_b:.1%} |")


if __name__ == "__main__":
    main()
