"""The whole generation's components (calls, cost, share, peak memory) and the weights resident under the official
placement flags, as a terminal table and as markdown."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..work.metrics import Metrics
from ..work.report import Report
from .units import flops, nbytes, percent, seconds

HEADERS = ("component", "calls", "params", "FLOPs (torch)", "share", "bytes", "share", "peak act.", "on GPU")


def component_rows(report: Report) -> list[tuple[str, ...]]:
    """One row per component: id, calls, params, FLOPs (torch) and share, bytes and share, peak activations
    of one call, weights + activations on the GPU while it runs[, time and share]."""
    g = report.generation or {}
    total = report.totals["generation"]
    timed = total.time_ns is not None
    phases = g["memory"]["phases"]
    rows = []
    for c in g["components"]:
        m = Metrics.from_dict(c["generation"])
        rows.append((c["id"], f"{c['calls']:,}", f"{c['params']:,}", flops(m.flops_torch),
                     percent(m.flops_torch, total.flops_torch), nbytes(m.bytes),
                     percent(m.bytes, total.bytes), nbytes(c["peak_activation_bytes"]),
                     nbytes(phases[c["id"]]["peak"]),
                     *([seconds(m.time_ns or 0), percent(m.time_ns or 0, total.time_ns or 0)] if timed else [])))
    return rows


def note_lines(report: Report) -> list[str]:
    g = report.generation or {}
    mem = g["memory"]
    flags = mem["flags"]
    w = mem["weights"]
    placed = ", ".join(f"{k} {nbytes(v)}" for k, v in w.items() if v)
    lines = [
        f"resident on the GPU at the peak ({mem['peak_phase']}): {nbytes(mem['peak'])}; weights {placed} under "
        f"--offload_model {'on' if flags['offload_model'] else 'off'}"
        f"{', --t5_cpu' if flags['t5_cpu'] else ''}{', --t5_fsdp' if flags['t5_fsdp'] else ''}"
        f"{', --dit_fsdp' if flags['dit_fsdp'] else ''} (not modelled: {mem['not_modelled']})",
        f"sampler: UniPC order {g['sampler']['solver_order']}, steps by kind " + "; ".join(
            f"{k}: {len(v)}" for k, v in g["sampler"]["steps_by_kind"].items()),
    ]
    lines += [f"not modelled: {n['id']} x{n['calls']} ({n['reason']})"
              for n in g["not_modelled"]]
    return lines


def print_generation(report: Report, console: Console) -> None:
    timed = report.totals["generation"].time_ns is not None
    table = Table(box=None, pad_edge=False, header_style="bold", title_justify="left",
                  title="Components: what one generation runs")
    for name in HEADERS + (("time", "t-share") if timed else ()):
        table.add_column(name, justify="left" if name == "component" else "right", no_wrap=True)
    for row in component_rows(report):
        table.add_row(*row)
    console.print(table)
    for line in note_lines(report):
        console.print(line)


def generation_markdown(report: Report) -> list[str]:
    timed = report.totals["generation"].time_ns is not None
    headers = HEADERS + (("time", "share") if timed else ())
    lines = ["", "## Components (one generation)", "", "| " + " | ".join(headers) + " |",
             "|---|" + "---:|" * (len(headers) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in component_rows(report)]
    lines += [""] + [f"- {line}" for line in note_lines(report)]
    return lines
