"""wantrace verify --ulysses U --ring R, under torchrun: one rank of the sequence-parallel forward, run for real
and checked against the analysis of that rank.

On every rank: FlopCounterMode over the rank's forward against the report's per-rank `torch` FLOPs (they must be
equal), the bytes the rank handed to each collective (`wan_reference.collectives.count`) against the analytic
communication bytes (equal), and the measured per-forward wall time (the slowest rank's fastest forward) against
the predicted time when a hardware profile applies. On rank 0: the gathered output against the single-process
forward of the same weights (their largest difference relative to the reference's largest magnitude). With
padding (tokens not a multiple of U x R) upstream's USP attends to the unmasked padded keys, so the reference is
then the same USP forward on one process with the same padded length."""

from __future__ import annotations

import datetime
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.flop_counter import FlopCounterMode

from wan_reference import build_model, collectives, get_policy, make_inputs
from wan_reference.config import read_config
from wan_reference.parallel import Layout, init_groups, padded_seq_len, parallelize

from ..timing.predictor import Predictor
from ..timing.profile import load_profile, profile_for
from ..work.analysis import analyze
from ..work.parallel import Plan, PlanError
from ..work.workload import resolve
from .collectives import init_distributed
from .device import VerifyError, check_gpu, device_info
from .verify import _time_forward, attention_formulas

OUTPUT_TOLERANCE = {"fp32": 1e-5}  # others (bf16 kernels, other summation orders): DEFAULT_OUTPUT_TOLERANCE
DEFAULT_OUTPUT_TOLERANCE = 3e-2


def _forward_ms(model, inputs: dict, dev: torch.device, repeats: int) -> float:
    return _time_forward(model, inputs, dev, repeats, before=dist.barrier).fastest


def _ratio(a: float | int, b: float | int) -> float | None:
    return a / b if b else None


