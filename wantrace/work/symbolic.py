"""One forward's cost as exact polynomials in the workload: trace once, cost every node as a polynomial, then
any geometry is arithmetic (sweeps) and every role has a formula (`wantrace formula`).

How: the traced graph runs on meta inputs at three probe geometries whose batch, latent frames and token
grid are distinct primes. For each node, every dimension and stride the rule sees is identified as a
monomial c·B^a·F'^i·h^j·w^k from its values at the first two probes (wantrace.work.polynomial.identify), and
the node's rule runs again on those polynomial shapes, which gives its cost as a polynomial. The third probe
checks every node's polynomial cost against its concrete cost, to the FLOP and the byte; so does a test at
every preset and at random geometries. Peak activations are a max over the graph's liveness schedule (which
does not depend on sizes) of polynomial sums: evaluated per point, also exact."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from wan_reference import WanConfig, geometry
from wan_reference.precision import PrecisionPolicy

from .. import rules
from ..rules import Cost, Gemm, OpCall, TensorSpec
from .categories import CATEGORIES, category_of
from .metrics import ZERO, Metrics
from .polynomial import Poly, identify
from .trace import NodeCost, cost_graph

# (B, F', h, w) at each probe; the first two differ by multiplicatively independent ratios (3/2, 5/2, 7/3,
# 11/5), which makes every monomial unique. A size of 1 is its own case: PyTorch may then view where it
# otherwise copies (a size-1 dimension never breaks contiguity), so a point whose batch, frames or grid side
# is 1 gets polynomials probed with that symbol held at 1 (`probes`).
PROBES = ((2, 2, 3, 5), (3, 5, 7, 11), (4, 3, 4, 6))


def probes(point) -> tuple[tuple[int, ...], ...]:
    """The probes for a point: PROBES, with every symbol that is 1 at the point held at 1."""
    return tuple(tuple(1 if x == 1 else p for x, p in zip(point, probe, strict=True)) for probe in PROBES)


class SymbolicError(ValueError):
    """A node whose cost is not a polynomial of the workload's sizes (the sweep then costs concretely)."""


def point_of(batch: int, latent: tuple[int, int, int], patch=(1, 2, 2)) -> tuple[int, int, int, int]:
    f, lh, lw = latent
    return batch, f // patch[0], lh // patch[1], lw // patch[2]


def _probe_geometry(config: WanConfig, point):
    b, f, h, w = point
    ph, pw = config.patch_size[1], config.patch_size[2]
    st, sh, sw = config.vae_stride
    geo = geometry(st * (f - 1) + 1, sh * ph * h, sw * pw * w, config.patch_size, config.rope_max_seq_len,
                   config.vae_stride)
    return b, geo.latent


@dataclass
class SymbolicForward:
    """One forward of a traced graph, every record's cost a polynomial (`costs`, aligned with `records`)."""

    records: list[NodeCost]  # those of the first probe (module ids, kinds, families: the same at every size)
    costs: list[Cost | None]  # polynomial costs; None for what no rule prices
    levels: list[Poly]  # activation bytes alive after each node

    def metrics(self, i: int, point) -> Metrics:
        c = self.costs[i]
        if c is None:
            return ZERO
        return Metrics(c.flops_torch(point), c.flops_full(point), c.bytes_read(point), c.bytes_written(point))

    def concrete(self, point) -> list[NodeCost]:
        """The records at one geometry, costs evaluated: what cost_graph would give, without running it."""
        out = []
        for r, c in zip(self.records, self.costs, strict=True):
            if c is not None:
                gemms = tuple(Gemm(*(_int(getattr(g, k), point) for k in ("count", "m", "n", "k", "taps")))
                              for g in c.gemms)
                cost = Cost(c.flops_torch(point), c.flops_full(point), c.bytes_read(point), c.bytes_written(point),
                            c.metadata, gemms)
                r = dataclasses.replace(r, cost=cost)
            out.append(r)
        return out

    def peak_activation_bytes(self, point) -> int:
        return max((level(point) for level in self.levels), default=0)


def _int(value, point) -> int:
    return value(point) if isinstance(value, Poly) else int(value)


def trace_symbolic(gm: torch.fx.GraphModule, config: WanConfig, policy: PrecisionPolicy,
                   strict: bool = False, points=PROBES) -> SymbolicForward:
    """Polynomial costs of every node of a traced graph, from runs at the three probe `points`."""
    runs = []
    for point in points:
        batch, latent = _probe_geometry(config, point)
        runs.append(cost_graph(gm, config, policy, latent, batch, strict))
    first, second, third = runs
    if not len(first.records) == len(second.records) == len(third.records):
        raise SymbolicError("the graph runs differently at different sizes")
    costs: list[Cost | None] = []
    keys = [(node.op, node.target) for node in gm.graph.nodes]
    for i, r in enumerate(first.records):
        c1, c2 = first.calls[i], second.calls[i]
        if c1 is None or c2 is None or r.kind not in ("costed", "metadata"):
            costs.append(None)
            continue
        symbolic_call = _unify(c1, c2, points[0], points[1], where=r.module)
        rule = rules.lookup(*keys[i])
        cost = rule(symbolic_call) if rule is not None else None
        if cost is None:
            costs.append(None)
            continue
        cost = _as_poly(cost)
        check = third.records[i].cost
        p3 = points[2]
        if (cost.flops_torch(p3), cost.flops_full(p3), cost.bytes_read(p3),
                cost.bytes_written(p3), cost.metadata) != (check.flops_torch, check.flops_full,
                                                                  check.bytes_read, check.bytes_written,
                                                                  check.metadata):
            raise SymbolicError(f"{r.name} in {r.module}: its polynomial cost misses the third probe")
        costs.append(cost)
    levels = _levels(first, second, third, points)
    return SymbolicForward(first.records, costs, levels)


