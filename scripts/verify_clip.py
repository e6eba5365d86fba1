"""Verify the CLIP image encoder for real: FlopCounterMode per module on the device against the meta trace's
`torch` FLOPs (expected 0.0 % everywhere), the measured peak memory against the analytic peak plus weights, and the
wall time of the call. Random weights (the cost does not depend on their values), the official preprocessing.

    python scripts/verify_clip.py --device cuda --images 1 --height 480 --width 832 --out runs/verify-clip
    python scripts/verify_clip.py --device cpu --config models/wan2.1-tiny-clip/image_encoder/config.json \\
        --precision fp32 --out /tmp/clip

Writes verify-clip.json (atomically) and prints one line per module that differs; exit 1 if any does."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import click
import torch
from torch.utils.flop_counter import FlopCounterMode

from wan_reference import ConfigError, get_policy
from wan_reference.clip import build_clip
from wan_reference.clip_config import load_clip_config
from wantrace.measure.verify import attention_formulas
from wantrace.work.analysis import roll_up
from wantrace.work.image_encoder import trace_image_encoder
from wantrace.work.trace import ROOT

DEFAULT = Path(__file__).resolve().parent.parent / "models/wan2.1-clip-vit-h-14/image_encoder/config.json"


def measured_per_module(counter: FlopCounterMode, model: torch.nn.Module) -> dict[str, int]:
    """FlopCounterMode's inclusive count per module, under the trace's ids (CLIPImageEncoder.visual -> visual)."""
    root = type(model).__name__
    out = {}
    for name, ops in counter.get_flop_counts().items():
        if name == root or name.startswith(root + "."):
            out[ROOT if name == root else name[len(root) + 1:]] = sum(ops.values())
    return out


def verify_clip(config_path: Path, device: str, precision: str, images: int, height: int, width: int,
                repeats: int = 3) -> dict:
    config, policy, dev = load_clip_config(config_path), get_policy(precision), torch.device(device)
    trace = trace_image_encoder(config, policy, images, height, width, strict=True)
    # modules only: FlopCounterMode cannot see functional scopes (their FLOPs are in their module's)
    module_rows = [row for row in roll_up(trace.records, trace.model) if row.type != "scope"]
    predicted = {row.id: row.inclusive.flops_torch for row in module_rows}
    model = build_clip(config, policy, device=dev, seed=0)
    x = torch.rand(images, 3, height, width, device=dev, generator=torch.Generator(dev).manual_seed(1)) * 2 - 1
    with torch.no_grad():
        model(x.clone())  # warm-up (the forward rescales its own resize output in place, never x)
        with FlopCounterMode(display=False, custom_mapping=attention_formulas()) as counter:
            model(x.clone())
        measured = measured_per_module(counter, model)
        for row in reversed(module_rows):  # a container never called itself (`transformer`): its children's sum
            if row.id not in measured and row.children and all(c in measured for c in row.children):
                measured[row.id] = sum(measured[c] for c in row.children)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - start)
    rows = []
    for ident, flops in sorted(predicted.items()):
        got = measured.get(ident)
        if got is None and flops == 0:
            continue  # a scope, or a module with no counted op: FlopCounterMode has no row for it
        error = None if got is None else (0.0 if got == flops else abs(got - flops) / max(got, 1))
        rows.append({"id": ident, "predicted": flops, "measured": got, "error": error})
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return {
        "config": str(config_path), "precision": policy.name, "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__, "images": images, "height": height, "width": width,
        "flops_predicted": predicted[ROOT], "flops_measured": counter.get_total_flops(),
        "max_module_error": max((r["error"] for r in rows if r["error"] is not None), default=0.0),
        "modules_unmeasured": [r["id"] for r in rows if r["measured"] is None],
        "peak_activation_bytes_predicted": trace.peak_activation_bytes,
        "weight_bytes": weights,
        "peak_allocated_above_weights": (torch.cuda.max_memory_allocated(dev) - base) if dev.type == "cuda" else None,
        "wall_ms_min": min(times) * 1e3,
        "rows": rows,
    }


@click.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT, show_default=True)
@click.option("--device", default="cuda", show_default=True)
@click.option("--precision", default="wan-official", show_default=True)
@click.option("--images", default=1, show_default=True, help="1: i2v, 2: flf2v.")
@click.option("--height", default=480, show_default=True)
@click.option("--width", default=832, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
def main(config_path, device, precision, images, height, width, out_dir):
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("verify_clip: --device cuda, but this torch has no CUDA device")
    try:
        doc = verify_clip(config_path, device, precision, images, height, width)
    except (ConfigError, ValueError) as exc:
        sys.exit(f"verify_clip: {exc}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out_dir, delete=False, suffix=".tmp") as f:
        f.write(json.dumps(doc, indent=1) + "\n")
    os.replace(f.name, out_dir / "verify-clip.json")
    bad = [r for r in doc["rows"] if r["error"] is None or r["error"] > 0]
    for r in bad:
        click.echo(f"{r['id']}: predicted {r['predicted']:,} measured {r['measured']}")
    click.echo(f"FLOPs {doc['flops_predicted']:,} predicted, {doc['flops_measured']:,} measured; "
               f"max module error {doc['max_module_error']:.1%} over {len(doc['rows'])} modules; "
               f"{doc['wall_ms_min']:.1f} ms; wrote {out_dir / 'verify-clip.json'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
