"""verify --counters, the parts that run without a GPU: parsing ncu's CSV and the per-category comparison."""

import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from wan_reference import get_policy
from wan_reference.config import read_config
from wantrace.measure.counters import (
    METRIC_SETS,
    METRICS,
    analytic_by_category,
    executed_by_id,
    parse_kernels,
    summarize,
    tensor_products,
)
from wantrace.rules import Cost, Gemm
from wantrace.timing.tiles import predict
from wantrace.work.roles import role_of
from wantrace.work.trace import NodeCost, replicate_blocks, trace_model
from wantrace.work.workload import resolve

REPO = Path(__file__).resolve().parent.parent
VERIFICATION = REPO / "docs" / "verification"

SAMPLE = Path(__file__).parent / "data" / "ncu_raw_h200.csv"


def test_parse_real_ncu_output():
    """A real `ncu --nvtx --csv --page raw` capture from an H200: bf16 mm inside nested NVTX ranges."""
    kernels = parse_kernels(SAMPLE.read_text())
    assert len(kernels) == 4
    assert kernels[0]["range"] is None  # the input's random fill ran outside every range
    mm = kernels[1]
    assert mm["stack"] == ["outer", "outer.inner"] and mm["range"] == "outer.inner"
    assert mm["tensor_bf16"] == 2 * 1024**3  # exact: 2 per multiply-add
    assert mm["dram_read"] == 2_116_608
    assert kernels[2]["range"] == "outer" and kernels[2]["tensor_bf16"] == 0


def node(module, family, gemms=(), in_dtype=torch.bfloat16, full=None, nbytes=0, flops=None):
    flops = sum(g.flops for g in gemms) if flops is None else flops
    return NodeCost(index=0, op="call_function", name="x", kind="costed", family=family, module=module,
                    stack=(), cost=Cost(flops, full if full is not None else flops, nbytes, 0, gemms=gemms),
                    output_bytes=0, in_dtype=in_dtype)


def kernel(stack, tensor=0, fadd=0, dram=0, name="k"):
    base = {k: 0 for k in METRICS}
    return {**base, "stack": stack, "range": stack[-1] if stack else None, "name": name, "tensor_bf16": tensor,
            "fadd": fadd, "dram_read": dram}


Q = "blocks.0.self_attn.q"
ATTN = "blocks.0.self_attn.attention"
NVJET = "nvjet_sm90_tst_168x128_64x5_1x2_h_bz_coopA_bias_TNN"  # 168 columns x 128 rows, k steps of 64


