"""verify --counters, the parts that run without a GPU: parsing ncu's CSV and the per-category comparison."""

from pathlib import Path

import torch

from wantrace.counters import analytic_by_category, parse_kernels, summarize
from wantrace.rules import Cost
from wantrace.trace import NodeCost

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


def node(module, family, flops, in_dtype=torch.bfloat16, full=None, nbytes=0):
    return NodeCost(index=0, op="call_function", name="x", kind="costed", family=family, module=module,
                    stack=(), cost=Cost(flops, full if full is not None else flops, nbytes, 0), output_bytes=0,
                    in_dtype=in_dtype)


def kernel(stack, tensor=0, fadd=0, dram=0):
    base = {k: 0 for k in ("tensor_bf16", "tensor_tf32", "fadd", "fmul", "ffma", "dadd", "dmul", "dfma",
                           "dram_read", "dram_write", "time_ns")}
    return {**base, "stack": stack, "range": stack[-1] if stack else None, "name": "k", "tensor_bf16": tensor,
            "fadd": fadd, "dram_read": dram}


def test_summary_gates_tensor_flops_within_one_percent():
    records = [
        node("blocks.0.self_attn.q", "matmul", 1000),
        node("blocks.0.self_attn.attention", "attention", 4000, full=4500),
        node("head.head", "matmul", 50, in_dtype=torch.float32),  # fp32 GEMM: CUDA cores, not tensor
        node("blocks.0.norm1", "norm", 0, in_dtype=torch.float32, full=300, nbytes=64),
    ]
    analytic = analytic_by_category(records)
    assert analytic["attention projections"]["tensor_flops"] == 1000
    assert analytic["head & unpatchify"]["tensor_flops"] == 0
    ok = summarize([
        kernel(["wantrace", "model", "blocks.0", "blocks.0.self_attn", "blocks.0.self_attn.q"], tensor=1004),
        kernel(["wantrace", "model", "blocks.0", "blocks.0.self_attn", "blocks.0.self_attn.attention"], tensor=4010),
        kernel(["wantrace", "model", "blocks.0", "blocks.0.norm1"], fadd=290, dram=70),
        kernel([], tensor=99),  # outside the forward: ignored
    ], analytic)
    assert ok["pass"] and ok["kernels"] == 3 and ok["kernels_outside_forward"] == 1
    assert ok["tensor_ratio"] == round(5014 / 5000, 6)
    norms = next(c for c in ok["categories"] if c["category"] == "norms")
    assert norms["scalar_ratio"] == round(290 / 300, 6) and norms["bytes_ratio"] == round(70 / 64, 6)
    bad = summarize([kernel(["wantrace", "model", "blocks.0.self_attn.q"], tensor=2000)], analytic)
    assert not bad["pass"]


def test_roles_compare_tensor_work_per_gemm():
    from collections import Counter

    from wantrace.counters import by_role

    kernels = [kernel(["wantrace", "model", f"blocks.{i}", f"blocks.{i}.self_attn.q"], tensor=1017) for i in (0, 1)]
    roles = by_role(kernels, Counter({"blocks.0.self_attn.q": 1000, "blocks.1.self_attn.q": 1000}))
    assert roles == [{"role": "blocks.*.self_attn.q", "kernels": {"k": 2}, "tensor_flops": 2034, "analytic": 2000,
                      "ratio": 1.017}]
