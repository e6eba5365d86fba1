"""Human-readable numbers for display only; reports keep exact integers."""

from __future__ import annotations


def si(value: float, unit: str = "") -> str:
    for prefix, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def flops(n: int) -> str:
    return si(n, "FLOP")


def nbytes(n: int) -> str:
    return si(n, "B")


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def intensity(flop: int, moved: int) -> str:
    """Arithmetic intensity, FLOP per byte moved."""
    return f"{flop / moved:.1f}" if moved else "-"


def seconds(ns: int | float) -> str:
    """Nanoseconds as a readable duration: 12.4 s, 3.21 ms, 45.6 µs."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if abs(ns) >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"
