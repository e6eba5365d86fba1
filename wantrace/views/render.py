"""Terminal and markdown views of a Report: a rich tree of the hierarchy with hotspots, and summary.md."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from ..work.hotspots import hotspots, measures_for
from ..work.metrics import ZERO, Metrics
from ..work.report import ModuleRow, Report
from ..work.roles import role_of
from .units import flops, intensity, nbytes, percent, seconds, si

HOT, WARM = 0.10, 0.03  # share of forward FLOPs (full convention) that marks a hotspot


@dataclass
class ViewNode:
    label: str
    metrics: Metrics
    category: str
    children: list[ViewNode] = field(default_factory=list)
    params: int = 0


def view_tree(report: Report, expand_blocks: bool = False) -> ViewNode:
    """The module hierarchy; unless expanded, the N identical blocks become one `blocks.0-{N-1} xN` node whose
    children are roles summed over the blocks."""
    rows = {row.id: row for row in report.modules}

    def build(row: ModuleRow) -> ViewNode:
        if (row.id == "blocks" or row.id.endswith(".blocks")) and not expand_blocks and row.children:
            return collapsed_blocks(row)
        node = ViewNode(row.id, row.inclusive, row.category, params=row.params)
        node.children = [build(rows[c]) for c in row.children]
        return node

    def collapsed_blocks(blocks: ModuleRow) -> ViewNode:
        n = len(blocks.children)
        group = ViewNode(f"{blocks.id}.0-{n - 1} x{n}", ZERO, "mixed")
        roles: dict[str, ViewNode] = {}

        def add(row: ModuleRow, parent: ViewNode) -> None:
            for cid in row.children:
                child = rows[cid]
                role = role_of(cid).removeprefix(blocks.id + ".*.")
                key = f"{id(parent)}:{role}"
                node = roles.get(key)
                if node is None:
                    node = roles[key] = ViewNode(role, ZERO, child.category)
                    parent.children.append(node)
                node.metrics = node.metrics + child.inclusive
                node.params += child.params
                add(child, node)

        for bid in blocks.children:
            block = rows[bid]
            group.metrics = group.metrics + block.inclusive
            group.params += block.params
            add(block, group)
        return group

    return build(rows["model"])


def print_tree(report: Report, console: Console, depth: int = 3, expand_blocks: bool = False,
               by_module: bool = False) -> None:
    """The hierarchy as a table with tree guides (rows over 10% of forward FLOPs (full) in red, over 3% in
    yellow), then the hotspot tables, then the totals. A two-expert report's tree is one generation (the
    root), and its hotspots are its experts' (analyze one expert's config for them)."""
    total = report.modules[0].inclusive  # the forward; a two-expert or a generation report: the generation
    timed = total.time_ns is not None
    per = ("generation (every component)" if report.generation is not None else
           "generation (both experts)" if report.experts is not None else "forward")
    title = (f"FLOPs per {per}: torch and full conventions; share of full; bytes moved; FLOP per byte" +
             (f"; predicted time on {report.time['profile']} and its share" if timed and report.time else ""))
    table = Table(box=None, pad_edge=False, header_style="bold", title=title, title_justify="left")
    table.add_column("module", no_wrap=True, min_width=24)
    columns: tuple[tuple[str, int], ...] = (("torch", 7), ("full", 7), ("share", 6), ("bytes", 8), ("FLOP/B", 7))
    columns += (("time", 8), ("t-share", 7)) if timed else ()
    for name, width in columns:
        table.add_column(name, justify="right", no_wrap=True, min_width=width)
    table.add_column("category", no_wrap=True, overflow="ellipsis", min_width=4)

    def add(node: ViewNode, prefix: str, guide: str, level: int) -> None:
        m = node.metrics
        if timed:  # what marks a hotspot: its share of time, when there is one
            share = (m.time_ns or 0) / total.time_ns if total.time_ns else 0.0
        else:
            share = m.flops_full / total.flops_full if total.flops_full else 0.0
        style = "bold red" if share >= HOT else "yellow" if share >= WARM else ""
        cells = [si(m.flops_torch), si(m.flops_full), percent(m.flops_full, total.flops_full), nbytes(m.bytes),
                 intensity(m.flops_full, m.bytes)]
        if timed:
            cells += [seconds(m.time_ns or 0), percent(m.time_ns or 0, total.time_ns or 0)]
        table.add_row(prefix + guide + node.label, *cells, node.category, style=style)
        if level >= depth:
            return
        inner = prefix + ("" if not guide else "   " if guide == "└─ " else "│  ")
        for i, child in enumerate(node.children):
            add(child, inner, "└─ " if i == len(node.children) - 1 else "├─ ", level + 1)

    add(view_tree(report, expand_blocks), "", "", 0)
    console.print(table)
    for hot in hotspot_tables(report, by_module) if report.experts is None or report.generation else ():
        console.print(hot)
    console.print(totals_panel(report))


MEASURE_TITLES = {"flops": "FLOPs (full)", "bytes": "bytes", "time": "predicted time"}


def _hot_sections(report: Report, by_module: bool):
    """The hotspot rows both views show: (layers?, measure, rows), each row (rank, label, calls, metrics, share,
    category); calls and category are None for categories. Shares are of the forward's (a generation report:
    the generation's) total of the measure."""
    hot = hotspots(report, by_module)
    f = report.whole
    measures = measures_for(report)
    for measure, value in measures.items():
        yield True, measure, [(i, r.label, r.calls, r.metrics, percent(value(r.metrics), value(f)), r.category)
                              for i, r in enumerate(hot.layers[measure], 1)]
    for measure, value in measures.items():
        yield False, measure, [(i, name, None, m, percent(value(m), value(f)), None)
                               for i, (name, m) in enumerate(hot.categories[measure], 1)]


