"""Terminal view of a verify result: categories, whole-forward figures, and the offenders if any."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..measure.verify import Row, VerifyResult
from ..measure.verify_component import ComponentResult
from .units import flops, nbytes, seconds, si


def print_result(result: VerifyResult, console: Console) -> None:
    doc = result.to_dict()
    s = doc["summary"]
    head = (f"{doc['variant']} · {doc['workload']['id']} · {doc['tokens']:,} tokens · {doc['precision']} · "
            f"{doc['device']['name']} · torch {doc['torch']}")
    if result.blocks:
        head += f" · [yellow]first {result.blocks} of {result.full_layers} blocks only[/]"
    console.print(head)
    table = Table(title="per category (one forward)", title_justify="left")
    for name in ("category", "analytic FLOPs", "measured FLOPs", "analytic bytes", "time ms", "TFLOP/s", "GB/s"):
        table.add_column(name, justify="left" if name == "category" else "right")
    for c in doc["categories"]:
        table.add_row(c["category"], flops(c["analytic_flops"]), flops(c["measured_flops"]),
                      nbytes(c["analytic_bytes"]), f"{c['time_ms']:.3f}" if c["time_ms"] is not None else "-",
                      f"{c['achieved_tflops']:.1f}" if c["achieved_tflops"] else "-",
                      f"{c['achieved_gbs']:.0f}" if c["achieved_gbs"] else "-")
    console.print(table)
    _print_flops(s, result.tolerance, console)
    if s["forward_ms"]:
        extra = forward_line(s)
        if s["peak_allocated_bytes"] is not None:
            extra += (f"; peak allocated {nbytes(s['peak_allocated_bytes'])} vs analytic params "
                      f"{nbytes(s['analytic_param_bytes'])} + activations {nbytes(s['analytic_activation_bytes'])}")
        console.print(extra)
    if doc.get("counters"):
        _print_counters(doc["counters"], console)
    if doc.get("time"):
        _print_time(doc["time"], console)
    if result.offenders:
        _print_offenders(result.offenders, console)
        console.print(f"[red]FAIL[/]: {len(result.offenders)} modules over the tolerance")
    elif not result.passed:
        time_off = doc.get("time") and not doc["time"]["pass"]
        console.print("[red]FAIL[/]: " + ("predicted time off by more than the tolerance" if time_off
                                          else "totals or counters disagree"))
    else:
        console.print("[green]PASS[/]")


def _print_time(t: dict, console: Console) -> None:
    table = Table(title=f"predicted ({t['profile']}) vs measured time, tolerance {100 * t['tolerance']:.0f}%",
                  title_justify="left")
    for name in ("", "predicted", "measured", "ratio", "share", ""):
        table.add_column(name, justify="left" if not name else "right")
    f = t["forward"]
    table.add_row("[bold]forward (wall)", seconds(f["predicted_ns"]), seconds(f["measured_ns"]), _ratio(f["ratio"]),
                  "", "[green]ok" if f["pass"] else "[red]off")
    k = t["kernels"]
    table.add_row("GPU kernels", seconds(k["predicted_ns"]), seconds(k["measured_ns"]), _ratio(k["ratio"]), "", "")
    for c in t["categories"]:
        if not (c["predicted_kernel_ns"] or c["measured_kernel_ns"]):
            continue
        mark = ("[green]ok" if c["pass"] else "[red]off") if c["gated"] else "not gated"
        table.add_row(c["category"], seconds(c["predicted_kernel_ns"]), seconds(c["measured_kernel_ns"]),
                      _ratio(c["ratio"]), f"{100 * c['measured_share']:.1f}%", mark)
    console.print(table)


def _print_counters(counters: dict, console: Console) -> None:
    table = Table(title="Nsight Compute counters per category", title_justify="left")
    for name in ("category", "tensor FLOPs", "/ analytic", "/ in tiles", "FP32 FLOPs", "analytic full",
                 "DRAM bytes", "analytic bytes", "kernel ms"):
        table.add_column(name, justify="left" if name == "category" else "right")
    for c in counters.get("categories", []):
        if not c["kernels"] and not c["analytic_tensor_flops"]:
            continue
        table.add_row(c["category"], flops(c["tensor_flops"]), _ratio(c["tensor_ratio"]),
                      _ratio(c.get("executed_ratio")), _opt(flops, c["fp32_flops"]), flops(c["analytic_flops_full"]),
                      _opt(nbytes, c["dram_bytes"]), nbytes(c["analytic_bytes"]), _opt("{:.2f}".format, c["time_ms"]))
    console.print(table)
    padded = [r for r in counters.get("roles", []) if r["analytic"] and r["tensor_flops"] != r["analytic"]]
    if padded:
        roles = Table(title="tensor work beyond the analytic count, per role (tile padding)", title_justify="left")
        for name in ("role", "/ analytic", "/ in tiles", "kernel"):
            roles.add_column(name, justify="left" if name in ("role", "kernel") else "right")
        for r in padded[:12]:
            roles.add_row(r["role"], _ratio(r["ratio"]), _ratio(r.get("executed_ratio")), ", ".join(r["kernels"]))
        console.print(roles)
    gate = counters.get("executed_ratio", counters["tensor_ratio"])
    console.print(
        f"tensor-core FLOPs: {counters['tensor_flops']:,} measured; {counters['analytic_tensor_flops']:,} analytic "
        f"(x{_ratio(counters['tensor_ratio'])}); {counters.get('executed_tensor_flops', 0):,} analytic in the kernels' "
        f"tiles (x{_ratio(gate)}, gate {counters['tensor_gate']:.0%}: {'pass' if counters['pass'] else 'FAIL'}); "
        f"{counters['kernels']:,} kernels" + (f", tiles unread for {', '.join(counters['tile_unknown'])}"
                                               if counters.get("tile_unknown") else ""))


def _ratio(x) -> str:
    return f"{x:.4f}" if x is not None else "-"


def _opt(fmt, x) -> str:
    return fmt(x) if x is not None else "-"


def forward_line(s: dict) -> str:
    """The fastest timed forward (with how many ran and their median) and the FLOP rate it achieved."""
    line = f"forward {s['forward_ms']:.2f} ms"
    if s.get("forward_runs", 0) > 1:
        line += f" (fastest of {s['forward_runs']}; median {s['forward_median_ms']:.2f} ms)"
    if s["achieved_tflops"]:
        line += f", {si(s['achieved_tflops'] * 1e12, 'FLOP/s')}"
    return line


def print_component_result(result: ComponentResult, console: Console) -> None:
    """A component's verify (text encoder, image encoder, VAE): what ran, the FLOP comparison, time and memory
    (measured peak against the analytic parameter + activation bytes), the verdict."""
    doc = result.to_dict()
    s = doc["summary"]
    console.print(" · ".join([doc["component"], doc["variant"], doc["call"], f"{doc['precision']} ({doc['dtype']})",
                              doc["device"]["name"], f"torch {doc['torch']}"]))
    _print_flops(s, result.tolerance, console)
    line = forward_line(s)
    memory = (f"analytic params {nbytes(s['analytic_param_bytes'])} + peak activations "
              f"{nbytes(s['analytic_activation_bytes'])} = {nbytes(s['analytic_peak_bytes'])}")
    if s["peak_allocated_bytes"] is not None:
        memory = f"peak allocated {nbytes(s['peak_allocated_bytes'])} (x{s['peak_ratio']:.3f}) vs {memory}"
    console.print(f"{line}; {memory}")
    if s.get("predicted_ms") is not None:
        ratio = f": predicted / measured {s['time_ratio']:.3f}" if s.get("time_ratio") else ""
        console.print(f"predicted {s['predicted_ms']:,.1f} ms on {s['profile']}{ratio} (informational, not gated)")
    if result.offenders:
        _print_offenders(result.offenders, console)
    console.print("[green]PASS[/]" if result.passed else "[red]FAIL[/]: FLOP counts disagree")


def _print_flops(s: dict, tolerance: float, console: Console) -> None:
    console.print(f"modules and scopes compared: {s['modules_compared']:,}; max FLOP error "
                  f"{100 * s['max_rel_error']:.4f}% (tolerance {100 * tolerance:.1f}%); FlopCounterMode total "
                  f"{s['flop_counter_total']:,} vs analytic {s['analytic_total']:,}")


def _print_offenders(offenders: list[Row], console: Console) -> None:
    bad = Table(title="[red]modules over the tolerance", title_justify="left")
    for name in ("id", "analytic", "measured", "error"):
        bad.add_column(name, justify="left" if name == "id" else "right")
    for r in offenders[:40]:
        err = "inf" if r.rel_error == float("inf") else f"{100 * r.rel_error:.3f}%"
        bad.add_row(r.id, f"{r.analytic_flops:,}", f"{r.measured_flops:,}", err)
    console.print(bad)
