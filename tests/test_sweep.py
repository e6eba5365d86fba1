"""wantrace sweep: rows equal analyze's numbers, move the right way with the workload, reuse the trace, and
come out as CSV, JSON, non-blank PNGs of the stated size and a summary that embeds them."""

import csv
import dataclasses
import json
import struct

import pytest
from click.testing import CliRunner

from wan_reference import get_policy
from wantrace.cli import main
from wantrace.views.plots import DPI, HEIGHT_IN, WIDTH_IN
from wantrace.work import sweep as sweep_module
from wantrace.work.analysis import analyze
from wantrace.work.categories import CATEGORIES
from wantrace.work.sweep import SweepError, parse_ints, parse_sizes, run_sweep
from wantrace.work.trace import cost_graph, trace_graph, trace_model

from .conftest import MODELS, config_of

T2V_14B = str(MODELS / "wan2.1-t2v-14b" / "config.json")
TINY = str(MODELS / "wan2.1-tiny-t2v" / "config.json")
TINY_I2V = str(MODELS / "wan2.1-tiny-i2v" / "config.json")


@pytest.fixture(scope="module")
def sweep14b():
    return run_sweep(T2V_14B, frames=[17, 33, 49, 65, 81], sizes=[(832, 480), (1280, 720)])


def test_parse():
    assert parse_sizes("832x480, 1280X720") == [(832, 480), (1280, 720)]
    assert parse_ints("17,33", "--frames") == [17, 33]
    with pytest.raises(SweepError, match="WIDTHxHEIGHT"):
        parse_sizes("832x480,720p")
    with pytest.raises(SweepError, match="--frames: expected comma-separated integers"):
        parse_ints("17,,33", "--frames")


@pytest.mark.parametrize("config, preset, points", [
    (TINY, "ci-tiny", [dict(frames=5), dict(frames=9, height=128, width=192, steps=3, cfg=True)]),
    (TINY_I2V, "ci-tiny", [dict(frames=9, precision="wan-official")]),
    (T2V_14B, "t2v-480p", [dict(frames=17), dict(frames=33, height=720, width=1280, precision="wan-official")]),
])
def test_rows_equal_analyze(config, preset, points):
    for p in points:
        size = [(p["width"], p["height"])] if "width" in p else None
        sweep = run_sweep(config, preset, frames=[p["frames"]], sizes=size, steps=[p["steps"]] if "steps" in p
                          else None, precisions=[p["precision"]] if "precision" in p else None, cfg=p.get("cfg"))
        (row,) = sweep.rows
        report = analyze(config, preset, **p)
        assert row.workload.id == report.workload["id"]
        assert row.geometry.tokens == report.geometry["tokens"]
        assert row.forward == report.forward
        assert row.generation == report.totals["generation"]
        assert row.categories == report.categories
        assert row.activation_bytes == report.totals["activation_bytes"]
        assert row.shares("torch") == pytest.approx(report.category_shares("torch"), abs=1e-6)


def test_monotone_in_frames_and_size(sweep14b):
    rows = sweep14b.rows
    assert len(rows) == 10
    by_size = {}
    for row in rows:
        by_size.setdefault((row.workload.width, row.workload.height), []).append(row)
    for size_rows in by_size.values():
        assert [r.workload.frames for r in size_rows] == [17, 33, 49, 65, 81]
        for a, b in zip(size_rows, size_rows[1:], strict=False):
            assert a.geometry.tokens < b.geometry.tokens
            assert a.forward.flops_torch < b.forward.flops_torch
            assert a.forward.flops_full < b.forward.flops_full
            assert a.forward.bytes < b.forward.bytes
            assert a.activation_bytes < b.activation_bytes
    for small, large in zip(by_size[(832, 480)], by_size[(1280, 720)], strict=True):
        assert small.forward.flops_torch < large.forward.flops_torch and small.forward.bytes < large.forward.bytes
    ordered = sorted(rows, key=lambda r: r.geometry.tokens)
    attention = [r.shares("torch")["self-attention core"] for r in ordered]
    assert attention == sorted(attention) and len(set(attention)) == len(attention)
    assert attention[0] == pytest.approx(0.206, abs=0.005) and attention[-1] == pytest.approx(0.72, abs=0.01)
    for row in rows:
        assert sum(row.shares("full").values()) == pytest.approx(1.0, abs=1e-5)


def test_trace_once_per_precision_and_cost_once_per_geometry(monkeypatch):
    calls = {"trace": 0, "cost": 0}
    trace, cost = sweep_module.trace_graph, sweep_module.cost_graph

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(sweep_module, "trace_graph", counting("trace", trace))
    monkeypatch.setattr(sweep_module, "cost_graph", counting("cost", cost))
    sweep = run_sweep(TINY, "ci-tiny", frames=[1, 5, 9], steps=[1, 4], precisions=["bf16", "fp32"])
    assert len(sweep.rows) == 12
    # one trace per precision; no point runs the graph: each is its polynomials evaluated (steps only multiply)
    assert calls == {"trace": 2, "cost": 0}
    assert sweep.method == {"bf16": "polynomial", "fp32": "polynomial"}
    by_steps = {}
    for row in sweep.rows:
        by_steps.setdefault((row.workload.precision, row.workload.frames), {})[row.workload.steps] = row
    for pair in by_steps.values():
        assert pair[4].generation == pair[1].forward.times(4) and pair[4].forward == pair[1].forward