def hotspot_tables(report: Report, by_module: bool = False) -> list[Table]:
    """Top layers and top categories by FLOPs, by bytes, and by predicted time when there is one."""
    kind = "modules" if by_module else "layers (roles summed over blocks)"
    timed = report.forward.time_ns is not None
    tables = []
    for layers, measure, rows in _hot_sections(report, by_module):
        title = f"Top {len(rows)} {kind if layers else 'categories'} by {MEASURE_TITLES[measure]}"
        table = _hot_table(title, "layer" if layers else "category", with_calls=layers, timed=timed)
        for i, label, calls, m, share, category in rows:
            cells = [si(m.flops_torch), si(m.flops_full), nbytes(m.bytes)]
            cells += [seconds(m.time_ns or 0), share] if timed else [share]
            table.add_row(*([str(i), label, str(calls), *cells, category] if layers else [str(i), label, *cells]))
        tables.append(table)
    return tables


def _hot_table(title: str, label: str, with_calls: bool, timed: bool = False) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold", title=title, title_justify="left")
    table.add_column("#", justify="right", no_wrap=True, min_width=2)
    table.add_column(label, no_wrap=True, min_width=20)
    columns: tuple[tuple[str, int], ...] = (("calls", 5),) if with_calls else ()
    columns += (("torch", 7), ("full", 7), ("bytes", 8)) + ((("time", 8),) if timed else ()) + (("share", 6),)
    for name, width in columns:
        table.add_column(name, justify="right", no_wrap=True, min_width=width)
    if with_calls:
        table.add_column("category", no_wrap=True, overflow="ellipsis", min_width=4)
    return table


def hotspots_markdown(report: Report, by_module: bool = False) -> list[str]:
    kind = "modules" if by_module else "layers (roles summed over the blocks)"
    timed = report.forward.time_ns is not None
    time_head, time_rule = (" time |", "---:|") if timed else ("", "")
    lines = []
    for layers, measure, rows in _hot_sections(report, by_module):
        lines += ["", f"## Top {len(rows)} {kind if layers else 'categories'} by {MEASURE_TITLES[measure]}", ""]
        if layers:
            lines += [f"| # | layer | calls | FLOPs (torch) | FLOPs (full) | bytes |{time_head} share | category |",
                      f"|---:|---|---:|---:|---:|---:|{time_rule}---:|---|"]
        else:
            lines += [f"| # | category | FLOPs (torch) | FLOPs (full) | bytes |{time_head} share |",
                      f"|---:|---|---:|---:|---:|{time_rule}---:|"]
        for i, label, calls, m, share, category in rows:
            time_cell = f" | {seconds(m.time_ns or 0)}" if timed else ""
            cells = f"{flops(m.flops_torch)} | {flops(m.flops_full)} | {nbytes(m.bytes)}{time_cell} | {share}"
            lines.append(f"| {i} | `{label}` | {calls} | {cells} | {category} |" if layers
                         else f"| {i} | {label} | {cells} |")
    return lines


