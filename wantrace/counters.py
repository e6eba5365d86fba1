"""verify --counters: Nsight Compute hardware counters per module, through NVTX ranges, against the analytic
`full` FLOPs and bytes, as ratios per category (see ../shared/reference/gpu-counters.md).

The parent runs `ncu` on a child (`python -m wantrace.counters ...`) that builds the same model, opens the
profiler only around one forward, and pushes an NVTX range named by the report id of every module and
functional scope it enters; each kernel is then charged to its innermost range. Tensor-core FLOPs are gated
(within 1% of the analytic matmul + attention FLOPs that run in bf16/fp16); FP32/FP64 thread FLOPs and DRAM
bytes are reported, not gated."""

from __future__ import annotations

import argparse
import csv
import io
import re
import shutil
import subprocess
import sys
from collections import Counter

import torch

from .categories import CATEGORIES, category_of
from .roles import role_of

TENSOR_GATE = 0.01
METRICS = {
    "tensor_bf16": "sm__ops_path_tensor_src_bf16_dst_fp32.sum",
    "tensor_tf32": "sm__ops_path_tensor_src_tf32_dst_fp32.sum",
    "fadd": "smsp__sass_thread_inst_executed_op_fadd_pred_on.sum",
    "fmul": "smsp__sass_thread_inst_executed_op_fmul_pred_on.sum",
    "ffma": "smsp__sass_thread_inst_executed_op_ffma_pred_on.sum",
    "dadd": "smsp__sass_thread_inst_executed_op_dadd_pred_on.sum",
    "dmul": "smsp__sass_thread_inst_executed_op_dmul_pred_on.sum",
    "dfma": "smsp__sass_thread_inst_executed_op_dfma_pred_on.sum",
    "dram_read": "dram__bytes_read.sum",
    "dram_write": "dram__bytes_write.sum",
    "time_ns": "gpu__time_duration.sum",
}
NVTX_COLUMN = "thread Domain:Push/Pop_Range:PL_Type:PL_Value:CLR_Type:Color:Msg_Type:Msg"
_RANGE = re.compile(r'"<default domain>:([^:"]*):')
TENSOR_DTYPES = (torch.bfloat16, torch.float16)
TENSOR_FAMILIES = ("matmul", "conv", "attention")


def parse_kernels(text: str) -> list[dict]:
    """ncu --csv --page raw output -> one dict per kernel: `range` (innermost NVTX range) and the metrics."""
    lines = text[text.index('"ID"'):] if '"ID"' in text else ""
    rows = list(csv.reader(io.StringIO(lines)))
    if not rows:
        return []
    header, body = rows[0], rows[2:]  # rows[1] holds the units
    kernels = []
    for row in body:
        record = dict(zip(header, row, strict=False))
        ranges = _RANGE.findall(record.get(NVTX_COLUMN, ""))
        kernel = {"range": ranges[-1] if ranges else None, "stack": ranges, "name": record.get("Kernel Name", "")}
        for key, metric in METRICS.items():
            value = record.get(metric, "").replace(",", "")
            kernel[key] = int(float(value)) if value not in ("", "n/a") else 0
        kernels.append(kernel)
    return kernels


def analytic_tensor_by_id(records) -> Counter:
    out: Counter[str] = Counter()
    for r in records:
        if r.kind == "costed" and r.family in TENSOR_FAMILIES and r.in_dtype in TENSOR_DTYPES:
            out[r.module] += r.cost.flops_torch
    return out


def by_role(kernels: list[dict], analytic_ids: Counter) -> list[dict]:
    """Tensor work per role (block index replaced by *): kernel names, measured vs analytic. Shows which GEMM
    shapes execute more tensor-core work than they need (tile padding)."""
    roles: dict[str, dict] = {}
    for k in kernels:
        if not k["stack"] or k["stack"][0] != "wantrace" or not k["tensor_bf16"] + k["tensor_tf32"]:
            continue
        role = role_of(k["range"])
        entry = roles.setdefault(role, {"role": role, "kernels": Counter(), "tensor_flops": 0, "analytic": 0})
        entry["kernels"][k["name"][:90]] += 1
        entry["tensor_flops"] += k["tensor_bf16"] + k["tensor_tf32"]
    for ident, flops in analytic_ids.items():
        role = role_of(ident)
        if role in roles:
            roles[role]["analytic"] += flops
    out = []
    for entry in sorted(roles.values(), key=lambda e: -e["tensor_flops"]):
        out.append({**entry, "kernels": dict(entry["kernels"]),
                    "ratio": _ratio(entry["tensor_flops"], entry["analytic"])})
    return out


def analytic_by_category(records) -> dict[str, dict[str, int]]:
    """Analytic figures per category of the id each node ran in (kernels know their range, not their op, so
    casts stay with their module here): tensor-eligible FLOPs, full FLOPs, bytes."""
    out = {c: Counter() for c in CATEGORIES}
    for r in records:
        if r.kind != "costed":
            continue
        c = out[category_of(r.module)]
        if r.family in TENSOR_FAMILIES and r.in_dtype in TENSOR_DTYPES:
            c["tensor_flops"] += r.cost.flops_torch
        c["flops_full"] += r.cost.flops_full
        c["bytes"] += r.cost.bytes_read + r.cost.bytes_written
    return out


