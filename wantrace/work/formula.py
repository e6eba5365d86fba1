"""Every role's cost as a formula of the workload: what a reader checks a count against.

The symbolic forward (wantrace.work.symbolic) gives each node's FLOPs and bytes as an exact polynomial of
B (batch), F' (latent frames, (frames - 1) / 4 + 1) and the token grid h x w (height / 16, width / 16).
Summed by role (wantrace.work.roles) they are the formulas `wantrace formula` prints; evaluated at a
workload they equal `wantrace analyze`'s numbers exactly (tested). A size of 1 is its own case (PyTorch may
view where it otherwise copies), so a role whose formula differs at B = 1 carries that formula too."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from wan_reference import WanConfig, get_policy

from .categories import category_of
from .polynomial import Poly
from .roles import role_of
from .symbolic import PROBES, SymbolicForward, probes, trace_symbolic
from .trace import replication_weights, trace_graph

FIELDS = ("flops_torch", "flops_full", "bytes")


@dataclass
class RoleFormula:
    role: str
    category: str
    count: int  # modules the role sums (40 for a role of every block of the 14B)
    general: dict[str, Poly]  # FIELDS -> per-forward polynomial, for sizes over 1
    at_batch_one: dict[str, Poly] | None  # the same at B = 1, where it is not `general` with B = 1
    uniform: bool  # every module of the role costs the same (then `per_call` is one module's cost)

    def per_call(self, polys: dict[str, Poly]) -> dict[str, Poly]:
        return {k: p // self.count for k, p in polys.items()} if self.uniform else polys

    def value(self, field: str, point: tuple[int, int, int, int]) -> int:
        """The role's per-forward `field` at (B, F', h, w)."""
        polys = self.at_batch_one if point[0] == 1 and self.at_batch_one is not None else self.general
        return polys[field](point)


def _by_role(sym: SymbolicForward, weights: list[int], by_module: bool = False
             ) -> dict[str, tuple[str, int, dict[str, Poly]]]:
    out: dict[str, tuple[str, int, dict[str, Poly]]] = {}
    for r, c, w in zip(sym.records, sym.costs, weights, strict=True):
        if c is None or r.kind != "costed":
            continue
        key = r.module if by_module else role_of(r.module)
        w = 1 if by_module else w
        category, calls, polys = out.get(key, (category_of(r.module), 0, {f: Poly() for f in FIELDS}))
        polys = {"flops_torch": polys["flops_torch"] + w * c.flops_torch,
                 "flops_full": polys["flops_full"] + w * c.flops_full,
                 "bytes": polys["bytes"] + w * (c.bytes_read + c.bytes_written)}
        out[key] = (category, calls + 1, polys)
    return out


def _blocks_of(role: str, config: WanConfig) -> int:
    return config.num_layers if role.startswith("blocks.*") else 1


def role_formulas(config: WanConfig, precision: str = "bf16") -> list[RoleFormula]:
    """Per-forward formulas of every role that does work, in execution order."""
    policy = get_policy(precision)
    traced = dataclasses.replace(config, num_layers=min(config.num_layers, 2))
    graph = trace_graph(traced, policy)
    general = trace_symbolic(graph, traced, policy, points=PROBES)
    one = trace_symbolic(graph, traced, policy, points=probes((1, 2, 2, 2)))
    rows = _by_role(general, replication_weights(general.records, config.num_layers))
    rows_one = _by_role(one, replication_weights(one.records, config.num_layers))
    modules = _by_role(general, [1] * len(general.records), by_module=True)  # the traced blocks 0 and 1 apart
    modules_one = _by_role(one, [1] * len(one.records), by_module=True)
    out = []
    for role, (category, _, polys) in rows.items():
        at_one = rows_one.get(role, ("", 0, {f: Poly() for f in FIELDS}))[2]
        differs = any(_at_batch_one(polys[f]) != at_one[f] for f in FIELDS)
        uniform = all(len({repr(sorted(t[2][f].terms.items())) for key, t in table.items() if role_of(key) == role})
                      == 1 for table in (modules, modules_one) for f in FIELDS)
        out.append(RoleFormula(role, category, _blocks_of(role, config), polys, at_one if differs else None,
                               uniform))
    return out


def _at_batch_one(p: Poly) -> Poly:
    terms: dict = {}
    for (_, f, h, w), c in p.terms.items():
        key = (0, f, h, w)
        terms[key] = terms.get(key, 0) + c
    return Poly(terms)