def totals_panel(report: Report) -> Panel:
    t = report.totals
    w = report.workload
    timed = report.forward.time_ns is not None
    table = Table.grid(padding=(0, 2))
    columns = ("", "FLOPs (torch)", "FLOPs (full)", "bytes") + (("time",) if timed else ())
    for column in columns:
        table.add_column(column, justify="right" if column else "left")
    table.add_row(*(f"[bold]{c}" for c in columns))
    whole = ("per generation (every component)" if report.generation is not None else
             f"per generation (x{t['forwards_per_generation']})")
    for key, name in (("forward", "per forward"), ("step", f"per step (x{t['forwards_per_step']})"),
                      ("generation", whole)):
        m = t[key]
        table.add_row(name, flops(m.flops_torch), flops(m.flops_full), nbytes(m.bytes),
                      *([seconds(m.time_ns or 0)] if timed else []))
    g = report.geometry
    header = (
        f"{report.model['variant']} · {w['id']} · {w['frames']} frames {w['width']}x{w['height']} · "
        f"batch {w['batch']} · {w['steps']} steps · CFG {'on' if w['cfg'] else 'off'} · {w['precision']} · "
        f"{g['tokens']:,} tokens"
    )
    unknown = sum(u["count"] for u in report.ledger["unknown"])
    footer = (
        f"params {t['params']:,} ({nbytes(t['param_bytes'])}) · peak activations {nbytes(t['activation_bytes'])}"
        f" · {report.ledger['costed']:,} costed nodes" + (f" · [red]{unknown} unknown ops[/]" if unknown else "")
    )
    grid = Table.grid()
    grid.add_row(header)
    grid.add_row(table)
    grid.add_row(footer)
    if timed and report.time:
        grid.add_row(time_note(report))
    return Panel(grid, title="totals", expand=False)


def time_note(report: Report) -> str:
    """Where the predicted time comes from, and how much of the forward the GPU spends in kernels."""
    info = report.time or {}
    forward = report.forward.time_ns or 0
    kernels = info.get("forward_kernel_ns", 0)
    cal = info.get("calibration") or {}
    source = (f"calibrated {cal.get('date', '?')} (torch {cal.get('torch', '?')})" if info.get("calibrated")
              else "spec figures only: " + info.get("uncalibrated", "uncalibrated"))
    return (f"time on {info.get('profile')} ({info.get('gpu')}), {source}; GPU kernels "
            f"{percent(kernels, forward)} of the forward (the rest: waiting for the CPU to issue ops)")


def summary_markdown(report: Report, command: str, by_module: bool = False) -> str:
    t = report.totals
    f = report.whole
    timed = f.time_ns is not None
    lines = [
        f"`{command}`",
        "",
        f"# wantrace: {report.model['dims'].get('release', 'wan2.1').replace('wan', 'Wan')} "
        f"{report.model['variant']} at {report.workload['id']}",
        "",
        f"- config: `{report.model['config']}` (sha256 `{(report.model['config_sha256'] or '')[:12]}`)",
        f"- tokens {report.geometry['tokens']:,} (grid {report.geometry['grid']}), "
        f"text {report.geometry['text_tokens']}, image {report.geometry['image_tokens']}; "
        f"precision `{report.workload['precision']}`",
        f"- params {t['params']:,} ({nbytes(t['param_bytes'])}); peak activations {nbytes(t['activation_bytes'])}",
        "",
        "| | FLOPs (torch) | FLOPs (full) | bytes |" + (" time (s) |" if timed else ""),
        "|---|---:|---:|---:|" + ("---:|" if timed else ""),
    ]
    for key in ("forward", "step", "generation"):
        m = t[key]
        time_cell = f" {(m.time_ns or 0) / 1e9:,.3f} |" if timed else ""
        lines.append(f"| per {key} | {m.flops_torch:,} | {m.flops_full:,} | {m.bytes:,} |{time_cell}")
    if timed:
        lines += ["", f"- {time_note(report)}"]
    if report.generation is not None:
        from .generation import generation_markdown

        lines += generation_markdown(report)
    lines += ["", f"## Categories (one {'generation' if report.generation is not None else 'forward'})", "",
              "| category | FLOPs (torch) | share | FLOPs (full) | share | bytes | share |"
              + (" time | share |" if timed else ""),
              "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if timed else "")]
    for name, m in sorted(report.categories.items(), key=lambda kv: (-kv[1].flops_full, kv[0])):
        time_cells = f" {seconds(m.time_ns or 0)} | {percent(m.time_ns or 0, f.time_ns or 0)} |" if timed else ""
        lines.append(
            f"| {name} | {flops(m.flops_torch)} | {percent(m.flops_torch, f.flops_torch)} | {flops(m.flops_full)} | "
            f"{percent(m.flops_full, f.flops_full)} | {nbytes(m.bytes)} | {percent(m.bytes, f.bytes)} |{time_cells}"
        )
    lines += hotspots_markdown(report, by_module)
    unknown = report.ledger["unknown"]
    lines += ["", "## Ledger", "", f"{report.ledger['nodes']:,} graph nodes: {report.ledger['costed']:,} costed, "
              f"{sum(report.ledger['zero_cost'].values()):,} zero-cost metadata, "
              f"{sum(report.ledger['structural'].values()):,} structural, {sum(u['count'] for u in unknown)} unknown."]
    for u in unknown:
        lines.append(f"- unknown `{u['op']}` in `{u['module']}` x{u['count']}: {u['note']}")
    return "\n".join(lines) + "\n"
