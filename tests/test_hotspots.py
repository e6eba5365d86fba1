"""Roles and hotspots: aggregation over the blocks is exact, rankings are stable and break ties by id."""

import random

import pytest
from click.testing import CliRunner

from wantrace.cli import main
from wantrace.work.analysis import analyze
from wantrace.work.hotspots import MEASURES, hotspots, natural_key, top_k
from wantrace.work.metrics import ZERO
from wantrace.work.roles import aggregate, role_of

from .conftest import MODELS, config_of

T2V_14B = str(MODELS / "wan2.1-t2v-14b" / "config.json")


@pytest.fixture(scope="module")
def report():
    return analyze(config_of("wan2.1-t2v-14b"), "ci-tiny")


@pytest.mark.parametrize("module_id, role", [
    ("blocks.17.self_attn.q", "blocks.*.self_attn.q"),
    ("blocks.3", "blocks.*"),
    ("blocks.39.cross_attn.attention_img", "blocks.*.cross_attn.attention_img"),
    ("blocks", "blocks"),
    ("blocks10.x", "blocks10.x"),
    ("head.head", "head.head"),
    ("model", "model"),
])
def test_role_of(module_id, role):
    assert role_of(module_id) == role


def test_roles_sum_to_the_forward_and_to_their_modules(report):
    roles = aggregate(report.modules)
    total = ZERO
    for role in roles:
        total = total + role.metrics
    assert total == report.forward  # leaves (and containers' own work) partition the forward exactly
    assert len({r.id for r in roles}) == len(roles)

    by_id = {r.id: r for r in roles}
    attention = [row for row in report.modules if row.id.endswith(".self_attn.attention")]
    assert len(attention) == 40
    expected = ZERO
    for row in attention:
        expected = expected + row.inclusive
    role = by_id["blocks.*.self_attn.attention"]
    assert (role.count, role.calls, role.metrics, role.label) == (40, 40, expected,
                                                                   "blocks.*.self_attn.attention x40")
    rope = by_id["blocks.*.self_attn.rope"]
    assert (rope.count, rope.calls) == (40, sum(r.calls for r in report.modules if r.id.endswith("self_attn.rope")))
    assert rope.calls == 80  # q and k
    assert by_id["head.head"].count == 1 and by_id["head.head"].label == "head.head"
    assert not any(r.id in ("model", "blocks", "blocks.*", "blocks.*.self_attn") for r in roles)  # no parents


def test_by_module_lists_every_working_module(report):
    modules = aggregate(report.modules, by_module=True)
    leaves = [row.id for row in report.modules if not row.children]
    assert [m.id for m in modules] == leaves
    assert all(m.count == 1 for m in modules)


def test_top_k_is_stable_with_ties():
    items = [("blocks.10.ffn", 5), ("blocks.2.ffn", 5), ("head", 7), ("blocks.1.ffn", 5), ("a", 1), ("z", 7),
             ("blocks.01.ffn", 5)]
    expected = [("head", 7), ("z", 7), ("blocks.01.ffn", 5), ("blocks.1.ffn", 5), ("blocks.2.ffn", 5)]
    for seed in range(20):
        shuffled = items[:]
        random.Random(seed).shuffle(shuffled)
        assert top_k(shuffled, lambda kv: kv[1], lambda kv: kv[0], 5) == expected
    assert natural_key("blocks.2.x") < natural_key("blocks.10.x") < natural_key("blocks.10.y")


def test_hotspots_rank_and_break_ties_by_block_index(report):
    hot = hotspots(report, by_module=True)
    # all 40 blocks cost the same, so the top 10 single modules are one role's blocks 0..9, in that order
    top = hot.layers["flops"]
    assert [r.id for r in top] == [f"blocks.{i}.ffn.0" for i in range(10)]
    assert len({r.metrics for r in top}) == 1

    hot = hotspots(report)
    roles = aggregate(report.modules)
    for measure, value in MEASURES.items():
        layers = hot.layers[measure]
        assert len(layers) == 10
        values = [value(r.metrics) for r in layers]
        assert values == sorted(values, reverse=True) and values[-1] > 0
        assert all(value(r.metrics) <= values[-1] for r in roles if r not in layers)
        for a, b in zip(layers, layers[1:], strict=False):
            if value(a.metrics) == value(b.metrics):
                assert natural_key(a.id) < natural_key(b.id)
        categories = hot.categories[measure]
        assert len(categories) == 5
        assert [value(m) for _, m in categories] == sorted((value(m) for m in report.categories.values()),
                                                            reverse=True)[:5]


def test_analyze_prints_and_writes_hotspots(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["analyze", "--config", T2V_14B, "--out", str(out), "--depth", "1", "--only",
                                       "dit"])
    assert result.exit_code == 0, result.output
    assert "Top 10 layers (roles summed over blocks) by FLOPs (full)" in result.output
    assert "blocks.*.ffn.0 x40" in result.output
    summary = (out / "summary.md").read_text()
    assert "## Top 10 layers (roles summed over the blocks) by bytes" in summary
    assert "## Top 5 categories by FLOPs (full)" in summary
    assert "| 1 | `blocks.*.ffn.0 x40` | 40 |" in summary

    result = CliRunner().invoke(main, ["analyze", "--config", T2V_14B, "--out", str(out), "--hotspots-by-module",
                                       "--only", "dit"])
    assert result.exit_code == 0, result.output
    summary = (out / "summary.md").read_text()
    assert summary.startswith(f"`wantrace analyze --config {T2V_14B} --workload ci-tiny --hotspots-by-module "
                              "--only dit`")
    assert "## Top 10 modules by FLOPs (full)" in summary
    assert "| 1 | `blocks.0.ffn.0` | 1 |" in summary and "| 10 | `blocks.9.ffn.0` | 1 |" in summary