def summarize(kernels: list[dict], analytic: dict) -> dict:
    measured = {c: Counter() for c in CATEGORIES}
    outside = 0
    for k in kernels:
        if not k["stack"] or k["stack"][0] != "wantrace":
            outside += 1
            continue
        ident = k["range"]
        m = measured[category_of(ident) if ident not in ("wantrace", "model") else "other"]
        m["tensor_flops"] += k["tensor_bf16"] + k["tensor_tf32"]
        m["fp32_flops"] += k["fadd"] + k["fmul"] + 2 * k["ffma"]
        m["fp64_flops"] += k["dadd"] + k["dmul"] + 2 * k["dfma"]
        m["dram_bytes"] += k["dram_read"] + k["dram_write"]
        m["time_ns"] += k["time_ns"]
        m["kernels"] += 1
    categories = []
    for name in CATEGORIES:
        a, m = analytic[name], measured[name]
        scalar_analytic = a["flops_full"] - a["tensor_flops"]
        categories.append({
            "category": name,
            "kernels": m["kernels"],
            "analytic_tensor_flops": a["tensor_flops"],
            "tensor_flops": m["tensor_flops"],
            "tensor_ratio": _ratio(m["tensor_flops"], a["tensor_flops"]),
            "fp32_flops": m["fp32_flops"],
            "fp64_flops": m["fp64_flops"],
            "analytic_flops_full": a["flops_full"],
            "scalar_ratio": _ratio(m["fp32_flops"] + m["fp64_flops"], scalar_analytic),
            "dram_bytes": m["dram_bytes"],
            "analytic_bytes": a["bytes"],
            "bytes_ratio": _ratio(m["dram_bytes"], a["bytes"]),
            "time_ms": round(m["time_ns"] / 1e6, 4),
        })
    tensor_measured = sum(c["tensor_flops"] for c in categories)
    tensor_analytic = sum(c["analytic_tensor_flops"] for c in categories)
    ratio = _ratio(tensor_measured, tensor_analytic)
    return {
        "metrics": METRICS,
        "kernels": len(kernels) - outside,
        "kernels_outside_forward": outside,
        "tensor_flops": tensor_measured,
        "analytic_tensor_flops": tensor_analytic,
        "tensor_ratio": ratio,
        "tensor_gate": TENSOR_GATE,
        "pass": ratio is not None and abs(ratio - 1) <= TENSOR_GATE,
        "categories": categories,
    }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 6) if b else None


def run_counters(config_path, workload, blocks: int | None, seed: int, records) -> dict:
    """Profile one forward under ncu and compare per category with the analytic records."""
    ncu = shutil.which("ncu")
    cmd = [ncu, "--nvtx", "--profile-from-start", "off", "--csv", "--page", "raw", "--clock-control", "none",
           "--metrics", ",".join(METRICS.values()), sys.executable, "-m", "wantrace.counters",
           "--config", str(config_path), "--frames", str(workload.frames), "--height", str(workload.height),
           "--width", str(workload.width), "--batch", str(workload.batch), "--precision", workload.precision,
           "--seed", str(seed)]
    if blocks:
        cmd += ["--blocks", str(blocks)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or '"ID"' not in proc.stdout:
        from .verify import VerifyError

        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise VerifyError(f"--counters: ncu failed (exit {proc.returncode}): {tail[0]}")
    kernels = parse_kernels(proc.stdout)
    summary = summarize(kernels, analytic_by_category(records))
    summary["roles"] = by_role(kernels, analytic_tensor_by_id(records))
    return summary


def _child() -> None:
    """The profiled process: one forward with NVTX ranges, the profiler open only around it."""
    import dataclasses

    from wan_reference import build_model, geometry, get_policy, make_inputs
    from wan_reference.config import read_config

    from .probe import Probe

    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    for name in ("frames", "height", "width", "batch", "seed"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--precision", required=True)
    p.add_argument("--blocks", type=int)
    a = p.parse_args()
    config, _ = read_config(a.config)
    if a.blocks:
        config = dataclasses.replace(config, num_layers=a.blocks)
    geo = geometry(a.frames, a.height, a.width, config.patch_size, config.rope_max_seq_len)
    policy = get_policy(a.precision)
    dev = torch.device("cuda")
    model = build_model(config, policy, device=dev, seed=a.seed)
    inputs = make_inputs(config, geo.latent, policy, batch=a.batch, device=dev, seed=a.seed + 1)
    probe = Probe(model, torch.cuda.nvtx.range_push, lambda ident: torch.cuda.nvtx.range_pop())
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    with torch.no_grad(), probe.active():
        torch.cuda.nvtx.range_push("wantrace")
        model(**inputs)
        torch.cuda.nvtx.range_pop()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()


if __name__ == "__main__":
    _child()