def _as_poly(cost: Cost) -> Cost:
    def p(v):
        return v if isinstance(v, Poly) else Poly.of(v)
    gemms = tuple(Gemm(*(p(getattr(g, k)) for k in ("count", "m", "n", "k", "taps"))) for g in cost.gemms)
    return Cost(p(cost.flops_torch), p(cost.flops_full), p(cost.bytes_read), p(cost.bytes_written),
                cost.metadata, gemms)


def _unify(a, b, p1, p2, where: str):
    """The value that is `a` at probe p1 and `b` at p2, with every size a polynomial."""
    if isinstance(a, TensorSpec):
        if a.dtype != b.dtype or len(a.shape) != len(b.shape):
            raise SymbolicError(f"{where}: a tensor changes dtype or rank with the size")
        return TensorSpec(tuple(_dim(x, y, p1, p2, where) for x, y in zip(a.shape, b.shape, strict=True)), a.dtype,
                          tuple(_stride(x, y, p1, p2, where) for x, y in zip(a.stride, b.stride, strict=True)))
    if isinstance(a, OpCall):
        if a.name != b.name or a.aliases_input != b.aliases_input:
            raise SymbolicError(f"{where}: {a.name} aliases its input at one size and not another")
        return OpCall(a.name, _unify(a.args, b.args, p1, p2, where), _unify(a.kwargs, b.kwargs, p1, p2, where),
                      _unify(a.outputs, b.outputs, p1, p2, where), a.aliases_input)
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            raise SymbolicError(f"{where}: an argument list changes length with the size")
        return type(a)(_unify(x, y, p1, p2, where) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return {k: _unify(a[k], b[k], p1, p2, where) for k in a}
    if isinstance(a, int) and not isinstance(a, bool) and isinstance(b, int):
        return _dim(a, b, p1, p2, where)
    if a != b and not (isinstance(a, float) and isinstance(b, float)):
        raise SymbolicError(f"{where}: an argument changes with the size ({a!r} vs {b!r})")
    return a


def _dim(x: int, y: int, p1, p2, where: str) -> Poly:
    try:
        return identify(x, y, p1, p2)
    except ArithmeticError as exc:
        raise SymbolicError(f"{where}: a size is no monomial of the workload ({exc})") from None


def _stride(x: int, y: int, p1, p2, where: str) -> Poly:
    """A stride only says whether a dimension is stored (nbytes counts a broadcast, stride-0, dimension once);
    a size-1 dimension's stride is arbitrary, so one that is no monomial stands as a non-zero marker."""
    if (x == 0) != (y == 0):
        raise SymbolicError(f"{where}: a dimension is broadcast at one size and stored at another")
    try:
        return identify(x, y, p1, p2)
    except ArithmeticError:
        return Poly.of(1)


def _levels(first, second, third, points) -> list[Poly]:
    nodes1 = list(first.module.graph.nodes)
    specs2 = {n.name: s for n, s in second.new_specs.items()}
    alloc: dict[str, Poly] = {}
    for node, specs in first.new_specs.items():
        other = specs2.get(node.name)
        if other is None or len(other) != len(specs):
            raise SymbolicError(f"{node.name}: allocates differently at different sizes")
        total = Poly()
        for s1, s2 in zip(specs, other, strict=True):
            total = total + _unify(s1, s2, points[0], points[1], node.name).nbytes
        alloc[node.name] = total
    levels = first.liveness(lambda node: alloc.get(node.name, Poly()))
    if max(level(points[2]) for level in levels) != third.peak_activation_bytes():
        raise SymbolicError("peak activations miss the third probe")
    del nodes1
    return levels


def totals(sym: SymbolicForward, weights: list[int]) -> tuple[Poly, ...]:
    """(flops_torch, flops_full, bytes_read, bytes_written) of one forward, block 1 weighted N-1 times."""
    acc = [Poly(), Poly(), Poly(), Poly()]
    for c, w in zip(sym.costs, weights, strict=True):
        if c is not None and not c.metadata:
            for k, v in enumerate((c.flops_torch, c.flops_full, c.bytes_read, c.bytes_written)):
                acc[k] = acc[k] + w * v
    return tuple(acc)


def by_category(sym: SymbolicForward, weights: list[int]) -> dict[str, tuple[Poly, ...]]:
    out: dict[str, tuple[Poly, ...]] = {c: (Poly(), Poly(), Poly(), Poly()) for c in CATEGORIES}
    for r, c, w in zip(sym.records, sym.costs, weights, strict=True):
        if c is None or r.kind != "costed":
            continue
        name = category_of(r.module, r.family)
        out[name] = tuple(a + w * v for a, v in zip(out[name], (c.flops_torch, c.flops_full, c.bytes_read,
                                                                 c.bytes_written), strict=True))
    return out


def evaluate(polys: tuple[Poly, ...], point) -> Metrics:
    return Metrics(*(p(point) for p in polys))

