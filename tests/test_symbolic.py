"""Costs as polynomials of the workload: equal to a concrete trace, to the FLOP and the byte, at every preset
and at random geometries, for every shipped architecture and both precision policies."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from wan_reference import get_policy, load_config
from wantrace.work.analysis import analyze
from wantrace.work.polynomial import Poly, identify
from wantrace.work.symbolic import PROBES, by_category, evaluate, point_of, probes, totals, trace_symbolic
from wantrace.work.trace import replication_weights, trace_graph
from wantrace.work.workload import PRESETS

MODELS = Path(__file__).resolve().parent.parent / "models"
CONFIGS = ["wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.1-i2v-14b-480p", "wan2.1-flf2v-14b-720p", "wan2.1-tiny-i2v"]


def test_poly_arithmetic_and_identification():
    L = Poly({(0, 1, 1, 1): 1})
    assert (2 * L * L + 3)((1, 2, 3, 5)) == 2 * 30 * 30 + 3
    assert (4 * L * 5120) // (L * 5120) == 4
    with pytest.raises(ArithmeticError):
        (L + 1) // L
    p1, p2 = PROBES[0], PROBES[1]
    # a [B, L, 5120] bf16 activation: 2 * 5120 * B * F' * h * w bytes (PROBES: sizes of distinct primes)
    nbytes = [2 * 5120 * b * f * h * w for b, f, h, w in (p1, p2)]
    got = identify(nbytes[0], nbytes[1], p1, p2)
    assert got == Poly({(1, 1, 1, 1): 10240}) and got((2, 21, 30, 52)) == 10240 * 2 * 21 * 30 * 52
    assert identify(512, 512, p1, p2) == 512
    with pytest.raises(ArithmeticError):
        identify(2 * 3 * 5 + 1, 5 * 7 * 11 + 1, p1, p2)  # L + 1: no monomial


def _cases():
    rng = random.Random(0)
    for name in CONFIGS:
        config = load_config(MODELS / name / "config.json")
        presets = [p for p, w in PRESETS.items()
                   if config.model_type in w.tasks and w.release in (None, config.release)]
        points = [(p, {}) for p in presets]
        for _ in range(1):  # a random valid geometry off every preset, per config and precision
            points.append((presets[0], {"frames": 4 * rng.randint(0, 20) + 1, "height": 16 * rng.randint(2, 50),
                                        "width": 16 * rng.randint(2, 90), "batch": rng.randint(1, 2)}))
        for precision in ("bf16", "wan-official"):
            yield name, precision, points


@pytest.mark.parametrize("name, precision, points", list(_cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_polynomials_equal_a_concrete_trace(name, precision, points):
    config = load_config(MODELS / name / "config.json")
    traced = dataclasses.replace(config, num_layers=min(config.num_layers, 2))
    policy = get_policy(precision)
    graph = trace_graph(traced, policy)
    syms: dict = {}  # one symbolic trace per probe set: the points that hold the same symbols at 1 share it
    for preset, overrides in points:
        report = analyze(config, preset, precision=precision, **overrides)
        point = point_of(report.workload["batch"], tuple(report.geometry["latent"]), config.patch_size)
        if probes(point) not in syms:
            syms[probes(point)] = trace_symbolic(graph, traced, policy, points=probes(point))
        sym = syms[probes(point)]
        weights = replication_weights(sym.records, config.num_layers)
        forward, categories = totals(sym, weights), by_category(sym, weights)
        assert evaluate(forward, point) == report.forward, (preset, overrides)
        assert {c: evaluate(p, point) for c, p in categories.items()} == report.categories
        assert sym.peak_activation_bytes(point) == report.totals["activation_bytes"]


def _evaluate(tree: dict, point) -> int:
    """A formula's JSON terms at (B, F', h, w), as a program without sympy reads them."""
    b, f, h, w = point
    values = {"B": b, "F'": f, "h": h, "w": w, "L": f * h * w}
    total = 0
    for term in tree["terms"]:
        v = term["coefficient"]
        for symbol, power in term.items():
            if symbol != "coefficient":
                v *= values[symbol] ** power
        total += v
    return total


@pytest.mark.parametrize("name, preset, overrides", [
    ("wan2.1-t2v-14b", "t2v-480p", {}),
    ("wan2.1-tiny-i2v", "ci-tiny", {"batch": 2, "frames": 9, "height": 48, "width": 80}),
    ("wan2.1-tiny-i2v", "ci-tiny", {"precision": "wan-official"}),
])
def test_formulas_equal_the_report_role_by_role(name, preset, overrides):
    from wantrace.views.formula import text, to_dict
    from wantrace.work.formula import role_formulas
    from wantrace.work.roles import aggregate

    config = load_config(MODELS / name / "config.json")
    report = analyze(config, preset, **overrides)
    point = point_of(report.workload["batch"], tuple(report.geometry["latent"]), config.patch_size)
    formulas = role_formulas(config, report.workload["precision"])
    roles = {r.id: r.metrics for r in aggregate(report.modules)}
    assert {f.role for f in formulas} == {k for k, m in roles.items() if m.flops_full or m.bytes}
    doc = to_dict(formulas, {}, report.workload["precision"])
    for f, entry in zip(formulas, doc["roles"], strict=True):
        m = roles[f.role]
        expected = {"flops_torch": m.flops_torch, "flops_full": m.flops_full, "bytes": m.bytes}
        assert {k: f.value(k, point) for k in expected} == expected, f.role
        polys = entry["at_batch_one"] if point[0] == 1 and entry["at_batch_one"] else entry["per_forward"]
        assert {k: _evaluate(polys[k], point) for k in expected} == expected, f.role
        if f.uniform:
            assert {k: f.count * _evaluate(entry["per_call"][k], point) for k in expected} == expected
    attention = next(f for f in formulas if f.role == "blocks.*.self_attn.attention")
    heads, d = config.num_heads, config.head_dim
    assert text(attention.per_call(attention.general)["flops_torch"]) == f"{4 * heads * d}·B·L²"  # 4·B·H·L²·d
