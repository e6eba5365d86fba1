"""Sequence parallelism (docs/multi-gpu.md): the USP forward on 2 gloo processes equals one process, the bytes
handed to each collective equal the analytic communication bytes, one rank's analysis, memory plan, time of
collectives, and verify under torchrun."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from click.testing import CliRunner

from tests import parallel_worker
from tests.conftest import MODELS, config_of
from wan_reference import build_model, get_policy
from wan_reference.parallel import Layout, padded_seq_len, parallelize
from wantrace.cli import main
from wantrace.measure.device import VerifyError
from wantrace.measure.verify_parallel import verify_parallel
from wantrace.timing.predictor import Predictor, link_bandwidth
from wantrace.timing.series import Series
from wantrace.work.analysis import analyze
from wantrace.work.metrics import Metrics
from wantrace.work.parallel import Plan, communication, memory_plan, t5_params, trace_rank
from wantrace.work.report import ModuleRow

TINY = MODELS / "wan2.1-tiny-t2v" / "config.json"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gloo_results(tmp_path_factory) -> list[dict]:
    """Both ranks' measurements of every case of tests/parallel_worker.py (one spawn for all of them)."""
    out = tmp_path_factory.mktemp("gloo")
    mp.spawn(parallel_worker.main, args=(2, _port(), str(MODELS), str(out)), nprocs=2)
    return [{**json.loads((out / f"rank{r}.json").read_text()), "out_dir": str(out)} for r in range(2)]


def _analytic(name: str, rank: int) -> Counter:
    config_name, latent, ulysses, ring = {**parallel_worker.CASES, **parallel_worker.WORLD4_CASES}[name]
    trace, _ = trace_rank(config_of(config_name), get_policy("fp32"), latent, 1, Layout(ulysses, ring, rank))
    return Counter({(op, key): v[key] for op, v in communication(trace.records).items() for key in ("calls", "sent",
                                                                                                     "received")})


@pytest.mark.parametrize("name", ["ulysses2", "ring2", "ulysses2-i2v"])
def test_usp_output_equals_one_process(gloo_results, name):
    for rank in gloo_results:
        assert rank[name]["rel_vs_plain"] <= 1e-5  # measured: 0 (Ulysses), ~3e-7 (ring)


def test_padded_usp_equals_one_process_usp_but_not_the_unpadded_model(gloo_results):
    """9 tokens on 2 ranks: seq_len 10, and upstream does not mask the padded key."""
    for rank in gloo_results:
        assert rank["ring2-padded"]["rel_vs_one_process"] <= 1e-5
        assert rank["ring2-padded"]["rel_vs_plain"] > 1e-3


@pytest.mark.parametrize("name", list(parallel_worker.CASES))
def test_counted_collective_bytes_equal_analytic(gloo_results, name):
    for r, rank in enumerate(gloo_results):
        counted: Counter = Counter()
        for op, sent, received in rank[name]["sent"]:
            counted[(op, "calls")] += 1
            counted[(op, "sent")] += sent
            counted[(op, "received")] += received
        assert counted == _analytic(name, r)
        assert counted[("all_gather", "calls")] == 1