def test_summary_gates_tensor_flops_within_one_percent():
    records = [
        node(Q, "matmul", (Gemm(1, 512, 5120, 5120),)),
        node(ATTN, "attention", (Gemm(40, 512, 512, 128), Gemm(40, 512, 128, 512)), full=4500),
        node("head.head", "matmul", (Gemm(1, 512, 64, 5120),), in_dtype=torch.float32),  # fp32: CUDA cores
        node("blocks.0.norm1", "norm", in_dtype=torch.float32, full=300, nbytes=64, flops=0),
    ]
    q, attn = 2 * 512 * 5120 * 5120, 4 * 40 * 512 * 512 * 128
    analytic = analytic_by_category(records)
    assert analytic["attention projections"]["tensor_flops"] == q
    assert analytic["head & unpatchify"]["tensor_flops"] == 0
    stack = ["wantrace", "model", "blocks.0", "blocks.0.self_attn"]
    ok = summarize([
        kernel(stack + [Q], tensor=q * 5208 // 5120, name=NVJET),  # 5120 columns run as 31 tiles of 168
        kernel(stack + [ATTN], tensor=attn + 7, name="unreadable"),
        kernel(["wantrace", "model", "blocks.0", "blocks.0.norm1"], fadd=290, dram=70),
        kernel([], tensor=99),  # outside the forward: ignored
    ], records)
    assert ok["kernels"] == 3 and ok["kernels_outside_forward"] == 1
    assert ok["tensor_ratio"] == round((q * 5208 // 5120 + attn + 7) / (q + attn), 6) > 1.01  # padding ...
    assert ok["executed_tensor_flops"] == q * 5208 // 5120 + attn  # ... predicted from the kernel's tile
    assert ok["pass"] and ok["executed_ratio"] == round(1 + 7 / ok["executed_tensor_flops"], 6)
    assert ok["tile_unknown"] == ["blocks.*.self_attn.attention"]
    norms = next(c for c in ok["categories"] if c["category"] == "norms")
    assert norms["scalar_ratio"] == round(290 / 300, 6) and norms["bytes_ratio"] == round(70 / 64, 6)
    roles = {r["role"]: r for r in ok["roles"]}
    assert roles["blocks.*.self_attn.q"]["ratio"] == 1.017187 and roles["blocks.*.self_attn.q"]["executed_ratio"] == 1
    # a count the tiles cannot explain fails the gate
    bad = summarize([kernel(stack + [Q], tensor=2 * q, name=NVJET)], records)
    assert not bad["pass"] and bad["executed_ratio"] > 1.5  # q counted twice, the attention kernel missing


def test_tensor_only_metric_set_reports_the_rest_as_not_collected():
    records = [node(Q, "matmul", (Gemm(1, 512, 5120, 5120),))]
    k = {**kernel(["wantrace", Q], tensor=2 * 512 * 5120 * 5208, name=NVJET),
         **{key: None for key in METRICS if key not in METRIC_SETS["tensor"]}}
    out = summarize([k], records)
    assert out["pass"] and set(out["metrics"]) == {"tensor_bf16", "tensor_tf32", "time_ns"}
    cat = next(c for c in out["categories"] if c["category"] == "attention projections")
    assert cat["fp32_flops"] is None and cat["dram_bytes"] is None and cat["bytes_ratio"] is None


@pytest.mark.parametrize("name, gemm, expected", [
    (NVJET, Gemm(1, 512, 5120, 5120), 2 * 512 * 5208 * 5120),
    ("nvjet_sm90_tst_64x8_64x16_2x1_v_bz_bias_TNT", Gemm(1, 1, 30720, 256), 2 * 8 * 30720 * 256),  # M = 1
    # cuDNN's implicit-GEMM conv pads each tap's 16 input channels to the 64-wide reduction step: 4x
    ("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x256x64_warpgroupsize1x1x1",
     Gemm(1, 32760, 5120, 16, 4), 2 * 32768 * 5120 * 64 * 4),
    ("some_other_kernel", Gemm(1, 1, 30720, 256), 2 * 30720 * 256),  # unknown: no padding predicted
])
def test_tiles_from_kernel_names(name, gemm, expected):
    assert predict((gemm,), name)[0] == expected


def test_flash_attention_pads_queries_and_keys():
    gemms = (Gemm(40, 32760, 32760, 128), Gemm(40, 32760, 128, 32760))
    name = "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x128x128_4x1x1_cga1x1"
    assert predict(gemms, name) == (2 * 2 * 40 * 32768 * 32768 * 128, True)


@pytest.mark.parametrize("run, blocks, unexplained", [
    ("t2v-14b-ci-tiny-4blocks-counters.json", 4, {"head.head": (81, 80)}),  # split-K in 3: 81 of 80 k-steps
    ("t2v-14b-480p-1block-counters.json", 1, {}),
    ("t2v-14b-ci-tiny-counters-tensor.json", 40, {"head.head": (81, 80)}),  # all 40 blocks, 3,113 kernels
])
def test_h200_counters_equal_the_analytic_products_in_their_tiles(run, blocks, unexplained):
    """The tensor-core FLOPs an H200 measured per role (docs/verification) equal, to the last FLOP, the
    analytic products of that role padded to the tile named by the kernel that ran them."""
    doc = json.loads((VERIFICATION / run).read_text())
    config, _ = read_config(REPO / "models" / "wan2.1-t2v-14b" / "config.json")
    config = dataclasses.replace(config, num_layers=min(blocks, 2))  # traced blocks, replicated to `blocks`
    wl, geo = resolve(doc["workload"]["id"], config)
    records = replicate_blocks(trace_model(config, get_policy(wl.precision), geo.latent, wl.batch).records, blocks)
    products = tensor_products(records)
    roles = {r["role"]: r for r in doc["counters"]["roles"]}
    for role, measured in roles.items():
        (name,) = measured["kernels"]
        kernels = [{"stack": ["wantrace", i], "range": i, "name": name, "tensor_bf16": 1, "tensor_tf32": 0}
                   for i in products if role_of(i) == role]
        executed, unknown = executed_by_id(kernels, {i: products[i] for i in products if role_of(i) == role})
        assert not unknown, role
        predicted = sum(executed.values())
        num, den = unexplained.get(role, (1, 1))
        assert measured["tensor_flops"] * den == predicted * num, (role, measured["tensor_flops"], predicted)


def fake_ncu(tmp_path, monkeypatch, body: str) -> None:
    script = tmp_path / "ncu"
    script.write_text(f"#!{sys.executable}\nimport sys\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


def test_run_counters_streams_progress_and_parses(tmp_path, monkeypatch):
    """The ncu call end to end with a stand-in `ncu` (no GPU here): progress from ncu's and the child's lines,
    the CSV parsed."""
    from wantrace.measure.counters import run_counters
    from wantrace.work.workload import resolve

    fake_ncu(tmp_path, monkeypatch, f"""
print('==WANTRACE== block 1/2', file=sys.stderr)
print('==PROF== Profiling "nvjet_sm90" - 0: 0%....50%....100% - 1 pass', file=sys.stderr)
print('==WANTRACE== block 2/2', file=sys.stderr)
print('==PROF== Profiling "nvjet_sm90" - 1: 0%....50%....100% - 1 pass', file=sys.stderr)
sys.stdout.write(open({str(SAMPLE)!r}).read())
""")
    config, _ = read_config(REPO / "models" / "wan2.1-tiny-t2v" / "config.json")
    wl, _ = resolve("ci-tiny", config)
    seen: list[str] = []
    out = run_counters("c.json", wl, None, 0, [], metric_set="tensor", replay="application", progress=seen.append)
    assert out["kernels_outside_forward"] == 4 and out["replay"] == "application" and out["metric_set"] == "tensor"
    assert seen[-1].startswith("Nsight Compute (tensor metrics, application replay, run 1): block 2/2, 2 kernels")


def test_run_counters_failure_is_one_line(tmp_path, monkeypatch):
    from wantrace.measure.counters import run_counters
    from wantrace.measure.device import VerifyError
    from wantrace.work.workload import resolve

    fake_ncu(tmp_path, monkeypatch, "print('==ERROR== Failed to profile: ERR_NVGPUCTRPERM', file=sys.stderr)\n"
                                    "sys.exit(1)")
    config, _ = read_config(REPO / "models" / "wan2.1-tiny-t2v" / "config.json")
    wl, _ = resolve("ci-tiny", config)
    with pytest.raises(VerifyError, match=r"ncu failed \(exit 1\): ==ERROR== Failed to profile: ERR_NVGPUCTRPERM"):
        run_counters("c.json", wl, None, 0, [])
