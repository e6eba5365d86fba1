"""verify --counters: Nsight Compute hardware counters per module, through NVTX ranges, against the analytic
`full` FLOPs and bytes, as ratios per category (see ../shared/reference/gpu-counters.md).

The parent runs `ncu` on a child (`python -m wantrace.measure.counters ...`) that builds the same model, opens the
profiler only around one forward, and pushes an NVTX range named by the report id of every module and
functional scope it enters; each kernel is then charged to its innermost range. Tensor-core FLOPs are gated:
within 1% of the analytic matmul, conv and attention FLOPs that run in bf16/fp16, each product padded to the
tile of the kernel that ran it (wantrace/tiles.py; the unpadded ratio is reported beside). FP32/FP64 thread
FLOPs and DRAM bytes are reported, not gated."""

from __future__ import annotations

import argparse
import csv
import io
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import torch

from ..timing.tiles import predict
from ..work.categories import CATEGORIES, category_of
from ..work.roles import role_of
from .device import VerifyError
from .ncu_metrics import METRIC_SETS, METRICS, REPLAY_MODES

TENSOR_GATE = 0.01
NVTX_COLUMN = "thread Domain:Push/Pop_Range:PL_Type:PL_Value:CLR_Type:Color:Msg_Type:Msg"
_RANGE = re.compile(r'"<default domain>:([^:"]*):')
TENSOR_DTYPES = (torch.bfloat16, torch.float16)
TENSOR_FAMILIES = ("matmul", "conv", "attention")


def parse_kernels(text: str) -> list[dict]:
    """ncu --csv --page raw output -> one dict per kernel: `range` (innermost NVTX range), `stack`, `name`
    and each metric of METRICS (None when it was not collected)."""
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
            value = record.get(metric)
            if value is None:
                kernel[key] = None
            else:
                value = value.replace(",", "")
                kernel[key] = int(float(value)) if value not in ("", "n/a") else 0
        kernels.append(kernel)
    return kernels


def _in_forward(kernel: dict) -> bool:
    return bool(kernel["stack"]) and kernel["stack"][0] == "wantrace"


def _tensor(kernel: dict) -> int:
    return (kernel["tensor_bf16"] or 0) + (kernel["tensor_tf32"] or 0)


def tensor_products(records) -> dict[str, list]:
    """The analytic matrix products that run on tensor cores (matmul, conv, attention in bf16/fp16), per id."""
    out: dict[str, list] = {}
    for r in records:
        if r.kind == "costed" and r.family in TENSOR_FAMILIES and r.in_dtype in TENSOR_DTYPES:
            out.setdefault(r.module, []).extend(r.cost.gemms)
    return out


def executed_by_id(kernels: list[dict], products: dict[str, list]) -> tuple[Counter, set[str]]:
    """Per id, the tensor FLOPs its products execute in the tile of the kernel that ran them (all of the
    range's tensor kernels must share one name); and the ids whose kernel's tile could not be read."""
    names: dict[str, set[str]] = {}
    for k in kernels:
        if _in_forward(k) and _tensor(k):
            names.setdefault(k["range"], set()).add(k["name"])
    out: Counter[str] = Counter()
    unknown: set[str] = set()
    for ident, gemms in products.items():
        kernel = next(iter(names[ident])) if len(names.get(ident, ())) == 1 else None
        out[ident], known = predict(tuple(gemms), kernel)
        if not known:
            unknown.add(ident)
    return out, unknown


def by_role(kernels: list[dict], useful: Counter, executed: Counter) -> list[dict]:
    """Tensor work per role (block index replaced by *): kernel names, measured vs analytic (useful) and vs
    the analytic products padded to the kernel's tiles. Shows which GEMM shapes execute more tensor-core
    work than they need."""
    roles: dict[str, dict] = {}
    for k in kernels:
        if not _in_forward(k) or not _tensor(k):
            continue
        role = role_of(k["range"])
        entry = roles.setdefault(role, {"role": role, "kernels": Counter(), "tensor_flops": 0, "analytic": 0,
                                        "executed": 0})
        entry["kernels"][k["name"][:90]] += 1
        entry["tensor_flops"] += _tensor(k)
    for ident in useful:
        role = role_of(ident)
        if role in roles:
            roles[role]["analytic"] += useful[ident]
            roles[role]["executed"] += executed[ident]
    out = []
    for entry in sorted(roles.values(), key=lambda e: -e["tensor_flops"]):
        out.append({**entry, "kernels": dict(entry["kernels"]),
                    "ratio": _ratio(entry["tensor_flops"], entry["analytic"]),
                    "executed_ratio": _ratio(entry["tensor_flops"], entry["executed"])})
    return out


