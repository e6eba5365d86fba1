"""A two-expert (Wan2.2 A14B) generation: which steps each expert runs, what it costs, and the weights that must
be resident, as a terminal table and as markdown."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..work.metrics import Metrics
from ..work.report import Report
from .units import flops, nbytes, percent, seconds


def _steps(steps: list[int]) -> str:
    return f"{steps[0]}-{steps[-1]}" if steps else "-"


def expert_rows(report: Report) -> list[tuple[str, ...]]:
    """One row per expert: name, steps, forwards, guide scale, params, FLOPs (torch), share, bytes[, time]."""
    experts = report.experts or {}
    total = report.totals["generation"]
    rows = []
    for e in experts["experts"]:
        m = Metrics.from_dict(e["generation"])
        rows.append((e["id"], f"{_steps(e['steps'])} ({e['step_count']})", str(e["forwards"]), f"{e['guide_scale']:g}",
                     f"{e['params']:,}", flops(m.flops_torch), percent(m.flops_torch, total.flops_torch),
                     nbytes(m.bytes), *([seconds(m.time_ns or 0)] if m.time_ns is not None else [])))
    return rows


def memory_lines(report: Report) -> list[str]:
    x = report.experts or {}
    resident = x["resident_weight_bytes"]
    return [
        f"timesteps at or above the boundary {x['boundary']:g} x 1000 = {x['boundary_t']:g} run the high-noise expert "
        f"(shift {x['shift']:g}, {len(x['timesteps'])} steps)",
        f"params: {x['params_total']:,} in total, {x['params_active_per_step']:,} active per step",
        f"resident weights ({report.workload['precision']}): {nbytes(resident['both_loaded'])} with both experts "
        f"on the GPU, {nbytes(resident['offload_idle'])} offloading the idle one (--offload_model), which copies "
        f"{nbytes(x['offload_host_to_device_bytes'])} host to device per generation",
    ]


HEADERS = ("expert", "steps", "forwards", "guide", "params", "FLOPs (torch)", "share", "bytes")


def print_experts(report: Report, console: Console) -> None:
    timed = report.totals["generation"].time_ns is not None
    table = Table(box=None, pad_edge=False, header_style="bold", title_justify="left",
                  title="Experts: the steps and forwards each runs in one generation")
    for name in HEADERS + (("time",) if timed else ()):
        table.add_column(name, justify="left" if name in ("expert", "steps") else "right", no_wrap=True)
    for row in expert_rows(report):
        table.add_row(*row)
    console.print(table)
    for line in memory_lines(report):
        console.print(line)


def experts_section(report: Report) -> list[str]:
    """The experts table and the resident weights, as markdown lines."""
    headers = HEADERS + (("time",) if report.totals["generation"].time_ns is not None else ())
    lines = ["| " + " | ".join(headers) + " |", "|---|---|" + "---:|" * (len(headers) - 2)]
    lines += ["| " + " | ".join(row) + " |" for row in expert_rows(report)]
    return lines + [""] + [f"- {line}" for line in memory_lines(report)]


def experts_markdown(report: Report, command: str) -> str:
    t = report.totals
    timed = t["generation"].time_ns is not None
    lines = [f"`{command}`", "", f"# wantrace: Wan2.2 {report.model['variant']} at {report.workload['id']}", "",
             f"- config: `{report.model['config']}` (both experts' config.json, sha256 "
             f"`{(report.model['config_sha256'] or '')[:12]}`)",
             f"- tokens {report.geometry['tokens']:,} (grid {report.geometry['grid']}); precision "
             f"`{report.workload['precision']}`", ""]
    lines += experts_section(report)
    lines += ["", "| | FLOPs (torch) | FLOPs (full) | bytes |" + (" time (s) |" if timed else ""),
              "|---|---:|---:|---:|" + ("---:|" if timed else "")]
    for key in ("forward", "step", "generation"):
        m = t[key]
        cell = f" {(m.time_ns or 0) / 1e9:,.3f} |" if timed else ""
        lines.append(f"| per {key} | {m.flops_torch:,} | {m.flops_full:,} | {m.bytes:,} |{cell}")
    lines += ["", "Hotspots and categories of one forward: `wantrace analyze` on one expert's config.json "
              "(both experts run the same graph)."]
    return "\n".join(lines) + "\n"