def verify_parallel(config_path: str | Path, workload: str = "ci-tiny", *, device: str = "cpu", ulysses: int = 1,
                    ring: int = 1, precision: str | None = None, gpu: str | None = None, time_tolerance: float = 0.15,
                    output_tolerance: float | None = None, repeats: int = 3, seed: int = 0, progress=None,
                    **overrides) -> dict:
    """Verify rank by rank; every rank returns the same result document (passed or not)."""
    step = progress or (lambda message: None)
    dev = init_distributed(device)
    rank, world = dist.get_rank(), dist.get_world_size()
    layout = Layout(ulysses, ring, rank)
    if layout.world != world:
        raise VerifyError(f"--ulysses {ulysses} x --ring {ring} = {layout.world}, but torchrun started {world} "
                          "processes; they must be equal")
    config, _ = read_config(config_path)
    if precision is not None:
        overrides["precision"] = precision
    wl, geo = resolve(workload, config, **overrides)
    plan = Plan(ulysses, ring)
    try:
        plan.check(config, wl.cfg)
    except PlanError as exc:
        raise VerifyError(str(exc)) from None
    policy = get_policy(wl.precision)
    check_gpu(gpu, dev)
    profile = load_profile(gpu) if gpu else (profile_for(torch.cuda.get_device_name(dev)) if dev.type == "cuda"
                                             else None)
    tolerance = output_tolerance if output_tolerance is not None else OUTPUT_TOLERANCE.get(
        wl.precision, DEFAULT_OUTPUT_TOLERANCE)

    step(f"rank {rank}: analytic report of one rank" + (f", predicted time on {profile.name}" if profile else ""))
    report = analyze(config, wl, parallel=plan, timing=Predictor(profile) if profile else None)
    analytic = report.parallel["communication_per_forward"] if report.parallel else {}
    seq_len = padded_seq_len(geo.tokens, world)

    step(f"rank {rank}: building the model ({wl.precision}) on {dev}")
    model = build_model(config, policy, device=dev, seed=seed)
    inputs = make_inputs(config, geo.latent, policy, batch=wl.batch, device=dev, seed=seed + 1)
    reference = None
    if rank == 0:
        step("rank 0: single-process reference forward")
        with torch.no_grad():
            if seq_len == geo.tokens:
                reference = model(**inputs)
            else:  # the same padded, unmasked USP forward on one process
                parallelize(model, Layout())
                reference = model(**inputs, seq_len=seq_len)
    parallelize(model, layout)
    init_groups(layout)

    step(f"rank {rank}: counting FLOPs and collective bytes")
    with torch.no_grad(), collectives.count() as sent:
        with FlopCounterMode(display=False, custom_mapping=attention_formulas()) as counter:
            output = model(**inputs)
    counted: dict[str, dict[str, int]] = {}
    for s in sent:
        entry = counted.setdefault(s.op, {"calls": 0, "sent": 0, "received": 0})
        entry["calls"] += 1
        entry["sent"] += s.bytes_sent
        entry["received"] += s.bytes_received
    flops = counter.get_total_flops()

    step(f"rank {rank}: timing whole forwards")
    forward_ms = _forward_ms(model, inputs, dev, repeats)
    slowest = torch.tensor([forward_ms], dtype=torch.float64)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)

    mine = {"rank": rank, "flops_counted": flops, "flops_analytic": report.forward.flops_torch,
            "communication_counted": counted, "communication_analytic": analytic, "forward_ms": forward_ms}
    ranks: list[dict | None] = [None] * world
    dist.all_gather_object(ranks, mine)

    out_doc = None
    if rank == 0:
        assert reference is not None
        diff = (output.float() - reference.float()).abs().max().item()
        scale = reference.float().abs().max().item()
        rel = diff / scale if scale else diff
        out_doc = {"max_abs_diff": diff, "reference_max_abs": scale, "max_rel_diff": rel, "tolerance": tolerance,
                   "reference": "single process" if seq_len == geo.tokens else "one-process USP, same padding",
                   "passed": rel <= tolerance}
    shared = [out_doc]
    dist.broadcast_object_list(shared, src=0)
    out_doc = shared[0]

    time_doc = None
    predicted_ns = report.forward.time_ns
    if predicted_ns is not None and dev.type == "cuda":
        measured = slowest.item()
        ratio = predicted_ns / 1e6 / measured
        time_doc = {"predicted_ms": predicted_ns / 1e6, "measured_ms": measured, "predicted_over_measured": ratio,
                    "tolerance": time_tolerance, "passed": abs(ratio - 1) <= time_tolerance,
                    "collectives": report.time.get("collectives") if report.time else None}
    checks = {
        "flops": all(r is not None and r["flops_counted"] == r["flops_analytic"] for r in ranks),
        "communication": all(r is not None and r["communication_counted"] == r["communication_analytic"]
                             for r in ranks),
        "output": bool(out_doc and out_doc["passed"]),
        **({"time": time_doc["passed"]} if time_doc else {}),
    }
    return {
        "kind": "verify-parallel",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": str(config_path),
        "workload": wl.to_dict(),
        "geometry": {"tokens": geo.tokens, "seq_len": seq_len, "tokens_per_rank": seq_len // world},
        "layout": {"ulysses": ulysses, "ring": ring, "world": world, "backend": dist.get_backend()},
        "device": device_info(dev),
        "ranks": ranks,
        "forward_ms_slowest_rank": slowest.item(),
        "predicted_forward_ms": None if predicted_ns is None else predicted_ns / 1e6,
        "output": out_doc,
        "time": time_doc,
        "checks": checks,
        "passed": all(checks.values()),
        "analysis": {"forward": report.forward.to_dict(), "parallel": report.parallel},
    }


def summary_lines(doc: dict) -> list[str]:
    """What verify prints for a parallel run."""
    lay = doc["layout"]
    lines = [f"USP ulysses {lay['ulysses']} x ring {lay['ring']} ({lay['backend']}, {doc['device']['type']}), "
             f"{doc['geometry']['tokens']:,} tokens, seq_len {doc['geometry']['seq_len']:,}"]
    for r in doc["ranks"]:
        comm = ", ".join(f"{op} {v['calls']}x {v['sent']:,} B" for op, v in sorted(r["communication_counted"].items()))
        lines.append(f"  rank {r['rank']}: FLOPs {r['flops_counted']:,} counted / {r['flops_analytic']:,} analytic; "
                     f"sent {comm or 'nothing'}; forward {r['forward_ms']:.1f} ms")
    out = doc["output"]
    lines.append(f"  output vs {out['reference']}: max relative difference {out['max_rel_diff']:.2e} "
                 f"(tolerance {out['tolerance']:.0e})")
    if doc["time"]:
        t = doc["time"]
        lines.append(f"  forward: predicted {t['predicted_ms']:.1f} ms, measured {t['measured_ms']:.1f} ms "
                     f"(x{t['predicted_over_measured']:.3f})")
    lines.append("  " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in doc["checks"].items()))
    return lines

