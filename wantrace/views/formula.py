"""Formulas as a person reads them (`20480·B·L²`) and as JSON a program evaluates without sympy."""

from __future__ import annotations

from rich.console import Console

from ..work.formula import FIELDS, RoleFormula
from ..work.polynomial import Poly

SYMBOLS = {
    "B": "batch",
    "F'": "latent frames: (frames - 1) / 4 + 1",
    "h": "token rows: height / 16",
    "w": "token columns: width / 16",
    "L": "tokens per sample: F'·h·w",
}
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def powers(monomial: tuple[int, int, int, int]) -> dict[str, int]:
    """(B, F', h, w) exponents -> the powers a reader sees, with L = F'·h·w taken out as often as it divides."""
    b, f, h, w = monomial
    tokens = min(f, h, w)
    named = {"B": b, "L": tokens, "F'": f - tokens, "h": h - tokens, "w": w - tokens}
    return {k: v for k, v in named.items() if v}


def _term(coefficient: int, named: dict[str, int]) -> str:
    factors = [s + (str(e).translate(_SUPERSCRIPT) if e > 1 else "") for s, e in named.items()]
    if not factors:
        return str(coefficient)
    return "·".join(([str(coefficient)] if coefficient != 1 else []) + factors)


def _order(item: tuple[tuple[int, int, int, int], int]) -> tuple:
    monomial, _ = item
    named = powers(monomial)
    return (-sum(monomial), -named.get("L", 0), -named.get("B", 0), monomial)


def text(p: Poly) -> str:
    if not p.terms:
        return "0"
    out = ""
    for monomial, c in sorted(p.terms.items(), key=_order):
        term = _term(abs(c), powers(monomial))
        out += (" - " if c < 0 else " + ") + term if out else ("-" if c < 0 else "") + term
    return out


def tree(p: Poly) -> dict:
    return {"text": text(p), "terms": [{"coefficient": c, **powers(m)}
                                       for m, c in sorted(p.terms.items(), key=_order)]}


def to_dict(formulas: list[RoleFormula], config: dict, precision: str) -> dict:
    return {
        "model": config, "precision": precision, "symbols": SYMBOLS,
        "note": "evaluate a term as coefficient x the product of each symbol to its power; per_call is one "
                "module's cost when every module of the role costs the same (count of them per forward)",
        "roles": [{"role": f.role, "category": f.category, "count": f.count, "uniform": f.uniform,
                   "per_forward": {k: tree(f.general[k]) for k in FIELDS},
                   "per_call": {k: tree(v) for k, v in f.per_call(f.general).items()} if f.uniform else None,
                   "at_batch_one": None if f.at_batch_one is None else
                   {k: tree(f.at_batch_one[k]) for k in FIELDS}}
                  for f in formulas],
    }


LABELS = {"flops_torch": "FLOPs (torch)", "flops_full": "FLOPs (full)", "bytes": "bytes"}


def print_formulas(formulas: list[RoleFormula], console: Console, title: str) -> None:
    console.print(f"[bold]{title}[/]")
    for f in formulas:
        if f.uniform:
            head = f"each of {f.count} calls" if f.count > 1 else "per forward"
        else:
            head = f"per forward, {f.count} modules that differ"
        console.print(f"[bold]{f.role}[/]  ({f.category}; {head})")
        for k in FIELDS:
            line = f"    {LABELS[k]:<14} {text(f.per_call(f.general)[k])}"
            if f.at_batch_one is not None:
                line += f"   [dim](at B = 1: {text(f.per_call(f.at_batch_one)[k])})[/]"
            console.print(line, highlight=False)
    console.print("\n" + "; ".join(f"{k} = {v}" for k, v in SYMBOLS.items()), highlight=False)
