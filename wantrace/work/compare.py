"""Compare two report.json files: what moved, by how much, and which roles explain the change.

Pure functions over the JSON documents; wantrace.views.compare draws them. Values are exact ints; ratios and
shares are rounded floats for display."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .hotspots import natural_key
from .metrics import ZERO, Metrics
from .report import READABLE_SCHEMAS, ModuleRow
from .roles import aggregate

MEASURES: dict[str, Callable[[Metrics], int]] = {
    "torch": lambda m: m.flops_torch,
    "full": lambda m: m.flops_full,
    "bytes": lambda m: m.bytes,
}
REQUIRED = ("schema_version", "model", "workload", "geometry", "totals", "categories", "modules")


class CompareError(ValueError):
    """Reports that cannot be compared (unreadable, not a report, other schema, nothing shared); one line."""


def load_report(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CompareError(f"compare: {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CompareError(f"compare: {path}: cannot read ({exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CompareError(f"compare: {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    missing = [k for k in REQUIRED if k not in doc] if isinstance(doc, dict) else list(REQUIRED)
    if missing:
        raise CompareError(f"compare: {path}: not a wantrace report.json (missing {', '.join(missing)})")
    return doc


def _ratio(a: int, b: int) -> float | None:
    return round(b / a, 6) if a else None


TIME: Callable[[Metrics], int] = lambda m: m.time_ns or 0  # noqa: E731


def measures_of(a: dict, b: dict) -> dict[str, Callable[[Metrics], int]]:
    """FLOPs and bytes always; predicted time when both reports carry it (analyze --gpu)."""
    timed = all(doc["totals"]["forward"].get("time_ns") is not None for doc in (a, b))
    return {**MEASURES, "time": TIME} if timed else dict(MEASURES)


def _delta(a: Metrics, b: Metrics, total_a: Metrics, total_b: Metrics,
           measures: dict[str, Callable[[Metrics], int]]) -> dict:
    out = {}
    for name, value in measures.items():
        va, vb, ta, tb = value(a), value(b), value(total_a), value(total_b)
        out[name] = {
            "a": va, "b": vb, "delta": vb - va, "ratio": _ratio(va, vb),
            "share_a": round(va / ta, 6) if ta else 0.0,
            "share_b": round(vb / tb, 6) if tb else 0.0,
            "of_change": round((vb - va) / (tb - ta), 6) if tb != ta else None,
        }
    return out


def _parse(doc: dict, name: str) -> tuple[Metrics, dict[str, Metrics], list[ModuleRow]]:
    try:  # what shares are of: one forward, or a generation report's generation (its modules are per generation)
        forward = Metrics.from_dict(doc["totals"]["generation" if "generation" in doc else "forward"])
        categories = {c["category"]: Metrics.from_dict(c) for c in doc["categories"]}
        rows = [ModuleRow.from_dict(m) for m in doc["modules"]]
    except (KeyError, TypeError) as exc:
        raise CompareError(f"compare: {name}: malformed report.json (no {exc})") from None
    return forward, categories, rows


def compare(a: dict, b: dict, by: str = "torch", names: tuple[str, str] = ("A", "B")) -> dict:
    """Totals ratios, and per-category and per-role differences of two reports (`b` against `a`), each list
    sorted by the absolute change of `by` (torch, full, bytes, or time when both have it), largest first; ties by
    id. Reports of schema 1 and 2 compare (2 only adds optional time)."""
    for doc, name in ((a, names[0]), (b, names[1])):
        if doc["schema_version"] not in READABLE_SCHEMAS:
            raise CompareError(
                f"compare: {name} has schema_version {doc['schema_version']}; this wantrace reads "
                f"{' and '.join(map(str, READABLE_SCHEMAS))}: re-run wantrace analyze")
    measures = measures_of(a, b)
    if by == "time" and "time" not in measures:
        raise CompareError("compare: --by time needs predicted time in both reports (wantrace analyze --gpu NAME)")
    if by not in measures:
        raise CompareError(f"compare: --by must be one of {', '.join(measures)}, got {by!r}")
    if ("generation" in a) != ("generation" in b):
        whole = names[0] if "generation" in a else names[1]
        raise CompareError(f"compare: {whole} is a whole-generation report, the other the DiT alone: compare two of "
                           "a kind (wantrace analyze, or both with --only dit)")
    if ("experts" in a) != ("experts" in b) and "generation" not in a:
        two = names[0] if "experts" in a else names[1]
        raise CompareError(f"compare: {two} is a two-expert (A14B) report, one generation of both experts, the other "
                           "one forward: compare the report of one expert's config.json instead")
    fa, ca, rows_a = _parse(a, names[0])
    fb, cb, rows_b = _parse(b, names[1])
    if not {r.id for r in rows_a} & {r.id for r in rows_b}:
        raise CompareError(f"compare: {names[0]} and {names[1]} share no module ids; nothing to compare")

    totals = {}
    for key in ("forward", "step", "generation"):
        ma, mb = Metrics.from_dict(a["totals"][key]), Metrics.from_dict(b["totals"][key])
        totals[key] = {name: {"a": value(ma), "b": value(mb), "delta": value(mb) - value(ma),
                              "ratio": _ratio(value(ma), value(mb))} for name, value in measures.items()}

    def ranked(entries: list[dict]) -> list[dict]:
        return sorted(entries, key=lambda e: (-abs(e[by]["delta"]), natural_key(e["id"])))

    categories = [{"id": c, **_delta(ca.get(c, ZERO), cb.get(c, ZERO), fa, fb, measures)}
                  for c in dict.fromkeys([*ca, *cb])]
    roles_a = {r.id: r for r in aggregate(rows_a)}
    roles_b = {r.id: r for r in aggregate(rows_b)}
    roles = []
    for rid in dict.fromkeys([*roles_a, *roles_b]):
        ra, rb = roles_a.get(rid), roles_b.get(rid)
        roles.append({
            "id": rid,
            "category": (rb.category if rb is not None else ra.category if ra is not None else "other"),
            "count": {"a": ra.count if ra else 0, "b": rb.count if rb else 0},
            **_delta(ra.metrics if ra else ZERO, rb.metrics if rb else ZERO, fa, fb, measures),
        })
    return {
        "schema_version": max(a["schema_version"], b["schema_version"]),
        "by": by,
        "measures": list(measures),
        "a": _side(a, names[0]),
        "b": _side(b, names[1]),
        "totals": totals,
        "categories": ranked(categories),
        "roles": ranked(roles),
        **({"per": "generation"} if "generation" in a else {}),
    }


def _side(doc: dict, name: str) -> dict:
    return {"report": name, "variant": doc["model"].get("variant"), "config": doc["model"].get("config"),
            "workload": doc["workload"].get("id"), "tokens": doc["geometry"].get("tokens"),
            "precision": doc["workload"].get("precision")}
