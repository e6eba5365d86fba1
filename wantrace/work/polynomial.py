"""Exact polynomials in the workload's sizes, and how a traced dimension becomes one.

Every size in a Wan forward is a product of the batch B, the latent frames F' and the token grid h x w (H/16
by W/16), times a constant: tokens L = F'·h·w, a [B, L, D] activation, the RoPE table's F' x h x w x d. A
`Poly` is a sum of such monomials with integer coefficients; the rule book's arithmetic (products, sums,
exact division by a monomial, tests against zero) works on it unchanged, so a rule run on polynomial shapes
returns the node's cost as a polynomial. `identify` reads a dimension's monomial off its values at two probe
geometries whose sizes are distinct primes."""

from __future__ import annotations

import functools
import itertools
from fractions import Fraction

SYMBOLS = ("B", "F'", "h", "w")  # batch, latent frames, token-grid height and width
Monomial = tuple[int, int, int, int]  # exponents of SYMBOLS
ONE: Monomial = (0, 0, 0, 0)


class Poly:
    __slots__ = ("terms",)

    def __init__(self, terms: dict[Monomial, int] | None = None):
        self.terms = {m: c for m, c in (terms or {}).items() if c}

    @classmethod
    def of(cls, value: Poly | int) -> Poly:
        return value if isinstance(value, Poly) else cls({ONE: int(value)})

    def __add__(self, other: Poly | int) -> Poly:
        out = dict(self.terms)
        for m, c in Poly.of(other).terms.items():
            out[m] = out.get(m, 0) + c
        return Poly(out)

    __radd__ = __add__

    def __neg__(self) -> Poly:
        return Poly({m: -c for m, c in self.terms.items()})

    def __sub__(self, other: Poly | int) -> Poly:
        return self + (-Poly.of(other))

    def __rsub__(self, other: Poly | int) -> Poly:
        return Poly.of(other) - self

    def __mul__(self, other: Poly | int) -> Poly:
        if not isinstance(other, (Poly, int)):
            return NotImplemented
        out: dict[Monomial, int] = {}
        for m1, c1 in self.terms.items():
            for m2, c2 in Poly.of(other).terms.items():
                m: Monomial = (m1[0] + m2[0], m1[1] + m2[1], m1[2] + m2[2], m1[3] + m2[3])
                out[m] = out.get(m, 0) + c1 * c2
        return Poly(out)

    __rmul__ = __mul__

    def __floordiv__(self, other: Poly | int) -> Poly:
        """Exact division by a single term (what the rules divide by: a dimension, a product of dimensions)."""
        divisor = Poly.of(other)
        if len(divisor.terms) != 1:
            raise ArithmeticError(f"cannot divide {self} by {divisor}")
        (dm, dc), = divisor.terms.items()
        out = {}
        for m, c in self.terms.items():
            q = tuple(a - b for a, b in zip(m, dm, strict=True))
            if min(q) < 0 or c % dc:
                raise ArithmeticError(f"{self} is not a multiple of {divisor}")
            out[q] = c // dc
        return Poly(out)  # type: ignore[arg-type]

    def __rfloordiv__(self, other: int) -> Poly:
        return Poly.of(other) // self

    def __eq__(self, other) -> bool:
        if isinstance(other, (Poly, int)):
            return self.terms == Poly.of(other).terms
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self.terms.items()))

    def __bool__(self) -> bool:
        return bool(self.terms)

    def __call__(self, point: tuple[int, int, int, int]) -> int:
        """The value at (B, F', h, w)."""
        total = 0
        for m, c in self.terms.items():
            v = c
            for x, e in zip(point, m, strict=True):
                if e:
                    v *= x ** e
            total += v
        return total

    @property
    def constant(self) -> int | None:
        if not self.terms:
            return 0
        if set(self.terms) == {ONE}:
            return self.terms[ONE]
        return None

    def __repr__(self) -> str:
        return f"Poly({self.terms})"


@functools.lru_cache(maxsize=65536)
def identify(v1: int, v2: int, p1: tuple[int, ...], p2: tuple[int, ...]) -> Poly:
    """The monomial c·B^a·F'^i·h^j·w^k that is v1 at point p1 and v2 at p2 (probe points of distinct primes,
    see PROBES); ArithmeticError if none is."""
    if v1 == v2:
        return Poly.of(v1)
    if v1 == 0 or v2 == 0:
        raise ArithmeticError(f"{v1} -> {v2} is no monomial")
    found = _exponents(Fraction(v2, v1), p1, p2)
    if found is None:
        raise ArithmeticError(f"{v1} -> {v2} is no monomial of {SYMBOLS}")
    mono = 1
    for x, e in zip(p1, found, strict=True):
        mono *= x ** e
    if v1 % mono:
        raise ArithmeticError(f"{v1} -> {v2}: coefficient is not an integer")
    return Poly({found: v1 // mono})


@functools.cache
def _ratios(p1: tuple[int, ...], p2: tuple[int, ...], limit: int = 3) -> dict[Fraction, Monomial]:
    """Every product of (p2/p1)^e, e in 0..limit per symbol, to its exponents; unique when the ratios p2/p1 are
    multiplicatively independent, as the probes' primes make them."""
    table: dict[Fraction, Monomial] = {}
    ranges = [range(limit + 1) if x1 != x2 else range(1) for x1, x2 in zip(p1, p2, strict=True)]
    for e in itertools.product(*ranges):  # a symbol the probes hold fixed (at 1) has no exponent to find
        r = Fraction(1)
        for x1, x2, k in zip(p1, p2, e, strict=True):
            r *= Fraction(x2, x1) ** k
        if r in table:
            raise ValueError(f"probes {p1} and {p2} do not tell monomials apart")
        table[r] = e  # type: ignore[assignment]
    return table


def _exponents(ratio: Fraction, p1: tuple[int, ...], p2: tuple[int, ...]) -> Monomial | None:
    return _ratios(tuple(p1), tuple(p2)).get(ratio)
