"""Hotspots: the top layers (roles summed over the blocks, or single modules) and categories of one forward,
by FLOPs, by bytes, and by predicted time when the report has it. FLOPs rank by the `full` convention, which
prices every op (under `torch`, norms, RoPE and modulation would all tie at zero); ties break by id in
natural order, so the order never depends on the order of the input."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from .metrics import Metrics
from .report import Report
from .roles import Role, aggregate

LAYERS, CATEGORIES = 10, 5
MEASURES: dict[str, Callable[[Metrics], int]] = {
    "flops": lambda m: m.flops_full,
    "bytes": lambda m: m.bytes,
}
TIME: Callable[[Metrics], int] = lambda m: m.time_ns or 0  # noqa: E731


def measures_for(report: Report) -> dict[str, Callable[[Metrics], int]]:
    """FLOPs and bytes; predicted time too when the report was timed on a hardware profile."""
    return {**MEASURES, "time": TIME} if report.whole.time_ns is not None else dict(MEASURES)

T = TypeVar("T")


def natural_key(ident: str) -> tuple:
    """`blocks.2` before `blocks.10`: digit runs compare as numbers (split alternates text and digits, so
    tuples never compare a number with text)."""
    return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", ident)))


def top_k(items: Iterable[T], value: Callable[[T], int], ident: Callable[[T], str], k: int) -> list[T]:
    """The k largest by `value`, ties by id in natural order (then plain order, for `a1` vs `a01`): the same
    list under any input order."""
    return sorted(items, key=lambda item: (-value(item), natural_key(ident(item)), ident(item)))[:k]


@dataclass(frozen=True)
class Hotspots:
    by_module: bool
    layers: dict[str, list[Role]]  # measure -> top layers
    categories: dict[str, list[tuple[str, Metrics]]]  # measure -> top (category, metrics)


def hotspots(report: Report, by_module: bool = False, layers: int = LAYERS, categories: int = CATEGORIES) -> Hotspots:
    """Top `layers` roles (or modules, with `by_module`) and top `categories` categories, by each measure;
    what costs nothing under a measure is no hotspot of it."""
    roles = aggregate(report.modules, by_module=by_module)
    top_layers, top_categories = {}, {}
    for name, f in measures_for(report).items():
        def role_value(r: Role, f: Callable[[Metrics], int] = f) -> int:
            return f(r.metrics)

        def category_value(kv: tuple[str, Metrics], f: Callable[[Metrics], int] = f) -> int:
            return f(kv[1])

        top_layers[name] = top_k([r for r in roles if f(r.metrics)], role_value, lambda r: r.id, layers)
        top_categories[name] = top_k([kv for kv in report.categories.items() if f(kv[1])], category_value,
                                     lambda kv: kv[0], categories)
    return Hotspots(by_module, top_layers, top_categories)
