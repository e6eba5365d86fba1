"""The rule book, one formula at a time, on hand-computed numbers."""

import ast
import operator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from wantrace.rules import FULL_CONSTANTS, METADATA, RULES, Gemm, OpCall, TensorSpec, lookup

BF16, FP32, C64 = torch.bfloat16, torch.float32, torch.complex64


def spec(*shape, dtype=BF16, stride=None):
    if stride is None:
        stride, acc = [], 1
        for n in reversed(shape):
            stride.insert(0, acc)
            acc *= n
    return TensorSpec(tuple(shape), dtype, tuple(stride))


def cost(target, args, out, kind="call_function", kwargs=None, aliases=False, name=None):
    rule = lookup(kind, target.removeprefix("Tensor.") if kind == "call_method" else target)
    assert rule is not None, target
    outs = out if isinstance(out, tuple) else (out,)
    label = name or (target if isinstance(target, str) else target.__name__)
    return rule(OpCall(label, tuple(args), kwargs or {}, outs, aliases))


def test_linear():
    x, w, b = spec(2, 10, 64), spec(32, 64), spec(32)
    c = cost(F.linear, [x, w, b], spec(2, 10, 32))
    assert c.flops_torch == 2 * 20 * 32 * 64
    assert c.flops_full == 2 * 20 * 32 * 64 + 20 * 32
    assert c.bytes_read == (2 * 10 * 64 + 32 * 64 + 32) * 2 and c.bytes_written == 2 * 10 * 32 * 2
    assert c.gemms == (Gemm(1, 20, 32, 64),)


def test_conv_patch_embedding():
    x, w, b = spec(1, 16, 21, 60, 104), spec(5120, 16, 1, 2, 2), spec(5120)
    c = cost(F.conv3d, [x, w, b, (1, 2, 2)], spec(1, 5120, 21, 30, 52))
    tokens = 21 * 30 * 52
    assert c.flops_torch == 2 * tokens * 5120 * 64
    assert c.flops_full == c.flops_torch + tokens * 5120
    assert c.gemms == (Gemm(1, tokens, 5120, 16, taps=4),)  # implicit GEMM: 16 channels at each of 4 taps


def test_sdpa_self_and_cross():
    q = spec(1, 40, 1000, 128)
    k = spec(1, 40, 512, 128)
    c = cost(F.scaled_dot_product_attention, [q, k, k], spec(1, 40, 1000, 128))
    assert c.flops_torch == 4 * 40 * 1000 * 512 * 128
    assert c.flops_full == c.flops_torch + FULL_CONSTANTS["softmax_per_score"] * 40 * 1000 * 512
    assert c.bytes_read == (40 * 1000 * 128 + 2 * 40 * 512 * 128) * 2  # flash: Q, K, V once
    assert c.bytes_written == 40 * 1000 * 128 * 2
    assert c.gemms == (Gemm(40, 1000, 512, 128), Gemm(40, 1000, 128, 512))  # Q Kᵀ, then P V


def test_layer_norm_and_activations():
    x = spec(4, 100, dtype=FP32)
    assert cost(F.layer_norm, [x, (100,), None, None, 1e-6], x).flops_full == 4 * 400
    assert cost(F.layer_norm, [x, (100,), spec(100), spec(100), 1e-6], x).flops_full == 5 * 400
    assert cost(F.gelu, [x], x, kwargs={"approximate": "tanh"}).flops_full == 8 * 400
    assert cost(F.silu, [x], x).flops_full == 5 * 400
    assert cost(F.gelu, [x], x).flops_torch == 0


def test_elementwise_broadcast_reads_distinct_memory():
    big, gate = spec(1, 100, 64, dtype=FP32), spec(1, 1, 64, dtype=FP32)
    c = cost(operator.mul, [big, gate], big, name="mul")
    assert c.flops_full == 6400 and c.flops_torch == 0
    assert c.bytes_read == (6400 + 64) * 4
    expanded = spec(3, 4, dtype=FP32, stride=(0, 1))  # a broadcast view: 4 distinct elements
    assert expanded.nbytes == 16


def test_complex_multiply_is_six_flops():
    x = spec(1, 10, 4, 32, dtype=C64)
    freqs = spec(10, 1, 32, dtype=C64)
    c = cost(operator.mul, [x, freqs], x, name="mul")
    assert c.flops_full == 6 * 1280


def test_casts_copies_and_views():
    x = spec(8, 16, dtype=BF16)
    y = spec(8, 16, dtype=FP32)
    cast = cost("Tensor.to", [x, FP32], y, kind="call_method", name="to")
    assert (cast.flops_full, cast.bytes_read, cast.bytes_written) == (0, 256, 512)
    assert cost("Tensor.to", [y, FP32], y, kind="call_method", aliases=True) is METADATA
    assert cost("Tensor.flatten", [x, 0], spec(128), kind="call_method", aliases=True) is METADATA
    copy = cost("Tensor.flatten", [spec(8, 16, stride=(1, 8)), 0], spec(128), kind="call_method")
    assert copy.bytes == 2 * 256
    assert cost("Tensor.transpose", [x, 0, 1], spec(16, 8), kind="call_method", aliases=True).metadata


