"""A synthetic calibrated profile (roofline-shaped curves), for CPU tests of the predictor's machinery."""

from __future__ import annotations

import json
from pathlib import Path

from wantrace.timing.profile import KERNEL_CLASSES, OVERHEAD_CLASSES

ROOT = Path(__file__).resolve().parent.parent


def fake_profile(tensor=600e12, bandwidth=4e12, floor_ns=3000.0) -> dict:
    doc = json.loads((ROOT / "hardware" / "h200.json").read_text())
    doc["name"] = "fake"

    def curve(sizes, rate):
        return [[s, max(floor_ns, s / rate * 1e9)] for s in sizes]

    flops = [2 ** k for k in range(20, 50, 3)]
    nbytes = [2 ** k for k in range(10, 34, 2)]
    doc["calibrated"] = {
        "device": {"type": "cuda", "name": "fake"}, "torch": "0", "date": "2026-01-01", "seconds": 1.0,
        "overhead_ns": {c: 5000.0 for c in OVERHEAD_CLASSES},
        "gemm": {"bfloat16": {"5120x5120": curve(flops, tensor), "13824x5120": curve(flops, tensor)}},
        "sdpa": {"bfloat16": {"d128/self/h40": curve(flops, tensor * 0.8)}},
        "memory": {"float32": {c: curve(nbytes, bandwidth) for c in KERNEL_CLASSES},
                   "bfloat16": {"elementwise": curve(nbytes, bandwidth * 0.9)}},
        "efficiency": {"tensor": 0.6, "attention": 0.5, "bandwidth": 0.8},
    }
    return doc


def write_fake(path: Path, **kw) -> Path:
    path.write_text(json.dumps(fake_profile(**kw)))
    return path