def test_a_reused_graph_costs_like_a_fresh_trace():
    config = dataclasses.replace(config_of("wan2.1-t2v-14b"), num_layers=2)
    policy = get_policy("wan-official")
    graph = trace_graph(config, policy)

    def plain(records):  # call keys carry a per-trace scope counter; the module paths do not
        return [dataclasses.replace(r, stack=tuple(k.split("#")[0] for k in r.stack)) for r in records]

    for latent in ((5, 60, 104), (3, 90, 160)):
        reused = cost_graph(graph, config, policy, latent, 1)
        fresh = trace_model(config, policy, latent, 1)
        assert plain(reused.records) == plain(fresh.records)
        assert reused.peak_activation_bytes() == fresh.peak_activation_bytes


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_cli_writes_csv_json_plots_and_summary(tmp_path):
    import matplotlib.image

    out = tmp_path / "sweep"
    result = CliRunner().invoke(main, ["sweep", "--config", TINY, "--workload", "ci-tiny", "--frames", "1,5,9",
                                       "--size", "256x256,128x192", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["flops_vs_tokens.png", "self_attention_share.png",
                                                     "summary.md", "sweep.csv", "sweep.json"]
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["kind"] == "sweep" and len(doc["rows"]) == 6
    with open(out / "sweep.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6
    for line, row in zip(table, doc["rows"], strict=True):
        assert int(line["tokens"]) == row["geometry"]["tokens"]
        assert int(line["forward_flops_torch"]) == row["forward"]["flops"]["torch"]
        assert int(line["forward_flops_full"]) == row["forward"]["flops"]["full"]
        assert int(line["forward_bytes"]) == row["forward"]["bytes"]
        assert float(line["share_torch_self_attention_core"]) == row["shares"]["torch"]["self-attention core"]
        assert sum(float(line[f"share_bytes_{k}"]) for k in ("self_attention_core", "cross_attention_core", "ffn",
                   "attention_projections", "norms", "modulation_gates", "rope", "embeddings", "head_unpatchify",
                   "dtype_casts", "other")) == pytest.approx(1.0, abs=1e-5)
    assert set(doc["rows"][0]["categories"]) == set(CATEGORIES)

    command = f"wantrace sweep --config {TINY} --workload ci-tiny --frames 1,5,9 --size 256x256,128x192"
    summary = (out / "summary.md").read_text()
    assert summary.splitlines()[0] == f"`{command}`"
    assert doc["command"] == command
    assert "](flops_vs_tokens.png)" in summary and "](self_attention_share.png)" in summary
    for name in ("flops_vs_tokens.png", "self_attention_share.png"):
        data = (out / name).read_bytes()
        assert _png_size(data) == (WIDTH_IN * DPI, HEIGHT_IN * DPI) == (800, 500)
        pixels = matplotlib.image.imread(out / name)
        assert pixels.shape[:2] == (500, 800)
        assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::7]}) > 10  # drawn on, not blank


def test_cli_without_plots(tmp_path):
    out = tmp_path / "sweep"
    result = CliRunner().invoke(main, ["sweep", "--config", TINY, "--workload", "ci-tiny", "--frames", "1,5",
                                       "--no-plots", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["summary.md", "sweep.csv", "sweep.json"]
    summary = (out / "summary.md").read_text()
    assert summary.startswith(f"`wantrace sweep --config {TINY} --workload ci-tiny --frames 1,5 --no-plots`")
    assert "![" not in summary


@pytest.mark.parametrize("args, message", [
    (["--size", "832x480,833x480"], "sweep point 5 frames 833x480 steps 1 bf16: width: must be a multiple of 16"),
    (["--frames", "5,8"], "sweep point 8 frames 256x256 steps 1 bf16: frames: must be 4n+1"),
    (["--size", "big"], "--size: expected WIDTHxHEIGHT (e.g. 832x480), got 'big'"),
    (["--frames", ""], "--frames: expected comma-separated integers, got ''"),
    (["--precision", "bf16,fp4"], "precision: unknown policy 'fp4'"),
    (["--workload", "i2v-480p"], "preset 'i2v-480p' is for i2v models"),  # the last --workload wins
])
def test_invalid_points_are_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "sweep"
    result = CliRunner().invoke(main, ["sweep", "--config", TINY, "--workload", "ci-tiny", "--out", str(out)] + args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wantrace: error: ") and message in lines[0], lines
    assert not out.exists()


def test_default_preset_follows_the_model():
    assert run_sweep(config_of("wan2.1-t2v-14b"), frames=[17]).preset == "t2v-480p"
    assert sweep_module.default_preset(config_of("wan2.1-i2v-14b-480p")) == "i2v-480p"
    assert sweep_module.default_preset(config_of("wan2.1-flf2v-14b-720p")) == "flf2v-720p"