def test_bicubic_resize_and_in_place_arithmetic():
    """CLIP's preprocessing: a bicubic resize (35 per output element in `full`, the whole input read) and the
    in-place rescale and normalise (still one read and one write each)."""
    image, small = spec(1, 3, 480, 832, dtype=FP32), spec(1, 3, 224, 224, dtype=FP32)
    resize = cost(F.interpolate, [image], small, kwargs={"size": (224, 224), "mode": "bicubic"})
    assert (resize.flops_torch, resize.flops_full) == (0, 35 * 3 * 224 * 224)
    assert (resize.bytes_read, resize.bytes_written) == (3 * 480 * 832 * 4, 3 * 224 * 224 * 4)
    with pytest.raises(NotImplementedError, match="bilinear"):
        cost(F.interpolate, [image], small, kwargs={"size": (224, 224), "mode": "bilinear"})
    x = spec(2, 3, 224, 224, dtype=FP32)
    scaled = cost("Tensor.mul_", [x, 0.5], x, kind="call_method", aliases=True, name="mul_")
    assert (scaled.flops_full, scaled.bytes_read, scaled.bytes_written) == (x.numel, x.nbytes, x.nbytes)
    normalised = cost("Tensor.sub_", [x, spec(3, 1, 1, dtype=FP32)], x, kind="call_method", aliases=True, name="sub_")
    assert (normalised.flops_full, normalised.bytes_read) == (x.numel, x.nbytes + 12)


def test_einsum_two_operands_and_permutation():
    a, b = spec(2, 8, 16), spec(2, 16, 4)
    assert cost(torch.einsum, ["bij,bjk->bik", a, b], spec(2, 8, 4)).gemms == (Gemm(2, 8, 4, 16),)
    assert cost(torch.einsum, ["bij,bjk->bik", a, b], spec(2, 8, 4)).flops_torch == 2 * 2 * 8 * 16 * 4
    assert cost(torch.einsum, ["bij,bjk", a, b], spec(8, 4)).gemms == (Gemm(1, 8, 4, 2 * 16),)  # sums b
    assert cost(torch.matmul, [a, b], spec(2, 8, 4)).gemms == (Gemm(2, 8, 4, 16),)
    assert cost(torch.addmm, [spec(4), spec(8, 16), spec(16, 4)], spec(8, 4)).gemms == (Gemm(1, 8, 4, 16),)
    assert cost(torch.einsum, ["fhwc->cfhw", spec(2, 3, 4, 5)], spec(5, 2, 3, 4)).flops_torch == 0
    # every contracted index of size 1: ATen multiplies elementwise (FlopCounterMode counts 0; tests/
    # test_verify_generation.py counts the sampler's k=1 einsum for real)
    one = cost(torch.einsum, ["k,bkcfhw->bcfhw", spec(1), spec(1, 1, 4, 2, 3, 3)], spec(1, 4, 2, 3, 3))
    assert (one.flops_torch, one.flops_full, one.gemms) == (0, 4 * 2 * 3 * 3, ())


def test_rules_import_neither_model_nor_machinery():
    for path in Path(__file__).resolve().parent.parent.joinpath("rules").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                assert not name.startswith(("wantrace", "wan_reference")), f"{path.name} imports {name}"


def test_every_rule_has_a_documented_formula():
    for rule in set(RULES.values()):
        assert rule.fn.__doc__ and len(rule.fn.__doc__) > 20, rule.name


@pytest.mark.parametrize("target", [F.scaled_dot_product_attention, F.linear, torch.cat, "Tensor.to"])
def test_registry_covers(target):
    assert lookup("call_method" if isinstance(target, str) else "call_function",
                  target.removeprefix("Tensor.") if isinstance(target, str) else target)


def test_embedding_reads_only_the_gathered_rows():
    ids, table = spec(1, 512, dtype=torch.int64), spec(256384, 4096)
    c = cost(F.embedding, [ids, table], spec(1, 512, 4096))
    assert (c.flops_torch, c.flops_full) == (0, 0)
    assert c.bytes_read == 512 * 8 + 512 * 4096 * 2 and c.bytes_written == 512 * 4096 * 2


def test_comparisons_selects_and_fills():
    """T5's relative-position buckets and padding mask: one per output element, fills write only."""
    d = spec(512, 512, dtype=torch.int64)
    flags = spec(512, 512, dtype=torch.bool)
    gt = cost(operator.gt, [d, 0], flags, name="gt")
    assert (gt.flops_full, gt.bytes_read, gt.bytes_written) == (512 * 512, 512 * 512 * 8, 512 * 512)
    where = cost(torch.where, [flags, d, d], d)
    assert where.flops_full == 512 * 512 and where.bytes_read == 512 * 512 * (1 + 8 + 8)
    assert cost(torch.min, [d, d], d).flops_full == 512 * 512
    with pytest.raises(NotImplementedError, match="min as a reduction"):
        cost(torch.min, [d], spec(dtype=torch.int64))
    scores, mask = spec(1, 64, 512, 512), spec(1, 1, 1, 512, dtype=torch.bool)
    fill = cost("Tensor.masked_fill_", [scores, mask, -1e30], scores, kind="call_method", aliases=True)
    assert fill.bytes_read == scores.nbytes + 512 and fill.bytes_written == scores.nbytes
    assert cost("Tensor.add_", [scores, spec(1, 64, 512, 512)], scores, kind="call_method",
                name="add_").flops_full == 64 * 512 * 512
    assert cost(torch.log, [spec(8, dtype=FP32)], spec(8, dtype=FP32)).flops_full == 8
    arange = cost(torch.arange, [512], spec(512, dtype=torch.int64))
    assert (arange.bytes_read, arange.bytes_written, arange.flops_full) == (0, 512 * 8, 0)
    assert cost(torch.full_like, [d, 15], d).bytes == 512 * 512 * 8
    long = cost("Tensor.long", [flags], d, kind="call_method", name="long")
    assert (long.bytes_read, long.bytes_written) == (512 * 512, 512 * 512 * 8)