def test_calibrated_collective_points_are_bytes_sent(gloo_results):
    ops = gloo_results[0]["calibration"]["ops"]
    assert set(ops) == {"all_to_all", "all_gather", "ring_pass"}
    assert [p[0] for p in ops["all_to_all"]] == [n // 2 for n in parallel_worker.CALIBRATION_SIZES]
    assert [p[0] for p in ops["all_gather"]] == list(parallel_worker.CALIBRATION_SIZES)
    assert all(p[1] > 0 for points in ops.values() for p in points)


def test_layout_larger_than_the_world_is_refused(gloo_results):
    assert gloo_results[0]["mismatch"] == ("--ulysses 2 x --ring 2 = 4, but torchrun started 2 processes; they "
                                           "must be equal")


@pytest.mark.skipif(not os.environ.get("WANTRACE_WORLD4"), reason="4 gloo processes: set WANTRACE_WORLD4=1")
def test_world_of_four(tmp_path):
    """Ulysses 2 x ring 2, Ulysses 4 and a padded ring 4 on 4 processes (opt-in: slow on 2 cores)."""
    mp.spawn(parallel_worker.main_world4, args=(4, _port(), str(MODELS), str(tmp_path)), nprocs=4)
    for r in range(4):
        result = json.loads((tmp_path / f"rank{r}.json").read_text())
        for name, case in result.items():
            assert case["rel_vs_one_process"] <= 1e-5
            counted: Counter = Counter()
            for op, sent, received in case["sent"]:
                counted.update({(op, "calls"): 1, (op, "sent"): sent, (op, "received"): received})
            assert counted == _analytic(name, r)


def test_collectives_are_graph_nodes_with_the_rank_shapes():
    config = dataclasses.replace(config_of("wan2.1-t2v-14b"), num_layers=2)
    trace, seq_len = trace_rank(config, get_policy("bf16"), (21, 90, 160), 1, Layout(2, 2))
    names = Counter(r.name for r in trace.records if r.family == "communication")
    assert seq_len == 75600
    assert names == {"all_to_all": 4 * 2, "ring_pass": 2 * 2, "all_gather": 1}  # 2 traced blocks
    a2a = next(r for r in trace.records if r.name == "all_to_all")
    q_bytes = 75600 // 4 * 40 * 128 * 2  # one rank's q: seq_len/4 tokens, 40 heads, bf16
    assert a2a.cost.comm_sent == a2a.cost.comm_received == q_bytes // 2
    ring = next(r for r in trace.records if r.name == "ring_pass")
    assert ring.cost.comm_sent == 75600 // 2 * 20 * 128 * 2  # after Ulysses: 2 ranks' tokens, 20 heads


def test_one_rank_of_ulysses_4_at_720p():
    report = analyze(MODELS / "wan2.1-t2v-14b" / "config.json", "t2v-720p", parallel=Plan(ulysses=4))
    single = analyze(MODELS / "wan2.1-t2v-14b" / "config.json", "t2v-720p")
    comm = report.parallel["communication_per_forward"]
    # q, k, v and the output of 40 blocks, each [18900, 40 heads, 128] bf16, 3/4 leaving the rank
    assert comm["all_to_all"] == {"calls": 160, "sent": 160 * 18900 * 5120 * 2 * 3 // 4,
                                  "received": 160 * 18900 * 5120 * 2 * 3 // 4}
    assert comm["all_gather"]["sent"] == 3 * 18900 * 64 * 2  # the head's [18900, 16*4] bf16 to 3 ranks
    # attention and every token-wise op split 4 ways, exactly; what works on the whole video or on the text rows
    # repeats on every rank: the patch embedding (the split comes after it), the time and text embeddings, and the
    # cross-attention k/v projections of the 512 text rows
    cats = report.categories
    for c in ("self-attention core", "cross-attention core", "FFN", "head & unpatchify"):
        assert 4 * cats[c].flops_torch == single.categories[c].flops_torch
    repeated = {"embeddings": ["patch_embedding", "text_embedding", "time_embedding", "time_projection"],
                "attention projections": [f"blocks.{i}.cross_attn.{p}" for i in range(40) for p in "kv"]}
    for c, ids in repeated.items():
        extra = 3 * sum(single.module(i).inclusive.flops_torch for i in ids)
        assert 4 * cats[c].flops_torch - single.categories[c].flops_torch == extra > 0
    assert report.categories["communication"].comm_sent == comm["all_to_all"]["sent"] + comm["all_gather"]["sent"]
    assert "communication" not in single.categories and "parallel" not in single.to_dict()


def test_cfg_parallel_halves_the_forwards_and_exchanges_the_prediction():
    report = analyze(TINY, "ci-tiny", cfg=True, parallel=Plan(ulysses=2, cfg_parallel=True))
    out_bytes = 16 * 2 * 32 * 32 * 2  # [1, 16, F'=2, 32, 32] bf16
    assert report.parallel["world"] == 4 and report.totals["forwards_per_step"] == 1
    assert report.parallel["cfg_exchange_per_step"] == {"sent": out_bytes, "received": out_bytes}
    assert report.totals["step"].comm_sent == report.forward.comm_sent + out_bytes


def test_memory_plan_of_the_official_flags():
    config, policy = config_of("wan2.1-t2v-14b"), get_policy("wan-official")
    assert t5_params() == 5_680_910_336  # umT5-XXL encoder (wan_reference.t5)
    whole = memory_plan(config, policy, Plan(ulysses=4), 0)
    assert whole["dit_weights"] == 57_153_966_336 and whole["t5_weights_sampling"] == 2 * 5_680_910_336
    fsdp = memory_plan(config, policy, Plan(ulysses=4, dit_fsdp=True, t5_fsdp=True), 10)
    assert 0 <= 4 * fsdp["dit_weights"] - 57_153_966_336 < 41 * 4 * 4  # 41 units, each padded to 4 elements
    assert fsdp["t5_weights_sampling"] == -(-2 * 5_680_910_336 // 4)
    assert fsdp["peak"] == fsdp["dit_weights"] + fsdp["dit_fsdp_gathered"] + fsdp["t5_weights_sampling"] + 10
    offload = memory_plan(config, policy, Plan(offload_model=True), 0)
    assert offload["t5_weights_sampling"] == 0 and offload["peak"] == offload["encode_phase"]
    assert memory_plan(config, policy, Plan(t5_cpu=True), 0)["t5_weights_encode"] == 0


def test_collective_time_from_spec_or_curve(tmp_path):
    report = analyze(TINY, "ci-tiny", parallel=Plan(ring=2), timing=Predictor("h200"))
    assert report.time["collectives"].startswith("uncalibrated")
    predictor = Predictor("h200")
    trace, _ = trace_rank(config_of("wan2.1-tiny-t2v"), get_policy("bf16"), (2, 32, 32), 1, Layout(1, 2))
    ring = next(r for r in trace.records if r.name == "ring_pass")
    assert predictor.kernel_ns(ring) == round(ring.cost.comm_sent / link_bandwidth(predictor.profile)[0])
    doc = json.loads(predictor.profile.path.read_text())
    doc["collectives"] = {"ops": {"ring_pass": [[1000, 5000.0], [1_000_000, 20000.0]]}}
    path = tmp_path / "h200-collectives.json"
    path.write_text(json.dumps(doc))
    assert Predictor(str(path)).kernel_ns(ring) == round(Series([[1000, 5000.0], [1_000_000, 20000.0]])(
        ring.cost.comm_sent))


def test_usp_on_one_process_is_the_model():
    config = config_of("wan2.1-tiny-t2v")
    model = build_model(config, "fp32", device="cpu")
    from wan_reference import make_inputs

    inputs = make_inputs(config, (2, 4, 6), "fp32", device="cpu")
    with torch.no_grad():
        plain = model(**inputs)
        usp = parallelize(model, Layout())(**inputs)
    assert torch.equal(plain, usp)
    assert padded_seq_len(32760, 3) == 32760 and padded_seq_len(75600, 8) == 75600 and padded_seq_len(9, 2) == 10


@pytest.mark.parametrize("args, message", [
    (["--ulysses", "3"], "ulysses: 3 does not divide the model's 4 heads"),
    (["--ulysses", "2", "--ring", "2", "--gpus", "2"], "--gpus 2: the layout needs ulysses x ring = 4 GPUs"),
    (["--ring", "0"], "ring: must be a positive integer, got 0"),
    (["--dit-fsdp"], "FSDP needs more than one GPU"),
])
def test_impossible_layouts_are_one_line_exit_2(args, message):
    result = CliRunner().invoke(main, ["analyze", "--config", str(TINY), "--format", "json", *args])
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_verify_parallel_needs_torchrun(monkeypatch, tmp_path):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(VerifyError, match="need torchrun"):
        verify_parallel(TINY, ulysses=2)
    result = CliRunner().invoke(main, ["verify", "--device", "cpu", "--config", str(TINY), "--ring", "2", "--out",
                                       str(tmp_path)])
    assert result.exit_code == 2 and "need torchrun" in result.output and len(result.output.splitlines()) == 1


def test_verify_command_under_gloo(gloo_results, tmp_path_factory):
    """`wantrace verify --ulysses 2` as torchrun runs it (the worker sets torchrun's environment)."""
    assert [r["verify_exit"] for r in gloo_results] == [0, 0]
    out = Path(gloo_results[0]["out_dir"]) / "verify" / "verify.json"
    doc = json.loads(out.read_text())
    assert doc["passed"] and doc["checks"] == {"flops": True, "communication": True, "output": True}
    for rank in doc["ranks"]:
        assert rank["flops_counted"] == rank["flops_analytic"] > 0
        assert rank["communication_counted"] == rank["communication_analytic"]
        assert rank["communication_counted"]["all_to_all"]["calls"] == 8  # q, k, v, out x 2 blocks
    assert doc["output"]["max_rel_diff"] <= 1e-5
    assert doc["layout"] == {"ulysses": 2, "ring": 1, "world": 2, "backend": "gloo"}


def test_rank_report_rolls_up_exactly_and_replicates():
    plan = Plan(ulysses=2, ring=2)
    config = dataclasses.replace(config_of("wan2.1-tiny-t2v"), num_layers=5)
    report = analyze(config, "ci-tiny", parallel=plan)
    full = analyze(config, "ci-tiny", parallel=plan, replicate=False)
    a, b = report.to_dict(), full.to_dict()
    assert a.pop("trace")["traced_blocks"] == 2 and b.pop("trace")["traced_blocks"] == 5
    assert a == b
    rows = {row.id: row for row in report.modules}
    for row in report.modules:
        assert row.inclusive == sum((rows[c].inclusive for c in row.children), row.exclusive)
    assert sum(report.categories.values(), Metrics()) == report.forward
    assert report.forward.comm_sent == sum(c["sent"] for c in report.parallel["communication_per_forward"].values())
    assert rows["blocks.3.self_attn.attention"].inclusive.comm_sent > 0 and rows["blocks.3.ffn"].inclusive.comm_sent \
        is None
    assert report.ledger["unknown"] == []
    doc = json.loads(report.to_json())
    assert [ModuleRow.from_dict(m) for m in doc["modules"]] == report.modules  # comm survives the round trip


def test_scaling_table_reads_cuda_verify_files(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("scaling_table", MODELS.parent / "scripts" / "scaling_table.py")
    assert spec is not None and spec.loader is not None
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    cpu = json.loads((MODELS.parent / "docs" / "verification" / "multi-gpu" / "cpu-tiny-t2v-ulysses2.json").read_text())
    assert cpu["kind"] == "verify-parallel" and cpu["passed"]
    gpu = {**cpu, "device": {"type": "cuda", "name": "NVIDIA H200"}, "workload": {"id": "t2v-720p"},
           "layout": {"ulysses": 4, "ring": 1}, "forward_ms_slowest_rank": 3300.0}
    (tmp_path / "cpu.json").write_text(json.dumps(cpu))
    (tmp_path / "h200.json").write_text(json.dumps(gpu))
    assert table.measured(tmp_path) == {("NVIDIA H200", "t2v-720p", 4, 1): 3300.0}  # CPU runs are not timings
    assert table.single_measured("t2v-720p")["NVIDIA H200"] == 12416.671702  # docs/verification/time