def analytic_by_category(records, executed: Counter | None = None) -> dict[str, Counter[str]]:
    """Analytic figures per category of the id each node ran in (kernels know their range, not their op, so
    casts stay with their module here): tensor-core FLOPs (useful, and as executed in the kernels' tiles),
    full FLOPs, bytes."""
    out: dict[str, Counter[str]] = {c: Counter() for c in CATEGORIES}
    for r in records:
        if r.kind != "costed":
            continue
        c = out[category_of(r.module)]
        if r.family in TENSOR_FAMILIES and r.in_dtype in TENSOR_DTYPES:
            c["tensor_flops"] += r.cost.flops_torch
        c["flops_full"] += r.cost.flops_full
        c["bytes"] += r.cost.bytes_read + r.cost.bytes_written
    for ident, flops in (executed or {}).items():
        out[category_of(ident)]["executed_tensor_flops"] += flops
    return out


def summarize(kernels: list[dict], records) -> dict:
    """Counters per category against the analytic records, and the tensor-FLOP gate."""
    products = tensor_products(records)
    executed, unknown = executed_by_id(kernels, products)
    analytic = analytic_by_category(records, executed)
    collected = {key for key in METRICS if any(k[key] is not None for k in kernels)}
    measured: dict[str, Counter[str]] = {c: Counter() for c in CATEGORIES}
    outside = 0
    for k in kernels:
        if not _in_forward(k):
            outside += 1
            continue
        ident = k["range"]
        v = {key: k[key] or 0 for key in METRICS}
        m = measured[category_of(ident) if ident not in ("wantrace", "model") else "other"]
        m["tensor_flops"] += _tensor(k)
        m["fp32_flops"] += v["fadd"] + v["fmul"] + 2 * v["ffma"]
        m["fp64_flops"] += v["dadd"] + v["dmul"] + 2 * v["dfma"]
        m["dram_bytes"] += v["dram_read"] + v["dram_write"]
        m["time_ns"] += v["time_ns"]
        m["kernels"] += 1
    has_fp32 = {"fadd", "fmul", "ffma"} <= collected
    has_fp64 = {"dadd", "dmul", "dfma"} <= collected
    has_dram = {"dram_read", "dram_write"} <= collected
    categories: list[dict[str, Any]] = []
    for name in CATEGORIES:
        a, m = analytic[name], measured[name]
        scalar_analytic = a["flops_full"] - a["tensor_flops"]
        scalar = m["fp32_flops"] + m["fp64_flops"] if has_fp32 and has_fp64 else None
        categories.append({
            "category": name,
            "kernels": m["kernels"],
            "analytic_tensor_flops": a["tensor_flops"],
            "executed_tensor_flops": a["executed_tensor_flops"],
            "tensor_flops": m["tensor_flops"],
            "tensor_ratio": _ratio(m["tensor_flops"], a["tensor_flops"]),
            "executed_ratio": _ratio(m["tensor_flops"], a["executed_tensor_flops"]),
            "fp32_flops": m["fp32_flops"] if has_fp32 else None,
            "fp64_flops": m["fp64_flops"] if has_fp64 else None,
            "analytic_flops_full": a["flops_full"],
            "scalar_ratio": _ratio(scalar, scalar_analytic) if scalar is not None else None,
            "dram_bytes": m["dram_bytes"] if has_dram else None,
            "analytic_bytes": a["bytes"],
            "bytes_ratio": _ratio(m["dram_bytes"], a["bytes"]) if has_dram else None,
            "time_ms": round(m["time_ns"] / 1e6, 4) if "time_ns" in collected else None,
        })
    tensor_measured = sum(c["tensor_flops"] for c in categories)
    tensor_analytic = sum(c["analytic_tensor_flops"] for c in categories)
    tensor_executed = sum(c["executed_tensor_flops"] for c in categories)
    gated = _ratio(tensor_measured, tensor_executed)
    return {
        "metrics": {key: METRICS[key] for key in METRICS if key in collected},
        "kernels": len(kernels) - outside,
        "kernels_outside_forward": outside,
        "tensor_flops": tensor_measured,
        "analytic_tensor_flops": tensor_analytic,
        "tensor_ratio": _ratio(tensor_measured, tensor_analytic),
        "executed_tensor_flops": tensor_executed,
        "executed_ratio": gated,
        "tile_unknown": sorted({role_of(i) for i in unknown}),
        "tensor_gate": TENSOR_GATE,
        "gate": "tensor FLOPs measured / analytic products padded to their kernels' tiles",
        "pass": gated is not None and abs(gated - 1) <= TENSOR_GATE,
        "categories": categories,
        "roles": by_role(kernels, Counter({i: sum(g.flops for g in gs) for i, gs in products.items()}), executed),
    }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 6) if b else None


