"""Terminal view of an end-to-end verify: per component, predicted against measured time and FLOPs counted
against the report's."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..measure.verify_generation import GenerationResult
from .units import flops, nbytes


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def print_generation_result(result: GenerationResult, console: Console) -> None:
    doc = result.to_dict()
    wl, run = doc["workload"], doc["steps"]
    console.print(f"{doc['variant']} · {wl['id']} · {doc['precision']} · {run['run']} of {run['of']} steps · "
                  f"{doc['device']['name']} · torch {doc['torch']}" + (f" · profile {doc['profile']}"
                                                                       if doc["profile"] else ""))
    table = Table(title=f"per component: calls run/per generation; * measured over {run['run']} steps x "
                        f"{run['of']}/{run['run']}; FLOPs counted, = the report's", title_justify="left")
    for name in ("component", "calls", "predicted ms", "measured ms", "ratio", "FLOPs", "peak mem"):
        table.add_column(name, justify="left" if name == "component" else "right")
    for r in doc["components"]:
        counted = flops(r["flops_counted"]) + (" =" if r["flops_equal"] else
                                               f" [red]≠ {flops(r['flops_analytic'])}[/]")
        table.add_row(r["component"] + (" *" if r["scaled"] else ""), f"{r['calls']}/{r['calls_per_generation']}",
                      _ms(r["predicted_ms"]), _ms(r["measured_ms"]), "-" if r["ratio"] is None else f"{r['ratio']:.3f}",
                      counted, "-" if r["peak_allocated_bytes"] is None else nbytes(r["peak_allocated_bytes"]))
    g = doc["generation"]
    table.add_row("generation", "", _ms(g["predicted_ms"]), _ms(g["measured_ms"]),
                  "-" if g["ratio"] is None else f"{g['ratio']:.3f}", "", "", style="bold")
    console.print(table)
    console.print(f"the timed loop ({run['run']} steps, unscaled): {doc['loop']['measured_ms']:,.1f} ms")
    for note in doc["notes"]:
        console.print(f"note: {note}")
    if not result.flops_pass:
        console.print("[red]FAIL[/]: counted FLOPs differ from the report's")
    elif not g["pass"]:
        console.print(f"[red]FAIL[/]: predicted generation time off by more than {100 * result.time_tolerance:.0f}%")
    else:
        console.print("[green]PASS[/]" + ("" if g["predicted_ms"] is not None else
                                          " (FLOPs; no hardware profile: measured times only)"))
