"""The views of a comparison (wantrace.work.compare): a rich table for the terminal and markdown."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .units import seconds, si


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _times(entry: dict) -> str:
    r = entry["ratio"]
    if r is not None:
        return f"{r:.3f}x" if r < 100 else f"{r:.3g}x"  # 1.005x, not 1x
    return "new" if entry["b"] else "-"


def _value(measure: str, n: int) -> str:
    return seconds(n) if measure == "time" else si(n)


def _signed(measure: str, n: int) -> str:
    return ("+" if n > 0 else "-" if n < 0 else "") + _value(measure, abs(n)) if n else "0"


def _moving(entries: list[dict], by: str) -> list[dict]:
    """Views leave out what is zero in both reports under the measure shown (JSON keeps everything)."""
    return [e for e in entries if e[by]["a"] or e[by]["b"]]


def _count(e: dict) -> str:
    a, b = e["count"]["a"], e["count"]["b"]
    return f"x{b}" if a == b else f"x{a}->x{b}"


def _title(measure: str) -> str:
    return {"bytes": "bytes", "time": "predicted time"}.get(measure, f"FLOPs ({measure})")


def _header(result: dict) -> list[str]:
    lines = []
    for key in ("a", "b"):
        s = result[key]
        lines.append(f"{key.upper()}: {s['report']} ({s['variant']}, {s['workload']}, {s['tokens']:,} tokens, "
                     f"{s['precision']})")
    ta, tb = result["a"]["tokens"], result["b"]["tokens"]
    if ta and tb and ta != tb:
        lines.append(f"tokens B/A {tb / ta:.3f}x (squared {(tb / ta) ** 2:.3f}x: what attention over all tokens "
                     f"scales by)")
    return lines


def _totals_rows(result: dict) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for key in ("forward", "generation"):
        for name in result.get("measures", ("torch", "full", "bytes")):
            t = result["totals"][key][name]
            rows.append((f"{key} {_title(name)}", _value(name, t["a"]), _value(name, t["b"]), _times(t)))
    return rows


def _category_rows(result: dict) -> list[tuple[str, ...]]:
    by = result["by"]
    return [(e["id"], _value(by, e[by]["a"]), _value(by, e[by]["b"]), _signed(by, e[by]["delta"]), _times(e[by]),
             _pct(e[by]["share_a"]), _pct(e[by]["share_b"]), _pct(e[by]["of_change"]))
            for e in _moving(result["categories"], by)]


def _role_rows(result: dict, top: int, markdown: bool) -> list[tuple[str, ...]]:
    by = result["by"]
    roles = _moving(result["roles"], by)
    roles = roles[:top] if top else roles
    return [(f"`{e['id']}`" if markdown else e["id"], _count(e), _value(by, e[by]["a"]), _value(by, e[by]["b"]),
             _signed(by, e[by]["delta"]), _times(e[by]), _pct(e[by]["share_b"]), _pct(e[by]["of_change"]),
             e["category"])
            for e in roles]


CATEGORY_COLUMNS = ("category", "A", "B", "change", "B/A", "share A", "share B", "of change")
ROLE_COLUMNS = ("role", "count", "A", "B", "change", "B/A", "share B", "of change", "category")
LEFT = ("category", "role", "count")


def _sections(result: dict, top: int, markdown: bool) -> list[tuple[str, tuple[str, ...], list, str]]:
    """(title, columns, rows, note) of the category and role tables."""
    by = result["by"]
    measure = _title(by)
    per = result.get("per", "forward")
    roles = _role_rows(result, top, markdown)
    more = len(_moving(result["roles"], by)) - len(roles)
    return [
        (f"Categories by change in {measure} per {per}", CATEGORY_COLUMNS, _category_rows(result), ""),
        (f"Roles by change in {measure} per {per}", ROLE_COLUMNS, roles,
         f"{more} more roles with smaller changes (--top 0 lists all)" if more else ""),
    ]


def to_markdown(result: dict, top: int = 20) -> str:
    lines = ["# wantrace compare", ""] + [f"- {line}" for line in _header(result)]
    lines += ["", "## Totals", "", "| | A | B | B/A |", "|---|---:|---:|---:|"]
    lines += [f"| {' | '.join(r)} |" for r in _totals_rows(result)]
    for title, columns, rows, note in _sections(result, top, markdown=True):
        lines += ["", f"## {title}", "", f"| {' | '.join(columns)} |",
                  "|" + "|".join("---" if c in LEFT else "---:" for c in columns) + "|"]
        lines += [f"| {' | '.join(r)} |" for r in rows]
        if note:
            lines += ["", note + "."]
    return "\n".join(lines) + "\n"


def print_table(result: dict, console: Console, top: int = 20) -> None:
    for line in _header(result):
        console.print(line)
    totals = Table(box=None, pad_edge=False, header_style="bold", title="Totals", title_justify="left")
    for c in ("", "A", "B", "B/A"):
        totals.add_column(c, justify="right" if c else "left", no_wrap=True)
    for r in _totals_rows(result):
        totals.add_row(*r)
    console.print(totals)
    for title, columns, rows, note in _sections(result, top, markdown=False):
        table = Table(box=None, pad_edge=False, header_style="bold", title=title, title_justify="left")
        for c in columns:
            table.add_column(c, justify="left" if c in LEFT else "right", no_wrap=True,
                             overflow="ellipsis" if c == "category" else "fold", min_width=4 if c in LEFT else 6)
        for r in rows:
            table.add_row(*r)
        console.print(table)
        if note:
            console.print(note)