def ncu_command(config_path, workload, blocks: int | None, seed: int, metric_set: str, replay: str) -> list[str]:
    metrics = ",".join(METRICS[key] for key in METRIC_SETS[metric_set])
    cmd = [shutil.which("ncu") or "ncu", "--nvtx", "--profile-from-start", "off", "--csv", "--page", "raw",
           "--clock-control", "none", "--replay-mode", replay, "--metrics", metrics,
           sys.executable, "-m", "wantrace.measure.counters",
           "--config", str(config_path), "--frames", str(workload.frames), "--height", str(workload.height),
           "--width", str(workload.width), "--batch", str(workload.batch), "--precision", workload.precision,
           "--seed", str(seed)]
    return cmd + (["--blocks", str(blocks)] if blocks else [])


_PROFILED = "==PROF== Profiling "  # ncu's line per kernel, where it prints one
_BLOCK = "==WANTRACE== block "  # the child announces each block it enters, on stderr


def run_counters(config_path, workload, blocks: int | None, seed: int, records, metric_set: str = "all",
                 replay: str = "application", progress=None) -> dict:
    """Profile one forward under ncu (showing how many kernels it has profiled) and compare per category
    with the analytic records."""
    step = progress or (lambda message: None)
    if metric_set not in METRIC_SETS or replay not in REPLAY_MODES:
        raise VerifyError(f"--counters: unknown metric set {metric_set!r} or replay mode {replay!r}")
    started = time.perf_counter()
    state = {"kernels": 0, "runs": 0}
    where = ["embeddings"]
    stderr: list[str] = []

    def watch(line: str) -> None:
        if "==PROF== Connected to process" in line:
            state["runs"] += 1
        elif line.startswith(_BLOCK):
            where[0] = "block " + line[len(_BLOCK):].strip()
        elif line.startswith(_PROFILED):
            state["kernels"] += 1
        else:
            return
        run = f", run {state['runs']}" if replay == "application" else ""
        kernels = f", {state['kernels']} kernels profiled" if state["kernels"] else ""
        step(f"Nsight Compute ({metric_set} metrics, {replay} replay{run}): {where[0]}{kernels}, "
             f"{time.perf_counter() - started:.0f} s")

    def drain(stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)
            watch(line)

    step(f"Nsight Compute ({metric_set} metrics, {replay} replay): starting the profiled forward")
    cmd = ncu_command(config_path, workload, blocks, seed, metric_set, replay)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reader = threading.Thread(target=drain, args=(proc.stderr, stderr), daemon=True)
    reader.start()
    stdout: list[str] = []
    drain(proc.stdout, stdout)
    proc.wait()
    reader.join()
    text = "".join(stdout)
    if proc.returncode != 0 or '"ID"' not in text:
        lines = [x for x in (stderr + stdout) if x.strip() and not x.startswith('"')]
        tail = lines[-1].strip() if lines else "no output"
        raise VerifyError(f"--counters: ncu failed (exit {proc.returncode}): {tail}")
    summary = summarize(parse_kernels(text), records)
    summary.update(metric_set=metric_set, replay=replay, ncu_seconds=round(time.perf_counter() - started, 1))
    return summary


def _child() -> None:
    """The profiled process: one forward with NVTX ranges, the profiler open only around it."""

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
        config = config.with_layers(a.blocks)
    geo = geometry(a.frames, a.height, a.width, config.patch_size, config.rope_max_seq_len, config.vae_stride)
    policy = get_policy(a.precision)
    dev = torch.device("cuda")
    model = build_model(config, policy, device=dev, seed=a.seed)
    inputs = make_inputs(config, geo.latent, policy, batch=a.batch, device=dev, seed=a.seed + 1)
    probe = Probe(model, torch.cuda.nvtx.range_push, lambda ident: torch.cuda.nvtx.range_pop())
    for i, block in enumerate(model.blocks):
        block.register_forward_pre_hook(
            lambda *_, i=i: print(f"{_BLOCK}{i + 1}/{len(model.blocks)}", file=sys.stderr, flush=True))
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
